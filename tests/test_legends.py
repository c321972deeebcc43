"""Legends you can read (issue 11, part 3): the similarity figure's colour bar and query mark, the
PCA figure's explained-variance label, and the montage of a stack."""

import os
from pathlib import Path

import numpy as np
import pytest

import embedview
from _cli import run_fails, run_ok
from embedview._outputs.legend import MARK, PAD, variance_text
from embedview._run.similarity import display_range, similarity_rgb
from embedview._run.visualize import render_plane
from embedview._workflows.figure import GAP, figure_pixel_size, pca_legend
from embedview._workflows.montage import montage_slices

from _fixtures import DATA

IMAGE_2D = np.load(DATA / "2d_image.npy")  # 600 × 900: the figure is drawn at p = 2
STACK = DATA / "3d.zarr"  # 5 × 300 × 400


@pytest.fixture(scope="module")
def stack_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("legends") / "stack.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (5, 300, 400)).astype(np.uint8))
    return path


def marked(panel: np.ndarray) -> np.ndarray:
    return (panel == MARK).all(axis=-1)


# ---------------------------------------------------------------------------------------------
# similarity figures: colour bar and query


def _similarity_figure(tmp_path, capsys, *query):
    np.save(tmp_path / "image.npy", IMAGE_2D)
    run_ok(capsys, "similarity", DATA / "2d.zarr", "-o", tmp_path / "s.png", "--image", tmp_path / "image.npy",
           "-q", *query)
    return embedview.read_image(tmp_path / "s_figure.png")


