"""timm models by name (``timm:NAME``), with the preprocessing of their own pretrained configuration.

The input rule, per model (from ``timm.data.resolve_data_config``, i.e. ``model.pretrained_cfg``):

- ViTs, EVA-02, SigLIP, DINOv2 and register variants: timm's evaluation transform, exactly —
  ``crop_mode="center"``: the shorter side resized to ``floor(size / crop_pct)`` (Pillow, the
  configuration's interpolation), then a centre crop of the configured input size; ``"squash"``:
  both sides resized to ``floor(size / crop_pct)``, then the centre crop. The mean and std are
  the configuration's, on pixels in ``[0, 1]``.
- ``samvit_*`` (SAM's image encoder in timm): SAM's own rule (longest side to the input size,
  rounded; bottom/right zero padding), as SAM was trained, with the configuration's mean and std.

Patch size from ``model.patch_embed.patch_size``, prefix tokens (class and registers) from
``model.num_prefix_tokens``. Models that take ``dynamic_img_size`` are built with it, so a
``preprocess=`` given in Python (a larger input, any multiple of the patch) runs unchanged.
Features: ``forward_features`` (after the final norm); ``layer=N``: block ``N``'s output from
``forward_intermediates(indices=[N], intermediates_only=True)`` (before the final norm).

Weights: ``checkpoint`` (safetensors, or a state dict read with ``weights_only=True``), else the
pretrained weights from the Hugging Face cache (or torch.hub's, for the few timm models with a
URL), loaded offline; embedview never downloads.
"""

from __future__ import annotations

import math
import os

from .._common.errors import EmbedviewError, arg
from .._inputs.vit_geometry import INTERPOLATIONS, Preprocess
from .encoder import Encoder, require_torch
from .families import block_index, feature_module, hf_cache, load_into, load_weights, need, offline


def timm_encoder(name: str, *, checkpoint=None, pretrained: bool = True, layer=None, preprocess=None,
                 **model_kwargs) -> Encoder:
    """The timm model ``name`` as an :class:`Encoder` with its declared preprocessing.

    Parameters
    ----------
    name : str
        timm's name, with or without a pretrained tag (``"vit_small_patch14_dinov2.lvd142m"``).
    checkpoint : path, optional
        The weights (else timm's pretrained weights from the local cache, where ``pretrained``).
    pretrained : bool
        False: random weights (tests; nothing is read).
    layer : int, optional
        A block's output instead of the final features (negative from the end).
    preprocess : Preprocess, optional
        Replaces the configuration's input rule (models with ``dynamic_img_size``).
    **model_kwargs
        Passed to ``timm.create_model`` (e.g. a small ``depth`` for tests).
    """
    require_torch()
    timm = need("timm", "timm")
    arch, _ = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        raise EmbedviewError(f"{arg('model', 'timm:' + name)} is not a model timm knows; list its names with "
                             f"python -c \"import timm; print(timm.list_models('vit_*', pretrained=True))\".")
    load = pretrained and checkpoint is None
    if load:
        _check_cached(timm, name)
    model = _create(timm, name, load, model_kwargs)
    if not (hasattr(model, "blocks") and hasattr(model, "patch_embed") and hasattr(model, "forward_intermediates")):
        raise EmbedviewError(f"{arg('model', 'timm:' + name)} ({type(model).__name__}) is not a ViT on one patch grid "
                             "(patch_embed, blocks); embedview encodes with timm's ViTs (ViT, DINOv2, SigLIP, EVA-02, "
                             "samvit), other models through an embedview.Encoder from Python.", param="model")
    if checkpoint is not None:
        load_into(model, load_weights(checkpoint, f"timm's {name}"), checkpoint, f"timm's {name}")
    n_blocks = len(getattr(model, "blocks", ()) or ())
    index = block_index(layer, n_blocks, f"timm's {name}")
    patch = tuple(int(p) for p in model.patch_embed.patch_size)
    cfg = timm.data.resolve_data_config({}, model=model)
    declared = preprocess if preprocess is not None else input_rule(cfg, sam=type(model).__name__ == "VisionTransformerSAM")
    return Encoder(_features(model, index), patch_size=patch, preprocess=declared, mean=cfg["mean"], std=cfg["std"],
                   prefix_tokens=int(getattr(model, "num_prefix_tokens", 0)) if index is None else 0,
                   layer=index, name=f"timm:{name}", model_type=f"timm:{arch}")


