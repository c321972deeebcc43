"""``embedview encode`` on bad input: one sentence, exit 2, nothing written, never a download or a hang.

Every case is refused before a model runs (most before torch is imported), so each takes well
under a second.
"""

import importlib.util
import sys
from fractions import Fraction

import numpy as np
import pytest

import embedview
from _cli import run_fails
from embedview._common.errors import EmbedviewError

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


@pytest.fixture
def folder(tmp_path):
    np.save(tmp_path / "grey.npy", np.zeros((60, 80), np.uint8))
    np.save(tmp_path / "line.npy", np.zeros(80, np.uint8))
    np.save(tmp_path / "volume.npy", np.zeros((2, 3, 60, 80), np.uint8))
    return tmp_path


def test_an_unknown_model_lists_the_known_names_and_families(folder, capsys):
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "resnet50")
    assert "--model resnet50 is unknown" in err and "vit_b_lm" in err and "vit_t" in err and "--checkpoint FILE" in err
    with pytest.raises(EmbedviewError, match=r"model='resnet50' is unknown.*wrapped in an embedview.Encoder") as info:
        embedview.encode(folder / "grey.npy", "resnet50")
    assert info.value.param == "model"


def test_missing_weights_say_where_they_are_looked_for(folder, capsys, monkeypatch):
    pytest.importorskip("torch")  # without PyTorch the refusal names the extra first (tested on its own)
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(folder / "cache"))
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "vit_b_lm")
    assert str(folder / "cache" / "models" / "vit_b_lm") in err and "never downloads" in err and "--checkpoint" in err


@needs_torch
def test_a_checkpoint_of_another_model_is_named(folder, capsys):
    import torch

    vit_b = {f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(2) for i in range(12)}
    torch.save(vit_b, folder / "vit_b.pt")
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "vit_t",
                    "--checkpoint", folder / "vit_b.pt")
    assert "holds vit_b weights, not vit_t's" in err and "--model vit_b" in err
    torch.save({"fc.weight": torch.zeros(2)}, folder / "other.pt")
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "vit_t",
                    "--checkpoint", folder / "other.pt")
    assert "no SAM image encoder weights" in err


@needs_torch
def test_a_pickled_checkpoint_is_not_unpickled(folder, capsys):
    import torch

    torch.save({"model": Fraction(1, 2)}, folder / "pickled.pt")  # a Python object: needs unpickling
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "vit_t",
                    "--checkpoint", folder / "pickled.pt")
    assert "weights_only=True" in err


@pytest.mark.parametrize("name, extra, expected", [
    ("line.npy", [], "shape [80]"),
    ("volume.npy", [], "has shape [2, 3, 60, 80]"),
    ("grey.npy", ["--ndim", "3"], "pass ndim=2"),
])
def test_an_image_of_the_wrong_dimensionality(folder, capsys, name, extra, expected):
    err = run_fails(capsys, folder, "encode", folder / name, "-o", folder / "emb.zarr", "--model", "vit_t", *extra)
    assert expected in err.replace("--ndim 2", "ndim=2")


def test_a_tile_shape_larger_than_the_image(folder, capsys):
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "vit_t",
                    "--tile-shape", "512,512", "--halo", "64,64")
    assert "not smaller than the 60×80 image" in err


def test_a_halo_without_tiles(folder, capsys):
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", "vit_t",
                    "--halo", "8,8")
    assert "tile" in err


def test_an_output_that_is_not_zarr(folder, capsys):
    err = run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.png", "--model", "vit_t")
    assert ".zarr" in err


def test_the_image_itself_as_the_output(folder, capsys):
    (folder / "image.zarr").mkdir()
    import zarr

    zarr.open_array(str(folder / "image.zarr" / "0"), mode="w", shape=(60, 80), dtype="uint8")
    run_fails(capsys, None, "encode", folder / "image.zarr", "-o", folder / "image.zarr", "--model", "vit_t")


def test_no_torch_names_the_extra(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(folder))
    (folder / "models").mkdir()
    (folder / "models" / "vit_t").write_bytes(b"not used")
    with pytest.raises(EmbedviewError, match=r"needs PyTorch.*embedview\[encode\]"):
        embedview.encode(folder / "grey.npy", "vit_t", output=folder / "emb.zarr")
    assert not (folder / "emb.zarr").exists()


def test_an_output_that_is_not_embedviews_is_left_alone(folder, capsys):
    """A folder embedview did not write (micro_sam's own embeddings, say) is never replaced, even with
    --overwrite; a picture embedview wrote is not replaced by embeddings without it."""
    import zarr

    theirs = folder / "theirs.zarr"
    zarr.open_group(str(theirs), mode="w").attrs["original_size"] = [60, 80]
    for extra in ([], ["--overwrite"]):
        err = run_fails(capsys, None, "encode", folder / "grey.npy", "-o", theirs, "--model", "vit_t", *extra)
        assert "did not write" in err
    assert dict(zarr.open_group(str(theirs), mode="r").attrs) == {"original_size": [60, 80]}
