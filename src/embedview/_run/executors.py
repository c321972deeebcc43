"""Executors: where the fit and projection passes run, behind one contract.

:class:`Executor` is the contract (zarr-python's explicit-ABC habit): ``fit_many`` (one basis per
group of pieces), ``project_many`` (the projected pieces of each group, in order), ``map`` (the
output windows of a sink) and ``close``. :class:`LocalExecutor` runs them in this process;
:class:`embedview._run.dask_executor.DaskExecutor` with Dask. Both read the pieces through the source they were
given, which may be a composite of several inputs (:class:`embedview._run.pipeline.Inputs`).

What the passes agree on travels in one object, :class:`PassOptions` (components, non-finite
policy, outlier guard, fit sample, cell selection); :class:`FitPlan` adds what one group's partial
fits must share so that their sums merge exactly (sampling rate, outlier bar and shift).
"""

from __future__ import annotations

import abc
import itertools
from dataclasses import dataclass, replace

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._inputs.sources import Piece
from .._model.engines import NumpyEngine
from .._model.fit import Basis

FIT_SAMPLE_SEED = 1
#: Colour ranges are taken from at most this many cells (a seeded uniform sample beyond it).
RANGE_SAMPLE_CELLS = 2_000_000
RANGE_SAMPLE_SEED = 0


@dataclass(frozen=True)
class PassOptions:
    """What every fit and projection pass of one run agrees on.

    Attributes
    ----------
    n_components : int
        Principal components to fit.
    nonfinite : {"raise", "omit"}
        NaN/Inf features raise an error naming where they are, or are left out and drawn dark.
    outliers : {"exclude", "keep"}
        Leave rare high-norm cells out of the fit (see :class:`embedview._model.fit.Accumulator`).
    fit_sample : int or None
        Fit on a seeded uniform sample of about this many cells per group.
    select : selection or None
        Only these cells are fitted and drawn (see :mod:`embedview._model.selection`).
    """

    n_components: int = 3
    nonfinite: str = "raise"
    outliers: str = "exclude"
    fit_sample: int | None = None
    select: object = None


class Executor(abc.ABC):
    """Runs the passes over groups of pieces of one source (see the module docstring).

    ``remote`` is True when tasks run in other processes (which cannot see this one's memory).
    """

    remote = False

    @abc.abstractmethod
    def fit_many(self, groups: list[list[Piece]], options: PassOptions, bar=None) -> list[Basis]:
        """One basis per group, fitted on the group's drawn (selected, sampled) cells."""

    @abc.abstractmethod
    def project_many(self, groups: list[list[Piece]], bases: list[Basis], rates: list[float],
                     options: PassOptions, bar=None):
        """For each group in turn, an iterator of its ``(piece, projected, range sample)`` (see
        :func:`project_piece`); consume each group's iterator before taking the next."""

    @abc.abstractmethod
    def map(self, fn, items) -> list:
        """``[fn(*item) for item in items]``, maybe in parallel."""

    def close(self) -> None:
        """Release what the executor holds (threads, a cluster it started)."""

    def fit(self, group: list[Piece], options: PassOptions, bar=None) -> Basis:
        """:meth:`fit_many` for one group."""
        return self.fit_many([group], options, bar)[0]

    def project(self, group: list[Piece], basis: Basis, rate: float, options: PassOptions, bar=None):
        """:meth:`project_many` for one group: an iterator of ``(piece, projected, sample)``."""
        return next(self.project_many([group], [basis], [rate], options, bar))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """Runs the passes in this process: pieces are read ahead in threads while the engine computes."""

    def __init__(self, src, engine=None):
        self.src, self.engine = src, engine or NumpyEngine()

    def fit_many(self, groups, options, bar=None) -> list[Basis]:
        """One basis per group, from one stream of reads (read-ahead crosses the groups).

        With ``options.fit_sample`` set and more drawn cells in a group than that, each cell
        enters the fit with probability ``sample / cells`` (seeded per piece: the same input gives
        the same basis).
        """
        plans = [FitPlan.for_pieces(g, options) for g in groups]
        accs = [plan.accumulator(self.src, self.engine) for plan in plans]
        flat = [(g, i, p) for g, group in enumerate(groups) for i, p in enumerate(group)]
        for (g, i, piece), (_, x) in zip(flat, self.src.read_each([p for _, _, p in flat])):
            plans[g].add(accs[g], self.src, i, piece, x)
            if bar is not None:
                bar.update()
        return [acc.basis(options.n_components) for acc in accs]

    def project_many(self, groups, bases, rates, options, bar=None):
        """From one stream of reads (read-ahead crosses the groups)."""
        flat = [(g, i, p) for g, group in enumerate(groups) for i, p in enumerate(group)]

        def ordered():
            for (g, i, piece), (_, x) in zip(flat, self.src.read_each([p for _, _, p in flat])):
                projected, sample = project_piece(self.engine, bases[g], self.src, piece, x, rates[g], i, options)
                if bar is not None:
                    bar.update()
                yield piece, projected, sample

        return per_group(ordered(), groups)

    def map(self, fn, items) -> list:
        return [fn(*item) for item in items]


def per_group(stream, groups: list[list[Piece]]):
    """Cut one ordered stream of per-piece results into one iterator per group, in turn.

    Each group's iterator must be consumed before the next one is taken.
    """
    for group in groups:
        yield itertools.islice(stream, len(group))


