"""Synthetic scenes with curved material boundaries, for the upsampling quality metric (issue 11).

Each image pixel belongs to one material (a disc, an ellipse and a sine-bounded band on a
background). The guide image gives each material its own intensity plus Gaussian noise. Each
embedding cell's features are the area-weighted mix of the material vectors over the cell's
exact footprint (the image pixels whose centres fall in it), plus noise: what a ViT patch
straddling a boundary sees. :func:`displacement` assigns each output pixel (pixel size 1) to the
nearest pure-material colour: misassigned pixels per boundary pixel is the mean boundary
displacement in image pixels.
"""

from __future__ import annotations

import numpy as np

from embedview._common.geometry import CellGrid, Tiling

from _synthetic import decode, prototypes

N_CHANNELS = 16
INTENSITIES = (40, 100, 160, 220)  # guide intensity of each material (uint8)
GUIDE_NOISE = 12.0
FEATURE_NOISE = 1.5


def materials(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``(H, W)`` int labels: background 0, a disc 1, an ellipse 2, a band under a sine curve 3."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w] + 0.5
    labels = np.zeros(shape, np.int64)
    band = y > h * (0.78 + 0.06 * np.sin(2 * np.pi * x / (w * rng.uniform(0.35, 0.5)) + rng.uniform(0, 6)))
    labels[band] = 3
    cy, cx, r = h * rng.uniform(0.3, 0.4), w * rng.uniform(0.25, 0.35), min(h, w) * rng.uniform(0.17, 0.22)
    labels[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = 1
    ey, ex = h * rng.uniform(0.35, 0.45), w * rng.uniform(0.65, 0.72)
    a, b, t = w * 0.16, h * 0.12, rng.uniform(0, np.pi)
    u = (x - ex) * np.cos(t) + (y - ey) * np.sin(t)
    v = -(x - ex) * np.sin(t) + (y - ey) * np.cos(t)
    labels[(u / a) ** 2 + (v / b) ** 2 < 1] = 2
    return labels


def guide_image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 guide: each material's intensity plus Gaussian noise."""
    noise = np.random.default_rng(seed + 100).normal(scale=GUIDE_NOISE, size=labels.shape)
    return np.clip(np.asarray(INTENSITIES, np.float64)[labels] + noise, 0, 255).round().astype(np.uint8)


def cell_features(labels: np.ndarray, grid: CellGrid, protos: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(C, gh, gw)`` float32: per cell of ``grid``, the area-weighted mix of ``protos`` over the
    cell's exact footprint (pixels whose centres fall in it), plus noise; cells past the image 0."""
    h, w = labels.shape
    idx = []
    for axis, n in enumerate((h, w)):
        s, o = float(grid.cell_size[axis]), float(grid.origin[axis])
        idx.append(np.floor((np.arange(n) + 0.5 - o) / s + 1e-9).astype(np.int64))
    iy, ix = idx
    gh, gw = grid.shape
    keep = ((iy >= 0) & (iy < gh))[:, None] & ((ix >= 0) & (ix < gw))[None, :]
    flat = (iy[:, None] * gw + ix[None, :])[keep]
    counts = np.bincount(flat, minlength=gh * gw).astype(np.float64)
    mix = np.stack([np.bincount(flat, weights=(labels[keep] == m).astype(np.float64), minlength=gh * gw)
                    for m in range(len(protos))], axis=1) / np.maximum(counts, 1)[:, None]
    x = (mix @ protos.astype(np.float64)).T.reshape(-1, gh, gw)
    x += np.random.default_rng(seed + 200).normal(scale=FEATURE_NOISE, size=x.shape)
    x[:, counts.reshape(gh, gw) == 0] = 0.0
    return x.astype(np.float32)


def single(shape=(600, 900), grid=64, seed=0):
    """A 2D scene: ``(features (1, C, g, g), labels, guide, protos)``; SAM geometry (600×900 → 14.0625 px cells)."""
    labels = materials(shape, seed)
    protos = prototypes(4, N_CHANNELS, seed=seed)
    cells = CellGrid.sam(shape, (grid, grid))
    return cell_features(labels, cells, protos, seed)[None], labels, guide_image(labels, seed), protos


def stack(shape=(300, 420), grid=28, n=3, seed=0):
    """A stack: ``(features (Z, 1, C, g, g), labels (Z, H, W), guide (Z, H, W), protos)``; 15 px cells."""
    protos = prototypes(4, N_CHANNELS, seed=seed)
    cells = CellGrid.sam(shape, (grid, grid))
    labels = np.stack([materials(shape, seed + z) for z in range(n)])
    feats = np.stack([cell_features(labels[z], cells, protos, seed + z)[None] for z in range(n)])
    guide = np.stack([guide_image(labels[z], seed + z) for z in range(n)])
    return feats, labels, guide, protos


def tiled(shape=(500, 700), tile=(256, 256), halo=(32, 32), grid=20, seed=0):
    """A tiled scene with halo: ``(tiles {id: (1, C, g, g)}, labels, guide, protos, tiling)``;
    cells 16 px in interior tiles, 14.4 px at the image's edges."""
    labels = materials(shape, seed)
    protos = prototypes(4, N_CHANNELS, seed=seed)
    tiling = Tiling(shape, tile, halo)
    tiles = {}
    for t in range(tiling.n_tiles):
        (y0, y1), (x0, x1) = tiling.outer(t)
        cells = CellGrid.sam((y1 - y0, x1 - x0), (grid, grid), origin=(y0, x0))
        tiles[t] = cell_features(labels, cells, protos, seed + t)[None]
    return tiles, labels, guide_image(labels, seed), protos, tiling


def boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another material (both sides of each boundary)."""
    b = np.zeros(labels.shape, bool)
    dy = labels[..., 1:, :] != labels[..., :-1, :]
    dx = labels[..., :, 1:] != labels[..., :, :-1]
    b[..., 1:, :] |= dy
    b[..., :-1, :] |= dy
    b[..., :, 1:] |= dx
    b[..., :, :-1] |= dx
    return b


def displacement(components: np.ndarray, labels: np.ndarray, protos: np.ndarray, basis) -> float:
    """Mean boundary displacement (image pixels): misassigned pixels per boundary pixel, each
    output pixel (pixel size 1) assigned to the nearest projected pure material."""
    found = decode(components, protos, basis)
    return float((found != labels).sum() / boundary(labels).sum())
