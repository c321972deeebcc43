"""``visualize``: the whole pipeline, source → fit → project → colours → render."""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._colors import NORMALIZE_MODES, colour_ranges
from ._errors import EmbedviewError
from ._engines import engine_for
from ._executors import LocalExecutor, PassOptions, range_sample_rate
from ._fit import Basis
from ._geometry import OutputGrid
from ._progress import progress_bar
from ._render import Placer
from ._foreground import choose_threshold
from ._selection import Foreground, image_mask
from ._sinks import MemorySink, colour
from ._sources import Piece, Source, open_source
from ._threads import blas_threads

FIT_MODES = ("joint", "per_slice")
NONFINITE_MODES = ("raise", "omit")
OUTLIER_MODES = ("exclude", "keep")
CLUSTER_SEED = 0


@dataclass(frozen=True)
class Visualization:
    """The PCA picture of some embeddings and how it lies on the image.

    Attributes
    ----------
    rgb : ndarray of uint8, shape (..., H, W, 3)
        The picture; black where nothing was drawn (missing tiles, non-finite cells).
    components : ndarray of float32, shape (..., H, W, n_components)
        The principal components per output pixel; NaN where nothing was drawn.
    scale, translate : tuple of float
        One value per spatial axis (``1.0``/``0.0`` on z): output pixel ``i`` lies at image
        coordinate ``translate + i * scale`` (pixel centres, napari's convention).
    bases : tuple of Basis
        The fitted PCA: one for ``fit="joint"``, one per slice for ``fit="per_slice"``.
    layout : str
        ``single``, ``stack``, ``tiled`` or ``tiled stack``.
    image_shape : tuple of int
        Shape of the image the embeddings describe, ``(H, W)`` or ``(Z, H, W)``.
    path : Path or None
        The OME-Zarr folder written by ``visualize(..., output=...)``; then ``rgb`` and
        ``components`` are ``None`` (the picture is on disk, not in memory).
    labels : ndarray of int32, shape (..., H, W), optional
        With ``clusters=K``: the k-means label of each output pixel (-1 where nothing is drawn);
        ``rgb`` then shows the labels.
    selections : tuple
        Per basis, the cells it was fitted on and draws (an image mask or a foreground rule,
        see :mod:`embedview._selection`), or ``None`` for all cells.
    centres : tuple of ndarray
        With ``clusters=K``: per basis, the k-means centres ``(K, m)``.
    """

    rgb: np.ndarray | None
    components: np.ndarray | None
    scale: tuple
    translate: tuple
    bases: tuple
    layout: str
    image_shape: tuple
    path: Path | None = None
    labels: np.ndarray | None = None
    selections: tuple = ()
    centres: tuple = ()

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path is not None else (
            f"rgb {'×'.join(map(str, self.rgb.shape))} uint8")
        scale = ", ".join(f"{v:.6g}" for v in self.scale)
        translate = ", ".join(f"{v:.6g}" for v in self.translate)
        extra = "" if self.labels is None else f", {len(self.centres[0])} clusters"
        return (f"Visualization({self.layout}, image {'×'.join(map(str, self.image_shape))}, {where}, "
                f"scale=({scale}), translate=({translate}), {len(self.bases)} {'basis' if len(self.bases) == 1 else 'bases'}{extra})")

    @property
    def foreground(self) -> tuple:
        """With ``foreground="auto"``: the rule chosen per basis (threshold, side, fraction)."""
        return tuple(s.rule for s in self.selections if isinstance(s, Foreground))

    @property
    def basis(self) -> Basis:
        """The fitted PCA (for ``fit="per_slice"`` with several slices, use :attr:`bases`)."""
        if len(self.bases) != 1:
            raise EmbedviewError(
                f"this visualization has {len(self.bases)} bases (fit='per_slice'); use vis.bases[z].")
        return self.bases[0]

    @property
    def valid(self) -> np.ndarray:
        """Boolean ``(..., H, W)``: where something was drawn."""
        return ~np.isnan(self.components[..., 0])


