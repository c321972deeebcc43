"""Sources: open what the user has and hand out its pieces, one feature grid at a time.

A *piece* is one ``(C, h, w)`` grid of cells: a single image, one slice of a stack, or one
tile (of one slice). It carries its geometry; :meth:`Source.read` loads its features.
Opening a source reads metadata only, never features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ._chunks import direct_reader
from ._errors import EmbedviewError
from ._geometry import CellGrid, OutputGrid, Tiling, sam_cell_size


#: Files of bare ViT features (tokens or feature maps), read by :func:`embedview.open_features`.
FEATURE_SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth")


@dataclass(frozen=True)
class Piece:
    """One feature grid and where it lies.

    Attributes
    ----------
    z : int or None
        Slice index in a stack, ``None`` for a 2D image.
    tile : int or None
        Tile id for tiled inputs, ``None`` otherwise.
    grid : CellGrid
        Where the cells lie on the image.
    inner : ((y0, y1), (x0, x1))
        The image region this piece is responsible for (a tile's inner block).
    input : int
        Which input it belongs to when several are drawn together (:mod:`embedview._inputs`).
    """

    z: int | None
    tile: int | None
    grid: CellGrid
    inner: tuple[tuple[int, int], tuple[int, int]]
    input: int = 0

    @property
    def label(self) -> str:
        parts = []
        if self.tile is not None:
            parts.append(f"tile {self.tile}")
        if self.z is not None:
            parts.append(f"slice {self.z}")
        return " of ".join(parts) or "the image"

    @cached_property  # exact Fraction arithmetic: worth doing once per piece
    def fit_cells(self) -> tuple[slice, slice]:
        """Cells that are drawn: they cover image pixels inside the inner block."""
        return tuple(slice(*self.grid.cells_overlapping(a, b, axis))
                     for axis, (a, b) in enumerate(self.inner))


@dataclass
class Source:
    """Embeddings of one image or stack, in micro_sam's layouts (single, stack, tiled, tiled stack).

    Use :func:`open_source` to make one. ``read(piece)`` returns float32 ``(C, h, w)``.
    """

    name: str
    layout: str
    image_shape: tuple[int, int]
    n_slices: int | None
    n_channels: int
    features: Any
    tiling: Tiling | None = None
    tile_arrays: dict = field(default_factory=dict, repr=False)
    metadata: dict = field(default_factory=dict)
    _pieces: list = field(default_factory=list, repr=False)
    _readers: dict = field(default_factory=dict, repr=False)

    @property
    def is_stack(self) -> bool:
        return self.n_slices is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image the embeddings describe: ``(H, W)``, or ``(Z, H, W)`` for a stack."""
        return ((self.n_slices,) if self.is_stack else ()) + tuple(self.image_shape)

    @property
    def present_tiles(self) -> tuple[int, ...]:
        """Ids of the tiles the file holds (all of them unless it was computed with a mask)."""
        return tuple(sorted(self.tile_arrays))

    @property
    def missing_tiles(self) -> tuple[int, ...]:
        if self.tiling is None:
            return ()
        present = set(self.present_tiles)
        return tuple(t for t in range(self.tiling.n_tiles) if t not in present)

    def pieces(self) -> list[Piece]:
        """All pieces, slice by slice, tiles in C order."""
        return list(self._pieces)

    def default_pixel_size(self) -> Fraction:
        """The embedding resolution: one cell, or for tiles the cell of a full interior tile."""
        if self.tiling is None:  # the smaller side of non-square (resized ViT) cells: none is skipped
            return min(self._pieces[0].grid.cell_size)
        grid = self._pieces[0].grid.shape if self._pieces else (64, 64)
        full = tuple(t + 2 * h for t, h in zip(self.tiling.tile_shape, self.tiling.halo))
        return sam_cell_size(full, grid)

    def output_grid(self, pixel_size=None):
        """The output raster for ``pixel_size``: ``None`` the embedding grid (:meth:`default_pixel_size`;
        a partial last cell overhangs the image edge, where it truly lies), else a size in image
        pixels, ``P`` or ``(PY, PX)``. Every front-end draws with this one geometry."""
        if pixel_size is None:
            pixel_size = self.default_pixel_size()
        elif isinstance(pixel_size, str):
            raise EmbedviewError(f"pixel_size must be a number, a (y, x) pair or None; got {pixel_size!r}.")
        return OutputGrid.for_image(self.image_shape, pixel_size)

    def read_each(self, pieces: Iterable[Piece], ahead: int = 2) -> Iterator[tuple[Piece, np.ndarray]]:
        """Yield ``(piece, features)`` in order, reading the next ``ahead`` pieces meanwhile.

        zarr's codecs and file reads release the GIL, so reads overlap each other and the
        caller's BLAS work. At most ``ahead + 1`` pieces are in memory.
        """
        pieces = list(pieces)
        if len(pieces) < 2:
            for piece in pieces:
                yield piece, self.read(piece)
            return
        with ThreadPoolExecutor(max_workers=ahead) as pool:
            queue = deque(pool.submit(self.read, p) for p in pieces[:ahead])
            for i, piece in enumerate(pieces):
                data = queue.popleft().result()
                if i + ahead < len(pieces):
                    queue.append(pool.submit(self.read, pieces[i + ahead]))
                yield piece, data

    def _reader(self, tile: int | None):
        """``read(index)`` for the features array of ``tile`` (or of the image): direct where possible."""
        if tile not in self._readers:
            array = self.features if tile is None else self.tile_arrays[tile]
            self._readers[tile] = direct_reader(array, 1 if self.n_slices is None else 2) or array.__getitem__
        return self._readers[tile]

    def read(self, piece: Piece) -> np.ndarray:
        """Load the features of one piece as float32 ``(C, h, w)``."""
        index = (0,) if piece.z is None else (piece.z, 0)
        try:
            data = np.asarray(self._reader(piece.tile)(index), dtype=np.float32)
        except Exception as err:  # codec and storage errors differ between zarr versions
            raise EmbedviewError(
                f"could not read the features of {piece.label} from {self.name} "
                f"({type(err).__name__}: {str(err).strip() or 'no detail'}); the file looks damaged, "
                "recompute or re-copy the embeddings.") from None
        expected = (self.n_channels,) + piece.grid.shape
        if data.shape != expected:
            raise EmbedviewError(
                f"the features of {piece.label} in {self.name} have shape {list(data.shape)}, "
                f"expected {list(expected)}; the file is inconsistent.")
        return data


# ---------------------------------------------------------------------------------------------
# opening


def open_source(source, original_size=None) -> Source:
    """Open embeddings: a micro_sam container path, an ``ImageEmbeddings`` dict, a zarr group, or an array.

    Parameters
    ----------
    source : str, os.PathLike, dict, zarr.Group or array
        A micro_sam embedding container (``.zarr``, zarr v2 or v3), micro_sam's
        ``ImageEmbeddings`` dict, or a plain array ``(1, C, h, w)`` / ``(Z, 1, C, h, w)``.
    original_size : (int, int), optional
        The image size ``(H, W)``; required for plain arrays.

    Returns
    -------
    Source

    Examples
    --------
    >>> import numpy as np
    >>> src = open_source(np.zeros((1, 8, 64, 64), np.float32), original_size=(600, 900))
    >>> src.layout, src.image_shape, len(src.pieces())
    ('single', (600, 900), 1)
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source).lower().endswith(FEATURE_SUFFIXES):
            from ._vit import open_features  # bare ViT features: the geometry must be given there

            return open_features(source, image_size=original_size)
        return _from_path(os.fspath(source))
    if isinstance(source, Mapping) and "features" in source:
        return _from_embeddings_dict(source, name="the ImageEmbeddings dict")
    if _is_group(source):
        return _from_group(source, name=str(getattr(source, "store", "the zarr group")))
    if hasattr(source, "shape") and hasattr(source, "ndim"):
        if original_size is None:
            raise EmbedviewError(
                "a plain feature array needs the image size: pass original_size=(H, W).")
        return _from_features(source, original_size, name="the feature array", metadata={})
    raise EmbedviewError(
        f"cannot visualize a {type(source).__name__}; pass a micro_sam embedding path, an "
        "ImageEmbeddings dict or a feature array with original_size=(H, W).")


def _is_group(obj) -> bool:
    return hasattr(obj, "attrs") and hasattr(obj, "array_keys") and not hasattr(obj, "shape")


def _from_path(path: str) -> Source:
    if not os.path.exists(path):
        raise EmbedviewError(f"{path} does not exist; pass the path of a micro_sam embedding file (.zarr).")
    container = _container_holding(path)
    if container is not None:
        raise EmbedviewError(
            f"{path} lies inside the micro_sam embedding file {container} (its features); pass the "
            f"container folder ({container}) instead.")
    if not os.path.isdir(path) or not any(
            os.path.exists(os.path.join(path, meta)) for meta in ("zarr.json", ".zgroup")):
        raise EmbedviewError(
            f"{path} is not a zarr container; pass a micro_sam embedding file (.zarr folder) "
            "written by micro_sam.util.precompute_image_embeddings.")
    import zarr

    try:
        root = zarr.open_group(path, mode="r")
    except Exception as err:
        raise EmbedviewError(f"{path} could not be opened as zarr ({err}); the file looks damaged.") from None
    return _from_group(root, name=path)


def _container_holding(path: str) -> str | None:
    """The micro_sam container whose ``features`` (array, group of tiles, or one tile) ``path`` is."""
    here = os.path.abspath(path)
    for parent in (os.path.dirname(here), os.path.dirname(os.path.dirname(here))):
        inner = os.path.relpath(here, parent).split(os.sep)[0]
        if inner == "features" and any(os.path.exists(os.path.join(parent, meta)) for meta in ("zarr.json", ".zgroup")):
            return parent if os.path.isabs(path) else os.path.relpath(parent)
    return None


def _attr(attrs, key, name, where):
    if key not in attrs:
        raise EmbedviewError(
            f"{name} lacks the attribute '{key}' in {where}; it is not a complete micro_sam "
            "embedding file (recompute it with micro_sam.util.precompute_image_embeddings).")
    return attrs[key]


def _from_group(root, name: str) -> Source:
    if "features" not in root:
        raise EmbedviewError(
            f"{name} has no 'features' array or group; it is not a micro_sam embedding file.")
    attrs = dict(root.attrs)
    features = root["features"]
    mode = _vfm_mode(attrs, features, name)
    if mode in ("tiled-2d", "tiled-3d"):
        # micro_sam's VFM writer keeps no sizes in a tiled file's root: each tile holds its own
        embeddings = {"features": features, "input_size": None, "original_size": None}
    else:
        for key in ("input_size", "original_size"):
            _attr(attrs, key, name, "its root")
        embeddings = {"features": features, "input_size": attrs["input_size"],
                      "original_size": attrs["original_size"]}
    src = _from_embeddings_dict(embeddings, name=name, metadata=attrs)
    if mode is not None and VFM_LAYOUTS[mode] != src.layout:  # e.g. 2d, but the features are a stack
        raise EmbedviewError(
            f"{name} has vfm_mode {mode!r} but its features are a {src.layout}; the file is "
            "inconsistent, recompute the embeddings.")
    if "patch_size" in attrs:
        _check_patch_grid(src, attrs, name)
    return src


#: ``vfm_mode`` of micro_sam's vision-foundation-model containers (micro_sam/models/vfm.py:
#: DINOv2, DINOv3, UNI, SAM3), and the layout each one is.
VFM_LAYOUTS = {"2d": "single", "3d": "stack", "tiled-2d": "tiled", "tiled-3d": "tiled stack"}


def _vfm_mode(attrs, features, name) -> str | None:
    """The ``vfm_mode`` root attribute, checked against the features node; None for SAM files."""
    mode = attrs.get("vfm_mode")
    if mode is None:
        return None
    if mode not in VFM_LAYOUTS:
        raise EmbedviewError(
            f"{name} has vfm_mode {mode!r}, not one of {', '.join(map(repr, VFM_LAYOUTS))}; "
            "it is not a micro_sam embedding file embedview knows, recompute it with micro_sam.")
    if mode.startswith("tiled") != _is_group(features):
        kind, node = ("tiled", "an array") if mode.startswith("tiled") else ("untiled", "a group")
        raise EmbedviewError(
            f"{name} has vfm_mode {mode!r} ({kind}) but its 'features' is {node}; the file is "
            "inconsistent, recompute the embeddings.")
    return mode


def _check_patch_grid(src: Source, attrs: dict, name: str) -> None:
    """Check a VFM file's ``input_size`` (per file or per tile) against its grid and patch size.

    micro_sam's VFM encoders resize each block so its longest side is ``img_size`` (grid side
    times patch size), the other side rounded, and pad bottom/right to a square; the cells lie as
    for SAM (:func:`~embedview._geometry.sam_cell_size`). A file that says otherwise is refused.
    """
    patch = attrs["patch_size"]
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise EmbedviewError(f"{name} has patch_size {patch!r}, not a positive integer; the file is inconsistent.")
    grid = src.pieces()[0].grid.shape
    if grid[0] != grid[1]:
        raise EmbedviewError(
            f"{name} has a grid of {grid[0]} × {grid[1]} cells, but an encoder with patch_size {patch} "
            "encodes a square; the file is inconsistent, recompute the embeddings.")
    if src.tiling is None:
        blocks = [(name, attrs.get("input_size"), src.image_shape)]
    else:
        blocks = [(f"tile {t} of {name}", dict(src.tile_arrays[t].attrs).get("input_size"),
                   tuple(b - a for a, b in src.tiling.outer(t))) for t in src.present_tiles]
    side = grid[0] * patch
    for where, input_size, block in blocks:
        if input_size is None:
            continue
        size, longest = _check_size(input_size, "input_size", where), max(block)
        # within half a pixel of n·side/L: micro_sam rounds (round() or int(x + 0.5))
        if any(abs(2 * s * longest - 2 * n * side) > longest for s, n in zip(size, block)):
            expected = [int(Fraction(n * side, longest) + Fraction(1, 2)) for n in block]
            raise EmbedviewError(
                f"{where} has input_size {list(size)}, but its {list(block)} pixels resized so the "
                f"longest side spans the grid ({grid[0]} cells of patch_size {patch} = {side} pixels) "
                f"give {expected}; the file's metadata is inconsistent, recompute the embeddings.")


def _from_embeddings_dict(embeddings: Mapping, name: str, metadata: dict | None = None) -> Source:
    metadata = dict(metadata or {})
    features = embeddings["features"]
    input_size = embeddings.get("input_size")
    if input_size is None:  # micro_sam's marker for tiled embeddings
        if not _is_group(features):
            raise EmbedviewError(
                f"{name} has input_size None (tiled) but its features are a "
                f"{type(features).__name__}, not a group of tiles; pass the zarr group of tiles.")
        return _from_tiles(features, name, metadata)
    if "original_size" not in embeddings or embeddings["original_size"] is None:
        raise EmbedviewError(f"{name} lacks 'original_size'; pass the image size (H, W) the features came from.")
    return _from_features(features, embeddings["original_size"], name, metadata)


def _check_size(size, what, name) -> tuple[int, int]:
    try:
        size = tuple(int(v) for v in size)
    except (TypeError, ValueError):
        raise EmbedviewError(f"{what} of {name} must be two integers (H, W), got {size!r}.") from None
    if len(size) != 2 or min(size) < 1:
        raise EmbedviewError(f"{what} of {name} must be two positive integers (H, W), got {list(size)}.")
    return size


def check_feature_shape(shape, name) -> tuple[int | None, int, tuple[int, int]]:
    """``(n_slices or None, C, (h, w))`` of a ``(1, C, h, w)``/``(Z, 1, C, h, w)`` shape; clear error otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4 and shape[0] == 1:
        n_slices = None
    elif len(shape) == 5 and shape[1] == 1:
        n_slices = shape[0]
    else:
        raise EmbedviewError(
            f"features of {name} have shape {list(shape)}; expected (1, C, h, w) for an image "
            "or (Z, 1, C, h, w) for a stack.")
    if min(shape) < 1:
        raise EmbedviewError(f"features of {name} are empty (shape {list(shape)}).")
    return n_slices, shape[-3], shape[-2:]