@dataclass(frozen=True)
class FitPlan:
    """What every partial fit over a group of pieces must agree on, so partial sums merge exactly.

    ``rate`` is the sampling probability of a cell; ``expected`` the cells the outlier guard
    expects (``None``: no guard); ``shift`` and ``outlier_bar`` those of the group's first fitted
    piece (``None``: each accumulator finds its own). Pieces are numbered within their group: the
    sampling seed of piece ``i`` is ``(FIT_SAMPLE_SEED, i)`` wherever it is read.
    """

    rate: float
    expected: int | None
    nonfinite: str = "raise"
    select: object = None
    shift: object = None
    outlier_bar: object = None

    @classmethod
    def for_pieces(cls, pieces: list[Piece], options: PassOptions) -> "FitPlan":
        n_cells = sum(_n_cells(p.fit_cells) for p in pieces)
        sample = options.fit_sample
        rate = 1.0 if sample is None or n_cells <= sample else sample / n_cells
        expected = int(np.ceil(rate * n_cells))
        return cls(rate, expected if options.outliers == "exclude" else None, options.nonfinite, options.select)

    def with_head(self, shift, outlier_bar) -> "FitPlan":
        """This plan with the group's shared shift and outlier bar."""
        return replace(self, shift=shift, outlier_bar=outlier_bar)

    def accumulate(self, src, indexed: list[tuple[int, Piece]], engine, bar=None):
        """Accumulate the pieces ``indexed`` (``(number in group, piece)``) into a new accumulator."""
        acc = self.accumulator(src, engine)
        for (i, piece), (_, x) in zip(indexed, src.read_each([p for _, p in indexed])):
            self.add(acc, src, i, piece, x)
            if bar is not None:
                bar.update()
        return acc

    def accumulator(self, src, engine):
        acc = engine.accumulator(src.n_channels, expected_cells=self.expected)
        acc.shift, acc.bar = self.shift, self.outlier_bar
        return acc

    def add(self, acc, src, i: int, piece: Piece, x: np.ndarray) -> None:
        """Add the drawn (selected, sampled) cells of piece number ``i`` of the group to ``acc``."""
        block = x[(slice(None),) + piece.fit_cells].reshape(x.shape[0], -1)
        if self.select is not None:
            block = block[:, self.select.cells(piece, x)[piece.fit_cells].ravel()]
        chosen = block
        if self.rate < 1.0:
            keep = np.random.default_rng((FIT_SAMPLE_SEED, i)).random(block.shape[1]) < self.rate
            chosen = np.ascontiguousarray(block[:, keep])
        if not acc.add(chosen):
            if self.nonfinite == "raise":
                raise_nonfinite(src, piece, block)
            acc.add(np.ascontiguousarray(chosen[:, np.isfinite(chosen).all(axis=0)]))


def range_sample_rate(pieces: list[Piece]) -> float:
    """Probability that a fitted cell enters the colour-range sample (≤ RANGE_SAMPLE_CELLS cells)."""
    return min(1.0, RANGE_SAMPLE_CELLS / max(1, sum(_n_cells(p.fit_cells) for p in pieces)))


def _n_cells(cells: tuple[slice, slice]) -> int:
    return int(np.prod([s.stop - s.start for s in cells]))


def raise_nonfinite(src, piece: Piece, cells: np.ndarray):
    count = int((~np.isfinite(cells.reshape(cells.shape[0], -1)).all(axis=0)).sum())
    name = src.name_of(piece) if hasattr(src, "name_of") else src.name
    raise EmbedviewError(
        f"{count} cells of {piece.label} in {name} are NaN or infinite; pass {arg('nonfinite', 'omit')} "
        "to leave them out of the fit and draw them black.")


def project_piece(engine, basis: Basis, src, piece: Piece, x: np.ndarray, rate: float = 0.0,
                  index: int = 0, options: PassOptions = PassOptions(nonfinite="omit")) -> tuple[np.ndarray, np.ndarray]:
    """Project one piece's valid cells: ``(k, vh, vw)`` float32 (NaN where not finite or not
    selected: drawn dark), and a seeded sample (probability ``rate``, seed
    ``(RANGE_SAMPLE_SEED, index)``) of its fitted cells' components, ``(n, k)``, for the colour
    ranges."""
    vh, vw = piece.grid.valid_shape
    projected = engine.project(basis, x[:, :vh, :vw])
    if not np.isfinite(projected).all():  # NaN/Inf features: drawn black
        projected[:, ~np.isfinite(projected).all(axis=0)] = np.nan
        if options.nonfinite == "raise" and np.isnan(projected[(slice(None),) + piece.fit_cells]).any():
            raise_nonfinite(src, piece, x[(slice(None),) + piece.fit_cells])  # cells a sampled fit skipped
    if options.select is not None:
        projected[:, ~options.select.cells(piece, x)[:vh, :vw]] = np.nan
    sample = _sample_fit_cells(projected, piece, rate, index) if rate else np.empty((0, basis.n_components), np.float32)
    return projected, sample


def _sample_fit_cells(projected: np.ndarray, piece: Piece, rate: float, index: int) -> np.ndarray:
    values = projected[(slice(None),) + piece.fit_cells].reshape(projected.shape[0], -1).T
    if rate < 1.0:
        keep = np.random.default_rng((RANGE_SAMPLE_SEED, index)).random(values.shape[0]) < rate
        values = values[keep]
    return values
