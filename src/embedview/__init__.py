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

__version__ = "0.1.0"

# Public names and the private module holding each. Imported on first use, so that
# `import embedview` (and so `embedview --help`) stays instant.
_EXPORTS = {
    "visualize": "_visualize",
    "PCA": "_estimator",
    "cluster": "_estimator",
    "Execution": "_pipeline",
    "render_plane": "_visualize",
    "Visualization": "_visualization",
    "Basis": "_fit",
    "EmbedviewError": "_errors",
    "open_source": "_sources",
    "Source": "_source_base",
    "Piece": "_source_base",
    "OutputGrid": "_geometry",
    "CellGrid": "_geometry",
    "Tiling": "_geometry",
    "write_output": "_io",
    "read_image": "_io",
    "fit_basis": "_joint",
    "visualize_many": "_joint",
    "save_basis": "_basis_file",
    "load_basis": "_basis_file",
    "similarity": "_similarity",
    "from_tokens": "_vit_arrays",
    "from_feature_map": "_vit_arrays",
    "open_features": "_vit_files",
    "Preprocess": "_vit_geometry",
    "describe": "_info",
    "format_info": "_info",
    "figure": "_figure",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embedview' has no attribute {name!r}")


def __dir__():
    return __all__
