"""A model as the user names it (or an :class:`~.encoder.Encoder`) to an encoder on a device."""

from __future__ import annotations

from .._common.errors import EmbedviewError, api_only, arg
from .encoder import Encoder, require_torch
from .families import FAMILIES, split_name

DEVICES = ("cpu", "cuda", "mps")


def resolve_encoder(model, checkpoint=None, device=None, layer=None) -> Encoder:
    """The encoder for ``model`` (a name, or an :class:`Encoder`) on ``device`` (default: cuda, mps, else cpu);
    ``layer``: a block's features instead of the final ones (:mod:`.families`)."""
    if isinstance(model, Encoder):
        if layer is not None:
            raise EmbedviewError(f"{arg('layer', layer)} is for a model given by name; an Encoder returns the features "
                                 "of its own layer.")
        if checkpoint is not None:
            raise EmbedviewError(f"{arg('checkpoint')} is for a model given by name; an Encoder brings its own weights.")
        encoder = model
    elif isinstance(model, str) and model.partition(":")[0] in FAMILIES:
        device = pick_device(device)
        encoder = family_encoder(model, checkpoint, layer)
    elif isinstance(model, str):
        from . import sam

        if not (sam.is_sam_name(model) or (checkpoint is not None and model[:5] in sam.ARCHITECTURES)):
            raise EmbedviewError(sam.unknown_model_message(model))
        device = pick_device(device)  # before the weights are read
        encoder = sam.sam_encoder(model, checkpoint)
        if layer is not None:
            from .layers import sam_block

            encoder = sam_block(encoder, layer)
    elif model is None:
        raise EmbedviewError(f"pass the model to encode with: {arg('model', form='NAME')} such as vit_t or vit_b_lm"
                             f"{api_only(', or an embedview.Encoder')}.")
    else:
        raise EmbedviewError(f"model must be a name or an embedview.Encoder, got a {type(model).__name__}.", param="model")
    return encoder.to(pick_device(device))


def pick_device(device=None) -> str:
    """``device`` checked (cpu, cuda, cuda:N, mps), or the best one present."""
    torch = require_torch()
    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in DEVICES or (index and not (kind == "cuda" and index.isdigit())):
        raise EmbedviewError(f"{arg('device', text)} is not cpu, cuda, cuda:N or mps.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise EmbedviewError(f"{arg('device', text)} was asked for, but PyTorch sees no CUDA GPU here; pass "
                             f"{arg('device', 'cpu')}.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EmbedviewError(f"{arg('device', text)} was asked for, but PyTorch sees no Apple GPU here; pass "
                             f"{arg('device', 'cpu')}.")
    return text


def family_encoder(model: str, checkpoint=None, layer=None):
    """The encoder a ``FAMILY:NAME`` names (weights from ``checkpoint`` or the family's local cache)."""
    family, rest = split_name(model)
    if family == "timm":
        from .timm_family import timm_encoder

        return timm_encoder(rest, checkpoint=checkpoint, layer=layer)
    if checkpoint is not None:
        raise EmbedviewError(f"{arg('checkpoint')} is for SAM-family and timm models; {FAMILIES[family][1]} models load their "
                             "weights from their own cache folder.")
    if family == "hf":
        from .hf_family import hf_encoder

        return hf_encoder(rest, layer=layer)
    from .hub_family import hub_encoder

    return hub_encoder(rest, layer=layer)


def layout_attributes(encoder, n_slices, tiled: bool, n_channels: int) -> dict:
    """Root attributes beyond micro_sam's SAM ones: the ``layer`` (None: the final features) for every
    encoder, and micro_sam's vision-foundation-model fields (``vfm_mode``, ``patch_size``,
    ``embed_dim``) for every encoder that is not a SAM-family image encoder's final output."""
    from .sam import ARCHITECTURES

    attrs = {"layer": encoder.layer}
    if encoder.model_type not in ARCHITECTURES:
        p = encoder.patch_size
        attrs.update({"vfm_mode": ("tiled-" if tiled else "") + ("2d" if n_slices is None else "3d"),
                      "patch_size": p[0] if p[0] == p[1] else list(p), "embed_dim": int(n_channels)})
    return attrs
