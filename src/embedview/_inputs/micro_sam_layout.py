"""micro_sam's embedding container: the one module that knows its layout.

``micro_sam.util.precompute_image_embeddings`` writes a zarr group (v2 or v3) whose root
attributes hold ``input_size`` and ``original_size`` (``None`` for tiled files) and whose
``features`` member is an array ``(1, C, h, w)`` (an image) or ``(Z, 1, C, h, w)`` (a stack),
or, for tiled files, a group of such arrays named by tile id, with ``shape``, ``tile_shape``
and ``halo`` attributes (and ``tiles_in_mask`` for a masked tiling). Its vision-foundation-model
files add ``vfm_mode`` and ``patch_size``. This module

- reads it into a :class:`~embedview._inputs.source_base.Source` (:func:`open_container` for a path,
  :func:`from_group`, :func:`from_embeddings_dict` and :func:`from_features` for what is handed
  over already open), checking metadata before anything is allocated;
- writes it (:func:`write_micro_sam_embeddings`, for the demo, tests and benchmarks);
- detects it from JSON metadata alone (:func:`is_micro_sam_container`, for the napari reader)
  and sniffs the zarr format (:func:`zarr_format`, :func:`root_attributes`).

The walk that refuses non-regular files and the chunk checks are generic zarr safety, in
:mod:`embedview._inputs.container`. zarr is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import warnings
from fractions import Fraction
from typing import Mapping

import numpy as np

from .._common.errors import EmbedviewError
from .._common.geometry import MAX_SIDE, CellGrid, Tiling, check_ints
from .._common.limits import check_piece_fits
from .source_base import GIVEN, Piece, Source, check_size

#: Limits on what metadata may claim, checked at open before anything is allocated: slices of
#: a stack, pieces (slices × tiles), channels, and bytes of one piece's features.
MAX_SLICES = 2**17
MAX_PIECES = 2**20
MAX_CHANNELS = 2**16
MAX_PIECE_BYTES = 2**30
#: SAM's ViT patch: image pixels per cell in the resized image.
SAM_PATCH = 16
#: The root attributes micro_sam writes into a SAM container, in its order.
ROOT_ATTRIBUTES = ("data_signature", "tile_shape", "halo", "model_type", "model_name",
                   "micro_sam_version", "model_hash", "input_size", "original_size")


#: The root attribute of embeddings that embedview's encoders wrote: the encoder's declaration
#: (``preprocess``, ``patch_size``, ...), from which the cells' grid is derived exactly.
ENCODER_KEY = "embedview_encoder"

#: zarr's warning for a file in a group that is no node, for the files desktops leave in folders
#: (macOS ``.DS_Store`` and ``._*``, Windows ``Thumbs.db`` and ``desktop.ini``).
STRAY_FILES_WARNING = r"Object at (\.DS_Store|\._[^/ ]*|Thumbs\.db|desktop\.ini) is not recognized"

#: ``vfm_mode`` of micro_sam's vision-foundation-model containers (micro_sam/models/vfm.py:
#: DINOv2, DINOv3, UNI, SAM3), and the layout each one is.
VFM_LAYOUTS = {"2d": "single", "3d": "stack", "tiled-2d": "tiled", "tiled-3d": "tiled stack"}


# ---------------------------------------------------------------------------------------------
# reading


def is_group(obj) -> bool:
    """Whether ``obj`` is a zarr group (attributes and members, no shape)."""
    return hasattr(obj, "attrs") and hasattr(obj, "array_keys") and not hasattr(obj, "shape")


def _is_array(obj) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "ndim") and not is_group(obj)


def open_container(path: str) -> Source:
    """Open the micro_sam container at ``path``: scanned (:func:`~embedview._inputs.container.scan`), its
    metadata checked, its feature chunks checked against the files on disk; no feature is read."""
    if not os.path.exists(path):
        raise EmbedviewError(f"{path} does not exist; pass the path of a micro_sam embedding file (.zarr).")
    container = container_holding(path)
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

    from .container import check_chunks, scan

    inventory = scan(path)  # before zarr opens anything: no FIFO, device or endless file is read
    try:
        root = zarr.open_group(path, mode="r")
    except Exception as err:
        raise EmbedviewError(f"{path} could not be opened as zarr ({_why(err)}); the file looks damaged, "
                             "recompute or re-copy it.") from None
    src = from_group(root, name=path)  # every zarr node it opens goes through _node or _members
    for array, slices in _arrays_and_slices(src):
        check_chunks(array, inventory, f"the features of {path}", slices)
    return src


def _arrays_and_slices(src: Source):
    """``(array, slices)`` of every features array: the slices its pieces read (``None``: all of them;
    a masked tiled stack computed each tile only for the slices its mask meets)."""
    if src.tiling is None:
        return [(src.features, None)]
    if not src.is_stack or not isinstance(src.metadata.get("tiles_in_mask"), dict):
        return [(array, None) for array in src.tile_arrays.values()]
    slices = {t: set() for t in src.tile_arrays}
    for piece in src.pieces():
        slices[piece.tile].add(piece.z)
    return [(src.tile_arrays[t], slices[t]) for t in src.tile_arrays]


def chunks_checked(src: Source) -> Source:
    """Check the chunks of zarr arrays handed over already open (an ``ImageEmbeddings`` dict, a
    group) where they lie on a local disk, as :func:`open_container` does for a path."""
    from .container import check_chunks, scan

    for array, slices in _arrays_and_slices(src):
        root = getattr(getattr(getattr(array, "store_path", None), "store", None), "root", None)
        if root is not None and hasattr(array, "metadata"):
            check_chunks(array, scan(str(root), array.path), f"the features of {src.name}", slices)
    return src


def _why(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no detail"
    return f"{type(err).__name__}: {text if len(text) <= 200 else text[:197] + '...'}"


def _node(group, key: str, name: str, array: bool):
    """``group[key]``, which must be an array (``array``) or a group; zarr's parse errors named."""
    where = f"{name}/{key}"
    try:
        node = group[key]
    except EmbedviewError:
        raise
    except Exception as err:  # zarr parses a node's metadata when it is opened, with errors of many types
        raise EmbedviewError(f"the metadata of {where} could not be read ({_why(err)}); the file is damaged, "
                             "recompute or re-copy it.") from None
    return _checked_node(node, where, array)


