"""One home for checking arguments and for changing the API (scikit-image's ``_shared/utils`` habit).

- ``check_*``: the validators the public functions share, so one mistake reads the same everywhere.
- :func:`deprecate_parameters`: old keywords keep working, with a ``FutureWarning`` that names what
  replaces them, while the public signature shows only the new API.
"""

from __future__ import annotations

import functools
import inspect
import operator
import warnings

import numpy as np

from .errors import EmbedviewError, arg

FIT_MODES = ("joint", "per_slice")
NONFINITE_MODES = ("raise", "omit")
OUTLIER_MODES = ("exclude", "keep")
FOREGROUND_SIDES = ("above", "below")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise EmbedviewError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.", param=name)


def check_n_components(n_components, n_channels: int) -> None:
    if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= n_channels:
        raise EmbedviewError(
            f"{arg('n_components', n_components)} is not possible for features with {n_channels} "
            f"channels; choose 1 to {n_channels}.")


def check_fit_sample(fit_sample) -> None:
    if fit_sample is not None and (not isinstance(fit_sample, (int, np.integer)) or fit_sample < 1000):
        raise EmbedviewError(f"{arg('fit_sample', fit_sample)} must be None (every cell) or a number of cells ≥ 1000.")


def shown_components(rgb_components, n_components: int) -> tuple[int, ...]:
    """The components shown as red, green and blue (default the first three), checked."""
    if rgb_components is None:
        return tuple(range(min(3, n_components)))
    try:  # whole numbers only: not "abc", not 1.5
        shown = tuple(operator.index(c) for c in rgb_components) if not isinstance(rgb_components, str) else ()
    except TypeError:
        shown = ()
    if not 1 <= len(shown) <= 3 or any(not 0 <= c < n_components for c in shown):
        raise EmbedviewError(
            f"{arg('rgb_components', list(rgb_components) if isinstance(rgb_components, (list, tuple)) else rgb_components)} must name one to three of the {n_components} "
            f"computed components (0 to {n_components - 1}).")
    return shown


def foreground_options(foreground) -> dict | None:
    """``None``, ``"auto"`` or ``{"threshold": t, "side": s}`` (each optional) → the rule's fixed parts."""
    if foreground is None:
        return None
    if isinstance(foreground, str):
        if foreground != "auto":
            raise EmbedviewError(f"foreground must be None, 'auto' or a dict with threshold/side; got {foreground!r}.")
        return {"threshold": None, "side": None}
    if not isinstance(foreground, dict) or set(foreground) - {"threshold", "side"}:
        raise EmbedviewError(f"foreground must be None, 'auto' or a dict with threshold/side; got {foreground!r}.")
    threshold, side = foreground.get("threshold"), foreground.get("side")
    if side is not None and side not in FOREGROUND_SIDES:
        raise EmbedviewError(f"{arg('foreground_side', side)} must be 'above' or 'below'.")
    try:
        threshold = None if threshold is None else float(threshold)
    except (TypeError, ValueError):
        threshold = np.nan
    if threshold is not None and not np.isfinite(threshold):
        raise EmbedviewError(f"the foreground threshold must be a finite number; got {foreground.get('threshold')!r}.",
                             param="foreground_threshold")
    return {"threshold": threshold, "side": side}


def cluster_options(clusters, components, n_components) -> tuple[int, int] | None:
    """``(K, components used)`` for a k-means label picture, checked (``None``: no clusters)."""
    if clusters is None:
        if components is not None:
            raise EmbedviewError(f"{arg('cluster_components')} needs {arg('clusters', form='K')}.")
        return None
    if not isinstance(clusters, (int, np.integer)) or clusters < 2:
        raise EmbedviewError(f"{arg('clusters', clusters)} must be a number of clusters ≥ 2.")
    m = n_components if components is None else components
    if not isinstance(m, (int, np.integer)) or not 1 <= m <= n_components:
        raise EmbedviewError(
            f"{arg('cluster_components', components)} must lie between 1 and {arg('n_components', n_components)}; "
            f"raise {arg('n_components')} to cluster in more components.")
    return int(clusters), int(m)


def deprecate_parameters(replacements: dict[str, str], route):
    """Keep old keywords of the decorated function working, with a ``FutureWarning`` each.

    Parameters
    ----------
    replacements : dict
        Old keyword → what to use instead (named in the warning).
    route : callable
        Called as ``route(**arguments)`` with the call's bound arguments (defaults applied) plus
        the old keywords, when any old keyword is given; it must accept all of them.

    Examples
    --------
    >>> def _full(x, scale=1, offset=0):
    ...     return x * scale + offset
    >>> @deprecate_parameters({"offset": "x + offset"}, route=_full)
    ... def f(x, scale=1):
    ...     return _full(x, scale)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     f(2, offset=1), str(caught[0].message)
    (3, 'f(offset=...) is deprecated; use x + offset instead.')
    >>> list(inspect.signature(f).parameters)
    ['x', 'scale']
    """

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            old = {k: kwargs.pop(k) for k in list(kwargs) if k in replacements}
            if not old:
                return fn(*args, **kwargs)
            for name in old:
                warnings.warn(f"{fn.__name__}({name}=...) is deprecated; use {replacements[name]} instead.",
                              FutureWarning, stacklevel=2)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return route(**bound.arguments, **old)

        return wrapper

    return decorate
