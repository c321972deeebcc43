"""Hugging Face ``transformers`` vision models (``hf:ORG/NAME``) from the local cache, with their own image processor.

The model and its image processor are loaded with ``local_files_only=True`` (and the Hub offline),
so a model missing from the cache fails at once, naming the cache folder. The declaration comes
from the processor's configuration: ``size`` (``shortest_edge`` → the shorter side, floored as
``transformers`` computes it; ``height``/``width`` → exactly that; ``longest_edge`` → the longer
side), ``resample``, ``crop_size`` with ``do_center_crop`` (the centre crop as torchvision's, which
the default, torchvision-based processors of transformers ≥ 5 run), ``image_mean``/``image_std``
and ``do_rescale`` (pixels in ``[0, 1]``). Patch size from ``config.patch_size``; prefix tokens
from the embeddings' class and register tokens (DINOv2: 1; DINOv2 with registers and DINOv3:
1 + registers; SigLIP/SigLIP2: 0). Features: ``last_hidden_state`` (after the final norm);
``layer=N``: block ``N``'s output, ``hidden_states[N + 1]`` (``hidden_states[0]`` is the patch
embedding), so a layer means the same block as in timm. SigLIP2's NaFlex models (variable
patches) are refused: their input is no image grid.
"""

from __future__ import annotations

from .._common.errors import EmbedviewError, arg
from .._inputs.vit_geometry import Preprocess
from .encoder import Encoder, require_torch
from .families import block_index, feature_module, hf_cache, need, offline

#: Pillow's resampling filters by number (what processors store)
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def hf_encoder(name: str, *, layer=None) -> Encoder:
    """The ``transformers`` vision model ``name`` (a Hub id in the local cache, or a saved folder)."""
    require_torch()
    transformers = need("transformers", "hf")
    import os

    folder = name if os.path.isdir(name) else hf_cache() / ("models--" + name.replace("/", "--"))
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        with offline():
            model = transformers.AutoModel.from_pretrained(name, local_files_only=True)
            processor = transformers.AutoImageProcessor.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        if not os.path.isdir(folder):
            raise EmbedviewError(f"{arg('model', 'hf:' + name)} is not in the local Hugging Face cache ({folder}); "
                                 f"embedview never downloads: fetch it once where there is a network (hf download "
                                 f"{name}), or set HF_HUB_CACHE to the cache that holds it.", param="model") from None
        text = " ".join(str(err).split())[:160]
        raise EmbedviewError(f"{arg('model', 'hf:' + name)} could not be loaded from {folder} ({text}); fetch it "
                             f"again where there is a network (hf download {name}).", param="model") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return hf_model_encoder(model, processor, name=name, layer=layer)


def hf_model_encoder(model, processor, *, name: str | None = None, layer=None) -> Encoder:
    """An :class:`Encoder` from a loaded ``transformers`` vision model and its image processor."""
    vision = getattr(model, "vision_model", model)  # CLIP/SigLIP: the image tower
    config = vision.config
    kind = getattr(config, "model_type", "")
    name = name or getattr(model, "name_or_path", "") or type(model).__name__
    if kind.startswith("siglip2"):
        raise EmbedviewError(f"{arg('model', 'hf:' + name)} is a SigLIP2 NaFlex model, whose input is variable "
                             "patches, not an image grid; take a fixed-resolution SigLIP2 (google/siglip2-base-patch16-224).")
    if getattr(config, "patch_size", None) is None:
        raise EmbedviewError(f"{arg('model', 'hf:' + name)} ({type(model).__name__}) declares no patch_size; "
                             "embedview encodes with ViT-style vision models (DINOv2, DINOv3, SigLIP, ViT).")
    embeddings = getattr(vision, "embeddings", None)
    prefix = int(getattr(embeddings, "cls_token", None) is not None)
    registers = getattr(embeddings, "register_tokens", None)
    prefix += 0 if registers is None else int(registers.shape[1])
    n_blocks = int(getattr(config, "num_hidden_layers", 0))
    index = block_index(layer, n_blocks, f"hf:{name}")
    declared, mean, std, pixel_range = processor_rule(processor)
    return Encoder(_features(vision, index), patch_size=config.patch_size, preprocess=declared, mean=mean, std=std,
                   pixel_range=pixel_range, prefix_tokens=prefix, layer=index, name=f"hf:{name}",
                   model_type=f"hf:{kind or type(model).__name__}")


def _get(obj, key):
    value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return value


def processor_rule(processor):
    """``(Preprocess, mean, std, pixel_range)`` of a ``transformers`` image processor."""
    resample = getattr(processor, "resample", 2)
    interpolation = RESAMPLE.get(int(getattr(resample, "value", resample)), "bilinear") if resample is not None else "bilinear"
    size = getattr(processor, "size", None) if getattr(processor, "do_resize", True) else None
    if not size:
        resize = None
    elif _get(size, "shortest_edge"):
        resize = f"shortest:{int(_get(size, 'shortest_edge'))}"
    elif _get(size, "height") and _get(size, "width"):
        resize = (int(_get(size, "height")), int(_get(size, "width")))
    elif _get(size, "longest_edge"):
        resize = f"longest:{int(_get(size, 'longest_edge'))}"
    else:
        raise EmbedviewError(f"the image processor's size {dict(size) if isinstance(size, dict) else size!r} has no "
                             "rule embedview knows (shortest_edge, height and width, or longest_edge).")
    crop = None
    crop_size = getattr(processor, "crop_size", None)
    if getattr(processor, "do_center_crop", False) and crop_size:
        crop = (int(_get(crop_size, "height")), int(_get(crop_size, "width")))
    if getattr(processor, "do_normalize", True):
        mean, std = processor.image_mean, processor.image_std
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = getattr(processor, "do_rescale", True)
    factor = float(getattr(processor, "rescale_factor", 1 / 255)) if rescale else 1.0
    if rescale and abs(factor * 255 - 1) > 1e-6:
        raise EmbedviewError(f"the image processor rescales by {factor}, not 1/255; embedview declares pixels in "
                             "[0, 1] or [0, 255] only.")
    return Preprocess(resize, crop=crop, interpolation=interpolation), mean, std, (1.0 if rescale else 255.0)


def _features(vision, index):
    """A module returning the patch tokens (with prefix) of the final norm, or of block ``index``."""
    def forward(model, x):
        out = model(pixel_values=x, output_hidden_states=index is not None)
        return out.last_hidden_state if index is None else out.hidden_states[index + 1]

    return feature_module(vision, forward)
