"""Pieces and sources: what every input becomes, whatever its file format.

A *piece* is one ``(C, h, w)`` grid of cells: a single image, one slice of a stack, or one
tile (of one slice). It carries its geometry; :meth:`Source.read` loads its features. The
formats that make sources (:mod:`embedview._inputs.micro_sam_layout`, :mod:`embedview._inputs.vit_arrays`,
:mod:`embedview._inputs.vit_files`) import this module; :func:`embedview.open_source`
(:mod:`embedview._inputs.sources`) dispatches to them.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any, Iterable, Iterator

import numpy as np

from .._common.errors import EmbedviewError
from .._common.geometry import DAMAGED, CellGrid, OutputGrid, Tiling, check_ints, sam_cell_size
from .._common.numerics import power_of_two
from .chunks import direct_reader


@dataclass(frozen=True)
class Piece:
    """One feature grid and where it lies.

    Attributes
    ----------
    z : int or None
        Slice index in a stack, ``None`` for a 2D image.
    tile : int or None
        Tile id for tiled inputs, ``None`` otherwise.
    grid : CellGrid
        Where the cells lie on the image.
    inner : ((y0, y1), (x0, x1))
        The image region this piece is responsible for (a tile's inner block).
    input : int
        Which input it belongs to when several are drawn together (:mod:`embedview._inputs.composite`).
    """

    z: int | None
    tile: int | None
    grid: CellGrid
    inner: tuple[tuple[int, int], tuple[int, int]]
    input: int = 0

    @property
    def label(self) -> str:
        parts = []
        if self.tile is not None:
            parts.append(f"tile {self.tile}")
        if self.z is not None:
            parts.append(f"slice {self.z}")
        return " of ".join(parts) or "the image"

    @cached_property  # exact Fraction arithmetic: worth doing once per piece
    def fit_cells(self) -> tuple[slice, slice]:
        """Cells that are drawn: they cover image pixels inside the inner block."""
        return tuple(slice(*self.grid.cells_overlapping(a, b, axis))
                     for axis, (a, b) in enumerate(self.inner))


@dataclass
class Source:
    """Embeddings of one image or stack, in micro_sam's layouts (single, stack, tiled, tiled stack).

    Use :func:`embedview.open_source` (or a format's reader) to make one. ``read(piece)`` returns
    float32 ``(C, h, w)``.
    """

    name: str
    layout: str
    image_shape: tuple[int, int]
    n_slices: int | None
    n_channels: int
    features: Any
    tiling: Tiling | None = None
    tile_arrays: dict = field(default_factory=dict, repr=False)
    metadata: dict = field(default_factory=dict)
    _pieces: list = field(default_factory=list, repr=False)
    _readers: dict = field(default_factory=dict, repr=False)

    @property
    def is_stack(self) -> bool:
        return self.n_slices is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image the embeddings describe: ``(H, W)``, or ``(Z, H, W)`` for a stack."""
        return ((self.n_slices,) if self.is_stack else ()) + tuple(self.image_shape)

    @property
    def present_tiles(self) -> tuple[int, ...]:
        """Ids of the tiles the file holds (all of them unless it was computed with a mask)."""
        return tuple(sorted(self.tile_arrays))

    @property
    def missing_tiles(self) -> tuple[int, ...]:
        return self.first_missing_tiles(None)

    def first_missing_tiles(self, limit: int | None = 1000) -> tuple[int, ...]:
        """Ids of tiles the file lacks, in order, at most ``limit`` of them (work ∝ tiles present + limit)."""
        if self.tiling is None:
            return ()
        found, t = [], 0
        for present in self.present_tiles + (self.tiling.n_tiles,):
            while t < present and (limit is None or len(found) < limit):
                found.append(t)
                t += 1
            t = present + 1
        return tuple(found)

    def pieces(self) -> list[Piece]:
        """All pieces, slice by slice, tiles in C order."""
        return list(self._pieces)

    def default_pixel_size(self) -> Fraction:
        """The embedding resolution: one cell, or for tiles the cell of a full interior tile."""
        if self.tiling is None:  # the smaller side of non-square (resized ViT) cells: none is skipped
            return min(self._pieces[0].grid.cell_size)
        grid = self._pieces[0].grid.shape if self._pieces else (64, 64)
        full = tuple(t + 2 * h for t, h in zip(self.tiling.tile_shape, self.tiling.halo))
        return sam_cell_size(full, grid)

    def output_grid(self, pixel_size=None):
        """The output raster for ``pixel_size``: ``None`` the embedding grid (:meth:`default_pixel_size`;
        a partial last cell overhangs the image edge, where it truly lies), else a size in image
        pixels, ``P`` or ``(PY, PX)``. Every front-end draws with this one geometry."""
        if pixel_size is None:
            pixel_size = self.default_pixel_size()
        elif isinstance(pixel_size, str):
            raise EmbedviewError(f"pixel_size must be a number, a (y, x) pair or None; got {pixel_size!r}.",
                                 param="pixel_size")
        return OutputGrid.for_image(self.image_shape, pixel_size)

    def read_each(self, pieces: Iterable[Piece], ahead: int = 2) -> Iterator[tuple[Piece, np.ndarray]]:
        """Yield ``(piece, features)`` in order, reading the next ``ahead`` pieces meanwhile.

        zarr's codecs and file reads release the GIL, so reads overlap each other and the
        caller's BLAS work. At most ``ahead + 1`` pieces are in memory.
        """
        pieces = list(pieces)
        self.feature_scale  # noqa: B018 -- fixed once, here, before threads read pieces
        if len(pieces) < 2:
            for piece in pieces:
                yield piece, self.read(piece)
            return
        with ThreadPoolExecutor(max_workers=ahead) as pool:
            queue = deque(pool.submit(self.read, p) for p in pieces[:ahead])
            for i, piece in enumerate(pieces):
                data = queue.popleft().result()
                if i + ahead < len(pieces):
                    queue.append(pool.submit(self.read, pieces[i + ahead]))
                yield piece, data

    def _reader(self, tile: int | None):
        """``read(index)`` for the features array of ``tile`` (or of the image): direct where possible."""
        if tile not in self._readers:
            array = self.features if tile is None else self.tile_arrays[tile]
            self._readers[tile] = direct_reader(array, 1 if self.n_slices is None else 2) or array.__getitem__
        return self._readers[tile]

    def read(self, piece: Piece, scale: float | None = None) -> np.ndarray:
        """Load the features of one piece as float32 ``(C, h, w)``, multiplied by ``scale`` (a power of
        two; by default :attr:`feature_scale`) before the cast."""
        scale = self.feature_scale if scale is None else scale
        data = self._read_raw(piece)
        if scale != 1.0 and data.dtype == np.float64:  # exact: a power of two, in float64's range
            data = data * scale
        return np.asarray(data, dtype=np.float32)

    def _read_raw(self, piece: Piece) -> np.ndarray:
        """The features of one piece as stored: float64 stays float64, anything else becomes float32."""
        index = (0,) if piece.z is None else (piece.z, 0)
        try:
            data = np.asarray(self._reader(piece.tile)(index))
            data = data if data.dtype == np.float64 else np.asarray(data, dtype=np.float32)
        except Exception as err:  # codec and storage errors differ between zarr versions
            raise EmbedviewError(
                f"could not read the features of {piece.label} from {self.name} "
                f"({type(err).__name__}: {str(err).strip() or 'no detail'}); the file looks damaged, "
                "recompute or re-copy the embeddings.") from None
        expected = (self.n_channels,) + piece.grid.shape
        if data.shape != expected:
            raise EmbedviewError(
                f"the features of {piece.label} in {self.name} have shape {list(data.shape)}, "
                f"expected {list(expected)}; the file is inconsistent.")
        return data

    @cached_property
    def feature_scale(self) -> float:
        """The power of two every piece is multiplied by before its cast to float32: 1, except for
        float64 features whose first piece lies outside ``[2**-100, 2**100]`` (float32 would flush
        ``1e-300`` to 0 and turn ``1e300`` into infinity); then the one that brings its largest finite
        ``|x|`` into ``[0.5, 1)`` (:func:`~embedview._common.numerics.power_of_two`, the rule the
        fit uses for float32 pieces). Exact, so the picture of ``x·2**k`` is the picture of ``x``;
        components and colour ranges are then in units of the scaled features."""
        if not self._pieces:
            return 1.0
        array = self.features if self.tiling is None else self.tile_arrays[self._pieces[0].tile]
        if np.dtype(getattr(array, "dtype", np.float32)) != np.float64:
            return 1.0
        data = self._read_raw(self._pieces[0])
        finite = np.abs(data[np.isfinite(data)])
        largest = float(finite.max()) if finite.size else 0.0
        if largest == 0.0 or 2.0 ** -100 <= largest <= 2.0 ** 100:
            return 1.0
        return power_of_two(largest)

    def use_feature_scale(self, scale: float) -> None:
        """Read with ``scale`` (a fitted basis's :attr:`~embedview._model.fit.Basis.feature_scale`)."""
        self.__dict__["feature_scale"] = float(scale)


#: What to do about a bad image size given as an argument (not read from a file).
GIVEN = "give the original image's height and width in pixels."


def check_size(size, what, name, fix: str = DAMAGED) -> tuple[int, int]:
    """Two positive ints ``(H, W)``, or an error naming ``what`` of ``name`` and saying ``fix``
    (:data:`GIVEN` for an argument, the default for a file's metadata)."""
    return check_ints(size, f"{what} (H, W)", name, fix=fix)
