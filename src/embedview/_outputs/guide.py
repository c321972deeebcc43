"""The drawing's interpolation (:class:`Upsample`) and its guide image (:class:`Guide`).

``guided`` upsampling (:func:`embedview._model.upsample.upsample_cells`) needs two things from the
image: its value under each output pixel and its mean over each cell's exact footprint, both
normalized robustly (1st–99th percentile). A :class:`Guide` reads them by windows, so a huge image
(a memory-mapped ``.npy`` or uncompressed TIFF, a zarr array) is never loaded or copied whole; it
pickles as its path (or memory map) and a few numbers, so Dask workers reopen it cheaply.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._model.upsample import METHODS

#: Pixels read for the normalization and noise estimates (a strided sample, never the whole image).
SAMPLE_PIXELS = 2**20
#: Default range sigma: this many times the guide's noise, at least ``RANGE_FLOOR``.
RANGE_NOISE = 3.0
RANGE_FLOOR = 0.05
#: Default spatial sigma, in cells.
SPATIAL_SIGMA = 1.0
#: The sigmas a drawing can use: beyond them the weights are those of nearest or of bilinear
#: (and a sigma near 0 would divide by zero). Spatial in cells, range in normalized image units.
SIGMA_BOUNDS = {"sigma_spatial": (1e-2, 1e2), "sigma_range": (1e-4, 1e4)}
#: Pieces whose cell means are kept (least recently used dropped first): more than the pieces
#: one row of output windows meets, however large the image.
CACHED_PIECES = 256
#: Pixels per band when cell means are summed (bounds the float copy of the guide).
BAND_PIXELS = 2**22


@dataclass(frozen=True, eq=False)
class Upsample:
    """How projected cells become output pixels.

    Parameters
    ----------
    method : {"nearest", "bilinear", "guided"}
        ``nearest``: each pixel shows the cell under it (flat blocks, the default).
        ``bilinear``: a bilinear blend of the four nearest cell centres. ``guided``: joint
        bilateral upsampling with the image as guide: each pixel takes a weighted mean of the
        nearby cells, weighted by distance (in cells) and by how much the image under the pixel
        differs from the image's mean over each cell, so colours follow the image's edges.
    guide : array, path or None
        For ``guided``: the image the embeddings came from, ``(H, W)``, ``(H, W, 3|4)`` or for a
        stack ``(Z, H, W[, 3|4])``, any dtype (uint8/16, float); a path is read with
        :func:`embedview.read_image` (``.npy`` and uncompressed TIFF memory-mapped).
    sigma_spatial : float, optional
        Spatial sigma in cells (default 1).
    sigma_range : float, optional
        Range sigma in normalized image units (the image mapped to [0, 1] by its 1st–99th
        percentiles); default three times the image's noise, at least 0.05.
    radius : int
        ``guided`` weighs the ``(2 radius + 1)²`` cells around the nearest one.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> image = np.random.default_rng(0).integers(0, 255, (600, 900), dtype=np.uint8)
    >>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
    >>> vis = embedview.visualize(features, original_size=(600, 900), pixel_size=4,
    ...                           upsample=embedview.Upsample("guided", guide=image))
    >>> vis.rgb.shape
    (150, 225, 3)
    """

    method: str = "nearest"
    guide: object = field(default=None, repr=False)
    sigma_spatial: float | None = None
    sigma_range: float | None = None
    radius: int = 1

    @classmethod
    def of(cls, value, image=None) -> "Upsample":
        """``value`` (``None``, a method name or an :class:`Upsample`) as an :class:`Upsample`, checked;
        ``"guided"`` without a guide takes ``image`` (the picture's image, e.g. a figure's) as its guide."""
        from dataclasses import replace

        up = cls() if value is None else cls(value) if isinstance(value, str) else value
        if isinstance(up, Upsample) and up.method == "guided" and up.guide is None and image is not None:
            up = replace(up, guide=image)
        if not isinstance(up, Upsample):
            raise EmbedviewError(f"upsample must be 'nearest', 'bilinear', 'guided' or an embedview.Upsample; "
                                 f"got {type(value).__name__}.")
        if up.method not in METHODS:
            raise EmbedviewError(f"upsample method must be one of {', '.join(METHODS)}; got {up.method!r}.")
        for name in ("sigma_spatial", "sigma_range"):
            v = getattr(up, name)
            lo, hi = SIGMA_BOUNDS[name]
            if v is not None and (isinstance(v, bool) or not (isinstance(v, (int, float)) and lo <= v <= hi)):
                raise EmbedviewError(f"{arg(name, v)} must be a number from {lo:g} to {hi:g}.")
        if isinstance(up.radius, bool) or not isinstance(up.radius, int) or not 1 <= up.radius <= 8:
            raise EmbedviewError(f"radius must be an integer from 1 to 8; got {up.radius!r}.")
        if up.method == "guided" and up.guide is None:
            raise EmbedviewError("upsample='guided' follows the edges of the image: pass the image as its guide, "
                                 "upsample=embedview.Upsample('guided', guide=image).")
        return up

    def resolve(self, image_shape, name: str = "the embeddings") -> "Upsampling | None":
        """The drawing's upsampling for embeddings of ``image_shape`` (``(H, W)`` or ``(Z, H, W)``):
        the guide opened and checked against it, the defaults taken from the guide; ``None`` for nearest."""
        if self.method == "nearest":
            return None
        guide = Guide(self.guide, image_shape, name) if self.method == "guided" else None
        sigma_range = self.sigma_range
        if guide is not None and sigma_range is None:
            sigma_range = max(RANGE_NOISE * guide.noise, RANGE_FLOOR)
        return Upsampling(self.method, guide, float(self.sigma_spatial or SPATIAL_SIGMA),
                          float(sigma_range or 0.1), self.radius)


@dataclass(frozen=True, eq=False)
class Upsampling:
    """A resolved :class:`Upsample`: numbers filled in, the guide open (what the placer uses)."""

    method: str
    guide: "Guide | None"
    sigma_spatial: float
    sigma_range: float
    radius: int

    def describe(self) -> dict:
        """JSON-able record for the output's metadata."""
        out = {"method": self.method}
        if self.method == "guided":
            out.update(sigma_spatial=self.sigma_spatial, sigma_range=self.sigma_range, radius=self.radius,
                       guide=self.guide.name)
        return out