def _checked_node(node, where: str, array: bool):
    """``node``, which must be an array (``array``) or else may be anything zarr opened."""
    if array and not _is_array(node):
        raise EmbedviewError(f"{where} is a group, but micro_sam stores features there as an array; "
                             "the file is damaged, recompute it.")
    return node


def container_holding(path: str) -> str | None:
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


def from_group(root, name: str) -> Source:
    """A source from an open micro_sam container group (SAM or vision-foundation-model file)."""
    try:
        has_features = "features" in root
    except Exception as err:  # zarr parses the node to answer
        raise EmbedviewError(f"the metadata of {name}/features could not be read ({_why(err)}); the file is "
                             "damaged, recompute or re-copy it.") from None
    if not has_features:
        raise EmbedviewError(
            f"{name} has no 'features' array or group; it is not a micro_sam embedding file.")
    attrs = dict(root.attrs)
    features = _node(root, "features", name, array=False)
    mode = _vfm_mode(attrs, features, name)
    if mode in ("tiled-2d", "tiled-3d"):
        # micro_sam's VFM writer keeps no sizes in a tiled file's root: each tile holds its own
        embeddings = {"features": features, "input_size": None, "original_size": None}
    else:
        for key in ("input_size", "original_size"):
            _attr(attrs, key, name, "its root")
        embeddings = {"features": features, "input_size": attrs["input_size"],
                      "original_size": attrs["original_size"]}
    src = from_embeddings_dict(embeddings, name=name, metadata=attrs)
    if mode is not None and VFM_LAYOUTS[mode] != src.layout:  # e.g. 2d, but the features are a stack
        raise EmbedviewError(
            f"{name} has vfm_mode {mode!r} but its features are a {src.layout}; the file is "
            "inconsistent, recompute the embeddings.")
    if "patch_size" in attrs and ENCODER_KEY not in attrs:  # embedview's own files declare their grid
        _check_patch_grid(src, attrs, name)
    return src


