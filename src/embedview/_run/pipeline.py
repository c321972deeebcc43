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
from .executors import LocalExecutor, PassOptions, range_sample_rate


@dataclass(frozen=True)
class Execution:
    """Where and how the passes run; accepted as ``execution=`` by :func:`embedview.visualize`
    and :class:`embedview.PCA`.

    Attributes
    ----------
    device : str
        Where the arithmetic runs: ``"cpu"`` (numpy, the default) or a PyTorch device
        (``"cuda"``, ``"cuda:1"``, ``"mps"``; ``"torch:cpu"`` runs PyTorch on the CPU). Needs the
        ``torch`` extra; the result equals the numpy path's (uint8 ±1).
    scheduler : str or distributed.Client, optional
        Run the passes with Dask (the ``dask`` extra): ``"threads"``, ``"processes"``, the
        address of a ``dask.distributed`` scheduler (``"tcp://host:8786"``) or a ``Client``.
        Workers read the features themselves (the inputs must be file paths for processes and
        clusters). The result equals the local one. Default: this process, no Dask.
    progress : bool
        Show a progress bar on stderr for work that takes over a second.

    Examples
    --------
    >>> Execution(scheduler="threads")
    Execution(device='cpu', scheduler='threads', progress=False)
    """

    device: str = "cpu"
    scheduler: object = None
    progress: bool = False

    def executor(self, inputs: Inputs):
        """The executor running the passes over ``inputs``."""
        if self.scheduler is None:
            from .._model.engines import engine_for

            return LocalExecutor(inputs, engine_for(self.device))
        from .dask_executor import DaskExecutor  # the workers build their engines: this process may have no GPU

        return DaskExecutor(inputs, self.scheduler, self.device)


@dataclass(frozen=True)
class Job:
    """The checked options of one run.

    ``bases`` / ``selections``: given per group (a fitted model: no fit); ``options.select`` is
    the image mask's selection; ``foreground`` the fixed parts of the foreground rule;
    ``clustered``: the pictures will be labelled by :func:`embedview.cluster` (sized for it).
    """

    options: PassOptions
    normalize: str
    shown: tuple = (0, 1, 2)
    bases: tuple | None = None
    selections: tuple | None = None
    foreground: dict | None = None
    clustered: bool = False


def execute(inputs: Inputs, job: Job, *, fit: str = "joint", pixel_size=None, outputs=None, metadata=None,
            execution: Execution | None = None, draw: bool = True, upsample=None):
    """Run the pipeline over ``inputs``; return ``(bases, selections, visualizations)``.

    ``outputs``: per input, ``None`` (the picture in memory) or an
    :class:`~embedview._outputs.sinks.Output` checked by :func:`output_guard` (a
    :class:`~embedview._outputs.sinks.ZarrOutput`, written chunk by chunk; a movie's
    :class:`~embedview._outputs.movie.MovieOutput`), whose ``open_sink`` gives the sink.
    ``metadata``: the JSON-able extras recorded in each output (one dict, or a list: one per input).
    ``draw=False`` only fits (the colour ranges still need a projection pass): no pictures.
    ``upsample``: per input, its resolved upsampling (:class:`embedview._outputs.guide.Upsampling`)
    or ``None`` (nearest).
    """
    from .._outputs.io import check_metadata

    for meta in metadata if isinstance(metadata, list) else [metadata]:  # plain JSON, before any work
        check_metadata(meta)
    execution = execution or Execution()
    sources = inputs.sources
    pieces = inputs.pieces()
    groups = [pieces] if fit == "joint" else [
        [p for p in pieces if p.z == z] for z in sorted({p.z for p in pieces}, key=lambda z: z or 0)]
    outputs = list(outputs) if outputs is not None else [None] * len(sources)
    grids = [src.output_grid(pixel_size) for src in sources]
    k = job.options.n_components
    upsample = list(upsample) if upsample is not None else [None] * len(sources)
    with contextlib.ExitStack() as stack:
        executor = execution.executor(inputs)
        stack.enter_context(contextlib.closing(executor))
        # The sinks upsample on the executor's own engine when it has one here (a Dask executor's
        # engines live in its workers: the sinks get the device's name and build theirs).
        device = getattr(executor, "engine", None) or (None if execution.device == "cpu" else execution.device)
        for src, grid, out in zip(sources, grids, outputs):  # in-memory pictures sized before anything is read
            if draw and out is None:  # (a file output's sink checks what it needs when opened)
                check_picture_fits(src.n_slices or 1, grid.shape, k, clustered=job.clustered)
        if not draw:
            sinks = [_Discard()] * len(sources)
        else:
            sinks = []
            for src, grid, out, up in zip(sources, grids, outputs, upsample):
                if out is None:
                    sinks.append(MemorySink(src.n_slices or 1, grid, k, up, device))
                else:  # an Output (embedview._outputs.sinks): OME-Zarr, a movie
                    sinks.append(stack.enter_context(out.open_sink(src, grid, k, up, device, remote=executor.remote)))
        bases, selections = run(inputs, groups, executor, _Sinks(inputs, sinks), job, execution.progress)
        if not draw:
            return bases, selections, None
        metadata = metadata if isinstance(metadata, list) else [metadata] * len(sources)
        visualizations = []
        for src, grid, sink, out, meta, up in zip(sources, grids, sinks, outputs, metadata, upsample):
            if up is not None and out is not None:
                meta = {**(meta or {}), "upsample": up.describe()}
            visualizations.append(_visualization(src, grid, sink, out, bases, selections, meta))
        return bases, selections, visualizations


def _visualization(src, grid, sink, out, bases, selections, metadata) -> Visualization:
    stack = src.is_stack
    scale = ((1.0,) if stack else ()) + grid.scale
    translate = ((0.0,) if stack else ()) + grid.translate
    if out is not None:
        from .._outputs.io import output_metadata

        path = out.path
        vis = Visualization(None, None, scale, translate, bases, src.layout, src.shape, path, selections=selections)
        sink.finish(scale, translate, output_metadata(vis, metadata))
        return vis
    components, rgb = sink.components, sink.rgb
    if not stack:
        components, rgb = components[0], rgb[0]
    return Visualization(rgb, components, scale, translate, bases, src.layout, src.shape, selections=selections)


class _Sinks:
    """One sink per input, addressed as one: each call goes to the sinks of the pieces' inputs."""

    def __init__(self, inputs: Inputs, sinks: list):
        self.inputs, self.sinks = inputs, sinks

    def place(self, index: int, piece, projected) -> None:
        self.sinks[piece.input].place(self.inputs.local_index(index, piece), piece, projected)

    def colour(self, group, basis, shown, executor) -> None:
        for i, zs in _slices(group).items():
            self.sinks[i].colour(zs, basis, shown, executor)



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
            sinks.colour(group, basis, job.shown, executor)
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
    """Each output (a ``.zarr`` path, an :class:`~embedview._outputs.sinks.Output` or ``None``) as an
    ``Output``, checked: it may not replace any input's files, nor what embedview did not write
    unless its ``overwrite`` says so."""
    from .._common.output_paths import check_output
    from .._outputs.sinks import ZarrOutput

    read = [("the embeddings", s.name if isinstance(s.name, str) and os.path.exists(s.name) else None)
            for s in sources] + list(extra)
    checked = []
    for out, src in zip(outputs, sources):
        if out is not None:
            out = out if hasattr(out, "open_sink") else ZarrOutput(out)  # a path: OME-Zarr
            check_output(out.path, stack=src.is_stack, inputs=read, overwrite=out.overwrite)
        checked.append(out)
    return checked