def test_the_colour_bar_runs_through_the_colours_as_drawn(tmp_path, capsys):
    figure = _similarity_figure(tmp_path, capsys, "--point", "100,150")
    p = figure_pixel_size(IMAGE_2D.shape)
    h, w = -(-600 // p), -(-900 // p)
    assert p == 2 and figure.shape[1] == 3 * w + 2 * GAP and figure.shape[0] > h + 12
    sim = embedview.similarity(DATA / "2d.zarr", point=(100, 150), pixel_size=p)
    panel, away = figure[:h, w + GAP:2 * w + GAP], np.ones((h, w), bool)
    away[50 - 20:50 + 21, 75 - 20:75 + 21] = False  # the query's mark
    np.testing.assert_array_equal(panel[away], sim.rgb[away])  # the panel as drawn
    lo = display_range(sim.components[..., 0])[0]
    # under the similarity panel, one column per output pixel: lo ... 1.0 as the map colours them
    bar = figure[h + PAD:h + PAD + 12, w + GAP:2 * w + GAP]
    expected = similarity_rgb(lo + (1 - lo) * np.linspace(0, 1, w), lo)
    np.testing.assert_array_equal(bar, np.broadcast_to(expected, bar.shape))
    # in order along the colour map: each column's nearest ramp colour moves only up, end to end
    ramp = similarity_rgb(np.linspace(lo, 1, 1000), lo).astype(int)
    nearest = np.abs(bar[0].astype(int)[:, None] - ramp[None]).sum(-1).argmin(1)
    assert nearest[0] < 5 and nearest[-1] > 994 and (np.diff(nearest) >= 0).all()
    assert bar[0, 0].tolist() == [20, 11, 52] and bar[0, -1].tolist() == [252, 255, 164]
    # tick labels (lo, middle, 1.0) under the bar's first, middle and last column
    labels = figure[h + PAD + 12 + 3:, w + GAP - 20:2 * w + GAP + 20].min(axis=-1) < 100
    for column in (20, 20 + (w - 1) // 2, 20 + w - 1):
        assert labels[:, column - 12:column + 12].any()
    assert not (figure[:h, :w] == 255).all(-1).all()  # the image panel is untouched


def test_the_query_point_is_marked_where_it_lies(tmp_path, capsys):
    figure = _similarity_figure(tmp_path, capsys, "--point", "217,345")
    h, w, p = 300, 450, 2
    y, x = 217 // p, 345 // p  # output pixel k covers image pixels [k*p, (k+1)*p)
    for left in (w + GAP, 2 * (w + GAP)):  # on the map and on the overlay
        mark = marked(figure[:h, left:left + w])
        assert mark[y, x]
        ys, xs = np.nonzero(mark)
        assert (ys.mean(), xs.mean()) == (y, x)  # a + centred there
        assert set(ys[xs == x]) == set(range(y - (ys.max() - y), ys.max() + 1))
    assert not marked(figure[:, :w]).any() and not marked(figure[h:]).any()


def test_a_stack_query_is_marked_on_its_slice(tmp_path, capsys, stack_image):
    run_ok(capsys, "similarity", STACK, "--point", "3,120,201", "-o", tmp_path / "t.png", "--image", stack_image, "-q")
    figure = embedview.read_image(tmp_path / "t_figure.png")
    w = 400  # p = 1
    ys, xs = np.nonzero(marked(figure[:300, w + GAP:2 * w + GAP]))
    assert (ys.mean(), xs.mean()) == (120, 201)


def test_a_query_mask_is_outlined(tmp_path, capsys):
    mask = np.zeros(IMAGE_2D.shape, np.uint8)
    mask[200:301, 300:451] = 1
    np.save(tmp_path / "mask.npy", mask)
    figure = _similarity_figure(tmp_path, capsys, "--mask", tmp_path / "mask.npy")
    mark = marked(figure[:300, 450 + GAP:2 * 450 + GAP])
    ys, xs = np.nonzero(mark)
    # output pixels 100..150 × 150..225 hold mask pixels: their outline, nothing inside
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (100, 150, 150, 225)
    assert mark[100, 150:226].all() and mark[150, 150:226].all() and mark[100:151, 150].all()
    assert not mark[101:150, 151:225].any()


# ---------------------------------------------------------------------------------------------
# PCA figures: explained variance


def test_the_variance_formatter():
    assert variance_text([[0.412, 0.12, 0.075]], components=(0, 1, 2), sep="  ") == (
        "R: PC1 41.2%, G: PC2 12.0%, B: PC3 7.5%  (sum 60.7%)")
    assert variance_text([[0.3, 0.1]], components=(2, 0), sep=" ") == "R: PC3 30.0%, G: PC1 10.0% (sum 40.0%)"
    assert variance_text([[0.412, 0.201, 0.093]]) == "R 41.2%, G 20.1%, B 9.3%\n(sum 70.6%)"  # the widget's
    # one formatter: the napari widget's label and the figure's
    defined = [path for path in Path(embedview.__file__).parent.rglob("*.py")
               if "def variance_text(" in path.read_text(encoding="utf-8")]
    assert [p.name for p in defined] == ["legend.py"]


def test_labels_are_drawn_with_the_bitmap_font_too():
    """Pillow < 10.1 has no scalable default font: the bitmap one draws the label, wrapped to fit."""
    from PIL import ImageFont

    from embedview._outputs.legend import line_height, text_strip

    bitmap = ImageFont.load_default_imagefont() if hasattr(ImageFont, "load_default_imagefont") else ImageFont.load_default()
    strip = text_strip("R: PC1 41.2%, G: PC2 12.0%, B: PC3 7.5%  (sum 60.7%)", 120, bitmap)
    assert strip.shape[0] >= 2 * line_height(bitmap) and (strip.min(-1) < 100).any()


def test_the_figure_says_what_each_colour_shows(tmp_path):
    src = embedview.open_source(DATA / "2d.zarr")
    vis = embedview.visualize(src, rgb_components=(2, 0, 1))
    ratio = vis.basis.explained_variance_ratio
    text = pca_legend(vis, rgb_components=(2, 0, 1))
    assert text == (f"R: PC3 {100 * ratio[2]:.1f}%, G: PC1 {100 * ratio[0]:.1f}%, B: PC2 {100 * ratio[1]:.1f}%  "
                    f"(sum {100 * (ratio[0] + ratio[1] + ratio[2]):.1f}%)")
    figure = embedview.figure(src, IMAGE_2D, vis, rgb_components=(2, 0, 1))
    h, w = 300, 450
    rgb, _ = render_plane(src, vis.basis, 2, rgb_components=(2, 0, 1))
    np.testing.assert_array_equal(figure[:h, w + GAP:2 * w + GAP], rgb)
    label = figure[h:]
    assert 12 < label.shape[0] < 60 and (label.min(-1) < 100).sum() > 200  # text, not blank
    assert (label[:, -40:] == 255).all()  # one line, left-aligned: the right end is white
    # a stack fitted per slice: the label is the shown slice's basis
    per = embedview.visualize(STACK, fit="per_slice")
    assert f"{100 * per.bases[3].explained_variance_ratio[0]:.1f}%" in pca_legend(per, 3)
    assert pca_legend(per).startswith("mean of 5 slices:")


# ---------------------------------------------------------------------------------------------
# montage


def test_montage_slices_are_evenly_spaced():
    assert montage_slices(50, 6) == [0, 10, 20, 29, 39, 49]
    assert montage_slices(5, 6) == [0, 1, 2, 3, 4] and montage_slices(5, 3) == [0, 2, 4] and montage_slices(5, 1) == [2]
    for n in range(2, 12):
        chosen = montage_slices(40, n)
        assert len(set(chosen)) == n and chosen[0] == 0 and chosen[-1] == 39


def _tiles(picture, slices, vis, src, image_rows=0):
    """Each slice's tile in ``picture`` equals its picture drawn at the montage's pixel size in
    ``vis``'s basis; the tiles lie on a grid, captions above them."""
    z, h, w = vis.image_shape
    for p in range(1, 20):  # the montage's pixel size: the one whose tiles are in it
        first = render_plane(src, vis.basis, p, slices[0])[0]
        th, tw = first.shape[:2]
        offsets = [c for c in range(0, 80) if np.array_equal(picture[c + image_rows * (th + GAP):][:th, :tw], first)]
        if offsets:
            break
    top = offsets[0]
    cols = (picture.shape[1] + GAP) // (tw + GAP)
    cell = top + th + image_rows * (th + GAP)
    for k, zz in enumerate(slices):
        y = (k // cols) * (cell + GAP) + top + image_rows * (th + GAP)
        x = (k % cols) * (tw + GAP)
        np.testing.assert_array_equal(picture[y:y + th, x:x + tw], render_plane(src, vis.basis, p, zz)[0])
        assert (picture[y - top:y - top + top, x:x + tw].min(-1) < 100).any()  # its caption
    return p, cols


def test_montage_tiles_are_the_slices_in_one_basis(tmp_path, capsys, stack_image):
    src = embedview.open_source(STACK)
    vis = embedview.visualize(src)
    picture = embedview.montage(src, slices=3)
    _, cols = _tiles(picture, [0, 2, 4], vis, src)
    assert cols == 2  # 3 tiles of 300 × 400: two across
    run_ok(capsys, "render", STACK, "-o", tmp_path / "m.tif", "--montage", "3")
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "m_montage.png"), picture)
    # a stack is not one PNG: `-o X.png --montage` writes the montage itself, and nothing else
    run_ok(capsys, "render", STACK, "-o", tmp_path / "only.png", "--montage", "3")
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "only.png"), picture)
    os.remove(tmp_path / "only.png")
    # automatic with --image on a stack: 6 slices asked, the 5 there, image above PCA
    run_ok(capsys, "render", STACK, "-o", tmp_path / "i.zarr", "--image", stack_image)
    with_image = embedview.read_image(tmp_path / "i_montage.png")
    np.testing.assert_array_equal(with_image, embedview.montage(STACK, stack_image))
    p, _ = _tiles(with_image, [0, 1, 2, 3, 4], vis, src, image_rows=1)
    assert sorted(os.listdir(tmp_path)) == ["i.zarr", "i_figure.png", "i_montage.png", "m.tif", "m_montage.png"]
    embedview.montage(src, stack_image, vis, slices=2, path=tmp_path / "api.png")
    assert embedview.read_image(tmp_path / "api.png").shape[-1] == 3