def _vfm_mode(attrs, features, name) -> str | None:
    """The ``vfm_mode`` root attribute, checked against the features node; None for SAM files."""
    mode = attrs.get("vfm_mode")
    if mode is None:
        return None
    if mode not in VFM_LAYOUTS:
        raise EmbedviewError(
            f"{name} has vfm_mode {mode!r}, not one of {', '.join(map(repr, VFM_LAYOUTS))}; "
            "it is not a micro_sam embedding file embedview knows, recompute it with micro_sam.")
    if mode.startswith("tiled") != is_group(features):
        kind, node = ("tiled", "an array") if mode.startswith("tiled") else ("untiled", "a group")
        raise EmbedviewError(
            f"{name} has vfm_mode {mode!r} ({kind}) but its 'features' is {node}; the file is "
            "inconsistent, recompute the embeddings.")
    return mode


def _check_patch_grid(src: Source, attrs: dict, name: str) -> None:
    """Check a VFM file's ``input_size`` (per file or per tile) against its grid and patch size.

    micro_sam's VFM encoders resize each block so its longest side is ``img_size`` (grid side
    times patch size), the other side rounded, and pad bottom/right to a square; the cells lie as
    for SAM (:func:`~embedview._common.geometry.sam_cell_size`). A file that says otherwise is refused.
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
        size, longest = check_size(input_size, "input_size", where), max(block)
        # within half a pixel of n·side/L: micro_sam rounds (round() or int(x + 0.5))
        if any(abs(2 * s * longest - 2 * n * side) > longest for s, n in zip(size, block)):
            expected = [int(Fraction(n * side, longest) + Fraction(1, 2)) for n in block]
            raise EmbedviewError(
                f"{where} has input_size {list(size)}, but its {list(block)} pixels resized so the "
                f"longest side spans the grid ({grid[0]} cells of patch_size {patch} = {side} pixels) "
                f"give {expected}; the file's metadata is inconsistent, recompute the embeddings.")


def from_embeddings_dict(embeddings: Mapping, name: str, metadata: dict | None = None) -> Source:
    """A source from micro_sam's ``ImageEmbeddings`` dict (``features``, ``input_size``, ``original_size``)."""
    metadata = dict(metadata or {})
    features = embeddings["features"]
    input_size = embeddings.get("input_size")
    if input_size is None:  # micro_sam's marker for tiled embeddings
        if not is_group(features):
            raise EmbedviewError(
                f"{name} has input_size None (tiled) but its features are a "
                f"{type(features).__name__}, not a group of tiles; pass the zarr group of tiles.")
        return _from_tiles(features, name, metadata)
    if "original_size" not in embeddings or embeddings["original_size"] is None:
        raise EmbedviewError(f"{name} lacks 'original_size'; pass the image size (H, W) the features came from.")
    return from_features(features, embeddings["original_size"], name, metadata)


def check_feature_shape(shape, name) -> tuple[int | None, int, tuple[int, int]]:
    """``(n_slices or None, C, (h, w))`` of a ``(1, C, h, w)``/``(Z, 1, C, h, w)`` shape; clear error otherwise.

    Sizes beyond :data:`MAX_SLICES`, :data:`MAX_CHANNELS`, ``MAX_SIDE`` cells or
    :data:`MAX_PIECE_BYTES` per piece are refused: no micro_sam file comes near them.
    """
    shape = check_ints(shape, "the shape of the features", name, n=None, low=0, high=2**62)
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
    n_channels, grid = shape[-3], shape[-2:]
    if ((n_slices or 1) > MAX_SLICES or n_channels > MAX_CHANNELS or max(grid) > MAX_SIDE
            or n_channels * grid[0] * grid[1] * 4 > MAX_PIECE_BYTES):
        raise EmbedviewError(
            f"features of {name} have shape {list(shape)}, beyond what embedview reads (at most {MAX_SLICES} "
            f"slices, {MAX_CHANNELS} channels, {MAX_SIDE} cells a side, {MAX_PIECE_BYTES // 2**20} MiB a "
            "piece); the file's metadata is damaged, recompute it.")
    check_piece_fits(n_channels, grid, name, "the file's metadata claims more than any encoder writes; check the file")
    return n_slices, n_channels, grid