def visualize(
    source,
    n_components: int = 3,
    fit: str = "joint",
    normalize: str = "robust",
    pixel_size: float | tuple[float, float] | None = None,
    *,
    original_size: tuple[int, int] | None = None,
    rgb_components: tuple[int, int, int] | None = None,
    nonfinite: str = "raise",
    outliers: str = "exclude",
    fit_sample: int | None = None,
    basis: Basis | None = None,
    mask=None,
    foreground: str | None = None,
    foreground_threshold: float | None = None,
    foreground_side: str | None = None,
    clusters: int | None = None,
    cluster_components: int | None = None,
    device: str = "cpu",
    scheduler=None,
    output=None,
    metadata: dict | None = None,
    progress: bool = False,
) -> Visualization:
    """Project embeddings on their principal components and draw them as RGB, exactly placed.

    Parameters
    ----------
    source : str, path, dict or array
        A micro_sam embedding container (zarr v2/v3: single, stack, tiled, tiled stack,
        masked), an ``ImageEmbeddings`` dict, or an array ``(1, C, h, w)``/``(Z, 1, C, h, w)``
        (then give ``original_size``).
    n_components : int
        Principal components to compute.
    fit : {"joint", "per_slice"}
        ``joint``: one basis for every slice and tile, so a colour means the same everywhere.
        ``per_slice``: a basis per slice (micro_sam's behaviour).
    normalize : {"robust", "channel", "global"}
        Colour ranges: 1st–99th percentile per channel, min–max per channel, or one min–max
        over all channels.
    pixel_size : float or (float, float), optional
        Output pixel size in image pixels; default the embedding grid (for tiled inputs, the
        cell size of a full interior tile). ``1`` draws at image resolution.
    original_size : (int, int), optional
        Image size for plain arrays.
    rgb_components : tuple of int, optional
        Which components become red, green and blue; default the first three.
    nonfinite : {"raise", "omit"}
        NaN/Inf features raise an error naming where they are, or are left out of the fit
        and drawn black.
    outliers : {"exclude", "keep"}
        ``exclude`` leaves rare high-norm cells (farther from the data than 10× the median
        distance, at most 1% of cells: the artefact tokens of ViTs) out of the fit so they
        cannot turn the principal axes towards themselves; they are still drawn (clipped).
    fit_sample : int, optional
        Fit inputs with more drawn cells than this on a seeded uniform random sample of about
        this many cells (every piece is still read; the scatter pass shrinks). Default: every
        cell. Where two principal axes explain similar variance, a sample rotates them and the
        colours move: ``benchmarks/check_sampled_fit.py`` measures how far on given files.
    basis : Basis, optional
        Apply this basis (with colour ranges; from :func:`fit_basis`, ``vis.basis`` or
        :func:`load_basis`) instead of fitting one, so a material gets the same colour in
        every picture drawn with it.
    mask : array, optional
        A label or boolean image ``(H, W)`` (or ``(Z, H, W)``): fit only on the cells whose
        centre lies on the mask, draw the rest dark.
    foreground : {"auto"}, optional
        DINOv2's recipe: fit, threshold the first component (Otsu's threshold; the side
        holding fewer cells is the foreground), fit again on the foreground only and draw the
        background dark. ``foreground_threshold`` / ``foreground_side`` ("above"/"below") fix
        the threshold or side instead. The chosen rule is in ``vis.foreground``.
    clusters : int, optional
        Draw a k-means label image of K clusters (seeded) of the cells in the space of the
        first ``cluster_components`` components (default ``n_components``) instead of RGB;
        labels in ``vis.labels``.
    device : str
        Where the arithmetic runs: ``"cpu"`` (numpy, the default) or a PyTorch device
        (``"cuda"``, ``"cuda:1"``, ``"mps"``; ``"torch:cpu"`` runs PyTorch on the CPU). Needs
        the ``torch`` extra; the result equals the numpy path's (uint8 ±1).
    scheduler : str or distributed.Client, optional
        Run the passes with Dask (the ``dask`` extra): ``"threads"``, ``"processes"``, the
        address of a ``dask.distributed`` scheduler (``"tcp://host:8786"``) or a ``Client``.
        Workers read the features themselves (the source must be a file path for processes
        and clusters); partial sums are reduced in a tree. The result equals the local one.
        Default: this process, no Dask.
    output : str or Path, optional
        Write the picture to this ``.zarr`` folder (OME-Zarr, see :mod:`embedview._omezarr`)
        chunk by chunk instead of returning it in memory: memory stays bounded whatever the
        output's size. The folder appears only when complete; it may replace only an earlier
        embedview output, never the embeddings or a folder holding them.
    metadata : dict, optional
        Extra JSON-able entries recorded in the ``output`` (e.g. the source and options).
    progress : bool
        Show a progress bar on stderr for work that takes over a second.

    Returns
    -------
    Visualization

    Examples
    --------
    >>> import numpy as np, embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
    >>> vis = embedview.visualize(features, original_size=(600, 900))
    >>> vis.rgb.shape, vis.scale, vis.translate
    ((43, 64, 3), (14.0625, 14.0625), (6.53125, 6.53125))
    """
    src = open_source(source, original_size)
    _check_choice("fit", fit, FIT_MODES)
    _check_choice("normalize", normalize, NORMALIZE_MODES)
    _check_choice("nonfinite", nonfinite, NONFINITE_MODES)
    _check_choice("outliers", outliers, OUTLIER_MODES)
    if fit_sample is not None and (not isinstance(fit_sample, (int, np.integer)) or fit_sample < 1000):
        raise EmbedviewError(f"fit_sample must be None (every cell) or a number of cells ≥ 1000; got {fit_sample!r}.")
    if basis is not None:
        from ._basis_file import check_basis_channels

        check_basis_channels(basis, src.n_channels, src.name)
        if basis.lo is None:
            raise EmbedviewError("the basis given has no colour ranges; pass vis.basis, a basis from "
                                 "fit_basis() or one loaded with load_basis().")
        if foreground is not None:
            raise EmbedviewError("foreground='auto' fits a basis, but a basis was given; pass one of them.")
        n_components, fit = basis.n_components, "joint"
    else:
        check_n_components(n_components, src.n_channels)
    job = _Job(n_components, normalize, nonfinite, outliers, fit_sample, _rgb_components(rgb_components, n_components),
               basis, None if mask is None else image_mask(mask, src.shape),
               _foreground_options(foreground, foreground_threshold, foreground_side),
               _cluster_options(clusters, cluster_components, n_components, output))
    grid = src.output_grid(pixel_size)
    out = None
    if output is not None:
        from ._io import check_output

        # The output may not replace the embeddings (or hold them) nor anything embedview did not write.
        read = source if isinstance(source, (str, os.PathLike)) else src.name  # a Source's name is its path
        read = read if os.path.exists(read) else None
        out = check_output(output, stack=src.is_stack, inputs=[("the embeddings", read)])
        if out.suffix.lower() != ".zarr":
            raise EmbedviewError(f"output= writes OME-Zarr: give a path ending in .zarr, not {out.name}.")

    pieces = src.pieces()
    if fit == "joint":
        groups = [pieces]
    else:
        groups = [[p for p in pieces if p.z == z] for z in sorted({p.z for p in pieces}, key=lambda z: z or 0)]
    if src.is_stack:
        scale, translate = (1.0,) + grid.scale, (0.0,) + grid.translate
    else:
        scale, translate = grid.scale, grid.translate
    if scheduler is None:
        executor = LocalExecutor(src, engine_for(device))
    else:  # the workers build their engines: this process may have no GPU
        from ._dask import DaskExecutor

        executor = DaskExecutor(src, scheduler, device)
    with contextlib.closing(executor):
        if out is None:
            sink = MemorySink(src.n_slices or 1, grid, n_components)
            bases, selections, centres = _run(src, groups, executor, sink, job, progress)
            components, rgb, labels = sink.components, sink.rgb, sink.labels
            if not src.is_stack:
                components, rgb = components[0], rgb[0]
                labels = None if labels is None else labels[0]
            return Visualization(rgb, components, scale, translate, bases, src.layout, src.shape,
                                 labels=labels, selections=selections, centres=centres)

        from ._io import atomic_path, output_metadata
        from ._sinks import ZarrSink

        with atomic_path(out, directory=True) as tmp:
            # Workers elsewhere read the projected pieces from disk, not from this process's memory.
            sink = ZarrSink(tmp, pieces, grid, src.n_slices, n_components,
                            on_disk=True if getattr(executor, "remote", False) else None)
            try:
                bases, selections, centres = _run(src, groups, executor, sink, job, progress)
                vis = Visualization(None, None, scale, translate, bases, src.layout, src.shape, out,
                                    selections=selections)
                sink.finish(scale, translate, output_metadata(vis, metadata))
            finally:
                sink.close()
        return vis


