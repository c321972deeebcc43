"""Upsampling projected cells to output pixels: nearest, bilinear, or guided by the image.

One definition (``/work/wt/kernel_spec.md``'s, kept in :func:`upsample_cells`' docstring) for
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


def _axis_taps(u: np.ndarray, n_valid: int, method: str, sigma: float, radius: int):
    """Per neighbour offset along one axis: ``(index, weight)``, indices clipped into range and
    weights 0 where the neighbour lies outside ``[0, n_valid)``."""
    if method == "bilinear":
        base = np.floor(u)
        taps = [(base, (1.0 - (u - base))), (base + 1, u - base)]
    else:
        base = nearest_cells(u, n_valid).astype(np.float64)
        taps = [(base + d, np.exp(-(u - (base + d)) ** 2 / (2.0 * sigma * sigma)))
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
    # Cells as (h, w, k), gathered rows first then columns: two cheap takes instead of a 2D fancy index.
    table = np.moveaxis(cells[:, :vh, :vw], 0, -1)
    nearest = table[ny_][:, nx_]
    if method == "nearest" or rows.size == 0 or cols.size == 0:
        return np.ascontiguousarray(nearest)
    ok = np.isfinite(table).all(axis=-1)
    guided = method == "guided"
    if guided:
        cg = np.moveaxis(np.asarray(cell_guide, dtype=np.float32)[:, :vh, :vw], 0, -1)
        ok &= np.isfinite(cg).all(axis=-1)
        cg = np.where(ok[..., None], cg, 0.0).astype(np.float32)
        pg = np.asarray(pixel_guide, dtype=np.float32)
        scale = np.float32(-0.5 / (float(sigma_range) ** 2))
    table = np.where(ok[..., None], table, 0.0).astype(np.float32)
    ok = ok.astype(np.float32)
    k = table.shape[-1]
    num = np.zeros((rows.size, cols.size, k), np.float32)
    den = np.zeros((rows.size, cols.size), np.float32)
    taps_y = _axis_taps(rows, vh, method, float(sigma_spatial), int(radius))
    taps_x = _axis_taps(cols, vw, method, float(sigma_spatial), int(radius))
    for iy, wy in taps_y:
        t_rows, ok_rows = table[iy], ok[iy]
        g_rows = cg[iy] if guided else None
        for ix, wx in taps_x:
            w = ok_rows[:, ix]
            w *= wy[:, None]
            w *= wx[None, :]
            if guided:
                diff = pg - g_rows[:, ix]
                d2 = np.einsum("yxg,yxg->yx", diff, diff) if diff.shape[-1] > 1 else np.square(diff[..., 0])
                d2 *= scale
                w *= np.exp(d2, out=d2)
            den += w
            num += t_rows[:, ix] * w[..., None]
    good = den > TINY
    out = np.divide(num, den[..., None], out=num, where=good[..., None])
    fallback = ~good
    if fallback.any():
        out[fallback] = nearest[fallback]
    nan = np.isnan(nearest).any(axis=-1)
    if nan.any():
        out[nan] = np.nan
    return out
