"""micro_sam's vision-foundation-model containers (DINOv2, DINOv3, SAM3 geometry), every mode.

The files are written at test time by the stand-in encoder in ``_vfm.py``, whose cells carry their
own ids (block key, z, row, column) in their first channels. A picture at pixel size 1 with as many
components as channels gives back each pixel's features exactly, hence the id of the cell drawn
there, which is compared with a reference computed here from the preprocessing alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import embedview
from embedview import EmbedviewError, open_source
from embedview.cli import main
from embedview.micro_sam import project_embeddings_for_visualization
from embedview.napari._reader import get_reader

from _vfm import ID_CHANNELS, MODELS, StandInEncoder, tile_blocks, write_vfm_embeddings

#: mode -> (image shape, tile_shape, halo): wide and tall images, non-square tiles, clipped last tiles
MODES = {
    "2d": ((150, 230), None, None),
    "3d": ((3, 120, 90), None, None),
    "tiled-2d": ((290, 410), (128, 160), (16, 24)),
    "tiled-3d": ((2, 200, 230), (96, 128), (12, 8)),
}
LAYOUTS = {"2d": "single", "3d": "stack", "tiled-2d": "tiled", "tiled-3d": "tiled stack"}
CASES = [(model, mode) for model in MODELS for mode in MODES]


def _image(shape, seed):
    """Smooth blobs on noise: content the stand-in encoder turns into varied features."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(*(np.arange(n) for n in shape[-2:]), indexing="ij")
    blobs = np.sin(yy / 9.0) * np.cos(xx / 13.0)
    image = 120 + 80 * blobs + rng.normal(0, 20, shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def vfm_files(tmp_path_factory):
    """``(model, mode) -> path`` of every container, written once per module."""
    folder = tmp_path_factory.mktemp("vfm")
    files = {}
    for k, (model, mode) in enumerate(CASES):
        shape, tile_shape, halo = MODES[mode]
        files[model, mode] = write_vfm_embeddings(
            folder / f"{model}_{mode}.zarr", _image(shape, k), StandInEncoder(model, seed=k),
            tile_shape=tile_shape, halo=halo)
    return files


def reference_ids(shape, tile_shape, halo, patch, img_size) -> np.ndarray:
    """``(3, H, W)``: (block key, row, column) of the cell covering each pixel centre.

    Integer arithmetic from the preprocessing: the pixel is drawn from the tile whose inner block
    holds it (the whole image untiled); its centre ``y + 1/2``, relative to the encoded (outer)
    block, is resized by ``img_size / L`` (``L`` the block's longest side) and falls in patch
    ``floor(· / patch)``.
    """
    if tile_shape is None:
        blocks = [(0, [(0, n) for n in shape], [(0, n) for n in shape])]
    else:
        blocks = tile_blocks(shape, tile_shape, halo)
    ids = np.full((3,) + tuple(shape), -1, np.int64)
    for key, inner, outer in blocks:
        longest = max(b - a for a, b in outer)
        rows, cols = (((2 * (np.arange(a, b) - o) + 1) * img_size) // (2 * longest * patch)
                      for (a, b), (o, _) in zip(inner, outer))
        (y0, y1), (x0, x1) = inner
        ids[0, y0:y1, x0:x1] = key
        ids[1, y0:y1, x0:x1] = rows[:, None]
        ids[2, y0:y1, x0:x1] = cols[None, :]
    assert (ids >= 0).all()
    return ids


def drawn_ids(vis) -> np.ndarray:
    """``(4, ..., H, W)`` ids (key, z, row, column) decoded from a full-rank picture's components."""
    basis = vis.basis
    assert basis.n_components == basis.n_channels
    features = vis.components.astype(np.float64) @ basis.components + basis.mean  # orthonormal axes
    ids = features[..., :ID_CHANNELS]
    assert np.abs(ids - np.round(ids)).max() < 0.01  # decoded cleanly
    return np.moveaxis(np.round(ids).astype(np.int64), -1, 0)


@pytest.mark.parametrize("model, mode", CASES)
def test_placed_exactly(vfm_files, model, mode):
    shape, tile_shape, halo = MODES[mode]
    patch, img_size = MODELS[model]
    vis = embedview.visualize(vfm_files[model, mode], n_components=StandInEncoder(model).embed_dim, pixel_size=1)
    assert vis.layout == LAYOUTS[mode] and vis.components.shape[:-1] == shape
    assert vis.scale[-2:] == (1.0, 1.0) and vis.translate[-2:] == (0.0, 0.0)
    got = drawn_ids(vis)
    want = reference_ids(shape[-2:], tile_shape, halo, patch, img_size)
    slices = range(shape[0]) if len(shape) == 3 else [None]
    misplaced = 0
    for z in slices:
        here = got[:, z] if z is not None else got
        misplaced += int(np.any(here[[0, 2, 3]] != want, axis=0).sum())
        assert (here[1] == (z or 0)).all()  # drawn from its own slice
    assert misplaced == 0


def test_zarr_v2_files(tmp_path):
    shape, tile_shape, halo = MODES["tiled-2d"]
    path = write_vfm_embeddings(tmp_path / "v2.zarr", _image(shape, 0), StandInEncoder("vit_b_dinov3"),
                                tile_shape=tile_shape, halo=halo, zarr_format=2)
    assert (path / ".zgroup").is_file()
    vis = embedview.visualize(path, n_components=StandInEncoder("vit_b_dinov3").embed_dim, pixel_size=1)
    want = reference_ids(shape, tile_shape, halo, *MODELS["vit_b_dinov3"])
    assert int(np.any(drawn_ids(vis)[[0, 2, 3]] != want, axis=0).sum()) == 0


@pytest.mark.parametrize("model", MODELS)
def test_cell_size_is_the_longest_side_over_the_grid(vfm_files, model):
    patch, img_size = MODELS[model]
    grid = img_size // patch
    src = open_source(vfm_files[model, "2d"])
    assert src.pieces()[0].grid.shape == (grid, grid)
    cell = 230 / grid  # the image's longest side over the grid side: 73, 64 or 72 cells
    vis = embedview.visualize(src)
    assert vis.scale == pytest.approx((cell, cell)) and vis.translate == pytest.approx((cell / 2 - 0.5,) * 2)
    tiled = open_source(vfm_files[model, "tiled-2d"])  # a full interior tile: 128 + 2·16 by 160 + 2·24
    assert float(tiled.default_pixel_size()) == pytest.approx(208 / grid)


@pytest.mark.parametrize("model", MODELS)
def test_info_shows_model_and_patch_size(vfm_files, model, capsys):
    patch, img_size = MODELS[model]
    path = str(vfm_files[model, "tiled-2d"])
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert f"model:             {model}, patch size {patch} (input resized to {img_size} pixels)" in out
    assert "mode tiled-2d" in out
    assert main(["info", "--json", path]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["patch_size"] == patch and info["vfm_mode"] == "tiled-2d" and info["model_type"] == model
    assert info["layout"] == "tiled" and info["tiles"]["count"] == 9


@pytest.mark.parametrize("mode", MODES)
def test_napari_reader(vfm_files, mode):
    path = str(vfm_files["vit_b_dinov2", mode])
    reader = get_reader(path)
    assert reader is not None
    [(rgb, kwargs, kind)] = reader(path)
    want = embedview.visualize(path)
    assert kind == "image" and kwargs["rgb"] and rgb.shape == want.rgb.shape
    assert kwargs["scale"] == pytest.approx(want.scale) and kwargs["translate"] == pytest.approx(want.translate)
    meta = kwargs["metadata"]["embedview"]
    assert meta["model_type"] == "vit_b_dinov2" and meta["patch_size"] == 14 and meta["vfm_mode"] == mode
    assert kwargs["name"].endswith("(vit_b_dinov2, patch 14)")


def _seed_components(path):
    """micro_sam.visualization on the file, ported with scikit-learn and scikit-image."""
    from test_micro_sam import _elf_pca, _seed_get_crop, _seed_project

    root = zarr.open_group(str(path), mode="r")
    if root.attrs["vfm_mode"].startswith("tiled"):
        return _seed_project({"features": root["features"], "input_size": None}, as_rgb=False)
    features, shape = root["features"][:], tuple(root.attrs["original_size"])
    if features.ndim == 4:
        vis = _elf_pca(features[0], 3, False)
        vis = vis[_seed_get_crop(vis.shape, shape)]
    else:
        vis = np.stack([_elf_pca(f[0], 3, False) for f in features])
        vis = vis[(slice(None),) + _seed_get_crop(vis.shape[1:], shape)]
        shape = (features.shape[0],) + shape
    return vis, tuple(s / v for s, v in zip(shape, vis.shape))


@pytest.mark.parametrize("mode", MODES)
def test_drop_in_treats_them_as_micro_sam(vfm_files, mode):
    path = vfm_files["vit_sam3", mode]
    want, want_scale = _seed_components(path)
    for given in (str(path), _as_micro_sam_returns(path)):
        got, scale = project_embeddings_for_visualization(given, as_rgb=False)
        assert got.shape == want.shape and scale == pytest.approx(want_scale)
        err = np.abs(got - want).reshape(-1, 3).max(axis=0)
        assert np.all(err <= 1e-4 * want.reshape(-1, 3).std(axis=0))


def _as_micro_sam_returns(path) -> dict:
    """What ``precompute_vfm_embeddings`` returns for a cached file (``_load_cached_embeddings``)."""
    root = zarr.open_group(str(path), mode="r")
    if root.attrs["vfm_mode"] in ("2d", "3d"):
        return {"features": root["features"][:], "input_size": list(root.attrs["input_size"]),
                "original_size": list(root.attrs["original_size"])}
    return {"features": root["features"], "input_size": None, "original_size": None}


# ---------------------------------------------------------------------------------------------
# inconsistent files


def _copy(vfm_files, tmp_path, model, mode):
    import shutil

    dst = tmp_path / f"{mode}.zarr"
    shutil.copytree(vfm_files[model, mode], dst)
    return dst


def _edit(path, node, **attrs):
    meta = path / node / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"].update(attrs)
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize("mode, node, attrs, match", [
    ("2d", "", {"input_size": [683, 1024]}, r"input_size \[683, 1024\], but its \[150, 230\] pixels .*"
                                            r"\(73 cells of patch_size 14 = 1022 pixels\) give \[667, 1022\]"),
    ("2d", "", {"patch_size": 16}, r"input_size \[667, 1022\], .* 1168 pixels\) give \[762, 1168\]"),
    ("2d", "", {"patch_size": "14"}, "patch_size '14', not a positive integer"),
    ("tiled-2d", "features/4", {"input_size": [1022, 800]}, r"tile 4 of .* input_size \[1022, 800\]"),
    ("2d", "", {"vfm_mode": "3d"}, "vfm_mode '3d' but its features are a single"),
    ("2d", "", {"vfm_mode": "tiled-2d"}, r"vfm_mode 'tiled-2d' \(tiled\) but its 'features' is an array"),
    ("tiled-3d", "", {"vfm_mode": "3d"}, r"vfm_mode '3d' \(untiled\) but its 'features' is a group"),
    ("tiled-2d", "", {"vfm_mode": "tiled-3d"}, "vfm_mode 'tiled-3d' but its features are a tiled"),
    ("2d", "", {"vfm_mode": "4d"}, "vfm_mode '4d', not one of"),
])
def test_inconsistent_files_are_refused(vfm_files, tmp_path, mode, node, attrs, match):
    path = _copy(vfm_files, tmp_path, "vit_b_dinov2", mode)
    _edit(path, node, **attrs)
    with pytest.raises(EmbedviewError, match=match):
        open_source(path)


def test_input_size_is_checked_to_half_a_pixel(vfm_files, tmp_path):
    # 150 · 1022 / 230 = 666.52: micro_sam writes 667 (round() and int(x + 0.5) agree off a half)
    path = _copy(vfm_files, tmp_path, "vit_b_dinov2", "2d")
    assert open_source(path).metadata["input_size"] == [667, 1022]
    _edit(path, "", input_size=[666, 1022])
    with pytest.raises(EmbedviewError, match=r"input_size \[666, 1022\]"):
        open_source(path)


def test_tiled_sam_file_without_root_sizes_is_still_refused(vfm_files, tmp_path):
    # Only a file that says it is a tiled VFM file may leave input_size out of its root.
    path = _copy(vfm_files, tmp_path, "vit_b_dinov2", "tiled-2d")
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["vfm_mode"]
    meta.write_text(json.dumps(doc))
    with pytest.raises(EmbedviewError, match="lacks the attribute 'input_size' in its root"):
        open_source(path)
