"""The upsampling kernel (nearest, bilinear, guided) of both engines against a literal reference.

The numpy kernel (``embedview._model.upsample.upsample_cells``) and the PyTorch one
(``TorchEngine.upsample``, run on PyTorch's CPU build) are held to the same per-pixel reference
(``tests/_upsample_reference.py``) on tiny random cases, and to each other on a larger one.
"""

import importlib
import importlib.util
from fractions import Fraction
from functools import cache

import numpy as np
import pytest

from _upsample_reference import nearest_cell, reference_upsample
from embedview._common.geometry import CellGrid

NUMPY_MODULE = "embedview._model.upsample"


def _numpy_kernel():
    # skipped only while the module is not written yet; once it exists, errors importing it fail
    if importlib.util.find_spec(NUMPY_MODULE) is None:
        pytest.skip(f"{NUMPY_MODULE} does not exist yet")
    return importlib.import_module(NUMPY_MODULE).upsample_cells


def _torch_engine():
    pytest.importorskip("torch")
    from embedview._model.engines import engine_for

    return engine_for("torch:cpu")


@pytest.fixture(params=["numpy", "torch"])
def kernel(request):
    return _numpy_kernel() if request.param == "numpy" else _torch_engine().upsample


#: Each case: method, guide channels, options. Guided sigmas keep every weight sum far above
#: float32's underflow, where the float64 reference and the float32 kernels could differ.
CASES = {
    "nearest": ("nearest", 0, {}),
    "bilinear": ("bilinear", 0, {}),
    "guided-r1-g1": ("guided", 1, {}),
    "guided-r2-g3": ("guided", 3, dict(radius=2, sigma_spatial=0.8, sigma_range=0.25)),
    "guided-r1-g3": ("guided", 3, dict(radius=1, sigma_spatial=1.5, sigma_range=0.3)),
    "guided-r2-g1": ("guided", 1, dict(radius=2, sigma_spatial=2.0, sigma_range=0.15)),
}


def _coords(rng, n_valid, n):
    """Cell coordinates: random ones past both edges, and the exact centres, half-way points and edges."""
    special = [-1.5, -1.0, -0.5, -0.25, 0.0, 0.5, 1.0, n_valid - 1.5, n_valid - 1.0, n_valid - 0.5, n_valid + 0.3]
    return np.concatenate([rng.uniform(-1.6, n_valid + 0.6, n), special])


def _case(name, seed, k=3, valid=(5, 6), halo=(2, 1), size=(9, 8)):
    """A piece: cells (halo cells past `valid` hold 1e6, which must never show), some NaN cells and
    NaN cell guides, non-integer output coordinates; and the keyword arguments for the kernel."""
    method, g, options = CASES[name]
    rng = np.random.default_rng(seed)
    h, w = valid[0] + halo[0], valid[1] + halo[1]
    cells = np.full((k, h, w), 1e6, np.float32)
    cells[:, : valid[0], : valid[1]] = rng.normal(5, 10, (k,) + valid)
    dead = rng.random(valid) < 0.15
    cells[:, : valid[0], : valid[1]][:, dead] = np.nan
    rows, cols = _coords(rng, valid[0], size[0]), _coords(rng, valid[1], size[1])
    kwargs = dict(options)
    if method == "guided":
        cell_guide = rng.random((g, h, w)).astype(np.float32)
        cell_guide[:, rng.random((h, w)) < 0.1] = np.nan
        kwargs["cell_guide"] = cell_guide
        kwargs["pixel_guide"] = rng.random((rows.size, cols.size, g)).astype(np.float32)
    return cells, rows, cols, valid, method, kwargs


@cache
def _expected(name, seed):
    cells, rows, cols, valid, method, kwargs = _case(name, seed)
    return reference_upsample(cells, rows, cols, valid, method, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(kernel, name, seed):
    cells, rows, cols, valid, method, kwargs = _case(name, seed)
    got = kernel(cells, rows, cols, valid, method, **kwargs)
    expected = _expected(name, seed)
    assert got.dtype == np.float32 and got.shape == (rows.size, cols.size, cells.shape[0])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * 10)
    assert np.nanmax(np.abs(got)) < 1e5  # no halo cell (1e6) leaks in


@pytest.mark.parametrize("seed", [0, 1])
def test_nearest_is_a_bit_exact_gather(kernel, seed):
    cells, rows, cols, valid, _, _ = _case("nearest", seed)
    n_y = [nearest_cell(u, valid[0]) for u in rows]
    n_x = [nearest_cell(u, valid[1]) for u in cols]
    expected = np.moveaxis(cells[:, n_y][:, :, n_x], 0, -1)
    got = kernel(cells, rows, cols, valid, "nearest")
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_nearest_places_cells_as_cell_grid_does(kernel):
    """Output pixel centres mapped to cell coordinates give CellGrid.cell_of's cells, bit for bit."""
    grid = CellGrid((Fraction(-3, 2), Fraction(2)), (Fraction(225, 16), Fraction(10)), (5, 7), (60, 62))
    cells = np.random.default_rng(3).normal(size=(3,) + grid.shape).astype(np.float32)
    centres = [np.arange(0, 64, 0.5) + 0.25, np.arange(0, 66) + 0.5]  # pixel size 0.5 along y, 1 along x
    u = [(c - float(grid.origin[a])) / float(grid.cell_size[a]) - 0.5 for a, c in enumerate(centres)]
    got = kernel(cells, u[0], u[1], grid.valid_shape, "nearest")
    iy, ix = (grid.cell_of(c, a) for a, c in enumerate(centres))
    np.testing.assert_array_equal(got, np.moveaxis(cells[:, iy][:, :, ix], 0, -1))


