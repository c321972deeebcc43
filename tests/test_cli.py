"""The `embedview` command: render, info, demo, and one clean sentence for every bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

import embedview
from _cli import run_fails, run_ok
from embedview._workflows.demo import DemoEncoder, make_demo_scene, write_demo_embeddings, write_micro_sam_embeddings
from embedview.cli import main

from _readback import read_ome_zarr

SMALL = DemoEncoder(n_channels=16, grid=16)
LAYOUTS = {
    # name: (image shape, tile_shape, halo, tiles, zarr_format)
    "single": ((120, 180), None, None, None, 3),
    "single_zarr2": ((100, 140), None, None, None, 2),
    "stack": ((3, 90, 120), None, None, None, 3),
    "tiled": ((200, 300), (128, 128), (16, 16), None, 3),
    "tiled_stack": ((2, 150, 200), (96, 96), (8, 8), None, 3),
    "masked": ((200, 300), (128, 128), (16, 16), [0, 2, 4], 3),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small synthetic micro_sam containers and their images, plus broken copies."""
    root = tmp_path_factory.mktemp("cli")
    paths = {}
    for name, (shape, tile_shape, halo, tiles, fmt) in LAYOUTS.items():
        image, labels = make_demo_scene(shape)
        np.save(root / f"{name}_image.npy", image)
        paths[name] = write_demo_embeddings(root / f"{name}.zarr", image, labels, tile_shape=tile_shape,
                                            halo=halo, tiles=tiles, encoder=SMALL, zarr_format=fmt)

    missing = root / "missing_attr.zarr"
    shutil.copytree(paths["single"], missing)
    meta = json.loads((missing / "zarr.json").read_text())
    del meta["attributes"]["original_size"]
    (missing / "zarr.json").write_text(json.dumps(meta))

    truncated = root / "truncated.zarr"
    shutil.copytree(paths["single"], truncated)
    chunk = next(p for p in (truncated / "features" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])

    wrong = zarr.open_group(str(root / "wrong_ndim.zarr"), mode="w")
    wrong.attrs.update({"input_size": [256, 256], "original_size": [100, 100]})
    wrong.create_array("features", shape=(16, 16, 16), dtype="float32")[...] = 1

    features = np.stack([SMALL.encode(make_demo_scene((90, 120), seed=z)[0])[None] for z in range(3)])
    features[1, 0, :, 0, :3] = np.nan
    write_micro_sam_embeddings(root / "nan.zarr", features, original_size=(90, 120))

    (root / "plain_folder").mkdir()
    (root / "text.zarr").write_text("not zarr")
    return root, {k: Path(v) for k, v in paths.items()}


# ---------------------------------------------------------------------------------------------
# render


def test_render_png_matches_visualize(tmp_path, capsys, data):
    _, paths = data
    out = tmp_path / "pca.png"
    captured = run_ok(capsys, "render", paths["single"], "-o", out)
    assert "pca.png" in captured.err and captured.out == ""
    vis = embedview.visualize(paths["single"])
    np.testing.assert_array_equal(embedview.read_image(out), vis.rgb)
    with Image.open(out) as img:
        meta = json.loads(img.text["embedview"])
    assert meta["scale"] == list(vis.scale) and meta["translate"] == list(vis.translate)
    assert meta["fit"] == "joint" and meta["normalize"] == "robust"


def test_render_options_reach_visualize(tmp_path, capsys, data):
    _, paths = data
    out = tmp_path / "pca.npz"
    run_ok(capsys, "render", paths["stack"], "-o", out, "--fit", "per_slice", "--normalize", "global",
           "--pixel-size", "2.5", "--components", "4", "--rgb-components", "3,1,0", "-q")
    vis = embedview.visualize(paths["stack"], 4, "per_slice", "global", 2.5, rgb_components=(3, 1, 0))
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["rgb"], vis.rgb)
        np.testing.assert_array_equal(saved["components"], vis.components)
        assert tuple(saved["scale"]) == (1.0, 2.5, 2.5)


