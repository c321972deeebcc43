"""The command line's workflows as library functions: ``embedview render`` and ``embedview fit``.

Each takes the run's :class:`Settings` (a :class:`embedview.PCA`, fitted: draw with it, not
fitted: fit it first; a :class:`~embedview._run.settings.Draw`; the cells fitted; the ViT
geometry) and an :class:`~embedview._run.settings.Output`, checks what is cheap to check before
the work (inputs, outputs, the image of the figure), runs the one pipeline
(:meth:`embedview.PCA.run`) once for one input or many, and writes the files.
:func:`settings_from_args` builds the settings from the parsed command line, once, so
:mod:`embedview.cli` is parser plus dispatch.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from .._common.errors import EmbedviewError, arg
from .._common.output_paths import MOVIE_FORMATS
from .._inputs.sources import open_embeddings
from .._run.settings import Draw, Output
from .figure import FigureFile, panel
from .info import result_summary
from .montage import MontageFile
from .settings import Settings

#: The ``-o DIR`` formats of several inputs (``--ext``); default .png, .tif for stacks.
MANY_FORMATS = (".png", ".tif", ".tiff", ".zarr", ".npy", ".npz")

#: Flags of the fit that a ``--basis`` (a fitted basis, its colour ranges included) cannot apply.
_FIT_FLAGS = (("n_components", "--components"), ("fit", "--fit"), ("normalize", "--normalize"),
              ("fit_sample", "--fit-sample"), ("keep_outliers", "--keep-outliers"))


def settings_from_args(args) -> tuple[Settings, Output]:
    """The settings of ``render`` / ``fit`` and their output, from the parsed command line (files
    such as ``--mask`` and ``--basis`` are read here).

    A flag given is a value that is not ``None`` (argparse's defaults are ``None``), so a flag that
    cannot take effect is refused even when it names the default: with ``--basis``, the fit's
    flags (``--components``, ``--fit``, ``--normalize``, ``--fit-sample``, ``--keep-outliers``);
    the colour ranges are the basis's, so ``--normalize`` is refused rather than recomputed.
    Flags left out take :class:`embedview.PCA`'s defaults.
    """
    from .._run.estimator import PCA
    from .._run.settings import Execution

    execution = Execution(device=args.device, scheduler=getattr(args, "scheduler", None), progress=not args.quiet)
    nonfinite = "omit" if args.omit_nonfinite else "raise"
    if getattr(args, "basis", None):
        given = [flag for name, flag in _FIT_FLAGS if getattr(args, name, None) not in (None, False)]
        if given:
            raise EmbedviewError(f"--basis brings a fitted basis with its components and colour ranges, so "
                                 f"{' and '.join(given)} cannot apply; drop {'it' if len(given) == 1 else 'them'}.")
        model = PCA.load(args.basis, nonfinite=nonfinite, execution=execution)
    else:
        params = {"n_components": args.n_components, "fit_mode": getattr(args, "fit", None),
                  "normalize": args.normalize, "fit_sample": getattr(args, "fit_sample", None)}
        model = PCA(**{k: v for k, v in params.items() if v is not None}, nonfinite=nonfinite,
                    outliers="keep" if args.keep_outliers else "exclude", execution=execution)
    mask = None
    if getattr(args, "mask", None):
        from .._outputs.io import read_image

        mask = read_image(args.mask)
    foreground = None
    if getattr(args, "foreground", None):
        foreground = {"threshold": args.foreground_threshold, "side": args.foreground_side}
    elif getattr(args, "foreground_threshold", None) is not None or getattr(args, "foreground_side", None):
        raise EmbedviewError("--foreground-threshold and --foreground-side need --foreground auto.")
    if getattr(args, "cluster_components", None) and not getattr(args, "clusters", None):
        raise EmbedviewError("--cluster-components needs --clusters K.")
    draw = Draw(getattr(args, "pixel_size", None), getattr(args, "rgb_components", None), upsample_from_args(args),
                getattr(args, "clusters", None), getattr(args, "cluster_components", None))
    settings = Settings(model, draw, mask, foreground, geometry_from_args(args))
    return settings, Output(args.output, overwrite=bool(getattr(args, "overwrite", False)))


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


def render(embeddings, output, *, settings: Settings | None = None, image=None, slice_: int | None = None,
           montage: int | None = None, quiet: bool = False, inputs=(), fps: float | None = None) -> list[Path]:
    """What ``embedview render`` does: draw, write ``output`` and, with ``image``, a figure
    (or, for a ``.mp4``/``.gif`` output, a movie of a stack: :func:`embedview._workflows.movie.write_movie`).

    Everything that can be checked cheaply (the embeddings' metadata, the output folder and
    format, the image's shape) is checked before the PCA runs.

    Parameters
    ----------
    embeddings : str or os.PathLike
        A micro_sam embedding file (or ViT features: ``.npy``, ``.npz``, ``.safetensors``, ``.pt``,
        with ``settings.geometry``: :func:`embedview.open_features`' keywords).
    output : str, os.PathLike or Output
        ``.png``, ``.tif``/``.tiff``, ``.zarr`` (OME-Zarr, written chunk by chunk), ``.npy``, ``.npz``,
        or a movie of a stack: ``.mp4``, ``.gif``.
    settings : Settings, optional
        The model (fitted: draw with it; else fitted here), the drawing, the cells fitted and
        the geometry (default :meth:`Settings.default`).
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
        No summary (the progress bar is ``settings.model.execution.progress``).
    inputs : iterable of (str, path)
        Other files the options were read from (``("the mask", path)``, ...): no output may
        replace them (:func:`embedview._common.output_paths.guard_output`).
    fps : float, optional
        A movie's frames per second (default 5).

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> render("embeddings.zarr", "pca.png", image="image.tif")  # doctest: +SKIP
    [PosixPath('pca.png'), PosixPath('pca_figure.png')]
    """
    from .._outputs.io import write_output

    settings = settings or Settings.default(quiet)
    model, output = settings.model, Output.of(output)
    src = open_embeddings(embeddings, settings.geometry)
    inputs = [("the embeddings", embeddings), ("the image", image), *inputs]
    if output.format in MOVIE_FORMATS:
        from .movie import write_movie

        if slice_ is not None or montage is not None:
            raise EmbedviewError(f"{arg('z') if slice_ is not None else arg('montage')} draws chosen slices, but a movie "
                                 f"shows every slice; drop {arg('z') if slice_ is not None else arg('montage')}.")
        return [write_movie(src, output, settings=settings, image=image, fps=fps, quiet=quiet, inputs=inputs)]
    if fps is not None:
        raise EmbedviewError(f"{arg('fps')} is the frame rate of a movie; end the output with .mp4 or .gif, not {output.path.name}.")
    # A stack is not one PNG: `-o montage.png --montage` asks for the montage itself.
    montage_only = montage is not None and src.is_stack and output.format == ".png"
    out = output.check(stack=src.is_stack and not montage_only, inputs=inputs)
    figure = FigureFile(src, out, image, slice_, inputs, output.overwrite)
    montage_file = MontageFile(src, out, montage, image, inputs, array=figure.plane, path=out if montage_only else None,
                               overwrite=output.overwrite)
    fitted = model.is_fitted
    fit_mode = "joint" if fitted else model.fit_mode
    # Resolved once (the guide opened, its statistics sampled) for the picture, figure and
    # montage; every output records the numbers used.
    draw = settings.draw.for_source(src, image=image)
    rgb = draw.rgb_components
    meta = {"source": str(getattr(embeddings, "name", embeddings)), "fit": fit_mode, "normalize": model.normalize,
            "rgb_components": list(rgb) if rgb else None}
    if draw.upsample is not None:
        meta["upsample"] = draw.upsample.describe()
    output = replace(output, path=out, metadata={**meta, **(output.metadata or {})})
    # A .zarr output is written chunk by chunk while it is computed: memory stays bounded.
    direct = output.format == ".zarr"
    vis, = model.run([src], draw, [output if direct else None], mask=settings.mask, foreground=settings.foreground,
                     refit=not fitted, extra_inputs=inputs)
    written = [] if montage_only else [
        out if direct else write_output(vis, out, metadata=output.metadata, overwrite=output.overwrite)]
    # the figure and montage draw their PCA as the main output is drawn (guided: by --image)
    written += figure.write(vis, drawing=draw)
    written += montage_file.write(vis, drawing=draw)
    if not quiet:
        for rule in vis.foreground:
            print(f"embedview: {rule.describe()}", file=sys.stderr)
        print(result_summary(vis, src, written, fit_mode), file=sys.stderr)
    return written


def render_many(embeddings: list, out_dir, *, settings: Settings | None = None, separate_bases: bool = False,
                ext: str | None = None, slice_: int | None = None, quiet: bool = False, inputs=()) -> list[Path]:
    """What ``embedview render A B ... -o DIR`` does: one basis over all inputs (or one each),
    one picture per input and a side-by-side figure ``DIR/side_by_side.png``.

    One run of the pipeline draws every input, with every setting :func:`render` has. ``ext``
    chooses the pictures' format (:data:`MANY_FORMATS`; ``.zarr`` is written chunk by chunk);
    default ``.png``, ``.tif`` for stacks. ``DIR`` (a path or an :class:`Output`) is created if
    needed; if the run fails, what it created is removed (a folder that existed before stays).
    ``inputs`` as for :func:`render`.

    Examples
    --------
    >>> render_many(["a.zarr", "b.zarr"], "compare")  # doctest: +SKIP
    [PosixPath('compare/a.png'), PosixPath('compare/b.png'), PosixPath('compare/side_by_side.png')]
    """
    from .._common.output_paths import undo_on_failure

    with undo_on_failure():
        return _render_many(embeddings, Output.of(out_dir), settings or Settings.default(quiet), separate_bases,
                            ext, slice_, quiet, inputs)


def _render_many(embeddings, out_dir: Output, settings: Settings, separate_bases, ext, slice_, quiet,
                 inputs) -> list[Path]:
    from .._inputs.composite import Inputs
    from .._outputs.io import write_output
    from .._run.estimator import PCA
    from .figure import folder_names, side_by_side, write_figure

    model = settings.model
    if ext is not None and ext.lower() not in MANY_FORMATS:
        raise EmbedviewError(f"--ext must be one of {', '.join(MANY_FORMATS)}; got {ext!r}.")
    inputs = [("the embeddings", e) for e in embeddings] + list(inputs)
    out = _make_folder(out_dir.path, inputs)
    sources = [open_embeddings(e, settings.geometry) for e in embeddings]
    names, side = folder_names([Path(str(e).rstrip("/")) for e in embeddings],
                               [ext or (".tif" if src.is_stack else ".png") for src in sources])
    stems = [Path(name).stem for name in names]
    paths = [replace(out_dir, path=out / name).check(stack=src.is_stack, inputs=inputs)
             for src, name in zip(sources, names)]
    side = replace(out_dir, path=out / side).check(inputs=inputs)
    for src in sources:  # checked before any work: bad input must leave no output behind
        if src.is_stack and slice_ is not None and not 0 <= slice_ < src.n_slices:
            raise EmbedviewError(f"{src.name} has no slice {slice_}; it has {src.n_slices} slices.")
    fitted = model.is_fitted
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
    outputs = [Output(path, out_dir.overwrite, {"source": src.name, "joint_with": list(map(str, embeddings))})
               for src, path in zip(sources, paths)]
    if separate_bases:
        outputs = [replace(o, metadata={"source": o.metadata["source"]}) for o in outputs]
        runs = [([src], [o]) for src, o in zip(sources, outputs)]
    else:
        runs = [(sources, outputs)]
    visualizations = []
    for group, group_outputs in runs:
        this = model if fitted else PCA(**model.get_params(deep=False))
        visualizations += this.run(Inputs(group), settings.draw, group_outputs if direct else None,
                                   mask=settings.mask, foreground=settings.foreground, refit=not fitted,
                                   extra_inputs=inputs)
    written = list(paths) if direct else [
        write_output(vis, o.path, metadata=o.metadata, overwrite=o.overwrite) for vis, o in zip(visualizations, outputs)]
    panels = [panel(src, vis, slice_, settings.draw, len(sources)) for src, vis in zip(sources, visualizations)]
    write_figure(side, side_by_side(panels, stems), {"sources": list(map(str, embeddings))}, out_dir.overwrite)
    written.append(side)
    if not quiet:
        how = "one basis each" if separate_bases else "one basis fitted over all of them"
        print(f"embedview: wrote {len(sources)} pictures ({how}) and {side}", file=sys.stderr)
    return written


def fit(embeddings: list, output, *, settings: Settings | None = None, quiet: bool = False) -> Path:
    """What ``embedview fit`` does: one basis (with colour ranges) over all inputs, saved to ``output``
    (a ``.npz`` path or an :class:`Output`).

    Examples
    --------
    >>> fit(["a.zarr", "b.zarr"], "basis.npz")  # doctest: +SKIP
    PosixPath('basis.npz')
    """
    settings = settings or Settings.default(quiet)
    model, out = settings.model, Output.of(output)
    if out.format != ".npz":
        raise EmbedviewError(f"a basis is saved as .npz; got {out.path.name}.")
    from .._common.output_paths import check_output

    check_output(out.path, inputs=[("the embeddings", e) for e in embeddings], kind="basis", overwrite=out.overwrite)
    sources = [open_embeddings(e, settings.geometry) for e in embeddings]
    model.fit(*sources, mask=settings.mask, foreground=settings.foreground)
    path = model.save(out.path, fitted_on=embeddings, overwrite=out.overwrite)
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