def from_features(features, original_size, name, metadata, given: bool = False) -> Source:
    """A source from an untiled features array ``(1, C, h, w)``/``(Z, 1, C, h, w)`` of an ``(H, W)``
    image; ``given``: ``original_size`` is an argument, not the file's metadata."""
    image_shape = check_size(original_size, "original_size", name, *([GIVEN] if given else []))
    _check_array(features, f"the features of {name}")
    n_slices, n_channels, grid_shape = check_feature_shape(features.shape, name)
    grid = grid_rule(metadata, name)(image_shape, grid_shape)
    whole = tuple((0, n) for n in image_shape)
    zs = [None] if n_slices is None else range(n_slices)
    pieces = [Piece(z, None, grid, whole) for z in zs]
    layout = "single" if n_slices is None else "stack"
    return Source(name, layout, image_shape, n_slices, n_channels, features,
                  metadata=metadata, _pieces=pieces)


def grid_rule(metadata, name):
    """How a block's cells lie: derived from the encoder's declaration that embedview recorded
    (:data:`ENCODER_KEY`), else SAM's rule (:meth:`~embedview._common.geometry.CellGrid.sam`)."""
    declared = (metadata or {}).get(ENCODER_KEY)
    if not isinstance(declared, Mapping) or "preprocess" not in declared:
        return CellGrid.sam
    from .vit_geometry import as_preprocess, pair

    try:
        pre, patch = as_preprocess(declared["preprocess"]), pair(declared.get("patch_size"), "patch_size")
    except EmbedviewError as err:
        raise EmbedviewError(f"{name} records an encoder embedview cannot read ({err}); recompute the embeddings.") from None

    def grid(extent, grid_shape, origin=(0, 0)) -> CellGrid:
        g = pre.cell_grid(extent, patch, grid_shape)
        return CellGrid(tuple(int(o) + go for o, go in zip(origin, g.origin)), g.cell_size, g.shape, g.extent)
    return grid


def _check_array(array, what: str) -> None:
    """Refuse what is not a numeric array: a group, or a dtype features cannot have (strings, objects)."""
    if not _is_array(array):
        raise EmbedviewError(f"{what} are a {type(array).__name__}, not an array of numbers as micro_sam writes; "
                             "recompute the file (or pass the features array).")
    try:
        kind = np.dtype(array.dtype).kind
    except TypeError:
        kind = "?"
    if kind not in "fiu":
        raise EmbedviewError(f"{what} have the data type {array.dtype}, not numbers; the file is damaged, "
                             "recompute it.")


