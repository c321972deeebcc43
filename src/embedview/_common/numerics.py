"""Exact scaling by powers of two: the one rule that keeps features inside float32's range."""

from __future__ import annotations

import numpy as np


def power_of_two(magnitude: float) -> float:
    """``2**-e`` bringing a finite ``magnitude > 0`` into ``[0.5, 1)`` (1 for 0); multiplying by it is exact.

    Used for float32 pieces whose squares overflow or underflow (:func:`embedview._model.fit.rescale`)
    and for float64 features before their cast to float32
    (:attr:`embedview._inputs.source_base.Source.feature_scale`).

    Examples
    --------
    >>> power_of_two(3.0), power_of_two(0.0), 0.5 <= power_of_two(1e-300) * 1e-300 < 1
    (0.25, 1.0, True)
    """
    return float(2.0 ** -np.frexp(magnitude)[1]) if magnitude > 0 else 1.0
