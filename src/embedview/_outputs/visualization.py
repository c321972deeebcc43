"""``Visualization``: the PCA picture of some embeddings and how it lies on the image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError
from .._model.fit import Basis
from .._model.selection import Foreground

#: The longest side of the picture a notebook shows (:meth:`Visualization._repr_png_`).
NOTEBOOK_SIDE = 512
#: A smaller picture is enlarged (whole pixels) to about this long side, so its legend is readable.
NOTEBOOK_MIN_SIDE = 256


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
    shown : tuple of int
        The components drawn as red, green and blue (``rgb_components``).

    In a notebook it shows itself (:meth:`_repr_png_`): the picture (a stack's middle slice),
    at most :data:`NOTEBOOK_SIDE` pixels on its long side, over a one-line legend with its
    scale and what its colours show.
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
    shown: tuple = ()

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path is not None else (
            f"rgb {'×'.join(map(str, self.rgb.shape))} uint8")
        scale = ", ".join(f"{v:.6g}" for v in self.scale)
        translate = ", ".join(f"{v:.6g}" for v in self.translate)
        extra = "" if self.labels is None else f", {len(self.centres[0])} clusters"
        return (f"Visualization({self.layout}, image {'×'.join(map(str, self.image_shape))}, {where}, "
                f"scale=({scale}), translate=({translate}), {self._what()}{extra})")

    def _what(self) -> str:
        if not self.bases:  # a similarity map
            return "similarity"
        return (f"{len(self.bases)} {'basis' if len(self.bases) == 1 else 'bases'} "
                f"of {self.bases[0].n_components} components")

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

    def summary(self) -> str:
        """One line: the scale and what the colours show (the notebook picture's legend).

        Examples
        --------
        >>> import numpy as np, embedview
        >>> x = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
        >>> embedview.visualize(x, original_size=(600, 900)).summary()  # doctest: +ELLIPSIS
        '1 pixel = 14.0625 image pixels; R: PC1 ...%, G: PC2 ...%, B: PC3 ...%  (sum ...%)'
        """
        from .legend import variance_text

        spatial = self.scale[-2:]
        size = f"{spatial[0]:.6g}" if spatial[0] == spatial[1] else f"{spatial[0]:.6g} × {spatial[1]:.6g}"
        scale = f"1 pixel = {size} image pixel{'s' * (size != '1')}"
        if not self.bases:
            return f"{scale}; cosine similarity to the query, 1.0 at its cell"
        if self.labels is not None:
            return f"{scale}; {len(self.centres[0])} k-means clusters of the first {self.centres[0].shape[1]} components"
        shown = self.shown or tuple(range(min(3, self.bases[0].n_components)))
        explained = [[float(b.explained_variance_ratio[c]) for c in shown] for b in self.bases]
        text = f"{scale}; {variance_text(explained, components=shown, sep='  ')}"
        if len(self.image_shape) == 3:
            text = f"slice {self.image_shape[0] // 2} of {self.image_shape[0]}; {text}"
        return text

    def _repr_png_(self) -> bytes | None:
        """PNG bytes of the picture for Jupyter: a stack's middle slice, at most
        :data:`NOTEBOOK_SIDE` pixels on its long side (every n-th pixel), with :meth:`summary`
        written under it; ``None`` (the text repr is shown) when the picture is on disk."""
        import io

        from PIL import Image

        from .legend import font_size, load_font, text_strip

        if self.rgb is None:
            return None
        rgb = self.rgb if self.rgb.ndim == 3 else self.rgb[self.rgb.shape[0] // 2]
        side = max(rgb.shape[:2])
        if side > NOTEBOOK_SIDE:
            step = -(-side // NOTEBOOK_SIDE)
            rgb = rgb[::step, ::step]
        elif side < NOTEBOOK_MIN_SIDE:
            up = NOTEBOOK_MIN_SIDE // side
            rgb = np.repeat(np.repeat(rgb, up, axis=0), up, axis=1)
        width = max(rgb.shape[1], NOTEBOOK_MIN_SIDE)
        picture = np.full((rgb.shape[0], width, 3), 255, np.uint8)
        picture[:, :rgb.shape[1]] = rgb
        strip = text_strip(self.summary(), width, load_font(font_size(width)))
        buffer = io.BytesIO()
        Image.fromarray(np.concatenate([picture, strip])).save(buffer, format="PNG")
        return buffer.getvalue()
