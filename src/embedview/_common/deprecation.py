"""One home for checking arguments and for changing the API (scikit-image's ``_shared/utils`` habit).

- ``check_*``: the validators the public functions share, so one mistake reads the same everywhere.
- API change with a schedule (scikit-image's ``deprecate_parameter``): every deprecation names the
  version that introduced it and the version that removes it (:data:`SINCE`, :data:`REMOVED_IN`),
  and what replaces it. :func:`deprecate_parameters` keeps old keywords of a function working
  (routed to the full implementation), :func:`rename_parameter` an old name of a parameter,
  :func:`deprecated` a whole function; each warns with a ``FutureWarning``, while the public
  signature shows only the new API. :data:`SCHEDULE` lists them all (a test checks that none
  outlives its removal version).
"""

from __future__ import annotations

import functools
import inspect
import operator
import warnings

import numpy as np

from .errors import EmbedviewError, arg

#: The release that introduced the deprecations of issue 16 (the next one after 0.1.0), and the one
#: that removes them.
SINCE = "0.2"
REMOVED_IN = "0.3"
#: Every deprecation made through this module: ``(what, since, removed_in)``.
SCHEDULE: list[tuple[str, str, str]] = []

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


def _message(what: str, replacement: str, since: str, removed_in: str) -> str:
    return (f"{what} is deprecated since embedview {since} and will be removed in {removed_in}; "
            f"use {replacement} instead.")


def _scheduled(what: str, since: str, removed_in: str) -> None:
    SCHEDULE.append((what, since, removed_in))


def deprecate_parameters(replacements: dict[str, str], route, *, since: str = SINCE, removed_in: str = REMOVED_IN):
    """Keep old keywords of the decorated function working, with a ``FutureWarning`` each.

    Parameters
    ----------
    replacements : dict
        Old keyword → what to use instead (named in the warning).
    route : callable
        Called as ``route(**arguments)`` with the call's bound arguments (defaults applied) plus
        the old keywords, when any old keyword is given; it must accept all of them.
    since, removed_in : str
        The version that deprecated the keywords, and the one that removes them.

    Examples
    --------
    >>> def _full(x, scale=1, offset=0):
    ...     return x * scale + offset
    >>> @deprecate_parameters({"offset": "x + offset"}, route=_full, since="0.2", removed_in="0.3")
    ... def f(x, scale=1):
    ...     return _full(x, scale)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     f(2, offset=1), str(caught[0].message)
    (3, 'f(offset=...) is deprecated since embedview 0.2 and will be removed in 0.3; use x + offset instead.')
    >>> list(inspect.signature(f).parameters)
    ['x', 'scale']
    """

    def decorate(fn):
        signature = inspect.signature(fn)
        for name in replacements:
            _scheduled(f"{fn.__qualname__}({name}=)", since, removed_in)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            old = {k: kwargs.pop(k) for k in list(kwargs) if k in replacements}
            if not old:
                return fn(*args, **kwargs)
            for name in old:
                warnings.warn(_message(f"{fn.__name__}({name}=...)", replacements[name], since, removed_in),
                              FutureWarning, stacklevel=2)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return route(**bound.arguments, **old)

        return wrapper

    return decorate


def rename_parameter(old: str, new: str, *, since: str = SINCE, removed_in: str = REMOVED_IN, owner: str | None = None):
    """Accept ``old=`` as the former name of the parameter ``new`` (a ``FutureWarning``); the
    signature shows only ``new``. ``owner``: how the warning names the callable (default its name).

    Examples
    --------
    >>> @rename_parameter("colour", "color", since="0.2", removed_in="0.3")
    ... def paint(color="red"):
    ...     return color
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     paint(colour="blue"), str(caught[0].message)
    ('blue', 'paint(colour=...) is deprecated since embedview 0.2 and will be removed in 0.3; use paint(color=...) instead.')
    """

    def decorate(fn):
        name = owner or fn.__name__
        _scheduled(f"{name}({old}=)", since, removed_in)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if old in kwargs:
                if new in kwargs:
                    raise EmbedviewError(f"{old}= is the old name of {new}=; pass {new}= only.")
                warnings.warn(_message(f"{name}({old}=...)", f"{name}({new}=...)", since, removed_in),
                              FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def deprecated(replacement: str, *, since: str = SINCE, removed_in: str = REMOVED_IN, name: str | None = None):
    """A whole function kept for compatibility: each call warns (``FutureWarning``) and names what
    replaces it.

    Examples
    --------
    >>> @deprecated("new()", since="0.2", removed_in="0.3")
    ... def old():
    ...     return 1
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     old(), str(caught[0].message)
    (1, 'old() is deprecated since embedview 0.2 and will be removed in 0.3; use new() instead.')
    """

    def decorate(fn):
        what = f"{name or fn.__name__}()"
        _scheduled(what, since, removed_in)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            warnings.warn(_message(what, replacement, since, removed_in), FutureWarning, stacklevel=2)
            return fn(*args, **kwargs)

        wrapper.__doc__ = (f".. deprecated:: {since}\n    Removed in {removed_in}; use {replacement}.\n\n"
                           + (fn.__doc__ or ""))
        return wrapper

    return decorate