@pytest.mark.parametrize("name", ["stack", "tiled_stack"])
def test_render_stack_to_tiff_and_zarr(tmp_path, capsys, data, name):
    _, paths = data
    run_ok(capsys, "render", paths[name], "-o", tmp_path / "pca.tif", "-q")
    run_ok(capsys, "render", paths[name], "-o", tmp_path / "pca.zarr", "-q")
    vis = embedview.visualize(paths[name])
    with tifffile.TiffFile(tmp_path / "pca.tif") as tif:
        np.testing.assert_array_equal(tif.asarray(), vis.rgb)
        assert tif.shaped_metadata[0]["scale"] == list(vis.scale)
    rgb, _, attrs = read_ome_zarr(tmp_path / "pca.zarr")
    np.testing.assert_array_equal(rgb, vis.rgb)
    meta = attrs["embedview"]
    assert meta["translate"] == list(vis.translate) and meta["layout"] == vis.layout


@pytest.mark.parametrize("name", ["single", "tiled", "tiled_stack", "masked"])
def test_render_figure_shows_the_exact_pca(tmp_path, capsys, data, name):
    root, paths = data
    out = tmp_path / "pca.png" if "stack" not in name else tmp_path / "pca.tif"
    run_ok(capsys, "render", paths[name], "-o", out, "--image", root / f"{name}_image.npy", "-q")
    figure = embedview.read_image(tmp_path / "pca_figure.png")
    shape = LAYOUTS[name][0]
    h, w = shape[-2:]  # small images: drawn at image resolution
    assert figure.shape[1:] == (3 * w + 16, 3) and h < figure.shape[0] < h + 60  # the variance label under it
    vis = embedview.visualize(paths[name], pixel_size=1)
    expected = vis.rgb[shape[0] // 2] if len(shape) == 3 else vis.rgb
    np.testing.assert_array_equal(figure[:h, w + 8:2 * w + 8], expected)
    assert (figure[:h, w:w + 8] == 255).all()


def test_render_figure_slice_and_rgb_image(tmp_path, capsys, data):
    root, paths = data
    image = np.load(root / "stack_image.npy")
    np.save(tmp_path / "rgb.npy", np.stack([image] * 3, axis=-1))
    run_ok(capsys, "render", paths["stack"], "-o", tmp_path / "p.zarr", "--image", tmp_path / "rgb.npy",
           "--slice", "0", "-q")
    figure = embedview.read_image(tmp_path / "p_figure.png")
    vis = embedview.visualize(paths["stack"], pixel_size=1)
    np.testing.assert_array_equal(figure[:vis.rgb.shape[1], 128:248], vis.rgb[0])


def test_render_replaces_an_existing_output(tmp_path, capsys, data):
    _, paths = data
    out = tmp_path / "pca.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(out)  # the user's own picture: only with --overwrite
    assert "--overwrite" in run_fails(capsys, tmp_path, "render", paths["single"], "-o", out)
    run_ok(capsys, "render", paths["single"], "-o", out, "-q", "--overwrite")
    run_ok(capsys, "render", paths["single"], "-o", out, "-q")  # embedview's picture now: replaced
    assert embedview.read_image(out).shape[-1] == 3
    assert sorted(os.listdir(tmp_path)) == ["pca.png"]


def test_outputs_never_overwrite_inputs(tmp_path, capsys, data):
    root, paths = data
    copy = tmp_path / "e.zarr"
    shutil.copytree(paths["single"], copy)
    err = run_fails(capsys, tmp_path, "render", copy, "-o", copy)
    assert "would overwrite the embeddings" in err
    run_fails(capsys, tmp_path, "render", copy, "-o", copy / "inside.png")
    image = tmp_path / "x_figure.png"
    Image.fromarray(np.load(root / "single_image.npy")).save(image)
    run_fails(capsys, tmp_path, "render", copy, "-o", tmp_path / "x.png", "--image", image)
    assert embedview.open_source(copy).layout == "single"


def test_omit_nonfinite_draws_black(tmp_path, capsys, data):
    root, _ = data
    out = tmp_path / "pca.tif"
    run_ok(capsys, "render", root / "nan.zarr", "-o", out, "--omit-nonfinite", "-q")
    rgb = tifffile.imread(out)
    assert (rgb[1, 0, :3] == 0).all() and rgb[1, 0, 3:].any() and rgb[0, 0, :3].any()


def test_fit_sample(tmp_path, capsys, data):
    root, _ = data
    out = tmp_path / "sampled.npz"
    run_ok(capsys, "render", root / "stack.zarr", "-o", out, "-q", "--fit-sample", "1000")
    vis, = embedview.PCA(fit_sample=1000).fit_transform(root / "stack.zarr")
    np.testing.assert_array_equal(np.load(out)["rgb"], vis.rgb)


def test_keep_outliers_lets_high_norm_cells_into_the_fit(tmp_path, capsys):
    image, labels = make_demo_scene((300, 400))
    encoder = DemoEncoder(n_channels=32, high_norm_fraction=0.003, high_norm_factor=30)
    path = write_demo_embeddings(tmp_path / "vit.zarr", image, labels, encoder=encoder)
    run_ok(capsys, "render", path, "-o", tmp_path / "robust.npz", "-q")
    run_ok(capsys, "render", path, "-o", tmp_path / "kept.npz", "-q", "--keep-outliers")
    robust, kept = np.load(tmp_path / "robust.npz"), np.load(tmp_path / "kept.npz")
    assert not np.allclose(robust["components"], kept["components"], equal_nan=True)
    vis = embedview.visualize(path)
    assert vis.basis.n_outliers > 0
    np.testing.assert_array_equal(robust["rgb"], vis.rgb)


# ---------------------------------------------------------------------------------------------
# bad input: exit 2, one sentence, nothing written


def test_not_a_container(tmp_path, capsys, data):
    root, _ = data
    for bad in (root / "plain_folder", root / "text.zarr", root / "nothing.zarr", root / "single_image.npy"):
        err = run_fails(capsys, tmp_path, "render", bad, "-o", tmp_path / "out.png")
        assert str(bad) in err


def test_missing_attribute(tmp_path, capsys, data):
    root, _ = data
    err = run_fails(capsys, tmp_path, "render", root / "missing_attr.zarr", "-o", tmp_path / "out.png")
    assert "original_size" in err
    run_fails(capsys, tmp_path, "info", root / "missing_attr.zarr")


def test_wrong_ndim(tmp_path, capsys, data):
    root, _ = data
    err = run_fails(capsys, tmp_path, "render", root / "wrong_ndim.zarr", "-o", tmp_path / "out.png")
    assert "[16, 16, 16]" in err


def test_nan_features_name_the_slice_and_count(tmp_path, capsys, data):
    root, _ = data
    err = run_fails(capsys, tmp_path, "render", root / "nan.zarr", "-o", tmp_path / "out.tif")
    assert "3 cells" in err and "slice 1" in err and "--omit-nonfinite" in err


def test_failure_keeps_the_previous_output(tmp_path, capsys, data):
    root, _ = data
    out = tmp_path / "out.tif"
    tifffile.imwrite(out, np.zeros((4, 4, 3), np.uint8))
    previous = out.read_bytes()
    err = run_fails(capsys, tmp_path, "render", root / "nan.zarr", "-o", out, "--overwrite")
    assert "slice 1" in err and out.read_bytes() == previous


def test_truncated_chunk(tmp_path, capsys, data):
    root, _ = data
    err = run_fails(capsys, tmp_path, "render", root / "truncated.zarr", "-o", tmp_path / "out.png")
    assert "truncated.zarr" in err


@pytest.mark.parametrize("target, match", [
    ("no/such/folder/out.png", "does not exist"),
    ("afile/out.png", "is a file"),
    ("out.jpg", "unknown output extension"),
])
def test_unwritable_output(tmp_path, capsys, data, target, match):
    _, paths = data
    (tmp_path / "afile").write_text("x")
    err = run_fails(capsys, tmp_path, "render", paths["single"], "-o", tmp_path / target)
    assert match in err


def test_too_many_components(tmp_path, capsys, data):
    _, paths = data
    err = run_fails(capsys, tmp_path, "render", paths["single"], "-o", tmp_path / "o.png", "--components", "40")
    assert "40" in err and "16" in err


def test_rgb_components_out_of_range(tmp_path, capsys, data):
    _, paths = data
    run_fails(capsys, tmp_path, "render", paths["single"], "-o", tmp_path / "o.png", "--rgb-components", "0,1,5")


@pytest.mark.parametrize("name", ["stack", "tiled_stack"])
def test_png_for_a_stack(tmp_path, capsys, data, name):
    _, paths = data
    err = run_fails(capsys, tmp_path, "render", paths[name], "-o", tmp_path / "o.png")
    assert ".tif" in err and ".zarr" in err


def test_image_of_the_wrong_shape(tmp_path, capsys, data):
    root, paths = data
    np.save(tmp_path / "small.npy", np.zeros((50, 60), np.uint8))
    before = sorted(os.listdir(tmp_path))
    err = run_fails(capsys, tmp_path, "render", paths["single"], "-o", tmp_path / "o.png",
                    "--image", tmp_path / "small.npy")
    assert "[50, 60]" in err and "[120, 180]" in err
    assert sorted(os.listdir(tmp_path)) == before


def test_bad_slice_and_bad_image(tmp_path, capsys, data):
    root, paths = data
    run_fails(capsys, tmp_path, "render", paths["stack"], "-o", tmp_path / "o.tif",
              "--image", root / "stack_image.npy", "--slice", "7")
    run_fails(capsys, tmp_path, "render", paths["stack"], "-o", tmp_path / "o.tif", "--slice", "1")
    (tmp_path / "broken.png").write_bytes(b"nope")
    run_fails(capsys, tmp_path, "render", paths["single"], "-o", tmp_path / "o.png",
              "--image", tmp_path / "broken.png")


@pytest.mark.parametrize("options", [["--fit", "both"], ["--pixel-size", "-1"], ["--components", "0"],
                                     ["--rgb-components", "a,b"], []])
def test_usage_errors_exit_2(tmp_path, capsys, data, options):
    _, paths = data
    argv = ["render", str(paths["single"])] + (["-o", str(tmp_path / "o.png")] if options else []) + options
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# info


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_info_each_layout(capsys, data, name):
    _, paths = data
    shape, tile_shape, halo, tiles, fmt = LAYOUTS[name]
    text = run_ok(capsys, "info", paths[name]).out
    layout = {"single_zarr2": "single", "tiled_stack": "tiled stack", "masked": "tiled"}.get(name, name)
    assert f"layout:            {layout}\n" in text
    assert "channels:          16" in text and "model:             demo (embedview-demo)" in text
    info = json.loads(run_ok(capsys, "info", paths[name], "--json").out)
    assert info["layout"] == layout and info["image_size"] == list(shape[-2:])
    assert info["slices"] == (shape[0] if len(shape) == 3 else None) and info["zarr_format"] == fmt
    assert info["cell_grid"] == [16, 16] and info["micro_sam_version"] == "embedview-demo"
    if tile_shape is None:
        assert info["tiles"] is None
        assert info["cell_size"] == max(shape[-2:]) / 16
    else:
        assert info["tiles"]["tile_shape"] == list(tile_shape) and info["tiles"]["halo"] == list(halo)
    if tiles:
        assert info["tiles"]["missing"] == [1, 3, 5] and "missing tiles:     1, 3, 5 (outside the mask: drawn black)" in text


def test_info_reads_no_features(tmp_path, capsys, data):
    _, paths = data
    copy = tmp_path / "nofeatures.zarr"
    shutil.copytree(paths["tiled"], copy)
    for chunk in (copy / "features").glob("*/c/**/*"):
        if chunk.is_file():  # unreadable chunks of the same size (a missing chunk is refused at open)
            chunk.write_bytes(b"\xff" * chunk.stat().st_size)
    assert json.loads(run_ok(capsys, "info", copy, "--json").out)["tiles"]["present"] == 6


# ---------------------------------------------------------------------------------------------
# as a program


def _python(*args, **kwargs):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120, **kwargs)


def test_python_m_embedview(tmp_path, data):
    root, paths = data
    done = _python("-m", "embedview", "render", paths["tiled"], "-o", tmp_path / "p.tif",
                   "--image", root / "tiled_image.npy")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.tif").exists() and (tmp_path / "p_figure.png").exists()
    assert "p.tif" in done.stderr and "p_figure.png" in done.stderr
    failed = _python("-m", "embedview", "render", root / "nan.zarr", "-o", tmp_path / "q.png")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr


def test_help_is_light(capsys):
    done = _python("-m", "embedview", "--help")
    assert done.returncode == 0 and "render" in done.stdout and "demo" in done.stdout
    for command in ("render", "info", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and "usage: embedview " + command in capsys.readouterr().out
    heavy = _python("-c", "import sys, embedview.cli; print(sorted({'numpy', 'zarr', 'tqdm', 'tifffile', 'PIL'} & set(sys.modules)))")
    assert heavy.stdout.strip() == "[]"
