"""Place projected pieces on the output raster, exactly.

Each output pixel samples the image at its centre; it is drawn from the piece whose inner
block holds that centre, from the cell of that piece that covers it. No resampling, no seams.
"""

from __future__ import annotations

import numpy as np

from ._geometry import OutputGrid
from ._sources import Piece


class Placer:
    """Maps pieces to output pixels for one :class:`OutputGrid`.

    Examples
    --------
    >>> from embedview._geometry import CellGrid
    >>> grid = OutputGrid.for_image((600, 900), 1)
    >>> piece = Piece(None, None, CellGrid.sam((600, 900), (64, 64)), ((0, 600), (0, 900)))
    >>> rows, cols, cell_rows, cell_cols = Placer(grid).indices(piece)
    >>> rows, int(cell_rows[14]), int(cell_rows[13])
    (slice(0, 600, None), 1, 0)
    """

    def __init__(self, grid: OutputGrid):
        self.grid = grid
        self.centres = [grid.centres(axis) for axis in (0, 1)]
        # Pixels past the image edge (the last output pixel may overhang it) belong to the
        # piece holding the last image pixel.
        self.inside = [np.minimum(c, n - 0.5) for c, n in zip(self.centres, grid.image_shape)]
        self._cache: dict = {}

    def indices(self, piece: Piece):
        """``(out_rows, out_cols, cell_rows, cell_cols)``: output slices and the cells they show."""
        key = (piece.grid, piece.inner)
        if key not in self._cache:
            result = []
            for axis, (a, b) in enumerate(piece.inner):
                hit = np.nonzero((self.inside[axis] >= a) & (self.inside[axis] < b))[0]
                out = slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0)
                result.append((out, piece.grid.cell_of(self.centres[axis][out], axis)))
            (rows, cell_rows), (cols, cell_cols) = result
            self._cache[key] = (rows, cols, cell_rows, cell_cols)
        return self._cache[key]

    def place(self, canvas: np.ndarray, piece: Piece, projected: np.ndarray, origin=(0, 0)) -> None:
        """Write ``(k, h, w)`` projected cells of ``piece`` into ``canvas`` ``(ny, nx, k)``.

        ``canvas`` may be a window of the output whose first pixel is output pixel ``origin``;
        only the part of the piece inside it is written.
        """
        rows, cols, cell_rows, cell_cols = self.indices(piece)
        out, cells = [], []
        for sl, cell, start, n in zip((rows, cols), (cell_rows, cell_cols), origin, canvas.shape[:2]):
            a, b = max(sl.start, start), min(sl.stop, start + n)
            if a >= b:
                return
            out.append(slice(a - start, b - start))
            cells.append(cell[a - sl.start:b - sl.start])
        canvas[out[0], out[1]] = np.moveaxis(projected[:, cells[0]][:, :, cells[1]], 0, -1)
