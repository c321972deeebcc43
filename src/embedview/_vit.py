"""Any ViT: tokens and feature maps of any image encoder, placed exactly through its preprocessing.

A ViT sees a *model input* made from the original ``(H, W)`` image by a resize and a crop, and
cuts it into ``P × P`` patches. :class:`Preprocess` records that recipe; from it and the patch
size follows the exact :class:`~embedview._geometry.CellGrid` of the tokens on the original
image. :func:`from_tokens`, :func:`from_feature_map` and :func:`open_features` turn tokens
``(N, C)``/``(B, N, C)``, feature maps ``(C, h, w)``/``(B, C, h, w)`` and ``.npy``, ``.npz``,
``.safetensors``, ``.pt`` files into an ordinary :class:`~embedview._sources.Source`, which
:func:`embedview.visualize` draws like any other.

Geometry conventions (all exact, in fractions):

- Resize: ``None`` keeps the image; ``(h, w)`` resizes to exactly that; an int ``N`` with
  ``resize_mode="shortest"`` resizes the shorter side to ``N`` and the longer one to
  ``int(N * long / short)`` (torchvision's ``Resize(N)``, Hugging Face's ``shortest_edge``);
  with ``"longest"`` the longer side to ``N`` and the shorter one to ``int(N * short / long)``
  (torchvision's ``Resize(None, max_size=N)``). Other roundings (SAM's rounds to nearest): pass
  the resized ``(h, w)``. Resized pixel edge ``r`` lies at original coordinate ``r * H / H_r``
  (resampling with ``align_corners=False``).
- Crop: ``None`` or a centre crop ``(h, w)`` at torchvision ``CenterCrop``'s offset
  ``int(round((H_r - h) / 2.0))`` (Python rounds halves to even); a crop larger than the image
  pads it with ``(h - H_r) // 2`` before, so the offset is negative. ``crop_offset`` gives the
  offset explicitly (Hugging Face's ``center_crop`` uses ``(H_r - h) // 2``).
- Patches: cell ``i`` covers model-input pixels ``[i * P, (i + 1) * P)``, so on the original
  image it starts at ``(c + i * P) * H / H_r`` (``c`` the crop offset) and is ``P * H / H_r``
  wide; cells may be non-square. A grid of ``input // P`` cells (the remainder dropped, as a
  stride-``P`` convolution does) or ``ceil(input / P)`` (the input padded) is accepted.
- Image pixels whose centres the grid does not cover (cropped away, dropped remainder) are not
  drawn (black, NaN components) and no cell outside the image enters the fit.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Mapping

import numpy as np

from ._errors import EmbedviewError
from ._geometry import CellGrid, _ceil_frac
from ._limits import check_fits, check_piece_fits
from ._sources import FEATURE_SUFFIXES, Piece, Source, _check_size

RESIZE_MODES = ("shortest", "longest")
LAYOUTS = ("auto", "tokens", "map")
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def _pair(value, what: str) -> tuple[int, int]:
    """Two positive ints from an int or a pair."""
    values = (value, value) if np.ndim(value) == 0 else tuple(value)
    try:
        ok = len(values) == 2 and all(int(v) == v and int(v) > 0 for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EmbedviewError(f"{what} must be a positive integer or a (y, x) pair of them, got {value!r}.")
    return int(values[0]), int(values[1])


@dataclass(frozen=True)
class Preprocess:
    """How the model input was made from the original image: a resize, then a crop.

    Parameters
    ----------
    resize : None, int, (int, int) or str
        ``None``: the image was fed as is. ``(h, w)``: resized to exactly that (aspect not
        kept). An int ``N``: one side resized to ``N`` keeping the aspect, which side by
        ``resize_mode``. A string ``"shortest:256"``/``"longest:1024"`` sets both.
    resize_mode : {"shortest", "longest"}
        For an int ``resize``: ``"shortest"`` is torchvision's ``Resize(N)`` (longer side
        ``int(N * long / short)``); ``"longest"`` is ``Resize(None, max_size=N)`` (shorter
        side ``int(N * short / long)``).
    crop : None, int or (int, int)
        Centre crop ``(h, w)`` of the resized image, placed as torchvision's ``CenterCrop``
        places it (``int(round((H_r - h) / 2.0))``; padding when larger than the image).
    crop_offset : (int, int), optional
        Top-left corner of the crop in resized pixels, replacing the centre rule (e.g.
        ``((H_r - h) // 2, (W_r - w) // 2)`` for Hugging Face's ``center_crop``).

    Examples
    --------
    >>> pre = Preprocess("shortest:256", crop=224)    # the torchvision/DINOv2 recipe
    >>> pre.resized_size((480, 640)), pre.crop_start((480, 640)), pre.input_size((480, 640))
    ((256, 341), (16, 58), (224, 224))
    >>> g = pre.cell_grid((480, 640), 14, (16, 16))
    >>> float(g.cell_size[0]), float(g.origin[0])    # 14 * 480/256 pixels, from 16 * 480/256
    (26.25, 30.0)
    """

    resize: int | tuple[int, int] | str | None = None
    resize_mode: str = "shortest"
    crop: int | tuple[int, int] | None = None
    crop_offset: tuple[int, int] | None = None

    def __post_init__(self):
        resize, mode = self.resize, self.resize_mode
        if isinstance(resize, str):
            mode, _, number = resize.partition(":")
            if mode not in RESIZE_MODES or not number.strip().isdigit():
                raise EmbedviewError(
                    f"resize={resize!r} is not understood; write 'shortest:N' or 'longest:N', "
                    "an int with resize_mode=, or the resized (h, w).")
            resize = int(number)
        if mode not in RESIZE_MODES:
            raise EmbedviewError(f"resize_mode must be one of {', '.join(map(repr, RESIZE_MODES))}; got {mode!r}.")
        if resize is not None:
            if np.ndim(resize) == 0:
                resize = _pair(resize, "resize")[0]
            else:
                resize = _pair(resize, "resize")
        crop = None if self.crop is None else _pair(self.crop, "crop")
        offset = self.crop_offset
        if offset is not None:
            if crop is None:
                raise EmbedviewError(f"crop_offset={offset!r} needs the crop size: pass crop=(h, w) too.")
            try:
                offset = tuple(int(v) for v in offset)
            except (TypeError, ValueError):
                offset = ()
            if len(offset) != 2:
                raise EmbedviewError(f"crop_offset must be two integers (top, left), got {self.crop_offset!r}.")
        object.__setattr__(self, "resize", resize)
        object.__setattr__(self, "resize_mode", mode)
        object.__setattr__(self, "crop", crop)
        object.__setattr__(self, "crop_offset", offset)

    def resized_size(self, image_size) -> tuple[int, int]:
        """``(H_r, W_r)``: the image's size after the resize."""
        h, w = (int(v) for v in image_size)
        if self.resize is None:
            return h, w
        if isinstance(self.resize, tuple):
            return self.resize
        short, long = (w, h) if w <= h else (h, w)
        # torchvision's _compute_resized_output_size, float division then truncation included
        if self.resize_mode == "shortest":
            new_short, new_long = self.resize, int(self.resize * long / short)
        else:
            new_short, new_long = int(self.resize * short / long), self.resize
        if new_short < 1:
            raise EmbedviewError(
                f"resizing a {h}×{w} image to {self.resize_mode} side {self.resize} leaves no pixel "
                "on its shorter side; check image_size and resize.")
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def crop_start(self, image_size) -> tuple[int, int]:
        """Top-left corner of the crop in resized pixels (negative where the crop pads)."""
        resized = self.resized_size(image_size)
        if self.crop is None:
            return 0, 0
        if self.crop_offset is not None:
            return self.crop_offset
        return tuple(-((c - n) // 2) if c > n else int(round((n - c) / 2.0))
                     for c, n in zip(self.crop, resized))

    def input_size(self, image_size) -> tuple[int, int]:
        """``(h, w)`` of the model input."""
        return self.crop if self.crop is not None else self.resized_size(image_size)

    def cell_grid(self, image_size, patch_size, grid_shape) -> CellGrid:
        """The exact grid of ``grid_shape`` patches of ``patch_size`` input pixels on the original image.

        Cells start at the crop, ``P * H / H_r`` image pixels apart per axis; the grid's
        extent ends where the image, the resized image or the model input covered by the
        cells ends, whichever comes first.
        """
        image = tuple(int(v) for v in image_size)
        resized, start, input_size = self.resized_size(image), self.crop_start(image), self.input_size(image)
        patch = _pair(patch_size, "patch_size")
        origin, cell, extent = [], [], []
        for n, r, c, m, p, g in zip(image, resized, start, input_size, patch, grid_shape):
            scale = Fraction(n, r)
            o = c * scale
            end = min(Fraction(n), (c + min(int(g) * p, m)) * scale)
            origin.append(o)
            cell.append(p * scale)
            extent.append(end - o)
        return CellGrid(tuple(origin), tuple(cell), tuple(int(g) for g in grid_shape), tuple(extent))


def _as_preprocess(preprocess) -> Preprocess:
    if preprocess is None:
        return Preprocess()
    if isinstance(preprocess, Preprocess):
        return preprocess
    if isinstance(preprocess, Mapping):
        try:
            return Preprocess(**preprocess)
        except TypeError:
            raise EmbedviewError(
                f"preprocess {dict(preprocess)!r} has keys other than resize, resize_mode, crop and "
                "crop_offset; pass those only.") from None
    raise EmbedviewError(
        f"preprocess must be a Preprocess, a dict of its fields or None, got a {type(preprocess).__name__}.")


def _inner(grid: CellGrid, image_size) -> tuple[tuple[int, int], tuple[int, int]]:
    """Integer pixel bounds ``[a, b)`` of exactly the pixels whose centres the grid covers.

    The grid covers ``[max(0, origin), origin + extent)``; pixel ``y``'s centre ``y + ½`` lies
    in ``[L, R)`` iff ``ceil(L - ½) <= y < ceil(R - ½)``, which is how the renderer tests
    centres against a piece's inner block.
    """
    half = Fraction(1, 2)
    bounds = []
    for axis, n in enumerate(image_size):
        o = Fraction(grid.origin[axis])
        lo, hi = max(Fraction(0), o), o + Fraction(grid.extent[axis])
        bounds.append((max(0, _ceil_frac(lo - half)), min(int(n), _ceil_frac(hi - half))))
    return tuple(bounds)


# ---------------------------------------------------------------------------------------------
# lazy arrays


class _Features:
    """Tokens or a feature map seen as micro_sam's ``(1, C, h, w)``/``(Z, 1, C, h, w)``.

    Indexing a piece (``[0]``, ``[z, 0]``) reads just that frame of the wrapped array (a
    memmap stays on disk) and returns float32 ``(C, h, w)``; tokens are transposed from
    ``(h*w, C)`` then.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, data, *, tokens: bool, batched: bool, n_slices: int | None, n_channels: int,
                 grid: tuple[int, int], prefix: int = 0, channels_last: bool = False):
        self._data, self._tokens, self._batched = data, tokens, batched
        self._prefix, self._channels_last, self._grid = prefix, channels_last, grid
        self.shape = ((1,) if n_slices is None else (n_slices, 1)) + (n_channels,) + tuple(grid)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def piece(self, z: int) -> np.ndarray:
        """Float32 ``(C, h, w)`` of frame ``z``."""
        if self._tokens:
            x = self._data[z, self._prefix:] if self._batched else self._data[self._prefix:]
            x = np.asarray(x).reshape(self._grid + (-1,)).transpose(2, 0, 1)
        else:
            x = np.asarray(self._data[z] if self._batched else self._data[...])
            if self._channels_last:
                x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

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


class _BF16:
    """Raw bfloat16 bits (uint16) read as float32 on indexing."""

    dtype = np.dtype(np.float32)

    def __init__(self, bits):
        self._bits = bits
        self.shape, self.ndim = tuple(bits.shape), bits.ndim

    def __getitem__(self, index):
        bits = np.asarray(self._bits[index], dtype=np.uint16)
        return (bits.astype(np.uint32) << 16).view(np.float32)


class _Deferred:
    """An array whose shape is known and whose data is loaded on first indexing (an .npz member)."""

    def __init__(self, shape, dtype, load):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._load, self._array, self._lock = load, None, threading.Lock()

    def __getitem__(self, index):
        with self._lock:  # Source.read_each reads pieces from threads
            if self._array is None:
                self._array = self._load()
        return self._array[index]


def _as_array(data, what: str):
    """An indexable array with ``shape``/``ndim`` from numpy, torch or another array-like."""
    if type(data).__module__.partition(".")[0] == "torch":
        import torch

        tensor = _check_tensor(data, what).detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: keep the bits
            return _BF16(tensor.view(torch.int16).numpy().view(np.uint16))
        return tensor.numpy()
    if not (hasattr(data, "shape") and hasattr(data, "__getitem__") and hasattr(data, "dtype")):
        data = np.asarray(data)
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "fiu" and dtype.name != "bfloat16":
        raise EmbedviewError(f"{what} has dtype {dtype}; pass numeric (float) features.")
    if min(data.shape, default=0) < 1:
        raise EmbedviewError(f"{what} is empty (shape {list(data.shape)}).")
    return data


# ---------------------------------------------------------------------------------------------
# tokens and feature maps


def _describe(image, pre: Preprocess, patch) -> str:
    size = pre.input_size(image)
    via = "" if size == tuple(image) else f" (from the {image[0]}×{image[1]} image)"
    return f"a {size[0]}×{size[1]} model input{via} with patch size {patch[0] if patch[0] == patch[1] else patch}"


def _grid_candidates(input_size, patch) -> list[tuple[int, int]]:
    """The grids a ``P``-patch encoder gives for ``input_size``: remainder dropped, or padded."""
    floor = tuple(m // p for m, p in zip(input_size, patch))
    ceil = tuple(-(-m // p) for m, p in zip(input_size, patch))
    return [g for g in dict.fromkeys([floor, ceil]) if min(g) >= 1]


def _make_source(data, *, tokens, batched, image, patch, grid, pre, prefix, channels_last, name,
                 metadata) -> Source:
    n_slices = int(data.shape[0]) if batched and int(data.shape[0]) > 1 else None  # B = 1: one image
    n_channels = int(data.shape[-1] if tokens or channels_last else data.shape[-3])
    check_piece_fits(n_channels, grid, name, "check the array's layout (layout=, channels_last=) or split "
                                             "the features into smaller frames")
    cells = pre.cell_grid(image, patch, grid)
    inner = _inner(cells, image)
    if any(a >= b for a, b in inner):
        raise EmbedviewError(
            f"the patch grid of {name} covers no pixel of the {image[0]}×{image[1]} image; "
            "check preprocess (resize, crop, crop_offset).")
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
    data = _as_array(tokens, name)
    if data.ndim not in (2, 3):
        raise EmbedviewError(
            f"tokens of {name} have shape {list(data.shape)}; expected (N, C) or (B, N, C) "
            "(for a feature map (C, h, w) use from_feature_map).")
    image = _check_size(image_size, "image_size", name)
    pre, patch = _as_preprocess(preprocess), _pair(patch_size, "patch_size")
    if not isinstance(prefix_tokens, (int, np.integer)) or prefix_tokens < 0:
        raise EmbedviewError(f"prefix_tokens must be a non-negative integer, got {prefix_tokens!r}.")
    n = int(data.shape[-2])
    n_patches = n - int(prefix_tokens)
    candidates = _grid_candidates(pre.input_size(image), patch)
    if not candidates:
        raise EmbedviewError(f"{_describe(image, pre, patch)} holds no whole patch; check patch_size and preprocess.")
    if grid is not None:
        grid = _pair(grid, "grid")
        if grid not in candidates:
            raise EmbedviewError(
                f"grid {list(grid)} does not fit {_describe(image, pre, patch)}, which gives "
                f"{' or '.join(str(list(g)) for g in candidates)}; pass the right grid=, patch_size= or preprocess=.")
        candidates = [grid]
    matches = [g for g in candidates if g[0] * g[1] == n_patches]
    if not matches:
        g = candidates[0]
        extra = n - g[0] * g[1]
        hint = (f"pass prefix_tokens={extra} if the first {extra} tokens are CLS/register tokens "
                f"(1 CLS, or 1 CLS + 4 registers = 5)" if 0 < extra <= 16
                else "pass the right patch_size=, grid= or preprocess=")
        raise EmbedviewError(
            f"{name} has {n} tokens, minus prefix_tokens={prefix_tokens} leaves {n_patches}, but the "
            f"{g[0]}×{g[1]} patch grid of {_describe(image, pre, patch)} needs {g[0] * g[1]}; {hint}.")
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
    data = _as_array(fmap, name)
    if data.ndim not in (3, 4):
        spelled = "(h, w, C) or (B, h, w, C)" if channels_last else "(C, h, w) or (B, C, h, w)"
        raise EmbedviewError(
            f"the feature map {name} has shape {list(data.shape)}; expected {spelled} "
            "(for tokens (N, C) use from_tokens).")
    image = _check_size(image_size, "image_size", name)
    pre = _as_preprocess(preprocess)
    grid = tuple(int(v) for v in (data.shape[-3:-1] if channels_last else data.shape[-2:]))
    input_size = pre.input_size(image)
    if patch_size is None:
        if any(m % g for m, g in zip(input_size, grid)):
            raise EmbedviewError(
                f"{name} has a {grid[0]}×{grid[1]} grid, which does not divide the {input_size[0]}×"
                f"{input_size[1]} model input evenly; pass patch_size= (and preprocess= if the image "
                "was resized or cropped).")
        patch = tuple(m // g for m, g in zip(input_size, grid))
    else:
        patch = _pair(patch_size, "patch_size")
        candidates = _grid_candidates(input_size, patch)
        if grid not in candidates:
            raise EmbedviewError(
                f"{name} has a {grid[0]}×{grid[1]} grid but {_describe(image, pre, patch)} gives "
                f"{' or '.join(str(list(g)) for g in candidates) or 'no whole patch'}; pass the right "
                "patch_size= or preprocess= (or channels_last=True for (h, w, C)).")
    return _make_source(data, tokens=False, batched=data.ndim == 4, image=image, patch=patch, grid=grid,
                        pre=pre, prefix=0, channels_last=bool(channels_last), name=name, metadata={})


# ---------------------------------------------------------------------------------------------
# files


def open_features(path: str | os.PathLike, *, key: str | None = None, layout: str = "auto",
                  image_size: tuple[int, int] | None = None, patch_size: int | tuple[int, int] | None = None,
                  grid: tuple[int, int] | None = None, prefix_tokens: int = 0,
                  preprocess: Preprocess | Mapping | None = None, channels_last: bool = False) -> Source:
    """Open tokens or a feature map saved as ``.npy``, ``.npz``, ``.safetensors`` or ``.pt``/``.pth``.

    ``.npy`` and ``.safetensors`` are memory-mapped and ``.pt`` is loaded with ``mmap`` where
    its format allows, so only the pieces being drawn are read; an ``.npz`` member is loaded
    on the first read. Nothing is unpickled: ``.npy``/``.npz`` headers are parsed without
    ``np.load`` and object arrays refused, ``.pt`` loads with ``torch.load(..., weights_only=True)``
    (tensors only). Every header is checked against the bytes the file holds before anything is
    read, so a damaged or hostile file is refused with an :class:`EmbedviewError` naming it.

    Parameters
    ----------
    path : str or PathLike
        The file.
    key : str, optional
        The array in an ``.npz``, ``.safetensors`` or ``.pt`` dict; needed where it holds
        more than one.
    layout : {"auto", "tokens", "map"}
        ``auto``: 2 dimensions are tokens ``(N, C)``, 4 a map ``(B, C, h, w)``, and 3 either
        ``(B, N, C)`` or ``(C, h, w)``, whichever fits the geometry.
    image_size, patch_size, grid, prefix_tokens, preprocess, channels_last
        The geometry, as for :func:`from_tokens` and :func:`from_feature_map`.

    Returns
    -------
    Source

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tokens.npy")
    >>> np.save(path, np.zeros((1 + 14 * 14, 16), np.float32))
    >>> src = open_features(path, image_size=(224, 224), patch_size=16, prefix_tokens=1)
    >>> src.layout, src.pieces()[0].grid.shape
    ('single', (14, 14))
    """
    path = os.fspath(path)
    if layout not in LAYOUTS:
        raise EmbedviewError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}.")
    if not os.path.isfile(path):
        raise EmbedviewError(f"{path} does not exist or is not a file; pass a .npy, .npz, .safetensors or .pt file.")
    if image_size is None:
        raise EmbedviewError(
            f"{path} holds bare features: pass image_size=(H, W) of the original image, and patch_size= "
            "(and preprocess= if it was resized or cropped) to embedview.open_features.")
    data = _as_array(_load_array(path, key), f"the array in {path}")
    geometry = dict(image_size=image_size, preprocess=preprocess, name=path)
    as_tokens = lambda: from_tokens(data, patch_size=patch_size, grid=grid, prefix_tokens=prefix_tokens,
                                    **geometry)
    as_map = lambda: from_feature_map(data, patch_size=patch_size, channels_last=channels_last, **geometry)
    if layout == "tokens" or (layout == "auto" and data.ndim == 2):
        if patch_size is None:
            raise EmbedviewError(f"tokens in {path} need patch_size= (the model's patch size in input pixels).")
        return as_tokens()
    if layout == "map" or (layout == "auto" and data.ndim == 4):
        return as_map()
    if data.ndim != 3:
        raise EmbedviewError(
            f"{path} holds an array of shape {list(data.shape)}; expected tokens (N, C)/(B, N, C) "
            "or a feature map (C, h, w)/(B, C, h, w).")
    fits = []
    for make in ((as_tokens,) if patch_size is not None else ()) + (as_map,):
        try:
            fits.append(make())
        except EmbedviewError:
            pass
    if len(fits) == 1:
        return fits[0]
    spelled = "(h, w, C)" if channels_last else "(C, h, w)"
    raise EmbedviewError(
        f"{path} holds an array of shape {list(data.shape)} that "
        f"{'fits both' if fits else 'fits neither'} tokens (B, N, C) and a feature map {spelled} for "
        f"the given geometry; pass layout='tokens' or layout='map'"
        f"{' to see what does not match' if not fits else ''}"
        f"{' (tokens also need patch_size=)' if patch_size is None else ''}.")


def _pick(arrays: dict, key, path: str):
    if key is not None:
        if key not in arrays:
            raise EmbedviewError(f"{path} has no array {key!r}; it holds {', '.join(map(repr, arrays)) or 'none'}.")
        return arrays[key]
    if len(arrays) != 1:
        raise EmbedviewError(
            f"{path} holds {len(arrays)} arrays ({', '.join(map(repr, arrays)) or 'none'}); "
            "pass key= to choose one.")
    return next(iter(arrays.values()))


#: Most dimensions an array in a feature file may claim (numpy's own limit is 64).
_MAX_NDIM = 32
_RESAVE = {".npy": "save the features again with numpy.save (numbers, not objects)",
           ".npz": "save the features again with numpy.savez (numbers, not objects)",
           ".safetensors": "save the features again with safetensors' save_file, or as .npy"}


def _damaged(path: str, problem: str, suffix: str | None = None) -> EmbedviewError:
    """The one error for a feature file that does not hold what its format says."""
    suffix = suffix or os.path.splitext(path)[1].lower()
    return EmbedviewError(f"{path} is not a valid {suffix} file: {problem}; {_RESAVE[suffix]}.")


def _check_shape(shape, what: str) -> tuple[tuple[int, ...], int] | str:
    """``(shape, number of elements)``, or what is wrong with a shape claimed by a file header."""
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_NDIM:
        return f"{what} has shape {_short(shape)}, not a list of at most {_MAX_NDIM} sizes"
    if not all(type(v) is int and 0 <= v < 2**63 for v in shape):
        return f"{what} has shape {_short(shape)}, not a list of non-negative integers"
    if math.prod(max(v, 1) for v in shape) >= 2**48:  # numpy refuses such shapes even when empty
        return f"{what} has shape {_short(shape)}, larger than any array embedview can hold"
    return tuple(shape), math.prod(shape)


def _short(value, limit: int = 60) -> str:
    """A bounded ``repr`` of what a hostile header holds (which may be megabytes of nested lists)."""
    import reprlib

    bounded = reprlib.Repr()  # (keyword arguments only from Python 3.12)
    bounded.maxlevel, bounded.maxlist, bounded.maxtuple, bounded.maxdict = 3, 6, 6, 4
    bounded.maxstring = bounded.maxother = limit
    text = bounded.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_dtype(dtype: np.dtype, what: str, kinds: str = "fiu") -> str | None:
    """What is wrong with an array dtype read from a header (objects, records, text), or None."""
    if dtype.hasobject:
        return f"{what} holds Python objects ({dtype}), which embedview never unpickles"
    if dtype.kind not in kinds or dtype.names is not None or dtype.subdtype is not None:
        return f"{what} has dtype {dtype}, not numbers"
    return None


def _read_npy_header(f, n_bytes: int, what: str, kinds: str = "fiu"):
    """``(shape, fortran_order, dtype, data offset)`` from the ``.npy`` stream ``f`` of ``n_bytes``,
    or a str saying what is wrong. Only the header is read; the data must be as long as it says."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            return f"{what} has .npy format version {version}, which embedview does not read"
        shape, fortran, dtype = readers[version](f)  # numpy caps the header at 10 000 bytes
    except Exception as err:  # hostile bytes: any failure of the parser means a damaged header
        return f"{what} has a damaged .npy header ({type(err).__name__})"
    problem = _check_dtype(dtype, what, kinds)
    if problem:
        return problem
    checked = _check_shape(shape, what)
    if isinstance(checked, str):
        return checked
    shape, count = checked
    offset = f.tell()
    if offset + count * dtype.itemsize > n_bytes:
        return (f"{what} claims shape {list(shape)} of {dtype} ({count * dtype.itemsize} bytes) but holds "
                f"{max(0, n_bytes - offset)} bytes of data (truncated or damaged)")
    return shape, bool(fortran), dtype, offset


def _load_npy(path: str) -> np.ndarray:
    """Memory-map an ``.npy`` file after checking its header against its size (never unpickles)."""
    with open(path, "rb") as f:
        header = _read_npy_header(f, os.fstat(f.fileno()).st_size, "its array")
    if isinstance(header, str):
        raise _damaged(path, header)
    shape, fortran, dtype, offset = header
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _load_array(path: str, key):
    suffix = os.path.splitext(path)[1].lower()
    readers = {".npy": _load_npy, ".npz": lambda p: _pick(_npz_members(p), key, p),
               ".safetensors": lambda p: _pick(read_safetensors(p), key, p)}
    if suffix in readers:
        try:
            return readers[suffix](path)
        except OSError as err:
            raise EmbedviewError(f"{path} could not be read ({err.strerror or err}); check that it exists "
                                 "and is readable.") from None
    if suffix in (".pt", ".pth"):
        return _load_torch(path, key)
    raise EmbedviewError(
        f"{path} is not a feature file embedview reads; pass a {', '.join(FEATURE_SUFFIXES)} file.")


def _npz_members(path: str, kinds: str = "fiu") -> dict:
    """``name -> _Deferred`` for the arrays in an .npz, shapes read from their headers only.

    Each member's header must agree with the member's size in the zip directory, so no
    header can make embedview allocate more than the member holds; the data is read on the
    first access, after checking that it fits in memory.
    """
    import zipfile

    members = {}
    with open(path, "rb") as file:  # failing to open it is an OSError; what follows is the file's fault
        try:
            with zipfile.ZipFile(file) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as f:
                        header = _read_npy_header(f, info.file_size, f"member {_short(info.filename)}", kinds)
                    if isinstance(header, str):
                        raise _damaged(path, header, ".npz")
                    members[info.filename[:-4]] = _Deferred(
                        header[0], header[2], lambda info=info, header=header: _npz_member(path, info, *header))
        except EmbedviewError:
            raise
        except Exception as err:  # BadZipFile, zlib.error, EOFError, NotImplementedError, ... on hostile bytes
            raise _damaged(path, f"it is not a readable zip archive ({type(err).__name__})", ".npz") from None
    return members


def _npz_member(path: str, info, shape, fortran: bool, dtype: np.dtype, offset: int) -> np.ndarray:
    """Read one checked ``.npz`` member, no more bytes than its header implies."""
    import zipfile

    n_bytes = math.prod(shape) * dtype.itemsize
    check_fits(n_bytes, f"the array {info.filename[:-4]!r} of {path} ({list(shape)} {dtype})",
               "save the features as .npy or .safetensors, which are read from disk piece by piece")
    out, done = np.empty(n_bytes, np.uint8), 0
    with open(path, "rb") as file:
        try:
            with zipfile.ZipFile(file) as zf, zf.open(info) as f:
                f.read(offset)
                while done < n_bytes:
                    chunk = f.read(min(n_bytes - done, 1 << 24))
                    if not chunk:
                        break
                    out[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                    done += len(chunk)
        except Exception as err:  # a corrupted or truncated deflate stream, a bad CRC
            raise _damaged(path, f"member {_short(info.filename)} is damaged ({type(err).__name__})",
                           ".npz") from None
    if done < n_bytes:
        raise _damaged(path, f"member {_short(info.filename)} is truncated", ".npz")
    return out.view(dtype).reshape(shape, order="F" if fortran else "C")


def read_safetensors(path: str | os.PathLike) -> dict:
    """Memory-map the tensors of a ``.safetensors`` file (F64, F32, F16, BF16) without the safetensors package.

    The format: an 8-byte little-endian header length, a JSON header mapping each name to its
    ``dtype``, ``shape`` and ``data_offsets`` (from the end of the header), then the data,
    little-endian, C order. Every entry is checked against the file before anything is mapped.

    Returns
    -------
    dict
        Name → array (a read-only memmap; BF16 as an array-like that reads float32).

    Raises
    ------
    EmbedviewError
        If the file is not a valid safetensors file (naming what is wrong).

    Examples
    --------
    >>> import json, os, struct, tempfile, numpy as np
    >>> x = np.arange(6, dtype="<f4").reshape(2, 3)
    >>> header = json.dumps({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    >>> path = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(struct.pack("<Q", len(header)) + header + x.tobytes())
    >>> read_safetensors(path)["x"][1]
    memmap([3., 4., 5.], dtype=float32)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):  # a FIFO would block, a device never end
        raise EmbedviewError(f"{path} does not exist or is not a regular file; pass a .safetensors file.")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise _damaged(path, "it is shorter than its 8-byte header length", ".safetensors")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _SAFETENSORS_MAX_HEADER):
            raise _damaged(path, f"its header length {n} exceeds the file or {_SAFETENSORS_MAX_HEADER} bytes",
                           ".safetensors")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except RecursionError:  # nesting deep enough to exhaust the parser's stack
        raise _damaged(path, "its JSON header is nested too deeply", ".safetensors") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise _damaged(path, f"its header is not valid JSON ({type(err).__name__})", ".safetensors") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object", ".safetensors")
    start = 8 + n
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _safetensor(path, name, spec, start, size)
    return tensors


#: Longest JSON header read (the safetensors package allows 100 MB, which parses into gigabytes of
#: Python objects; a file of features has a few entries, a large model's a few hundred KB).
_SAFETENSORS_MAX_HEADER = 16 * 2**20


def _safetensor(path: str, name: str, spec, start: int, size: int):
    """One checked entry of a safetensors header, memory-mapped."""
    what = f"tensor {_short(name)}"
    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
        raise _damaged(path, f"{what} is {_short(spec)}, not an object with dtype, shape and data_offsets",
                       ".safetensors")
    dtype = _SAFETENSORS_DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    if dtype is None:
        raise EmbedviewError(
            f"{what} in {path} has dtype {_short(spec['dtype']).strip(chr(39))}; embedview reads "
            f"{', '.join(_SAFETENSORS_DTYPES)} safetensors, so save the features as float32.")
    checked = _check_shape(spec["shape"], what)
    if isinstance(checked, str):
        raise _damaged(path, checked, ".safetensors")
    shape, count = checked
    offsets = spec["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets)
            and 0 <= offsets[0] <= offsets[1] and start + offsets[1] <= size
            and offsets[1] - offsets[0] == count * np.dtype(dtype).itemsize):
        raise _damaged(path, f"{what} has data_offsets {_short(offsets)} that do not fit its shape "
                             f"{list(shape)} of {spec['dtype']} within the file", ".safetensors")
    begin = offsets[0]
    array = (np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)
             if count else np.zeros(shape, dtype))
    return _BF16(array) if spec["dtype"] == "BF16" else array


def _load_torch(path: str, key):
    try:
        import torch
    except ImportError:
        raise EmbedviewError(
            f"reading {path} needs PyTorch; install it with pip install \"embedview[torch]\" "
            "or save the features as .npy or .safetensors.") from None
    try:
        try:  # mmap keeps the data on disk; older (non-zip) files cannot be mapped
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise EmbedviewError(
            f"{path} could not be loaded with torch.load(weights_only=True) ({type(err).__name__}: "
            f"{_short(str(err).strip().splitlines()[0], 200) if str(err).strip() else 'no detail'}); save a "
            "tensor or a dict of tensors (torch.save(tensor, path)).") from None
    if isinstance(loaded, torch.Tensor):
        return loaded
    if isinstance(loaded, Mapping):
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise EmbedviewError(f"{path} holds a dict without tensors; save the features with "
                                 "torch.save(tensor, path) or a dict of tensors.")
        return _pick(tensors, key, path)
    raise EmbedviewError(
        f"{path} holds a {type(loaded).__name__}, not a tensor or a dict of tensors; save the features "
        "with torch.save(tensor, path).")


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
