"""The built-in example: generated scene, demo encoder, micro_sam-layout writer, `embedview demo`."""

import json
from pathlib import Path

import numpy as np
import pytest

import embedview
from embedview._common.geometry import Tiling
from embedview._workflows.demo import (
    CELL_KINDS,
    CELLS_SHAPE,
    DEMO_LAYOUTS,
    MATERIALS,
    ROOT_ATTRIBUTES,
    DemoEncoder,
    LazyFeatures,
    demo_features,
    demo_vit_tokens,
    make_cells_scene,
    make_demo_scene,
    sam_input_size,
    write_demo_embeddings,
    write_micro_sam_embeddings,
)
from embedview._workflows.demo import demo as main_demo
from embedview.cli import main

SMALL = DemoEncoder(n_channels=16, grid=16)
FIXTURE_DIRS = [Path(__file__).parent / "data" / "micro_sam", Path("/work/shared/fixtures/micro_sam")]


def _root_attrs(path):
    """micro_sam's root attributes (without the marker embedview adds to what it writes)."""
    path = Path(path)
    if (path / "zarr.json").exists():
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    else:
        attrs = json.loads((path / ".zattrs").read_text())
    return {k: v for k, v in attrs.items() if k != "embedview"}


def test_scene_has_every_material_and_is_reproducible():
    image, labels = make_demo_scene((150, 240), seed=3)
    assert image.dtype == np.uint8 and labels.shape == image.shape
    assert sorted(np.unique(labels)) == list(range(len(MATERIALS)))
    again, _ = make_demo_scene((150, 240), seed=3)
    np.testing.assert_array_equal(image, again)
    assert make_demo_scene()[0].shape == (600, 900)


def test_stack_scene_differs_between_slices():
    image, labels = make_demo_scene((3, 80, 120))
    assert image.shape == labels.shape == (3, 80, 120)
    assert not np.array_equal(labels[0], labels[1])


@pytest.mark.parametrize("shape, expected", [((600, 900), (683, 1024)), ((100, 2000), (51, 1024)),
                                             ((1300, 700), (1024, 551)), ((576, 576), (1024, 1024))])
def test_sam_input_size(shape, expected):
    assert sam_input_size(shape) == expected


