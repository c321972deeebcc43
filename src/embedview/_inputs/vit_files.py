"""Files of bare ViT features: ``.npy``, ``.npz``, ``.safetensors``, ``.pt``/``.pth``.

:func:`open_features` opens tokens or a feature map saved in one of them as a
:class:`~embedview._inputs.source_base.Source` (through :mod:`embedview._inputs.vit_arrays`). Nothing is
unpickled: ``.npy``/``.npz`` headers are parsed without ``np.load``, ``.safetensors`` is read
without the safetensors package (:func:`read_safetensors`), ``.pt`` loads with
``torch.load(..., weights_only=True)``; every header is checked against the bytes the file
holds before anything is read.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping

import numpy as np

from .._common.errors import EmbedviewError, api_only, arg
from .._common.limits import check_fits
from .source_base import Source
from .vit_arrays import BF16, Deferred, as_array, from_feature_map, from_tokens
from .vit_geometry import Preprocess

#: Files of bare ViT features (tokens or feature maps), read by :func:`embedview.open_features`.
FEATURE_SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth")
LAYOUTS = ("auto", "tokens", "map")
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def open_features(path: str | os.PathLike, *, key: str | None = None, layout: str = "auto",
                  image_size: tuple[int, int] | None = None, patch_size: int | tuple[int, int] | None = None,
                  grid: tuple[int, int] | None = None, prefix_tokens: int = 0,
                  preprocess: Preprocess | Mapping | None = None, channels_last: bool = False) -> Source:
    """Open tokens or a feature map saved as ``.npy``, ``.npz``, ``.safetensors`` or ``.pt``/``.pth``.

    ``.npy`` and ``.safetensors`` are memory-mapped and ``.pt`` is loaded with ``mmap`` where
    its format allows, so only the pieces being drawn are read; an ``.npz`` member is loaded
    on the first read. Nothing is unpickled: ``.npy``/``.npz`` headers are parsed without
    ``np.load`` and object arrays refused, ``.pt`` loads with ``torch.load(..., weights_only=True)``
    (tensors only). Every header is checked against the bytes the file holds before anything is
    read, so a damaged or hostile file is refused with an :class:`EmbedviewError` naming it.

    Parameters
    ----------
    path : str or PathLike
        The file.
    key : str, optional
        The array in an ``.npz``, ``.safetensors`` or ``.pt`` dict; needed where it holds
        more than one.
    layout : {"auto", "tokens", "map"}
        ``auto``: 2 dimensions are tokens ``(N, C)``, 4 a map ``(B, C, h, w)``, and 3 either
        ``(B, N, C)`` or ``(C, h, w)``, whichever fits the geometry.
    image_size, patch_size, grid, prefix_tokens, preprocess, channels_last
        The geometry, as for :func:`from_tokens` and :func:`from_feature_map`.

    Returns
    -------
    Source

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tokens.npy")
    >>> np.save(path, np.zeros((1 + 14 * 14, 16), np.float32))
    >>> src = open_features(path, image_size=(224, 224), patch_size=16, prefix_tokens=1)
    >>> src.layout, src.pieces()[0].grid.shape
    ('single', (14, 14))
    """
    path = os.fspath(path)
    if layout not in LAYOUTS:
        raise EmbedviewError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}.")
    if not os.path.isfile(path):
        raise EmbedviewError(f"{path} does not exist or is not a file; pass a .npy, .npz, .safetensors or .pt file.")
    if image_size is None:
        raise EmbedviewError(
            f"{path} holds bare features: pass {arg('image_size', form='H,W')} of the original image, and {arg('patch_size')} "
            f"(and {arg('preprocess')} if it was resized or cropped){api_only(' to embedview.open_features')}.")
    data = as_array(_load_array(path, key), f"the array in {path}")
    geometry = dict(image_size=image_size, preprocess=preprocess, name=path)
    def as_tokens():
        return from_tokens(data, patch_size=patch_size, grid=grid, prefix_tokens=prefix_tokens,
                                        **geometry)
    def as_map():
        return from_feature_map(data, patch_size=patch_size, channels_last=channels_last, **geometry)
    if layout == "tokens" or (layout == "auto" and data.ndim == 2):
        if patch_size is None:
            raise EmbedviewError(f"tokens in {path} need {arg('patch_size')} (the model's patch size in input pixels).")
        return as_tokens()
    if layout == "map" or (layout == "auto" and data.ndim == 4):
        return as_map()
    if data.ndim != 3:
        raise EmbedviewError(
            f"{path} holds an array of shape {list(data.shape)}; expected tokens (N, C)/(B, N, C) "
            "or a feature map (C, h, w)/(B, C, h, w).")
    fits, failed = [], {}
    for kind, make in (("tokens", as_tokens),) * (patch_size is not None) + (("map", as_map),):
        try:
            fits.append(make())
        except EmbedviewError as err:
            failed[kind] = err
    if len(fits) == 1:
        return fits[0]
    spelled = "(h, w, C)" if channels_last else "(C, h, w)"
    if not fits and patch_size is None:
        raise EmbedviewError(
            f"{path} holds an array of shape {list(data.shape)}, tokens (B, N, C) or a feature map {spelled}: "
            "as a feature map it does not fit the given geometry, and tokens need "
            f"{arg('patch_size')} (the model's patch size in input pixels); pass it.")
    if not fits:  # say what does not match for the reading its shape suggests: h == w for a map
        square = data.shape[0] == data.shape[1] if channels_last else data.shape[1] == data.shape[2]
        raise failed["map" if square else "tokens"]
    raise EmbedviewError(
        f"{path} holds an array of shape {list(data.shape)} that fits both tokens (B, N, C) and a feature "
        f"map {spelled} for the given geometry; pass layout='tokens' or layout='map'.")


def _pick(arrays: dict, key, path: str):
    if key is not None:
        if key not in arrays:
            raise EmbedviewError(f"{path} has no array {key!r}; it holds {', '.join(map(repr, arrays)) or 'none'}.")
        return arrays[key]
    if len(arrays) != 1:
        raise EmbedviewError(
            f"{path} holds {len(arrays)} arrays ({', '.join(map(repr, arrays)) or 'none'}); "
            f"pass {arg('key')} to choose one.")
    return next(iter(arrays.values()))


#: Most dimensions an array in a feature file may claim (numpy's own limit is 64).
_MAX_NDIM = 32
_RESAVE = {".npy": "save the features again with numpy.save (numbers, not objects)",
           ".npz": "save the features again with numpy.savez (numbers, not objects)",
           ".safetensors": "save the features again with safetensors' save_file, or as .npy"}


def _damaged(path: str, problem: str, suffix: str | None = None) -> EmbedviewError:
    """The one error for a feature file that does not hold what its format says."""
    suffix = suffix or os.path.splitext(path)[1].lower()
    return EmbedviewError(f"{path} is not a valid {suffix} file: {problem}; {_RESAVE[suffix]}.")


def _check_shape(shape, what: str) -> tuple[tuple[int, ...], int] | str:
    """``(shape, number of elements)``, or what is wrong with a shape claimed by a file header."""
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_NDIM:
        return f"{what} has shape {_short(shape)}, not a list of at most {_MAX_NDIM} sizes"
    if not all(type(v) is int and 0 <= v < 2**63 for v in shape):
        return f"{what} has shape {_short(shape)}, not a list of non-negative integers"
    if math.prod(max(v, 1) for v in shape) >= 2**48:  # numpy refuses such shapes even when empty
        return f"{what} has shape {_short(shape)}, larger than any array embedview can hold"
    return tuple(shape), math.prod(shape)


def _short(value, limit: int = 60) -> str:
    """A bounded ``repr`` of what a hostile header holds (which may be megabytes of nested lists)."""
    import reprlib

    bounded = reprlib.Repr()  # (keyword arguments only from Python 3.12)
    bounded.maxlevel, bounded.maxlist, bounded.maxtuple, bounded.maxdict = 3, 6, 6, 4
    bounded.maxstring = bounded.maxother = limit
    text = bounded.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_dtype(dtype: np.dtype, what: str, kinds: str = "fiu") -> str | None:
    """What is wrong with an array dtype read from a header (objects, records, text), or None."""
    if dtype.hasobject:
        return f"{what} holds Python objects ({dtype}), which embedview never unpickles"
    if dtype.kind not in kinds or dtype.names is not None or dtype.subdtype is not None:
        return f"{what} has dtype {dtype}, not numbers"
    return None


def _read_npy_header(f, n_bytes: int, what: str, kinds: str = "fiu"):
    """``(shape, fortran_order, dtype, data offset)`` from the ``.npy`` stream ``f`` of ``n_bytes``,
    or a str saying what is wrong. Only the header is read; the data must be as long as it says."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            return f"{what} has .npy format version {version}, which embedview does not read"
        shape, fortran, dtype = readers[version](f)  # numpy caps the header at 10 000 bytes
    except Exception as err:  # hostile bytes: any failure of the parser means a damaged header
        return f"{what} has a damaged .npy header ({type(err).__name__})"
    problem = _check_dtype(dtype, what, kinds)
    if problem:
        return problem
    checked = _check_shape(shape, what)
    if isinstance(checked, str):
        return checked
    shape, count = checked
    offset = f.tell()
    if offset + count * dtype.itemsize > n_bytes:
        return (f"{what} claims shape {list(shape)} of {dtype} ({count * dtype.itemsize} bytes) but holds "
                f"{max(0, n_bytes - offset)} bytes of data (truncated or damaged)")
    return shape, bool(fortran), dtype, offset


