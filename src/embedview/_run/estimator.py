"""``PCA``: the model as an estimator (scikit-learn's contract), and ``cluster``.

The constructor only stores parameters; :meth:`PCA.fit` learns one basis over every input given
(or one per slice), with its colour ranges; :meth:`PCA.transform` draws any input with it;
:meth:`PCA.fit_transform` does both in one run of the pipeline (:mod:`embedview._run.pipeline`), for
one input or several. Learned state ends in an underscore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._common.deprecation import (
    FIT_MODES,
    NONFINITE_MODES,
    OUTLIER_MODES,
    check_choice,
    check_fit_sample,
    check_n_components,
    cluster_options,
    foreground_options,
    shown_components,
)
from .._common.errors import EmbedviewError, arg
from .._inputs.composite import Inputs, open_inputs
from .._model.colors import NORMALIZE_MODES
from .._model.fit import Basis
from .._model.selection import Foreground, image_mask
from .executors import PassOptions
from .pipeline import Execution, Job, execute, output_guard


class PCA:
    """Principal components of embeddings, drawn as RGB exactly over the image.

    Parameters
    ----------
    n_components : int
        Principal components to compute.
    fit : {"joint", "per_slice"}
        ``joint``: one basis for every input, slice and tile, so a colour means the same
        everywhere. ``per_slice``: a basis per slice of one stack (micro_sam's behaviour).
    normalize : {"robust", "channel", "global"}
        Colour ranges: 1st–99th percentile per channel, min–max per channel, or one min–max over
        all channels.
    outliers : {"exclude", "keep"}
        ``exclude`` leaves rare high-norm cells (farther from the data than 10× the median
        distance, at most 1% of cells: the artefact tokens of ViTs) out of the fit so they cannot
        turn the principal axes towards themselves; they are still drawn (clipped).
    nonfinite : {"raise", "omit"}
        NaN/Inf features raise an error naming where they are, or are left out of the fit and
        drawn black.
    fit_sample : int, optional
        Fit inputs with more drawn cells than this on a seeded uniform random sample of about
        this many cells (every piece is still read). Default: every cell.
    execution : Execution, optional
        Device, Dask scheduler and progress bar (:class:`embedview.Execution`).

    The parameters are stored as given (``fit`` as ``fit_mode``: ``fit`` is the method);
    :meth:`get_params` returns them by their constructor names.

    Attributes
    ----------
    bases_ : tuple of Basis
        The fitted bases with colour ranges: one (``fit="joint"``) or one per slice.
    basis_ : Basis
        The one basis of a joint fit.
    components_, mean_, explained_variance_ratio_ : ndarray
        Those of ``basis_``.
    n_channels_ : int
        Channels of the features it was fitted on.
    selections_ : tuple
        Per basis, the cells it was fitted on (an image mask or a foreground rule), or ``None``.
    foreground_ : tuple of ForegroundRule
        With ``foreground=``: the rule chosen per basis.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> rng = np.random.default_rng(0)
    >>> a, b, c = (embedview.open_source(rng.normal(size=(1, 8, 64, 64)).astype(np.float32), (600, 900))
    ...            for _ in range(3))
    >>> model = embedview.PCA(n_components=3).fit(a, b)
    >>> model
    PCA()
    >>> model.transform(c).rgb.shape, model.components_.shape
    ((43, 64, 3), (3, 8))
    """

    def __init__(self, n_components: int = 3, *, fit: str = "joint", normalize: str = "robust",
                 outliers: str = "exclude", nonfinite: str = "raise", fit_sample: int | None = None,
                 execution: Execution | None = None):
        self.n_components = n_components
        self.fit_mode = fit
        self.normalize = normalize
        self.outliers = outliers
        self.nonfinite = nonfinite
        self.fit_sample = fit_sample
        self.execution = execution

    _DEFAULTS = {"n_components": 3, "fit": "joint", "normalize": "robust", "outliers": "exclude",
                 "nonfinite": "raise", "fit_sample": None, "execution": None}

    def get_params(self) -> dict:
        """The constructor's parameters."""
        return {"n_components": self.n_components, "fit": self.fit_mode, "normalize": self.normalize,
                "outliers": self.outliers, "nonfinite": self.nonfinite, "fit_sample": self.fit_sample,
                "execution": self.execution}

    def __repr__(self) -> str:
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != self._DEFAULTS[k]]
        return f"PCA({', '.join(changed)})"

    # -- fitted state ---------------------------------------------------------------------------

    @property
    def basis_(self) -> Basis:
        bases = self._fitted()
        if len(bases) != 1:
            raise EmbedviewError(f"this model has {len(bases)} bases (fit='per_slice'); use model.bases_[z].")
        return bases[0]

    components_ = property(lambda self: self.basis_.components)
    mean_ = property(lambda self: self.basis_.mean)
    explained_variance_ratio_ = property(lambda self: self.basis_.explained_variance_ratio)
    n_channels_ = property(lambda self: self._fitted()[0].n_channels)

    @property
    def foreground_(self) -> tuple:
        self._fitted()
        return tuple(s.rule for s in self.selections_ if isinstance(s, Foreground))

    def _fitted(self) -> tuple:
        if not hasattr(self, "bases_"):
            raise EmbedviewError("this PCA is not fitted yet; call fit(...) or PCA.load(path) first.")
        return self.bases_

    # -- fit and draw ---------------------------------------------------------------------------

    def fit(self, *sources, mask=None, foreground=None, original_size=None) -> "PCA":
        """Fit one basis (with colour ranges) over the cells of every input; return ``self``.

        Parameters
        ----------
        *sources : str, path, dict, array or Source
            Embeddings as :func:`embedview.visualize` takes them, all of one model; any layouts
            mixed. ``fit="per_slice"`` takes one stack.
        mask : array, optional
            A label or boolean image ``(H, W)`` (or ``(Z, H, W)``) of the inputs' shape: fit only
            on the cells whose centre lies on it (and draw the rest dark).
        foreground : {"auto"} or dict, optional
            DINOv2's recipe: fit, threshold the first component (Otsu's threshold; the side
            holding fewer cells is the foreground), fit again on the foreground only.
            ``{"threshold": t, "side": "above"|"below"}`` fixes either part. The rule is in
            :attr:`foreground_` and applies to every input drawn with this model.
        original_size : (int, int), optional
            Image size for plain arrays.
        """
        self._run(sources, mask=mask, foreground=foreground, original_size=original_size, draw=False)
        return self

    def fit_transform(self, *sources, mask=None, foreground=None, pixel_size=None, rgb_components=None,
                      output=None, metadata=None, original_size=None, upsample=None):
        """:meth:`fit` and :meth:`transform` in one run of the pipeline (one read of each piece per pass).

        Returns one :class:`Visualization`, or a list of them for several inputs (``output``
        then is a list: one ``.zarr`` path or ``None`` per input). ``upsample``: as for
        :meth:`transform`, or for several inputs a list, one per input (each ``guided`` by its
        own image).
        """
        return self._run(sources, mask=mask, foreground=foreground, pixel_size=pixel_size,
                         rgb_components=rgb_components, output=output, metadata=metadata,
                         original_size=original_size, upsample=upsample)

    def transform(self, source, *, pixel_size=None, rgb_components=None, mask=None, output=None,
                  metadata=None, original_size=None, upsample=None):
        """Draw ``source`` with the fitted basis (or bases, per slice) and colour ranges.

        Parameters
        ----------
        source : str, path, dict, array or Source
            Embeddings of the model it was fitted on.
        pixel_size : float or (float, float), optional
            Output pixel size in image pixels; default the embedding grid. ``1`` draws at image
            resolution.
        rgb_components : tuple of int, optional
            Which components become red, green and blue; default the first three.
        mask : array, optional
            Draw only the cells on this mask of ``source``'s image (a foreground rule learned by
            :meth:`fit` applies within it).
        output : str, Path or ZarrOutput, optional
            Write the picture to this ``.zarr`` folder (OME-Zarr) chunk by chunk instead of
            returning it in memory (``embedview.ZarrOutput(path, overwrite=True)``: see
            :func:`embedview._common.output_paths.guard_output`).
        metadata : dict, optional
            Extra JSON-able entries recorded in the ``output``.
        original_size : (int, int), optional
            Image size for plain arrays.
        upsample : {"nearest", "bilinear", "guided"} or Upsample, optional
            How cells become output pixels (default ``"nearest"``: flat cells);
            ``embedview.Upsample("guided", guide=image)`` follows the image's edges
            (see :class:`embedview.Upsample`). Only the interpolation changes, not the geometry.

        Returns
        -------
        Visualization
        """
        return self._run([source], pixel_size=pixel_size, rgb_components=rgb_components, mask=mask,
                         output=output, metadata=metadata, original_size=original_size, fitted=True,
                         upsample=upsample)

    def _run(self, sources, *, mask=None, foreground=None, pixel_size=None, rgb_components=None, output=None,
             metadata=None, original_size=None, clusters=None, cluster_components=None, fitted=False,
             draw=True, extra_inputs=(), upsample=None):
        """The one entry into the pipeline: fit (unless ``fitted``) and draw (if ``draw``)."""
        self._check_params()
        inputs = sources[0] if len(sources) == 1 and isinstance(sources[0], Inputs) else (
            open_inputs(sources, original_size))
        many = len(inputs.sources) > 1
        upsampling = _upsampling(upsample, inputs.sources) if draw else None
        if fitted:
            if foreground is not None:
                raise EmbedviewError(f"{arg('foreground', 'auto')} fits a basis, but a basis was given; pass one of them.")
            bases = self._fitted()
            for src in inputs.sources:
                _check_basis(bases, src)
            k = bases[0].n_components
        else:
            if self.fit_mode == "per_slice" and many:
                raise EmbedviewError(f"{arg('fit', 'per_slice')} fits one stack; fit several inputs with {arg('fit', 'joint')}.")
            k = self.n_components
            check_n_components(k, inputs.n_channels)
        shown = shown_components(rgb_components, k)
        select = None
        if mask is not None:  # one mask for every input: each must have its shape
            select = image_mask(mask, inputs.sources[0].shape)
            for src in inputs.sources[1:]:
                if tuple(src.shape) != tuple(inputs.sources[0].shape):
                    image_mask(mask, src.shape)  # raises, naming the shapes
        clusters = cluster_options(clusters, cluster_components, k)
        outputs = output if many else [output]
        if outputs is None:
            outputs = [None] * len(inputs.sources)
        if len(outputs) != len(inputs.sources):
            raise EmbedviewError(f"output= needs one path (or None) per input: {len(inputs.sources)}; got {len(outputs)}.")
        if clusters is not None and any(o is not None for o in outputs):
            raise EmbedviewError("clusters are drawn in memory; write them to .png, .tif, .npy or .npz, not .zarr.")
        outputs = output_guard(outputs, inputs.sources, extra_inputs)
        options = PassOptions(k, self.nonfinite, self.outliers, self.fit_sample, select)
        if fitted:
            selections = tuple(_transfer(s, select) for s in self.selections_)
            job = Job(options, self.normalize, shown, bases=bases, selections=selections,
                      clustered=clusters is not None)
            groups = "joint" if len(bases) == 1 else "per_slice"
        else:
            job = Job(options, self.normalize, shown, foreground=foreground_options(foreground),
                      clustered=clusters is not None)
            groups = self.fit_mode
        bases, selections, visualizations = execute(
            inputs, job, fit=groups, pixel_size=pixel_size, outputs=outputs, metadata=metadata,
            execution=self.execution, draw=draw, upsample=upsampling)
        if not fitted:
            self.bases_, self.selections_ = bases, selections
        if not draw:
            return None
        if clusters is not None:
            visualizations = cluster(visualizations, *clusters)
        return visualizations if many else visualizations[0]

    def _check_params(self) -> None:
        check_choice("fit", self.fit_mode, FIT_MODES)
        check_choice("normalize", self.normalize, NORMALIZE_MODES)
        check_choice("nonfinite", self.nonfinite, NONFINITE_MODES)
        check_choice("outliers", self.outliers, OUTLIER_MODES)
        check_fit_sample(self.fit_sample)
        if self.execution is not None and not isinstance(self.execution, Execution):
            raise EmbedviewError(f"execution must be an embedview.Execution; got {type(self.execution).__name__}.")

    # -- files ----------------------------------------------------------------------------------

    def save(self, path, *, fitted_on=(), overwrite: bool = False) -> Path:
        """Write the fitted basis and colour ranges to a ``.npz`` basis file (see :func:`embedview.save_basis`).

        A foreground rule learned by :meth:`fit` is saved with it (in the file's metadata), so
        :meth:`load` draws other inputs with the same foreground. ``overwrite=True`` may replace a
        file embedview did not write as a basis.
        """
        from .._model.basis_file import save_basis

        basis, selection = self.basis_, self.selections_[0]
        extra = {"foreground": _foreground_to_json(selection)} if isinstance(selection, Foreground) else None
        return save_basis(path, basis, normalize=self.normalize, fitted_on=[str(f) for f in fitted_on], extra=extra,
                          overwrite=overwrite)

    @classmethod
    def load(cls, path, **params) -> "PCA":
        """A fitted model from a basis file written by :meth:`save`, :func:`embedview.save_basis`
        or ``embedview fit`` (older files too). ``params``: the constructor's other parameters
        (``normalize`` defaults to the file's)."""
        from .._model.basis_file import load_basis

        basis, meta = load_basis(path)
        params.setdefault("normalize", meta.get("normalize", "robust"))
        model = cls.from_basis(basis, **params)
        if "foreground" in meta:
            model.selections_ = (_foreground_from_json(meta["foreground"], basis, path),)
        return model

    @classmethod
    def from_basis(cls, basis: Basis, **params) -> "PCA":
        """A fitted model applying ``basis`` (with colour ranges: ``vis.basis``, :func:`embedview.load_basis`)."""
        if not isinstance(basis, Basis):
            raise EmbedviewError(f"basis must be an embedview Basis; got {type(basis).__name__}.")
        if basis.lo is None:
            raise EmbedviewError("the basis given has no colour ranges; pass vis.basis, a basis from "
                                 "fit_basis() or one loaded with load_basis().")
        model = cls(basis.n_components, **params)
        model.bases_, model.selections_ = (basis,), (None,)
        return model