def test_encoder_padding_cells_differ_from_image_cells():
    image, labels = make_demo_scene((100, 200))
    feats = SMALL.encode(image, labels)
    rows = -(-sam_input_size((100, 200), 16)[0] // 16)  # cells holding image content
    content, padding = feats[:, :rows - 1], feats[:, rows:]
    gap = np.linalg.norm(content.mean(axis=(1, 2)) - padding.mean(axis=(1, 2)))
    assert gap > 5 * padding.std(axis=(1, 2)).max()


def test_encoder_high_norm_cells():
    image, labels = make_demo_scene((160, 160))
    plain = DemoEncoder(16, 16).encode(image, labels)
    spiky = DemoEncoder(16, 16, high_norm_fraction=0.01, high_norm_factor=30).encode(image, labels)
    ratio = np.linalg.norm(spiky, axis=0) / np.linalg.norm(plain, axis=0)
    assert int(np.isclose(ratio, 30).sum()) == round(0.01 * 16 * 16)


def test_lazy_features_index_like_arrays():
    x = LazyFeatures((2, 1, 3, 4, 4), lambda z: np.full((1, 3, 4, 4), z, np.float32))
    assert x[1, 0].shape == (3, 4, 4) and float(x[-1].max()) == 1.0
    assert np.asarray(x).shape == x.shape
    with pytest.raises(IndexError):
        x[2]


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("shape, tile_shape, halo, tiles, layout", [
    ((90, 130), None, None, None, "single"),
    ((3, 90, 130), None, None, None, "stack"),
    ((200, 300), (128, 128), (16, 16), None, "tiled"),
    ((2, 150, 200), (96, 96), (8, 8), None, "tiled stack"),
    ((200, 300), (128, 128), (16, 16), [0, 2, 4], "tiled"),
])
def test_writer_layouts_open_as_micro_sam(tmp_path, zarr_format, shape, tile_shape, halo, tiles, layout):
    image, labels = make_demo_scene(shape)
    path = write_demo_embeddings(tmp_path / "e.zarr", image, labels, tile_shape=tile_shape, halo=halo,
                                 tiles=tiles, encoder=SMALL, zarr_format=zarr_format)
    src = embedview.open_source(path)
    assert src.layout == layout and src.image_shape == shape[-2:] and src.n_channels == 16
    assert src.n_slices == (shape[0] if len(shape) == 3 else None)
    attrs = _root_attrs(path)
    assert list(attrs) == list(ROOT_ATTRIBUTES)
    if tile_shape is None:
        assert attrs["original_size"] == list(shape[-2:]) and attrs["tile_shape"] is None
    else:
        assert attrs["input_size"] is None and attrs["tile_shape"] == list(tile_shape)
        expected = sorted(tiles) if tiles else list(range(Tiling(shape[-2:], tile_shape, halo).n_tiles))
        assert list(src.present_tiles) == expected
        assert src.metadata.get("tiles_in_mask") == (tiles and sorted(tiles))
    assert embedview.visualize(src).rgb.shape[-1] == 3


def test_writer_matches_micro_sam_tile_metadata(tmp_path):
    """Tile attributes as micro_sam writes them (compared with a real micro_sam file where present)."""
    image, labels = make_demo_scene((900, 1100))
    path = write_demo_embeddings(tmp_path / "t.zarr", image, labels, tile_shape=(512, 512), halo=(64, 64),
                                 encoder=DemoEncoder(8, 64))
    ours = json.loads((Path(path) / "features" / "4" / "zarr.json").read_text())
    assert ours["attributes"] == {"original_size": [452, 640], "input_size": [723, 1024]}
    assert ours["chunk_grid"]["configuration"]["chunk_shape"] == [1, 8, 64, 64]
    real = next((d / "tiled2d.zarr" for d in FIXTURE_DIRS if (d / "tiled2d.zarr").exists()), None)
    if real is None:
        pytest.skip("micro_sam fixtures not present")
    theirs = json.loads((real / "features" / "4" / "zarr.json").read_text())
    assert theirs["attributes"] == ours["attributes"]
    assert json.loads((real / "features" / "zarr.json").read_text())["attributes"] == \
        json.loads((Path(path) / "features" / "zarr.json").read_text())["attributes"]
    assert list(_root_attrs(real)) == list(_root_attrs(path))


def test_writer_keeps_nan_and_rejects_bad_shapes(tmp_path):
    features = np.zeros((1, 4, 8, 8), np.float32)
    features[0, :, 1, 1] = np.nan
    path = write_micro_sam_embeddings(tmp_path / "n.zarr", features, original_size=(50, 60))
    stored = np.asarray(embedview.open_source(path).read(embedview.open_source(path).pieces()[0]))
    assert np.isnan(stored[:, 1, 1]).all()
    with pytest.raises(embedview.EmbedviewError, match="expected"):
        write_micro_sam_embeddings(tmp_path / "b.zarr", np.zeros((4, 8, 8)), original_size=(50, 60))
    with pytest.raises(embedview.EmbedviewError, match="tile ids"):
        write_micro_sam_embeddings(tmp_path / "b.zarr", {9: features}, original_size=(50, 60),
                                   tile_shape=(32, 32))
    assert not (tmp_path / "b.zarr").exists()


def test_demo_features_tiles_follow_tiling():
    image, _ = make_demo_scene((100, 150))
    tiles = demo_features(image, tile_shape=(64, 64), halo=(8, 8), tiles=[1, 4], encoder=SMALL)
    assert sorted(tiles) == [1, 4] and tiles[4].shape == (1, 16, 16, 16)


def test_demo_materials_get_distinct_colours(tmp_path):
    image, labels = make_demo_scene()
    path = write_demo_embeddings(tmp_path / "d.zarr", image, labels)
    vis = embedview.visualize(path, pixel_size=1)
    # Material means away from material borders (cells straddling two materials mix them).
    inner = [labels == m for m in range(len(MATERIALS))]
    means = np.array([vis.rgb[mask].mean(axis=0) for mask in inner])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[np.triu_indices(len(MATERIALS), 1)].min() > 60


DEMO_FILES = ["embeddings.zarr", "image.png", "labels.png", "pca.png", "pca_figure.png", "stack.tif",
              "stack_embeddings.zarr", "tiled_embeddings.zarr", "tiled_image.tif", "tiled_stack.tif",
              "tiled_stack_embeddings.zarr", "vit_tokens.npy"]


def test_cell_scene_has_every_kind_and_is_reproducible():
    image, labels = make_cells_scene(seed=2)
    assert image.shape == labels.shape == CELLS_SHAPE and image.dtype == np.uint8
    assert sorted(np.unique(labels)) == list(range(len(CELL_KINDS)))
    np.testing.assert_array_equal(image, make_cells_scene(seed=2)[0])
    # fluorescence-like: a dark background, bright cells
    assert np.median(image[labels == 0]) < 40 < np.median(image[labels == 1])


def test_cell_stack_is_a_z_series_through_the_same_cells():
    image, labels = make_cells_scene((6, 128, 160))
    cells = [(labels[z] > 0).mean() for z in range(6)]
    assert image.shape == (6, 128, 160) and min(cells) > 0
    overlap = ((labels[2] > 0) & (labels[3] > 0)).sum() / max(1, ((labels[2] > 0) | (labels[3] > 0)).sum())
    assert overlap > 0.5  # neighbouring slices cut mostly through the same cells
    with pytest.raises(embedview.EmbedviewError, match="at least 64"):
        make_cells_scene((40, 40))


def test_vit_tokens_follow_the_preprocessing(tmp_path):
    image, labels = make_cells_scene((300, 400))
    tokens = demo_vit_tokens(image, labels)
    assert tokens.shape == (5 + 14 * 14, 96) and tokens.dtype == np.float32
    src = embedview.from_tokens(tokens, image_size=(300, 400), patch_size=16, prefix_tokens=5,
                                preprocess=embedview.Preprocess(resize=256, crop=(224, 224)))
    vis = embedview.visualize(src, pixel_size=1)
    drawn = np.isfinite(vis.components[..., 0])
    # resized to 256 × 341, cropped at (16, 58): image rows 18.75 to 281.25, columns 68.0 to 330.8
    assert drawn[19:281, 68:331].all() and not drawn[:18].any() and not drawn[:, :67].any()
    assert not drawn[282:].any() and not drawn[:, 331:].any()


def test_demo_command_writes_every_layout(tmp_path, capsys):
    out = tmp_path / "new" / "demo"
    written = main_demo(out, quiet=True)
    assert capsys.readouterr() == ("", "")
    assert sorted(p.name for p in out.iterdir()) == DEMO_FILES
    assert sorted(p.name for p in written) == DEMO_FILES
    for name, (shape, tile_shape, halo) in DEMO_LAYOUTS.items():
        image_file = out / ("image.png" if name == "image" else f"{name}.tif")
        embeddings = out / ("embeddings.zarr" if name == "image" else f"{name.replace('_image', '')}_embeddings.zarr")
        assert embedview.read_image(image_file).shape == shape
        src = embedview.open_source(embeddings)
        assert src.layout == {"image": "single", "stack": "stack"}.get(name, name.replace("_", " ").replace(" image", ""))
        assert src.image_shape == shape[-2:] and src.n_slices == (shape[0] if len(shape) == 3 else None)
        if tile_shape:
            assert src.tiling.tile_shape == tile_shape and src.tiling.halo == halo
    attrs = _root_attrs(out / "embeddings.zarr")
    assert attrs["input_size"] == [768, 1024] and attrs["original_size"] == [768, 1024]
    assert attrs["model_type"] == "demo"
    assert embedview.read_image(out / "labels.png").shape == (768, 1024)
    assert embedview.read_image(out / "pca.png").shape == (48, 64, 3)
    assert embedview.read_image(out / "pca_figure.png").shape[-1] == 3


def test_demo_cell_kinds_get_distinct_colours(tmp_path):
    """The PCA picture shows the cells: every kind's mean colour differs from every other's."""
    main_demo(tmp_path, quiet=True)
    labels = embedview.read_image(tmp_path / "labels.png")
    vis = embedview.visualize(tmp_path / "embeddings.zarr", pixel_size=1)
    means = np.array([vis.rgb[labels == kind].mean(axis=0) for kind in range(len(CELL_KINDS))])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[np.triu_indices(len(CELL_KINDS), 1)].min() > 15


def test_readme_points_lie_on_granular_cells(tmp_path):
    """The README's similarity queries start on a granular cell (2D, and the stack's middle slice)."""
    labels = make_cells_scene(DEMO_LAYOUTS["image"][0], seed=0)[1]
    assert CELL_KINDS[labels[441, 747]] == "granular cell"
    stack_labels = make_cells_scene(DEMO_LAYOUTS["stack"][0], seed=1)[1]
    assert CELL_KINDS[stack_labels[3, 303, 462]] == "granular cell"


def test_demo_command_reports_and_reruns(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "pca.png" in err and "tiled_stack_embeddings.zarr" in err
    assert main(["demo", "-o", str(tmp_path), "-q"]) == 0  # replaces its own files
    assert sorted(p.name for p in tmp_path.iterdir()) == DEMO_FILES


def test_demo_into_a_file_fails(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "-o", str(target / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embedview: error: ") and err.count("\n") == 1
