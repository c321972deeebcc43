"""OME-Zarr output, written window by window so memory stays bounded for any output size.

Layout (OME-NGFF 0.4, zarr format 2, which every OME-Zarr reader opens):

- ``0``, ``1``, …: the RGB picture as a multiscale image, uint8 ``(c, [z,] y, x)`` with c = 3
  (red, green, blue), each level half the size of the one before (2×2 means);
- ``components``: float32 ``(k, [z,] y, x)`` at full resolution, NaN where nothing is drawn;
- root attributes: ``multiscales`` (axes and, per level, ``scale`` then ``translation`` in
  image pixels, pixel-centre convention), ``omero`` (channel colours and windows) and
  ``embedview`` (what :func:`embedview._outputs.io.output_metadata` records for every output).

Level ``l`` pixel ``i`` averages level-0 pixels ``[i·2^l, (i+1)·2^l)``, so it lies at
``translate + scale·(2^l − 1)/2 + i·scale·2^l``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Chunk side (pixels) of every level and of ``components``.
CHUNK = 1024
#: The pyramid stops once a level fits in a square of this side.
SMALLEST_LEVEL = 256
CHANNEL_NAMES = ("red", "green", "blue")
CHANNEL_COLOURS = ("FF0000", "00FF00", "0000FF")
#: NGFF 0.4 stores chunks as nested folders ``0/1/2``.
_SLASH = {"name": "v2", "separator": "/"}


def level_shapes(shape: tuple[int, int], smallest: int = SMALLEST_LEVEL) -> list[tuple[int, int]]:
    """Shapes ``(y, x)`` of the pyramid's levels, full resolution first.

    Examples
    --------
    >>> level_shapes((1000, 600))
    [(1000, 600), (500, 300), (250, 150)]
    """
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > smallest:
        shapes.append(tuple(-(-n // 2) for n in shapes[-1]))
    return shapes


def level_transforms(scale, translate, level: int) -> tuple[list[float], list[float]]:
    """OME ``scale`` and ``translation`` of a level (spatial axes only, image pixels)."""
    f = 2 ** level
    spatial = len(scale)
    out_scale = [float(s) * (f if axis >= spatial - 2 else 1) for axis, s in enumerate(scale)]
    out_translate = [float(t) + (float(s) * (f - 1) / 2 if axis >= spatial - 2 else 0.0)
                     for axis, (s, t) in enumerate(zip(scale, translate))]
    return out_scale, out_translate


def windows(shape: tuple[int, int], chunk: int = CHUNK):
    """Chunk-aligned windows ``(rows, cols)`` covering a plane of ``shape``, in C order (made as
    they are asked for: a huge output's windows are never all listed at once)."""
    for y in range(0, shape[0], chunk):
        for x in range(0, shape[1], chunk):
            yield window_at(shape, chunk, y // chunk, x // chunk)


def window_at(shape: tuple[int, int], chunk: int, i: int, j: int) -> tuple[slice, slice]:
    """Window ``(i, j)`` of :func:`windows` (``i``, ``j`` counted in chunks)."""
    return slice(i * chunk, min((i + 1) * chunk, shape[0])), slice(j * chunk, min((j + 1) * chunk, shape[1]))


@dataclass
class OmeZarrWriter:
    """Create the arrays of an OME-Zarr picture at ``path`` and fill them window by window.

    Parameters
    ----------
    path : Path
        Folder to create (usually the temporary name of :func:`embedview._common.output_paths.atomic_path`).
    plane : (int, int)
        Output pixels per slice ``(y, x)``.
    n_slices : int or None
        Slices of a stack, ``None`` for a 2D picture.
    n_components : int
        Channels of ``components``.
    chunk : int
        Chunk side in pixels.

    Examples
    --------
    >>> import tempfile, os
    >>> w = OmeZarrWriter(Path(tempfile.mkdtemp()) / "out.zarr", (300, 500), None, 3)
    >>> w.write(None, (slice(0, 300), slice(0, 500)), np.zeros((300, 500, 3), np.uint8),
    ...         np.zeros((300, 500, 3), np.float32))
    >>> w.finish(scale=(2.0, 2.0), translate=(0.5, 0.5), metadata={})
    >>> [a.shape for a in w.levels]
    [(3, 300, 500), (3, 150, 250)]
    """

    path: Path
    plane: tuple[int, int]
    n_slices: int | None
    n_components: int
    chunk: int = CHUNK

    def __post_init__(self):
        import zarr

        self.root = zarr.open_group(str(self.path), mode="w", zarr_format=2)
        lead = () if self.n_slices is None else (self.n_slices,)
        lead_chunk = () if self.n_slices is None else (1,)
        self.levels = []
        for level, shape in enumerate(level_shapes(self.plane)):
            chunks = (3,) + lead_chunk + tuple(min(self.chunk, n) for n in shape)
            self.levels.append(self.root.create_array(
                str(level), shape=(3,) + lead + shape, chunks=chunks, dtype="uint8", fill_value=0,
                chunk_key_encoding=_SLASH))
        chunks = (self.n_components,) + lead_chunk + tuple(min(self.chunk, n) for n in self.plane)
        self.components = self.root.create_array(
            "components", shape=(self.n_components,) + lead + tuple(self.plane), chunks=chunks,
            dtype="float32", fill_value=float("nan"), chunk_key_encoding=_SLASH)

    def write(self, z: int | None, window: tuple[slice, slice], rgb: np.ndarray, components: np.ndarray) -> None:
        """Write one window of level 0: ``rgb`` ``(h, w, 3)`` uint8, ``components`` ``(h, w, k)``."""
        index = ((slice(None),) + (() if z is None else (z,))) + tuple(window)
        self.levels[0][index] = np.moveaxis(rgb, -1, 0)
        self.components[index] = np.moveaxis(components, -1, 0)

    def finish(self, scale, translate, metadata: dict, progress=None, drawn=None) -> None:
        """Compute the coarser levels (window by window) and write the OME metadata.

        ``drawn``: the level-0 windows written, as ``(z, i, j)`` (``i``, ``j`` in chunks), if not
        all were: a coarser window over none of them is left as its fill value (black), so a
        masked tiled file's empty regions cost nothing.
        """
        planes = [None] if self.n_slices is None else range(self.n_slices)
        for level in range(1, len(self.levels)):
            shape = self.levels[level].shape[-2:]
            if drawn is None:
                todo = ((z, w) for z in planes for w in windows(shape, self.chunk))
            else:  # a window of this level covers 2 × 2 windows of the level below
                drawn = {(z, i // 2, j // 2) for z, i, j in drawn}
                todo = ((z, window_at(shape, self.chunk, i, j)) for z, i, j in sorted(drawn, key=_plane_order))
            for z, window in todo:
                self._downsample(level, z, window)
            if progress is not None:
                progress.update()
        self.root.attrs.update(ome_attributes(
            self.n_slices is not None, len(self.levels), scale, translate, metadata))

    def _downsample(self, level: int, z: int | None, window: tuple[slice, slice]) -> None:
        lead = (slice(None),) + (() if z is None else (z,))
        source = self.levels[level - 1]
        fine = tuple(slice(2 * s.start, min(2 * s.stop, n)) for s, n in zip(window, source.shape[-2:]))
        block = source[lead + fine].astype(np.float32)
        h, w = (s.stop - s.start for s in window)
        # Pad odd edges by repeating the last row/column: the edge pixel then averages itself.
        block = np.pad(block, [(0, 0)] + [(0, 2 * n - b) for n, b in zip((h, w), block.shape[-2:])], mode="edge")
        mean = block.reshape(block.shape[0], h, 2, w, 2).mean(axis=(2, 4))
        self.levels[level][lead + tuple(window)] = np.rint(mean).astype(np.uint8)


def ome_attributes(is_stack: bool, n_levels: int, scale, translate, metadata: dict) -> dict:
    """The root attributes: NGFF 0.4 ``multiscales`` and ``omero``, and embedview's own."""
    from .._common.output_paths import MARKER, folder_marker

    axes = [{"name": "c", "type": "channel"}]
    if is_stack:
        axes.append({"name": "z", "type": "space"})
    axes += [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = []
    for level in range(n_levels):
        s, t = level_transforms(scale, translate, level)
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] + s}, {"type": "translation", "translation": [0.0] + t}]})
    channels = [{"label": name, "color": colour, "active": True, "coefficient": 1, "family": "linear",
                 "inverted": False, "window": {"start": 0, "end": 255, "min": 0, "max": 255}}
                for name, colour in zip(CHANNEL_NAMES, CHANNEL_COLOURS)]
    return {
        "multiscales": [{"version": "0.4", "name": "embedview PCA", "axes": axes, "datasets": datasets,
                         "type": "mean", "metadata": {"method": "2x2 mean of the level above"}}],
        "omero": {"name": "embedview PCA", "version": "0.4", "channels": channels,
                  "rdefs": {"model": "color", "defaultZ": 0}},
        MARKER: {**metadata, **folder_marker()},  # marks the folder as embedview's: a later write may replace it
    }


def _plane_order(key: tuple) -> tuple:
    z, i, j = key
    return (-1 if z is None else z, i, j)
