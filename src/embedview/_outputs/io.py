"""Files in and out: read an image, write a visualization by extension.

Every write goes through :mod:`embedview._common.output_paths`: only where an output may go
(:func:`~embedview._common.output_paths.check_output`), and never half-written
(:func:`~embedview._common.output_paths.atomic_path`). Every file written here carries
embedview's marker (:mod:`embedview._common.ownership`), so that a later output may replace it
and nothing else: :func:`write_picture` is the one place that puts an in-memory picture in a
file, by format.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._common.output_paths import MOVIE_FORMATS, _extension, atomic_path, check_output
from .._common.ownership import marker, npy_trailer
from .._common.progress import progress_bar

PILLOW_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
IMAGE_FORMATS = (".npy", ".tif", ".tiff") + PILLOW_IMAGES


# ---------------------------------------------------------------------------------------------
# reading


def read_image(path, check=None) -> np.ndarray:
    """Read an image: ``.npy``, ``.tif``/``.tiff`` or a Pillow format (``.png``, ``.jpg``, ...).

    Parameters
    ----------
    path : str or os.PathLike
    check : callable, optional
        Called with the shape the file's header gives (:func:`image_header`) before any pixel is
        decoded; raises if it is not the one wanted (e.g. the embeddings' image shape).

    Returns
    -------
    ndarray
        ``(H, W)``, ``(H, W, 3|4)``, or ``(Z, H, W[, 3|4])`` as stored. ``.npy`` files and
        uncompressed TIFFs are memory-mapped (read-only), so a large stack is not loaded whole;
        what must be decoded (compressed TIFF, PNG, JPEG, ...) is checked against the memory limit
        first, from its header.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "image.npy")
    >>> np.save(path, np.zeros((4, 5), np.uint8))
    >>> read_image(path).shape
    (4, 5)
    """
    path = Path(path)
    ext = _extension(path, IMAGE_FORMATS, f"cannot read the image {path}: unknown extension")
    if not path.is_file():
        raise EmbedviewError(f"the image {path} does not exist or is not a file.")
    shape, dtype, mapped = image_header(path)
    _check_kind(path, shape, dtype)
    if check is not None:
        check(shape)
    if not mapped:
        from .._common.limits import check_fits

        check_fits(2 * math.prod(shape) * dtype.itemsize,  # the decoded pixels, and a converted copy
                   f"decoding the image {path} ({' × '.join(map(str, shape))} {dtype})",
                   "pass the image as an uncompressed .tif or a .npy (read from disk as needed)")
    try:
        if ext == ".npy":
            image = np.load(path, mmap_mode="r", allow_pickle=False)
        elif ext in (".tif", ".tiff"):
            import tifffile

            try:  # uncompressed and contiguous: memory-mapped, not loaded (as a .npy is)
                image = tifffile.memmap(path, mode="r")
            except (ValueError, OSError):  # compressed or tiled: decoded whole
                image = tifffile.imread(path)
        else:
            image = _read_pillow(path)
    except EmbedviewError:
        raise
    except Exception as err:  # each reader fails in its own way on a damaged file
        raise EmbedviewError(
            f"could not read the image {path} ({type(err).__name__}: {str(err).strip() or 'no detail'}).") from None
    _check_kind(path, image.shape, image.dtype)
    return image


def image_header(path) -> tuple[tuple[int, ...], np.dtype, bool]:
    """``(shape, dtype, memory_mapped)`` of an image file from its header alone, no pixel decoded.

    ``shape`` is what :func:`read_image` returns (Pillow's palette and colour-space modes as RGB
    or RGBA); ``memory_mapped``: whether :func:`read_image` maps the file instead of decoding it.
    Pillow's decompression-bomb limit is not applied here: the caller checks the size itself.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "image.npy")
    >>> np.save(path, np.zeros((4, 5, 3), np.uint16))
    >>> image_header(path)
    ((4, 5, 3), dtype('uint16'), True)
    """
    path = Path(path)
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            import os

            from .._inputs.vit_files import _read_npy_header  # the one checked .npy header reader

            with open(path, "rb") as f:
                header = _read_npy_header(f, os.fstat(f.fileno()).st_size, "its array", kinds="biuf")
            if isinstance(header, str):
                raise EmbedviewError(f"could not read the image {path}: {header}.")
            return tuple(int(n) for n in header[0]), np.dtype(header[2]), True
        if ext in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                # tifffile.memmap maps exactly the series whose data lie in one uncompressed run
                mapped = series.dataoffset is not None
                return tuple(int(n) for n in series.shape), np.dtype(series.dtype), mapped
        return _pillow_header(path) + (False,)
    except EmbedviewError:
        raise
    except Exception as err:  # each reader fails in its own way on a damaged file
        raise EmbedviewError(
            f"could not read the image {path} ({type(err).__name__}: {str(err).strip() or 'no detail'}).") from None


def _pillow_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    import warnings

    from PIL import Image

    with warnings.catch_warnings():  # the size is checked by read_image against the memory limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except Image.DecompressionBombError as err:  # one sentence, not Pillow's
            import re

            claimed = re.search(r"\((\d+) pixels\)", str(err))
            pixels = f"{int(claimed[1]):,} pixels" if claimed else "more pixels"
            raise EmbedviewError(
                f"the image {path} claims {pixels}, more than Pillow decodes safely from a {path.suffix} "
                f"file; pass it as an uncompressed .tif or a .npy instead.") from None
    with img:
        w, h = img.size
        mode = img.mode
    # as _read_pillow converts: palettes and colour spaces to RGB (RGBA with alpha), LA and 1 to L
    bands = {"RGB": 3, "RGBA": 4, "RGBX": 4, "RGBa": 4, "P": 3, "PA": 4, "CMYK": 3, "YCbCr": 3, "LAB": 3,
             "HSV": 3}.get(mode)
    dtype = {"I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int32, "F": np.float32}.get(mode, np.uint8)
    return ((h, w) if bands is None else (h, w, bands)), np.dtype(dtype)


def _check_kind(path: Path, shape, dtype) -> None:
    if len(shape) < 2 or np.dtype(dtype).kind not in "biuf":
        raise EmbedviewError(
            f"the image {path} holds a {dtype} array of shape {list(shape)}; "
            "expected numbers in 2D (H, W), RGB (H, W, 3) or a stack (Z, H, W).")


def _read_pillow(path: Path) -> np.ndarray:
    import warnings

    from PIL import Image

    with warnings.catch_warnings():  # its size was checked from the header (image_header)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _decode_pillow(Image.open(path))


def _decode_pillow(img) -> np.ndarray:
    with img:
        if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):  # palettes and colour spaces → RGB
            img = img.convert("RGBA" if "A" in img.mode else "RGB")
        elif img.mode == "LA":
            img = img.convert("L")
        elif img.mode == "1":
            img = img.convert("L")
        return np.asarray(img)


# ---------------------------------------------------------------------------------------------
# writing a visualization


def output_metadata(vis, extra: dict | None = None) -> dict:
    """What every output records besides pixels: geometry, layout and the PCA's explained variance.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> vis = embedview.visualize(np.ones((1, 4, 64, 64), np.float32), original_size=(64, 64))
    >>> output_metadata(vis)["scale"]
    [1.0, 1.0]
    """
    from .._common.version import __version__

    ratios = [[float(v) for v in basis.explained_variance_ratio] for basis in vis.bases]
    meta = {
        "embedview_version": __version__,
        "axes": (["z"] if len(vis.scale) == 3 else []) + ["y", "x", "c"],
        "scale": [float(v) for v in vis.scale],
        "translate": [float(v) for v in vis.translate],
        "layout": vis.layout,
        "image_shape": [int(v) for v in vis.image_shape],
        "n_components": int(vis.components.shape[-1] if vis.components is not None else vis.bases[0].n_components),
        # One list for fit="joint", one per slice for fit="per_slice".
        "explained_variance_ratio": ratios[0] if len(ratios) == 1 else ratios,
    }
    meta.update(extra or {})
    return meta


def check_metadata(metadata, what: str = "metadata") -> dict:
    """``metadata`` (a dict, or ``None``) checked to be plain JSON before anything is written.

    Examples
    --------
    >>> check_metadata({"a": object()})
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: metadata= must be plain JSON (a dict of numbers, strings, lists and dicts); Object of type object is not JSON serializable.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise EmbedviewError(f"{arg(what)} must be a dict of JSON values; got {type(metadata).__name__}.")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        raise EmbedviewError(f"{arg(what)} must be plain JSON (a dict of numbers, strings, lists and dicts); "
                             f"{str(err).rstrip('.')}.") from None
    return metadata