def _from_features(features, original_size, name, metadata) -> Source:
    image_shape = _check_size(original_size, "original_size", name)
    n_slices, n_channels, grid_shape = check_feature_shape(features.shape, name)
    grid = CellGrid.sam(image_shape, grid_shape)
    whole = tuple((0, n) for n in image_shape)
    zs = [None] if n_slices is None else range(n_slices)
    pieces = [Piece(z, None, grid, whole) for z in zs]
    layout = "single" if n_slices is None else "stack"
    return Source(name, layout, image_shape, n_slices, n_channels, features,
                  metadata=metadata, _pieces=pieces)


def _from_tiles(group, name, metadata) -> Source:
    gattrs = dict(group.attrs)
    where = "its features group"
    shape = _check_size(_attr(gattrs, "shape", name, where), "the tiled shape", name)
    tiling = Tiling(shape, tuple(int(v) for v in _attr(gattrs, "tile_shape", name, where)),
                    tuple(int(v) for v in _attr(gattrs, "halo", name, where)))
    present = sorted(int(k) for k in group.array_keys() if k.isdigit() and int(k) < tiling.n_tiles)
    if not present:
        raise EmbedviewError(f"{name} holds no tiles; it is not a usable micro_sam embedding file.")
    n_slices = n_channels = grid_shape = None
    pieces_by_tile, arrays = {}, {}
    for tile in present:
        array = arrays[tile] = group[str(tile)]
        tile_slices, tile_channels, tile_grid = check_feature_shape(array.shape, f"tile {tile} of {name}")
        if n_channels is None:
            n_slices, n_channels, grid_shape = tile_slices, tile_channels, tile_grid
        elif (tile_slices, tile_channels, tile_grid) != (n_slices, n_channels, grid_shape):
            raise EmbedviewError(
                f"tile {tile} of {name} has shape {list(array.shape)}, unlike tile {present[0]}; "
                "all tiles must have the same number of slices, channels and cells.")
        (oy0, oy1), (ox0, ox1) = tiling.outer(tile)
        extent = (oy1 - oy0, ox1 - ox0)
        stated = dict(array.attrs).get("original_size")
        if stated is not None and tuple(int(v) for v in stated) != extent:
            raise EmbedviewError(
                f"tile {tile} of {name} says its block is {list(stated)} pixels but shape, tile_shape "
                f"and halo give {list(extent)}; the file's metadata is inconsistent.")
        pieces_by_tile[tile] = (CellGrid.sam(extent, grid_shape, origin=(oy0, ox0)), tiling.inner(tile))
    zs = [None] if n_slices is None else range(n_slices)
    pieces = [Piece(z, t, *pieces_by_tile[t]) for z in zs for t in present]
    metadata = {**metadata, "tiles_in_mask": gattrs.get("tiles_in_mask")}
    layout = "tiled" if n_slices is None else "tiled stack"
    return Source(name, layout, shape, n_slices, n_channels, group, tiling=tiling,
                  tile_arrays=arrays, metadata=metadata, _pieces=pieces)