def _load_npy(path: str) -> np.ndarray:
    """Memory-map an ``.npy`` file after checking its header against its size (never unpickles)."""
    with open(path, "rb") as f:
        header = _read_npy_header(f, os.fstat(f.fileno()).st_size, "its array")
    if isinstance(header, str):
        raise _damaged(path, header)
    shape, fortran, dtype, offset = header
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _load_array(path: str, key):
    suffix = os.path.splitext(path)[1].lower()
    readers = {".npy": _load_npy, ".npz": lambda p: _pick(npz_members(p), key, p),
               ".safetensors": lambda p: _pick(read_safetensors(p), key, p)}
    if suffix in readers:
        try:
            return readers[suffix](path)
        except OSError as err:
            raise EmbedviewError(f"{path} could not be read ({err.strerror or err}); check that it exists "
                                 "and is readable.") from None
    if suffix in (".pt", ".pth"):
        return _load_torch(path, key)
    raise EmbedviewError(
        f"{path} is not a feature file embedview reads; pass a {', '.join(FEATURE_SUFFIXES)} file.")


def npz_members(path: str, kinds: str = "fiu") -> dict:
    """``name -> Deferred`` for the arrays in an .npz, shapes read from their headers only.

    Each member's header must agree with the member's size in the zip directory, so no
    header can make embedview allocate more than the member holds; the data is read on the
    first access, after checking that it fits in memory.
    """
    import zipfile

    members = {}
    with open(path, "rb") as file:  # failing to open it is an OSError; what follows is the file's fault
        try:
            with zipfile.ZipFile(file) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as f:
                        header = _read_npy_header(f, info.file_size, f"member {_short(info.filename)}", kinds)
                    if isinstance(header, str):
                        raise _damaged(path, header, ".npz")
                    members[info.filename[:-4]] = Deferred(
                        header[0], header[2], lambda info=info, header=header: _npz_member(path, info, *header))
        except EmbedviewError:
            raise
        except Exception as err:  # BadZipFile, zlib.error, EOFError, NotImplementedError, ... on hostile bytes
            raise _damaged(path, f"it is not a readable zip archive ({type(err).__name__})", ".npz") from None
    return members


