"""What an embedding file holds, and what a picture made from it is, in words.

:func:`describe` reads a file's metadata (never its features) into a JSON-able dict;
:func:`format_info` lays it out as the lines ``embedview info`` prints.
"""

from __future__ import annotations

from .._common.errors import EmbedviewError, printable

#: ``info`` lists at most this many missing tile ids (and counts the rest).
MAX_LISTED_TILES = 1000


def describe(embeddings, geometry: dict | None = None) -> dict:
    """What an embedding file holds, as a JSON-able dict; reads metadata only, never features.

    This is what ``embedview info`` prints (``--json`` prints this dict).

    Parameters
    ----------
    embeddings : str or os.PathLike
        A micro_sam embedding container (``.zarr``, zarr v2 or v3), or a ViT feature file.
    geometry : dict, optional
        For a ViT feature file (``.npy``, ``.npz``, ``.safetensors``, ``.pt``): the keyword
        arguments of :func:`embedview.open_features` (``image_size``, ``patch_size``, ...).

    Returns
    -------
    dict
        ``path``, ``layout`` (single, stack, tiled, tiled_stack), ``image_size`` (the image's
        ``[H, W]``), ``slices`` (``None`` for 2D), ``channels``, ``cell_grid`` (cells per tile),
        ``cell_size`` and ``cell_size_range`` (image pixels per cell), ``default_output_shape``,
        ``feature_bytes``, ``tiles`` (grid, tile shape, halo, present and missing tiles; ``None``
        if untiled), the model fields micro_sam records (``model_type``, ``model_name``,
        ``patch_size``, ``vfm_mode``, ``micro_sam_version``, ``data_signature``) and
        ``zarr_format``.

    Examples
    --------
    >>> import embedview
    >>> info = embedview.describe("embeddings.zarr")  # doctest: +SKIP
    >>> info["layout"], info["image_size"], info["cell_size"]  # doctest: +SKIP
    ('single', [600, 900], 14.0625)
    >>> print(embedview.format_info(info))  # doctest: +SKIP
    file:              embeddings.zarr
    layout:            single
    ...
    """
    from .._inputs.micro_sam_layout import zarr_format
    from .._inputs.sources import open_embeddings

    src = open_embeddings(embeddings, geometry)
    pieces = src.pieces()
    grid = pieces[0].grid.shape
    cell_sizes = sorted({float(piece.grid.cell_size[0]) for piece in pieces})
    meta = src.metadata
    info = {
        "path": str(embeddings),
        "layout": src.layout,
        "image_size": list(src.image_shape),
        "slices": src.n_slices,
        "channels": src.n_channels,
        "cell_grid": list(grid),
        "cell_size": float(src.default_pixel_size()),
        "cell_size_range": [cell_sizes[0], cell_sizes[-1]],
        "default_output_shape": _default_output_shape(src),
        "feature_bytes": len(pieces) * src.n_channels * grid[0] * grid[1] * 4,
        "tiles": None,
        "model_type": meta.get("model_type"),
        "model_name": meta.get("model_name"),
        # micro_sam's vision-foundation-model files (DINOv2/v3, UNI, SAM3) say how they were encoded
        "patch_size": meta.get("patch_size"),
        "vfm_mode": meta.get("vfm_mode"),
        # the block the features come from (embedview's encoders record it; None: the final features)
        "layer": meta.get("layer") if isinstance(meta.get("layer"), int) and not isinstance(meta.get("layer"), bool)
        else None,
        # embedview's encoders record their declared input (the grid follows it, not micro_sam's resize rule)
        "declared_input": isinstance(meta.get("embedview_encoder"), dict),
        "micro_sam_version": meta.get("micro_sam_version"),
        "data_signature": meta.get("data_signature"),
        "zarr_format": zarr_format(embeddings),
    }
    if src.tiling is not None:
        t = src.tiling
        info["tiles"] = {
            "grid": list(t.grid), "tile_shape": list(t.tile_shape), "halo": list(t.halo), "count": t.n_tiles,
            "present": len(src.present_tiles), "missing_count": t.n_tiles - len(src.present_tiles),
            # the first ones only: a damaged file may claim millions of tiles
            "missing": list(src.first_missing_tiles(MAX_LISTED_TILES)),
            "tiles_in_mask": meta.get("tiles_in_mask"),
        }
    return info


def _default_output_shape(src) -> list[int] | None:
    """The output's shape at the default pixel size; ``None`` where it would exceed the largest side."""
    from .._common.geometry import OutputGrid

    try:
        return list(OutputGrid.for_image(src.image_shape, src.default_pixel_size()).shape)
    except EmbedviewError:
        return None