def _from_tiles(group, name, metadata) -> Source:
    gattrs = dict(group.attrs)
    where = "its features group"
    shape = check_size(_attr(gattrs, "shape", name, where), "the tiled shape", name)
    tiling = Tiling(shape, check_ints(_attr(gattrs, "tile_shape", name, where), "tile_shape", name),
                    check_ints(_attr(gattrs, "halo", name, where), "halo", name, low=0))
    try:  # every tile's metadata parsed once, here
        with warnings.catch_warnings():  # filters are process-wide: they reach zarr's event-loop thread
            # files a desktop leaves in folders are not the user's concern (other strays still warn)
            warnings.filterwarnings("ignore", message=STRAY_FILES_WARNING)
            members = dict(group.members())
    except Exception as err:
        raise EmbedviewError(f"the tiles of {name} could not be listed ({_why(err)}); the file is damaged, "
                             "recompute or re-copy it.") from None
    present = sorted(int(k) for k in members if k.isdigit() and str(int(k)) == k and int(k) < tiling.n_tiles)
    if not present:
        raise EmbedviewError(f"{name} holds no tiles; it is not a usable micro_sam embedding file.")
    per_slice = _tiles_in_mask(gattrs.get("tiles_in_mask"), tiling.n_tiles, name)
    _check_tiles_present(present, None if per_slice is None else set().union(*per_slice.values()),
                         tiling.n_tiles, name)
    n_slices = n_channels = grid_shape = None
    pieces_by_tile, arrays = {}, {}
    rule = grid_rule(metadata, name)
    for tile in present:
        array = arrays[tile] = _checked_node(members[str(tile)], f"{name}/features/{tile}", array=True)
        _check_array(array, f"tile {tile} of {name}")
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
        if stated is not None and check_ints(stated, "original_size", f"tile {tile} of {name}") != extent:
            raise EmbedviewError(
                f"tile {tile} of {name} says its block is {list(stated)} pixels but shape, tile_shape "
                f"and halo give {list(extent)}; the file's metadata is inconsistent.")
        pieces_by_tile[tile] = (rule(extent, grid_shape, origin=(oy0, ox0)), tiling.inner(tile))
    if (n_slices or 1) * len(present) > MAX_PIECES:
        raise EmbedviewError(f"{name} has {n_slices} slices of {len(present)} tiles, more than the {MAX_PIECES} "
                             "pieces embedview reads; split the stack.")
    zs = [None] if n_slices is None else range(n_slices)
    if per_slice is not None and (set(per_slice) - {None, *zs} or (n_slices is None and None not in per_slice)):
        raise EmbedviewError(
            f"{name} has tiles_in_mask for slices {sorted(k for k in per_slice if k is not None)}, but its "
            f"features are {'a 2D tiling' if n_slices is None else f'{n_slices} slices'}; the file's "
            "metadata is inconsistent, recompute the embeddings.")
    # a masked stack lists the tiles of each slice: the others were never computed (their chunks are absent)
    listed = (lambda z, t: True) if per_slice is None or None in per_slice else (
        lambda z, t: t in per_slice.get(z, ()))
    pieces = [Piece(z, t, *pieces_by_tile[t]) for z in zs for t in present if listed(z, t)]
    if not pieces:
        raise EmbedviewError(f"{name} lists no tile in its tiles_in_mask; there is nothing to draw "
                             "(recompute the embeddings with a mask that meets the image).")
    metadata = {**metadata, "tiles_in_mask": gattrs.get("tiles_in_mask")}
    layout = "tiled" if n_slices is None else "tiled stack"
    return Source(name, layout, shape, n_slices, n_channels, group, tiling=tiling,
                  tile_arrays=arrays, metadata=metadata, _pieces=pieces)


