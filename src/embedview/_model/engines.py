"""Engines: where the heavy arithmetic (scatter accumulation, projection, upsampling) runs.

The pipeline asks an engine for an accumulator, projections and upsampled pixels, nothing else
(:class:`Engine`, the protocol both engines implement), so the numpy path and the PyTorch path
(``device="cuda"``) share every other stage: sources, colour ranges, placement and output.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .._common.errors import EmbedviewError
from .fit import Accumulator, Basis


@runtime_checkable
class Engine(Protocol):
    """What the pipeline asks of an engine (:class:`NumpyEngine`, :class:`~embedview._model.torch_engine.TorchEngine`).

    Attributes
    ----------
    name : str
        The device, as the user named it (``"cpu"``, ``"cuda:1"``, ``"torch:cpu"``).
    """

    name: str

    def accumulator(self, n_channels: int, expected_cells: int | None = None):
        """A streaming accumulator of ``n_channels`` features (an :class:`~embedview._model.fit.Accumulator`:
        ``add``, ``merge``, ``basis``; ``shift`` and ``bar`` settable)."""

    def project(self, basis: Basis, features: np.ndarray) -> np.ndarray:
        """``(C, ...)`` features to float32 ``(k, ...)`` components, as :meth:`Basis.project`."""

    def upsample(self, cells: np.ndarray, rows: np.ndarray, cols: np.ndarray, valid, method: str,
                 **options) -> np.ndarray:
        """Projected cells sampled at output pixels: float32 ``(ny, nx, k)``
        (:func:`embedview._model.upsample.upsample_cells`)."""


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
