"""The command line's workflows as library functions: ``embedview render`` and ``embedview fit``.

Each takes a :class:`embedview.PCA` (fitted: draw with it; not fitted: fit it first) and the
drawing options, checks what is cheap to check before the work (inputs, outputs, the image of
the figure), runs the one pipeline (:mod:`embedview._run.pipeline`) once for one input or many, and
writes the files. :func:`options_from_args` maps the parsed command line onto them, so
:mod:`embedview.cli` is parser plus dispatch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .._common.errors import EmbedviewError, arg
from .._common.output_paths import MOVIE_FORMATS
from .._inputs.sources import open_embeddings
from .figure import FigureFile, panel
from .info import result_summary
from .montage import MontageFile

#: The ``-o DIR`` formats of several inputs (``--ext``); default .png, .tif for stacks.
MANY_FORMATS = (".png", ".tif", ".tiff", ".zarr", ".npy", ".npz")


def options_from_args(args) -> dict:
    """The keyword arguments of :func:`render` / :func:`render_many` / :func:`fit` from the parsed
    command line: ``model`` (a :class:`PCA`, fitted when ``--basis`` is given), ``geometry`` and
    the drawing options (files are read here)."""
    from .._run.estimator import PCA
    from .._run.pipeline import Execution

    execution = Execution(device=args.device, scheduler=getattr(args, "scheduler", None),
                          progress=not args.quiet)
    params = dict(normalize=args.normalize, nonfinite="omit" if args.omit_nonfinite else "raise",
                  outliers="keep" if args.keep_outliers else "exclude",
                  fit_sample=getattr(args, "fit_sample", None), execution=execution)
    options = {}
    if getattr(args, "basis", None):
        if args.n_components != 3 or args.fit != "joint":
            raise EmbedviewError("--basis brings its own components; drop --components and --fit.")
        params.pop("fit_sample")
        params.pop("normalize")  # the colour ranges are the basis's
        options["model"] = PCA.load(args.basis, **params)
    else:
        options["model"] = PCA(args.n_components, fit=getattr(args, "fit", "joint"), **params)
    if getattr(args, "mask", None):
        from .._outputs.io import read_image

        options["mask"] = read_image(args.mask)
    if getattr(args, "foreground", None):
        options["foreground"] = {"threshold": args.foreground_threshold, "side": args.foreground_side}
    elif getattr(args, "foreground_threshold", None) is not None or getattr(args, "foreground_side", None):
        raise EmbedviewError("--foreground-threshold and --foreground-side need --foreground auto.")
    if getattr(args, "clusters", None):
        options.update(clusters=args.clusters, cluster_components=args.cluster_components)
    elif getattr(args, "cluster_components", None):
        raise EmbedviewError("--cluster-components needs --clusters K.")
    for name in ("pixel_size", "rgb_components"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    upsample = upsample_from_args(args)
    if upsample is not None:
        options["upsample"] = upsample
    geometry = geometry_from_args(args)
    if geometry:
        options["geometry"] = geometry
    return options


def upsample_from_args(args):
    """``--upsample``, ``--sigma-spatial``, ``--sigma-range`` as an :class:`Upsample` (``None``: nearest);
    ``guided`` takes ``--image`` as its guide."""
    from .._outputs.guide import Upsample

    method = getattr(args, "upsample", None) or "nearest"
    sigmas = {"sigma_spatial": getattr(args, "sigma_spatial", None), "sigma_range": getattr(args, "sigma_range", None)}
    if method != "guided":
        if any(v is not None for v in sigmas.values()):
            raise EmbedviewError("--sigma-spatial and --sigma-range tune --upsample guided; add it or drop them.")
        return None if method == "nearest" else Upsample(method)
    if not getattr(args, "image", None):
        raise EmbedviewError("--upsample guided follows the edges of the image: pass it with --image IMAGE.")
    if len(getattr(args, "embeddings", ())) > 1:
        raise EmbedviewError("--upsample guided guides one input with its --image; render the inputs one at a time.")
    return Upsample("guided", guide=args.image, **sigmas)


def render(embeddings, output, *, model=None, image=None, slice_: int | None = None, montage: int | None = None,
           quiet: bool = False, inputs=(), geometry=None, fps: float | None = None, overwrite: bool = False,
           **draw) -> list[Path]:
    """What ``embedview render`` does: draw, write ``output`` and, with ``image``, a figure
    (or, for a ``.mp4``/``.gif`` output, a movie of a stack: :func:`embedview._workflows.movie.write_movie`).

    Everything that can be checked cheaply (the embeddings' metadata, the output folder and
    format, the image's shape) is checked before the PCA runs.

    Parameters
    ----------
    embeddings : str or os.PathLike
        A micro_sam embedding file (or ViT features: ``.npy``, ``.npz``, ``.safetensors``, ``.pt``,
        with ``geometry``: :func:`embedview.open_features`' keywords).
    output : str or os.PathLike
        ``.png``, ``.tif``/``.tiff``, ``.zarr`` (OME-Zarr, written chunk by chunk), ``.npy``, ``.npz``,
        or a movie of a stack: ``.mp4``, ``.gif``.
    model : PCA, optional
        Fitted: draw with it; else fitted here (default ``PCA()``).
    image : str or os.PathLike, optional
        The image; also writes ``<output stem>_figure.png`` beside ``output`` (a movie shows it
        beside the PCA in every frame instead).
    slice_ : int, optional
        Slice of a stack drawn in the figure (default: the middle one).
    montage : int, optional
        For a stack: also write ``<output stem>_montage.png``, this many evenly spaced slices in
        the basis of the picture (:func:`embedview.montage`); a stack with ``image`` gets one of
        6 slices (image over PCA) unless asked otherwise.
    quiet : bool
        No summary (the progress bar is ``model.execution.progress``).
    inputs : iterable of (str, path)
        Other files the options were read from (``("the mask", path)``, ...): no output may
        replace them (:func:`embedview._common.output_paths.guard_output`).
    fps : float, optional
        A movie's frames per second (default 5).
    overwrite : bool
        The outputs may replace files embedview did not write (``--overwrite``; never an input).
    **draw
        ``mask``, ``foreground``, ``clusters``, ``cluster_components``, ``pixel_size``,
        ``rgb_components`` (see :class:`embedview.PCA`).

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> render("embeddings.zarr", "pca.png", image="image.tif")  # doctest: +SKIP
    [PosixPath('pca.png'), PosixPath('pca_figure.png')]
    """
    from .._common.output_paths import check_output
    from .._outputs.guide import resolve_upsampling
    from .._outputs.io import write_output
    from .._outputs.sinks import ZarrOutput
    from .._run.estimator import PCA
    from .._run.pipeline import Execution

    model = model if model is not None else PCA(execution=Execution(progress=not quiet))
    src = open_embeddings(embeddings, geometry)
    inputs = [("the embeddings", embeddings), ("the image", image), *inputs]
    if Path(output).suffix.lower() in MOVIE_FORMATS:
        from .movie import write_movie

        if slice_ is not None or montage is not None:
            raise EmbedviewError(f"{arg('z') if slice_ is not None else arg('montage')} draws chosen slices, but a movie "
                                 f"shows every slice; drop {arg('z') if slice_ is not None else arg('montage')}.")
        return [write_movie(src, output, model=model, image=image, fps=fps, quiet=quiet, inputs=inputs,
                            overwrite=overwrite, **draw)]
    if fps is not None:
        raise EmbedviewError(f"{arg('fps')} is the frame rate of a movie; end the output with .mp4 or .gif, not {Path(output).name}.")
    # A stack is not one PNG: `-o montage.png --montage` asks for the montage itself.
    montage_only = montage is not None and src.is_stack and Path(output).suffix.lower() == ".png"
    out = check_output(output, stack=src.is_stack and not montage_only, inputs=inputs, overwrite=overwrite)
    figure = FigureFile(src, out, image, slice_, inputs, overwrite)
    montage_file = MontageFile(src, out, montage, image, inputs, array=figure.plane, path=out if montage_only else None,
                               overwrite=overwrite)
    fitted = hasattr(model, "bases_")
    fit_mode = "joint" if fitted else model.fit_mode
    rgb = draw.get("rgb_components")
    meta = {"source": str(getattr(embeddings, "name", embeddings)), "fit": fit_mode, "normalize": model.normalize,
            "rgb_components": list(rgb) if rgb else None}
    if draw.get("upsample") is not None:
        # Resolved once (the guide opened, its statistics sampled) for the picture, figure and
        # montage; every output records the numbers used.
        draw["upsample"] = resolve_upsampling(draw["upsample"], src.shape, str(src.name), image=image)
        if draw["upsample"] is not None:
            meta["upsample"] = draw["upsample"].describe()
    # A .zarr output is written chunk by chunk while it is computed: memory stays bounded.
    direct = out.suffix.lower() == ".zarr"
    vis = model._run([src], output=ZarrOutput(out, overwrite) if direct else None, metadata=meta, fitted=fitted,
                     extra_inputs=inputs, **draw)
    written = [] if montage_only else [out if direct else write_output(vis, out, metadata=meta, overwrite=overwrite)]
    # the figure and montage draw their PCA as the main output is drawn (guided: by --image)
    written += figure.write(vis, rgb_components=rgb, upsample=draw.get("upsample"))
    written += montage_file.write(vis, rgb_components=rgb, upsample=draw.get("upsample"))
    if not quiet:
        for rule in vis.foreground:
            print(f"embedview: {rule.describe()}", file=sys.stderr)
        print(result_summary(vis, src, written, fit_mode), file=sys.stderr)
    return written


def render_many(embeddings: list, out_dir, *, model=None, separate_bases: bool = False, ext: str | None = None,
                slice_: int | None = None, quiet: bool = False, inputs=(), geometry=None, overwrite: bool = False,
                **draw) -> list[Path]:
    """What ``embedview render A B ... -o DIR`` does: one basis over all inputs (or one each),
    one picture per input and a side-by-side figure ``DIR/side_by_side.png``.

    One run of the pipeline draws every input, with every option :func:`render` has. ``ext``
    chooses the pictures' format (:data:`MANY_FORMATS`; ``.zarr`` is written chunk by chunk);
    default ``.png``, ``.tif`` for stacks. ``DIR`` is created if needed; if the run fails, what it
    created is removed (a folder that existed before stays). ``inputs`` as for :func:`render`.

    Examples
    --------
    >>> render_many(["a.zarr", "b.zarr"], "compare")  # doctest: +SKIP
    [PosixPath('compare/a.png'), PosixPath('compare/b.png'), PosixPath('compare/side_by_side.png')]
    """
    from .._common.output_paths import undo_on_failure

    with undo_on_failure():
        return _render_many(embeddings, out_dir, model, separate_bases, ext, slice_, quiet, inputs, geometry, draw,
                            overwrite)


def _render_many(embeddings, out_dir, model, separate_bases, ext, slice_, quiet, inputs, geometry, draw,
                 overwrite=False) -> list[Path]:
    from .._common.output_paths import check_output
    from .._inputs.composite import Inputs
    from .._outputs.io import write_output
    from .._outputs.sinks import ZarrOutput
    from .._run.estimator import PCA
    from .._run.pipeline import Execution
    from .figure import folder_names, side_by_side, write_figure

    model = model if model is not None else PCA(execution=Execution(progress=not quiet))
    if ext is not None and ext.lower() not in MANY_FORMATS:
        raise EmbedviewError(f"--ext must be one of {', '.join(MANY_FORMATS)}; got {ext!r}.")
    inputs = [("the embeddings", e) for e in embeddings] + list(inputs)
    out = _make_folder(out_dir, inputs)
    sources = [open_embeddings(e, geometry) for e in embeddings]
    names, side = folder_names([Path(str(e).rstrip("/")) for e in embeddings],
                               [ext or (".tif" if src.is_stack else ".png") for src in sources])
    stems = [Path(name).stem for name in names]
    paths = [check_output(out / name, stack=src.is_stack, inputs=inputs, overwrite=overwrite)
             for src, name in zip(sources, names)]
    side = check_output(out / side, inputs=inputs, overwrite=overwrite)
    for src in sources:  # checked before any work: bad input must leave no output behind
        if src.is_stack and slice_ is not None and not 0 <= slice_ < src.n_slices:
            raise EmbedviewError(f"{src.name} has no slice {slice_}; it has {src.n_slices} slices.")
    fitted = hasattr(model, "bases_")
    channels = sorted({src.n_channels for src in sources})
    if len(channels) > 1 and not separate_bases:
        if fitted:
            raise EmbedviewError(f"the inputs have {' and '.join(map(str, channels))} channels: one --basis "
                                 "cannot apply to all of them; render each model's embeddings on their own.")
        separate_bases = True  # different channel counts: different models, different spaces
        if not quiet:
            print(f"embedview: the inputs have {' and '.join(map(str, channels))} channels (different "
                  "models): each gets its own basis", file=sys.stderr)
    direct = (ext or "").lower() == ".zarr"
    metas = [{"source": src.name, "joint_with": list(map(str, embeddings))} for src in sources]
    if separate_bases:
        for src, meta in zip(sources, metas):
            meta.pop("joint_with")
        runs = [([src], [path], [meta]) for src, path, meta in zip(sources, paths, metas)]
    else:
        runs = [(sources, paths, metas)]
    visualizations = []
    for group, group_paths, group_metas in runs:
        this = model if fitted else PCA(**model.get_params())
        one = len(group) == 1  # _run takes one output and metadata for one input, lists for several
        specs = [ZarrOutput(p, overwrite) for p in group_paths] if direct else None
        output = (specs[0] if one else specs) if direct else None
        result = this._run([Inputs(group)], output=output, metadata=group_metas[0] if one else group_metas,
                           fitted=fitted, extra_inputs=inputs, **draw)
        visualizations += result if isinstance(result, list) else [result]
    written = list(paths) if direct else [
        write_output(vis, path, metadata=meta, overwrite=overwrite) for vis, path, meta in zip(visualizations, paths, metas)]
    rgb = draw.get("rgb_components")
    panels = [panel(src, vis, slice_, rgb, len(sources), draw.get("upsample"))
              for src, vis in zip(sources, visualizations)]
    write_figure(side, side_by_side(panels, stems), {"sources": list(map(str, embeddings))}, overwrite)
    written.append(side)
    if not quiet:
        how = "one basis each" if separate_bases else "one basis fitted over all of them"
        print(f"embedview: wrote {len(sources)} pictures ({how}) and {side}", file=sys.stderr)
    return written


def fit(embeddings: list, output, *, model=None, quiet: bool = False, geometry=None, mask=None,
        foreground=None, overwrite: bool = False) -> Path:
    """What ``embedview fit`` does: one basis (with colour ranges) over all inputs, saved to ``output``.

    Examples
    --------
    >>> fit(["a.zarr", "b.zarr"], "basis.npz")  # doctest: +SKIP
    PosixPath('basis.npz')
    """
    from .._common.output_paths import check_output
    from .._run.estimator import PCA

    model = model if model is not None else PCA()
    out = Path(output)
    if out.suffix.lower() != ".npz":
        raise EmbedviewError(f"a basis is saved as .npz; got {out.name}.")
    check_output(out, inputs=[("the embeddings", e) for e in embeddings], kind="basis", overwrite=overwrite)
    sources = [open_embeddings(e, geometry) for e in embeddings]
    model.fit(*sources, mask=mask, foreground=foreground)
    path = model.save(out, fitted_on=embeddings, overwrite=overwrite)
    if not quiet:
        basis = model.basis_
        ratios = "/".join(f"{100 * r:.0f}" for r in basis.explained_variance_ratio[:3])
        print(f"embedview: wrote {path} ({basis.n_components} components of {basis.n_channels} channels, "
              f"fitted on {basis.n_samples} cells of {len(sources)} input(s); they explain {ratios} % "
              f"of the variance). Apply it with: embedview render EMB -o OUT --basis {path}", file=sys.stderr)
    return path


def _make_folder(path, inputs=()) -> Path:
    """The output folder of several pictures, made if needed (and removed if the run fails)."""
    from .._common.output_paths import OUTPUT_FORMATS, guard_output, make_folder

    out = Path(path)
    if out.suffix.lower() in OUTPUT_FORMATS and not out.is_dir():
        raise EmbedviewError(f"several inputs give several pictures: -o must be a folder, not {out}.")
    guard_output(out, inputs, into=True)
    return make_folder(out)


def geometry_from_args(args) -> dict | None:
    """The ViT geometry options, for .npy/.npz/.safetensors/.pt inputs."""
    geometry = {"image_size": args.image_size, "patch_size": args.patch_size, "grid": args.grid,
                "prefix_tokens": args.prefix_tokens, "key": args.key,
                "preprocess": {"resize": _resize(args.resize), "crop": args.crop} if (args.resize or args.crop) else None}
    given = {k: v for k, v in geometry.items() if v not in (None, 0)}
    if not given:
        return None
    from .._inputs.sources import FEATURE_SUFFIXES

    inputs = [args.embeddings] if isinstance(args.embeddings, str) else args.embeddings
    if not all(str(e).lower().endswith(FEATURE_SUFFIXES) for e in inputs):
        raise EmbedviewError("--image-size, --patch-size, --grid, --prefix-tokens, --resize, --crop and --key "
                             "describe ViT feature files (.npy, .npz, .safetensors, .pt); micro_sam files "
                             "carry their own geometry.")
    return given


def _resize(text):
    """--resize N → N (shortest side), H,W → (H, W); shortest:N / longest:N stay strings."""
    if text is None or ":" in text:
        return text
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise EmbedviewError(f"--resize takes N, shortest:N, longest:N or H,W; got {text!r}.") from None
    return values[0] if len(values) == 1 else values


