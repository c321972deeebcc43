"""Sinks: where projected pieces go and how they become the picture.

- :class:`MemorySink` places each projected piece on an in-memory canvas at once and colours it
  once the colour ranges are known (the ranges need every piece first).
- :class:`ZarrSink` keeps the projected pieces (``k`` channels: ``k/C`` of the features' size;
  in memory while small, else in a scratch zarr inside the output's temporary folder), then
  composes, colours and writes the OME-Zarr output one chunk-sized window at a time, so memory
  stays bounded whatever the output's size. A ``ZarrSink`` pickles cheaply (paths, not arrays,
  when its projected pieces are on disk), so its windows can be written by other processes.
- :class:`embedview._outputs.movie.MovieSink` keeps them likewise and composes one movie frame
  per slice.

Both compose their windows with :func:`compose`. Every sink follows :class:`Sink`, the one
writer contract: the pipeline places pieces, colours slices and finishes. A sink that writes a
file writes it under the temporary name that :func:`embedview._common.output_paths.atomic_path`
gives (which alone applies the overwrite rule, renames when complete and removes what a
failure leaves), and puts embedview's ownership marker in it (:mod:`embedview._common.ownership`);
a :class:`MemorySink`'s picture becomes a file, by format, in
:func:`embedview._outputs.io.write_picture`.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .._common.geometry import OutputGrid
from .._inputs.sources import Piece
from .._model.colors import to_uint8
from .._model.fit import Basis
from .omezarr import CHUNK, OmeZarrWriter, windows
from .render import Placer

#: Projected pieces are kept in memory up to this many bytes, then in a scratch zarr on disk.
MEMORY_STORE_BYTES = 64 * 2**20


def colour(components: np.ndarray, basis: Basis, shown: tuple[int, ...], out: np.ndarray) -> None:
    """Colour ``(..., k)`` components into ``out`` ``(..., 3)`` uint8 with ``basis``' ranges."""
    idx = list(shown)
    lo, hi = basis.lo[idx], basis.hi[idx]
    if len(idx) == 1:  # one component: grey
        out[...] = to_uint8(components[..., idx], lo, hi)
    else:
        out[..., :len(idx)] = to_uint8(components[..., idx], lo, hi)


def compose(placer: Placer, parts, window: tuple[slice, slice], k: int, basis: Basis,
            shown: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One window of the output from its projected pieces: ``(components, rgb)``.

    ``parts``: the ``(piece, projected)`` pairs that meet the output window ``window`` (output
    pixel slices); ``components`` ``(h, w, k)`` float32 (NaN where nothing is drawn) and ``rgb``
    ``(h, w, 3)`` uint8 coloured with ``basis``' ranges. Every sink that composes windows (an
    OME-Zarr chunk, a movie frame) does it here.
    """
    shape = tuple(s.stop - s.start for s in window)
    components = np.full(shape + (k,), np.nan, np.float32)
    for piece, projected in parts:
        placer.place(components, piece, projected, origin=(window[0].start, window[1].start))
    rgb = np.zeros(shape + (3,), np.uint8)
    colour(components, basis, shown, rgb)
    return components, rgb


def projected_store(pieces: list[Piece], n_components: int, folder, on_disk: bool | None = None):
    """Where a sink keeps the projected pieces until it composes windows: a dict, or (``on_disk``,
    by default when they exceed :data:`MEMORY_STORE_BYTES`) a scratch zarr at ``folder()``, a
    callable called only then."""
    cells = pieces[0].grid.shape
    if on_disk is None:
        on_disk = len(pieces) * n_components * cells[0] * cells[1] * 4 > MEMORY_STORE_BYTES
    return _DiskStore(Path(folder()), len(pieces), n_components, cells) if on_disk else {}


@runtime_checkable
class Sink(Protocol):
    """Where the pipeline draws one input's picture (:func:`embedview._run.pipeline.execute`)."""

    def place(self, index: int, piece: Piece, projected: np.ndarray) -> None:
        """Take the projected piece number ``index`` of the input (``(k, h, w)`` at cell resolution)."""

    def colour(self, zs, basis: Basis, shown, executor=None) -> None:
        """Colour the slices ``zs`` once their colour ranges (``basis``) are known."""

    def finish(self, scale, translate, metadata: dict) -> None:
        """Complete the picture (files: everything but the rename, which ``atomic_path`` does)."""