def write_output(vis, path, *, metadata: dict | None = None, progress: bool = False, overwrite: bool = False) -> Path:
    """Write a :class:`~embedview.Visualization` to ``path``, chosen by extension, atomically.

    Parameters
    ----------
    vis : Visualization
    path : str or os.PathLike
        ``.png`` (2D only), ``.tif``/``.tiff`` (2D RGB or one page per slice), ``.mp4``/``.gif``
        (a stack only: one frame per slice, 5 per second; see :func:`embedview.movie`), ``.zarr``
        (OME-Zarr: a multiscale RGB image plus ``components``, see :mod:`embedview._outputs.omezarr`), ``.npy`` (the RGB array) or ``.npz`` (``rgb``,
        ``components``, ``scale``, ``translate``). All but ``.npy`` record ``scale`` and
        ``translate``: the PNG in its ``embedview`` text chunk, the TIFF in its JSON
        ImageDescription, the zarr group in its attributes.
    metadata : dict, optional
        Extra JSON-able entries to record (e.g. the source and options).
    progress : bool
        Progress bar on stderr while writing a large zarr output.
    overwrite : bool
        Replace a file at ``path`` that embedview did not write (never an input; a folder only
        if embedview wrote it). By default an output replaces only embedview's own picture.

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, embedview, tempfile, os
    >>> vis = embedview.visualize(np.random.rand(1, 8, 64, 64).astype(np.float32), original_size=(600, 900))
    >>> out = write_output(vis, os.path.join(tempfile.mkdtemp(), "pca.png"))
    >>> read_image(out).shape
    (43, 64, 3)
    """
    metadata = check_metadata(metadata)
    path = check_output(path, stack=vis.rgb.ndim == 4, overwrite=overwrite)
    meta = output_metadata(vis, metadata)
    with atomic_path(path, directory=path.suffix.lower() == ".zarr", overwrite=overwrite) as tmp:
        write_picture(tmp, path.suffix, vis, meta, progress, path.name)
    return path


