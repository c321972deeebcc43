"""The one pipeline, for one input or many: inputs → fit → project → colours → sinks.

:func:`execute` opens the sinks (one per input: in memory, or an OME-Zarr folder), builds the
executor (:mod:`embedview._run.executors`, or Dask) over the inputs read as one
(:class:`embedview._inputs.composite.Inputs`), and runs :func:`run`: fit every group of pieces (a group is
all pieces for ``fit="joint"``, one slice for ``"per_slice"``), project them into the sinks, take
the colour ranges from the projected cells and colour each input's picture.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace

import numpy as np

from .._common.limits import check_picture_fits
from .._common.progress import progress_bar
from .._common.threads import blas_threads
from .._inputs.composite import Inputs
from .._model.colors import colour_ranges
from .._model.fit import Basis
from .._model.foreground import choose_threshold
from .._model.selection import Foreground
from .._outputs.sinks import MemorySink
from .._outputs.visualization import Visualization
from .executors import PassOptions, range_sample_rate
from .settings import Draw, Execution

__all__ = ["execute", "run", "Job", "Execution", "output_guard"]


@dataclass(frozen=True)
class Job:
    """What the estimator asks of one run of the pipeline (built by :meth:`embedview.PCA.run` only).

    ``options``: what every pass agrees on (the executors' contract, sent to Dask workers);
    ``groups``: ``"joint"`` (one group of all pieces) or ``"per_slice"``; ``bases`` /
    ``selections``: given per group (a fitted model: no fit); ``options.select`` is the image
    mask's selection; ``foreground`` the fixed parts of the foreground rule.
    """

    options: PassOptions
    normalize: str
    groups: str = "joint"
    bases: tuple | None = None
    selections: tuple | None = None
    foreground: dict | None = None


def execute(inputs: Inputs, job: Job, draws: list[Draw] | None = None, outputs: list | None = None,
            execution: Execution | None = None):
    """Run the pipeline over ``inputs``; return ``(bases, selections, visualizations)``.

    ``draws``: one :class:`Draw` per input, its upsampling resolved (:meth:`Draw.for_source`);
    ``None`` only fits (the colour ranges still need a projection pass): no pictures.
    ``outputs``: one :class:`~embedview._run.settings.Output` (checked, see :func:`output_guard`)
    or ``None`` per input: an ``Output`` is written chunk by chunk by its sink (its ``sink``, an
    :class:`~embedview._outputs.sinks.Writer` such as a movie's
    :class:`~embedview._outputs.movie.MovieOutput`, or by default a
    :class:`~embedview._outputs.sinks.ZarrOutput`) instead of kept in memory, with its ``metadata``.
    """
    from .._outputs.io import check_metadata

    for out in outputs or ():  # plain JSON, before any work
        check_metadata(None if out is None else out.metadata)
    execution = execution or Execution()
    sources = inputs.sources
    pieces = inputs.pieces()
    groups = [pieces] if job.groups == "joint" else [
        [p for p in pieces if p.z == z] for z in sorted({p.z for p in pieces}, key=lambda z: z or 0)]
    outputs = list(outputs) if outputs is not None else [None] * len(sources)
    k = job.options.n_components
    with contextlib.ExitStack() as stack:
        executor = execution.executor(inputs)
        stack.enter_context(contextlib.closing(executor))
        if draws is None:
            bases, selections = run(inputs, groups, executor, _Sinks(inputs, [_Discard()] * len(sources), None),
                                    job, execution.progress)
            return bases, selections, None
        grids = [src.output_grid(draw.pixel_size) for src, draw in zip(sources, draws)]
        # The sinks upsample on the executor's own engine when it has one here (a Dask executor's
        # engines live in its workers: the sinks get the device's name and build theirs).
        device = getattr(executor, "engine", None) or (None if execution.device == "cpu" else execution.device)
        for src, grid, out, draw in zip(sources, grids, outputs, draws):  # in-memory pictures sized before anything is read
            if out is None:  # (a file output's sink checks what it needs when opened)
                check_picture_fits(src.n_slices or 1, grid.shape, k, clustered=draw.clustered)
        sinks = []
        for src, grid, out, draw in zip(sources, grids, outputs, draws):
            if out is None:
                sinks.append(MemorySink(src.n_slices or 1, grid, k, draw.upsample, device))
            else:  # its writer (embedview._outputs.sinks.Writer): OME-Zarr, a movie
                sinks.append(stack.enter_context(out.writer().open_sink(src, grid, k, draw.upsample, device,
                                                                        remote=executor.remote)))
        shown = [draw.shown(k) for draw in draws]
        bases, selections = run(inputs, groups, executor, _Sinks(inputs, sinks, shown), job, execution.progress)
        visualizations = []
        for src, grid, sink, out, draw, rgb in zip(sources, grids, sinks, outputs, draws, shown):
            meta = None if out is None else out.metadata
            if draw.upsample is not None and out is not None:
                meta = {**(meta or {}), "upsample": draw.upsample.describe()}
            visualizations.append(replace(_visualization(src, grid, sink, out, bases, selections, meta), shown=rgb))
        return bases, selections, visualizations


def _visualization(src, grid, sink, out, bases, selections, metadata) -> Visualization:
    stack = src.is_stack
    scale = ((1.0,) if stack else ()) + grid.scale
    translate = ((0.0,) if stack else ()) + grid.translate
    if out is not None:
        from .._outputs.io import output_metadata

        vis = Visualization(None, None, scale, translate, bases, src.layout, src.shape, out.path, selections=selections)
        sink.finish(scale, translate, output_metadata(vis, metadata))
        return vis
    components, rgb = sink.components, sink.rgb
    if not stack:
        components, rgb = components[0], rgb[0]
    return Visualization(rgb, components, scale, translate, bases, src.layout, src.shape, selections=selections)


class _Sinks:
    """One sink per input, addressed as one: each call goes to the sinks of the pieces' inputs."""

    def __init__(self, inputs: Inputs, sinks: list, shown: list | None):
        self.inputs, self.sinks, self.shown = inputs, sinks, shown

    def place(self, index: int, piece, projected) -> None:
        self.sinks[piece.input].place(self.inputs.local_index(index, piece), piece, projected)

    def colour(self, group, basis, executor) -> None:
        for i, zs in _slices(group).items():
            self.sinks[i].colour(zs, basis, None if self.shown is None else self.shown[i], executor)



class _Discard:
    """A sink that keeps nothing (fitting only)."""

    def place(self, *args) -> None:
        pass

    colour = place


def _slices(group) -> dict[int, list[int]]:
    """Input → the slices of it that ``group`` holds (sorted)."""
    out: dict[int, set] = {}
    for p in group:
        out.setdefault(p.input, set()).add(p.z or 0)
    return {i: sorted(zs) for i, zs in out.items()}


def run(inputs: Inputs, groups, executor, sinks, job: Job, progress: bool) -> tuple[tuple, tuple]:
    """Fit, project and colour each group of pieces into ``sinks``; return the bases and the cell
    selections (one per group)."""
    pieces = inputs.pieces()
    index = {id(p): i for i, p in enumerate(pieces)}
    fitting = job.bases is None
    passes = (0 if not fitting else 1 + 2 * bool(job.foreground)) + 1
    bar = progress_bar(passes * len(pieces), progress, desc="embedview")
    options = job.options
    selects = list(job.selections) if job.selections is not None else [options.select] * len(groups)
    bases, selections = [], []
    with blas_threads(), contextlib.closing(bar):
        if not fitting:  # a fitted basis reads its inputs at the scale it was fitted at
            inputs.use_feature_scale(job.bases[0].feature_scale)
        fitted = list(job.bases) if not fitting else executor.fit_many(groups, options, bar)
        rates = [range_sample_rate(group) for group in groups]
        # Without the foreground pass the bases are final: every group's projection can start at once.
        projections = None
        if job.foreground is None and all(s is selects[0] for s in selects):
            projections = executor.project_many(groups, fitted, rates, replace(options, select=selects[0]), bar)
        for group, basis, rate, select in zip(groups, fitted, rates, selects):
            if job.foreground is not None:
                first = _project_all(executor, group, basis, rate, replace(options, select=select), bar, None)
                select = Foreground(basis, choose_threshold(first[:, 0], **job.foreground), select)
                basis = executor.fit(group, replace(options, select=select), bar)
            place = lambda piece, projected: sinks.place(index[id(piece)], piece, projected)  # noqa: E731
            if projections is not None:
                samples = _collect(next(projections), basis, place)
            else:
                samples = _project_all(executor, group, basis, rate, replace(options, select=select), bar, place)
            if fitting:
                basis = replace(basis.with_ranges(*colour_ranges(samples, job.normalize, basis.scale_reference)),
                                feature_scale=inputs.feature_scale)
            bases.append(basis)
            selections.append(select)
            sinks.colour(group, basis, executor)
    return tuple(bases), tuple(selections)


def _project_all(executor, group, basis, rate, options, bar, place) -> np.ndarray:
    """Project every piece of ``group`` into ``place`` (if any); return the range sample ``(n, k)``."""
    return _collect(executor.project(group, basis, rate, options, bar), basis, place)


def _collect(projected_pieces, basis: Basis, place) -> np.ndarray:
    """Place each ``(piece, projected, sample)``; return the samples stacked ``(n, k)``."""
    samples = []
    for piece, projected, sample in projected_pieces:
        if place is not None:
            place(piece, projected)
        samples.append(sample)
    return np.concatenate(samples) if samples else np.empty((0, basis.n_components), np.float32)


def output_guard(outputs, sources, extra=()) -> list:
    """Check each :class:`~embedview._run.settings.Output` (or ``None``) before any work: it may
    not replace any input's files, nor what embedview did not write unless its ``overwrite`` says
    so; one the pipeline writes without a sink of its own is a ``.zarr``."""

    read = [("the embeddings", s.name if isinstance(s.name, str) and os.path.exists(s.name) else None)
            for s in sources] + list(extra)
    checked = []
    for out, src in zip(outputs, sources):
        if out is None:
            checked.append(None)
            continue
        out.writer()  # a path that is not .zarr, without a sink, is refused here
        checked.append(replace(out, path=out.check(stack=src.is_stack, inputs=read)))
    return checked