@dataclass(frozen=True)
class _Job:
    """The options of one :func:`visualize` run, checked."""

    n_components: int
    normalize: str
    nonfinite: str
    outliers: str
    fit_sample: int | None
    shown: tuple
    basis: Basis | None = None
    mask: object = None
    foreground: dict | None = None
    clusters: tuple | None = None  # (K, components used)


def _run(src, groups, executor, sink, job: _Job, progress) -> tuple[tuple, tuple]:
    """Fit, project and colour each group of pieces into ``sink``; return the bases, the cell
    selections and the cluster centres (one per group)."""
    pieces = src.pieces()
    index = {id(p): i for i, p in enumerate(pieces)}
    passes = (0 if job.basis is not None else 1 + 2 * bool(job.foreground)) + 1
    bar = progress_bar(passes * len(pieces), progress, desc="embedview")
    bases, selections, centres = [], [], []
    with blas_threads(), contextlib.closing(bar):
        options = PassOptions(job.n_components, job.nonfinite, job.outliers, job.fit_sample, job.mask)
        fitted = [job.basis] * len(groups)
        if job.basis is None:  # every group's fit at once: a cluster fits the slices in parallel
            fitted = executor.fit_many(groups, options, bar)
        rates = [range_sample_rate(group) for group in groups]
        # Without the foreground pass the bases are final: every group's projection can start at once.
        projections = (executor.project_many(groups, fitted, rates, options, bar)
                       if job.foreground is None else None)
        for group, basis, rate in zip(groups, fitted, rates):
            select = job.mask
            if job.foreground is not None:
                first = _project_all(executor, group, basis, rate, options, bar, lambda *a: None)
                select = Foreground(basis, choose_threshold(first[:, 0], **job.foreground), job.mask)
                basis = executor.fit(group, replace(options, select=select), bar)
            place = lambda piece, projected: sink.place(index[id(piece)], piece, projected)  # noqa: E731
            if projections is not None:
                samples = _collect(next(projections), basis, place)
            else:
                samples = _project_all(executor, group, basis, rate, replace(options, select=select), bar, place)
            if job.basis is None:
                basis = basis.with_ranges(*colour_ranges(samples, job.normalize, basis.scale_reference))
            bases.append(basis)
            selections.append(select)
            zs = sorted({p.z or 0 for p in group})
            sink.colour(zs, basis, job.shown, executor)
            if job.clusters is not None:
                k, m = job.clusters
                centres.append(cluster_centres(samples[:, :m], k))
                sink.cluster(zs, centres[-1], m)
    return tuple(bases), tuple(selections), tuple(centres)


