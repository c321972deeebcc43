"""The built-in example: a generated image and synthetic embeddings in micro_sam's container layout.

No download, no network, no model. :func:`make_demo_scene` draws a simple test image of a few
materials (background, round cells, a textured region, a bright band) with its label map;
:func:`make_cells_scene` a fluorescence-microscopy-like image (or z-stack) of cells of several
kinds, which ``embedview demo`` shows (:func:`write_demo` writes it in every micro_sam layout);
:class:`DemoEncoder` stands in for SAM's image encoder — it resizes each block the way SAM does
(longest side to ``16 * grid`` pixels, bottom/right zero padding), then turns each 16×16 cell's
statistics and material content into a feature vector through a fixed, seeded random
projection; :func:`write_demo_embeddings` writes its features with
:func:`~embedview._inputs.micro_sam_layout.write_micro_sam_embeddings` (which knows micro_sam's layout).
Tests and benchmarks reuse them.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._common.geometry import Tiling
from .._common.output_paths import atomic_path
from .._inputs.micro_sam_layout import (
    ROOT_ATTRIBUTES,  # noqa: F401 (tests import it from here)
    SAM_PATCH,
    sam_input_size,
    write_micro_sam_embeddings,
)

DEMO_SHAPE = (600, 900)
#: Label values in :func:`make_demo_scene`'s label map.
MATERIALS = ("background", "cells", "texture", "band")
#: Image pixels per cell in the resized image (SAM's ViT patch).
PATCH = SAM_PATCH
#: Materials the encoder tells apart (labels are taken modulo this).
MATERIAL_SLOTS = 8


# ---------------------------------------------------------------------------------------------
# the image


def make_demo_scene(shape: tuple[int, ...] = DEMO_SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A grey image of a few materials and its label map (see :data:`MATERIALS`).

    Parameters
    ----------
    shape : (H, W) or (Z, H, W)
        For a stack, each slice is drawn with its own seed, so cells move between slices.
    seed : int

    Returns
    -------
    image : ndarray of uint8
    labels : ndarray of uint8
        0 background, 1 cells, 2 texture, 3 band.

    Examples
    --------
    >>> image, labels = make_demo_scene((120, 180))
    >>> image.shape, image.dtype, sorted(np.unique(labels).tolist())
    ((120, 180), dtype('uint8'), [0, 1, 2, 3])
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3:
        planes = [make_demo_scene(shape[1:], seed * 1000 + z) for z in range(shape[0])]
        return np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes])
    if len(shape) != 2 or min(shape) < 8:
        raise EmbedviewError(f"the demo image shape must be (H, W) or (Z, H, W) with sides of at least 8, got {list(shape)}.")
    h, w = shape
    rng = np.random.default_rng(seed)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    labels = np.zeros(shape, np.uint8)
    image = np.broadcast_to(50 + 25 * x / w, shape).astype(np.float32)

    cy, cx = h * rng.uniform(0.25, 0.4), w * rng.uniform(0.68, 0.8)
    texture = ((y - cy) / (0.22 * h)) ** 2 + ((x - cx) / (0.16 * w)) ** 2 <= 1
    pattern = 120 + 50 * np.sin(2 * np.pi * x / 8) * np.sin(2 * np.pi * y / 8)
    labels[texture], image[texture] = 2, np.broadcast_to(pattern, shape)[texture]

    band = np.abs(y - h * (0.8 - 0.12 * x / w)) < 0.06 * h
    labels[band], image[band] = 3, 215

    _draw_cells(image, labels, rng)
    image += rng.normal(0, 4, shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels


def _draw_cells(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    """Bright round cells (brighter at the centre) where nothing else is."""
    h, w = labels.shape
    radius = max(2.0, 0.05 * min(h, w))
    wanted = max(3, round(12 * h * w / (DEMO_SHAPE[0] * DEMO_SHAPE[1])))
    placed = 0
    for _ in range(30 * wanted):
        if placed == wanted:
            break
        r = radius * rng.uniform(0.7, 1.3)
        if 2 * r + 2 >= min(h, w):
            break
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        margin = r + 4  # keep cells apart from each other and from other materials
        y0, y1 = max(0, int(cy - margin)), min(h, int(cy + margin) + 2)
        x0, x1 = max(0, int(cx - margin)), min(w, int(cx + margin) + 2)
        d2 = ((np.arange(y0, y1)[:, None] - cy) ** 2 + (np.arange(x0, x1)[None, :] - cx) ** 2)
        if labels[y0:y1, x0:x1][d2 <= margin ** 2].any():
            continue
        disc = d2 <= r * r
        labels[y0:y1, x0:x1][disc] = 1
        image[y0:y1, x0:x1][disc] = (150 + 40 * (1 - d2 / (r * r)))[disc]
        placed += 1


# ---------------------------------------------------------------------------------------------
# the demo's microscopy scene

#: Label values in :func:`make_cells_scene`'s label map.
CELL_KINDS = ("background", "nucleus", "cytoplasm", "granular cell", "mitotic cell")
#: Size of the demo's 2D image.
CELLS_SHAPE = (768, 1024)


def make_cells_scene(shape: tuple[int, ...] = CELLS_SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-microscopy-like image of cells of several kinds, and its label map.

    Dark, unevenly lit background with noise; round nuclei with chromatin texture; large
    elongated cells (dim cytoplasm around a nucleus); granular cells full of bright spots; small,
    very bright mitotic cells. A stack is a z-series through the same ellipsoidal cells, so cells
    grow and shrink from slice to slice.

    Parameters
    ----------
    shape : (H, W) or (Z, H, W)
    seed : int

    Returns
    -------
    image : ndarray of uint8
    labels : ndarray of uint8
        Indices into :data:`CELL_KINDS`.

    Examples
    --------
    >>> image, labels = make_cells_scene((256, 320))
    >>> image.shape, image.dtype, sorted(np.unique(labels).tolist())
    ((256, 320), dtype('uint8'), [0, 1, 2, 3, 4])
    >>> make_cells_scene((3, 128, 160))[0].shape
    (3, 128, 160)
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) not in (2, 3) or min(shape[-2:]) < 64:
        raise EmbedviewError(f"the cell scene's shape must be (H, W) or (Z, H, W) with sides of at least 64, got {list(shape)}.")
    rng = np.random.default_rng((seed, 4242))
    h, w = shape[-2:]
    n_slices = shape[0] if len(shape) == 3 else 1
    cells = _place_cells(h, w, n_slices, rng)
    planes = [_draw_cells_plane(h, w, cells, z if len(shape) == 3 else None, np.random.default_rng((seed, 77, z)))
              for z in range(n_slices)]
    image, labels = np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes])
    return (image, labels) if len(shape) == 3 else (image[0], labels[0])


# kind: (count per 768×1024 image, radius range in pixels, aspect range)
_CELL_RECIPES = {2: (7, (34, 46), (1.3, 1.8)), 3: (8, (22, 28), (1.0, 1.2)),
                 4: (7, (11, 14), (1.0, 1.15)), 1: (55, (13, 17), (1.0, 1.3))}


def _place_cells(h: int, w: int, n_slices: int, rng: np.random.Generator) -> list[dict]:
    """Non-overlapping (in projection) ellipsoidal cells: kind, centre, radii, angle, z extent."""
    taken = np.zeros((h, w), bool)
    area = h * w / (CELLS_SHAPE[0] * CELLS_SHAPE[1])
    cells = []
    for kind, (count, (r0, r1), (a0, a1)) in _CELL_RECIPES.items():
        wanted, placed = max(1, round(count * area)), 0
        for _ in range(40 * wanted):
            if placed == wanted:
                break
            r, aspect, angle = rng.uniform(r0, r1), rng.uniform(a0, a1), rng.uniform(0, np.pi)
            ry, rx = r, r * aspect
            reach = rx + 3
            if 2 * reach + 2 >= min(h, w):
                break
            cy, cx = rng.uniform(reach, h - reach), rng.uniform(reach, w - reach)
            box, inside = _ellipse(cy, cx, ry + 3, rx + 3, angle, h, w)
            if taken[box][inside].any():
                continue
            taken[box] |= inside
            depth = rng.uniform(1.5, 3.5) * (1.6 if kind == 2 else 1.0)
            cells.append({"kind": kind, "cy": cy, "cx": cx, "ry": ry, "rx": rx, "angle": angle,
                          "cz": rng.uniform(-0.5, n_slices - 0.5), "rz": depth,
                          "nucleus": (rng.uniform(-0.3, 0.3) * rx, rng.uniform(0.3, 0.4))})
            placed += 1
    return cells


def _ellipse(cy, cx, ry, rx, angle, h, w):
    """The bounding box (slices) of an ellipse and the boolean ellipse inside it."""
    reach = max(ry, rx) + 1
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    dy, dx = np.arange(y0, y1)[:, None] - cy, np.arange(x0, x1)[None, :] - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / rx, (-dx * s + dy * c) / ry
    return (slice(y0, y1), slice(x0, x1)), u * u + v * v <= 1


def _draw_cells_plane(h, w, cells, z, rng):
    """One plane of the scene: each cell's cross-section at slice ``z`` (2D: the middle one)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # uneven illumination (brighter centre) on a dark background
    light = 1.0 - 0.35 * (((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) / 0.5)
    image = np.full((h, w), 22.0, np.float32)
    labels = np.zeros((h, w), np.uint8)
    for cell in cells:
        f = 1.0 if z is None else 1 - ((z - cell["cz"]) / cell["rz"]) ** 2
        if f <= 0.05:
            continue
        f = float(np.sqrt(f))
        ry, rx, angle, kind = cell["ry"] * f, cell["rx"] * f, cell["angle"], cell["kind"]
        box, inside = _ellipse(cell["cy"], cell["cx"], ry, rx, angle, h, w)
        if not inside.any():
            continue
        n = int(inside.sum())
        if kind == 2:  # dim cytoplasm with fine texture, and an off-centre nucleus
            image[box][inside] = 60 + 12 * rng.standard_normal(n)
            labels[box][inside] = 2
            shift, size = cell["nucleus"]
            c, s = np.cos(angle), np.sin(angle)
            nbox, nucleus = _ellipse(cell["cy"] + shift * s, cell["cx"] + shift * c, ry * size * 1.3,
                                     rx * size, angle, h, w)
            _paint_nucleus(image, labels, nbox, nucleus, rng)
        elif kind == 1:
            _paint_nucleus(image, labels, box, inside, rng)
        elif kind == 3:  # granular: a mid-grey body full of small bright granules
            image[box][inside] = 85 + 8 * rng.standard_normal(n)
            granules = rng.random(inside.shape) < 0.06
            image[box][inside & granules] = 215
            labels[box][inside] = 3
        else:  # mitotic: small, condensed, very bright
            image[box][inside] = 235 + 6 * rng.standard_normal(n)
            labels[box][inside] = 4
    image = image * light + rng.normal(0, 5, (h, w)).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels


def _paint_nucleus(image, labels, box, inside, rng):
    """A bright nucleus, brighter at its centre, with blotchy chromatin."""
    region = image[box]
    ys, xs = np.nonzero(inside)
    if ys.size == 0:
        return
    cy, cx = ys.mean(), xs.mean()
    r2 = max(1.0, float(((ys - cy) ** 2 + (xs - cx) ** 2).max()))
    d2 = ((ys - cy) ** 2 + (xs - cx) ** 2) / r2
    region[ys, xs] = 130 + 45 * (1 - d2) + 18 * rng.standard_normal(ys.size)
    labels[box][inside] = 1


# ---------------------------------------------------------------------------------------------
# the encoder


class DemoEncoder:
    """A stand-in for SAM's image encoder with SAM's geometry and a fixed random projection.

    Each cell's feature vector is ``W_s @ [mean, std, gradient energy, 1] + W_m @ material
    fractions + w_pad * padding fraction + noise``; cells with image content differ clearly from
    padding cells, and materials dominate the principal components.

    Parameters
    ----------
    n_channels : int
        Feature channels C (SAM: 256).
    grid : int
        Cells per side (SAM: 64); the block is resized to ``16 * grid`` pixels.
    seed : int
        Fixes the projection and the noise.
    noise : float
        Standard deviation of the per-cell noise.
    high_norm_fraction, high_norm_factor : float
        Share of image cells scaled up by ``high_norm_factor``, like the high-norm tokens of
        ViTs (e.g. ``0.003`` and ``30``).

    Examples
    --------
    >>> image, labels = make_demo_scene((120, 180))
    >>> DemoEncoder(n_channels=16, grid=16).encode(image, labels).shape
    (16, 16, 16)
    """

    def __init__(self, n_channels: int = 64, grid: int = 64, seed: int = 0, noise: float = 0.1,
                 high_norm_fraction: float = 0.0, high_norm_factor: float = 30.0):
        if n_channels < 1 or grid < 1:
            raise EmbedviewError(f"the demo encoder needs n_channels and grid ≥ 1, got {n_channels} and {grid}.")
        self.n_channels, self.grid, self.seed, self.noise = int(n_channels), int(grid), int(seed), float(noise)
        self.high_norm_fraction, self.high_norm_factor = float(high_norm_fraction), float(high_norm_factor)
        rng = np.random.default_rng((self.seed, 7919))
        self.w_stats = rng.normal(0, 1.0, (self.n_channels, 4)).astype(np.float32)
        self.w_materials = rng.normal(0, 1.5, (self.n_channels, MATERIAL_SLOTS)).astype(np.float32)
        self.w_padding = rng.normal(0, 2.0, self.n_channels).astype(np.float32)

    def encode(self, block: np.ndarray, labels: np.ndarray | None = None, key: tuple[int, ...] = ()) -> np.ndarray:
        """Features ``(C, grid, grid)`` float32 of a 2D block; ``key`` varies the noise per piece."""
        g, side = self.grid, PATCH * self.grid
        h, w = block.shape
        rh, rw = sam_input_size((h, w), g)
        # Nearest-neighbour resize at pixel centres: resized pixel i shows original floor((i + ½)·L/side).
        ys = np.minimum(((np.arange(rh) + 0.5) * (max(h, w) / side)).astype(np.intp), h - 1)
        xs = np.minimum(((np.arange(rw) + 0.5) * (max(h, w) / side)).astype(np.intp), w - 1)
        resized = np.zeros((side, side), np.float32)
        resized[:rh, :rw] = np.asarray(block)[np.ix_(ys, xs)]
        inside = np.zeros((side, side), np.float32)
        inside[:rh, :rw] = 1

        gy = np.zeros_like(resized)
        gx = np.zeros_like(resized)
        gy[:-1] = np.diff(resized, axis=0)
        gx[:, :-1] = np.diff(resized, axis=1)
        stats = np.stack([_cell_mean(resized, g) / 255, _cell_std(resized, g) / 64,
                          np.sqrt(_cell_mean(gy * gy + gx * gx, g)) / 64, np.ones((g, g), np.float32)])
        feats = self.w_stats @ stats.reshape(4, -1)
        if labels is not None:
            lab = np.full((side, side), -1, np.int16)
            lab[:rh, :rw] = np.asarray(labels)[np.ix_(ys, xs)] % MATERIAL_SLOTS
            for m in np.unique(lab[:rh, :rw]):
                feats += np.outer(self.w_materials[:, m], _cell_mean((lab == m).astype(np.float32), g).ravel())
        feats += np.outer(self.w_padding, 1 - _cell_mean(inside, g).ravel())
        rng = np.random.default_rng((self.seed,) + tuple(int(k) for k in key))
        feats += self.noise * rng.standard_normal(feats.shape, np.float32)
        if self.high_norm_fraction > 0:
            image_cells = np.flatnonzero(_cell_mean(inside, g).ravel() > 0)
            n = int(round(self.high_norm_fraction * image_cells.size))
            feats[:, rng.choice(image_cells, n, replace=False)] *= self.high_norm_factor
        return feats.reshape(self.n_channels, g, g).astype(np.float32)


def _cell_mean(values: np.ndarray, g: int) -> np.ndarray:
    return values.reshape(g, PATCH, g, PATCH).mean(axis=(1, 3))


def _cell_std(values: np.ndarray, g: int) -> np.ndarray:
    return values.reshape(g, PATCH, g, PATCH).std(axis=(1, 3))


class LazyFeatures:
    """An array-like ``(1, C, h, w)`` or ``(Z, 1, C, h, w)`` whose slices are computed when indexed.

    Writing or visualizing it holds one slice at a time, so benchmarks can make large files.
    Supports ``x[i]`` and ``x[i, ...]`` (an integer first), ``shape``, ``ndim``, ``dtype`` and
    ``numpy.asarray``.

    Examples
    --------
    >>> x = LazyFeatures((3, 1, 2, 4, 4), lambda z: np.full((1, 2, 4, 4), z, np.float32))
    >>> x[2, 0].shape, float(x[2].max())
    ((2, 4, 4), 2.0)
    """

    dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, ...], compute: Callable[[int], np.ndarray]):
        self.shape = tuple(int(v) for v in shape)
        self.ndim = len(self.shape)
        self._compute = compute

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        if not isinstance(first, (int, np.integer)):
            raise TypeError("LazyFeatures takes an integer first index")
        first = int(first) + (self.shape[0] if first < 0 else 0)
        if not 0 <= first < self.shape[0]:
            raise IndexError(f"index {first} is out of range for {self.shape[0]}")
        data = np.asarray(self._compute(first), np.float32)
        return data[rest] if rest else data

    def __array__(self, dtype=None, copy=None):
        return np.stack([self[i] for i in range(self.shape[0])]).astype(dtype or np.float32)


