"""``visualize``: the one-call convenience over :class:`embedview.PCA` (source → fit → draw)."""

from __future__ import annotations

import numpy as np

from .._common.deprecation import FIT_MODES, check_choice, deprecate_parameters, shown_components
from .._common.errors import EmbedviewError, arg
from .._common.geometry import OutputGrid
from .._common.limits import check_picture_fits
from .._inputs.sources import Piece, Source, open_source
from .._model.engines import engine_for
from .._model.fit import Basis
from .._outputs.render import Placer
from .._outputs.sinks import colour
from .._outputs.visualization import Visualization
from .executors import LocalExecutor, PassOptions
from .settings import Draw, Execution

__all__ = ["visualize", "render_plane", "place_plane", "Visualization"]

#: The keywords visualize() took before the estimator, and what replaces each.
_DEPRECATED = {
    "nonfinite": "PCA(nonfinite=...).fit_transform(source)",
    "outliers": "PCA(outliers=...).fit_transform(source)",
    "fit_sample": "PCA(fit_sample=...).fit_transform(source)",
    "mask": "PCA(...).fit_transform(source, mask=...)",
    "foreground": "PCA(...).fit_transform(source, foreground='auto')",
    "foreground_threshold": "PCA(...).fit_transform(source, foreground={'threshold': t})",
    "foreground_side": "PCA(...).fit_transform(source, foreground={'side': s})",
    "clusters": "embedview.cluster(vis, k)",
    "cluster_components": "embedview.cluster(vis, k, components=m)",
    "device": "execution=embedview.Execution(device=...)",
    "scheduler": "execution=embedview.Execution(scheduler=...)",
    "progress": "execution=embedview.Execution(progress=True)",
    "metadata": "PCA(...).fit_transform(source, output=..., metadata=...)",
    "basis": "PCA.from_basis(basis).transform(source)",
}
#: ``device=`` of :func:`render_plane`, whose place is ``Execution``.
_PLANE_DEPRECATED = {"device": "execution=embedview.Execution(device=...)"}


def _visualize_all(source, n_components=None, fit="joint", normalize="robust", pixel_size=None, *,
                   original_size=None, rgb_components=None, basis=None, output=None, execution=None,
                   nonfinite="raise", outliers="exclude", fit_sample=None, mask=None, foreground=None,
                   foreground_threshold=None, foreground_side=None, clusters=None, cluster_components=None,
                   device=None, scheduler=None, progress=None, metadata=None, upsample=None) -> Visualization:
    """:func:`visualize` with every keyword it ever took (the old ones arrive here through
    :func:`embedview._common.deprecation.deprecate_parameters`)."""
    from dataclasses import replace

    from .estimator import PCA
    from .settings import Output

    given = {k: v for k, v in (("device", device), ("scheduler", scheduler), ("progress", progress))
             if v is not None}
    if given:
        execution = replace(execution or Execution(), **given)
    if foreground is None and (foreground_threshold is not None or foreground_side is not None):
        raise EmbedviewError(f"{arg('foreground_threshold')} and {arg('foreground_side')} need {arg('foreground', 'auto')}.")
    if foreground is not None:
        if foreground != "auto":
            raise EmbedviewError(f"foreground must be None or 'auto'; got {foreground!r}.")
        foreground = {"threshold": foreground_threshold, "side": foreground_side}
    check_choice("fit", fit, FIT_MODES)  # visualize's own name for PCA's fit_mode
    draw = Draw(pixel_size, rgb_components, upsample, clusters, cluster_components)
    outputs = None if output is None else [Output.of(output, metadata)]
    if basis is not None:
        if isinstance(basis, Basis) and n_components is not None and n_components != basis.n_components:
            raise EmbedviewError(f"{arg('n_components', n_components)} but the basis given has {basis.n_components} "
                                 f"components; drop {arg('n_components')} (the basis brings its own).")
        if fit != "joint":
            raise EmbedviewError(f"{arg('fit', fit)} fits bases, but a basis was given; drop {arg('fit')}.")
        for name, value, default in (("normalize", normalize, "robust"), ("outliers", outliers, "exclude"),
                                     ("fit_sample", fit_sample, None)):
            if value != default:  # the basis brings its colour ranges, and nothing is fitted
                raise EmbedviewError(f"{arg(name, value)} describes a fit, but a basis was given; drop {arg(name)}.")
        model = PCA.from_basis(basis, nonfinite=nonfinite, execution=execution)
    else:
        model = PCA(3 if n_components is None else n_components, fit_mode=fit, normalize=normalize,
                    outliers=outliers, nonfinite=nonfinite, fit_sample=fit_sample, execution=execution)
    return model.run([source], draw, outputs, mask=mask, foreground=foreground, refit=basis is None,
                     original_size=original_size)[0]


