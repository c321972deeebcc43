"""`embedview render A B -o DIR` runs one pipeline with every option: each input's picture equals
rendering it alone with the same basis (`embedview fit A B -o basis.npz`, `render A --basis`)."""

from pathlib import Path

import numpy as np
import pytest

import embedview
from _cli import run_ok
from embedview._workflows.demo import DemoEncoder, make_demo_scene, write_demo_embeddings

SMALL = DemoEncoder(n_channels=16, grid=32)  # 2 × 704 cells: --fit-sample 1000 samples


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        image, labels = make_demo_scene((120, 180), seed=seed)
        paths[name] = Path(write_demo_embeddings(root / f"{name}.zarr", image, labels, encoder=SMALL))
    mask = np.zeros((120, 180), np.uint8)
    mask[:70] = 1
    np.save(root / "mask.npy", mask)
    paths["mask"] = root / "mask.npy"
    return root, paths


def _read(path: Path) -> dict:
    if path.suffix == ".zarr":
        import zarr

        root = zarr.open_group(str(path), mode="r")
        return {"rgb": np.asarray(root["0"]), "components": np.asarray(root["components"])}
    with np.load(path) as saved:
        return {k: saved[k] for k in ("rgb", "components")}


def _check_each_alone(tmp_path, capsys, paths, *options, ext=".npz"):
    """render A B with ``options`` == fit A B (same options) + render each with --basis."""
    out = tmp_path / "many"
    run_ok(capsys, "render", paths["a"], paths["b"], "-o", out, "--ext", ext, "-q", *options)
    fit_options = [o for o in options if o not in ("--ext",)]
    run_ok(capsys, "fit", paths["a"], paths["b"], "-o", tmp_path / "basis.npz", "-q", *fit_options)
    fitting_only = ("--fit-sample", "--foreground")  # what the basis file brings
    draw_options = [o for i, o in enumerate(options)
                    if not (o in fitting_only or (i and options[i - 1] in fitting_only))]
    for name in ("a", "b"):
        alone = tmp_path / f"{name}_alone{ext}"
        run_ok(capsys, "render", paths[name], "-o", alone, "--basis", tmp_path / "basis.npz", "-q", *draw_options)
        many, one = _read(out / f"{name}{ext}"), _read(alone)
        np.testing.assert_array_equal(many["rgb"], one["rgb"])
        np.testing.assert_array_equal(many["components"], one["components"])
    assert (out / "side_by_side.png").exists()


@pytest.mark.parametrize("options", [(), ("--scheduler", "threads"), ("--fit-sample", "1000")],
                         ids=["plain", "threads", "fit-sample"])
def test_several_inputs_equal_each_alone(tmp_path, capsys, data, options):
    _check_each_alone(tmp_path, capsys, data[1], *options)
    basis = embedview.PCA.load(tmp_path / "basis.npz").basis_
    assert (basis.n_samples < 1300) == ("--fit-sample" in options)


def test_mask_and_zarr_outputs(tmp_path, capsys, data):
    _, paths = data
    _check_each_alone(tmp_path, capsys, paths, "--mask", paths["mask"], ext=".zarr")


def test_processes(tmp_path, capsys, data):
    pytest.importorskip("distributed")
    _check_each_alone(tmp_path, capsys, data[1], "--scheduler", "processes")


def test_foreground_and_clusters(tmp_path, capsys, data):
    """The foreground rule travels in the basis file: `render --basis` draws the same foreground."""
    _, paths = data
    _check_each_alone(tmp_path, capsys, paths, "--foreground", "auto")
    model = embedview.PCA.load(tmp_path / "basis.npz")
    assert len(model.foreground_) == 1 and not model.transform(paths["a"]).valid.all()  # the background is dark
    run_ok(capsys, "render", paths["a"], paths["b"], "-o", tmp_path / "k", "--clusters", "3", "-q")
    assert (tmp_path / "k" / "a.png").exists() and (tmp_path / "k" / "b.png").exists()


def test_separate_bases_and_zarr(tmp_path, capsys, data):
    _, paths = data
    out = tmp_path / "sep"
    run_ok(capsys, "render", paths["a"], paths["b"], "-o", out, "--ext", ".zarr", "--separate-bases", "-q")
    for name in ("a", "b"):
        alone = tmp_path / f"{name}.zarr"
        run_ok(capsys, "render", paths[name], "-o", alone, "-q")
        np.testing.assert_array_equal(_read(out / f"{name}.zarr")["rgb"], _read(alone)["rgb"])
