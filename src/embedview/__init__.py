"""embedview: see what an image encoder sees.

PCA pictures of SAM, micro_sam and ViT embeddings, placed exactly over the image.

Examples
--------
>>> import numpy as np, embedview
>>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
>>> embedview.visualize(features, original_size=(600, 900)).rgb.shape
(43, 64, 3)
"""

from importlib import import_module

from ._common.version import __version__

# Public names and the private module holding each. Imported on first use, so that
# `import embedview` (and so `embedview --help`) stays instant.
_EXPORTS = {
    "visualize": "_run.visualize",
    "PCA": "_run.estimator",
    "cluster": "_run.estimator",
    "Execution": "_run.settings",
    "Draw": "_run.settings",
    "Output": "_run.settings",
    "render_plane": "_run.visualize",
    "Visualization": "_outputs.visualization",
    "Basis": "_model.fit",
    "EmbedviewError": "_common.errors",
    "open_source": "_inputs.sources",
    "write_output": "_outputs.io",
    "read_image": "_outputs.io",
    "similarity": "_run.similarity",
    "from_tokens": "_inputs.vit_arrays",
    "from_feature_map": "_inputs.vit_arrays",
    "open_features": "_inputs.vit_files",
    "Preprocess": "_inputs.vit_geometry",
    "describe": "_workflows.info",
    "format_info": "_workflows.info",
    "figure": "_workflows.figure",
    "movie": "_workflows.movie",
    "montage": "_workflows.montage",
    "Upsample": "_outputs.guide",
    "ZarrOutput": "_outputs.sinks",
    "Encoder": "_encode.encoder",
    "encode": "_encode.run",
}
# Importable for experts, not advertised: the internals, and the functions that came before the
# estimator (deprecated since 0.2, removed in 0.3: each call warns).
_EXPERT = {
    "Source": "_inputs.source_base",
    "Piece": "_inputs.source_base",
    "OutputGrid": "_common.geometry",
    "CellGrid": "_common.geometry",
    "Tiling": "_common.geometry",
    "fit_basis": "_run.joint",
    "visualize_many": "_run.joint",
    "save_basis": "_run.joint",
    "load_basis": "_run.joint",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS or name in _EXPERT:
        value = getattr(import_module(f".{_EXPORTS.get(name) or _EXPERT[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embedview' has no attribute {name!r}")


def __dir__():
    return __all__
