"""Which files embedview wrote: the ownership marker every output carries, and reading it back.

Every file and folder embedview writes records ``{"embedview_version": ..., "embedview_kind": KIND}``
(:func:`marker`) in its format's own metadata: a PNG ``tEXt`` chunk ``embedview``, the TIFF's
JSON ImageDescription, an NPZ member ``embedview`` (a basis file: its ``metadata`` member, whose
``format`` is ``embedview-basis``), a GIF comment, an MP4 comment, the zarr
root attribute ``embedview``; a ``.npy`` header has no room, so the marker is a trailer after
the array's data (:data:`NPY_TRAILER_END`), which numpy's readers ignore. :func:`owner_kind`
reads it back within bounded bytes (a few MiB at most, whatever the file's size), so a hostile
file cannot make the check slow or large.

The kind says what the file is, so that an output replaces only a file of its own kind: a
``"picture"`` (pictures, figures, montages, side-by-side figures, movies, similarity maps) never
replaces a ``"demo"`` file (the demo's images, labels and tokens: inputs of the README's
commands) or ``"embeddings"``, and a ``"basis"`` only a basis.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

#: What a file written by embedview is.
KINDS = ("picture", "basis", "demo", "embeddings")
#: The keys of the marker, beside the file's other metadata.
VERSION_KEY, KIND_KEY = "embedview_version", "embedview_kind"
#: The end of a ``.npy`` file's marker trailer: ``JSON, its length (uint32 LE), this``.
NPY_TRAILER_END = b"\n#embedview-marker\n"
#: A GIF comment or MP4 comment holding the marker starts so.
COMMENT_PREFIX = "embedview:"
#: Most bytes read from one file to find its marker.
READ_LIMIT = 8 * 2**20


def marker(kind: str = "picture") -> dict:
    """The marker recorded in every output of ``kind``.

    Examples
    --------
    >>> sorted(marker("basis"))
    ['embedview_kind', 'embedview_version']
    """
    from .version import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return {VERSION_KEY: __version__, KIND_KEY: kind}


def comment(kind: str = "picture") -> str:
    """The marker as a GIF/MP4 comment."""
    return COMMENT_PREFIX + json.dumps(marker(kind))


def npy_trailer(kind: str = "picture") -> bytes:
    """The bytes appended after a ``.npy`` file's data."""
    text = json.dumps(marker(kind)).encode()
    return text + struct.pack("<I", len(text)) + NPY_TRAILER_END