def format_info(info: dict) -> str:
    """Human-readable lines for :func:`describe`'s dict, as ``embedview info`` prints them.

    Parameters
    ----------
    info : dict
        What :func:`describe` returned.

    Returns
    -------
    str
        One ``key: value`` line per fact, the values aligned.
    """
    from .._common.geometry import MAX_SIDE

    def size(values):
        return " × ".join(str(v) for v in values)

    lines = [
        ("file", info["path"]),
        ("layout", info["layout"]),
        ("image size", f"{size(info['image_size'])} pixels (H × W)"),
        ("slices", info["slices"] if info["slices"] is not None else "none (2D)"),
        ("channels", info["channels"]),
        ("cell grid", f"{size(info['cell_grid'])} cells" + (" per tile" if info["tiles"] else "")),
    ]
    lo, hi = info["cell_size_range"]
    cell = f"{info['cell_size']:.6g} image pixels"
    if info["tiles"]:
        tiles_range = f"{lo:.6g}" if lo == hi else f"{lo:.6g} to {hi:.6g}"
        cell += f" in a full interior tile (the default output pixel); this file's tiles: {tiles_range}"
    lines += [("cell size", cell),
              ("default output", f"{size(info['default_output_shape'])} pixels" if info["default_output_shape"]
               else f"larger than embedview draws (sides up to {MAX_SIDE} pixels): choose a --pixel-size")]
    tiles = info["tiles"]
    if tiles:
        lines.append(("tiles", f"{size(tiles['grid'])} grid of {size(tiles['tile_shape'])} pixels, halo "
                               f"{size(tiles['halo'])}; {tiles['present']} of {tiles['count']} present"))
        missing = tiles["missing"]
        if missing:
            # open_source refuses any other missing tile: these are outside the mask, drawn black
            why = " (outside the mask: drawn black)" if tiles["tiles_in_mask"] is not None else ""
            more = tiles.get("missing_count", len(missing)) - len(missing)
            lines.append(("missing tiles", ", ".join(map(str, missing)) + (f" and {more} more" if more > 0 else "") + why))
    model = info["model_type"] or "unknown"
    if info["model_name"] and info["model_name"] != info["model_type"]:
        model += f" ({info['model_name']})"
    if isinstance(info.get("patch_size"), list):  # a ViT feature file's (py, px), from its geometry
        model += f", patch size {size(info['patch_size'])}"
    elif info.get("patch_size") and info.get("declared_input"):  # embedview's encoder declared its input
        model += f", patch size {info['patch_size']}"
    elif info.get("patch_size"):  # patches of the resized input: grid side × patch = its longest side
        model += (f", patch size {info['patch_size']} (input resized to "
                  f"{info['patch_size'] * max(info['cell_grid'])} pixels)")
    if info.get("vfm_mode"):
        model += f", vision foundation model, mode {info['vfm_mode']}"
    if info.get("layer") is not None:
        model += f", block {info['layer']}"
    lines += [("features", f"{info['feature_bytes'] / 2**20:.1f} MiB (float32)"),
              ("model", model),
              ("micro_sam version", info["micro_sam_version"] or "unknown"),
              ("zarr format", info["zarr_format"] or "unknown")]
    width = max(len(key) for key, _ in lines) + 1
    # what a file says is shown, never obeyed: its newlines and escape codes are printed escaped
    return "\n".join(f"{key + ':':<{width}} {printable(value)}" for key, value in lines)


def info_json(info: dict) -> str:
    """:func:`describe`'s dict as strict JSON (``embedview info --json``): a NaN or infinite
    number read from a file becomes ``null``, and every string is escaped by ``json``.

    Examples
    --------
    >>> print(info_json({"patch_size": float("nan"), "range": [1.0, float("inf")], "name": "a\x1b[2J"}))
    {
      "patch_size": null,
      "range": [
        1.0,
        null
      ],
      "name": "a\\u001b[2J"
    }
    """
    import json
    import math

    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(info), indent=2, allow_nan=False)


def result_summary(vis, src, written, fit: str) -> str:
    """The line ``embedview render`` prints: what was written, its size, pixel size and fit.

    Parameters
    ----------
    vis : Visualization
    src : Source
        The embeddings ``vis`` was made from.
    written : list of Path
        The files written, the picture first.
    fit : str
        ``"joint"`` or ``"per_slice"``.
    """
    from .._common.geometry import OutputGrid

    shape = OutputGrid.for_image(src.image_shape, vis.scale[-2:]).shape
    pixels = "×".join(str(n) for n in src.shape[:-2] + shape)
    size = "×".join(str(n) for n in vis.image_shape)
    p = vis.scale[-1]
    explained = ""
    if len(vis.bases) == 1:
        ratios = "/".join(f"{100 * r:.0f}" for r in vis.bases[0].explained_variance_ratio[:3])
        explained = f"; the first components explain {ratios} % of the variance"
    also = "".join(f" and {path}" for path in written[1:])
    return (f"embedview: wrote {written[0]} ({pixels} px at {p:.4g} image px each; {vis.layout} layout, "
            f"image {size}, {src.n_channels} channels, fit {fit}{explained}){also}")
