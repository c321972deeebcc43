"""``PCA``: the model as an estimator (scikit-learn's contract), and ``cluster``.

The constructor only stores parameters (under their own names: :meth:`PCA.get_params` and
:meth:`PCA.set_params` are derived from its signature, so ``sklearn.base.clone`` works);
:meth:`PCA.fit` learns one basis over every input given (or one per slice), with its colour
ranges; :meth:`PCA.transform` draws any input with it; :meth:`PCA.fit_transform` does both in one
run of the pipeline (:mod:`embedview._run.pipeline`), for one input or several. :meth:`PCA.run`
is the one entry they share, public for the workflows, which bring their settings already built
(:class:`~embedview._run.settings.Draw`, :class:`~embedview._run.settings.Output`). Learned state
ends in an underscore; :attr:`PCA.is_fitted` says whether there is any.
"""

from __future__ import annotations

import inspect
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
    rename_parameter,
)
from .._common.errors import EmbedviewError, arg
from .._inputs.composite import Inputs, open_inputs
from .._model.colors import NORMALIZE_MODES
from .._model.fit import Basis
from .._model.selection import Foreground, image_mask
from .executors import PassOptions
from .pipeline import Job, execute, output_guard
from .settings import Draw, Execution, Output

#: The parameters that describe a fit: a model loaded from a basis has them from the basis.
_FIT_PARAMS = ("n_components", "fit_mode", "normalize", "outliers", "fit_sample")


