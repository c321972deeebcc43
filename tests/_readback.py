"""Reading embedview's outputs back, for the tests (the package itself never reads them whole)."""

import numpy as np


def read_ome_zarr(path, level: int = 0) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read back an embedview OME-Zarr picture: ``rgb`` ``(..., y, x, 3)``, ``components``
    ``(..., y, x, k)`` (``None`` for levels above 0) and the root attributes.

    Loads the whole level.
    """
    import zarr

    root = zarr.open_group(str(path), mode="r")
    rgb = np.moveaxis(root[str(level)][...], 0, -1)
    components = np.moveaxis(root["components"][...], 0, -1) if level == 0 else None
    return rgb, components, dict(root.attrs)
