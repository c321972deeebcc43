"""An encoder and its declared preprocessing: from image blocks to feature grids.

An :class:`Encoder` wraps a torch module with the declaration of how an image block becomes the
module's input: micro_sam's conversion to 3-channel uint8 (:func:`to_uint8`), a resize, crop and
pad (:class:`~embedview._inputs.vit_geometry.Preprocess`, the one geometry of ViT inputs), the
normalization (``mean``, ``std``), the patch size and the prefix tokens. The cells' grid on the
image is derived from the same declaration (:meth:`Encoder.cell_grid`), and the declaration is
recorded in the written embeddings (:meth:`Encoder.describe`), so the placement is exact by
construction.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._common.errors import EmbedviewError
from .._inputs.vit_geometry import Preprocess, as_preprocess, pair


def require_torch():
    """``torch``, or the error that names the extra to install."""
    try:
        import torch
    except ImportError:
        raise EmbedviewError("computing embeddings needs PyTorch, which is not installed; install the "
                             "extra: pip install 'embedview[encode]'.") from None
    return torch


def to_uint8(block: np.ndarray) -> np.ndarray:
    """micro_sam's ``_to_image``: a ``(H, W)``/``(H, W, C)`` block as ``(H, W, 3)`` uint8.

    Grey is repeated to three channels, two channels get a zero third, more than three keep the
    first three; then each channel is stretched to its block's min–max, in micro_sam's float32
    arithmetic, and truncated to uint8.
    """
    x = np.asarray(block)
    if x.ndim == 2:
        x = np.concatenate([x[..., None]] * 3, axis=-1)
    elif x.shape[-1] == 1:
        x = np.concatenate([x] * 3, axis=-1)
    elif x.shape[-1] == 2:
        x = np.concatenate([x, np.zeros(x.shape[:2] + (1,), dtype=x.dtype)], axis=-1)
    elif x.shape[-1] > 3:
        warnings.warn(f"the image has {x.shape[-1]} channels; only the first three are encoded (as micro_sam does).")
        x = x[..., :3]
    x = x.astype("float32")
    x -= x.min(axis=(0, 1))[None, None]
    x /= (x.max(axis=(0, 1))[None, None] + 1e-7)
    return (x * 255).astype("uint8")


class Encoder:
    """A torch module and the declaration of its input: the cells' grid follows from it exactly.

    Parameters
    ----------
    module : torch.nn.Module or callable
        Maps a float32 batch ``(B, 3, h, w)`` to a feature map ``(B, C, gh, gw)`` or to tokens
        ``(B, prefix_tokens + gh * gw, C)`` (row-major patches after the prefix tokens).
    patch_size : int or (int, int)
        Model-input pixels per cell.
    preprocess : Preprocess or dict, optional
        Resize (and its rounding and interpolation), crop and pad (:class:`Preprocess`); default:
        the block as it is.
    mean, std : sequence of 3 floats
        Normalization ``(x - mean) / std`` of pixels in ``[0, pixel_range]``.
    pixel_range : float
        255 where ``mean``/``std`` are given for uint8 pixels (SAM), 1 for pixels scaled to
        ``[0, 1]`` (timm, torchvision).
    prefix_tokens : int
        Class and register tokens before the patch tokens (dropped).
    layer : int, optional
        The block the features come from, as recorded; the module returns that block's features.
    name : str
        Recorded as the model's name.
    model_type, model_hash : str, optional
        Recorded as micro_sam records them (the SAM family sets them).

    Examples
    --------
    A DINO-style declaration (resize the shorter side to 256, centre crop 224, patch 14):

    >>> enc = Encoder(lambda x: x, patch_size=14, preprocess=Preprocess("shortest:256", crop=224))
    >>> g = enc.cell_grid((480, 640), (16, 16))
    >>> float(g.cell_size[0]), round(float(g.origin[1]), 2)    # 14 · 480/256; crop at 58 of 341 columns
    (26.25, 108.86)
    """

    def __init__(self, module, *, patch_size, preprocess=None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), pixel_range: float = 1.0, prefix_tokens: int = 0,
                 layer: int | None = None, name: str | None = None, model_type: str | None = None,
                 model_hash: str | None = None):
        self.module = module
        self.patch_size = pair(patch_size, "patch_size")
        self.preprocess: Preprocess = as_preprocess(preprocess)
        self.mean, self.std = _three(mean, "mean"), _three(std, "std")
        if any(s == 0 for s in self.std):
            raise EmbedviewError(f"std must not be 0, got {list(self.std)}.")
        self.pixel_range = float(pixel_range)
        if isinstance(prefix_tokens, bool) or int(prefix_tokens) != prefix_tokens or prefix_tokens < 0:
            raise EmbedviewError(f"prefix_tokens must be a whole number ≥ 0, got {prefix_tokens!r}.")
        self.prefix_tokens = int(prefix_tokens)
        self.layer = None if layer is None else int(layer)
        self.name = name or type(module).__name__
        self.model_type = model_type or self.name
        self.model_hash = model_hash
        self.device = "cpu"

    # -- the declaration --------------------------------------------------------------------

    def input_size(self, block_shape) -> tuple[int, int]:
        """The block's size after resize and crop, before padding (micro_sam's ``input_size``)."""
        return self.preprocess.cropped_size(block_shape)

    def cell_grid(self, block_shape, grid_shape):
        """The exact grid of ``grid_shape`` cells on a block of ``block_shape`` pixels."""
        return self.preprocess.cell_grid(block_shape, self.patch_size, grid_shape)

    def describe(self) -> dict:
        """The declaration as JSON (recorded in the container; the reader derives the grid from it)."""
        return {"name": self.name, "preprocess": self.preprocess.describe(), "patch_size": list(self.patch_size),
                "mean": list(self.mean), "std": list(self.std), "pixel_range": self.pixel_range,
                "prefix_tokens": self.prefix_tokens, "layer": self.layer}

    # -- running ----------------------------------------------------------------------------

    def to(self, device) -> "Encoder":
        """Move the module to ``device`` (a torch device string)."""
        if hasattr(self.module, "to"):
            self.module = self.module.to(device)
        # eval() only where needed: MobileSAM's builder (and so micro_sam) calls it before loading the
        # weights, so TinyViT's cached attention biases keep their initial values; calling it again
        # would recompute them and move the features up to 2.4 standard deviations from micro_sam's.
        if getattr(self.module, "training", False):
            self.module.eval()
        self.device = device
        return self

    def prepare(self, block: np.ndarray) -> np.ndarray:
        """One block as the resized and cropped uint8 ``(h, w, 3)`` input (before normalization and pad)."""
        image = to_uint8(block)
        pre = self.preprocess
        size = pre.resized_size(image.shape[:2])
        if size != image.shape[:2]:
            from PIL import Image

            # torchvision's resize of a PIL image is Pillow's resize: the same call, the same pixels
            image = np.array(Image.fromarray(image).resize(size[::-1], getattr(Image.Resampling, pre.interpolation.upper())))
        if pre.crop is not None:
            start = pre.crop_start(block.shape[:2])
            before = pre.pad_before(block.shape[:2])
            start = tuple(s + b for s, b in zip(start, before))  # the crop's own corner
            out = np.zeros(tuple(pre.crop) + (3,), np.uint8)
            src = [slice(max(0, s), min(n, s + c)) for s, c, n in zip(start, pre.crop, size)]
            dst = [slice(a.start - s, a.stop - s) for a, s in zip(src, start)]
            out[dst[0], dst[1]] = image[src[0], src[1]]
            image = out
        return image

    def forward(self, images: list[np.ndarray]):
        """Features ``(B, C, gh, gw)`` (a torch tensor on the device) of prepared inputs of one size."""
        torch = require_torch()

        mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        pad = self.preprocess.pad or images[0].shape[:2]  # without a pad, the inputs are of one size
        # normalized straight into the zero-padded batch: no pad, cat or layout copies (they cost as
        # much as a small model's forward); the same float32 operations as SAM's Sam.preprocess
        x = torch.zeros((len(images), 3, *(max([p] + [im.shape[a] for im in images]) for a, p in enumerate(pad))),
                        dtype=torch.float32, device=self.device)
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            (top, left) = ((0, 0) if self.preprocess.pad_side == "end"
                           else (max(0, pad[0] - h) // 2, max(0, pad[1] - w) // 2))
            v = x[i, :, top:top + h, left:left + w]
            v.copy_(torch.as_tensor(image, device=self.device).permute(2, 0, 1))
            if self.pixel_range != 255:
                v.div_(255).mul_(self.pixel_range)
            v.sub_(mean).div_(std)
        out = self.module(x)
        return self._as_map(out, x.shape[-2:])

    def _as_map(self, out, input_size):
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 4:
            return out
        if out.ndim != 3:
            raise EmbedviewError(f"the encoder {self.name} returned features of shape {list(out.shape)}; expected "
                                 "(B, C, h, w) or tokens (B, N, C).")
        grid = tuple(m // p for m, p in zip(input_size, self.patch_size))
        tokens = out[:, self.prefix_tokens:]
        if tokens.shape[1] != grid[0] * grid[1]:
            raise EmbedviewError(
                f"the encoder {self.name} returned {out.shape[1]} tokens, but {self.prefix_tokens} prefix tokens "
                f"and a {grid[0]}×{grid[1]} grid of patch size {self.patch_size[0]} make "
                f"{self.prefix_tokens + grid[0] * grid[1]}; check patch_size and prefix_tokens.")
        return tokens.transpose(1, 2).reshape(out.shape[0], out.shape[2], *grid)


def _three(values, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in np.ravel(values))
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(np.isfinite(out)):
        raise EmbedviewError(f"{what} must be three finite numbers (R, G, B), got {values!r}.")
    return out
