"""micro_sam's vision-foundation-model containers, written at test time by a small stand-in encoder.

The layout is that of ``micro_sam/models/vfm.py`` (``precompute_vfm_embeddings``): root attributes
``model_type``, ``model_name``, ``patch_size``, ``embed_dim``, ``vfm_mode``, ``micro_sam_version``,
``data_signature``; ``2d``/``3d`` keep ``features`` (1, C, g, g) / (Z, 1, C, g, g) and the root's
``input_size``/``original_size``; ``tiled-2d``/``tiled-3d`` keep a ``features`` group with ``shape``,
``tile_shape`` and ``halo``, and per tile its own ``original_size`` and ``input_size``.

:class:`StandInEncoder` preprocesses as ``VFMEncoder`` does (resize the longest side to ``img_size``,
the other side ``round``-ed, pad bottom/right to a square, ``img_size / patch`` cells a side), and
gives each cell ``ID_CHANNELS`` channels naming it — (block key, z, row, column) — then content
channels: the mean and spread of the resized pixels it covers through a fixed random projection.
"""

from __future__ import annotations

import numpy as np
import zarr

#: model geometry: model_type -> (patch_size, img_size); the grid side is img_size / patch_size
MODELS = {
    "vit_b_dinov2": (14, 1022),  # DINOv2: 1024 snapped down to a multiple of 14, 73 cells
    "vit_b_dinov3": (16, 1024),  # DINOv3: 64 cells
    "vit_sam3": (14, 1008),  # SAM3's trunk at its native 1008 pixels, 72 cells
}
ID_CHANNELS = 4


class StandInEncoder:
    """``encode(block, key, z) -> (features (C, g, g), input_size)`` with VFMEncoder's preprocessing."""

    def __init__(self, model_type: str, n_channels: int = 8, seed: int = 0):
        self.model_type = model_type
        self.patch_size, self.img_size = MODELS[model_type]
        self.embed_dim = n_channels
        rng = np.random.default_rng(seed)
        self._projection = rng.normal(size=(n_channels - ID_CHANNELS, 2))
        self._offset = rng.normal(size=(n_channels - ID_CHANNELS, 1))  # the position-free term

    def encode(self, block: np.ndarray, key: int = 0, z: int = 0):
        h, w = block.shape
        scale = self.img_size / max(h, w)
        new_h, new_w = int(round(h * scale)), int(round(w * scale))
        # nearest-neighbour resize (pixel centres): enough for a stand-in, cheap at 1 Mpixel
        rows = ((np.arange(new_h) + 0.5) * h / new_h).astype(np.intp)
        cols = ((np.arange(new_w) + 0.5) * w / new_w).astype(np.intp)
        padded = np.zeros((self.img_size, self.img_size), np.float32)
        padded[:new_h, :new_w] = block[np.ix_(rows, cols)] / 255.0
        g, p = self.img_size // self.patch_size, self.patch_size
        patches = padded.reshape(g, p, g, p)
        stats = np.stack([patches.mean(axis=(1, 3)), patches.std(axis=(1, 3))]).reshape(2, -1)
        content = (self._projection @ stats + self._offset).reshape(-1, g, g)
        ii, jj = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        ids = np.stack([np.full((g, g), key), np.full((g, g), z), ii, jj])
        features = np.concatenate([ids, content]).astype(np.float32)
        return features, [new_h, new_w]


def tile_blocks(shape, tile_shape, halo):
    """``(tile, inner, outer)``: blocks from the origin in C order, outer = inner ± halo, clipped."""
    grid = [-(-s // t) for s, t in zip(shape, tile_shape)]
    for tile in range(grid[0] * grid[1]):
        pos = divmod(tile, grid[1])
        inner = [(q * t, min((q + 1) * t, s)) for q, t, s in zip(pos, tile_shape, shape)]
        outer = [(max(a - h, 0), min(b + h, s)) for (a, b), h, s in zip(inner, halo, shape)]
        yield tile, inner, outer


def write_vfm_embeddings(path, image: np.ndarray, encoder: StandInEncoder, *, tile_shape=None, halo=None,
                         zarr_format: int = 3):
    """Write ``image`` ((H, W) or (Z, H, W)) encoded by ``encoder`` as micro_sam's VFM writer does."""
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    is_3d = image.ndim == 3
    slices = image if is_3d else image[None]
    if tile_shape is None:
        encoded = [encoder.encode(plane, 0, z) for z, plane in enumerate(slices)]
        features = np.stack([f[None] for f, _ in encoded])
        features = features if is_3d else features[0]
        root.create_array("features", data=features, chunks=(1, 1) + features.shape[-3:] if is_3d else "auto")
        root.attrs.update(input_size=encoded[-1][1], original_size=list(slices.shape[1:]))
        mode = "3d" if is_3d else "2d"
    else:
        group = root.create_group("features")
        shape = list(slices.shape[1:])
        group.attrs.update(shape=shape, tile_shape=list(tile_shape), halo=list(halo))
        for tile, _, outer in tile_blocks(shape, tile_shape, halo):
            region = (slice(None),) + tuple(slice(a, b) for a, b in outer)
            encoded = [encoder.encode(plane, tile, z) for z, plane in enumerate(slices[region])]
            features = np.stack([f[None] for f, _ in encoded])
            array = group.create_array(str(tile), data=features if is_3d else features[0])
            array.attrs.update(original_size=[b - a for a, b in outer], input_size=encoded[-1][1])
        mode = "tiled-3d" if is_3d else "tiled-2d"
    root.attrs.update(data_signature="stand-in", model_type=encoder.model_type, model_name=encoder.model_type,
                      patch_size=encoder.patch_size, embed_dim=encoder.embed_dim,
                      micro_sam_version="1.9.0.dev0", vfm_mode=mode)
    return path