@pytest.mark.parametrize("method", ["bilinear", "guided"])
def test_footprint_is_the_nearest_one(kernel, method):
    cells, rows, cols, valid, _, kwargs = _case("guided-r2-g3", 4)
    nearest = kernel(cells, rows, cols, valid, "nearest")
    got = kernel(cells, rows, cols, valid, method, **(kwargs if method == "guided" else {}))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(nearest))


def test_guided_without_any_weight_takes_the_nearest_cell(kernel):
    """A pixel guide far from every cell's: all range weights are exactly 0, the nearest cell is taken."""
    cells, rows, cols, valid, _, kwargs = _case("guided-r1-g3", 5)
    kwargs["pixel_guide"] = np.full_like(kwargs["pixel_guide"], 50.0)
    got = kernel(cells, rows, cols, valid, "guided", **kwargs)
    np.testing.assert_array_equal(got, kernel(cells, rows, cols, valid, "nearest"))


def test_bilinear_is_exact_at_cell_centres_and_clamps_at_edges(kernel):
    cells = np.arange(12, dtype=np.float32).reshape(1, 3, 4) * 1.5
    u = np.array([-0.5, 0.0, 1.0, 2.0, 2.5])  # -0.5 / 2.5: half a cell past the edge
    v = np.array([-0.75, 0.0, 1.5, 3.0, 3.25])
    got = kernel(cells, u, v, (3, 4), "bilinear")[..., 0]
    expected = np.array([[0, 0, 2.25, 4.5, 4.5], [0, 0, 2.25, 4.5, 4.5], [6, 6, 8.25, 10.5, 10.5],
                         [12, 12, 14.25, 16.5, 16.5], [12, 12, 14.25, 16.5, 16.5]], np.float32)
    np.testing.assert_array_equal(got, expected)


def test_other_dtypes_and_layouts_give_the_same_result(kernel):
    """float64 cells and guides, strided and Fortran-ordered arrays: the float32 C-ordered result."""
    cells, rows, cols, valid, method, kwargs = _case("guided-r1-g3", 8)
    expected = kernel(cells, rows, cols, valid, method, **kwargs)
    wide = np.zeros((cells.shape[0], cells.shape[1], 2 * cells.shape[2]))
    wide[:, :, ::2] = cells
    got = kernel(wide[:, :, ::2], rows, cols, list(valid), method, **{
        **kwargs, "cell_guide": kwargs["cell_guide"].astype(np.float64),
        "pixel_guide": np.asfortranarray(kwargs["pixel_guide"])})
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_empty_output(kernel):
    cells = np.ones((3, 2, 2), np.float32)
    assert kernel(cells, np.zeros(0), np.zeros(4), (2, 2), "bilinear").shape == (0, 4, 3)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "guided"])
def test_numpy_and_torch_agree_on_a_larger_piece(method):
    """200×300 output pixels of a 16×22-cell piece (k=3, 3 guide channels), default sigmas."""
    upsample_cells, engine = _numpy_kernel(), _torch_engine()
    rng = np.random.default_rng(7)
    valid, k = (15, 20), 3
    cells = rng.normal(2, 5, (k, 16, 22)).astype(np.float32)
    cells[:, rng.random((16, 22)) < 0.05] = np.nan
    rows = (np.arange(200) + 0.5) / (200 / 15) - 0.5  # 13.3 pixels per cell along y, 15 along x
    cols = (np.arange(300) + 0.5) / 15 - 0.5
    kwargs = {}
    if method == "guided":
        cell_guide = rng.random((3, 16, 22)).astype(np.float32)
        cell_guide[:, rng.random((16, 22)) < 0.05] = np.nan
        near = cell_guide[:, np.clip(np.floor(rows + 0.5), 0, 14).astype(int)][:, :, np.clip(np.floor(cols + 0.5), 0, 19).astype(int)]
        pixel_guide = np.nan_to_num(np.moveaxis(near, 0, -1), nan=0.5) + rng.normal(0, 0.05, (200, 300, 3))
        kwargs = dict(cell_guide=cell_guide, pixel_guide=pixel_guide.astype(np.float32))
    a = upsample_cells(cells, rows, cols, valid, method, **kwargs)
    b = engine.upsample(cells, rows, cols, valid, method, **kwargs)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.nanmax(np.abs(cells)))


# PyTorch engine only


def test_torch_bands_give_the_same_result(monkeypatch):
    """Output rows in bands of one row (a tiny device budget) equal one band, bit for bit."""
    engine = _torch_engine()
    from embedview._model import torch_engine

    cells, rows, cols, valid, method, kwargs = _case("guided-r2-g3", 6)
    whole = engine.upsample(cells, rows, cols, valid, method, **kwargs)
    monkeypatch.setattr(torch_engine, "_UPSAMPLE_BYTES", 1)
    assert len(torch_engine._bands(rows.size, cols.size, 10)) == rows.size
    np.testing.assert_array_equal(engine.upsample(cells, rows, cols, valid, method, **kwargs), whole)


def test_torch_refuses_bad_methods():
    engine = _torch_engine()
    from embedview import EmbedviewError

    cells = np.ones((3, 2, 2), np.float32)
    with pytest.raises(EmbedviewError, match="unknown upsampling method 'cubic'"):
        engine.upsample(cells, np.zeros(2), np.zeros(2), (2, 2), "cubic")
    with pytest.raises(EmbedviewError, match="needs cell_guide and pixel_guide"):
        engine.upsample(cells, np.zeros(2), np.zeros(2), (2, 2), "guided")