def input_rule(cfg: dict, sam: bool = False) -> Preprocess:
    """timm's evaluation transform for ``cfg`` (``resolve_data_config``) as a :class:`Preprocess`."""
    size = tuple(int(v) for v in cfg["input_size"][1:])
    interpolation = cfg.get("interpolation") or "bilinear"
    if interpolation not in INTERPOLATIONS:
        interpolation = "bicubic" if interpolation == "random" else "bilinear"
    if sam:
        return Preprocess(max(size), resize_mode="longest", rounding="nearest", pad=size, pad_side="end",
                          interpolation="bilinear")
    crop_pct = cfg.get("crop_pct") or 0.875
    mode = cfg.get("crop_mode") or "center"
    scale = tuple(math.floor(s / crop_pct) for s in size)
    if mode == "squash":
        return Preprocess(scale, crop=size, interpolation=interpolation)
    if mode == "center" and scale[0] == scale[1]:
        return Preprocess(scale[0], resize_mode="shortest", crop=size, interpolation=interpolation)
    raise EmbedviewError(f"timm's crop_mode {mode!r} with input {list(size)} has no exact declaration in embedview; "
                         "pass preprocess=Preprocess(...) from Python.")


def _create(timm, name, pretrained, kwargs):
    import warnings

    for extra in ({"dynamic_img_size": True}, {}):
        try:
            with offline(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return timm.create_model(name, pretrained=pretrained, **extra, **kwargs)
        except TypeError as err:  # this architecture takes no dynamic_img_size
            if extra and "dynamic_img_size" in str(err):
                continue
            raise EmbedviewError(f"timm could not build {name} ({err}).") from None
        except EmbedviewError:
            raise
        except Exception as err:
            text = " ".join(str(err).split())[:200]
            raise EmbedviewError(f"timm could not load {name} offline ({type(err).__name__}: {text}); embedview looks "
                                 f"for weights in the Hugging Face cache ({hf_cache()}) and never downloads, so fetch "
                                 f"them once where there is a network or pass {arg('checkpoint', form='FILE')}.",
                                 param="model") from None


def _check_cached(timm, name) -> None:
    """Refuse before building when the pretrained weights are in no local cache."""
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None:
        raise EmbedviewError(f"timm has no pretrained weights for {name}; name a pretrained tag "
                             f"(timm.list_pretrained('{name.split('.')[0]}*')) or pass {arg('checkpoint', form='FILE')}.",
                             param="model")
    hub_id = getattr(cfg, "hf_hub_id", None)
    places = []
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = hub_id.split("@")[0]
        for file in ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors",
                     "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, file, cache_dir=str(hf_cache())), str):
                return
        places.append(f"the Hugging Face cache ({hf_cache() / ('models--' + repo.replace('/', '--'))})")
    url = getattr(cfg, "url", None)
    if url:
        import torch

        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url.split("?")[0]))
        if os.path.isfile(path):
            return
        places.append(f"torch.hub's checkpoints ({path})")
    where = " and ".join(places) or f"the Hugging Face cache ({hf_cache()})"
    raise EmbedviewError(f"no weights for timm's {name} in {where}; embedview never downloads: fetch them once "
                         f"where there is a network (python -c \"import timm; timm.create_model('{name}', "
                         f"pretrained=True)\") or pass {arg('checkpoint', form='FILE')}.", param="model")


def _features(model, index):
    """A module returning ``forward_features`` (tokens or a map), or block ``index``'s map."""
    def forward(model, x):
        if index is None:
            return model.forward_features(x)
        return model.forward_intermediates(x, indices=[index], intermediates_only=True)[0]

    return feature_module(model, forward)