@deprecate_parameters(_DEPRECATED, route=_visualize_all)
def visualize(
    source,
    n_components: int | None = None,
    fit: str = "joint",
    normalize: str = "robust",
    pixel_size: float | tuple[float, float] | None = None,
    *,
    original_size: tuple[int, int] | None = None,
    rgb_components: tuple[int, int, int] | None = None,
    upsample=None,
    output=None,
    execution: Execution | None = None,
) -> Visualization:
    """Project embeddings on their principal components and draw them as RGB, exactly placed.

    The one-call convenience over :class:`embedview.PCA`: ``visualize(source, ...)`` is
    ``PCA(n_components, fit_mode=fit, normalize=normalize).fit_transform(source, ...)[0]``; to draw with
    a fitted basis, ``PCA.from_basis(basis).transform(source, ...)``. The model's other options
    (``outliers``, ``nonfinite``, ``fit_sample``), the cell selections (``mask``,
    ``foreground``) and OME-Zarr ``metadata`` are :class:`embedview.PCA`'s; clusters are
    :func:`embedview.cluster`'s. Those keywords still work here, with a ``FutureWarning``.

    Parameters
    ----------
    source : str, path, dict or array
        A micro_sam embedding container (zarr v2/v3: single, stack, tiled, tiled stack,
        masked), an ``ImageEmbeddings`` dict, or an array ``(1, C, h, w)``/``(Z, 1, C, h, w)``
        (then give ``original_size``).
    n_components : int, optional
        Principal components to compute (default 3).
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
    upsample : {"nearest", "bilinear", "guided"} or Upsample, optional
        How cells become output pixels: ``"nearest"`` (flat cells, the default),
        ``"bilinear"``, or edge-aware ``embedview.Upsample("guided", guide=image)`` that follows
        the image's edges (:class:`embedview.Upsample`). The geometry stays exact.
    output : str or Path, optional
        Write the picture to this ``.zarr`` folder (OME-Zarr, see :mod:`embedview._outputs.omezarr`)
        chunk by chunk instead of returning it in memory: memory stays bounded whatever the
        output's size. The folder appears only when complete; it may replace only an earlier
        embedview output, never the embeddings or a folder holding them
        (``embedview.ZarrOutput(path, overwrite=True)`` also replaces a folder embedview wrote as
        something else, never one it did not write).
    execution : Execution, optional
        Device (numpy or PyTorch), Dask scheduler and progress bar (:class:`embedview.Execution`).

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
    return _visualize_all(source, n_components, fit, normalize, pixel_size, original_size=original_size,
                          rgb_components=rgb_components, output=output, execution=execution, upsample=upsample)


def _render_plane_all(source, basis, pixel_size, z=None, rgb_components=None, *, select=None, centres=None,
                      upsample=None, execution=None, device=None):
    """:func:`render_plane` with its old ``device=`` (routed here with a ``FutureWarning``)."""
    if device is not None:
        execution = Execution(device=device) if execution is None else Execution(
            device, execution.scheduler, execution.progress)
    return render_plane(source, basis, pixel_size, z, rgb_components, select=select, centres=centres,
                        upsample=upsample, execution=execution)


@deprecate_parameters(_PLANE_DEPRECATED, route=_render_plane_all)
def render_plane(source, basis: Basis, pixel_size, z: int | None = None,
                 rgb_components: tuple[int, ...] | None = None, *, select=None,
                 centres: np.ndarray | None = None, upsample=None,
                 execution: Execution | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    select, centres : optional
        A visualization's ``selections[i]`` (draw only those cells) and ``centres[i]`` (draw
        cluster labels instead of RGB).
    upsample : {"nearest", "bilinear", "guided"} or Upsample, optional
        As for :func:`visualize` (a guide covers the whole source: ``(Z, H, W)`` for a stack).
        An already resolved :class:`~embedview._outputs.guide.Upsampling` of this source is
        used as it is (several planes drawn with one guide open it once).
    execution : Execution, optional
        Its ``device`` computes the plane (in this process: one plane needs no scheduler).

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
    from .._outputs.guide import resolve_upsampling

    src = open_source(source)
    upsampling = resolve_upsampling(upsample, src.shape, str(src.name))
    grid = OutputGrid.for_image(src.image_shape, pixel_size)
    check_picture_fits(1, grid.shape, basis.n_components)
    pieces = [p for p in src.pieces() if p.z == z]
    if not pieces:
        raise EmbedviewError(f"{src.name} has no slice {z}; it has {src.n_slices or 0} slices.")
    device = (execution or Execution()).device
    components = place_plane(src, pieces, basis, grid, engine_for(device), select, upsample=upsampling)
    if centres is not None:
        from .._model.clusters import assign, labels_to_rgb

        m = centres.shape[1]
        labels = assign(components[..., :m].reshape(-1, m), centres).reshape(grid.shape)
        return labels_to_rgb(labels, len(centres)), components
    rgb = np.zeros(grid.shape + (3,), np.uint8)
    colour(components, basis, shown_components(rgb_components, basis.n_components), rgb)
    return rgb, components


def place_plane(src: Source, pieces: list[Piece], basis, grid: OutputGrid, engine=None, select=None,
                bar=None, upsample=None) -> np.ndarray:
    """Project ``pieces`` (one slice) with ``basis`` and place them on ``grid``: ``(h, w, k)``
    float32, NaN where nothing is drawn (its callers check the picture's size first).
    ``upsample``: a resolved :class:`embedview._outputs.guide.Upsampling` or ``None`` (nearest)."""
    components = np.full(grid.shape + (basis.n_components,), np.nan, np.float32)
    placer = Placer(grid, upsample, engine)
    options = PassOptions(basis.n_components, nonfinite="omit", select=select)
    if hasattr(basis, "feature_scale"):  # a Basis (not a similarity's query): read at its fit's scale
        src.use_feature_scale(basis.feature_scale)
    for piece, projected, _ in LocalExecutor(src, engine).project(pieces, basis, 0.0, options, bar):
        placer.place(components, piece, projected)
    return components