def demo_features(image: np.ndarray, labels: np.ndarray | None = None, *, tile_shape=None, halo=None,
                  tiles=None, encoder: DemoEncoder | None = None):
    """Lazy features of an image or stack in micro_sam's layout, one piece computed at a time.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or a stack ``(Z, H, W)``.
    labels : ndarray, optional
        Material labels of the same shape; adds a per-material signal.
    tile_shape, halo : (int, int), optional
        Tile the image as micro_sam does: each tile is encoded from its inner block grown by
        ``halo`` (clipped to the image).
    tiles : iterable of int, optional
        Only these tiles (micro_sam's masked tiling); default all.
    encoder : DemoEncoder, optional

    Returns
    -------
    LazyFeatures or dict of int to LazyFeatures
        ``(1, C, g, g)`` / ``(Z, 1, C, g, g)``; a dict per tile id when tiled.

    Examples
    --------
    >>> image, labels = make_demo_scene((100, 150))
    >>> tiles = demo_features(image, labels, tile_shape=(64, 64), halo=(8, 8), encoder=DemoEncoder(8, 16))
    >>> sorted(tiles), tiles[0].shape
    ([0, 1, 2, 3, 4, 5], (1, 8, 16, 16))
    """
    encoder = encoder or DemoEncoder()
    image = np.asarray(image) if not hasattr(image, "ndim") else image
    if image.ndim not in (2, 3):
        raise EmbedviewError(f"the image must be (H, W) or (Z, H, W), got shape {list(image.shape)}.")
    if labels is not None and tuple(labels.shape) != tuple(image.shape):
        raise EmbedviewError(f"labels of shape {list(labels.shape)} do not match the image's {list(image.shape)}.")
    stack = image.ndim == 3
    C, g = encoder.n_channels, encoder.grid

    def lazy(region, tile):
        (y0, y1), (x0, x1) = region

        def compute(z):
            plane = image[z] if stack else image
            lab = None if labels is None else (labels[z] if stack else labels)
            feats = encoder.encode(plane[y0:y1, x0:x1], None if lab is None else lab[y0:y1, x0:x1],
                                   key=(z if stack else 0, 0 if tile is None else tile + 1))
            return feats[None] if stack else feats

        return LazyFeatures(((image.shape[0], 1) if stack else (1,)) + (C, g, g), compute)

    shape = image.shape[-2:]
    if tile_shape is None:
        return lazy(((0, shape[0]), (0, shape[1])), None)
    tiling = Tiling(tuple(shape), tuple(int(v) for v in tile_shape), tuple(int(v) for v in (halo or (0, 0))))
    ids = range(tiling.n_tiles) if tiles is None else sorted(int(t) for t in tiles)
    return {t: lazy(tiling.outer(t), t) for t in ids}


