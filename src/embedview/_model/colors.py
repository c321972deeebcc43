"""Colour ranges: which component values map to 0 and 255."""

from __future__ import annotations

import numpy as np

from .._common.errors import EmbedviewError

NORMALIZE_MODES = ("robust", "channel", "global")
ROBUST_PERCENTILES = (1.0, 99.0)


def colour_ranges(values: np.ndarray, normalize: str, reference: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(lo, hi)`` for ``(n, k)`` component values of the fitted cells.

    ``robust`` takes the 1st and 99th percentile of each channel, so a few extreme cells
    (the high-norm tokens of ViTs) cannot squeeze the rest into one colour; ``channel`` the
    per-channel min and max; ``global`` one min and max over all channels (micro_sam's).
    A channel whose range is negligible against ``reference`` (the features' own scale) is
    drawn mid-grey.

    Examples
    --------
    >>> lo, hi = colour_ranges(np.array([[0.0, 1.0], [10.0, 3.0]]), "channel")
    >>> lo.tolist(), hi.tolist()
    ([0.0, 1.0], [10.0, 3.0])
    """
    if normalize not in NORMALIZE_MODES:
        raise EmbedviewError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}; got {normalize!r}.")
    values = values[np.isfinite(values).all(axis=1)]
    k = values.shape[1]
    if values.shape[0] == 0:
        return np.zeros(k), np.zeros(k)
    if normalize == "robust":
        lo, hi = np.percentile(values, ROBUST_PERCENTILES, axis=0)
    elif normalize == "channel":
        lo, hi = values.min(axis=0), values.max(axis=0)
    else:
        lo, hi = np.full(k, values.min()), np.full(k, values.max())
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    # relative to the features' scale only (no absolute floor): tiny but meaningful data keeps its colours
    flat = (hi - lo) <= 1e-5 * max(reference, np.finfo(np.float64).tiny)
    return np.where(flat, 0.0, lo), np.where(flat, 0.0, hi)


def to_uint8(components: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Map ``(..., k)`` components to uint8: ``lo`` → 0, ``hi`` → 255, clipped; NaN → 0 (black).

    Channels with ``lo == hi`` are drawn as mid-grey (128).
    """
    lo = np.asarray(lo, np.float32)
    span = np.asarray(hi, np.float32) - lo
    flat = span <= 0
    gain = np.where(flat, 0, 255 / np.where(flat, 1, span)).astype(np.float32)
    # + 5e-4: float32 rounding must not turn the top of the range (255.0) into 254.9999 → 254.
    scaled = (components - lo) * gain + np.where(flat, 128, 5e-4).astype(np.float32)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(scaled, 0, 255, out=scaled)
    if out is None:
        return scaled.astype(np.uint8)
    out[...] = scaled
    return out