def _project_all(executor, group, basis, rate, options, bar, place) -> np.ndarray:
    """Project every piece of ``group`` into ``place``; return the range sample ``(n, k)``."""
    return _collect(executor.project(group, basis, rate, options, bar), basis, place)


def _collect(projected_pieces, basis, place) -> np.ndarray:
    """Place each ``(piece, projected, sample)``; return the samples stacked ``(n, k)``."""
    samples = []
    for piece, projected, sample in projected_pieces:
        place(piece, projected)
        samples.append(sample)
    return np.concatenate(samples) if samples else np.empty((0, basis.n_components), np.float32)


def cluster_centres(points: np.ndarray, k: int) -> np.ndarray:
    """k-means centres (seeded) of sampled cells' components ``(n, m)``."""
    from ._clusters import cluster

    return cluster(points, k, seed=CLUSTER_SEED)[1]


def _foreground_options(foreground, threshold, side) -> dict | None:
    if foreground is None:
        if threshold is not None or side is not None:
            raise EmbedviewError("foreground_threshold and foreground_side need foreground='auto'.")
        return None
    if foreground != "auto":
        raise EmbedviewError(f"foreground must be None or 'auto'; got {foreground!r}.")
    if side is not None and side not in ("above", "below"):
        raise EmbedviewError(f"foreground_side must be 'above' or 'below'; got {side!r}.")
    return {"threshold": None if threshold is None else float(threshold), "side": side}