def write_demo_embeddings(path, image: np.ndarray, labels: np.ndarray | None = None, *, tile_shape=None,
                          halo=None, tiles=None, encoder: DemoEncoder | None = None, zarr_format: int = 3,
                          progress: bool = False, overwrite: bool = False):
    """Encode an image (or stack) with :class:`DemoEncoder` and write a micro_sam container.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.zarr`` folder to write.
    image : ndarray
        ``(H, W)`` or ``(Z, H, W)``.
    labels : ndarray, optional
        Material labels (see :func:`make_demo_scene`).
    tile_shape, halo : (int, int), optional
        Tile the image as micro_sam does.
    tiles : iterable of int, optional
        Write only these tiles and record them as ``tiles_in_mask`` (a masked tiling).
    encoder : DemoEncoder, optional
        Default ``DemoEncoder()`` (64 channels, 64×64 cells).
    zarr_format : {2, 3}
    progress : bool

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, os, embedview
    >>> image, labels = make_demo_scene((200, 300))
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.zarr")
    >>> _ = write_demo_embeddings(path, image, labels, tile_shape=(128, 128), halo=(16, 16))
    >>> src = embedview.open_source(path)
    >>> src.layout, src.image_shape, src.tiling.n_tiles
    ('tiled', (200, 300), 6)
    """
    encoder = encoder or DemoEncoder()
    features = demo_features(image, labels, tile_shape=tile_shape, halo=halo, tiles=tiles, encoder=encoder)
    signature = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
    return write_micro_sam_embeddings(
        path, features, original_size=image.shape[-2:], tile_shape=tile_shape, halo=halo,
        tiles_in_mask=tiles, zarr_format=zarr_format, data_signature=signature, progress=progress,
        overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# the built-in example (`embedview demo`)

#: What :func:`write_demo` writes: name → (shape, tile_shape, halo) of each embedded image.
DEMO_LAYOUTS = {
    "image": ((768, 1024), None, None),
    "stack": ((6, 384, 512), None, None),
    "tiled_image": ((1024, 1536), (384, 512), (32, 32)),
    "tiled_stack": ((3, 768, 1024), (384, 512), (32, 32)),
}
#: The ViT stand-in of :func:`demo_vit_tokens`: DINOv3 ViT-S/16's preprocessing (resize the
#: shortest side to 256, centre crop 224) and tokens (CLS + 4 registers, then 14 × 14 patches).
VIT_RESIZE, VIT_CROP, VIT_PATCH, VIT_PREFIX = 256, (224, 224), 16, 5


def demo_vit_tokens(image: np.ndarray, labels: np.ndarray | None = None, *, n_channels: int = 96,
                    seed: int = 1) -> np.ndarray:
    """Tokens ``(N, C)`` of a 2D image from a stand-in ViT with DINOv3 ViT-S/16's preprocessing.

    The image is resized (nearest pixel centre) so that its shortest side is 256, centre
    cropped to 224 × 224 and encoded in 16-pixel patches by a :class:`DemoEncoder` of another
    seed (another model); five prefix tokens (a CLS token and four registers) come first.

    Examples
    --------
    >>> image, labels = make_cells_scene((300, 400))
    >>> demo_vit_tokens(image, labels).shape
    (201, 96)
    """
    from .._inputs.vit_geometry import Preprocess

    image = np.asarray(image)
    prep = Preprocess(resize=VIT_RESIZE, crop=VIT_CROP)
    (rh, rw), (top, left) = prep.resized_size(image.shape), prep.crop_start(image.shape)
    ys = np.clip(((np.arange(VIT_CROP[0]) + top + 0.5) * image.shape[0] / rh).astype(np.intp), 0, image.shape[0] - 1)
    xs = np.clip(((np.arange(VIT_CROP[1]) + left + 0.5) * image.shape[1] / rw).astype(np.intp), 0, image.shape[1] - 1)
    encoder = DemoEncoder(n_channels=n_channels, grid=VIT_CROP[0] // VIT_PATCH, seed=seed)
    feats = encoder.encode(image[np.ix_(ys, xs)], None if labels is None else np.asarray(labels)[np.ix_(ys, xs)])
    patches = feats.reshape(n_channels, -1).T
    rng = np.random.default_rng((seed, 5))
    prefix = np.concatenate([patches.mean(axis=0, keepdims=True),
                             rng.normal(0, 3 * float(patches.std()), (VIT_PREFIX - 1, n_channels))])
    return np.concatenate([prefix, patches]).astype(np.float32)


def write_demo(out_dir, *, seed: int = 0, progress: bool = False, overwrite: bool = False) -> dict:
    """Write the built-in example's images, label map, embeddings and ViT tokens into ``out_dir``.

    For each entry of :data:`DEMO_LAYOUTS` an image of :func:`make_cells_scene` (``image.png``,
    ``stack.tif``, ``tiled_image.tif``, ``tiled_stack.tif``) and its :class:`DemoEncoder`
    embeddings in micro_sam's layout (``embeddings.zarr``, ``stack_embeddings.zarr``,
    ``tiled_embeddings.zarr``, ``tiled_stack_embeddings.zarr``); also ``labels.png`` (the 2D
    image's cell kinds, :data:`CELL_KINDS`; usable as a mask) and ``vit_tokens.npy``
    (:func:`demo_vit_tokens` of the 2D image). Every file is written atomically.

    Parameters
    ----------
    out_dir : str or os.PathLike
        An existing folder.
    seed : int
        Another seed draws other scenes (the encoders stay the same).
    progress : bool
    overwrite : bool
        May replace files at the demo's names that embedview did not write as demo files
        (:func:`embedview._common.output_paths.guard_output`); by default only an earlier demo's.

    Returns
    -------
    dict of str to Path
        ``"image"``, ``"embeddings"``, ``"stack"``, ``"stack_embeddings"``, ... as above.
    """
    import tifffile

    from .._common.ownership import marker
    from .._outputs.io import write_npy, write_png

    seed = check_seed(seed)
    out = Path(out_dir)
    names = demo_files()
    written = {}
    # Every file carries embedview's marker of a demo file: a later demo may replace it, a
    # rendered picture may not (the demo's images are the inputs of the README's commands).
    demo_file = functools.partial(atomic_path, kind="demo", overwrite=overwrite)
    for offset, (name, (shape, tile_shape, halo)) in enumerate(DEMO_LAYOUTS.items()):
        image, labels = make_cells_scene(shape, seed=seed * 10 + offset)
        image_path = written[name] = out / names[name]
        with demo_file(image_path) as tmp:
            if image_path.suffix == ".png":
                write_png(tmp, image, kind="demo")
            else:
                tifffile.imwrite(tmp, image, photometric="minisblack", metadata=marker("demo"))
        embeddings = _embeddings_key(name)
        written[embeddings] = Path(write_demo_embeddings(out / names[embeddings], image, labels, tile_shape=tile_shape,
                                                         halo=halo, progress=progress, overwrite=overwrite))
        if name == "image":
            written["labels"] = out / names["labels"]
            with demo_file(written["labels"]) as tmp:
                write_png(tmp, labels, kind="demo")
            written["vit_tokens"] = out / names["vit_tokens"]
            with demo_file(written["vit_tokens"]) as tmp:
                write_npy(tmp, demo_vit_tokens(image, labels), kind="demo")
    return written


def demo_kind(name: str) -> str:
    """What the demo's file ``name`` is (:data:`embedview._common.ownership.KINDS`)."""
    if name.endswith(".zarr"):
        return "embeddings"
    return "picture" if name.startswith("pca") else "demo"


def _embeddings_key(name: str) -> str:
    return "embeddings" if name == "image" else f"{name.replace('_image', '')}_embeddings"


def demo_files() -> dict:
    """The file name of each entry :func:`write_demo` writes (checked before anything is written).

    Examples
    --------
    >>> demo_files()["tiled_embeddings"], demo_files()["stack"]
    ('tiled_embeddings.zarr', 'stack.tif')
    """
    names = {}
    for name in DEMO_LAYOUTS:
        names[name] = "image.png" if name == "image" else f"{name}.tif"
        names[_embeddings_key(name)] = f"{_embeddings_key(name)}.zarr"
        if name == "image":
            names.update(labels="labels.png", vit_tokens="vit_tokens.npy")
    return names


# ---------------------------------------------------------------------------------------------
# the whole demo (``embedview demo``)


def demo(out_dir, *, seed: int = 0, quiet: bool = False, overwrite: bool = False) -> list[Path]:
    """Write the built-in example into ``out_dir`` and render its 2D image: what ``embedview demo`` does.

    Writes what :func:`write_demo` writes (``image.png`` with ``embeddings.zarr``,
    ``stack.tif`` with ``stack_embeddings.zarr``, ``tiled_image.tif`` with
    ``tiled_embeddings.zarr``, ``tiled_stack.tif`` with ``tiled_stack_embeddings.zarr``,
    ``labels.png``, ``vit_tokens.npy``), then the PCA picture of the 2D one, ``pca.png``, and
    its :func:`embedview.figure`, ``pca_figure.png``. Each file may replace only an earlier
    demo's (:func:`embedview._common.output_paths.guard_output`); all are checked before anything is written,
    and a failed run removes what it created.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The folder to write into (created if needed).
    seed : int
        Another seed draws other scenes (the encoder stays the same).
    quiet : bool
        Print nothing; otherwise progress bars and what was written, on stderr.
    overwrite : bool
        May replace files at those names that embedview did not write (``--overwrite``), never a
        folder it did not write.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> [p.name for p in demo("demo", quiet=True)][:2]  # doctest: +SKIP
    ['image.png', 'embeddings.zarr']
    """
    from .._common.output_paths import undo_on_failure

    check_seed(seed)
    with undo_on_failure():
        return _demo(Path(out_dir), seed, quiet, overwrite)


def check_seed(seed) -> int:
    """A scene's seed: a whole number ≥ 0 (numpy's generators take no negative seed)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EmbedviewError(f"{arg('seed', seed)} must be a whole number ≥ 0 (each draws another scene).")
    return int(seed)


def _demo(out: Path, seed: int, quiet: bool, overwrite: bool = False) -> list[Path]:
    from .._common.output_paths import check_output, make_folder
    from .._run.settings import Output
    from .commands import render

    make_folder(out)
    for name in list(demo_files().values()) + ["pca.png", "pca_figure.png"]:
        check_output(out / name, kind=demo_kind(name), overwrite=overwrite)  # all before anything is written
    files = write_demo(out, seed=seed, progress=not quiet, overwrite=overwrite)
    if not quiet:
        pairs = [(files[k], files[e]) for k, e in (("image", "embeddings"), ("stack", "stack_embeddings"),
                                                    ("tiled_image", "tiled_embeddings"),
                                                    ("tiled_stack", "tiled_stack_embeddings"))]
        print("embedview: wrote generated cell images and their synthetic embeddings in micro_sam's layout: "
              + ", ".join(f"{image} ({embeddings})" for image, embeddings in pairs)
              + f"; also {files['labels']} (cell kinds) and {files['vit_tokens']} (ViT tokens)", file=sys.stderr)
    rendered = render(files["embeddings"], Output(out / "pca.png", overwrite=overwrite), image=files["image"], quiet=quiet)
    if not quiet:
        print(f"embedview: next, try `embedview info {files['tiled_embeddings']}` or "
              f"`embedview render {files['stack_embeddings']} -o stack_pca.tif --pixel-size 1`", file=sys.stderr)
    return list(files.values()) + rendered
