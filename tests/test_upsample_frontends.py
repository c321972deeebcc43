"""Issue 11: the figure and the montage draw their PCA with the main output's upsampling.

``render --image IMG --upsample guided`` draws the figure's PCA panel and the montage's tiles
through the one drawing path (:func:`embedview._run.visualize.render_plane`) at their own pixel
size, guided by the image (for a stack, each slice by its plane); so do ``embedview.figure`` and
``embedview.montage`` with ``upsample=``. (The napari widget's choice is tested in test_napari.py.)
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import embedview
from _cli import run_ok
from embedview import Upsample
from embedview._run.visualize import render_plane
from embedview._workflows.figure import GAP, LEGEND_ROOM, figure_pixel_size

from _fixtures import DATA

IMAGE_2D = DATA / "2d_image.npy"  # 600 × 900: the figure is drawn at p = 2
STACK = DATA / "3d.zarr"  # 5 × 300 × 400: figure and montage at p = 1


@pytest.fixture(scope="module")
def stack_image(tmp_path_factory):
    """A uint16 stack with edges that move from slice to slice (discs on a ramp, plus noise)."""
    z, y, x = np.mgrid[0:5, 0:300, 0:400]
    discs = ((y - 150) ** 2 + (x - 120 - 30 * z) ** 2 < 70 ** 2) | ((y - 60) ** 2 + (x - 320) ** 2 < (20 + 8 * z) ** 2)
    image = 20000 * discs + 30 * x + np.random.default_rng(1).normal(0, 300, discs.shape)
    path = tmp_path_factory.mktemp("frontends") / "stack.npy"
    np.save(path, np.clip(image, 0, 65535).astype(np.uint16))
    return path


def middle_panel(figure: np.ndarray, shape) -> np.ndarray:
    h, w = shape[:2]
    return figure[:h, w + GAP:2 * w + GAP]


def rows_holding(picture: np.ndarray, tile: np.ndarray, x: int) -> list[int]:
    """The rows ``y`` where ``picture[y:, x:]`` starts with exactly ``tile``."""
    th, tw = tile.shape[:2]
    return [y for y in range(picture.shape[0] - th + 1) if np.array_equal(picture[y:y + th, x:x + tw], tile)]


def test_the_figure_panel_is_drawn_with_the_upsampling(tmp_path, capsys):
    src = embedview.open_source(DATA / "2d.zarr")
    vis = embedview.visualize(src)
    image = np.load(IMAGE_2D)
    p = figure_pixel_size(src.image_shape, extra_height=LEGEND_ROOM)
    assert p == 2
    nearest = render_plane(src, vis.basis, p)[0]
    for method in ("guided", "bilinear"):
        run_ok(capsys, "render", DATA / "2d.zarr", "-o", tmp_path / f"{method}.png", "--image", IMAGE_2D,
               "--upsample", method)
        figure = embedview.read_image(tmp_path / f"{method}_figure.png")
        up = Upsample("guided", guide=image) if method == "guided" else method
        expected = render_plane(src, vis.basis, p, upsample=up)[0]
        assert expected.shape == nearest.shape == (300, 450, 3)
        panel = middle_panel(figure, expected.shape)
        np.testing.assert_array_equal(panel, expected)
        assert (panel != nearest).any(axis=-1).mean() > 0.3, method
        # the public figure() with upsample= draws the same figure ("guided": by its image)
        np.testing.assert_array_equal(embedview.figure(src, image, vis, upsample=method), figure)
    # without --upsample the panel is the nearest drawing, as before
    run_ok(capsys, "render", DATA / "2d.zarr", "-o", tmp_path / "n.png", "--image", IMAGE_2D)
    np.testing.assert_array_equal(middle_panel(embedview.read_image(tmp_path / "n_figure.png"), nearest.shape),
                                  nearest)


def test_the_montage_and_stack_figure_are_drawn_with_the_upsampling(tmp_path, capsys, stack_image):
    src = embedview.open_source(STACK)
    vis = embedview.visualize(src)
    image = np.load(stack_image)
    up = Upsample("guided", guide=image)  # the whole stack: slice z is guided by its plane
    run_ok(capsys, "render", STACK, "-o", tmp_path / "s.tif", "--image", stack_image, "--upsample", "guided")
    montage = embedview.read_image(tmp_path / "s_montage.png")
    figure = embedview.read_image(tmp_path / "s_figure.png")
    assert montage.shape[1] == 3 * 400 + 2 * GAP  # 5 slices, three across at p = 1

    # montage tiles: slices 0, 1, 2 in the first row, each PCA tile under its image tile
    ys = set()
    for k in range(3):
        guided = render_plane(src, vis.basis, 1, k, upsample=up)[0]
        nearest = render_plane(src, vis.basis, 1, k)[0]
        assert (guided != nearest).any(axis=-1).mean() > 0.3
        x = k * (400 + GAP)
        found = rows_holding(montage, guided, x)
        assert len(found) == 1, found
        ys.add(found[0])
        assert not rows_holding(montage, nearest, x)
    assert len(ys) == 1  # one row of tiles
    # the figure's PCA panel: the middle slice (2)
    expected = render_plane(src, vis.basis, 1, 2, upsample=up)[0]
    np.testing.assert_array_equal(middle_panel(figure, expected.shape), expected)

    # the public montage() and figure() with upsample= draw the same pictures
    np.testing.assert_array_equal(embedview.montage(src, stack_image, vis, upsample="guided"), montage)
    np.testing.assert_array_equal(embedview.montage(src, image, vis, upsample=up), montage)
    np.testing.assert_array_equal(embedview.figure(src, stack_image, vis, upsample="guided"), figure)
    # `-o X.png --montage` on a stack writes the montage itself, drawn alike
    run_ok(capsys, "render", STACK, "-o", tmp_path / "only.png", "--montage", "6", "--image", stack_image,
           "--upsample", "guided")
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "only.png"), montage)


def test_bad_upsample_of_figures_and_montages(tmp_path, stack_image):
    src = embedview.open_source(STACK)
    with pytest.raises(embedview.EmbedviewError, match="follows the edges of the image: pass the image"):
        embedview.montage(src, upsample="guided")
    with pytest.raises(embedview.EmbedviewError, match="follows the edges of the image: pass the image"):
        embedview.movie(src, tmp_path / "m.gif", upsample="guided")
    with pytest.raises(embedview.EmbedviewError, match="upsample method must be one of"):
        embedview.figure(src, stack_image, upsample="cubic", path=tmp_path / "f.png")
    with pytest.raises(embedview.EmbedviewError, match=r"has shape \[600, 900\]"):
        embedview.montage(src, stack_image, upsample=Upsample("guided", guide=np.load(IMAGE_2D)),
                          path=tmp_path / "m.png")
    assert os.listdir(tmp_path) == []
