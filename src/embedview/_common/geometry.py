"""Exact geometry: where each embedding cell lies on the image, and where each output pixel samples.

Coordinates are image pixel *indices*: pixel ``y`` spans ``[y, y + 1)`` and its centre is
``y + 0.5``. Public ``scale``/``translate`` use the pixel-centre convention of napari, where
the centre of pixel ``y`` is at ``y``; the two differ by 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from .errors import EmbedviewError

#: The largest image side, output side or cell-grid side accepted (pixels or cells): sizes from
#: metadata beyond it are refused before anything is allocated. A side this long already makes a
#: 3 TiB RGB picture; the output's index arrays stay bounded by it.
MAX_SIDE = 2**20


#: What to do about a bad number read from a file's metadata.
DAMAGED = "the file's metadata is damaged, recompute or re-copy it."


def check_ints(values, what: str, where: str, n: int | None = 2, low: int = 1, high: int = MAX_SIDE,
               fix: str = DAMAGED) -> tuple[int, ...]:
    """``values`` as a tuple of ``n`` integers in ``[low, high]``, or an error naming ``what`` of
    ``where`` and saying ``fix`` (by default: the file's metadata is damaged).

    Accepts what JSON metadata may hold for an integer (``3``, ``3.0``) and nothing else: no
    strings, booleans, fractions, NaN or infinities.

    Examples
    --------
    >>> check_ints([600, 900.0], "original_size", "x.zarr")
    (600, 900)
    >>> check_ints([600, float("inf")], "original_size", "x.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: original_size of x.zarr must be 2 integers from 1 to 1048576, got [600, inf]; ...
    """
    try:
        items = list(values) if not isinstance(values, (str, bytes, dict)) else None
    except TypeError:
        items = None
    ok = items is not None and (n is None or len(items) == n)
    result = []
    for v in items if ok else ():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            ok = False
        elif not (math.isfinite(v) and v == int(v) and low <= v <= high):
            ok = False
        else:
            result.append(int(v))
    if not ok:
        count = "" if n is None else f"{n} "
        shown = repr(values) if len(repr(values)) <= 80 else repr(values)[:77] + "..."
        raise EmbedviewError(f"{what} of {where} must be {count}integers from {low} to {high}, got {shown}; {fix}")
    return tuple(result)


def _frac(value) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(value).limit_denominator(10**9)


def _ceil_frac(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def sam_cell_size(block_shape: tuple[int, int], grid_shape: tuple[int, int]) -> Fraction:
    """Image pixels per cell for SAM's preprocessing (longest side resized, bottom/right padded).

    The longest side ``L`` of the block is resized to span the longest side of the grid, so
    every cell covers ``L / max(grid_shape)`` image pixels along both axes (``16 * L / 1024``
    for SAM's 64×64 grid).

    Examples
    --------
    >>> float(sam_cell_size((600, 900), (64, 64)))
    14.0625
    """
    ratios = [Fraction(int(b), int(g)) for b, g in zip(block_shape, grid_shape)]
    return max(ratios)


@dataclass(frozen=True)
class CellGrid:
    """A grid of embedding cells laid on the image.

    Cell ``(i, j)`` covers image pixels ``origin + [i*s_y, (i+1)*s_y) × [j*s_x, (j+1)*s_x)``.
    Cells whose footprint starts at or past ``origin + extent`` (the end of the encoded image
    block) cover padding, not the image.

    Parameters
    ----------
    origin : (int or Fraction, int or Fraction)
        Image coordinate of the grid's top-left corner: the encoded block's start, or for a
        resized and cropped ViT input where the crop starts (fractional after a resize,
        negative where a centre crop padded the image).
    cell_size : (Fraction, Fraction)
        Image pixels per cell along y and x.
    shape : (int, int)
        Number of cells along y and x.
    extent : (int or Fraction, int or Fraction)
        How far the encoded image reaches from ``origin``, in image pixels (the encoded
        block's shape for SAM).

    Examples
    --------
    >>> from fractions import Fraction
    >>> g = CellGrid((Fraction(-3, 2), 0), (Fraction(10), Fraction(10)), (4, 4), (Fraction(33, 2), 40))
    >>> g.valid_shape, g.cells_overlapping(0, 15, 0)
    ((2, 4), (0, 2))
    """

    origin: tuple[int | Fraction, int | Fraction]
    cell_size: tuple[Fraction, Fraction]
    shape: tuple[int, int]
    extent: tuple[int | Fraction, int | Fraction]

    @classmethod
    def sam(cls, extent, grid_shape, origin=(0, 0)) -> "CellGrid":
        """The grid of a SAM-style encoder (see :func:`sam_cell_size`)."""
        s = sam_cell_size(extent, grid_shape)
        return cls(tuple(int(o) for o in origin), (s, s), tuple(int(g) for g in grid_shape),
                   tuple(int(e) for e in extent))

    @cached_property  # exact Fraction arithmetic, asked for many times per piece
    def valid_shape(self) -> tuple[int, int]:
        """Cells per axis, from cell 0, up to the last one that starts before the encoded image ends.

        A partly covered last cell counts. Leading cells of a grid with a negative origin may
        cover padding only; they are counted here but never drawn or fitted, since no image
        coordinate maps to them.
        """
        return tuple(max(0, min(g, _ceil_frac(Fraction(e) / s)))
                     for g, e, s in zip(self.shape, self.extent, self.cell_size))

    def cells_overlapping(self, start, stop, axis: int) -> tuple[int, int]:
        """Range ``[a, b)`` of cell indices along ``axis`` whose footprint meets image ``[start, stop)``."""
        s, o = self.cell_size[axis], Fraction(self.origin[axis])
        a = max(0, math.floor((Fraction(start) - o) / s))
        b = min(self.valid_shape[axis], _ceil_frac((Fraction(stop) - o) / s))
        return a, max(a, b)

    def cell_of(self, coords: np.ndarray, axis: int, clip: bool = True) -> np.ndarray:
        """Index of the cell covering each image coordinate (index space), clipped to valid cells
        (unless ``clip`` is False: then coordinates off the grid get indices outside it)."""
        # Floats are exact enough: a pixel centre off a cell edge is off it by a fraction with a
        # small denominator (≥ 1/(2·H·P) cells for a ViT), far above the 1e-9 that puts centres
        # exactly on an edge into the cell after it.
        s, o = float(self.cell_size[axis]), float(self.origin[axis])
        idx = np.floor((np.asarray(coords, dtype=np.float64) - o) / s + 1e-9)
        return (np.clip(idx, 0, self.valid_shape[axis] - 1) if clip else idx).astype(np.intp)


@dataclass(frozen=True)
class Tiling:
    """Blocks of ``tile_shape`` laid from the origin in C order; the last ones are clipped.

    Examples
    --------
    >>> t = Tiling((900, 1100), (512, 512), (64, 64))
    >>> t.grid, t.n_tiles
    ((2, 3), 6)
    >>> t.inner(4), t.outer(4)
    (((512, 900), (512, 1024)), ((448, 900), (448, 1088)))
    """

    shape: tuple[int, int]
    tile_shape: tuple[int, int]
    halo: tuple[int, int]

    def __post_init__(self):
        for name in ("shape", "tile_shape", "halo"):
            value = getattr(self, name)
            if len(value) != 2:
                raise EmbedviewError(f"tiling {name} must have two values (y, x), got {list(value)}.")
        if min(self.shape) < 1 or min(self.tile_shape) < 1 or min(self.halo) < 0:
            raise EmbedviewError(
                f"invalid tiling: shape {list(self.shape)}, tile_shape {list(self.tile_shape)}, "
                f"halo {list(self.halo)}; sizes must be positive and the halo non-negative.")
        if max(self.shape) > MAX_SIDE or max(self.tile_shape) > MAX_SIDE or max(self.halo) > MAX_SIDE:
            raise EmbedviewError(
                f"invalid tiling: shape {list(self.shape)}, tile_shape {list(self.tile_shape)}, "
                f"halo {list(self.halo)}; sides beyond {MAX_SIDE} pixels are not supported.")

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(-(-s // t) for s, t in zip(self.shape, self.tile_shape))

    @property
    def n_tiles(self) -> int:
        return self.grid[0] * self.grid[1]

    def position(self, tile_id: int) -> tuple[int, int]:
        return divmod(int(tile_id), self.grid[1])

    def inner(self, tile_id: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((y0, y1), (x0, x1))`` of the block the tile is responsible for."""
        pos = self.position(tile_id)
        return tuple((p * t, min((p + 1) * t, s)) for p, t, s in zip(pos, self.tile_shape, self.shape))

    def outer(self, tile_id: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((y0, y1), (x0, x1))`` of the block that was encoded: inner grown by the halo, clipped."""
        return tuple((max(a - h, 0), min(b + h, s))
                     for (a, b), h, s in zip(self.inner(tile_id), self.halo, self.shape))


@dataclass(frozen=True)
class OutputGrid:
    """The output raster: ``shape`` pixels of ``pixel_size`` image pixels each, from the image origin.

    Output pixel ``k`` covers image ``[k*p, (k+1)*p)``; its centre is drawn from the cell covering
    it. In napari's convention (pixel centres at integers) it lies at ``translate + k * scale``.

    Examples
    --------
    >>> g = OutputGrid.for_image((600, 900), 14.0625)
    >>> g.shape, g.scale, g.translate
    ((43, 64), (14.0625, 14.0625), (6.53125, 6.53125))
    """

    shape: tuple[int, int]
    pixel_size: tuple[float, float]
    image_shape: tuple[int, int]

    @classmethod
    def for_image(cls, image_shape, pixel_size) -> "OutputGrid":
        sizes = tuple(pixel_size) if np.ndim(pixel_size) else (pixel_size, pixel_size)
        if len(sizes) != 2 or not all(np.isfinite(float(p)) and float(p) > 0 for p in sizes):
            raise EmbedviewError(
                f"pixel_size must be a positive number or a (y, x) pair, got {pixel_size!r}.")
        fracs = [_frac(p) for p in sizes]
        shape = tuple(max(1, _ceil_frac(Fraction(int(n)) / f)) if f > 0 else MAX_SIDE + 1
                      for n, f in zip(image_shape, fracs))
        if max(shape) > MAX_SIDE:
            raise EmbedviewError(
                f"pixel size {' × '.join(f'{float(p):.6g}' for p in sizes)} makes a picture of "
                f"{shape[0]} × {shape[1]} pixels or more, beyond the largest side embedview draws "
                f"({MAX_SIDE} pixels); choose a larger pixel size (--pixel-size).")
        return cls(shape, tuple(float(p) for p in sizes), tuple(int(n) for n in image_shape))

    @property
    def scale(self) -> tuple[float, float]:
        return self.pixel_size

    @property
    def translate(self) -> tuple[float, float]:
        return tuple(p / 2 - 0.5 for p in self.pixel_size)

    def centres(self, axis: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Image coordinates (index space) sampled by output pixels ``start:stop`` along ``axis``."""
        stop = self.shape[axis] if stop is None else stop
        return (np.arange(start, stop, dtype=np.float64) + 0.5) * self.pixel_size[axis]

    def centre(self, k: int, axis: int) -> float:
        """The image coordinate sampled by output pixel ``k`` (the same float as :meth:`centres`)."""
        return (float(k) + 0.5) * self.pixel_size[axis]