def write_picture(tmp, ext: str, vis, meta: dict, progress: bool = False, name: str = "") -> None:
    """Write ``vis``' picture to ``tmp`` (a temporary name of :func:`atomic_path`) in the format of
    ``ext``, with ``meta`` and embedview's marker of a ``"picture"`` (not atomic by itself)."""
    ext = ext.lower()
    meta = {**meta, **marker("picture")}
    if ext == ".png":
        write_png(tmp, vis.rgb, meta)
    elif ext in (".tif", ".tiff"):
        _write_tiff(tmp, vis.rgb, meta)
    elif ext == ".zarr":
        _write_zarr(tmp, vis, meta, progress, name)
    elif ext in MOVIE_FORMATS:
        from .movie import write_frames

        write_frames(tmp, vis.rgb)
    elif ext == ".npy":
        write_npy(tmp, vis.rgb)
    else:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, rgb=vis.rgb, components=vis.components,
                                scale=np.asarray(vis.scale), translate=np.asarray(vis.translate),
                                image_shape=np.asarray(vis.image_shape),
                                metadata=np.asarray(json.dumps(meta)), **npz_marker("picture"))


def npz_marker(kind: str) -> dict:
    """The NPZ member that marks an ``.npz`` as embedview's (``embedview``: the marker's JSON as uint8)."""
    return {"embedview": np.frombuffer(json.dumps(marker(kind)).encode(), np.uint8)}


def write_npy(path, array: np.ndarray, kind: str = "picture") -> None:
    """``np.save`` of ``array``, then embedview's marker as a trailer after the data (numpy ignores it)."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.write(npy_trailer(kind))


def write_png(path, rgb: np.ndarray, metadata: dict | None = None, kind: str = "picture") -> None:
    """Write a uint8 ``(H, W, 3)`` array as PNG with ``metadata`` and embedview's marker of
    ``kind`` in its ``embedview`` text chunk (not atomic: wrap in :func:`atomic_path`)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("embedview", json.dumps({**(metadata or {}), **marker(kind)}))
    Image.fromarray(np.ascontiguousarray(rgb)).save(path, format="PNG", pnginfo=info)


def _write_tiff(path: Path, rgb: np.ndarray, meta: dict) -> None:
    import tifffile

    sy, sx = meta["scale"][-2:]
    # The JSON ImageDescription (tifffile's "shaped" metadata) holds the exact geometry; the
    # resolution tags give other readers the pixel size in image pixels.
    tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib", metadata=meta,
                     resolution=(1.0 / sx, 1.0 / sy), resolutionunit="NONE")


def _write_zarr(path: Path, vis, meta: dict, progress: bool, name: str) -> None:
    """The in-memory picture as OME-Zarr, written window by window like an out-of-core one."""
    from .omezarr import OmeZarrWriter, windows

    n_slices = vis.rgb.shape[0] if vis.rgb.ndim == 4 else None
    writer = OmeZarrWriter(path, vis.rgb.shape[-3:-1], n_slices, vis.components.shape[-1])
    zs = [None] if n_slices is None else range(n_slices)
    bar = progress_bar(len(zs), progress, desc=f"writing {name}")
    try:
        for z in zs:
            rgb, components = (vis.rgb, vis.components) if z is None else (vis.rgb[z], vis.components[z])
            for window in windows(rgb.shape[:2], writer.chunk):
                writer.write(z, window, rgb[window], components[window])
            bar.update()
        writer.finish(vis.scale, vis.translate, meta)
    finally:
        bar.close()