def owner_kind(path, directory: bool | None = None) -> str | None:
    """The kind embedview's marker at ``path`` records; ``None`` if there is none (not embedview's).

    ``directory``: read ``path`` as a zarr folder (default: if it is one). Files are read by
    their extension's format; a file that is not a regular file is nobody's.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"not an array")
    >>> owner_kind(path) is None
    True
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError:
        return None
    if directory or (directory is None and stat.S_ISDIR(info.st_mode)):
        return _folder_kind(path) if stat.S_ISDIR(info.st_mode) else None
    if not stat.S_ISREG(info.st_mode):
        return None
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        return None
    try:
        with open(path, "rb") as f:
            found = reader(f, info.st_size)
    except Exception:  # noqa: BLE001 - whatever a damaged or hostile file raises, it is not embedview's
        return None
    return _kind(found, "picture")  # an older embedview marked only its pictures' metadata


def _kind(found, legacy: str | None = None) -> str | None:
    """The kind of a marker dict (``legacy``: an older embedview's marker without a kind)."""
    if not isinstance(found, dict) or VERSION_KEY not in found:
        return None
    kind = found.get(KIND_KEY, legacy)
    return kind if kind in KINDS else None


def _json(text):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _folder_kind(folder: Path) -> str | None:
    """The zarr group's (v2 ``.zattrs`` or v3 ``zarr.json``) root attribute ``embedview``. Folders an
    older embedview wrote carry no kind: OME-Zarr pictures (``multiscales``) or embeddings."""
    for name in (".zattrs", "zarr.json"):
        attrs = _small_json(folder / name)
        if name == "zarr.json" and isinstance(attrs, dict):
            attrs = attrs.get("attributes")
        if isinstance(attrs, dict):
            kind = _kind(attrs.get("embedview"), "picture" if "multiscales" in attrs else "embeddings")
            if kind:
                return kind
    return None


def _small_json(path: Path, limit: int = 16 * 2**20):
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with open(path, "rb") as f:
            return _json(f.read(limit))
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# one reader per format: (file, size) -> the marker dict, or None


def _png(f, size):
    if f.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    used = 8
    while used < min(size, READ_LIMIT):
        length, kind = struct.unpack(">I4s", f.read(8))
        if kind in (b"IDAT", b"IEND") or used + length > READ_LIMIT:
            return None  # PIL writes text chunks before the image data
        data = f.read(length)
        f.read(4)  # crc
        used += length + 12
        if kind == b"tEXt" and data.startswith(b"embedview\x00"):
            return _json(data[10:].decode("latin-1"))
        if kind == b"iTXt" and data.startswith(b"embedview\x00\x00"):  # uncompressed international text
            rest = data[12:].split(b"\x00", 2)  # language, translated keyword, text
            return _json(rest[2].decode("utf-8")) if len(rest) == 3 else None
    return None


def _tiff(f, size):
    head = f.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        return None
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 42:
        offset, count_fmt, entry, value_fmt = struct.unpack(order + "I", head[4:8])[0], "H", 12, "I"
    elif version == 43:  # BigTIFF
        offset, count_fmt, entry, value_fmt = struct.unpack(order + "Q", head[8:16])[0], "Q", 20, "Q"
    else:
        return None
    f.seek(offset)
    n = struct.unpack(order + count_fmt, f.read(struct.calcsize(count_fmt)))[0]
    if n > 4096:
        return None
    table = f.read(n * entry)
    inline = 4 if entry == 12 else 8  # bytes of the count and of the value/offset fields
    for i in range(n):
        e = table[i * entry:(i + 1) * entry]
        tag, kind = struct.unpack(order + "HH", e[:4])
        if tag != 270 or kind != 2:  # ImageDescription, ASCII
            continue
        count = struct.unpack(order + value_fmt, e[4:4 + inline])[0]  # count, then value or offset
        if count > READ_LIMIT:
            return None
        if count <= inline:
            data = e[4 + inline:4 + inline + count]
        else:
            f.seek(struct.unpack(order + value_fmt, e[4 + inline:4 + 2 * inline])[0])
            data = f.read(count)
        return _json(data.rstrip(b"\x00").decode("utf-8"))
    return None


def _npy(f, size):
    import numpy as np

    tail = min(size, 64 * 2**10)
    f.seek(size - tail)
    end = f.read(tail)
    if not end.endswith(NPY_TRAILER_END):
        return None
    n = struct.unpack("<I", end[-len(NPY_TRAILER_END) - 4:-len(NPY_TRAILER_END)])[0]
    start = size - len(NPY_TRAILER_END) - 4 - n
    # The trailer must begin exactly where the array's data ends (numpy's own bounded header parser).
    f.seek(0)
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        return None
    shape, fortran, dtype = read(f)  # numpy's parser: a bounded header, no pickle
    if dtype.hasobject or f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != start:
        return None
    f.seek(start)
    return _json(f.read(n))


def _npz(f, size):
    import zipfile

    import numpy as np

    # The central directory's size, from the end record, before zipfile reads it whole.
    tail = min(size, 2**16 + 22)
    f.seek(size - tail)
    end = f.read(tail)
    at = end.rfind(b"PK\x05\x06")
    if at < 0 or len(end) < at + 22:
        return None
    if struct.unpack("<I", end[at + 12:at + 16])[0] > 2**20:
        return None
    f.seek(0)
    with zipfile.ZipFile(f) as z:
        names = set(z.namelist())
        # A basis file (and an older embedview's picture) has no marker member, only its metadata.
        name = "embedview.npy" if "embedview.npy" in names else "metadata.npy"
        info = z.getinfo(name)
        if info.file_size > 2**20:
            return None
        with z.open(info) as member:
            array = np.lib.format.read_array(member, allow_pickle=False)
    if array.dtype == np.uint8 and array.ndim == 1:
        found = _json(array.tobytes().decode("utf-8"))
    elif array.dtype.kind == "U" and array.ndim == 0:
        found = _json(str(array))
    else:
        return None
    if name == "metadata.npy" and isinstance(found, dict) and found.get("format") == "embedview-basis":
        return {**found, KIND_KEY: "basis"}
    return found if name == "embedview.npy" or isinstance(found, dict) and KIND_KEY not in found else None


def _gif(f, size):
    head = f.read(13)
    if head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    if head[10] & 0x80:
        f.seek(13 + 3 * 2 ** ((head[10] & 7) + 1))
    used = f.tell()
    while used < READ_LIMIT:
        block = f.read(1)
        if block != b"\x21":  # an image, the trailer or the end: the marker comes before
            return None
        label = f.read(1)
        data = bytearray()
        while True:
            n = f.read(1)
            if not n or n == b"\x00":
                break
            data += f.read(n[0])
            if len(data) > READ_LIMIT:
                return None
        used = f.tell()
        if label == b"\xfe" and data.startswith(COMMENT_PREFIX.encode()):
            return _json(bytes(data[len(COMMENT_PREFIX):]).decode("utf-8"))
    return None


def _mp4(f, size):
    moov = _box(f, 0, size, b"moov")
    if moov is None or moov[1] > READ_LIMIT:
        return None
    f.seek(moov[0])
    data = f.read(moov[1])
    for name in (b"udta", b"meta", b"ilst", b"\xa9cmt", b"data"):
        found = _child(data, name)
        if found is None:
            return None
        data = found[4:] if name == b"meta" else found  # meta is a full box: version and flags first
    text = data[8:].decode("utf-8")  # a data box: type and locale, then the value
    return _json(text[len(COMMENT_PREFIX):]) if text.startswith(COMMENT_PREFIX) else None


def _box(f, start, end, name):
    """``(payload offset, payload size)`` of the top-level box ``name`` (boxes skipped by their sizes)."""
    at = start
    for _ in range(1024):
        if at + 8 > end:
            return None
        f.seek(at)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = end - at
        if size < header:
            return None
        if kind == name:
            return at + header, size - header
        at += size
    return None


def _child(data: bytes, name: bytes):
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size < 8:
            return None
        if kind == name:
            return data[at + 8:at + size]
        at += size
    return None


_READERS = {".png": _png, ".tif": _tiff, ".tiff": _tiff, ".npy": _npy, ".npz": _npz, ".gif": _gif, ".mp4": _mp4}