def _check_basis(bases: tuple, src) -> None:
    from .._model.basis_file import check_basis_channels

    check_basis_channels(bases[0], src.n_channels, src.name)
    if len(bases) > 1 and src.n_slices != len(bases):
        raise EmbedviewError(
            f"this model has one basis per slice of a {len(bases)}-slice stack, but {src.name} has "
            f"{src.n_slices or 0} slices; draw it with a model fitted on it (or {arg('fit', 'joint')}).")


def _foreground_to_json(selection: Foreground) -> dict:
    """The foreground rule and the basis whose first component it thresholds, as JSON (exact:
    JSON floats round-trip float64)."""
    first, rule = selection.basis, selection.rule
    return {"threshold": float(rule.threshold), "side": rule.side, "fraction": float(rule.fraction),
            "mean": first.mean.tolist(), "components": first.components.tolist(),
            "dtypes": [str(first.mean.dtype), str(first.components.dtype)]}


def _foreground_from_json(entry, basis: Basis, path) -> Foreground:
    from .._model.foreground import rule_from_json

    rule, mean, components = rule_from_json(entry, basis.n_channels, basis.scale_reference, path,
                                            "fit the basis again (embedview fit --foreground auto)")
    zeros = np.zeros(len(components))
    return Foreground(Basis(mean, components, zeros, zeros, 0), rule)


