"""Upsampling projected cells to output pixels: nearest, bilinear, or guided by the image.

One definition (in :func:`upsample_cells`' docstring) for
the numpy engine here and the PyTorch engine (:mod:`embedview._model.torch_engine`). Each output
pixel takes a normalized weighted mean of nearby cells' components; the cell positions are the
exact ones of the piece's :class:`embedview._common.geometry.CellGrid`, so only the
interpolation changes, never the geometry or the drawn footprint.
"""

from __future__ import annotations

import numpy as np

METHODS = ("nearest", "bilinear", "guided")

#: A weight sum at or below this counts as zero (underflow): the pixel takes its nearest cell.
TINY = float(np.finfo(np.float32).tiny)


def nearest_cells(u: np.ndarray, n_valid: int) -> np.ndarray:
    """The nearest cell of each continuous cell coordinate ``u`` (cell ``i``'s centre at ``u = i``),
    clipped to ``[0, n_valid)``: the same cells as :meth:`CellGrid.cell_of`."""
    return np.clip(np.floor(u + 0.5 + 1e-9), 0, n_valid - 1).astype(np.intp)


def axis_taps(u: np.ndarray, n_valid: int, method: str, sigma: float, radius: int):
    """Per neighbour offset along one axis: ``(index, weight)``, indices clipped into range and
    weights 0 where the neighbour lies outside ``[0, n_valid)``."""
    if method == "bilinear":
        base = np.floor(u)
        taps = [(base, (1.0 - (u - base))), (base + 1, u - base)]
    else:
        base = nearest_cells(u, n_valid).astype(np.float64)
        variance = max(sigma * sigma, np.finfo(np.float64).tiny)  # no division by zero, whatever sigma
        taps = [(base + d, np.exp(-(u - (base + d)) ** 2 / (2.0 * variance)))
                for d in range(-radius, radius + 1)]
    out = []
    for idx, w in taps:
        inside = (idx >= 0) & (idx < n_valid)
        out.append((np.clip(idx, 0, n_valid - 1).astype(np.intp), np.where(inside, w, 0.0).astype(np.float32)))
    return out


def upsample_cells(cells, rows, cols, valid, method, *, cell_guide=None, pixel_guide=None,
                   sigma_spatial=1.0, sigma_range=0.1, radius=1) -> np.ndarray:
    """Sample a piece's projected cells at output pixels: ``(ny, nx, k)`` float32.

    Parameters
    ----------
    cells : ndarray, shape (k, h, w)
        The piece's projected components (halo cells included); NaN marks a cell not drawn.
    rows, cols : ndarray of float64, shape (ny,), (nx,)
        Continuous cell coordinate of each output pixel's centre: ``u = (y - origin) / cell_size - 0.5``,
        so cell ``i``'s centre lies at ``u = i``.
    valid : (int, int)
        Only cells ``[0, vh) × [0, vw)`` exist (``CellGrid.valid_shape``).
    method : {"nearest", "bilinear", "guided"}
    cell_guide : ndarray, shape (g, h, w), optional
        For ``guided``: the normalized guide's mean over each cell's footprint (NaN: no pixel).
    pixel_guide : ndarray, shape (ny, nx, g), optional
        For ``guided``: the normalized guide value under each output pixel.
    sigma_spatial : float
        Spatial sigma in cells.
    sigma_range : float
        Range sigma in normalized guide units.
    radius : int
        ``guided`` uses the ``(2 radius + 1)²`` cells around the nearest one.

    Notes
    -----
    A pixel whose nearest cell is NaN is NaN. Neighbours outside the valid cells, NaN, or with a
    NaN cell guide weigh 0; weights are normalized by their sum, and a pixel whose sum is 0 (or
    underflows) takes its nearest cell. ``bilinear`` weighs cells ``floor(u)`` and ``floor(u) + 1``
    by ``1 - t`` and ``t`` per axis (clamping at the edges); ``guided`` weighs them by
    ``exp(-d² / 2 sigma_spatial²) · exp(-|G_p - C_ij|² / 2 sigma_range²)``.

    Examples
    --------
    >>> cells = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    >>> u = np.array([0.0, 0.5, 1.0])
    >>> upsample_cells(cells, u, u, (2, 2), "bilinear")[..., 0]
    array([[0. , 0.5, 1. ],
           [1. , 1.5, 2. ],
           [2. , 2.5, 3. ]], dtype=float32)
    """
    cells = np.asarray(cells, dtype=np.float32)
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    vh, vw = int(valid[0]), int(valid[1])
    ny_, nx_ = nearest_cells(rows, vh), nearest_cells(cols, vw)
    cells = cells[:, :vh, :vw]
    # Channels first throughout: every operation below runs over contiguous (ny, nx) planes.
    nearest = np.take(cells[:, ny_], nx_, axis=2)
    if method == "nearest" or rows.size == 0 or cols.size == 0:
        return np.ascontiguousarray(np.moveaxis(nearest, 0, -1))
    k, shape = cells.shape[0], (rows.size, cols.size)
    ok = np.isfinite(cells).all(axis=0)
    guided = method == "guided"
    if guided:
        cg = np.asarray(cell_guide, dtype=np.float32)[:, :vh, :vw]
        ok &= np.isfinite(cg).all(axis=0)
        cg = np.where(ok, cg, np.float32(0)).astype(np.float32)  # no NaN in the sums; `okf` zeroes them
        pg = np.ascontiguousarray(np.moveaxis(np.asarray(pixel_guide, dtype=np.float32), -1, 0))
        scale = np.float32(-0.5 / max(float(sigma_range) ** 2, 1e-37))  # finite in float32, whatever sigma
        gbuf = np.empty((cg.shape[0],) + shape, np.float32)
    okf = ok.astype(np.float32)  # a cell that may not count (not drawn, no guide) weighs 0
    table = np.where(ok, cells, np.float32(0)).astype(np.float32)
    num = np.zeros((k,) + shape, np.float32)
    den = np.zeros(shape, np.float32)
    w = np.empty(shape, np.float32)
    tmp = np.empty(shape, np.float32)
    tbuf = np.empty((k,) + shape, np.float32)
    taps_y = axis_taps(rows, vh, method, float(sigma_spatial), int(radius))
    taps_x = axis_taps(cols, vw, method, float(sigma_spatial), int(radius))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for iy, wy in taps_y:
            t_rows = table[:, iy]
            g_rows, ok_rows = (cg[:, iy] if guided else None), okf[iy]
            for ix, wx in taps_x:
                np.multiply.outer(wy, wx, out=w)
                if guided:
                    np.take(g_rows, ix, axis=2, out=gbuf)
                    np.subtract(pg, gbuf, out=gbuf)
                    np.square(gbuf, out=gbuf)
                    d2 = gbuf[0] if gbuf.shape[0] == 1 else gbuf.sum(axis=0, out=tmp)
                    np.multiply(d2, scale, out=tmp)
                    np.exp(tmp, out=tmp)
                    w *= tmp
                np.take(ok_rows, ix, axis=1, out=tmp)
                w *= tmp
                den += w
                np.take(t_rows, ix, axis=2, out=tbuf)
                tbuf *= w
                num += tbuf
    good = den > TINY
    np.divide(num, den, out=num, where=good)
    out = np.moveaxis(num, 0, -1)
    fallback = ~good
    if fallback.any():
        out[fallback] = np.moveaxis(nearest, 0, -1)[fallback]
    nan = np.isnan(nearest).any(axis=0)
    if nan.any():
        out[nan] = np.nan
    return np.ascontiguousarray(out)
