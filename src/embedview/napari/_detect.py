"""Is a path a micro_sam embedding container? Decided from its JSON metadata alone."""

from __future__ import annotations

import json
import os

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
    attrs = _root_attributes(path)
    if not isinstance(attrs, dict):
        return False
    if "micro_sam_version" in attrs:  # micro_sam's own stamp: ours even if incomplete (reported when read)
        return True
    features = os.path.join(path, "features")
    has_features = any(os.path.isfile(os.path.join(features, name)) for name in _MEMBER_FILES)
    return has_features and all(key in attrs for key in _SIZE_KEYS)


def is_embedview_picture(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr picture written by embedview (``render -o X.zarr``).

    Examples
    --------
    >>> is_embedview_picture("/nonexistent.zarr")
    False
    """
    path = os.fspath(path)
    attrs = _root_attributes(path) if os.path.isdir(path) else None
    return isinstance(attrs, dict) and "multiscales" in attrs and isinstance(attrs.get("embedview"), dict)


def _root_attributes(path: str) -> dict | None:
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
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError):  # unreadable or not JSON: not ours to open
        return None
