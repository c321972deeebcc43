"""Engines: where the heavy arithmetic (scatter accumulation, projection) runs.

The pipeline asks an engine for an accumulator and for projections, nothing else, so the
numpy path and the PyTorch path (``device="cuda"``) share every other stage: sources,
colour ranges, placement and output.
"""

from __future__ import annotations

import numpy as np

from .._common.errors import EmbedviewError
from .fit import Accumulator, Basis


class NumpyEngine:
    """The default engine: numpy on the CPU.

    Examples
    --------
    >>> engine = engine_for("cpu")
    >>> engine.name
    'cpu'
    """

    name = "cpu"

    def accumulator(self, n_channels: int, expected_cells: int | None = None) -> Accumulator:
        return Accumulator(n_channels, expected_cells=expected_cells)

    def project(self, basis: Basis, features: np.ndarray) -> np.ndarray:
        return basis.project(features)

    def upsample(self, cells, rows, cols, valid, method, **options) -> np.ndarray:
        """Sample projected cells at output pixels (:func:`embedview._model.upsample.upsample_cells`)."""
        from .upsample import upsample_cells

        return upsample_cells(cells, rows, cols, valid, method, **options)


def engine_for(device: str | None):
    """The engine for ``device``: ``"cpu"`` (numpy, the default), or a PyTorch device.

    PyTorch devices: ``"cuda"``, ``"cuda:1"``, ``"mps"``, or ``"torch:cpu"`` (PyTorch on the
    CPU, mostly to check the PyTorch path against numpy).

    Examples
    --------
    >>> engine_for(None).name
    'cpu'
    """
    if device is None or device == "cpu":
        return NumpyEngine()
    if not isinstance(device, str):
        raise EmbedviewError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}.")
    name = device.removeprefix("torch:")
    if not (name == "cpu" and device.startswith("torch:")) and name.split(":")[0] not in ("cuda", "mps"):
        raise EmbedviewError(
            f"unknown device {device!r}; use 'cpu' (numpy), 'cuda', 'cuda:N', 'mps' or 'torch:cpu'.")
    from .torch_engine import TorchEngine

    return TorchEngine(name)