def resolve_upsampling(upsample, image_shape, name: str = "the embeddings", image=None) -> "Upsampling | None":
    """``upsample`` resolved for embeddings of ``image_shape`` (``None`` for nearest).

    An :class:`Upsampling` resolved before is checked against the shape and kept, so one guide is
    opened once for several pictures of the same embeddings (a picture, its figure, its
    montage); anything else is :meth:`Upsample.of` (``"guided"`` without a guide taking
    ``image``), then :meth:`Upsample.resolve`.
    """
    if isinstance(upsample, Upsampling):
        if upsample.guide is not None and tuple(upsample.guide.image_shape) != tuple(int(s) for s in image_shape):
            raise EmbedviewError(f"the upsampling's guide describes an image of shape "
                                 f"{list(upsample.guide.image_shape)} but {name} one of {list(image_shape)}; "
                                 "resolve it for these embeddings.")
        return upsample
    return Upsample.of(upsample, image=image).resolve(image_shape, name)


def _open(image, check=None):
    """``(array-like, path or None)`` for a path (its header's shape given to ``check`` before any
    pixel is decoded) or an array-like."""
    if isinstance(image, (str, os.PathLike)):
        from .io import read_image  # .npy and uncompressed TIFF memory-mapped

        return read_image(image, check), Path(image)
    if not all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        raise EmbedviewError(f"the guide must be an image array or a path; got {type(image).__name__}.")
    return image, None