def _cluster_options(clusters, components, n_components, output) -> tuple | None:
    if clusters is None:
        return None
    if not isinstance(clusters, (int, np.integer)) or clusters < 2:
        raise EmbedviewError(f"clusters must be a number of clusters ≥ 2; got {clusters!r}.")
    m = n_components if components is None else components
    if not isinstance(m, (int, np.integer)) or not 1 <= m <= n_components:
        raise EmbedviewError(
            f"cluster_components={components!r} must lie between 1 and n_components={n_components}; "
            "raise n_components to cluster in more components.")
    if output is not None:
        raise EmbedviewError("clusters are drawn in memory; write them to .png, .tif, .npy or .npz, not .zarr.")
    return int(clusters), int(m)


def render_plane(source, basis: Basis, pixel_size, z: int | None = None,
                 rgb_components: tuple[int, ...] | None = None,
                 device: str = "cpu", select=None, centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one slice with an already fitted basis (with colour ranges) at ``pixel_size``.

    Only the pieces of slice ``z`` are read, so this stays cheap for a long stack.

    Parameters
    ----------
    source : str, path, dict, array or Source
        The embeddings (as for :func:`visualize`).
    basis : Basis
        A fitted basis with colour ranges, e.g. ``vis.bases[0]``.
    pixel_size : float or (float, float)
        Output pixel size in image pixels.
    z : int, optional
        Slice of a stack (``None`` for a 2D image).
    rgb_components : tuple of int, optional
        Which components become red, green and blue.
    device : str
        As for :func:`visualize`.
    select, centres : optional
        A visualization's ``selections[i]`` (draw only those cells) and ``centres[i]`` (draw
        cluster labels instead of RGB).

    Returns
    -------
    rgb : ndarray of uint8, shape (H, W, 3)
    components : ndarray of float32, shape (H, W, n_components); NaN where nothing is drawn

    Examples
    --------
    >>> import numpy as np, embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
    >>> vis = embedview.visualize(features, original_size=(600, 900))
    >>> rgb, _ = render_plane(embedview.open_source(features, (600, 900)), vis.basis, pixel_size=1)
    >>> rgb.shape
    (600, 900, 3)
    """
    src = open_source(source)
    grid = OutputGrid.for_image(src.image_shape, pixel_size)
    pieces = [p for p in src.pieces() if p.z == z]
    if not pieces:
        raise EmbedviewError(f"{src.name} has no slice {z}; it has {src.n_slices or 0} slices.")
    components = place_plane(src, pieces, basis, grid, engine_for(device), select)
    if centres is not None:
        from ._clusters import assign, labels_to_rgb

        m = centres.shape[1]
        labels = assign(components[..., :m].reshape(-1, m), centres).reshape(grid.shape)
        return labels_to_rgb(labels, len(centres)), components
    rgb = np.zeros(grid.shape + (3,), np.uint8)
    colour(components, basis, _rgb_components(rgb_components, basis.n_components), rgb)
    return rgb, components


def place_plane(src: Source, pieces: list[Piece], basis, grid: OutputGrid, engine=None, select=None,
                bar=None) -> np.ndarray:
    """Project ``pieces`` (one slice) with ``basis`` and place them on ``grid``: ``(h, w, k)``
    float32, NaN where nothing is drawn."""
    components = np.full(grid.shape + (basis.n_components,), np.nan, np.float32)
    placer = Placer(grid)
    options = PassOptions(basis.n_components, nonfinite="omit", select=select)
    for piece, projected, _ in LocalExecutor(src, engine).project(pieces, basis, 0.0, options, bar):
        placer.place(components, piece, projected)
    return components


def _rgb_components(rgb_components, n_components) -> tuple[int, ...]:
    if rgb_components is None:
        return tuple(range(min(3, n_components)))
    shown = tuple(int(c) for c in rgb_components)
    if not 1 <= len(shown) <= 3 or any(not 0 <= c < n_components for c in shown):
        raise EmbedviewError(
            f"rgb_components={list(rgb_components)} must name one to three of the {n_components} "
            f"computed components (0 to {n_components - 1}).")
    return shown


def check_n_components(n_components, n_channels: int) -> None:
    if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= n_channels:
        raise EmbedviewError(
            f"n_components={n_components!r} is not possible for features with {n_channels} "
            f"channels; choose 1 to {n_channels}.")


def _check_choice(name, value, choices):
    if value not in choices:
        raise EmbedviewError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
