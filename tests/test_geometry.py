"""Property tests of the exact geometry (tiles, cell footprints, output rasters)."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedview import EmbedviewError
from embedview._common.geometry import CellGrid, OutputGrid, Tiling, sam_cell_size

sizes = st.integers(1, 3000)


@settings(max_examples=150, deadline=None)
@given(h=sizes, w=sizes, th=st.integers(16, 1024), tw=st.integers(16, 1024),
       hy=st.integers(0, 256), hx=st.integers(0, 256))
def test_every_pixel_is_in_exactly_one_inner_block(h, w, th, tw, hy, hx):
    tiling = Tiling((h, w), (th, tw), (hy, hx))
    count = np.zeros((h, w), np.int32)
    for tile in range(tiling.n_tiles):
        (y0, y1), (x0, x1) = tiling.inner(tile)
        (oy0, oy1), (ox0, ox1) = tiling.outer(tile)
        assert 0 <= oy0 <= y0 < y1 <= oy1 <= h and 0 <= ox0 <= x0 < x1 <= ox1 <= w
        assert y0 - oy0 == min(hy, y0) and x0 - ox0 == min(hx, x0)
        count[y0:y1, x0:x1] += 1
    assert (count == 1).all()


@settings(max_examples=200, deadline=None)
@given(h=sizes, w=sizes, g=st.sampled_from([16, 37, 64]))
def test_cell_footprints_tile_the_image(h, w, g):
    grid = CellGrid.sam((h, w), (g, g))
    s = grid.cell_size[0]
    assert s == Fraction(max(h, w), g)
    vh, vw = grid.valid_shape
    # valid cells start inside the image, the first invalid one starts at or past its edge
    assert (vh - 1) * s < h <= vh * s and (vw - 1) * s < w <= vw * s
    assert max(vh, vw) == g
    # every pixel centre falls in exactly one valid cell (cells meet edge to edge), in order
    for axis, n in ((0, h), (1, w)):
        cells = grid.cell_of(np.arange(n) + 0.5, axis)
        exact = np.array([int(Fraction(2 * y + 1, 2) / s) for y in range(n)])
        assert (cells == exact).all()
        assert (np.diff(cells) >= 0).all() and 0 <= cells.min() and cells.max() < grid.valid_shape[axis]
        if s >= 1:  # cells at least a pixel wide: each one shows at some pixel, except a last
            # sliver narrower than half a pixel, whose pixel centre lies in the cell before it
            hit = set(cells.tolist())
            missing = set(range(grid.valid_shape[axis])) - hit
            assert missing <= {grid.valid_shape[axis] - 1}
            if missing:
                assert n - (grid.valid_shape[axis] - 1) * s < Fraction(1, 2)


@settings(max_examples=200, deadline=None)
@given(h=sizes, w=sizes, p=st.one_of(st.integers(1, 64), st.floats(0.5, 100.0)))
def test_output_shape_follows_from_pixel_size(h, w, p):
    out = OutputGrid.for_image((h, w), p)
    for n, m in zip((h, w), out.shape):
        assert m == max(1, int(np.ceil(Fraction(n) / Fraction(p).limit_denominator(10**9))))
        # the raster covers the image and overhangs it by less than one output pixel
        assert (m - 1) * p < n <= m * p + 1e-9
    assert out.scale == (float(p), float(p))
    assert out.translate == (p / 2 - 0.5, p / 2 - 0.5)


def test_grid_resolution_output_matches_cells_through_scale_translate():
    # drawn with scale/translate, image pixel y shows output pixel round((y - t) / s) = its cell
    shape = (600, 900)
    grid = CellGrid.sam(shape, (64, 64))
    out = OutputGrid.for_image(shape, grid.cell_size[0])
    assert out.shape == grid.valid_shape
    (s, _), (t, _) = out.scale, out.translate
    ys = np.arange(shape[0])
    shown = np.floor((ys - t) / s + 0.5).astype(int)
    assert (shown == grid.cell_of(ys + 0.5, 0)).all()


@pytest.mark.parametrize("bad", [0, -1, float("nan"), (1, 2, 3), "x"])
def test_bad_pixel_size_is_refused(bad):
    with pytest.raises((EmbedviewError, ValueError)):
        OutputGrid.for_image((10, 10), bad)


def test_bad_tiling_is_refused():
    with pytest.raises(EmbedviewError, match="tile_shape"):
        Tiling((100, 100), (0, 64), (8, 8))


def test_sam_cell_size_is_sixteen_resized_pixels():
    assert sam_cell_size((600, 900), (64, 64)) == Fraction(16 * 900, 1024)
    assert sam_cell_size((1300, 700), (64, 64)) == Fraction(1300, 64)


def test_placer_spans_are_the_pixels_whose_centre_lies_in_the_block():
    """The arithmetic spans equal the brute-force answer over output-long centre arrays."""
    from embedview._inputs.sources import Piece
    from embedview._outputs.render import Placer

    rng = np.random.default_rng(0)
    for trial in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 2000, 2))
        p = [1, 0.3, 14.0625, float(rng.uniform(0.05, 50)), Fraction(7, 3)][trial % 5]
        grid = OutputGrid.for_image(shape, (p, float(rng.uniform(0.1, 40))) if trial % 3 == 0 else p)
        placer = Placer(grid)
        inside = [np.minimum(grid.centres(axis), n - 0.5) for axis, n in enumerate(shape)]
        inner = tuple((a, int(rng.integers(a + 1, n + 1))) for a, n in ((int(rng.integers(0, n)), n) for n in shape))
        piece = Piece(None, None, CellGrid.sam(shape, (64, 64)), inner)
        for axis, (a, b) in enumerate(inner):
            hit = np.nonzero((inside[axis] >= a) & (inside[axis] < b))[0]
            expected = slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0)
            assert placer.spans(piece)[axis] == expected


def test_output_sides_beyond_the_limit_are_refused():
    from embedview._common.geometry import MAX_SIDE

    with pytest.raises(EmbedviewError, match="larger pixel size"):
        OutputGrid.for_image((600, 900), 1e-12)
    assert max(OutputGrid.for_image((MAX_SIDE, 10), 1).shape) == MAX_SIDE
