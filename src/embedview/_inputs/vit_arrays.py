"""Any ViT's tokens and feature maps, in memory, as ordinary sources.

:func:`from_tokens` and :func:`from_feature_map` turn tokens ``(N, C)``/``(B, N, C)`` and
feature maps ``(C, h, w)``/``(B, C, h, w)`` (numpy, torch or any array-like) into a
:class:`~embedview._inputs.source_base.Source` placed through its :class:`~embedview._inputs.vit_geometry.Preprocess`,
which :func:`embedview.visualize` draws like any other. The adapters here read one frame at a
time (a memmap stays on disk); :mod:`embedview._inputs.vit_files` opens the same from files.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Mapping

import numpy as np

from .._common.errors import EmbedviewError, api_only, arg
from .._common.limits import check_piece_fits
from .source_base import GIVEN, Piece, Source, check_size
from .vit_geometry import Preprocess, as_preprocess, describe_input, grid_candidates, inner_bounds, pair


class _Features:
    """Tokens or a feature map seen as micro_sam's ``(1, C, h, w)``/``(Z, 1, C, h, w)``.

    Indexing a piece (``[0]``, ``[z, 0]``) reads just that frame of the wrapped array (a
    memmap stays on disk) and returns float32 ``(C, h, w)``; tokens are transposed from
    ``(h*w, C)`` then.
    """

    def __init__(self, data, *, tokens: bool, batched: bool, n_slices: int | None, n_channels: int,
                 grid: tuple[int, int], prefix: int = 0, channels_last: bool = False):
        self._data, self._tokens, self._batched = data, tokens, batched
        self._prefix, self._channels_last, self._grid = prefix, channels_last, grid
        # float64 stays float64 until Source.read scales it into float32's range
        self.dtype = np.dtype(np.float64 if np.dtype(data.dtype) == np.float64 else np.float32)
        self.shape = ((1,) if n_slices is None else (n_slices, 1)) + (n_channels,) + tuple(grid)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def piece(self, z: int) -> np.ndarray:
        """``(C, h, w)`` of frame ``z``, float32 (float64 for float64 data)."""
        if self._tokens:
            x = self._data[z, self._prefix:] if self._batched else self._data[self._prefix:]
            x = np.asarray(x).reshape(self._grid + (-1,)).transpose(2, 0, 1)
        else:
            x = np.asarray(self._data[z] if self._batched else self._data[...])
            if self._channels_last:
                x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=self.dtype)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        lead = len(self.shape) - 3
        head = index[:lead]
        if len(head) == lead and all(isinstance(i, (int, np.integer)) for i in head):
            z = int(head[0]) if lead == 2 else 0
            if not -self.shape[0] <= z < self.shape[0] or not -1 <= int(head[-1]) < 1:
                raise IndexError(f"index {index} is out of range for shape {self.shape}")
            return self.piece(z % self.shape[0])[index[lead:]]
        return np.asarray(self)[index]

    def __array__(self, dtype=None, copy=None):
        frames = np.stack([self.piece(z) for z in range(self.shape[0] if len(self.shape) == 5 else 1)])
        out = frames.reshape(self.shape)
        return out if dtype is None else out.astype(dtype)


class BF16:
    """Raw bfloat16 bits (uint16) read as float32 on indexing."""

    dtype = np.dtype(np.float32)

    def __init__(self, bits):
        self._bits = bits
        self.shape, self.ndim = tuple(bits.shape), bits.ndim

    def __getitem__(self, index):
        bits = np.asarray(self._bits[index], dtype=np.uint16)
        return (bits.astype(np.uint32) << 16).view(np.float32)


class Deferred:
    """An array whose shape is known and whose data is loaded on first indexing (an .npz member)."""

    def __init__(self, shape, dtype, load):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._load, self._array, self._lock = load, None, threading.Lock()

    def __getitem__(self, index):
        with self._lock:  # Source.read_each reads pieces from threads
            if self._array is None:
                self._array = self._load()
        return self._array[index]


def as_array(data, what: str):
    """An indexable array with ``shape``/``ndim`` from numpy, torch or another array-like."""
    if type(data).__module__.partition(".")[0] == "torch":
        import torch

        tensor = _check_tensor(data, what).detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: keep the bits
            return BF16(tensor.view(torch.int16).numpy().view(np.uint16))
        return tensor.numpy()
    if not (hasattr(data, "shape") and hasattr(data, "__getitem__") and hasattr(data, "dtype")):
        data = np.asarray(data)
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "fiu" and dtype.name != "bfloat16":
        raise EmbedviewError(f"{what} has dtype {dtype}; pass numeric (float) features.")
    if min(data.shape, default=0) < 1:
        raise EmbedviewError(f"{what} is empty (shape {list(data.shape)}).")
    return data


def _check_tensor(tensor, what: str):
    """Refuse tensors without ordinary numeric data on the host: meta, sparse, quantized, complex, bool."""
    import torch

    if tensor.device.type == "meta":
        raise EmbedviewError(f"{what} is a meta tensor, which holds no data; save the features themselves "
                             "(torch.save(tensor.cpu(), path)).")
    if tensor.layout != torch.strided:
        raise EmbedviewError(f"{what} is a sparse tensor ({tensor.layout}); save it dense "
                             "(torch.save(tensor.to_dense(), path)).")
    if tensor.is_quantized or tensor.is_complex() or tensor.dtype == torch.bool:
        raise EmbedviewError(f"{what} has dtype {tensor.dtype}; save the features as float32.")
    return tensor


def _make_source(data, *, tokens, batched, image, patch, grid, pre, prefix, channels_last, name,
                 metadata) -> Source:
    n_slices = int(data.shape[0]) if batched and int(data.shape[0]) > 1 else None  # B = 1: one image
    n_channels = int(data.shape[-1] if tokens or channels_last else data.shape[-3])
    check_piece_fits(n_channels, grid, name, "check the array's layout (layout=, channels_last=) or split "
                                             "the features into smaller frames")
    cells = pre.cell_grid(image, patch, grid)
    inner = inner_bounds(cells, image)
    if any(a >= b for a, b in inner):
        raise EmbedviewError(
            f"the patch grid of {name} covers no pixel of the {image[0]}×{image[1]} image; "
            f"check {arg('preprocess')}{api_only(' (resize, crop, crop_offset)')}.")
    features = _Features(data, tokens=tokens, batched=batched, n_slices=n_slices,
                         n_channels=n_channels, grid=grid, prefix=prefix, channels_last=channels_last)
    zs = [None] if n_slices is None else range(n_slices)
    pieces = [Piece(z, None, cells, inner) for z in zs]
    meta = {"kind": "tokens" if tokens else "feature map", "patch_size": list(patch),
            "grid": list(grid), "input_size": list(pre.input_size(image)),
            "preprocess": asdict(pre), **metadata}
    return Source(name, "single" if n_slices is None else "stack", image, n_slices, n_channels,
                  features, metadata=meta, _pieces=pieces)


def from_tokens(tokens, image_size: tuple[int, int], patch_size: int | tuple[int, int], *,
                grid: tuple[int, int] | None = None, prefix_tokens: int = 0,
                preprocess: Preprocess | Mapping | None = None, name: str = "the token array") -> Source:
    """Embeddings from ViT tokens ``(N, C)`` or ``(B, N, C)`` (B frames or slices: a stack).

    Parameters
    ----------
    tokens : array-like or torch.Tensor
        ``(N, C)`` for one image, ``(B, N, C)`` for ``B`` frames (``B = 1``: one image). Patch
        tokens are in row-major order after ``prefix_tokens`` leading ones. Read lazily where
        the array allows (a memmap stays on disk).
    image_size : (int, int)
        ``(H, W)`` of the original image.
    patch_size : int or (int, int)
        Patch size ``P`` in model-input pixels.
    grid : (int, int), optional
        The patch grid ``(gh, gw)``; default ``input // P`` (or ``ceil(input / P)`` where
        only that matches the token count).
    prefix_tokens : int
        Leading tokens to drop: 1 for a CLS token, 5 for CLS + 4 registers.
    preprocess : Preprocess or dict, optional
        The resize and crop that made the model input; default none.
    name : str
        How messages name the tokens.

    Returns
    -------
    Source

    Examples
    --------
    >>> import numpy as np, embedview
    >>> tokens = np.random.default_rng(0).normal(size=(1 + 4 + 16 * 16, 8)).astype(np.float32)
    >>> src = from_tokens(tokens, (300, 400), 14, prefix_tokens=5, preprocess=Preprocess((224, 224)))
    >>> src.layout, src.pieces()[0].grid.shape, [float(s) for s in src.pieces()[0].grid.cell_size]
    ('single', (16, 16), [18.75, 25.0])
    >>> embedview.visualize(src, pixel_size=1).rgb.shape
    (300, 400, 3)
    """
    data = as_array(tokens, name)
    if data.ndim not in (2, 3):
        raise EmbedviewError(
            f"tokens of {name} have shape {list(data.shape)}; expected (N, C) or (B, N, C) "
            "(for a feature map (C, h, w) use from_feature_map).")
    image = check_size(image_size, arg("image_size"), name, GIVEN)
    pre, patch = as_preprocess(preprocess), pair(patch_size, "patch_size")
    if not isinstance(prefix_tokens, (int, np.integer)) or prefix_tokens < 0:
        raise EmbedviewError(f"{arg('prefix_tokens', prefix_tokens)} must be a non-negative integer.")
    n = int(data.shape[-2])
    n_patches = n - int(prefix_tokens)
    candidates = grid_candidates(pre.input_size(image), patch)
    if not candidates:
        raise EmbedviewError(f"{describe_input(image, pre, patch)} holds no whole patch; check {arg('patch_size')} and {arg('preprocess')}.")
    if grid is not None:
        grid = pair(grid, "grid")
        if grid not in candidates:
            raise EmbedviewError(
                f"grid {list(grid)} does not fit {describe_input(image, pre, patch)}, which gives "
                f"{' or '.join(str(list(g)) for g in candidates)}; pass the right {arg('grid')}, {arg('patch_size')} or {arg('preprocess')}.")
        candidates = [grid]
    matches = [g for g in candidates if g[0] * g[1] == n_patches]
    if not matches:
        g = candidates[0]
        extra = n - g[0] * g[1]
        hint = (f"pass {arg('prefix_tokens', extra)} if the first {extra} tokens are CLS/register tokens "
                f"(1 CLS, or 1 CLS + 4 registers = 5)" if 0 < extra <= 16
                else f"pass the right {arg('patch_size')}, {arg('grid')} or {arg('preprocess')}")
        raise EmbedviewError(
            f"{name} has {n} tokens, minus {arg('prefix_tokens', prefix_tokens)} leaves {n_patches}, but the "
            f"{g[0]}×{g[1]} patch grid of {describe_input(image, pre, patch)} needs {g[0] * g[1]}; {hint}.")
    return _make_source(data, tokens=True, batched=data.ndim == 3, image=image, patch=patch,
                        grid=matches[0], pre=pre, prefix=int(prefix_tokens), channels_last=False,
                        name=name, metadata={"prefix_tokens": int(prefix_tokens)})


def from_feature_map(fmap, image_size: tuple[int, int], patch_size: int | tuple[int, int] | None = None, *,
                     preprocess: Preprocess | Mapping | None = None, channels_last: bool = False,
                     name: str = "the feature map") -> Source:
    """Embeddings from a feature map ``(C, h, w)`` or ``(B, C, h, w)`` (B frames or slices: a stack).

    Parameters
    ----------
    fmap : array-like or torch.Tensor
        ``(C, h, w)`` or ``(B, C, h, w)``; with ``channels_last``, ``(h, w, C)`` or
        ``(B, h, w, C)``. Read lazily where the array allows.
    image_size : (int, int)
        ``(H, W)`` of the original image.
    patch_size : int or (int, int), optional
        Model-input pixels per map cell (patch size or stride); default ``input / (h, w)``,
        which must divide exactly.
    preprocess : Preprocess or dict, optional
        The resize and crop that made the model input; default none.
    channels_last : bool
        Channels are the last axis.
    name : str
        How messages name the map.

    Returns
    -------
    Source

    Examples
    --------
    >>> import numpy as np
    >>> fmap = np.zeros((3, 8, 16, 16), np.float32)       # 3 slices of a 16×16 map
    >>> src = from_feature_map(fmap, (256, 256))          # patch size 256 / 16 = 16
    >>> src.layout, src.shape, float(src.pieces()[0].grid.cell_size[0])
    ('stack', (3, 256, 256), 16.0)
    """
    data = as_array(fmap, name)
    if data.ndim not in (3, 4):
        spelled = "(h, w, C) or (B, h, w, C)" if channels_last else "(C, h, w) or (B, C, h, w)"
        raise EmbedviewError(
            f"the feature map {name} has shape {list(data.shape)}; expected {spelled} "
            "(for tokens (N, C) use from_tokens).")
    image = check_size(image_size, arg("image_size"), name, GIVEN)
    pre = as_preprocess(preprocess)
    grid = tuple(int(v) for v in (data.shape[-3:-1] if channels_last else data.shape[-2:]))
    input_size = pre.input_size(image)
    if patch_size is None:
        if any(m % g for m, g in zip(input_size, grid)):
            raise EmbedviewError(
                f"{name} has a {grid[0]}×{grid[1]} grid, which does not divide the {input_size[0]}×"
                f"{input_size[1]} model input evenly; pass {arg('patch_size')} (and {arg('preprocess')} if the image "
                "was resized or cropped).")
        patch = tuple(m // g for m, g in zip(input_size, grid))
    else:
        patch = pair(patch_size, "patch_size")
        candidates = grid_candidates(input_size, patch)
        if grid not in candidates:
            raise EmbedviewError(
                f"{name} has a {grid[0]}×{grid[1]} grid but {describe_input(image, pre, patch)} gives "
                f"{' or '.join(str(list(g)) for g in candidates) or 'no whole patch'}; pass the right "
                f"{arg('patch_size')} or {arg('preprocess')}{api_only(' (or ' + arg('channels_last', True) + ' for (h, w, C))')}.")
    return _make_source(data, tokens=False, batched=data.ndim == 4, image=image, patch=patch, grid=grid,
                        pre=pre, prefix=0, channels_last=bool(channels_last), name=name, metadata={})
