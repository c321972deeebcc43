"""napari reader: a micro_sam embedding container opens as its PCA picture, exactly placed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ._detect import is_embedview_picture, is_micro_sam_container

#: Overlay defaults: half opacity over the image, so both stay readable on a grey image.
OVERLAY_OPACITY = 0.5
OVERLAY_BLENDING = "translucent"


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """Return a reader for a micro_sam embedding container or an embedview OME-Zarr picture,
    or None for anything else.

    Only JSON metadata is read to decide (see :func:`~embedview.napari.is_micro_sam_container`),
    at most 16 MiB of it, so other ``.zarr`` folders are left to other readers at little cost: a
    metadata file that is larger, not JSON, nested too deep or not a regular file is declined.

    Parameters
    ----------
    path : str or list of str
        What napari is asked to open; a list is accepted only if it holds one path.

    Returns
    -------
    callable or None
        ``reader(path) -> [(rgb, kwargs, "image")]``.

    Examples
    --------
    >>> get_reader("image.tif") is None
    True
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)) or not isinstance(path := os.fspath(path), str):
        return None
    # the detectors read at most a few MiB of JSON and decline (never raise) whatever they find
    if is_micro_sam_container(path):
        return read_embeddings
    if is_embedview_picture(path):
        return read_picture
    return None


def read_picture(path: str | list[str]) -> list[tuple]:
    """Open an embedview OME-Zarr picture lazily: one multiscale RGB layer, placed by its metadata.

    (Generic OME-Zarr readers split the channels into three layers, and some drop the
    translation; this keeps the picture one RGB layer, exactly where it belongs.) A picture whose
    metadata or levels are damaged is reported with a napari error notification, no layer added.
    """
    from napari.utils.notifications import show_error

    from .._common.errors import EmbedviewError
    from .._inputs.container import scan

    if isinstance(path, (list, tuple)):
        path = path[0]
    path = os.fspath(path)
    try:
        scan(path)  # FIFOs, devices, oversized metadata refused before zarr or dask opens anything
        return [_picture_layer(path)]
    except EmbedviewError as err:
        show_error(f"embedview: {err}")
    except (LookupError, TypeError, ValueError, StopIteration, OSError) as err:  # ours by its marker, not whole
        show_error(f"embedview: the picture {path} is damaged ({type(err).__name__}: {err}); render it again.")
    return [(None,)]


def _picture_layer(path: str) -> tuple:
    import dask.array as da
    import zarr

    root = zarr.open_group(path, mode="r")
    attrs = dict(root.attrs)
    (multiscale,) = attrs["multiscales"][:1]
    levels = [da.moveaxis(da.from_zarr(root[d["path"]]), 0, -1) for d in multiscale["datasets"]]
    first = multiscale["datasets"][0]["coordinateTransformations"]
    scale = next(t["scale"] for t in first if t["type"] == "scale")[1:]
    translate = next(t["translation"] for t in first if t["type"] == "translation")[1:]
    meta = attrs["embedview"]
    return (levels if len(levels) > 1 else levels[0],
            {"name": layer_name(path), "rgb": True, "multiscale": len(levels) > 1,
             "scale": tuple(scale), "translate": tuple(translate), "opacity": OVERLAY_OPACITY,
             "blending": OVERLAY_BLENDING, "metadata": {"embedview": meta}}, "image")


def read_embeddings(path: str | list[str]) -> list[tuple]:
    """Draw the PCA of a micro_sam container as one RGB layer lying exactly over its image.

    A file embedview cannot use (damaged, incomplete) is reported with a napari error
    notification, and no layer is added.

    Parameters
    ----------
    path : str or list of str
        The container (a list holding one path is accepted).

    Returns
    -------
    list of tuple
        ``[(rgb, kwargs, "image")]``, or napari's "read, nothing to add" ``[(None,)]``.

    Examples
    --------
    >>> [(rgb, kwargs, kind)] = read_embeddings("embeddings.zarr")  # doctest: +SKIP
    >>> kwargs["scale"], kwargs["translate"]  # doctest: +SKIP
    ((14.0625, 14.0625), (6.53125, 6.53125))
    """
    import embedview

    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        src = embedview.open_source(path)
        vis = embedview.visualize(src)  # the API's geometry: a partial last cell overhangs the edge
    except embedview.EmbedviewError as err:
        from napari.utils.notifications import show_error

        show_error(f"embedview: {err}")
        return [(None,)]  # napari's sentinel: handled, no layer (no further readers, no traceback)
    kwargs = layer_kwargs(vis, path, name=layer_name(path))
    model = {key: src.metadata.get(key) for key in _MODEL_KEYS if src.metadata.get(key) is not None}
    kwargs["metadata"]["embedview"].update(model)
    if "patch_size" in model:  # a vision foundation model: say which in the layer list
        kwargs["name"] += f" ({model.get('model_type', 'unknown model')}, patch {model['patch_size']})"
    return [(vis.rgb, kwargs, "image")]


#: What the file says about its encoder, kept in the layer's metadata.
_MODEL_KEYS = ("model_type", "model_name", "patch_size", "vfm_mode")


def layer_name(path: str | os.PathLike) -> str:
    """The layer name for a container: its file name without ``.zarr``.

    Examples
    --------
    >>> layer_name("/data/cells.zarr/")
    'cells'
    """
    name = Path(os.fspath(path)).name
    return name[:-len(".zarr")] if name.lower().endswith(".zarr") else name


def layer_kwargs(vis, path, name: str, options: dict | None = None) -> dict:
    """``add_image`` keyword arguments for a :class:`~embedview.Visualization` of ``path``.

    The metadata under ``"embedview"`` records the source path (the widget reads it back),
    layout, image shape, options and the explained variance ratio of the drawn components.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
    >>> vis = embedview.visualize(features, original_size=(600, 900))
    >>> kwargs = layer_kwargs(vis, "x.zarr", "x")
    >>> kwargs["rgb"], kwargs["scale"], kwargs["metadata"]["embedview"]["layout"]
    (True, (14.0625, 14.0625), 'single')
    """
    return {
        "name": name,
        "rgb": True,
        "scale": tuple(float(v) for v in vis.scale),
        "translate": tuple(float(v) for v in vis.translate),
        "opacity": OVERLAY_OPACITY,
        "blending": OVERLAY_BLENDING,
        "metadata": {"embedview": layer_metadata(vis, path, options)},
    }


def layer_metadata(vis, path, options: dict | None = None) -> dict:
    """What the layer shows, for its metadata: source, geometry, options, explained variance."""
    shown = list((options or {}).get("rgb_components") or range(min(3, vis.components.shape[-1])))
    return {
        "source": os.path.abspath(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None,
        "layout": vis.layout,
        "image_shape": tuple(int(v) for v in vis.image_shape),
        "options": dict(options or {}),
        "rgb_components": shown,
        # one row per basis: one for a joint fit, one per slice for fit="per_slice"
        "explained_variance_ratio": [[float(b.explained_variance_ratio[c]) for c in shown]
                                     for b in vis.bases],
    }