def _transfer(selection, mask_select):
    """A fitted selection for drawing another input: its foreground rule, within that input's mask."""
    if isinstance(selection, Foreground):
        return Foreground(selection.basis, selection.rule, mask_select)
    return mask_select


def cluster(visualizations, k: int, components: int | None = None, seed: int = 0):
    """k-means labels (seeded) of the pixels of one or several visualizations.

    Planes drawn with one basis share one set of centres, so a label means the same in each of
    them; a picture fitted per slice gets a set per slice (its bases span different spaces).

    Parameters
    ----------
    visualizations : Visualization or list of Visualization
        In-memory pictures (not written to ``.zarr``).
    k : int
        Number of clusters (≥ 2).
    components : int, optional
        Cluster in the first ``components`` components (default all computed).
    seed : int
        Seed of the k-means initialisation.

    Returns
    -------
    Visualization or list of Visualization
        With ``labels`` (``-1`` where nothing is drawn), ``rgb`` showing the labels and
        ``centres`` (one ``(k, components)`` array per basis).

    Examples
    --------
    >>> import numpy as np, embedview
    >>> x = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
    >>> labelled = embedview.cluster(embedview.visualize(x, original_size=(64, 64)), 4)
    >>> labelled.labels.shape, int(labelled.labels.max())
    ((64, 64), 3)
    """
    from dataclasses import replace

    from .._model.clusters import assign, labels_to_rgb
    from .._model.clusters import cluster as kmeans
    from .._outputs.visualization import Visualization

    single = isinstance(visualizations, Visualization)
    vis_list = [visualizations] if single else [None] if isinstance(visualizations, (str, bytes)) or not hasattr(
        visualizations, "__iter__") else list(visualizations)
    if not all(isinstance(v, Visualization) for v in vis_list):
        raise EmbedviewError(f"cluster() takes visualizations, not a {type(visualizations).__name__}; draw the embeddings "
                             "first: embedview.cluster(embedview.visualize(source), k).")
    if not vis_list or any(v.components is None for v in vis_list):
        raise EmbedviewError("cluster() needs visualizations in memory; draw them without output=.")
    clusters, m = cluster_options(k, components, vis_list[0].components.shape[-1])
    # Every plane (a slice, or a whole 2D picture) with the basis it was drawn with.
    planes = [(v, z, v.bases[z] if len(v.bases) > 1 else v.bases[0])
              for v in vis_list for z in range(v.components.reshape((-1,) + v.components.shape[-3:]).shape[0])]
    groups: list[list] = []  # planes sharing a basis
    for plane in planes:
        group = next((g for g in groups if _same_basis(g[0][2], plane[2])), None)
        if group is None:
            groups.append([plane])
        else:
            group.append(plane)
    labels = {id(v): np.empty(v.components.shape[:-1], np.int32) for v in vis_list}
    centres = {}
    for group in groups:
        def points(v, z):
            return v.components.reshape((-1,) + v.components.shape[-3:])[z, ..., :m]
        # NaN rows (nothing drawn) are skipped, and k-means fits on a seeded subsample.
        found = kmeans(np.concatenate([points(v, z).reshape(-1, m) for v, z, _ in group]), clusters, seed=seed)[1]
        for v, z, basis in group:
            plane = points(v, z)
            labels[id(v)].reshape((-1,) + plane.shape[:2])[z] = assign(plane.reshape(-1, m), found).reshape(plane.shape[:2])
            centres[id(basis)] = found
    out = [replace(v, labels=labels[id(v)], rgb=labels_to_rgb(labels[id(v)], clusters),
                   centres=tuple(centres[id(b)] for b in v.bases)) for v in vis_list]
    return out[0] if single else out


def _same_basis(a, b) -> bool:
    return a is b or (np.array_equal(a.components, b.components) and np.array_equal(a.mean, b.mean))


def _upsampling(upsample, sources) -> list:
    """The resolved upsampling of each input (the guide checked against its shape, before any work)."""
    from .._outputs.guide import resolve_upsampling

    if isinstance(upsample, (list, tuple)):  # one per input: each guided by its own image
        if len(upsample) != len(sources):
            raise EmbedviewError(f"upsample= needs one entry per input: {len(sources)}; got {len(upsample)}.")
    elif len(sources) > 1 and (getattr(upsample, "method", upsample) == "guided"):
        raise EmbedviewError("upsample='guided' guides one input with its image; for several inputs give one "
                             "per input: upsample=[Upsample('guided', guide=image), ...].")
    else:
        upsample = [upsample] * len(sources)
    return [resolve_upsampling(u, src.shape, str(src.name)) for u, src in zip(upsample, sources)]
