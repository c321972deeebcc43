"""``Visualization``: the PCA picture of some embeddings and how it lies on the image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError
from .._model.fit import Basis
from .._model.selection import Foreground


@dataclass(frozen=True)
class Visualization:
    """The PCA picture of some embeddings and how it lies on the image.

    Attributes
    ----------
    rgb : ndarray of uint8, shape (..., H, W, 3)
        The picture; black where nothing was drawn (missing tiles, non-finite cells).
    components : ndarray of float32, shape (..., H, W, n_components)
        The principal components per output pixel; NaN where nothing was drawn.
    scale, translate : tuple of float
        One value per spatial axis (``1.0``/``0.0`` on z): output pixel ``i`` lies at image
        coordinate ``translate + i * scale`` (pixel centres, napari's convention).
    bases : tuple of Basis
        The fitted PCA: one for ``fit="joint"``, one per slice for ``fit="per_slice"``.
    layout : str
        ``single``, ``stack``, ``tiled`` or ``tiled stack``.
    image_shape : tuple of int
        Shape of the image the embeddings describe, ``(H, W)`` or ``(Z, H, W)``.
    path : Path or None
        The OME-Zarr folder written by ``visualize(..., output=...)``; then ``rgb`` and
        ``components`` are ``None`` (the picture is on disk, not in memory).
    labels : ndarray of int32, shape (..., H, W), optional
        With ``clusters=K``: the k-means label of each output pixel (-1 where nothing is drawn);
        ``rgb`` then shows the labels.
    selections : tuple
        Per basis, the cells it was fitted on and draws (an image mask or a foreground rule,
        see :mod:`embedview._model.selection`), or ``None`` for all cells.
    centres : tuple of ndarray
        With ``clusters=K``: per basis, the k-means centres ``(K, m)``.
    """

    rgb: np.ndarray | None
    components: np.ndarray | None
    scale: tuple
    translate: tuple
    bases: tuple
    layout: str
    image_shape: tuple
    path: Path | None = None
    labels: np.ndarray | None = None
    selections: tuple = ()
    centres: tuple = ()

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path is not None else (
            f"rgb {'×'.join(map(str, self.rgb.shape))} uint8")
        scale = ", ".join(f"{v:.6g}" for v in self.scale)
        translate = ", ".join(f"{v:.6g}" for v in self.translate)
        extra = "" if self.labels is None else f", {len(self.centres[0])} clusters"
        return (f"Visualization({self.layout}, image {'×'.join(map(str, self.image_shape))}, {where}, "
                f"scale=({scale}), translate=({translate}), {len(self.bases)} {'basis' if len(self.bases) == 1 else 'bases'}{extra})")

    @property
    def foreground(self) -> tuple:
        """With ``foreground="auto"``: the rule chosen per basis (threshold, side, fraction)."""
        return tuple(s.rule for s in self.selections if isinstance(s, Foreground))

    @property
    def basis(self) -> Basis:
        """The fitted PCA (for ``fit="per_slice"`` with several slices, use :attr:`bases`)."""
        if len(self.bases) != 1:
            raise EmbedviewError(
                f"this visualization has {len(self.bases)} bases (fit='per_slice'); use vis.bases[z].")
        return self.bases[0]

    @property
    def valid(self) -> np.ndarray:
        """Boolean ``(..., H, W)``: where something was drawn."""
        return ~np.isnan(self.components[..., 0])