class PCA:
    """Principal components of embeddings, drawn as RGB exactly over the image.

    Parameters
    ----------
    n_components : int
        Principal components to compute.
    fit_mode : {"joint", "per_slice"}
        ``joint``: one basis for every input, slice and tile, so a colour means the same
        everywhere. ``per_slice``: a basis per slice of one stack (micro_sam's behaviour).
        (Called ``fit=`` before 0.2, which still works with a ``FutureWarning``: a parameter
        named ``fit`` would be stored as ``self.fit`` and hide the method.)
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

    The parameters are stored as given, under their names, and checked when fitting (as in
    scikit-learn).

    Attributes
    ----------
    bases_ : tuple of Basis
        The fitted bases with colour ranges: one (``fit_mode="joint"``) or one per slice.
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
    fitted_on_ : int or str
        How many inputs it was fitted on, or the basis file (or ``"a basis"``) it was made from.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> rng = np.random.default_rng(0)
    >>> a, b, c = (embedview.open_source(rng.normal(size=(1, 8, 64, 64)).astype(np.float32), (600, 900))
    ...            for _ in range(3))
    >>> embedview.PCA(n_components=3)
    PCA()
    >>> model = embedview.PCA(n_components=3).fit(a, b)
    >>> model
    PCA() fitted: 3 components of 8 channels on 2 inputs
    >>> model.transform(c).rgb.shape, model.components_.shape
    ((43, 64, 3), (3, 8))
    """

    @rename_parameter("fit", "fit_mode", owner="PCA")
    def __init__(self, n_components: int = 3, *, fit_mode: str = "joint", normalize: str = "robust",
                 outliers: str = "exclude", nonfinite: str = "raise", fit_sample: int | None = None,
                 execution: Execution | None = None):
        self.n_components = n_components
        self.fit_mode = fit_mode
        self.normalize = normalize
        self.outliers = outliers
        self.nonfinite = nonfinite
        self.fit_sample = fit_sample
        self.execution = execution

    # -- parameters (scikit-learn's contract) -----------------------------------------------------

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's parameters, from its signature (as scikit-learn's ``BaseEstimator``)."""
        skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind not in skip]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters, by name (``deep``: also those of parameters that have
        ``get_params``, as ``name__param``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params) -> "PCA":
        """Set constructor parameters by name; return ``self`` (checked when fitting)."""
        names = self._get_param_names()
        for name, value in params.items():
            if name not in names:
                hint = " (the fit mode is fit_mode=)" if name == "fit" else ""
                raise EmbedviewError(f"{name!r} is not a parameter of PCA{hint}; its parameters are "
                                     f"{', '.join(names)}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items() if not _equal(v, defaults[k].default)]
        text = f"PCA({', '.join(changed)})"
        if not self.is_fitted:
            return text
        bases = self.bases_
        k, channels = bases[0].n_components, bases[0].n_channels
        what = f"{k} component{'s' * (k != 1)} of {channels} channels"
        if len(bases) > 1:
            what += f" per slice ({len(bases)} slices)"
        on = self.fitted_on_
        if isinstance(on, int):
            return f"{text} fitted: {what} on {on} input{'s' * (on != 1)}"
        return f"{text} fitted: {what}, from {on}"

    # -- fitted state ---------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether the model holds a fitted basis (from :meth:`fit`, :meth:`load` or :meth:`from_basis`)."""
        return "bases_" in vars(self)

    def __sklearn_is_fitted__(self) -> bool:  # sklearn.utils.validation.check_is_fitted asks this
        return self.is_fitted

    def check_is_fitted(self) -> tuple:
        """The fitted bases; raises :class:`EmbedviewError` if the model is not fitted."""
        if not self.is_fitted:
            raise EmbedviewError("this PCA is not fitted yet; call fit(...) or PCA.load(path) first.")
        return self.bases_

    @property
    def basis_(self) -> Basis:
        bases = self.check_is_fitted()
        if len(bases) != 1:
            raise EmbedviewError(f"this model has {len(bases)} bases (fit_mode='per_slice'); use model.bases_[z].")
        return bases[0]

    components_ = property(lambda self: self.basis_.components)
    mean_ = property(lambda self: self.basis_.mean)
    explained_variance_ratio_ = property(lambda self: self.basis_.explained_variance_ratio)
    n_channels_ = property(lambda self: self.check_is_fitted()[0].n_channels)

    @property
    def foreground_(self) -> tuple:
        self.check_is_fitted()
        return tuple(s.rule for s in self.selections_ if isinstance(s, Foreground))

    def _learned(self, bases: tuple, selections: tuple, fitted_on) -> None:
        self.bases_, self.selections_, self.fitted_on_ = bases, selections, fitted_on

    # -- fit and draw ---------------------------------------------------------------------------

    def fit(self, *sources, mask=None, foreground=None, original_size=None) -> "PCA":
        """Fit one basis (with colour ranges) over the cells of every input; return ``self``.

        Parameters
        ----------
        *sources : str, path, dict, array or Source
            Embeddings as :func:`embedview.visualize` takes them, all of one model; any layouts
            mixed. ``fit_mode="per_slice"`` takes one stack.
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
        self.run(sources, None, mask=mask, foreground=foreground, original_size=original_size)
        return self

    def fit_transform(self, *sources, mask=None, foreground=None, pixel_size=None, rgb_components=None,
                      output=None, metadata=None, original_size=None, upsample=None) -> list:
        """:meth:`fit` and :meth:`transform` in one run of the pipeline (one read of each piece per pass).

        Returns a list of :class:`Visualization`, one per input (also for one input: the type
        does not depend on how many were given). ``output``: for one input a ``.zarr`` path, for
        several a list (one ``.zarr`` path or ``None`` per input); ``metadata`` one dict, or one
        per input. ``upsample``: as for :meth:`transform`, or for several inputs a list, one per
        input (each ``guided`` by its own image).
        """
        if isinstance(upsample, (list, tuple)):
            draw = [Draw(pixel_size, rgb_components, u) for u in upsample]
        else:
            draw = Draw(pixel_size, rgb_components, upsample)
        return self.run(sources, draw, _outputs(output, metadata), mask=mask, foreground=foreground,
                        original_size=original_size)

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
        return self.run([source], Draw(pixel_size, rgb_components, upsample), _outputs(output, metadata),
                        mask=mask, refit=False, original_size=original_size)[0]

    def run(self, sources, draw: Draw | list | None = None, outputs: list | None = None, *, mask=None,
            foreground=None, refit: bool = True, original_size=None, extra_inputs=()) -> list:
        """The one entry into the pipeline: fit (``refit``) and draw (with ``draw``), in one run.

        :meth:`fit`, :meth:`transform` and :meth:`fit_transform` build their settings from
        keywords and call this; the workflows call it with settings built once by their front-end.

        Parameters
        ----------
        sources : list or Inputs
            The embeddings (as for :meth:`fit`), or already opened :class:`Inputs`.
        draw : Draw or list of Draw, optional
            How to draw every input (or each, one per input); ``None`` only fits.
        outputs : list of Output or None, optional
            Per input: written there chunk by chunk (a ``.zarr``, or the output's own sink, e.g.
            a movie), or ``None``: kept in memory. Default all in memory.
        mask, foreground :
            As for :meth:`fit` (``foreground`` only when fitting).
        refit : bool
            ``True``: learn the bases (replacing any) and draw with them; ``False``: draw with
            the fitted ones (:meth:`check_is_fitted`).
        original_size : (int, int), optional
            Image size for plain arrays.
        extra_inputs : iterable of (str, path)
            Other files the run reads (``("the image", path)``): no output may replace them.

        Returns
        -------
        list of Visualization
            One per input (empty when ``draw`` is ``None``).
        """
        self._check_params()
        if isinstance(sources, Inputs):
            inputs = sources
        elif len(sources) == 1 and isinstance(sources[0], Inputs):
            inputs = sources[0]
        else:
            inputs = open_inputs(sources, original_size)
        n = len(inputs.sources)
        draws = None if draw is None else _draws(draw, inputs.sources)
        if not refit:
            if foreground is not None:
                raise EmbedviewError(f"{arg('foreground', 'auto')} fits a basis, but a basis was given; pass one of them.")
            bases = self.check_is_fitted()
            for src in inputs.sources:
                _check_basis(bases, src)
            k = bases[0].n_components
        else:
            if self.fit_mode == "per_slice" and n > 1:
                raise EmbedviewError(f"{arg('fit_mode', 'per_slice')} fits one stack; fit several inputs with "
                                     f"{arg('fit_mode', 'joint')}.")
            k = self.n_components
            check_n_components(k, inputs.n_channels)
        clusters = None
        if draws is not None:
            for d in draws:
                d.shown(k)  # checked before any work
            clusters = cluster_options(draws[0].clusters, draws[0].cluster_components, k)
        select = None
        if mask is not None:  # one mask for every input: each must have its shape
            select = image_mask(mask, inputs.sources[0].shape)
            for src in inputs.sources[1:]:
                if tuple(src.shape) != tuple(inputs.sources[0].shape):
                    image_mask(mask, src.shape)  # raises, naming the shapes
        outputs = [None] * n if outputs is None else list(outputs)
        if len(outputs) != n:
            raise EmbedviewError(f"output= needs one path (or None) per input: {n}; got {len(outputs)}.")
        if any(o is not None and not isinstance(o, Output) for o in outputs):
            raise EmbedviewError("outputs must be embedview Output objects (or None), one per input.")
        if draws is None and any(o is not None for o in outputs):
            raise EmbedviewError("fit() draws nothing; give output= to transform or fit_transform.")
        if clusters is not None and any(o is not None for o in outputs):
            raise EmbedviewError("clusters are drawn in memory; write them to .png, .tif, .npy or .npz, not .zarr.")
        outputs = output_guard(outputs, inputs.sources, extra_inputs)
        options = PassOptions(k, self.nonfinite, self.outliers, self.fit_sample, select)
        if refit:
            job = Job(options, self.normalize, self.fit_mode, foreground=foreground_options(foreground))
        else:
            job = Job(options, self.normalize, "joint" if len(bases) == 1 else "per_slice", bases=bases,
                      selections=tuple(_transfer(s, select) for s in self.selections_))
        bases, selections, visualizations = execute(inputs, job, draws, outputs, self.execution)
        if refit:
            self._learned(bases, selections, n)
        if draws is None:
            return []
        if clusters is not None:
            visualizations = cluster(visualizations, *clusters)
        return list(visualizations)

    def _check_params(self) -> None:
        check_choice("fit_mode", self.fit_mode, FIT_MODES)
        check_choice("normalize", self.normalize, NORMALIZE_MODES)
        check_choice("nonfinite", self.nonfinite, NONFINITE_MODES)
        check_choice("outliers", self.outliers, OUTLIER_MODES)
        check_fit_sample(self.fit_sample)
        if self.execution is not None and not isinstance(self.execution, Execution):
            raise EmbedviewError(f"execution must be an embedview.Execution; got {type(self.execution).__name__}.")

    # -- files ----------------------------------------------------------------------------------

    def save(self, path, *, fitted_on=(), overwrite: bool = False) -> Path:
        """Write the fitted basis and colour ranges to a ``.npz`` basis file (no pickle; see
        :mod:`embedview._model.basis_file`).

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
    def load(cls, path, *, nonfinite: str = "raise", execution: Execution | None = None, **fit_params) -> "PCA":
        """A fitted model from a basis file written by :meth:`save` or ``embedview fit`` (older
        files too).

        The basis brings its components, colour ranges and ``normalize`` (the file's); the
        parameters that only drawing uses, ``nonfinite`` and ``execution``, may be given. A
        parameter of the fit (``n_components``, ``fit_mode``, ``normalize``, ``outliers``,
        ``fit_sample``) cannot take effect and is refused.
        """
        from .._model.basis_file import load_basis

        _refuse_fit_params(fit_params, "PCA.load(path)")
        basis, meta = load_basis(path)
        model = cls.from_basis(basis, nonfinite=nonfinite, execution=execution)
        model.normalize = meta.get("normalize", "robust")
        selection = _foreground_from_json(meta["foreground"], basis, path) if "foreground" in meta else None
        model._learned((basis,), (selection,), str(path))
        return model

    @classmethod
    def from_basis(cls, basis: Basis, *, nonfinite: str = "raise", execution: Execution | None = None,
                   **fit_params) -> "PCA":
        """A fitted model applying ``basis`` (with colour ranges: ``vis.basis``, ``model.basis_``);
        ``nonfinite`` and ``execution`` as for :meth:`load`, the fit's parameters refused."""
        _refuse_fit_params(fit_params, "PCA.from_basis(basis)")
        if not isinstance(basis, Basis):
            raise EmbedviewError(f"basis must be an embedview Basis; got {type(basis).__name__}.")
        if basis.lo is None:
            raise EmbedviewError("the basis given has no colour ranges; pass vis.basis, model.basis_ or "
                                 "a model loaded with PCA.load(path).")
        model = cls(basis.n_components, nonfinite=nonfinite, execution=execution)
        model._learned((basis,), (None,), "a basis")
        return model


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b


