"""The command's workflows are library functions: embedview.figure, embedview.describe, ..."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import embedview
from embedview.cli import main

from _fixtures import DATA

CLI = Path(embedview.__file__).with_name("cli.py")


def test_figure_from_python_is_the_commands_figure(tmp_path):
    image = np.load(DATA / "2d_image.npy")
    np.save(tmp_path / "image.npy", image)
    assert main(["render", str(DATA / "2d.zarr"), "-o", str(tmp_path / "pca.png"),
                 "--image", str(tmp_path / "image.npy"), "-q"]) == 0
    from_cli = embedview.read_image(tmp_path / "pca_figure.png")
    picture = embedview.figure(DATA / "2d.zarr", image)
    assert picture.dtype == np.uint8 and picture.shape[-1] == 3
    np.testing.assert_array_equal(picture, from_cli)
    # with a visualization: its basis, and the file written is the array returned
    src = embedview.open_source(DATA / "2d.zarr")
    vis = embedview.visualize(src, normalize="global")
    again = embedview.figure(src, tmp_path / "image.npy", vis, path=tmp_path / "f.png")
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "f.png"), again)
    assert not np.array_equal(again, picture)  # another colour range: another middle panel


def test_figure_refuses_a_wrong_image_or_output(tmp_path):
    image = np.load(DATA / "2d_image.npy")
    with pytest.raises(embedview.EmbedviewError, match="has shape"):
        embedview.figure(DATA / "2d.zarr", image[:-1])
    vis = embedview.visualize(DATA / "2d.zarr")
    with pytest.raises(embedview.EmbedviewError, match=r"pass figure\(source, image, vis\)"):
        embedview.figure(vis, image)
    with pytest.raises(embedview.EmbedviewError, match="visualization of these embeddings"):
        embedview.figure(DATA / "2d_tall.zarr", image, vis)
    with pytest.raises(embedview.EmbedviewError, match=r"as \.png; got path="):
        embedview.figure(DATA / "2d.zarr", image, path=tmp_path / "f.tif")
    assert not list(tmp_path.iterdir())
    from PIL import Image

    Image.fromarray(image.astype(np.uint8)).save(tmp_path / "image.png")
    before = (tmp_path / "image.png").read_bytes()
    with pytest.raises(embedview.EmbedviewError, match="image"):  # never over its own input
        embedview.figure(DATA / "2d.zarr", tmp_path / "image.png", path=tmp_path / "image.png")
    assert (tmp_path / "image.png").read_bytes() == before


def test_describe_is_what_info_prints(capsys):
    info = embedview.describe(DATA / "tiled2d.zarr")
    assert info["layout"] == "tiled" and info["tiles"]["count"] >= 1
    assert main(["info", str(DATA / "tiled2d.zarr"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(info))
    assert main(["info", str(DATA / "tiled2d.zarr")]) == 0
    assert capsys.readouterr().out.strip() == embedview.format_info(info)


def test_cli_keeps_no_workflow_of_its_own():
    defined = {node.name for node in ast.parse(CLI.read_text()).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & {"describe", "format_info", "_zarr_format", "similarity_map", "demo", "_demo"}
    for name in ("figure", "describe", "format_info"):
        assert name in embedview.__all__ and callable(getattr(embedview, name))


def test_figure_of_a_stack_is_the_commands_figure(tmp_path):
    """A stack's figure shows slice z (default the middle one), as `render --image --slice`."""
    image = np.random.default_rng(0).integers(0, 255, (5, 300, 400)).astype(np.uint8)
    np.save(tmp_path / "stack.npy", image)
    assert main(["render", str(DATA / "3d.zarr"), "-o", str(tmp_path / "pca.tif"),
                 "--image", str(tmp_path / "stack.npy"), "--slice", "3", "-q"]) == 0
    from_cli = embedview.read_image(tmp_path / "pca_figure.png")
    np.testing.assert_array_equal(embedview.figure(DATA / "3d.zarr", image, z=3), from_cli)
    vis = embedview.visualize(DATA / "3d.zarr")
    np.testing.assert_array_equal(embedview.figure(DATA / "3d.zarr", image, vis, z=3), from_cli)
    with pytest.raises(embedview.EmbedviewError, match="has shape"):
        embedview.figure(DATA / "3d.zarr", image[:, :-1])
