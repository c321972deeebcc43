"""Probe encoders of every family: each cell's features are its patch's mean (normalized) R and G.

On a probe image (R = the column, G = the row, both stretched to 0..255 as micro_sam's
``_to_image`` stretches each block), a cell's two features give back the image position of its
patch's centre through the real resize and crop; :func:`misplaced` counts the cells that lie
elsewhere than the declared grid puts them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def probe_image(shape, n_slices=None) -> np.ndarray:
    """``(H, W, 3)`` (or a stack of them): R the column, G the row, B constant."""
    h, w = shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([cols, rows, np.zeros_like(rows)], axis=-1).astype(np.uint16)
    return image if n_slices is None else np.stack([image] * n_slices)


def averaging(conv, k: int = 2) -> None:
    """Set a ``Conv2d(3, C, P, stride=P)`` patch embedding to channels 0..k-1 = the mean of input channel i."""
    import torch

    with torch.no_grad():
        conv.weight.zero_()
        for i in range(k):
            conv.weight[i, i] = 1.0 / (conv.weight.shape[-2] * conv.weight.shape[-1])
        if conv.bias is not None:
            conv.bias.zero_()


def misplaced(src, encoder, tol: float = 0.25) -> tuple[int, int]:
    """``(misplaced, checked)``: interior cells of every piece whose measured centre is not theirs (or lies
    more than ``tol`` of a cell from where the grid says)."""
    mean, std = encoder.mean, encoder.std
    bad = checked = 0
    for piece in src.pieces():
        grid, features = piece.grid, src.read(piece)
        if src.tiling is None:
            outer = ((0, src.image_shape[0]), (0, src.image_shape[1]))
        else:
            outer = src.tiling.outer(piece.tile)
        valid = grid.valid_shape
        for axis, channel in ((1, 0), (0, 1)):
            start, stop = outer[axis]
            # the block's stretch: value v at pixel index i is (i - start) * 255 / (n - 1)
            value = (features[channel] * std[channel] + mean[channel]) * 255 / encoder.pixel_range
            index = value * (stop - start - 1) / 255 + start
            position = index + 0.5  # the pixel centre's coordinate
            cells = np.array([float(grid.origin[axis] + (j + Fraction(1, 2)) * grid.cell_size[axis])
                              for j in range(grid.shape[axis])])
            size = float(grid.cell_size[axis])
            for i in range(1, valid[0] - 1):
                for j in range(1, valid[1] - 1):
                    own = j if axis == 1 else i
                    measured = position[i, j]
                    nearest = int(np.argmin(np.abs(cells - measured)))
                    checked += 1
                    bad += nearest != own or abs(measured - cells[own]) > tol * size
    return bad, checked