def _refuse_fit_params(params: dict, where: str) -> None:
    for name in params:
        if name in _FIT_PARAMS or name == "fit":
            raise EmbedviewError(f"{name}= describes a fit, but {where} brings a fitted basis with its own "
                                 f"components and colour ranges; drop {name}= (or fit a new PCA).")
        raise EmbedviewError(f"{where} got an unexpected keyword {name}=; it takes nonfinite= and execution=.")


def _outputs(output, metadata) -> list | None:
    """``output=`` (one path, or one per input) and ``metadata=`` (one dict, or one per input) as Outputs."""
    if output is None:
        return None
    if isinstance(output, (list, tuple)):
        metas = metadata if isinstance(metadata, list) else [metadata] * len(output)
        if len(metas) != len(output):
            raise EmbedviewError(f"metadata= needs one dict per output: {len(output)}; got {len(metas)}.")
        return [Output.of(o, m) for o, m in zip(output, metas)]
    return [Output.of(output, metadata)]


def _draws(draw, sources) -> list:
    """One :class:`Draw` per input, its upsampling resolved (the guide checked against its shape)."""
    if isinstance(draw, (list, tuple)):  # one per input: each guided by its own image
        if len(draw) != len(sources):
            raise EmbedviewError(f"upsample= needs one entry per input: {len(sources)}; got {len(draw)}.")
    elif isinstance(draw, Draw):
        if len(sources) > 1 and getattr(draw.upsample, "method", draw.upsample) == "guided":
            raise EmbedviewError("upsample='guided' guides one input with its image; for several inputs give one "
                                 "per input: upsample=[Upsample('guided', guide=image), ...].")
        draw = [draw] * len(sources)
    if not all(isinstance(d, Draw) for d in draw):
        raise EmbedviewError("draw must be an embedview Draw (or one per input).")
    return [d.for_source(src) for d, src in zip(draw, sources)]


def _check_basis(bases: tuple, src) -> None:
    from .._model.basis_file import check_basis_channels

    check_basis_channels(bases[0], src.n_channels, src.name)
    if len(bases) > 1 and src.n_slices != len(bases):
        raise EmbedviewError(
            f"this model has one basis per slice of a {len(bases)}-slice stack, but {src.name} has "
            f"{src.n_slices or 0} slices; draw it with a model fitted on it (or {arg('fit_mode', 'joint')}).")


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