@runtime_checkable
class Writer(Protocol):
    """A file output of the pipeline: where it goes, whether it may replace a file embedview did
    not write, and the sink that writes it (:class:`ZarrOutput`, :class:`embedview._outputs.movie.MovieOutput`).

    ``open_sink`` is a context manager: it checks what the sink needs (e.g. memory), writes under
    :func:`embedview._common.output_paths.atomic_path` (the overwrite rule, the rename when the
    block completes, the clean-up when it fails) and yields the :class:`Sink`; ``remote``: the
    executor's workers write from other processes.
    """

    path: Path
    overwrite: bool

    def open_sink(self, src, grid: OutputGrid, n_components: int, upsample=None, engine=None, *,
                  remote: bool = False):
        ...


@dataclass(frozen=True)
class ZarrOutput:
    """An OME-Zarr output of the pipeline: the folder ``path`` and whether it may replace a
    folder embedview marked as something else (``overwrite``; never one it did not write).

    Pass it as ``output=`` (``embedview.visualize``, :meth:`embedview.PCA.transform`) where a
    plain path would refuse to replace such a folder.
    """

    path: Path
    overwrite: bool = False

    def __post_init__(self):
        from .._common.errors import EmbedviewError

        object.__setattr__(self, "path", Path(self.path))
        if self.path.suffix.lower() != ".zarr":
            raise EmbedviewError(f"output= writes OME-Zarr: give a path ending in .zarr, not {self.path.name}.")

    @contextlib.contextmanager
    def open_sink(self, src, grid: OutputGrid, n_components: int, upsample=None, engine=None, *,
                  remote: bool = False):
        """The :class:`ZarrSink` writing ``src``'s picture into a temporary folder that becomes
        :attr:`path` when the run completes (the one overwrite rule, rename and clean-up:
        :func:`embedview._common.output_paths.atomic_path`). ``remote``: the windows are written
        by other processes, which read the projected pieces from disk."""
        from .._common.output_paths import atomic_path

        with atomic_path(self.path, directory=True, overwrite=self.overwrite) as tmp:
            sink = ZarrSink(tmp, src.pieces(), grid, src.n_slices, n_components, on_disk=True if remote else None,
                            upsample=upsample, engine=engine)
            try:
                yield sink
            finally:
                sink.close()


class MemorySink:
    """The whole picture in memory: ``components`` ``(Z, y, x, k)`` and ``rgb`` ``(Z, y, x, 3)``."""

    def __init__(self, n_slices: int, grid: OutputGrid, n_components: int, upsample=None, engine=None):
        self.placer = Placer(grid, upsample, engine)
        self.components = np.full((n_slices,) + grid.shape + (n_components,), np.nan, np.float32)
        self.rgb = np.zeros((n_slices,) + grid.shape + (3,), np.uint8)

    def place(self, index: int, piece: Piece, projected: np.ndarray) -> None:
        self.placer.place(self.components[piece.z or 0], piece, projected)

    def colour(self, zs, basis: Basis, shown, executor=None) -> None:
        for z in zs:
            colour(self.components[z], basis, shown, self.rgb[z])

    def finish(self, scale, translate, metadata: dict) -> None:
        """Nothing to complete: the picture stays in memory (:func:`embedview._outputs.io.write_output` writes it)."""


