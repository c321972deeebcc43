"""What the encoder families beyond SAM share: names, extras, layer indices, offline loading, weights files.

A model name is ``FAMILY:NAME``: ``timm:NAME`` (:mod:`.timm_family`), ``hf:ORG/NAME``
(:mod:`.hf_family`), ``hub:OWNER/REPO:ENTRY`` (:mod:`.hub_family`); a name without a prefix is
micro_sam's (:mod:`.sam`). No family ever downloads: weights come from the libraries' local
caches (loaded with the libraries' offline switches set, so nothing waits on a network) or from
``checkpoint``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .._common.errors import EmbedviewError, arg

#: family prefix -> (the extra to install, the form of a name)
FAMILIES = {"timm": ("timm", "timm:NAME"), "hf": ("transformers", "hf:ORG/NAME"),
            "hub": ("encode", "hub:OWNER/REPO:ENTRY")}


def split_name(model: str) -> tuple[str | None, str]:
    """``(family, rest)`` of ``"timm:NAME"`` etc.; ``(None, model)`` for micro_sam's names."""
    family, sep, rest = model.partition(":")
    if sep and family in FAMILIES:
        if not rest.strip():
            raise EmbedviewError(f"{arg('model', model)} names no model after '{family}:'; write "
                                 f"{FAMILIES[family][1]}.")
        return family, rest.strip()
    return None, model


def families_text() -> str:
    return ", ".join(form for _, form in FAMILIES.values())


def need(module: str, family: str):
    """Import ``module`` or fail naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = FAMILIES[family][0]
        raise EmbedviewError(f"{FAMILIES[family][1]} models need {module.split('.')[0]}, which is not installed ({err}); "
                             f"install the extra: pip install 'embedview[{extra}]'.") from None


def block_index(layer, n_blocks: int, what: str) -> int | None:
    """``layer`` as a block index in ``[0, n_blocks)`` (negative ones count from the end, as in Python)."""
    if layer is None:
        return None
    if isinstance(layer, bool) or not isinstance(layer, int) and not (isinstance(layer, str) and
                                                                        layer.lstrip("-").isdigit()):
        raise EmbedviewError(f"{arg('layer', layer)} is not a whole number (a block index, negative from the end).")
    index = int(layer)
    if not -n_blocks <= index < n_blocks:
        raise EmbedviewError(f"{arg('layer', layer)} is out of range: {what} has {n_blocks} blocks, so the layer is "
                             f"one of {-n_blocks}…{n_blocks - 1}.")
    return index % n_blocks


@contextlib.contextmanager
def offline():
    """Hugging Face Hub and transformers offline while a model loads (a missing file fails at once)."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    patched = []
    try:  # huggingface_hub reads the variable at import; its constant is what its calls consult
        from huggingface_hub import constants

        patched.append((constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE))
        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass
    try:
        yield
    finally:
        for obj, key, value in patched:
            setattr(obj, key, value)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def hf_cache() -> Path:
    """The Hugging Face Hub's cache folder (``HF_HUB_CACHE``, ``HF_HOME``/hub, ``~/.cache/huggingface/hub``)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        return Path(os.path.expanduser(os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")))


def load_weights(path, what: str) -> dict:
    """A state dict from a ``.safetensors`` file or a torch file loaded with ``weights_only=True``."""
    from .encoder import require_torch

    torch = require_torch()
    path = Path(path)
    if not path.is_file():
        raise EmbedviewError(f"the checkpoint {path} does not exist or is not a file; pass the weights of {what} "
                             "(.safetensors, .pt, .pth).", param="checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = " ".join(str(err).split())[:160]
        raise EmbedviewError(f"{path} could not be loaded as weights ({type(err).__name__}: {text}); pass a "
                             "safetensors file or a state dict saved with torch.save.", param="checkpoint") from None
    for key in ("state_dict", "model", "model_state"):  # training scripts' wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise EmbedviewError(f"{path} holds a {type(state).__name__}, not a state dict of weights; pass the weights "
                             f"of {what}.", param="checkpoint")
    return state


def load_into(module, state: dict, path, what: str) -> None:
    """Load ``state`` into ``module`` strictly, or say which weights do not fit."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise EmbedviewError(f"the weights in {path} do not fit {what} ({first[:200]}); pass a checkpoint of "
                             f"{what}.", param="checkpoint") from None



def feature_module(model, forward):
    """``model`` as a torch module (in eval mode) whose output is ``forward(model, x)``: the one
    wrapper through which every family hands its features to the :class:`~.encoder.Encoder`."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return forward(self.model, x)

    return Features().eval()
