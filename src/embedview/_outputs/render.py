"""Place projected pieces on the output raster, exactly.

Each output pixel samples the image at its centre; it is drawn from the piece whose inner
block holds that centre, from the cell of that piece that covers it (``nearest``), or from a
weighted mean of that piece's nearby cells, halo cells included (``bilinear``, ``guided``: see
:mod:`embedview._model.upsample`). Either way no seams: a tile's halo cells are its neighbours.
"""

from __future__ import annotations

import math

import numpy as np

from .._common.geometry import OutputGrid
from .._inputs.sources import Piece


class Placer:
    """Maps pieces to output pixels for one :class:`OutputGrid`.

    Examples
    --------
    >>> from embedview._common.geometry import CellGrid
    >>> grid = OutputGrid.for_image((600, 900), 1)
    >>> piece = Piece(None, None, CellGrid.sam((600, 900), (64, 64)), ((0, 600), (0, 900)))
    >>> Placer(grid).spans(piece)
    (slice(0, 600, None), slice(0, 900, None))
    """

    #: Output pixels upsampled per call of the engine (bounds the temporaries of a large piece).
    BAND_PIXELS = 2**19

    def __init__(self, grid: OutputGrid, upsample=None, engine=None):
        self.grid = grid
        self.upsample = upsample  # an Upsampling (embedview._outputs.guide), None for nearest
        self.engine = engine  # an engine, or a device name (pickles cheaply); None: numpy
        self._cache: dict = {}

    def _inside(self, k: int, axis: int) -> float:
        # Pixels past the image edge (the last output pixel may overhang it) belong to the
        # piece holding the last image pixel.
        return min(self.grid.centre(k, axis), self.grid.image_shape[axis] - 0.5)

    def _first_at_least(self, t: float, axis: int) -> int:
        """The first output pixel along ``axis`` whose (clamped) centre is ``>= t``: arithmetic,
        then corrected with the exact float comparison, so no output-long array is ever made."""
        n, p = self.grid.shape[axis], self.grid.pixel_size[axis]
        k = min(n, max(0, math.ceil(t / p - 0.5)))
        while k > 0 and self._inside(k - 1, axis) >= t:
            k -= 1
        while k < n and self._inside(k, axis) < t:
            k += 1
        return k

    def spans(self, piece: Piece) -> tuple[slice, slice]:
        """``(out_rows, out_cols)``: the output pixels whose centre lies in the piece's inner block."""
        key = (piece.grid, piece.inner)
        if key not in self._cache:
            spans = []
            for axis, (a, b) in enumerate(piece.inner):
                lo, hi = self._first_at_least(a, axis), self._first_at_least(b, axis)
                spans.append(slice(lo, hi) if lo < hi else slice(0, 0))
            self._cache[key] = tuple(spans)
        return self._cache[key]

    def place(self, canvas: np.ndarray, piece: Piece, projected: np.ndarray, origin=(0, 0)) -> None:
        """Write ``(k, h, w)`` projected cells of ``piece`` into ``canvas`` ``(ny, nx, k)``.

        ``canvas`` may be a window of the output whose first pixel is output pixel ``origin``;
        only the part of the piece inside it is written (its cells are looked up for that part
        only: memory and work follow the window, not the output).
        """
        out, cells, centres = [], [], []
        for axis, (sl, start, n) in enumerate(zip(self.spans(piece), origin, canvas.shape[:2])):
            a, b = max(sl.start, start), min(sl.stop, start + n)
            if a >= b:
                return
            out.append(slice(a - start, b - start))
            centres.append(self.grid.centres(axis, a, b))
            if self.upsample is None:
                cells.append(piece.grid.cell_of(centres[-1], axis))
        if self.upsample is None:
            canvas[out[0], out[1]] = np.moveaxis(projected[:, cells[0]][:, :, cells[1]], 0, -1)
        else:
            self._upsample(canvas[out[0], out[1]], piece, projected, *centres)

    def _upsample(self, target: np.ndarray, piece: Piece, projected: np.ndarray, ys, xs) -> None:
        """Fill ``target`` (a view of the canvas) with the upsampled cells at image coordinates ``ys × xs``."""
        up, grid = self.upsample, piece.grid
        engine = self.engine
        if engine is None or isinstance(engine, str):
            from .._model.engines import engine_for

            engine = self.engine = engine_for(engine)
        u = [(c - float(o)) / float(s) - 0.5 for c, o, s in zip((ys, xs), grid.origin, grid.cell_size)]
        options = dict(sigma_spatial=up.sigma_spatial, sigma_range=up.sigma_range, radius=up.radius)
        guide = up.guide
        if guide is not None:
            options["cell_guide"] = guide.cell_means(piece.z, grid)
            # the image pixel under each output pixel's centre
            iy, ix = (np.clip(np.floor(c), 0, n - 1).astype(np.intp)
                      for c, n in zip((ys, xs), self.grid.image_shape))
        band = max(1, self.BAND_PIXELS // max(1, xs.size))
        for a in range(0, ys.size, band):
            b = min(ys.size, a + band)
            if guide is not None:
                options["pixel_guide"] = guide.pixels(piece.z, iy[a:b], ix)
            target[a:b] = engine.upsample(projected, u[0][a:b], u[1], grid.valid_shape, up.method, **options)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        if self.engine is not None and not isinstance(self.engine, str):
            state["engine"] = self.engine.name  # "cpu", "torch:cpu", "cuda": engine_for() rebuilds it
        return state
