"""Which files the napari reader takes, decided from JSON metadata alone.

micro_sam containers are recognised by :func:`embedview._inputs.micro_sam_layout.is_micro_sam_container`
(the one module that knows their layout); embedview's own OME-Zarr pictures here.
"""

from __future__ import annotations

import os

from .._inputs.micro_sam_layout import is_micro_sam_container, root_attributes

__all__ = ["is_embedview_picture", "is_micro_sam_container"]


def is_embedview_picture(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr picture written by embedview (``render -o X.zarr``).

    Examples
    --------
    >>> is_embedview_picture("/nonexistent.zarr")
    False
    """
    path = os.fspath(path)
    attrs = root_attributes(path) if os.path.isdir(path) else None
    return isinstance(attrs, dict) and "multiscales" in attrs and isinstance(attrs.get("embedview"), dict)