def test_montage_refuses_bad_input(tmp_path, capsys):
    err = run_fails(capsys, tmp_path, "render", DATA / "2d.zarr", "-o", tmp_path / "a.png", "--montage")
    assert "--montage draws evenly spaced slices of a stack" in err and "2D image" in err
    assert "--montage 0 must be" in run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "a.tif", "--montage", "0")
    run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "a.tif", "--montage", "-2")
    run_fails(capsys, tmp_path, "render", STACK, STACK, "-o", tmp_path / "dir", "--montage", "3")
    from PIL import Image

    Image.fromarray(np.ones((300, 400), np.uint8)).save(tmp_path / "x_montage.png")
    err = run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "x.tif", "--montage", "2",
                    "--mask", tmp_path / "x_montage.png")  # the montage may never replace an input
    assert "the mask" in err
    with pytest.raises(embedview.EmbedviewError, match="slices=0 must be"):
        embedview.montage(STACK, slices=0)
    with pytest.raises(embedview.EmbedviewError, match="a 2D image"):
        embedview.montage(DATA / "2d.zarr")
    with pytest.raises(embedview.EmbedviewError, match=r"as \.png"):
        embedview.montage(STACK, path=tmp_path / "m.tif")
    assert sorted(os.listdir(tmp_path)) == ["x_montage.png"]
