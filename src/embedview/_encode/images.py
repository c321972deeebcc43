"""The image to encode: opened for reading by windows, and its layout (2D or stack, channels).

Paths: ``.npy`` (memory-mapped), TIFF (memory-mapped where uncompressed, else read through
tifffile's zarr store window by window: big, tiled and multi-page files), PNG/JPEG and the other
Pillow formats (decoded whole), zarr arrays and OME-Zarr images (their full-resolution level).
Arrays: numpy, zarr, dask or anything with ``shape``, ``dtype`` and slicing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError, arg


@dataclass(frozen=True)
class Image:
    """An image opened for encoding.

    Attributes
    ----------
    array : array-like
        As stored: ``(H, W)``, ``(H, W, C)``, ``(Z, H, W)`` or ``(Z, H, W, C)``.
    n_slices : int or None
        Slices of a stack (``ndim=3``), None for one 2D image.
    shape : (int, int)
        ``(H, W)``.
    name : str
    path : str or None
    """

    array: object
    n_slices: int | None
    shape: tuple[int, int]
    name: str
    path: str | None

    def block(self, z, rows, cols) -> np.ndarray:
        """Pixels ``[rows, cols]`` of slice ``z`` (None for 2D), channels kept: one window read."""
        lead = () if z is None else (z,)
        return np.asarray(self.array[lead + (slice(*rows), slice(*cols))])

    def bands(self, max_bytes: int = 2**26):
        """The array's bytes in C order, band by band of the first axis (micro_sam's ``data_signature``)."""
        shape = tuple(int(v) for v in self.array.shape)
        row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(self.array.dtype).itemsize
        step = max(1, max_bytes // max(row, 1))
        for a in range(0, shape[0], step):
            yield np.ascontiguousarray(self.array[a:a + step]).tobytes()


def open_image(image, ndim: int | None = None) -> Image:
    """Open ``image`` (a path or an array) and work out its layout.

    ``ndim`` is micro_sam's: 2 for one image (``(H, W)`` grey or ``(H, W, C)``), 3 for a stack
    (``(Z, H, W)`` or ``(Z, H, W, C)``). Without it, a 2D array is an image, a 3D array whose
    last axis has at most 4 entries is one image with channels and any other 3D array a stack,
    and a 4D array a stack with channels.
    """
    path = None
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        array = _read(Path(path))
        name = path
    elif all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        array, name = image, f"the {type(image).__name__} of shape {list(image.shape)}"
    else:
        raise EmbedviewError(f"the image must be a path or an array, got a {type(image).__name__}.")
    shape = tuple(int(v) for v in array.shape)
    try:
        kind = np.dtype(array.dtype).kind
    except TypeError:
        kind = "?"
    if kind not in "biuf":
        raise EmbedviewError(f"{name} holds {array.dtype} values; an image to encode holds numbers.")
    if ndim is None:
        ndim = 2 if len(shape) == 2 or (len(shape) == 3 and shape[-1] <= 4) else 3
    if ndim not in (2, 3):
        raise EmbedviewError(f"{arg('ndim', ndim)} is not 2 (one image) or 3 (a stack).")
    if not _fits(shape, ndim):
        what = "(H, W) or (H, W, C)" if ndim == 2 else "(Z, H, W) or (Z, H, W, C)"
        other = f"pass {arg('ndim', 5 - ndim)} or " if _fits(shape, 5 - ndim) else "pass "
        raise EmbedviewError(f"{name} has shape {list(shape)}, but an image of {arg('ndim', ndim)} is {what}; "
                             f"{other}an image of that shape (channels last, at most 64).", param="ndim")
    spatial = shape[ndim - 2:ndim]
    if min(shape) < 1:
        raise EmbedviewError(f"{name} is empty (shape {list(shape)}).")
    return Image(array, shape[0] if ndim == 3 else None, spatial, name, path)


def _fits(shape, ndim: int) -> bool:
    rank = len(shape) - (ndim - 2)  # axes after the slice axis: 2, or 3 with channels last
    return rank == 2 or (rank == 3 and shape[-1] <= 64)


def _read(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return _open_zarr(path)
    if suffix in (".tif", ".tiff") and path.is_file():
        import tifffile

        try:
            return tifffile.memmap(path, mode="r")
        except (ValueError, OSError):  # compressed, tiled or many pages: windows through tifffile's zarr store
            import zarr

            try:
                node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
                return node if hasattr(node, "shape") else node["0"]
            except Exception as err:
                raise EmbedviewError(f"could not read the image {path} ({type(err).__name__}: {err}).") from None
    from .._outputs.io import read_image

    return read_image(path)


def _open_zarr(path: Path):
    if not path.is_dir():
        raise EmbedviewError(f"the image {path} does not exist or is not a zarr folder.")
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise EmbedviewError(f"could not open the image {path} as zarr ({type(err).__name__}: {err}).") from None
    if hasattr(node, "shape"):
        return node
    multiscales = dict(node.attrs).get("multiscales") or dict(node.attrs).get("ome", {}).get("multiscales")
    try:
        return node[multiscales[0]["datasets"][0]["path"]]
    except Exception:
        raise EmbedviewError(f"{path} is a zarr group, not an image array or an OME-Zarr image; pass the path of "
                             "its array (e.g. IMAGE.zarr/0).") from None