class ZarrSink:
    """Write the picture to an OME-Zarr folder ``path`` (a temporary name; the caller renames it).

    Parameters
    ----------
    path : Path
    pieces : list of Piece
        Every piece of the source, in :meth:`Source.pieces` order (``index`` refers to it).
    grid : OutputGrid
    n_slices : int or None
    n_components : int
    on_disk : bool, optional
        Keep the projected pieces in a scratch zarr (default: only when they exceed
        ``MEMORY_STORE_BYTES``).
    """

    def __init__(self, path: Path, pieces: list[Piece], grid: OutputGrid, n_slices: int | None,
                 n_components: int, on_disk: bool | None = None, chunk: int | None = None,
                 upsample=None, engine=None):
        self.path, self.pieces, self.grid, self.chunk = Path(path), pieces, grid, chunk or CHUNK
        self.n_slices, self.k = n_slices, n_components
        self.placer = Placer(grid, upsample, engine)  # pickles as its options (the guide as its path)
        self.drawn: set = set()  # the windows written, (z, i, j) in chunks: the coarser levels need no others
        self.writer = OmeZarrWriter(self.path, grid.shape, n_slices, n_components, self.chunk)
        self.store = projected_store(pieces, n_components, lambda: self.path / "_projected", on_disk)

    def place(self, index: int, piece: Piece, projected: np.ndarray) -> None:
        self.store[index] = projected

    def colour(self, zs, basis: Basis, shown, executor=None) -> None:
        """Compose, colour and write every window of the slices ``zs`` (in parallel via ``executor``)."""
        def jobs():  # made as they are run: a huge output's windows are never all listed at once here
            for z in zs:
                here = [(i, p) for i, p in enumerate(self.pieces) if (p.z or 0) == z]
                key = None if self.n_slices is None else z
                for window in windows(self.grid.shape, self.chunk):
                    todo = [(i, p) for i, p in here if self._meets(p, window)]
                    # A window no piece meets (a masked tiled file's missing tiles) is all fill
                    # values, black and NaN, as the fresh arrays already read: nothing to write.
                    if todo:
                        self.drawn.add((key, window[0].start // self.chunk, window[1].start // self.chunk))
                        yield key, window, todo, basis, shown

        run = (lambda f, items: [f(*item) for item in items]) if executor is None else executor.map
        run(self._write_window, jobs())

    def _meets(self, piece: Piece, window) -> bool:
        rows, cols = self.placer.spans(piece)
        return all(a.start < w.stop and w.start < a.stop for a, w in zip((rows, cols), window))

    def _write_window(self, z, window, todo, basis, shown) -> None:
        components, rgb = compose(self.placer, ((p, self.store[i]) for i, p in todo), window, self.k, basis, shown)
        self.writer.write(z, window, rgb, components)

    def finish(self, scale, translate, metadata: dict) -> None:
        self.writer.finish(scale, translate, metadata, drawn=self.drawn)
        self.close()

    def __getstate__(self) -> dict:
        # Shipped to workers that write windows: the arrays travel as paths; the placer's
        # caches are rebuilt there.
        state = dict(self.__dict__)
        state["writer"] = _WindowWriter(self.path)
        state["drawn"] = None  # the parent's record, growing as windows are handed out
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def close(self) -> None:
        if isinstance(self.store, _DiskStore):
            shutil.rmtree(self.store.path, ignore_errors=True)
            self.store = {}


class _WindowWriter:
    """:meth:`OmeZarrWriter.write` in another process: reopens level 0 and ``components`` by path.

    Windows are chunk-aligned, so each chunk file is written by one window only and writers in
    several processes never touch the same file.
    """

    write = OmeZarrWriter.write

    def __init__(self, path: Path):
        self.path = Path(path)

    def __getattr__(self, name):  # levels, components: opened on first use
        if name not in ("levels", "components"):
            raise AttributeError(name)
        import zarr

        root = zarr.open_group(str(self.path), mode="r+")
        self.levels, self.components = [root["0"]], root["components"]
        return getattr(self, name)

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]


class _DiskStore:
    """Projected pieces in a scratch zarr: one uncompressed chunk ``(k, h, w)`` per piece."""

    def __init__(self, path: Path, n_pieces: int, k: int, cell_grid: tuple[int, int]):
        import zarr

        self.path = path
        self.array = zarr.create_array(str(path), shape=(n_pieces, k) + tuple(cell_grid),
                                       chunks=(1, k) + tuple(cell_grid), dtype="float32",
                                       fill_value=float("nan"), compressors=None)

    def __setitem__(self, index: int, projected: np.ndarray) -> None:
        block = np.full(self.array.shape[1:], np.nan, np.float32)
        block[:, :projected.shape[1], :projected.shape[2]] = projected
        self.array[index] = block

    def __getitem__(self, index: int) -> np.ndarray:
        return self.array[index]

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        import zarr

        self.path = state["path"]
        self.array = zarr.open_array(str(self.path), mode="r+")
