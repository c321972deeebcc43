"""Which cells are foreground, for the DINOv2 recipe: threshold the first component, refit on
the foreground.

The threshold is Otsu's (the split of a 256-bin histogram that maximises the between-class
variance) and the foreground is the side holding fewer cells, since the background is what
dominates. Either can be given instead; :meth:`ForegroundRule.describe` says what was chosen,
so the user can read it and set it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._common.errors import EmbedviewError

SIDES = ("above", "below")
#: Fewer finite values than this leave nothing meaningful to threshold and refit on.
MIN_CELLS = 16
_BINS = 256
#: Histogram range in percentiles: a few artefact tokens far out must not squeeze every other
#: cell into one bin (values beyond are counted in the end bins).
_RANGE_PERCENTILES = (0.1, 99.9)


@dataclass(frozen=True)
class ForegroundRule:
    """Foreground = the cells whose first component lies on ``side`` of ``threshold``.

    Attributes
    ----------
    threshold : float
    side : {"above", "below"}
        ``above``: values > threshold; ``below``: values ≤ threshold. NaN is never foreground.
    fraction : float
        Share of the (finite) cells the rule was chosen on that are foreground.

    Examples
    --------
    >>> import numpy as np
    >>> rule = ForegroundRule(0.5, "above", 0.25)
    >>> rule.mask(np.array([0.0, 1.0, np.nan])).tolist()
    [False, True, False]
    >>> rule.describe()
    'foreground: first component above 0.5 (25.0% of cells)'
    """

    threshold: float
    side: Literal["above", "below"]
    fraction: float

    def mask(self, values: np.ndarray) -> np.ndarray:
        """Boolean array, True where ``values`` are foreground (False at NaN)."""
        values = np.asarray(values)
        return values > self.threshold if self.side == "above" else values <= self.threshold

    def describe(self) -> str:
        """One line for the user, e.g. ``foreground: first component above 0.123 (23.4% of cells)``."""
        return f"foreground: first component {self.side} {self.threshold:.6g} ({100 * self.fraction:.1f}% of cells)"


def rule_from_json(entry, n_channels: int, reference: float, what: str, remedy: str):
    """The foreground rule a basis file records (see ``PCA.save``), checked: ``(rule, mean, components)``
    of the basis whose first component it thresholds.

    ``reference`` is the saved basis's scale (``scale_reference``). Refused, with ``remedy``: a
    threshold that is not finite or lies far beyond that scale, an unknown side, a fraction outside
    ``(0, 1]``, components that are zero or not orthonormal, a mean that is not finite or not a
    float32 value.
    """
    from .basis_file import check_components, check_magnitude

    damaged = EmbedviewError(f"the foreground rule in {what} is damaged; {remedy}.")
    try:
        mean = np.asarray(entry["mean"], dtype=entry["dtypes"][0])
        components = np.asarray(entry["components"], dtype=entry["dtypes"][1])
        threshold, side, fraction = entry["threshold"], entry["side"], entry["fraction"]
    except (KeyError, IndexError, TypeError, ValueError):
        raise damaged from None
    if not (mean.dtype.kind == components.dtype.kind == "f" and mean.shape == (n_channels,)
            and components.ndim == 2 and components.shape[0] >= 1 and components.shape[1] == n_channels
            and np.isfinite(mean).all() and np.isfinite(components).all() and side in SIDES):
        raise damaged
    for name, value in (("threshold", threshold), ("fraction", fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EmbedviewError(f"the foreground rule in {what} is damaged: its {name} is {value!r}, not a "
                                 f"finite number; {remedy}.")
    if not 0 < fraction <= 1:
        raise EmbedviewError(f"the foreground rule in {what} is damaged: its fraction {fraction!r} is not a "
                             f"share of the cells; {remedy}.")
    where = f"the foreground rule in {what}"
    check_magnitude("threshold", [threshold], reference, where, remedy)
    check_magnitude("mean", mean, None, where, remedy)
    check_components(components, where, remedy)
    return ForegroundRule(float(threshold), side, float(fraction)), mean, components


def choose_threshold(values: np.ndarray, *, threshold: float | None = None,
                     side: str | None = None) -> ForegroundRule:
    """Choose the foreground rule for the first-component ``values`` of the cells.

    Parameters
    ----------
    values : ndarray
        First-component value of each cell, any shape; NaN and Inf are ignored.
    threshold : float, optional
        Use this threshold instead of Otsu's.
    side : {"above", "below"}, optional
        Use this side instead of the one holding fewer cells (on a tie, above).

    Returns
    -------
    ForegroundRule

    Raises
    ------
    EmbedviewError
        Fewer than ``MIN_CELLS`` finite values; constant values with no threshold given;
        an unknown side; a rule that leaves no cell in the foreground.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> values = np.concatenate([rng.normal(0, 1, 800), rng.normal(10, 1, 200)])
    >>> rule = choose_threshold(values)
    >>> rule.side, 3 < rule.threshold < 7, rule.fraction
    ('above', True, 0.2)
    >>> choose_threshold(values, threshold=5.0, side="below").describe()
    'foreground: first component below 5 (80.0% of cells)'
    """
    if side is not None and side not in SIDES:
        raise EmbedviewError(f"the foreground side must be 'above' or 'below'; got {side!r}.")
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < MIN_CELLS:
        raise EmbedviewError(f"only {values.size} cells have a finite first component, too few to "
                             f"separate a foreground (at least {MIN_CELLS}); draw without the foreground option.")
    if threshold is None:
        threshold = _otsu(values)
    elif not np.isfinite(threshold):
        raise EmbedviewError(f"the foreground threshold must be a finite number; got {threshold!r}.")
    threshold = float(threshold)
    share_above = float(np.count_nonzero(values > threshold)) / values.size
    if side is None:
        side = "above" if share_above <= 0.5 else "below"  # the background dominates
    fraction = share_above if side == "above" else 1.0 - share_above
    if fraction == 0:
        raise EmbedviewError(
            f"no cell has its first component {side} {threshold:.6g} (the values span "
            f"{values.min():.6g} to {values.max():.6g}); choose a threshold inside that range.")
    return ForegroundRule(threshold, side, fraction)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of finite ``values``: the histogram split with the most between-class
    variance; across a run of empty bins (a gap between the modes) its middle."""
    lo, hi = np.percentile(values, _RANGE_PERCENTILES)
    if not hi > lo:  # almost every cell equal: the percentiles collapse, use the full range
        lo, hi = values.min(), values.max()
    if not hi > lo:
        raise EmbedviewError(f"the first component is the same ({lo:.6g}) for every cell, so there is "
                             "no foreground to separate; draw without the foreground option or set a threshold.")
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=_BINS, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    # Class 0 = bins 0..i, class 1 = bins i+1..; i runs over the 255 possible splits.
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = values.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (float((counts * centres).sum()) - s0) / np.maximum(w1, 1)
    between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (m0 - m1) ** 2, -1.0)
    best = int(np.argmax(between))
    # Empty bins after the best split leave the cumulative sums, hence `between`, unchanged:
    # put the threshold in the middle of that gap rather than against the lower mode.
    end = best
    while end + 1 < between.size and counts[end + 1] == 0:
        end += 1
    return float((edges[best + 1] + edges[end + 1]) / 2)
