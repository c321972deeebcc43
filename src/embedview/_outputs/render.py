"""Place projected pieces on the output raster, exactly.

Each output pixel samples the image at its centre; it is drawn from the piece whose inner
block holds that centre, from the cell of that piece that covers it. No resampling, no seams.
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

    def __init__(self, grid: OutputGrid):
        self.grid = grid
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
        out, cells = [], []
        for axis, (sl, start, n) in enumerate(zip(self.spans(piece), origin, canvas.shape[:2])):
            a, b = max(sl.start, start), min(sl.stop, start + n)
            if a >= b:
                return
            out.append(slice(a - start, b - start))
            cells.append(piece.grid.cell_of(self.grid.centres(axis, a, b), axis))
        canvas[out[0], out[1]] = np.moveaxis(projected[:, cells[0]][:, :, cells[1]], 0, -1)