class Guide:
    """A guide image for embeddings of ``image_shape``, normalized robustly and read by windows.

    Parameters
    ----------
    image : array-like or path
        ``(H, W)``, ``(H, W, C)``, ``(Z, H, W)`` or ``(Z, H, W, C)``; RGBA drops alpha.
    image_shape : tuple of int
        The embeddings' image shape, ``(H, W)`` or ``(Z, H, W)``.

    Attributes
    ----------
    lo, hi : float
        The 1st and 99th percentiles of a strided sample (mapped to 0 and 1).
    noise : float
        Robust noise of the normalized guide (MAD of neighbouring-pixel differences), the norm
        over channels.

    Examples
    --------
    >>> g = Guide(np.arange(12, dtype=np.uint8).reshape(3, 4), (3, 4))
    >>> g.channels, g.pixels(None, np.array([0, 2]), np.array([1])).shape
    (1, (2, 1, 1))
    """

    def __init__(self, image, image_shape, name: str = "the embeddings"):
        image_shape = tuple(int(s) for s in image_shape)
        n = len(image_shape)
        label = "the image" if not isinstance(image, (str, os.PathLike)) else f"the image {image}"

        def check(shape):
            if tuple(shape[:n]) != image_shape or len(shape) > n + 1 or (
                    len(shape) == n + 1 and shape[n] not in (1, 2, 3, 4)):
                raise EmbedviewError(f"{label} has shape {list(shape)} but the embeddings ({name}) describe an "
                                     f"image of shape {list(image_shape)}; pass the image they were computed from.")

        array, self.path = _open(image, check)
        self.name = str(self.path) if self.path is not None else "array"
        self._memmap = _memmap_spec(array)
        self._array = array
        shape = tuple(int(s) for s in array.shape)
        check(shape)
        self.stack = n == 3
        self.channels_stored = shape[n] if len(shape) == n + 1 else None
        if np.dtype(array.dtype).kind not in "biuf":
            raise EmbedviewError(f"the guide image holds {array.dtype} values; expected numbers.")
        self.image_shape = image_shape
        c = self.channels_stored
        self.channels = 1 if c in (None, 1, 2) else 3
        self.lo, self.hi, self.noise = self._statistics()
        self._means: dict = {}
        self._lock = threading.Lock()

    # -- pickling: a path or a memory map travels as its spec, not as its pixels ---------------

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_means"] = {}
        state["_lock"] = None
        if self.path is not None or self._memmap is not None:
            state["_array"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def array(self):
        if self._array is None:
            if self._memmap is not None:
                self._array = np.memmap(**self._memmap)
            else:
                self._array = _open(self.path)[0]
        return self._array

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, z, rows, cols) -> np.ndarray:
        """Raw values ``(len(rows), len(cols), C)`` of plane ``z``: ``rows``/``cols`` are slices or sorted index arrays."""
        arr = self.array
        lead = (z,) if self.stack else ()
        chan = (slice(0, 3) if self.channels == 3 else slice(0, 1),) if self.channels_stored else ()
        if isinstance(rows, slice) and isinstance(cols, slice):
            block = arr[lead + (rows, cols) + chan]
        else:  # scattered pixels (an output pixel larger than an image pixel): read only those
            r = rows if not isinstance(rows, slice) else np.arange(rows.start, rows.stop)
            c = cols if not isinstance(cols, slice) else np.arange(cols.start, cols.stop)
            if isinstance(arr, np.ndarray):  # numpy and memory maps: touches only the pixels' pages
                block = arr[lead][np.ix_(r, c) + chan]
            elif hasattr(arr, "oindex"):  # zarr
                block = arr.oindex[lead + (r, c) + chan]
            else:  # other array-likes (dask, ...): row by row, each row's span once
                block = np.stack([np.asarray(arr[lead + (int(y), slice(int(c[0]), int(c[-1]) + 1)) + chan])[c - c[0]]
                                  for y in r])
        if isinstance(arr, np.memmap):
            block = np.array(block)  # a copy, so that the map's pages can go
            _drop_mapped_pages(arr)
        else:
            block = np.asarray(block)
        return block if block.ndim == 3 else block[..., None]

    def _normalize(self, block: np.ndarray) -> np.ndarray:
        out = block.astype(np.float32)
        out -= np.float32(self.lo)
        out *= np.float32(1.0 / (self.hi - self.lo))
        return out

    def pixels(self, z, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The normalized guide at image pixels ``rows × cols`` (sorted indices): ``(ny, nx, g)`` float32."""
        if rows.size == 0 or cols.size == 0:
            return np.zeros((rows.size, cols.size, self.channels), np.float32)
        return self._normalize(self._read(z, _as_slice(rows), _as_slice(cols)))

    def cell_means(self, z, grid) -> np.ndarray:
        """The normalized guide's mean over each cell's footprint (image pixels whose centres fall
        in the cell): ``(g, h, w)`` float32 over ``grid``'s whole shape, NaN where no pixel falls.
        Cached per ``(z, grid)``."""
        key = (z, grid)
        with self._lock:  # windows are drawn by several threads
            means = self._means.pop(key, None)
        if means is None:
            means = self._cell_means(z, grid)
        with self._lock:
            self._means[key] = means  # most recently used last
            # Bounded: OME-Zarr windows go in C order, so the pieces of the last window rows are
            # the ones asked for again.
            while len(self._means) > CACHED_PIECES:
                del self._means[next(iter(self._means))]
        return means

    def _cell_means(self, z, grid) -> np.ndarray:
        out = np.full((self.channels,) + tuple(grid.shape), np.nan, np.float32)
        ids = [_pixel_cells(grid, axis, self.image_shape[-2 + axis]) for axis in (0, 1)]
        (y0, yid), (x0, xid) = ids
        if yid.size == 0 or xid.size == 0:
            return out
        ystarts, ycells = _runs(yid)
        xstarts, xcells = _runs(xid)
        ycount, xcount = np.diff(np.append(ystarts, yid.size)), np.diff(np.append(xstarts, xid.size))
        band = max(1, BAND_PIXELS // max(1, xid.size))
        sums = np.zeros((ycells.size, xcells.size, self.channels), np.float64)
        i = 0
        while i < ystarts.size:  # whole cell rows per band
            j = i + 1
            while j < ystarts.size and ystarts[j] - ystarts[i] < band:
                j += 1
            a = ystarts[i]
            b = ystarts[j] if j < ystarts.size else yid.size
            block = self._normalize(self._read(z, slice(y0 + a, y0 + b), slice(x0, x0 + xid.size)))
            rowsum = np.add.reduceat(block, ystarts[i:j] - a, axis=0, dtype=np.float64)
            sums[i:j] = np.add.reduceat(rowsum, xstarts, axis=1)
            i = j
        means = sums / (ycount[:, None, None] * xcount[None, :, None])
        out[:, ycells[:, None], xcells[None, :]] = np.moveaxis(means, -1, 0).astype(np.float32)
        return out

    # -- statistics --------------------------------------------------------------------------------

    def _planes(self) -> list:
        if not self.stack:
            return [None]
        n = self.image_shape[0]
        return sorted({int(round(v)) for v in np.linspace(0, n - 1, min(n, 8))})

    def _statistics(self) -> tuple[float, float, float]:
        h, w = self.image_shape[-2:]
        planes = self._planes()
        step = max(1, math.ceil(math.sqrt(h * w * len(planes) / SAMPLE_PIXELS)))
        sample = np.concatenate([self._read(z, slice(0, h, step), slice(0, w, step)).reshape(-1)
                                 for z in planes]).astype(np.float64)
        sample = sample[np.isfinite(sample)]
        lo, hi = (np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0))
        if not hi > lo:
            hi = lo + 1.0
        self.lo, self.hi = float(lo), float(hi)
        # Noise: neighbouring-pixel differences along rows (full resolution) on a few rows.
        n_rows = max(1, min(h, 64 // len(planes)))
        width = min(w, SAMPLE_PIXELS // (64 * 2))
        x0 = (w - width) // 2
        diffs = []
        for z in planes:
            for y in np.linspace(0, h - 1, n_rows).round().astype(int):
                row = self._normalize(self._read(z, slice(int(y), int(y) + 1), slice(x0, x0 + width)))[0]
                diffs.append(np.diff(row, axis=0))
        d = np.concatenate(diffs).astype(np.float64)
        d = d[np.isfinite(d).all(axis=1)]
        if d.shape[0] == 0:
            return self.lo, self.hi, 0.0
        mad = np.median(np.abs(d - np.median(d, axis=0)), axis=0) * 1.4826 / math.sqrt(2.0)
        return self.lo, self.hi, float(np.sqrt(np.sum(mad ** 2)))


def _as_slice(idx: np.ndarray):
    """A slice when the sorted indices are one contiguous run (the common case), else the indices."""
    if idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _pixel_cells(grid, axis: int, n_pixels: int) -> tuple[int, np.ndarray]:
    """``(first pixel, cell of each pixel)``: the contiguous image pixels along ``axis`` whose
    centres fall in one of ``grid``'s valid cells, and those cells (as :meth:`CellGrid.cell_of`, unclipped)."""
    s, o = float(grid.cell_size[axis]), float(grid.origin[axis])
    nv = grid.valid_shape[axis]
    a = max(0, math.floor(o) - 1)
    b = min(n_pixels, math.ceil(o + nv * s) + 1)
    if b <= a:
        return 0, np.empty(0, np.intp)
    idx = grid.cell_of(np.arange(a, b, dtype=np.float64) + 0.5, axis, clip=False)
    keep = np.flatnonzero((idx >= 0) & (idx < nv))
    if keep.size == 0:
        return 0, np.empty(0, np.intp)
    return a + int(keep[0]), idx[keep[0]:keep[-1] + 1]


def _runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and values of the runs of equal values in nondecreasing ``ids``."""
    starts = np.flatnonzero(np.diff(ids, prepend=ids[0] - 1))
    return starts, ids[starts]


def _drop_mapped_pages(array) -> None:
    """Unmap the pages a memory-mapped guide has touched (they stay in the page cache).

    A window's pixels are copied out as they are read; without this the mapped pages would pile
    up in the process's resident memory until the whole image (137 MiB for 12000² uint8) counts.
    """
    import mmap

    base = getattr(array, "base", None)
    if isinstance(array, np.memmap) and isinstance(base, mmap.mmap) and hasattr(base, "madvise"):
        base.madvise(mmap.MADV_DONTNEED)


def _memmap_spec(array) -> dict | None:
    """How to reopen a file-backed ``np.memmap`` (so it pickles as a path, not as its pixels)."""
    import mmap

    # Only a whole map (its base the mmap itself): a view's offset attribute is its parent's.
    if isinstance(array, np.memmap) and getattr(array, "filename", None) and isinstance(array.base, mmap.mmap) \
            and array.flags.c_contiguous:
        return {"filename": array.filename, "dtype": array.dtype, "mode": "r", "offset": array.offset,
                "shape": array.shape}
    return None