def _tiles_in_mask(value, n_tiles: int, name: str) -> dict | None:
    """The tile ids a masked tiling says it computed, as ``{z: ids}`` (``{None: ids}`` for every
    slice alike; ``None``: not masked, every tile is computed).

    micro_sam records them as a list for a 2D tiling and as ``{"z": [ids]}`` for a stack (a tile's
    array exists if any slice lists it; its chunks only for the slices that do).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        return {None: set(check_ints(value, "tiles_in_mask", name, n=None, low=0, high=n_tiles - 1))}
    per_slice = {}
    for key, ids in value.items():
        if not (isinstance(key, str) and key.isdigit() and str(int(key)) == key):
            raise EmbedviewError(f"{name} has tiles_in_mask for the slice {key!r}, not a slice number; the "
                                 "file's metadata is damaged, recompute the embeddings.")
        per_slice[int(key)] = set(check_ints(ids, f"tiles_in_mask[{key!r}]", name, n=None, low=0, high=n_tiles - 1))
    return per_slice


def _check_tiles_present(present: list[int], in_mask: set[int] | None, n_tiles: int, name: str) -> None:
    """Refuse a tiled file lacking a tile it should hold: any tile unmasked, a listed one masked.

    A missing tile would be drawn black without a word; tiles outside a mask are meant to be black.
    Cost: one pass over the tiles present (and the mask's list), never over every tile id.
    """
    if in_mask is None:
        if len(present) == n_tiles:
            return
        missing = next(t for t, p in enumerate(present + [n_tiles]) if t != p)
        raise EmbedviewError(
            f"tile {missing} of {name} is missing (no features/{missing} in the file, which was not computed "
            "with a mask, so every tile must be there); the file is incomplete, recompute the embeddings "
            "(or re-copy the file).")
    missing = sorted(in_mask.difference(present))
    if missing:
        raise EmbedviewError(
            f"tile {missing[0]} of {name} is missing although the file's tiles_in_mask lists it (no "
            f"features/{missing[0]}); the file is incomplete, recompute the embeddings (or re-copy the file).")


# ---------------------------------------------------------------------------------------------
# writing


def sam_input_size(block_shape: tuple[int, int], grid: int = 64) -> tuple[int, int]:
    """Size of a block after SAM's resize of the longest side to ``16 * grid`` pixels.

    Examples
    --------
    >>> sam_input_size((600, 900))
    (683, 1024)
    """
    side = SAM_PATCH * grid
    longest = max(block_shape)
    return tuple(int(n * side / longest + 0.5) for n in block_shape)


def write_micro_sam_embeddings(path, features, *, original_size, tile_shape=None, halo=None,
                               tiles_in_mask=None, zarr_format: int = 3, model_type: str = "demo",
                               model_name: str = "embedview-demo",
                               micro_sam_version: str | None = "embedview-demo",
                               model_hash: str | None = None, data_signature: str | None = None,
                               progress: bool = False, overwrite: bool = False):
    """Write features as micro_sam's ``precompute_image_embeddings`` lays them out, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.zarr`` folder to write (replaced if it exists).
    features : array-like or mapping of int to array-like
        ``(1, C, h, w)`` (single image) or ``(Z, 1, C, h, w)`` (stack); for tiled embeddings a
        mapping of tile id to such arrays. Written one slice at a time (see
        :class:`LazyFeatures`); NaN and anything else float32 holds is kept as given.
    original_size : (int, int)
        The image size ``(H, W)``.
    tile_shape, halo : (int, int), optional
        Required with tiled features; ``halo`` defaults to ``(0, 0)``.
    tiles_in_mask : iterable of int, optional
        Recorded as the features group's ``tiles_in_mask`` (micro_sam's masked tiling).
    zarr_format : {2, 3}
    model_type, model_name, micro_sam_version, model_hash, data_signature :
        Root attributes, as micro_sam records them.
    progress : bool
        Progress bar on stderr.
    overwrite : bool
        May replace a folder embedview wrote as something else than embeddings (never one it did not write).

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, os, embedview
    >>> path = os.path.join(tempfile.mkdtemp(), "emb.zarr")
    >>> _ = write_micro_sam_embeddings(path, np.zeros((1, 8, 64, 64), np.float32), original_size=(600, 900))
    >>> embedview.open_source(path).layout
    'single'
    """
    from .._common.output_paths import MARKER, atomic_path, folder_marker

    if zarr_format not in (2, 3):
        raise EmbedviewError(f"zarr_format must be 2 or 3, got {zarr_format!r}.")
    size = tuple(int(v) for v in original_size)
    tiled = isinstance(features, Mapping)
    if tiled:
        if tile_shape is None:
            raise EmbedviewError("tiled features (a mapping of tile id to array) need tile_shape=(th, tw).")
        tiling = Tiling(size, tuple(int(v) for v in tile_shape), tuple(int(v) for v in (halo or (0, 0))))
        pieces = {int(t): a for t, a in features.items()}
        bad = [t for t in pieces if not 0 <= t < tiling.n_tiles]
        if bad or not pieces:
            raise EmbedviewError(
                f"tile ids {bad or '(none)'} do not fit a {tiling.grid[0]}×{tiling.grid[1]} tiling of {list(size)}; "
                f"use ids 0 to {tiling.n_tiles - 1}.")
    else:
        pieces = {None: features}
    for t, array in pieces.items():
        check_feature_shape(array.shape, f"{path}" if t is None else f"tile {t} of {path}")

    root_attrs = {
        "data_signature": data_signature,
        "tile_shape": [int(v) for v in tile_shape] if tiled else None,
        "halo": list(tiling.halo) if tiled else None,
        "model_type": model_type, "model_name": model_name, "micro_sam_version": micro_sam_version,
        "model_hash": model_hash,
        "input_size": None if tiled else list(sam_input_size(size, max(features.shape[-2:]))),
        "original_size": None if tiled else list(size),
        MARKER: folder_marker("embeddings"),  # embedview wrote these embeddings: a later write may replace them
    }
    import zarr

    from .._common.progress import progress_bar

    total = sum(a.shape[0] for a in pieces.values())
    bar = progress_bar(total, progress, desc="writing embeddings")
    try:
        with atomic_path(path, directory=True, kind="embeddings", overwrite=overwrite) as tmp:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=zarr_format)
            root.attrs.update(root_attrs)
            if not tiled:
                _write_array(root, "features", features, {}, bar)
            else:
                group = root.create_group("features")
                group_attrs = {"shape": list(size), "tile_shape": list(tiling.tile_shape), "halo": list(tiling.halo)}
                if tiles_in_mask is not None:
                    group_attrs["tiles_in_mask"] = [int(t) for t in tiles_in_mask]
                group.attrs.update(group_attrs)
                for t, array in sorted(pieces.items()):
                    extent = tuple(b - a for a, b in tiling.outer(t))
                    attrs = {"original_size": list(extent),
                             "input_size": list(sam_input_size(extent, max(array.shape[-2:])))}
                    _write_array(group, str(t), array, attrs, bar)
    finally:
        bar.close()
    return path


def _create_features(group, name, shape, attrs):
    """A features array as micro_sam creates one: float32, one chunk per feature grid (of one slice)."""
    shape = tuple(int(v) for v in shape)
    chunks = (1,) * (len(shape) - 3) + shape[-3:]
    # every chunk written, even one equal to the fill value: a missing chunk means a damaged file
    out = group.create_array(name, shape=shape, chunks=chunks, dtype="float32", fill_value=0.0,
                             config={"write_empty_chunks": True})
    if attrs:
        out.attrs.update(attrs)
    return out


class ContainerWriter:
    """micro_sam's container written piece by piece into an open zarr group (for embedview's encoders).

    Parameters
    ----------
    root : zarr.Group
        An empty group (a temporary folder's, or in memory).
    original_size : (int, int)
    n_slices : int or None
    tiling : Tiling or None
    n_channels, grid_shape :
        Every piece's features are ``(n_channels, *grid_shape)``.
    input_sizes : mapping of tile id (None untiled) to (int, int)
        Each block's size after the resize and crop, as micro_sam records it.
    """

    def __init__(self, root, original_size, n_slices, tiling, n_channels, grid_shape, input_sizes):
        self.root, self.tiling = root, tiling
        self.original_size, self.input_sizes = [int(v) for v in original_size], input_sizes
        shape = ((1,) if n_slices is None else (n_slices, 1)) + (int(n_channels),) + tuple(grid_shape)
        if tiling is None:
            self.arrays = {None: _create_features(root, "features", shape, {})}
        else:
            group = root.create_group("features")
            group.attrs.update({"shape": self.original_size, "tile_shape": list(tiling.tile_shape),
                                "halo": list(tiling.halo)})
            self.arrays = {t: _create_features(group, str(t), shape, {
                "original_size": [b - a for a, b in tiling.outer(t)], "input_size": list(input_sizes[t])})
                for t in range(tiling.n_tiles)}

    def write(self, z, tile, features) -> None:
        """Store one piece's ``(C, h, w)`` features."""
        self.arrays[tile][(0,) if z is None else (z, 0)] = np.asarray(features, np.float32)

    def finish(self, *, data_signature, model_type, model_name, micro_sam_version, model_hash, encoder) -> None:
        """Write the root attributes in micro_sam's order, then embedview's marker and the encoder's declaration."""
        from .._common.output_paths import MARKER, folder_marker

        tiled = self.tiling is not None
        self.root.attrs.update({
            "data_signature": data_signature,
            "tile_shape": list(self.tiling.tile_shape) if tiled else None,
            "halo": list(self.tiling.halo) if tiled else None,
            "model_type": model_type, "model_name": model_name, "micro_sam_version": micro_sam_version,
            "model_hash": model_hash,
            "input_size": None if tiled else list(self.input_sizes[None]),
            "original_size": None if tiled else self.original_size,
            MARKER: folder_marker("embeddings"), ENCODER_KEY: encoder})


def _write_array(group, name, array, attrs, bar) -> None:
    shape = tuple(int(v) for v in array.shape)
    out = _create_features(group, name, shape, attrs)
    for i in range(shape[0]):
        out[i] = np.asarray(array[i], np.float32)
        bar.update()


# ---------------------------------------------------------------------------------------------
# detecting (JSON metadata only)

#: Root attributes of micro_sam's SAM containers (None for tiled files, but present); its tiled
#: vision-foundation-model files leave them out and are known by ``micro_sam_version``.
_SIZE_KEYS = ("original_size", "input_size")
#: Metadata files that make ``features`` a zarr member (v3, then v2 array or group).
_MEMBER_FILES = ("zarr.json", ".zarray", ".zgroup")


def is_micro_sam_container(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a micro_sam embedding container, reading only metadata.

    True for a folder holding a zarr group (``zarr.json`` or ``.zgroup``) whose root attributes
    have micro_sam's ``original_size`` and ``input_size`` and that has a ``features`` member, or
    whose root attributes carry micro_sam's ``micro_sam_version`` stamp (so that a damaged
    container, missing its features or an attribute, is still claimed, and reported when read).
    Feature chunks are never opened.

    Parameters
    ----------
    path : str or os.PathLike
        A candidate ``.zarr`` folder.

    Returns
    -------
    bool

    Examples
    --------
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "embeddings.zarr")
    >>> os.makedirs(os.path.join(path, "features"))
    >>> meta = {"zarr_format": 3, "node_type": "group",
    ...         "attributes": {"original_size": [600, 900], "input_size": [683, 1024]}}
    >>> with open(os.path.join(path, "zarr.json"), "w") as f:
    ...     json.dump(meta, f)
    >>> is_micro_sam_container(path)  # no features member yet
    False
    >>> with open(os.path.join(path, "features", "zarr.json"), "w") as f:
    ...     json.dump({"zarr_format": 3, "node_type": "array"}, f)
    >>> is_micro_sam_container(path)
    True
    >>> import shutil; shutil.rmtree(os.path.dirname(path))
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    attrs = root_attributes(path)
    if not isinstance(attrs, dict):
        return False
    if "micro_sam_version" in attrs:  # micro_sam's own stamp: ours even if incomplete (reported when read)
        return True
    features = os.path.join(path, "features")
    has_features = any(os.path.isfile(os.path.join(features, name)) for name in _MEMBER_FILES)
    return has_features and all(key in attrs for key in _SIZE_KEYS)


