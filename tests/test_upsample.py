"""Edge-aware upsampling (issue 11): sharpness on three scenes, no seams, OME-Zarr = memory, bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

import _scenes as scenes
import embedview
from _cli import run_fails
from embedview._common.geometry import OutputGrid
from embedview._inputs.micro_sam_layout import write_micro_sam_embeddings
from embedview._model.upsample import upsample_cells
from embedview._outputs.guide import Guide, Upsampling
from embedview._outputs.render import Placer
from embedview.cli import main

from _readback import read_ome_zarr

METHODS = ("nearest", "bilinear", "guided")


@pytest.fixture(scope="module")
def tiled_scene(tmp_path_factory):
    """A micro_sam tiled container (2×3 tiles of 256 pixels, halo 32, 20×20 cells of 14.4–16 pixels)."""
    tiles, labels, guide, protos, tiling = scenes.tiled()
    path = write_micro_sam_embeddings(tmp_path_factory.mktemp("tiled") / "t.zarr", tiles, original_size=tiling.shape,
                                      tile_shape=tiling.tile_shape, halo=tiling.halo)
    return path, labels, guide, protos, tiling, tiles


def _draw(source, guide, method, basis=None, **kw):
    up = embedview.Upsample("guided", guide=guide) if method == "guided" else method
    model = embedview.PCA() if basis is None else embedview.PCA.from_basis(basis)
    if basis is None:
        return model.fit_transform(source, pixel_size=1, upsample=up, **kw)[0]
    return model.transform(source, pixel_size=1, upsample=up, **kw)


def _displacements(source, labels, guide, protos, **kw) -> dict:
    basis = _draw(source, guide, "nearest", **kw).basis
    return {m: scenes.displacement(_draw(source, guide, m, basis, **kw).components, labels, protos, basis)
            for m in METHODS}


def _check_sharp(found: dict) -> None:
    assert found["guided"] <= 0.3, found
    assert found["nearest"] > found["bilinear"] > found["guided"], found


def test_guided_is_sharp_on_a_non_square_2d_image():
    features, labels, guide, protos = scenes.single()  # 600×900: 14.0625-pixel cells
    _check_sharp(_displacements(features, labels, guide, protos, original_size=labels.shape))


def test_guided_is_sharp_on_a_stack_with_a_guide_per_slice():
    features, labels, guide, protos = scenes.stack()
    _check_sharp(_displacements(features, labels, guide, protos, original_size=labels.shape[1:]))


def test_guided_is_sharp_on_a_tiled_image_with_halo(tiled_scene):
    group, labels, guide, protos, *_ = tiled_scene
    _check_sharp(_displacements(group, labels, guide, protos))


def test_no_seams_between_tiles(tiled_scene):
    """The colour step across each tile seam is within noise: at most the mean step between
    neighbouring cells of one material inside the tiles (each tile's cells carry their own
    feature noise, as overlapping tiles of a real encoder do), away from material boundaries."""
    group, labels, guide, _, tiling, _ = tiled_scene
    near = _draw(group, guide, "nearest")
    guided = _draw(group, guide, "guided", basis=near.basis)
    edge = scenes.boundary(labels)
    for axis in (0, 1):
        seams = list(range(tiling.tile_shape[axis] - 1, tiling.shape[axis] - 1, tiling.tile_shape[axis]))
        assert seams
        ok = np.moveaxis((np.diff(labels, axis=axis) == 0) & ~np.delete(edge, 0, axis) & ~np.delete(edge, -1, axis),
                         axis, 0)

        def steps(vis):  # mean colour step between line i and i + 1, per line
            step = np.moveaxis(np.abs(np.diff(vis.rgb.astype(np.float64), axis=axis)).sum(-1), axis, 0)
            return np.array([step[i][ok[i]].mean() for i in range(step.shape[0])])

        flat = steps(near)
        cell_edges = [i for i in range(flat.size) if i not in seams and flat[i] > 0]
        noise = flat[cell_edges].mean()  # nearest: a step at each cell edge, none inside cells
        found = steps(guided)
        for i in seams:
            assert found[i] <= noise, (axis, i, found[i], noise)


def test_guided_ome_zarr_equals_memory(tmp_path, tiled_scene, monkeypatch):
    """Windows of 128 pixels (many per tile, tiles across windows): the same pixels as in memory."""
    import embedview._outputs.sinks as sinks

    group, _, guide, *_ = tiled_scene
    np.save(tmp_path / "guide.npy", guide)
    up = embedview.Upsample("guided", guide=tmp_path / "guide.npy")
    memory, = embedview.PCA().fit_transform(group, pixel_size=1, upsample=up)
    monkeypatch.setattr(sinks, "CHUNK", 128)
    out = embedview.PCA.from_basis(memory.basis).transform(group, pixel_size=1, upsample=up,
                                                           output=tmp_path / "g.zarr")
    rgb, components, attrs = read_ome_zarr(out.path)
    np.testing.assert_array_equal(rgb, memory.rgb)
    np.testing.assert_array_equal(components, memory.components)
    assert "guided" in str(attrs)
    # Dask processes: the sink and its guide travel pickled (the guide as its path)
    model = embedview.PCA.from_basis(memory.basis, execution=embedview.Execution(scheduler="processes"))
    out = model.transform(group, pixel_size=1, upsample=up, output=tmp_path / "p.zarr")
    np.testing.assert_array_equal(read_ome_zarr(out.path)[0], memory.rgb)


def test_nearest_through_the_kernel_is_todays_placement_bit_for_bit(tiled_scene):
    group, *_ = tiled_scene
    src = embedview.open_source(group)
    grid = OutputGrid.for_image(src.image_shape, 0.7)
    rng = np.random.default_rng(0)
    today, kernel = (np.full(grid.shape + (3,), np.nan, np.float32) for _ in range(2))
    via = Placer(grid, Upsampling("nearest", None, 1.0, 0.1, 1))
    for piece in src.pieces():
        projected = rng.normal(size=(3,) + piece.grid.valid_shape).astype(np.float32)
        Placer(grid).place(today, piece, projected)
        via.place(kernel, piece, projected)
    np.testing.assert_array_equal(today, kernel)
    assert not np.isnan(today).any()


def test_kernel_semantics():
    cells = np.array([[[0.0, 1.0, np.nan], [2.0, 3.0, 4.0]]], np.float32)  # (1, 2, 3)
    u_y, u_x = np.array([-0.4, 0.25, 1.6]), np.array([0.0, 0.5, 1.4, 2.0])
    for method in METHODS:
        kw = {}
        if method == "guided":
            kw = dict(cell_guide=np.zeros((1, 2, 3), np.float32), pixel_guide=np.zeros((3, 4, 1), np.float32))
        out = upsample_cells(cells, u_y, u_x, (2, 3), method, **kw)
        near = upsample_cells(cells, u_y, u_x, (2, 3), "nearest")
        assert out.shape == (3, 4, 1) and out.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(out), np.isnan(near))  # the footprint never changes
    bil = upsample_cells(cells, u_y, u_x, (2, 3), "bilinear")[..., 0]
    assert bil[0, 0] == 0.0 and bil[0, 1] == pytest.approx(0.5) and bil[2, 3] == 4.0  # clamped at the edges
    # a NaN neighbour weighs 0: (0.45·1 + 0.15·3 + 0.1·4) / 0.7
    assert bil[1, 2] == pytest.approx(1.3 / 0.7, rel=1e-6)
    # guided: a cell far in guide value weighs nothing
    guide_cells = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], np.float32)
    out = upsample_cells(cells, np.array([0.5]), np.array([0.0]), (2, 3), "guided", cell_guide=guide_cells,
                         pixel_guide=np.zeros((1, 1, 1), np.float32), sigma_range=0.05)
    assert out[0, 0, 0] == pytest.approx(0.5 * 0 + 0.5 * 1, abs=0.2) and out[0, 0, 0] < 1.0


def test_masked_tiled_file_draws_the_same_footprint(tiled_scene, tmp_path):
    _, labels, guide, _, tiling, tiles = tiled_scene
    partial = write_micro_sam_embeddings(tmp_path / "masked.zarr", {t: x for t, x in tiles.items() if t != 1},
                                         original_size=tiling.shape, tile_shape=tiling.tile_shape, halo=tiling.halo,
                                         tiles_in_mask=[t for t in tiles if t != 1])
    near = _draw(partial, guide, "nearest")
    guided = _draw(partial, guide, "guided", basis=near.basis)
    np.testing.assert_array_equal(np.isnan(guided.components), np.isnan(near.components))
    assert np.isnan(near.components).any()


def test_guide_dtypes_rgb_and_pickling(tmp_path):
    image = (np.random.default_rng(0).random((60, 80)) * 4000).astype(np.uint16)
    grey = Guide(image, (60, 80))
    assert grey.channels == 1 and 0 <= grey.pixels(None, np.arange(60), np.arange(80)).mean() <= 1
    rgba = np.dstack([image, image, image, np.full_like(image, 7)]).astype(np.float32)
    colour = Guide(rgba, (60, 80))
    assert colour.channels == 3 and colour.pixels(None, np.array([3]), np.array([4, 9])).shape == (1, 2, 3)
    np.save(tmp_path / "big.npy", np.zeros((3, 400, 500), np.uint8))
    by_path = Guide(tmp_path / "big.npy", (3, 400, 500))
    assert len(pickle.dumps(by_path)) < 20_000  # a path, not the pixels
    mapped = Guide(np.load(tmp_path / "big.npy", mmap_mode="r"), (3, 400, 500))
    assert len(pickle.dumps(mapped)) < 20_000
    back = pickle.loads(pickle.dumps(mapped))
    assert back.pixels(2, np.arange(5), np.arange(3)).shape == (5, 3, 1)


def test_bad_input_api():
    features, labels, guide, _ = scenes.single((120, 180), grid=12)
    with pytest.raises(embedview.EmbedviewError, match=r"Upsample\('guided', guide=image\)"):
        embedview.visualize(features, original_size=labels.shape, upsample="guided")
    with pytest.raises(embedview.EmbedviewError, match=r"shape \[120, 170\].*\[120, 180\]"):
        embedview.visualize(features, original_size=labels.shape,
                            upsample=embedview.Upsample("guided", guide=guide[:, :170]))
    with pytest.raises(embedview.EmbedviewError, match="upsample method"):
        embedview.visualize(features, original_size=labels.shape, upsample="cubic")


def test_cli(tmp_path, capsys):
    features, labels, guide, _ = scenes.single((120, 180), grid=12)
    emb = write_micro_sam_embeddings(tmp_path / "e.zarr", features, original_size=labels.shape)
    np.save(tmp_path / "image.npy", guide)
    np.save(tmp_path / "small.npy", guide[:100])
    assert "--image" in run_fails(capsys, tmp_path, "render", emb, "-o", tmp_path / "a.png", "--upsample", "guided")
    err = run_fails(capsys, tmp_path, "render", emb, "-o", tmp_path / "a.zarr", "--upsample", "guided",
                 "--image", tmp_path / "small.npy")
    assert "[100, 180]" in err and "[120, 180]" in err
    run_fails(capsys, tmp_path, "render", emb, emb, "-o", tmp_path / "many", "--upsample", "guided",
           "--image", tmp_path / "image.npy")
    for ext in (".png", ".zarr"):
        assert main(["render", str(emb), "-o", str(tmp_path / f"g{ext}"), "--upsample", "guided", "--image",
                     str(tmp_path / "image.npy"), "--pixel-size", "1", "--sigma-range", "0.2", "-q"]) == 0
    rgb, _, attrs = read_ome_zarr(tmp_path / "g.zarr")
    np.testing.assert_array_equal(rgb, embedview.read_image(tmp_path / "g.png"))
    assert "0.2" in str(attrs) and "guided" in str(attrs)
    with Image.open(tmp_path / "g.png") as png:  # the PNG records the numbers used too
        recorded = json.loads(png.text["embedview"])["upsample"]
    assert recorded["method"] == "guided" and recorded["sigma_range"] == 0.2 and recorded["sigma_spatial"] == 1.0
    assert main(["render", str(emb), str(emb), "-o", str(tmp_path / "two"), "--upsample", "bilinear",
                 "--pixel-size", "2", "-q"]) == 0


def test_render_plane_draws_one_slice_as_the_whole_stack():
    features, labels, guide, _ = scenes.stack(shape=(90, 120), grid=8)
    up = embedview.Upsample("guided", guide=guide, sigma_range=0.2)
    vis = embedview.visualize(features, original_size=labels.shape[1:], pixel_size=1, upsample=up)
    src = embedview.open_source(features, labels.shape[1:])
    _, components = embedview.render_plane(src, vis.basis, 1, z=1, upsample=up)
    np.testing.assert_array_equal(components, vis.components[1])


@pytest.mark.parametrize("method", ["bilinear", "guided"])
def test_torch_equals_numpy_within_one_level(tiled_scene, method):
    """The whole drawing path on the PyTorch engine (torch:cpu here; CUDA on a GPU machine)."""
    pytest.importorskip("torch")
    group, _, guide, *_ = tiled_scene
    up = embedview.Upsample("guided", guide=guide) if method == "guided" else method
    numpy_vis, = embedview.PCA().fit_transform(group, pixel_size=1, upsample=up)
    torch_vis = embedview.PCA.from_basis(numpy_vis.basis, execution=embedview.Execution(device="torch:cpu")).transform(
        group, pixel_size=1, upsample=up)
    difference = np.abs(torch_vis.rgb.astype(int) - numpy_vis.rgb.astype(int))
    assert difference.max() <= 1
    np.testing.assert_allclose(torch_vis.components, numpy_vis.components, rtol=1e-4, atol=1e-4)


def test_several_inputs_each_guided_by_its_own_image():
    """One basis over two inputs, each drawn guided by its own image: as drawing each alone with that basis."""
    (fa, la, ga, _), (fb, _, gb, _) = scenes.single((120, 180), grid=12), scenes.single((120, 180), grid=12, seed=1)
    ups = [embedview.Upsample("guided", guide=ga), embedview.Upsample("guided", guide=gb)]
    model = embedview.PCA()
    both = model.fit_transform(fa, fb, original_size=la.shape, pixel_size=1, upsample=ups)
    for vis, features, up in zip(both, (fa, fb), ups):
        alone = embedview.PCA.from_basis(model.basis_).transform(features, original_size=la.shape, pixel_size=1,
                                                                 upsample=up)
        np.testing.assert_array_equal(vis.rgb, alone.rgb)
    assert not np.array_equal(both[0].rgb, both[1].rgb)
    with pytest.raises(embedview.EmbedviewError, match="one per input"):
        model.fit_transform(fa, fb, original_size=la.shape, upsample=embedview.Upsample("guided", guide=ga))
    with pytest.raises(embedview.EmbedviewError, match="one entry per input: 2; got 1"):
        model.fit_transform(fa, fb, original_size=la.shape, upsample=ups[:1])
