"""Synthetic embeddings whose right answer is known: each cell holds one material's prototype."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import zarr

from embedview._common.geometry import Tiling


def prototypes(n_materials: int, n_channels: int, seed: int = 0, spread: float = 10.0) -> np.ndarray:
    """``(M, C)`` well separated material vectors around a shared offset."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n_channels, n_channels)))
    offset = rng.normal(size=n_channels) * 3
    return (offset + spread * q[:n_materials] * np.linspace(1.0, 2.0, n_materials)[:, None]).astype(np.float32)


def features_from_labels(labels: np.ndarray, protos: np.ndarray, noise: float = 0.0, seed: int = 1) -> np.ndarray:
    """``(C, h, w)`` float32 features for a ``(h, w)`` label grid."""
    x = protos[labels].transpose(2, 0, 1).copy()
    if noise:
        x += np.random.default_rng(seed).normal(scale=noise, size=x.shape).astype(np.float32)
    return x


def decode(components: np.ndarray, protos: np.ndarray, basis) -> np.ndarray:
    """Material of each output pixel: the nearest projected prototype (-1 where nothing is drawn)."""
    projected = basis.project(protos.T[:, :, None])[:, :, 0].T  # (M, k)
    d = ((components[..., None, :] - projected) ** 2).sum(-1)
    out = np.argmin(np.nan_to_num(d, nan=np.inf), axis=-1)
    out[np.isnan(components[..., 0])] = -1
    return out


def cell_index(coord: np.ndarray, origin: int, block_long: int, grid_long: int) -> np.ndarray:
    """Exact cell covering pixel ``coord`` (integer arithmetic): ``floor((y + 0.5 - origin) / s)``, ``s = L / g``."""
    return ((2 * (coord - origin) + 1) * grid_long) // (2 * block_long)


def exact_single(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """What an exact renderer shows at every image pixel of a single-image grid."""
    long = max(shape)
    g = max(labels.shape)
    rows = cell_index(np.arange(shape[0]), 0, long, g)
    cols = cell_index(np.arange(shape[1]), 0, long, g)
    return labels[np.ix_(rows, cols)]


def exact_tiled(tile_labels: dict, tiling: Tiling, grid: int = 64, ys=None, xs=None) -> np.ndarray:
    """What an exact renderer shows at image points ``ys × xs`` (default: every pixel centre).

    Points are in index space (pixel ``y`` spans ``[y, y + 1)``); -1 marks missing tiles.
    """
    ys = np.arange(tiling.shape[0]) + 0.5 if ys is None else np.asarray(ys, np.float64)
    xs = np.arange(tiling.shape[1]) + 0.5 if xs is None else np.asarray(xs, np.float64)
    out = np.full((ys.size, xs.size), -1, np.int64)
    for tile in tile_labels:
        (y0, y1), (x0, x1) = tiling.inner(tile)
        (oy0, oy1), (ox0, ox1) = tiling.outer(tile)
        s = Fraction(max(oy1 - oy0, ox1 - ox0), grid)
        rsel = np.nonzero((ys >= y0) & (ys < y1))[0]
        csel = np.nonzero((xs >= x0) & (xs < x1))[0]
        rows = [int((Fraction(y) - oy0) / s) for y in ys[rsel]]
        cols = [int((Fraction(x) - ox0) / s) for x in xs[csel]]
        out[np.ix_(rsel, csel)] = tile_labels[tile][np.ix_(rows, cols)]
    return out


def memory_tiled_group(tiles: dict, tiling: Tiling):
    """An in-memory zarr group of tiles, as micro_sam hands over tiled ImageEmbeddings."""
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    group.attrs.update({"shape": list(tiling.shape), "tile_shape": list(tiling.tile_shape),
                        "halo": list(tiling.halo)})
    for tile, data in tiles.items():
        group.create_array(str(tile), data=data, chunks=data.shape)
    return group
