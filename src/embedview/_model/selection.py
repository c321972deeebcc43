"""Cell selections: which cells of a piece are fitted and drawn (the rest is drawn dark).

A selection answers ``cells(piece, features) -> bool (h, w)`` for the whole grid of a piece.
:class:`ImageMask` selects the cells whose centre lies on a mask of the image;
:class:`Foreground` the cells on one side of a threshold of a fitted component (DINOv2's
recipe for dropping the background). They are small values, so Dask ships them to workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._common.errors import EmbedviewError
from .._inputs.sources import Piece
from .fit import Basis
from .foreground import ForegroundRule


@dataclass(frozen=True, eq=False)
class ImageMask:
    """Cells whose centre pixel is non-zero in ``mask`` (``(H, W)``, or ``(Z, H, W)`` per slice).

    Examples
    --------
    >>> from embedview._common.geometry import CellGrid
    >>> mask = np.zeros((64, 64), bool); mask[:32] = True
    >>> piece = Piece(None, None, CellGrid.sam((64, 64), (4, 4)), ((0, 64), (0, 64)))
    >>> ImageMask(mask).cells(piece, None)[:, 0].tolist()
    [True, True, False, False]
    """

    mask: np.ndarray

    def cells(self, piece: Piece, features=None) -> np.ndarray:
        plane = self.mask if self.mask.ndim == 2 else self.mask[piece.z or 0]
        g = piece.grid
        centres = []
        for axis in (0, 1):
            c = g.origin[axis] + (np.arange(g.shape[axis]) + 0.5) * float(g.cell_size[axis])
            centres.append(np.floor(c).astype(np.intp))
        inside = [(c >= 0) & (c < n) for c, n in zip(centres, plane.shape)]
        rows, cols = (np.clip(c, 0, n - 1) for c, n in zip(centres, plane.shape))
        return (plane[np.ix_(rows, cols)] != 0) & inside[0][:, None] & inside[1][None, :]


def image_mask(mask, shape: tuple[int, ...], name: str = "the mask") -> ImageMask:
    """Check a label/bool mask against the image ``shape`` (``(H, W)`` or ``(Z, H, W)``)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and mask.shape[:2] == tuple(shape[-2:]):
        mask = mask[..., 0]  # an RGB(A) picture of a mask
    plane = tuple(shape[-2:])
    if mask.shape != plane and mask.shape != tuple(shape):
        raise EmbedviewError(
            f"{name} has shape {list(mask.shape)} but the image is {list(shape)}; pass a label or "
            f"boolean mask of shape {list(plane)}" + (f" or {list(shape)}." if len(shape) == 3 else "."))
    if mask.dtype.kind not in "biuf":
        raise EmbedviewError(f"{name} holds {mask.dtype} values; pass a label or boolean mask.")
    if not np.any(mask):
        raise EmbedviewError(f"{name} is empty (all zero): nothing would be fitted; pass a mask with foreground.")
    return ImageMask(np.ascontiguousarray(mask))


@dataclass(frozen=True, eq=False)
class Foreground:
    """Cells on ``rule``'s side of its threshold of component 0 of ``basis`` (within ``within``)."""

    basis: Basis
    rule: ForegroundRule
    within: ImageMask | None = None

    def cells(self, piece: Piece, features: np.ndarray) -> np.ndarray:
        first = self.basis.project(features)[0]
        keep = self.rule.mask(first)
        if self.within is not None:
            keep &= self.within.cells(piece, features)
        return keep
