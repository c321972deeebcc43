"""Opening sources: layouts, metadata only, and clear errors for bad input."""

import json

import numpy as np
import pytest
import zarr

import embedview
from embedview import EmbedviewError, open_source
from embedview._common.geometry import Tiling
from embedview._workflows.demo import write_micro_sam_embeddings

import _synthetic as syn
from _fixtures import DATA, copy_fixture


@pytest.mark.parametrize("case, layout, shape, n_pieces", [
    ("2d", "single", (600, 900), 1),
    ("2d_zarr2", "single", (512, 640), 1),
    ("3d", "stack", (300, 400), 5),
    ("tiled2d", "tiled", (900, 1100), 6),
    ("tiled2d_zarr2", "tiled", (700, 1000), 4),
    ("tiled3d", "tiled stack", (600, 700), 8),
    ("tiled2d_masked", "tiled", (1000, 1100), 2),
])
def test_fixture_layouts(case, layout, shape, n_pieces):
    src = open_source(DATA / f"{case}.zarr")
    assert (src.layout, src.image_shape, len(src.pieces()), src.n_channels) == (layout, shape, n_pieces, 256)
    if case == "tiled2d_masked":
        assert src.present_tiles == (0, 1) and src.missing_tiles == (2, 3, 4, 5)
        vis = embedview.visualize(DATA / f"{case}.zarr")
        assert vis.valid.any() and not vis.valid.all()

def test_not_a_container(tmp_path):
    with pytest.raises(EmbedviewError, match="does not exist"):
        embedview.visualize(tmp_path / "missing.zarr")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(EmbedviewError, match="not a zarr container"):
        embedview.visualize(tmp_path / "image.png")
    other = zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    other.create_array("labels", shape=(4, 4), dtype="u1")
    with pytest.raises(EmbedviewError, match="no 'features'"):
        embedview.visualize(tmp_path / "other.zarr")
    with pytest.raises(EmbedviewError, match="a list of 3 is not one input"):
        embedview.visualize([1, 2, 3])


@pytest.mark.parametrize("case, node, key", [
    ("2d", "", "original_size"),
    ("2d", "", "input_size"),
    ("tiled2d", "features", "halo"),
    ("tiled2d", "features", "shape"),
])
def test_missing_attribute(tmp_path, case, node, key):
    path = copy_fixture(case, tmp_path)
    meta = path / node / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"][key]
    meta.write_text(json.dumps(doc))
    with pytest.raises(EmbedviewError, match=f"lacks the attribute '{key}'"):
        open_source(path)


def test_inconsistent_tile_metadata(tmp_path):
    path = copy_fixture("tiled2d", tmp_path)
    meta = path / "features" / "3" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["original_size"] = [100, 100]
    meta.write_text(json.dumps(doc))
    with pytest.raises(EmbedviewError, match="tile 3 .* inconsistent"):
        open_source(path)


@pytest.mark.parametrize("case, chunk", [("2d", "features/c/0/0/0/0"), ("2d_zarr2", "features/0.0.0.0"),
                                         ("tiled2d", "features/4/c/0/0/0/0")])
def test_truncated_chunk(tmp_path, case, chunk):
    path = copy_fixture(case, tmp_path)
    data = (path / chunk).read_bytes()
    (path / chunk).write_bytes(data[: len(data) // 3])
    with pytest.raises(EmbedviewError, match="could not read the features of .* damaged"):
        embedview.visualize(path)


def test_opening_reads_no_features(tmp_path):
    path = copy_fixture("tiled2d", tmp_path)
    for chunk in (path / "features").glob("*/c/**/*"):
        if chunk.is_file():  # unreadable chunks of the same size (a missing chunk is refused at open)
            chunk.write_bytes(b"\xff" * chunk.stat().st_size)
    src = open_source(path)  # metadata is intact: opening succeeds
    assert src.layout == "tiled" and len(src.pieces()) == 6


def test_tiles_with_other_shapes_are_refused(tmp_path):
    tiling = Tiling((300, 300), (128, 128), (16, 16))
    tiles = {t: np.zeros((1, 8, 64, 64), np.float32) for t in range(tiling.n_tiles)}
    tiles[2] = np.zeros((1, 8, 32, 32), np.float32)
    group = syn.memory_tiled_group(tiles, tiling)
    with pytest.raises(EmbedviewError, match="tile 2 .* same number"):
        open_source({"features": group, "input_size": None, "original_size": None})


def test_tiled_dict_needs_a_group():
    with pytest.raises(EmbedviewError, match="not a group of tiles"):
        open_source({"features": np.zeros((1, 8, 64, 64)), "input_size": None, "original_size": None})


@pytest.mark.parametrize("size", [(0, 10), (10,), "big", None])
def test_bad_original_size(size):
    with pytest.raises(EmbedviewError, match="original_size"):
        open_source({"features": np.zeros((1, 8, 64, 64)), "input_size": [10, 10], "original_size": size})


def test_lazy_zarr_stack_is_read_one_slice_at_a_time(tmp_path):
    features = np.random.default_rng(0).normal(size=(3, 1, 8, 64, 64)).astype(np.float32)
    path = write_micro_sam_embeddings(tmp_path / "stack.zarr", features, original_size=(200, 300))
    root = zarr.open_group(str(path), mode="r")
    src = open_source({"features": root["features"], "input_size": [683, 1024], "original_size": [200, 300]})
    piece = src.pieces()[1]
    assert piece.z == 1 and piece.label == "slice 1"
    np.testing.assert_array_equal(src.read(piece), features[1, 0])
