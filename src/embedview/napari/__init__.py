"""napari plugin (npe2): a reader for micro_sam embedding files and the "Embedding PCA" widget.

Declared in ``napari.yaml``; napari imports ``_reader`` and ``_widget`` only when it needs them,
so importing this package imports neither napari nor Qt.

Examples
--------
>>> from embedview.napari import is_micro_sam_container
>>> is_micro_sam_container("no/such/file.zarr")
False
"""

from ._detect import is_micro_sam_container

__all__ = ["is_micro_sam_container"]
