"""Read one whole zarr chunk straight from a local file, where zarr's layout allows it.

micro_sam stores one piece (an image's or a slice's ``(C, h, w)`` grid) per chunk. For such
chunks on a local disk, reading the file and decoding it with numcodecs takes about half the
time of zarr's general path (no event loop, no intermediate buffers), and the decoders release
the GIL so reads run in parallel. Anything else (sharding, filters, other stores) falls back to
zarr.
"""

from __future__ import annotations

import os
import stat
from typing import Callable

import numpy as np

from .container import chunk_bound


def direct_reader(array, n_index: int) -> Callable[[tuple], np.ndarray] | None:
    """``read(index)`` for a zarr array whose chunks are single pieces, or ``None`` to use zarr.

    Parameters
    ----------
    array : zarr.Array or array-like
        A zarr-python 3 array (of zarr format 2 or 3); anything else (numpy) gets ``None``.
    n_index : int
        How many leading axes an index fixes (1 for ``(1, C, h, w)``, 2 for ``(Z, 1, C, h, w)``);
        a chunk must hold exactly the rest.

    Examples
    --------
    >>> import numpy as np, zarr
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(2, 3), chunks=(1, 3), dtype="f4")
    >>> direct_reader(a, 1) is None  # not on a local disk: zarr reads it
    True
    """
    try:
        meta = array.metadata
        root = getattr(array.store_path.store, "root", None)
        if root is None or tuple(array.chunks) != (1,) * n_index + tuple(array.shape[n_index:]):
            return None
        dtype = (meta.data_type if meta.zarr_format == 3 else meta.dtype).to_native_dtype()
        shape = tuple(array.shape[n_index:])
        n_bytes = int(np.prod(shape)) * dtype.itemsize
        decode = _decoder(meta, n_bytes)
    except (AttributeError, TypeError, ValueError):
        return None
    if decode is None or dtype != np.dtype(np.float32):
        return None
    folder = os.path.join(str(root), array.store_path.path)
    n_rest = len(shape)
    bound = chunk_bound(n_bytes)

    def read(index: tuple) -> np.ndarray:
        key = meta.encode_chunk_key(tuple(index) + (0,) * n_rest)
        try:
            raw = read_regular(os.path.join(folder, key), bound)
        except FileNotFoundError:  # zarr would draw its fill value: a grey picture, not data
            raise ValueError(f"chunk {key} is missing") from None
        data = decode(raw)
        if len(data) != n_bytes:
            raise ValueError(f"chunk {key} decodes to {len(data)} bytes, expected {n_bytes}")
        return np.frombuffer(data, "<f4").reshape(shape)

    return read


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, else ``ValueError``.

    A FIFO, a device or a link to ``/dev/zero`` is refused, never opened (and should one replace
    the file between that check and the open, it is opened without blocking and refused on the
    open descriptor, never read).
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{os.path.basename(path)} is not a regular file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{os.path.basename(path)} is not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{os.path.basename(path)} is {st.st_size} bytes, more than any encoding "
                             f"of a chunk ({limit} bytes at most)")
        raw = f.read(st.st_size + 1)  # sized by fstat: a larger read buffer costs ~2 ms a chunk
    if len(raw) > st.st_size:
        raise ValueError(f"{os.path.basename(path)} grew while read")
    return raw


def _decoder(meta, n_bytes: int) -> Callable[[bytes], bytes] | None:
    """A bounded decoder of one chunk (never more than ``n_bytes`` out), or ``None`` to use zarr."""
    import numcodecs

    if meta.zarr_format == 2:
        if meta.filters or meta.order != "C":
            return None
        if meta.compressor is None:
            return bytes
        codec_id = getattr(meta.compressor, "codec_id", None)
        return _bounded(meta.compressor, codec_id, n_bytes) if codec_id in _CODEC_IDS else None
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

    codecs = list(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec) or str(getattr(codecs[0].endian, "value", "little")) != "little":
        return None
    if len(codecs) == 1:
        return bytes
    if len(codecs) > 2:
        return None
    codec_id = {ZstdCodec: "zstd", BloscCodec: "blosc", GzipCodec: "gzip"}.get(type(codecs[1]))
    if codec_id is None:
        return None
    codec = {"zstd": numcodecs.Zstd, "blosc": numcodecs.Blosc, "gzip": numcodecs.GZip}[codec_id]()
    return _bounded(codec, codec_id, n_bytes)


_CODEC_IDS = ("blosc", "zstd", "gzip", "zlib")


def _bounded(codec, codec_id: str, n_bytes: int) -> Callable[[bytes], bytes]:
    """``codec.decode`` that refuses, before decompressing, a chunk that claims another size
    (blosc and zstd headers state it) and decodes into a buffer of ``n_bytes`` (a zstd frame that
    states no size cannot grow past it); gzip/zlib inflate at most to ``n_bytes`` + 1."""
    import zlib

    if codec_id in ("gzip", "zlib"):
        wbits = 16 + zlib.MAX_WBITS if codec_id == "gzip" else zlib.MAX_WBITS

        def inflate(raw):
            out = zlib.decompressobj(wbits).decompress(raw, n_bytes + 1)
            if len(out) > n_bytes:
                raise ValueError(f"a chunk inflates past its {n_bytes} bytes")
            return out

        return inflate

    def decode(raw):
        stated = _stated_size(codec_id, raw)
        if stated is not None and stated != n_bytes:
            raise ValueError(f"a chunk's header says it holds {stated} bytes, not {n_bytes}")
        out = np.empty(n_bytes, np.uint8)  # the decoder fails rather than write past it
        codec.decode(raw, out=out)
        return memoryview(out)

    return decode


def _stated_size(codec_id: str, raw) -> int | None:
    """The decoded size a blosc or zstd chunk's header states (``None`` where it states none)."""
    raw = bytes(raw[:18])
    if codec_id == "blosc":
        return int.from_bytes(raw[4:8], "little") if len(raw) >= 16 else -1
    if len(raw) < 5 or raw[:4] != b"\x28\xb5\x2f\xfd":  # zstd frame magic
        return -1
    fhd = raw[4]
    single, fcs_flag = (fhd >> 5) & 1, fhd >> 6
    at = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    if len(raw) < at + size:
        return -1
    return int.from_bytes(raw[at:at + size], "little") + (256 if size == 2 else 0)
