"""Look at a zarr container on disk before anything reads it.

:func:`scan` walks the folder once (``os.scandir``, no file is opened) and refuses what no
embedding file holds: FIFOs, devices, sockets, broken links, links that leave the container
in a loop, oversized metadata files. zarr opens a FIFO and waits forever, and reads a link to
``/dev/zero`` without end; after the scan neither can happen. :func:`check_chunks` then holds
each features array against the files the scan found: every chunk that should hold data is
there (zarr would silently read a missing one as its fill value) and no chunk file is larger
than any encoding of the bytes it stands for.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field

from .._common.errors import EmbedviewError

#: zarr.json, .zarray, .zattrs, .zgroup larger than this are refused (micro_sam writes ~2 KiB).
MAX_METADATA_BYTES = 16 * 2**20
METADATA_FILES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
#: A container with more entries (files and folders) than this is refused: the walk stays bounded
#: even where a link leads into a large tree.
MAX_ENTRIES = 2**23
#: Arrays with more chunks than this are refused (a 2**20-slice stack of one chunk per slice is inside).
MAX_CHUNKS = 2**22


def chunk_bound(n_bytes: int, n_inner: int = 1) -> int:
    """The most bytes a chunk file of ``n_bytes`` decoded bytes may take: the worst expansion of
    blosc, zstd or gzip on incompressible data is far below an eighth, plus headers (and a shard
    index of 16 bytes per inner chunk)."""
    return n_bytes + n_bytes // 8 + 65536 + 16 * n_inner


@dataclass
class Inventory:
    """The regular files of a container: ``sizes`` maps each path (relative, ``/``-separated) to its size."""

    root: str
    sizes: dict = field(default_factory=dict)


def scan(path: str, under: str = "") -> Inventory:
    """Walk the container at ``path`` (only its folder ``under``, if given) once, refusing anything
    that is not a folder or a regular file.

    Links are followed (to a regular file or a folder); a folder reached twice is a loop.
    """
    inventory = Inventory(path)
    under = under.strip("/")
    seen = set()
    count = [0]

    def walk(folder: str, rel: str, st) -> None:
        if (st.st_dev, st.st_ino) in seen:
            raise EmbedviewError(f"{folder} links back into itself; {path} is not a plain embedding file.")
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                full, name = entry.path, f"{rel}{entry.name}"
                count[0] += 1
                if count[0] > MAX_ENTRIES:
                    raise EmbedviewError(f"{path} holds more than {MAX_ENTRIES} files and folders, more than any "
                                         "embedding file; check that it is the right path (and where its links lead).")
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError:
                    raise EmbedviewError(f"{full} is a broken link; the embedding file {path} is damaged, "
                                         "re-copy it.") from None
                if stat.S_ISDIR(st.st_mode):
                    walk(full, name + "/", st)
                elif not stat.S_ISREG(st.st_mode):
                    raise EmbedviewError(f"{full} is not a regular file ({_kind(st.st_mode)}); embedview "
                                         f"does not read it: replace {path} with a plain copy of the embeddings.")
                elif entry.name in METADATA_FILES and st.st_size > MAX_METADATA_BYTES:
                    raise EmbedviewError(f"{full} is {st.st_size} bytes, far more than any zarr metadata; "
                                         f"the embedding file {path} is damaged, recompute or re-copy it.")
                else:
                    inventory.sizes[name] = st.st_size

    try:
        start = os.path.join(path, under) if under else path
        walk(start, f"{under}/" if under else "", os.stat(start))
        for name in inventory.sizes:
            if name.rsplit("/", 1)[-1] in METADATA_FILES:
                _check_json(os.path.join(path, name))
    except RecursionError:
        raise EmbedviewError(f"{path} is nested too deep to be an embedding file.") from None
    except FileNotFoundError:  # an array nothing was written to has no folder: every chunk is missing
        pass
    except OSError as err:
        raise EmbedviewError(f"cannot read the folder {err.filename or path}: "
                             f"{(err.strerror or str(err)).lower()}.") from None
    return inventory


def _check_json(path: str) -> None:
    """Refuse a metadata file that is not JSON (zarr's own error would not name it)."""
    import json

    try:
        with open(path, "rb") as f:  # a regular file: checked by the walk
            json.loads(f.read(MAX_METADATA_BYTES + 1))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        why = "nested too deep" if isinstance(err, RecursionError) else str(err).split(":")[0]
        raise EmbedviewError(f"{path} is not valid JSON ({why}); the embedding file is damaged, recompute "
                             "or re-copy it.") from None


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"


def check_chunks(array, inventory: Inventory, name: str, slices=None) -> None:
    """Refuse ``array`` (a zarr array of the scanned container) if a chunk is missing or too large.

    ``slices``: only the chunks holding these indices of the first axis are read (a masked tiled
    stack's tile), so only those must be there. Cost: one pass over the array's expected chunk keys
    (one per piece for micro_sam's files).
    """
    try:
        meta = array.metadata
        shape = tuple(int(n) for n in array.shape)
        grid = tuple(int(n) for n in (getattr(array, "shards", None) or array.chunks))
        inner = tuple(int(n) for n in array.chunks)
        itemsize = int(array.dtype.itemsize)
        encode = meta.encode_chunk_key
    except Exception as err:
        raise EmbedviewError(f"the chunk layout of {name} could not be read ({type(err).__name__}); "
                             "the file is damaged, recompute or re-copy it.") from None
    counts = [max(1, -(-n // c)) for n, c in zip(shape, grid)]
    n_chunks = math.prod(counts)
    if n_chunks > MAX_CHUNKS:
        raise EmbedviewError(f"{name} claims {n_chunks} chunks (shape {list(shape)}, chunks {list(grid)}), more "
                             f"than embedview reads ({MAX_CHUNKS}); the file's metadata is damaged.")
    prefix = f"{array.path.strip('/')}/" if array.path.strip("/") else ""
    bound = chunk_bound(math.prod(grid) * itemsize, math.prod(-(-g // i) for g, i in zip(grid, inner)))
    sizes = inventory.sizes
    rows = None if slices is None else {int(z) // grid[0] for z in slices}
    for index in range(n_chunks):
        coords = []
        for count in reversed(counts):  # C order
            index, c = divmod(index, count)
            coords.append(c)
        if rows is not None and coords[-1] not in rows:
            continue
        key = prefix + encode(tuple(reversed(coords)))
        size = sizes.get(key)
        if size is None:
            raise EmbedviewError(
                f"chunk {key} of {inventory.root} is missing: its features would be drawn from zarr's "
                "fill value, not from data; the file is incomplete, recompute or re-copy it.")
        if size > bound:
            raise EmbedviewError(
                f"chunk {key} of {inventory.root} is {size} bytes, more than any encoding of the "
                f"{math.prod(grid) * itemsize} bytes it holds; the file is damaged, recompute or re-copy it.")
