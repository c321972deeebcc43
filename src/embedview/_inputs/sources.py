"""Open what the user has: :func:`open_source` dispatches to the format that reads it.

A micro_sam container, ``ImageEmbeddings`` dict, zarr group or plain array goes to
:mod:`embedview._inputs.micro_sam_layout`; a file of bare ViT features to :mod:`embedview._inputs.vit_files`.
Both make a :class:`~embedview._inputs.source_base.Source` made of
:class:`~embedview._inputs.source_base.Piece` objects (both re-exported here). Opening a source reads
metadata only, never features.
"""

from __future__ import annotations

import os
from typing import Mapping

from .._common.errors import EmbedviewError
from .micro_sam_layout import chunks_checked, from_embeddings_dict, from_features, from_group, is_group, open_container
from .source_base import Piece, Source
from .vit_files import FEATURE_SUFFIXES, open_features

__all__ = ["FEATURE_SUFFIXES", "Piece", "Source", "open_embeddings", "open_source"]


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
            return open_features(source, image_size=original_size)  # bare ViT features: geometry given there
        return open_container(os.fspath(source))
    if isinstance(source, Mapping) and "features" in source:
        return chunks_checked(from_embeddings_dict(source, name="the ImageEmbeddings dict"))
    if is_group(source):
        return chunks_checked(from_group(source, name=str(getattr(source, "store", "the zarr group"))))
    if type(source).__module__.partition(".")[0] == "torch":  # a tensor: to numpy (meta and sparse refused)
        from .vit_arrays import as_array

        source = as_array(source, "the feature tensor")
    if hasattr(source, "shape") and hasattr(source, "ndim"):
        if source.ndim in (2, 3):  # not micro_sam's (1, C, h, w): most likely bare ViT output
            raise EmbedviewError(
                f"the feature array has shape {list(source.shape)}; expected (1, C, h, w) or (Z, 1, C, h, w) "
                "as micro_sam writes them, or for ViT tokens (N, C) or (B, N, C) use embedview.from_tokens(tokens, "
                "image_size=(H, W), patch_size=P, prefix_tokens=N), for a feature map (C, h, w) "
                "embedview.from_feature_map(fmap, image_size=(H, W)), and pass what they return (a saved "
                ".npy file takes the command line's --image-size, --patch-size and --prefix-tokens).")
        if original_size is None:
            raise EmbedviewError(
                "a plain feature array needs the image size: pass original_size=(H, W).")
        return chunks_checked(from_features(source, original_size, name="the feature array", metadata={}, given=True))
    if isinstance(source, (list, tuple)):
        raise EmbedviewError(
            f"a {type(source).__name__} of {len(source)} is not one input; pass several embeddings as separate "
            "arguments (PCA().fit(a, b)), or one array (np.stack) if they are the slices of one stack.")
    raise EmbedviewError(
        f"cannot visualize a {type(source).__name__}; pass a micro_sam embedding path, an "
        "ImageEmbeddings dict or a feature array with original_size=(H, W).")


def open_embeddings(path, geometry: dict | None = None) -> Source:
    """Open an embedding file: a micro_sam container, or ViT features placed by ``geometry``.

    Parameters
    ----------
    path : str or os.PathLike
    geometry : dict, optional
        Keyword arguments of :func:`embedview.open_features` (``image_size``, ``patch_size``,
        ...), for ``.npy``, ``.npz``, ``.safetensors`` and ``.pt`` feature files.
    """
    if geometry:
        return open_features(path, **geometry)
    return open_source(path)
