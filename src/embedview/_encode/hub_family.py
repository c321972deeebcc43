"""torch.hub entries (``hub:OWNER/REPO[:REF]:ENTRY``) from the hub cache only.

The repository must already be in torch.hub's cache (``torch.hub.get_dir()``, the folder
``OWNER_REPO_REF`` that ``torch.hub.load`` unpacks); it is loaded with ``source="local"``, and
while its entry runs, ``torch.hub.load_state_dict_from_url`` reads only files already in the
hub's ``checkpoints`` folder (``weights_only=True``) and refuses anything else, so nothing is
downloaded and nothing waits on a network (the Hugging Face Hub is offline meanwhile, for entries
that fetch from it). Entries embedview reads, by what they return:

- DINOv2-style backbones (``forward_features`` giving ``x_norm_patchtokens``, and
  ``get_intermediate_layers``; ``facebookresearch/dinov2:dinov2_vits14`` ...): DINOv2's evaluation
  transform (shorter side to 256, bicubic; centre crop 224; ImageNet mean and std); the patch
  tokens after the final norm; ``layer=N``: ``get_intermediate_layers(x, n=[N], reshape=True)``
  (block ``N``, with DINOv2's final norm, as DINOv2 returns it).
- RADIO (``NVlabs/RADIO:radio_model``; it conditions its input itself): pixels in ``[0, 1]``
  resized to the model's ``preferred_resolution``; its spatial features.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .._common.errors import EmbedviewError, arg
from .._inputs.vit_geometry import Preprocess
from .encoder import Encoder, require_torch
from .families import block_index, feature_module, offline

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def parse(spec: str) -> tuple[str, str, str | None, str]:
    """``(owner, repo, ref or None, entry)`` of ``OWNER/REPO[:REF]:ENTRY``."""
    parts = spec.split(":")
    owner, _, repo = parts[0].partition("/")
    if len(parts) not in (2, 3) or not owner or not repo or "/" in repo or not parts[-1]:
        raise EmbedviewError(f"{arg('model', 'hub:' + spec)} is not hub:OWNER/REPO:ENTRY (or OWNER/REPO:REF:ENTRY), "
                             "e.g. hub:facebookresearch/dinov2:dinov2_vits14.")
    return owner, repo, (parts[1] if len(parts) == 3 else None), parts[-1]


def repo_folder(owner: str, repo: str, ref: str | None) -> Path:
    """The cached repository's folder under ``torch.hub.get_dir()``, or the sentence saying it is absent."""
    import torch

    hub = Path(torch.hub.get_dir())
    if ref is not None:
        candidates = [hub / f"{owner}_{repo}_{ref.replace('/', '_')}"]
    else:
        found = sorted(hub.glob(f"{owner}_{repo}_*")) if hub.is_dir() else []
        candidates = sorted(found, key=lambda p: p.name.rsplit("_", 1)[-1] not in ("main", "master"))
    for folder in candidates:
        if (folder / "hubconf.py").is_file():
            return folder
    where = hub / f"{owner}_{repo}_{ref or 'main'}"
    raise EmbedviewError(f"{arg('model', f'hub:{owner}/{repo}')} is not in torch.hub's cache ({where} has no "
                         f"hubconf.py); embedview never downloads: fetch it once where there is a network "
                         f"(python -c \"import torch; torch.hub.load('{owner}/{repo}', '<entry>')\"), or set "
                         "TORCH_HOME to the folder that holds it.", param="model")


def hub_encoder(spec: str, *, layer=None, **kwargs) -> Encoder:
    """The torch.hub entry ``spec`` from the local cache, as an :class:`Encoder`."""
    torch = require_torch()
    owner, repo, ref, entry = parse(spec)
    folder = repo_folder(owner, repo, ref)
    try:
        with _cached_weights_only(), offline():  # an entry fetching from the Hugging Face Hub reads its cache only
            module = torch.hub.load(str(folder), entry, source="local", trust_repo=True, **kwargs)
    except EmbedviewError:
        raise
    except Exception as err:
        text = " ".join(str(err).split())[:200]
        raise EmbedviewError(f"torch.hub could not load {entry} from {folder} ({type(err).__name__}: {text}); "
                             f"check the entry's name in {folder / 'hubconf.py'}.", param="model") from None
    return hub_module_encoder(module, name=f"hub:{spec}", layer=layer)


def hub_module_encoder(module, *, name: str, layer=None) -> Encoder:
    """An :class:`Encoder` for what a hub entry returned (DINOv2-style or RADIO)."""
    if hasattr(module, "get_intermediate_layers") and hasattr(module, "forward_features"):
        n_blocks = int(getattr(module, "n_blocks", 0) or len(getattr(module, "blocks", ())))
        index = block_index(layer, n_blocks, name)
        return Encoder(_dinov2_features(module, index), patch_size=int(module.patch_size),
                       preprocess=Preprocess("shortest:256", crop=224, interpolation="bicubic"),
                       mean=IMAGENET[0], std=IMAGENET[1], layer=index, name=name, model_type=name)
    if hasattr(module, "input_conditioner") and hasattr(module, "preferred_resolution"):
        if layer is not None:
            raise EmbedviewError(f"{arg('layer', layer)}: embedview reads only the final features of RADIO ({name}).")
        size = tuple(int(v) for v in module.preferred_resolution)
        return Encoder(_radio_features(module), patch_size=int(module.patch_size), preprocess=Preprocess(size),
                       mean=(0, 0, 0), std=(1, 1, 1), name=name, model_type=name)
    raise EmbedviewError(f"{name} returned a {type(module).__name__}, which is neither a DINOv2-style backbone nor "
                         "RADIO; wrap it in an embedview.Encoder from Python, declaring its preprocessing.",
                         param="model")


@contextlib.contextmanager
def _cached_weights_only():
    """``torch.hub.load_state_dict_from_url`` limited to the hub's checkpoints folder, ``weights_only=True``."""
    import torch

    original = torch.hub.load_state_dict_from_url

    def cached(url, model_dir=None, map_location=None, progress=True, check_hash=False, file_name=None, **_):
        folder = Path(model_dir or os.path.join(torch.hub.get_dir(), "checkpoints"))
        path = folder / (file_name or os.path.basename(url.split("?")[0]))
        if not path.is_file():
            raise EmbedviewError(f"the weights {path.name} are not in torch.hub's checkpoints ({path}); embedview "
                                 f"never downloads: fetch them once where there is a network ({url}).", param="model")
        return torch.load(path, map_location=map_location, weights_only=True)

    def download(url, dst, *args, **kwargs):
        raise EmbedviewError(f"the hub entry downloads {url}; embedview never downloads: fetch it once where there is "
                             f"a network (to {dst}).", param="model")

    saved = torch.hub.download_url_to_file
    torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = cached, download
    try:
        yield
    finally:
        torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = original, saved


def _dinov2_features(model, index):
    def forward(model, x):
        if index is None:
            return model.forward_features(x)["x_norm_patchtokens"]
        return model.get_intermediate_layers(x, n=[index], reshape=True)[0]

    return feature_module(model, forward)


def _radio_features(model):
    def forward(model, x):
        out = model(x)
        return out[1] if isinstance(out, (tuple, list)) else out.features

    return feature_module(model, forward)
