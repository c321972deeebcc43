"""pytest: modules of an optional extra are doctested only where that extra is installed."""

import importlib.util


def _missing(*modules):
    return any(importlib.util.find_spec(m) is None for m in modules)


collect_ignore_glob = []
if _missing("napari", "magicgui"):
    collect_ignore_glob.append("src/embedview/napari/_*.py")
if _missing("dask", "distributed"):
    collect_ignore_glob.append("src/embedview/_dask.py")
if _missing("torch"):
    collect_ignore_glob.append("src/embedview/_torch.py")
