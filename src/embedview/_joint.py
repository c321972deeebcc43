"""One basis for several inputs: fit jointly, then draw each with the same colours.

Use it to compare images, time points or files: a material gets the same colour in every
picture. (Embeddings of different models live in different spaces: fit each on its own.)
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._colors import NORMALIZE_MODES, colour_ranges
from ._engines import engine_for
from ._errors import EmbedviewError
from ._fit import Basis
from ._progress import progress_bar
from ._sinks import MemorySink
from ._sources import Source, open_source
from ._threads import blas_threads
from ._executors import FitPlan, LocalExecutor, PassOptions, range_sample_rate
from ._visualize import Visualization, _check_choice, _rgb_components, check_n_components


def fit_basis(sources, n_components: int = 3, normalize: str = "robust", *, nonfinite: str = "raise",
              outliers: str = "exclude", device: str = "cpu", progress: bool = False) -> Basis:
    """Fit one basis, with colour ranges, jointly over the cells of several inputs.

    Parameters
    ----------
    sources : list
        Embeddings as :func:`embedview.visualize` takes them (paths, dicts, Sources), all of
        the same model (same number of channels).
    n_components, normalize, nonfinite, outliers, device, progress :
        As for :func:`embedview.visualize`.

    Returns
    -------
    Basis
        Apply it with ``visualize(..., basis=basis)``; save it with :func:`save_basis`.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> rng = np.random.default_rng(0)
    >>> a, b = (embedview.open_source(rng.normal(size=(1, 8, 64, 64)).astype(np.float32), (64, 64))
    ...         for _ in range(2))
    >>> basis = fit_basis([a, b])
    >>> basis.n_samples, basis.lo is not None
    (8192, True)
    """
    sources = _open_all(sources)
    return _joint(sources, n_components, normalize, nonfinite, outliers, device, progress, sinks=None)


def visualize_many(sources, n_components: int = 3, normalize: str = "robust", pixel_size=None, *,
                   rgb_components=None, nonfinite: str = "raise", outliers: str = "exclude",
                   basis: Basis | None = None, device: str = "cpu",
                   progress: bool = False) -> list[Visualization]:
    """Draw several inputs with one basis fitted jointly over all of them (or the ``basis`` given).

    Two passes over all inputs, as :func:`embedview.visualize` makes over one.

    Returns
    -------
    list of Visualization
        One per input, in order, all with the same basis.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> rng = np.random.default_rng(0)
    >>> arrays = [rng.normal(size=(1, 8, 64, 64)).astype(np.float32) for _ in range(2)]
    >>> a, b = visualize_many([embedview.open_source(x, (64, 64)) for x in arrays])
    >>> a.basis is b.basis
    True
    """
    sources = _open_all(sources)
    grids = [s.output_grid(pixel_size) for s in sources]
    k = n_components if basis is None else basis.n_components
    shown = _rgb_components(rgb_components, k)
    sinks = [MemorySink(s.n_slices or 1, g, k) for s, g in zip(sources, grids)]
    basis = _joint(sources, n_components, normalize, nonfinite, outliers, device, progress, sinks, basis)
    out = []
    for src, grid, sink in zip(sources, grids, sinks):
        sink.colour(range(src.n_slices or 1), basis, shown)
        stack = src.is_stack
        scale = ((1.0,) if stack else ()) + grid.scale
        translate = ((0.0,) if stack else ()) + grid.translate
        rgb, comps = (sink.rgb, sink.components) if stack else (sink.rgb[0], sink.components[0])
        out.append(Visualization(rgb, comps, scale, translate, (basis,), src.layout, src.shape))
    return out


def _open_all(sources) -> list[Source]:
    if isinstance(sources, (str, bytes)) or not hasattr(sources, "__iter__"):
        raise EmbedviewError("pass a list of embeddings (paths, dicts or Sources).")
    sources = [open_source(s) for s in sources]
    if not sources:
        raise EmbedviewError("no embeddings given; pass at least one.")
    channels = {s.n_channels for s in sources}
    if len(channels) > 1:
        names = ", ".join(f"{s.name} ({s.n_channels})" for s in sources)
        raise EmbedviewError(
            f"the embeddings have different numbers of channels: {names}; one basis needs one model, "
            "so fit each model's embeddings on their own (command line: --separate-bases).")
    return sources


def _joint(sources, n_components, normalize, nonfinite, outliers, device, progress, sinks, basis=None):
    """Fit (unless ``basis`` is given) over all ``sources``, then project each into its sink
    (``sinks`` None: only for the colour ranges); return the basis with its colour ranges."""
    _check_choice("normalize", normalize, NORMALIZE_MODES)
    fitting = basis is None
    if fitting:
        check_n_components(n_components, sources[0].n_channels)
    engine = engine_for(device)
    pieces = [p for s in sources for p in s.pieces()]
    bar = progress_bar((1 + fitting) * len(pieces), progress, desc="embedview")
    rate = range_sample_rate(pieces)
    with blas_threads(), contextlib.closing(bar):
        if fitting:
            basis = _fit_all(sources, n_components, nonfinite, outliers, engine, bar)
        samples = []
        for i, src in enumerate(sources):
            for piece, projected, sample in LocalExecutor(src, engine).project(src.pieces(), basis, rate,
                                                                               PassOptions(nonfinite=nonfinite), bar):
                if sinks is not None:
                    sinks[i].place(0, piece, projected)
                samples.append(sample)
        if fitting:
            samples = np.concatenate(samples) if samples else np.empty((0, basis.n_components), np.float32)
            basis = basis.with_ranges(*colour_ranges(samples, normalize, basis.scale_reference))
    return basis


def _fit_all(sources, n_components, nonfinite, outliers, engine, bar) -> Basis:
    """One accumulator state over every input: partial sums per input share the first's shift."""
    acc = None
    plan = FitPlan.for_pieces([p for s in sources for p in s.pieces()], PassOptions(nonfinite=nonfinite, outliers=outliers))
    for src in sources:
        part = plan.with_head(None if acc is None else acc.shift, None if acc is None else acc.bar).accumulate(
            src, list(enumerate(src.pieces())), engine, bar)
        acc = part if acc is None else acc.merge(part)
    return acc.basis(n_components)