def _npz_member(path: str, info, shape, fortran: bool, dtype: np.dtype, offset: int) -> np.ndarray:
    """Read one checked ``.npz`` member, no more bytes than its header implies."""
    import zipfile

    n_bytes = math.prod(shape) * dtype.itemsize
    check_fits(n_bytes, f"the array {info.filename[:-4]!r} of {path} ({list(shape)} {dtype})",
               "save the features as .npy or .safetensors, which are read from disk piece by piece")
    out, done = np.empty(n_bytes, np.uint8), 0
    with open(path, "rb") as file:
        try:
            with zipfile.ZipFile(file) as zf, zf.open(info) as f:
                f.read(offset)
                while done < n_bytes:
                    chunk = f.read(min(n_bytes - done, 1 << 24))
                    if not chunk:
                        break
                    out[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                    done += len(chunk)
        except Exception as err:  # a corrupted or truncated deflate stream, a bad CRC
            raise _damaged(path, f"member {_short(info.filename)} is damaged ({type(err).__name__})",
                           ".npz") from None
    if done < n_bytes:
        raise _damaged(path, f"member {_short(info.filename)} is truncated", ".npz")
    return out.view(dtype).reshape(shape, order="F" if fortran else "C")


def read_safetensors(path: str | os.PathLike) -> dict:
    """Memory-map the tensors of a ``.safetensors`` file (F64, F32, F16, BF16) without the safetensors package.

    The format: an 8-byte little-endian header length, a JSON header mapping each name to its
    ``dtype``, ``shape`` and ``data_offsets`` (from the end of the header), then the data,
    little-endian, C order. Every entry is checked against the file before anything is mapped.

    Returns
    -------
    dict
        Name → array (a read-only memmap; BF16 as an array-like that reads float32).

    Raises
    ------
    EmbedviewError
        If the file is not a valid safetensors file (naming what is wrong).

    Examples
    --------
    >>> import json, os, struct, tempfile, numpy as np
    >>> x = np.arange(6, dtype="<f4").reshape(2, 3)
    >>> header = json.dumps({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    >>> path = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(struct.pack("<Q", len(header)) + header + x.tobytes())
    >>> read_safetensors(path)["x"][1]
    memmap([3., 4., 5.], dtype=float32)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):  # a FIFO would block, a device never end
        raise EmbedviewError(f"{path} does not exist or is not a regular file; pass a .safetensors file.")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise _damaged(path, "it is shorter than its 8-byte header length", ".safetensors")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _SAFETENSORS_MAX_HEADER):
            raise _damaged(path, f"its header length {n} exceeds the file or {_SAFETENSORS_MAX_HEADER} bytes",
                           ".safetensors")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except RecursionError:  # nesting deep enough to exhaust the parser's stack
        raise _damaged(path, "its JSON header is nested too deeply", ".safetensors") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise _damaged(path, f"its header is not valid JSON ({type(err).__name__})", ".safetensors") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object", ".safetensors")
    start = 8 + n
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _safetensor(path, name, spec, start, size)
    return tensors


#: Longest JSON header read (the safetensors package allows 100 MB, which parses into gigabytes of
#: Python objects; a file of features has a few entries, a large model's a few hundred KB).
_SAFETENSORS_MAX_HEADER = 16 * 2**20


def _safetensor(path: str, name: str, spec, start: int, size: int):
    """One checked entry of a safetensors header, memory-mapped."""
    what = f"tensor {_short(name)}"
    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
        raise _damaged(path, f"{what} is {_short(spec)}, not an object with dtype, shape and data_offsets",
                       ".safetensors")
    dtype = _SAFETENSORS_DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    if dtype is None:
        raise EmbedviewError(
            f"{what} in {path} has dtype {_short(spec['dtype']).strip(chr(39))}; embedview reads "
            f"{', '.join(_SAFETENSORS_DTYPES)} safetensors, so save the features as float32.")
    checked = _check_shape(spec["shape"], what)
    if isinstance(checked, str):
        raise _damaged(path, checked, ".safetensors")
    shape, count = checked
    offsets = spec["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets)
            and 0 <= offsets[0] <= offsets[1] and start + offsets[1] <= size
            and offsets[1] - offsets[0] == count * np.dtype(dtype).itemsize):
        raise _damaged(path, f"{what} has data_offsets {_short(offsets)} that do not fit its shape "
                             f"{list(shape)} of {spec['dtype']} within the file", ".safetensors")
    begin = offsets[0]
    array = (np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)
             if count else np.zeros(shape, dtype))
    return BF16(array) if spec["dtype"] == "BF16" else array


def _load_torch(path: str, key):
    try:
        import torch
    except ModuleNotFoundError as err:
        if err.name != "torch":
            raise
        raise EmbedviewError(
            f"reading {path} needs PyTorch; install it with pip install \"embedview[torch]\" "
            "or save the features as .npy or .safetensors.") from None
    except (ImportError, OSError) as err:  # installed, but its libraries cannot load (e.g. a memory limit)
        raise EmbedviewError(
            f"reading {path} needs PyTorch, which is installed but could not be imported here "
            f"({type(err).__name__}: {_short(str(err).strip() or 'no detail', 200)}); save the features as "
            ".npy or .safetensors, or run where PyTorch imports.") from None
    try:
        try:  # mmap keeps the data on disk; older (non-zip) files cannot be mapped
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise EmbedviewError(
            f"{path} could not be loaded with torch.load(weights_only=True) ({type(err).__name__}: "
            f"{_short(str(err).strip().splitlines()[0], 200) if str(err).strip() else 'no detail'}); save a "
            "tensor or a dict of tensors (torch.save(tensor, path)).") from None
    if isinstance(loaded, torch.Tensor):
        return loaded
    if isinstance(loaded, Mapping):
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise EmbedviewError(f"{path} holds a dict without tensors; save the features with "
                                 "torch.save(tensor, path) or a dict of tensors.")
        return _pick(tensors, key, path)
    raise EmbedviewError(
        f"{path} holds a {type(loaded).__name__}, not a tensor or a dict of tensors; save the features "
        "with torch.save(tensor, path).")
