"""Any ViT's preprocessing: the resize and crop that made the model input, and the exact cell grid.

A ViT sees a *model input* made from the original ``(H, W)`` image by a resize and a crop, and
cuts it into ``P × P`` patches. :class:`Preprocess` records that recipe; from it and the patch
size follows the exact :class:`~embedview._common.geometry.CellGrid` of the tokens on the original
image (used by :mod:`embedview._inputs.vit_arrays`).

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
- Rounding of an int resize: ``"floor"`` (torchvision, above) or ``"nearest"`` (SAM's
  ``ResizeLongestSide``: ``int(n * (N * 1.0 / long) + 0.5)``, in its float arithmetic).
- Pad: after the crop the input may be padded to ``pad = (h, w)``, at the end (``pad_side="end"``:
  SAM's bottom/right padding, the cells do not move) or centred (``"centre"``: ``(h - H_c) // 2``
  before, so the cells start that much later).
- Patches: cell ``i`` covers model-input pixels ``[i * P, (i + 1) * P)``, so on the original
  image it starts at ``(c + i * P) * H / H_r`` (``c`` the crop offset) and is ``P * H / H_r``
  wide; cells may be non-square. A grid of ``input // P`` cells (the remainder dropped, as a
  stride-``P`` convolution does) or ``ceil(input / P)`` (the input padded) is accepted.
- Image pixels whose centres the grid does not cover (cropped away, dropped remainder) are not
  drawn (black, NaN components) and no cell outside the image enters the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Mapping

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._common.geometry import CellGrid, _ceil_frac

RESIZE_MODES = ("shortest", "longest")
ROUNDINGS = ("floor", "nearest")
PAD_SIDES = ("end", "centre")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def pair(value, what: str) -> tuple[int, int]:
    """Two positive ints from an int or a pair."""
    values = (value, value) if np.ndim(value) == 0 else tuple(value)
    try:
        ok = len(values) == 2 and all(not isinstance(v, (bool, np.bool_)) and int(v) == v and int(v) > 0
                                      for v in values)
    except (TypeError, ValueError, OverflowError):  # int(inf) overflows
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
    rounding : {"floor", "nearest"}
        How an int ``resize`` rounds the other side: torchvision truncates, SAM rounds.
    pad : None, int or (int, int)
        Size the (cropped) input is padded to, with zeros after normalization (SAM: 1024).
    pad_side : {"end", "centre"}
        ``"end"``: bottom/right (SAM); ``"centre"``: ``(h - H_c) // 2`` before.
    interpolation : str
        The resize's filter, as Pillow names it (``"bilinear"``: SAM's, through torchvision on
        a PIL image). It does not move the cells; encoders resample with it.

    Examples
    --------
    >>> pre = Preprocess("shortest:256", crop=224)    # the torchvision/DINOv2 recipe
    >>> pre.resized_size((480, 640)), pre.crop_start((480, 640)), pre.input_size((480, 640))
    ((256, 341), (16, 58), (224, 224))
    >>> g = pre.cell_grid((480, 640), 14, (16, 16))
    >>> float(g.cell_size[0]), float(g.origin[0])    # 14 * 480/256 pixels, from 16 * 480/256
    (26.25, 30.0)
    >>> sam = Preprocess("longest:1024", rounding="nearest", pad=1024)   # SAM's ResizeLongestSide + pad
    >>> sam.resized_size((400, 600)), sam.input_size((400, 600))
    ((683, 1024), (1024, 1024))
    """

    resize: int | tuple[int, int] | str | None = None
    resize_mode: str = "shortest"
    crop: int | tuple[int, int] | None = None
    crop_offset: tuple[int, int] | None = None
    rounding: str = "floor"
    pad: int | tuple[int, int] | None = None
    pad_side: str = "end"
    interpolation: str = "bilinear"

    def __post_init__(self):
        resize, mode = self.resize, self.resize_mode
        if isinstance(resize, str):
            mode, _, number = resize.partition(":")
            if mode not in RESIZE_MODES or not number.strip().isdigit():
                raise EmbedviewError(
                    f"{arg('resize', resize)} is not understood; write 'shortest:N' or 'longest:N', "
                    "an int with resize_mode=, or the resized (h, w).")
            resize = int(number)
        if mode not in RESIZE_MODES:
            raise EmbedviewError(f"resize_mode must be one of {', '.join(map(repr, RESIZE_MODES))}; got {mode!r}.")
        if resize is not None:
            if np.ndim(resize) == 0:
                resize = pair(resize, "resize")[0]
            else:
                resize = pair(resize, "resize")
        crop = None if self.crop is None else pair(self.crop, "crop")
        offset = self.crop_offset
        if offset is not None:
            if crop is None:
                raise EmbedviewError(f"crop_offset={offset!r} needs the crop size: pass {arg('crop', form='h,w')} too.")
            try:
                offset = tuple(int(v) for v in offset)
            except (TypeError, ValueError):
                offset = ()
            if len(offset) != 2:
                raise EmbedviewError(f"crop_offset must be two integers (top, left), got {self.crop_offset!r}.")
        for key, allowed in (("rounding", ROUNDINGS), ("pad_side", PAD_SIDES), ("interpolation", INTERPOLATIONS)):
            if getattr(self, key) not in allowed:
                raise EmbedviewError(f"{key} must be one of {', '.join(map(repr, allowed))}; got {getattr(self, key)!r}.")
        object.__setattr__(self, "pad", None if self.pad is None else pair(self.pad, "pad"))
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
        if self.rounding == "nearest":  # SAM's ResizeLongestSide.get_preprocess_shape, its floats
            scale = self.resize * 1.0 / (short if self.resize_mode == "shortest" else long)
            new_short, new_long = int(short * scale + 0.5), int(long * scale + 0.5)
        # torchvision's _compute_resized_output_size, float division then truncation included
        elif self.resize_mode == "shortest":
            new_short, new_long = self.resize, int(self.resize * long / short)
        else:
            new_short, new_long = int(self.resize * short / long), self.resize
        if new_short < 1:
            raise EmbedviewError(
                f"resizing a {h}×{w} image to {self.resize_mode} side {self.resize} leaves no pixel "
                f"on its shorter side; check {arg('image_size')} and {arg('resize')}.")
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def crop_start(self, image_size) -> tuple[int, int]:
        """Top-left corner of the model input in resized pixels (negative where a crop or a centred pad pads)."""
        resized = self.resized_size(image_size)
        if self.crop is None:
            start = (0, 0)
        elif self.crop_offset is not None:
            start = self.crop_offset
        else:
            start = tuple(-((c - n) // 2) if c > n else int(round((n - c) / 2.0))
                          for c, n in zip(self.crop, resized))
        before = self.pad_before(image_size)
        return tuple(s - b for s, b in zip(start, before))

    def cropped_size(self, image_size) -> tuple[int, int]:
        """``(h, w)`` after the resize and the crop, before any pad (micro_sam's ``input_size``)."""
        return self.crop if self.crop is not None else self.resized_size(image_size)

    def pad_before(self, image_size) -> tuple[int, int]:
        """Zeros padded above and left of the cropped input."""
        if self.pad is None or self.pad_side == "end":
            return 0, 0
        return tuple(max(0, p - n) // 2 for p, n in zip(self.pad, self.cropped_size(image_size)))

    def input_size(self, image_size) -> tuple[int, int]:
        """``(h, w)`` of the model input (padded where ``pad`` says, never cut by it)."""
        size = self.cropped_size(image_size)
        return size if self.pad is None else tuple(max(p, n) for p, n in zip(self.pad, size))

    def describe(self) -> dict:
        """The recipe as JSON-able fields (recorded in written embeddings); ``Preprocess(**d)`` rebuilds it."""
        def plain(v):
            return list(v) if isinstance(v, tuple) else v
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    def cell_grid(self, image_size, patch_size, grid_shape) -> CellGrid:
        """The exact grid of ``grid_shape`` patches of ``patch_size`` input pixels on the original image.

        Cells start at the crop, ``P * H / H_r`` image pixels apart per axis; the grid's
        extent ends where the image, the resized image or the model input covered by the
        cells ends, whichever comes first.
        """
        image = tuple(int(v) for v in image_size)
        resized, start, input_size = self.resized_size(image), self.crop_start(image), self.input_size(image)
        patch = pair(patch_size, "patch_size")
        origin, cell, extent = [], [], []
        for n, r, c, m, p, g in zip(image, resized, start, input_size, patch, grid_shape):
            scale = Fraction(n, r)
            o = c * scale
            end = min(Fraction(n), (c + min(int(g) * p, m)) * scale)
            origin.append(o)
            cell.append(p * scale)
            extent.append(end - o)
        return CellGrid(tuple(origin), tuple(cell), tuple(int(g) for g in grid_shape), tuple(extent))


def as_preprocess(preprocess) -> Preprocess:
    if preprocess is None:
        return Preprocess()
    if isinstance(preprocess, Preprocess):
        return preprocess
    if isinstance(preprocess, Mapping):
        try:
            return Preprocess(**preprocess)
        except TypeError:
            raise EmbedviewError(
                f"preprocess {dict(preprocess)!r} has keys other than resize, resize_mode, crop, "
                "crop_offset, rounding, pad, pad_side and interpolation; pass those only.") from None
    raise EmbedviewError(
        f"preprocess must be a Preprocess, a dict of its fields or None, got a {type(preprocess).__name__}.")


def inner_bounds(grid: CellGrid, image_size) -> tuple[tuple[int, int], tuple[int, int]]:
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


def describe_input(image, pre: Preprocess, patch) -> str:
    size = pre.input_size(image)
    via = "" if size == tuple(image) else f" (from the {image[0]}×{image[1]} image)"
    return f"a {size[0]}×{size[1]} model input{via} with patch size {patch[0] if patch[0] == patch[1] else patch}"


def grid_candidates(input_size, patch) -> list[tuple[int, int]]:
    """The grids a ``P``-patch encoder gives for ``input_size``: remainder dropped, or padded."""
    floor = tuple(m // p for m, p in zip(input_size, patch))
    ceil = tuple(-(-m // p) for m, p in zip(input_size, patch))
    return [g for g in dict.fromkeys([floor, ceil]) if min(g) >= 1]