def root_attributes(path: str) -> dict | None:
    """The root group's attributes from ``zarr.json`` (v3) or ``.zattrs`` (v2); None if not a group."""
    v3 = os.path.join(path, "zarr.json")
    if os.path.isfile(v3):
        meta = _load_json(v3)
        if not isinstance(meta, dict) or meta.get("node_type") != "group":
            return None
        return meta.get("attributes", {})
    if os.path.isfile(os.path.join(path, ".zgroup")):
        v2 = os.path.join(path, ".zattrs")
        return _load_json(v2) if os.path.isfile(v2) else {}
    return None


def _load_json(path: str):
    """A metadata file's JSON, or None where it is not ours to open: unreadable, not a regular file,
    larger than any zarr metadata, or not JSON (nested too deep for the parser included).

    At most :data:`~embedview._inputs.container.MAX_METADATA_BYTES` are read, so sniffing any
    folder (napari asks about every ``.zarr``) costs bounded memory and never raises.
    """
    from .chunks import read_regular
    from .container import MAX_METADATA_BYTES

    try:  # read_regular never blocks on a FIFO named zarr.json and allocates only what is there
        return json.loads(read_regular(path, MAX_METADATA_BYTES))
    except (OSError, ValueError, RecursionError):  # unreadable, not a regular file, too large, not JSON, too deep
        return None


def zarr_format(path) -> int | None:
    """The zarr format of the group at ``path`` from its metadata file: 3, 2, or None (not a group).

    Examples
    --------
    >>> zarr_format("/nonexistent.zarr") is None
    True
    """
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "zarr.json")):
        return 3
    if os.path.isfile(os.path.join(path, ".zgroup")):
        return 2
    return None
