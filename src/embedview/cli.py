"""The ``embedview`` command: its parser, and dispatch to the library's workflows.

``info`` is :func:`embedview.describe` (:mod:`embedview._workflows.info`), ``similarity`` is
:func:`embedview._workflows.similarity_map.similarity_map`, ``demo`` is :func:`embedview._workflows.demo.demo`,
the figure is :func:`embedview.figure` (:class:`embedview._workflows.figure.FigureFile`). What stays here is
the command's own: its flags, turning them into keyword arguments, and the library's messages
read in flag names (the parameters an :class:`EmbedviewError` names, looked up in the parser's own
table: :func:`_flag_of`). Only argparse is imported here; numpy, zarr and the rest load inside the
commands, so ``embedview --help`` answers at once. Bad input exits with status 2 and one sentence
on stderr (``embedview: error: ...``; a usage error adds one line pointing to ``--help``), never a
traceback or a half-written file; a failed run leaves nothing behind. A bug in embedview itself exits with
status 1 and one line (``embedview: internal error: ...``; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys

from ._common.errors import Arg, EmbedviewError, printable
from ._common.version import __version__

EPILOG = """\
examples (after the first, each runs as written):
  embedview demo -o demo                       write the built-in example (cells, every layout)
  embedview info demo/tiled_embeddings.zarr    what a micro_sam embedding file holds
  embedview render demo/embeddings.zarr -o pca.png --image demo/image.png
                                               PCA picture plus image | PCA | overlay figure
  embedview render demo/stack_embeddings.zarr -o stack_pca.tif --pixel-size 1
                                               a stack at image resolution, one page per slice
  embedview render demo/stack_embeddings.zarr -o stack.gif --image demo/stack.tif
                                               the stack as a movie, image | PCA, one basis
"""


class _Parser(argparse.ArgumentParser):
    """A usage error is two lines: the error, and where the help is (not the whole usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {printable(message)}\nsee '{self.prog} --help' for the options.\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedview`` command."""
    parser = _Parser(
        prog="embedview", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="See what an image encoder sees: PCA pictures of SAM / micro_sam embeddings, "
                    "placed exactly over the image.")
    parser.add_argument("--version", action="version", version=f"embedview {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "render", help="draw embeddings as an RGB picture (PNG, TIFF, OME-Zarr) or a stack as a movie (MP4, GIF)",
        description="Fit a PCA on the embeddings and write its first components as RGB. The output "
                    "format follows the extension: .png (2D), .tif/.tiff (2D or one page per slice), "
                    ".zarr (OME-Zarr multiscale RGB plus components, written chunk by chunk with "
                    "bounded memory), .npy, .npz. Scale and translate (image pixels) are recorded in "
                    "the file. .mp4 and .gif write a stack as a movie, one frame per slice in one basis "
                    "(with --image, beside the image). With several inputs, one basis is fitted over "
                    "all of them and -o names a folder: one picture per input plus side_by_side.png.")
    p.add_argument("embeddings", nargs="+", help="micro_sam embedding file(s) (.zarr folder), or ViT "
                                                 "features (.npy, .npz, .safetensors, .pt) with --image-size/--patch-size")
    p.add_argument("-o", "--output", required=True,
                   help="output file: .png, .tif, .tiff, .zarr, .npy, .npz, or a movie of a stack: .mp4 "
                        "(needs the movie extra), .gif (a folder for several inputs)")
    p.add_argument("--image", help="the image the embeddings came from (.npy, .tif, .png, .jpg, ...): "
                                   "also write OUTPUT_figure.png with image | PCA | overlay (a movie: "
                                   "image | PCA in every frame)")
    p.add_argument("--fps", type=float, default=None, metavar="N", help="frames per second of a movie, 0.01 to 100 (default 5)")
    p.add_argument("--slice", type=int, default=None, metavar="Z", help="slice of a stack for the figure (default: the middle one)")
    p.add_argument("--montage", type=int, nargs="?", const=6, default=None, metavar="N",
                   help="for a stack: also write OUTPUT_montage.png, N evenly spaced slices (default 6, "
                        "first and last included) in one basis; automatic with --image on a stack")
    p.add_argument("--fit", choices=("joint", "per_slice"), default=None,
                   help="joint: one PCA for all slices and tiles (default); per_slice: one per slice, as micro_sam")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="P",
                   help="output pixel size in image pixels, P or PY,PX (default: one embedding cell; 1: image "
                        "resolution; a movie: a long side of at most 1024 pixels)")
    _add_upsample(p)
    _add_pca(p)
    p.add_argument("--rgb-components", type=_int_list, default=None, metavar="I,J,K",
                   help="components shown as red, green, blue (default 0,1,2)")
    p.add_argument("--basis", metavar="BASIS.npz", help="apply a basis saved by `embedview fit` instead of fitting one")
    p.add_argument("--ext", default=None, metavar=".EXT",
                   help="with several inputs: the pictures' format, .png, .tif, .tiff, .zarr (OME-Zarr), .npy "
                        "or .npz (default .png; .tif for stacks)")
    p.add_argument("--separate-bases", action="store_true",
                   help="with several inputs: fit each on its own (embeddings of different models; "
                        "automatic when their channel counts differ)")
    p.add_argument("--mask", metavar="MASK", help="image-sized label/bool mask (.npy, .tif, .png): fit only "
                                                  "on cells under it, draw the rest dark")
    _add_foreground(p, "draw the background dark (threshold and side are printed)")
    p.add_argument("--clusters", type=_positive_int, default=None, metavar="K",
                   help="draw a seeded k-means label image of K clusters instead of RGB")
    p.add_argument("--cluster-components", type=_positive_int, default=None, metavar="M",
                   help="cluster in the first M components (default: --components)")
    _add_common(p)
    _add_run(p)
    _add_geometry(p)
    _add_model(p, "the input is an image: encode it with this model first (as `embedview encode`; --image "
                  "defaults to it): ", "with --model: ")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_render_command)

    _add_encode(commands)

    p = commands.add_parser(
        "fit", help="fit one basis over several inputs and save it (.npz) for `render --basis`",
        description="Fit one PCA basis, with its colour ranges, jointly over the cells of all inputs and "
                    "save it as a plain .npz (no pickle). `embedview render EMB --basis BASIS.npz` then "
                    "gives a material the same colour in every picture.")
    p.add_argument("embeddings", nargs="+", help="embedding files of one model")
    p.add_argument("-o", "--output", required=True, metavar="BASIS.npz", help="where to save the basis")
    _add_pca(p)
    p.add_argument("--mask", metavar="MASK", help="image-sized label/bool mask (.npy, .tif, .png): fit only "
                                                  "on cells under it (every input has the mask's size)")
    _add_foreground(p, "saved with the basis: `render --basis` draws the same foreground")
    _add_common(p)
    _add_run(p)
    _add_geometry(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_fit_command)

    p = commands.add_parser(
        "similarity", help="map the cosine similarity of every cell to one point (or a mask)",
        description="Draw how alike every embedding cell is to the cell under image pixel Y,X (cosine "
                    "similarity, 1.0 at that cell), or to the mean of a mask, at the exact geometry of the "
                    "PCA picture. The values are stored in the output beside the colours (.npz, .zarr).")
    p.add_argument("embeddings", help="embedding file")
    p.add_argument("-o", "--output", required=True, help="output file: .png, .tif, .tiff, .zarr, .npy or .npz")
    p.add_argument("--point", type=_int_list, default=None, metavar="Y,X",
                   help="image pixel of the query (Z,Y,X for a stack)")
    p.add_argument("--mask", metavar="MASK", help="instead of --point: the mean of the cells under this mask")
    p.add_argument("--slice", type=int, default=None, metavar="Z", help="slice of a stack to draw")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="P",
                   help="output pixel size in image pixels (default: one embedding cell)")
    p.add_argument("--image", help="the image: also write OUTPUT_figure.png with image | similarity | overlay")
    _add_geometry(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_similarity_command)

    p = commands.add_parser(
        "info", help="print what an embedding file holds (reads metadata only)",
        description="Print layout, image size, slices, channels, cell grid and size, tiles (with masked "
                    "or missing ones), model and micro_sam version. Features are not read.")
    p.add_argument("embeddings", help="micro_sam embedding file (.zarr folder), or ViT features with --image-size/--patch-size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_geometry(p)
    p.set_defaults(func=_info_command)

    p = commands.add_parser(
        "demo", help="make a built-in example and render it (no download)",
        description="Write generated images of cells (image.png, stack.tif, tiled_image.tif, tiled_stack.tif), "
                    "synthetic micro_sam-layout embeddings of each (embeddings.zarr, stack_embeddings.zarr, "
                    "tiled_embeddings.zarr, tiled_stack_embeddings.zarr), the cell kinds (labels.png), ViT "
                    "tokens of the 2D image (vit_tokens.npy) and the 2D rendering (pca.png, pca_figure.png).")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into (created if needed)")
    p.add_argument("--seed", type=int, default=0, help="another seed draws another scene (same encoder)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_demo_command)
    for name in ("render", "fit", "similarity", "demo", "encode"):
        _add_overwrite(commands.choices[name])
    for sub in commands.choices.values():  # --debug after the command works too
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _add_overwrite(p) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files that embedview did not write (never an input, nor a folder "
                        "embedview did not write); by default an output replaces only embedview's own")


def _add_pca(p) -> None:
    p.add_argument("--components", type=_positive_int, default=None, metavar="N", dest="n_components",
                   help="principal components to compute (default 3)")
    p.add_argument("--normalize", choices=("robust", "channel", "global"), default=None,
                   help="colour ranges: 1st-99th percentile per channel (default), min-max per channel, "
                        "or one min-max for all channels (micro_sam's)")


def _add_common(p) -> None:
    p.add_argument("--omit-nonfinite", action="store_true",
                   help="leave NaN/Inf cells out of the fit and draw them black instead of failing")
    p.add_argument("--keep-outliers", action="store_true",
                   help="let rare high-norm cells (over 10x the median distance, e.g. ViT artefact "
                        "tokens) into the fit; by default they are left out of it but still drawn")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (numpy, default), or a PyTorch device: cuda, cuda:N, mps, torch:cpu "
                        "(needs the torch extra)")


def _add_foreground(p, what: str) -> None:
    p.add_argument("--foreground", choices=("auto",), default=None,
                   help=f"DINOv2's recipe: threshold the first component, refit on the foreground; {what}")
    p.add_argument("--foreground-threshold", type=float, default=None, metavar="T",
                   help="with --foreground auto: use this threshold instead of Otsu's")
    p.add_argument("--foreground-side", choices=("above", "below"), default=None,
                   help="with --foreground auto: the foreground side (default: the one with fewer cells)")


def _add_upsample(p) -> None:
    p.add_argument("--upsample", choices=("nearest", "bilinear", "guided"), default="nearest",
                   help="how cells become output pixels: nearest (flat cells, default), bilinear, or guided "
                        "(edge-aware, follows the edges of --image); the figure and montage are drawn alike")
    p.add_argument("--sigma-spatial", type=_positive_float, default=None, metavar="S",
                   help="guided: spatial sigma in cells (default 1)")
    p.add_argument("--sigma-range", type=_positive_float, default=None, metavar="S",
                   help="guided: range sigma in image units normalized to 0..1 (default: 3x the image's noise)")


def _add_run(p) -> None:
    p.add_argument("--fit-sample", type=_positive_int, default=None, metavar="N",
                   help="fit on a seeded uniform sample of about N cells (default: every cell)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS|processes|threads",
                   help="run with Dask: threads, processes, or a dask.distributed scheduler address "
                        "(tcp://host:8786); needs the dask extra")


def _add_geometry(p) -> None:
    g = p.add_argument_group("ViT feature files (.npy, .npz, .safetensors, .pt)")
    g.add_argument("--image-size", type=_int_list, default=None, metavar="H,W", help="size of the original image")
    g.add_argument("--patch-size", type=_positive_int, default=None, metavar="P", help="the model's patch size")
    g.add_argument("--grid", type=_int_list, default=None, metavar="GH,GW",
                   help="patch grid of token arrays (default: from the model input size and patch size)")
    g.add_argument("--prefix-tokens", type=int, default=0, metavar="N",
                   help="tokens before the patch tokens to drop (CLS, registers)")
    g.add_argument("--resize", default=None, metavar="SPEC",
                   help="the model's resize: N (shortest side, torchvision's Resize(N)), shortest:N, longest:N or H,W")
    g.add_argument("--crop", type=_int_list, default=None, metavar="H,W", help="the model's centre crop")
    g.add_argument("--key", default=None, help="array name inside an .npz/.safetensors/.pt file")


def main(argv: list[str] | None = None) -> int:
    """Run the ``embedview`` command; returns the exit status.

    0 success; 2 bad input (one ``embedview: error:`` sentence); 1 an internal error (one
    ``embedview: internal error:`` line, the traceback with ``--debug``); 130 Ctrl-C and 143
    SIGTERM (handled alike). A run that fails removes what it created
    (:func:`embedview._common.output_paths.undo_on_failure`).

    Examples
    --------
    >>> main(["info", "/nonexistent.zarr"])  # doctest: +SKIP
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # --help and usage errors exit here, before any import
    from ._common.output_paths import undo_on_failure

    interrupted = _on_interrupt()
    try:
        with undo_on_failure():
            return args.func(args)
    except EmbedviewError as err:
        return _fail(err.render(lambda name: _flag_of(name, _command_parser(parser, args.command))))
    except MemoryError:  # past EMBEDVIEW_MEMORY_LIMIT's check: the limit was set above what the machine has
        return _fail("the picture does not fit in this machine's memory; choose a larger --pixel-size, "
                     "write a .zarr output, or lower EMBEDVIEW_MEMORY_LIMIT.")
    except OSError as err:  # e.g. a disk filling up while writing
        where = f" ({err.filename})" if err.filename else ""
        return _fail(f"{(err.strerror or str(err)).rstrip('.')}{where}.")
    except KeyboardInterrupt:
        print("embedview: interrupted", file=sys.stderr)
        return 128 + interrupted.get("signal", 2)  # 130 Ctrl-C, 143 SIGTERM
    except Exception as err:  # a bug of embedview's, not the input's
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        else:
            detail = printable(" ".join(str(err).split())[:500])
            print(f"embedview: internal error: {type(err).__name__}: {detail or 'no detail'} "
                  "(run again with --debug to see the traceback)", file=sys.stderr)
        return 1
    finally:
        interrupted["restore"]()


def _quiet_from_now_on() -> None:
    """After "interrupted", nothing more: what Dask's cluster and zarr's event loop say while they
    wind down (a half-started cluster closed at exit, a task cancelled in a loop thread) is not
    the user's to read; their clean-up still runs."""
    import logging
    import threading

    logging.disable(logging.CRITICAL)  # asyncio's "Task exception was never retrieved", distributed's logs
    sys.unraisablehook = lambda unraisable: None  # "Exception ignored in" __del__ and atexit callbacks
    threading.excepthook = lambda args: None


def _let_writes_land(timeout: float = 2.0) -> None:
    """Wait (a moment at most) for the writes zarr's event loop has in flight: the main thread is
    interrupted, not that loop, which would otherwise write into an output's temporary after it
    is removed and leave it behind."""
    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    import asyncio

    async def settle():
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    try:
        asyncio.run_coroutine_threadsafe(settle(), loop).result(timeout + 0.5)
    except Exception:  # noqa: BLE001  (an interrupt goes on whatever this finds)
        pass


def _on_interrupt() -> dict:
    """Handle SIGTERM like Ctrl-C (a KeyboardInterrupt, so temporaries are removed) until
    restored; from either signal on, the process prints nothing but ``embedview: interrupted``."""
    import signal

    state = {"restore": lambda: None}

    def interrupt(signum, frame):
        state["signal"] = signum
        _quiet_from_now_on()
        _let_writes_land()
        raise KeyboardInterrupt

    try:
        previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    except (ValueError, OSError):  # not the main thread: leave signals alone
        return state
    state["restore"] = lambda: [signal.signal(s, handler) for s, handler in previous.items()]
    return state


#: API parameters whose flag has another name ("/": two flags stand for it).
_FLAG_DESTS = {"z": "slice", "preprocess": "resize/crop", "fit_mode": "fit"}
#: API parameter values that a switch stands for.
_SWITCHES = {("nonfinite", "omit"): "omit_nonfinite", ("outliers", "keep"): "keep_outliers"}


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The subcommand's parser (argparse's table of actions: ``dest`` → flags, metavar)."""
    return next(a for a in parser._actions if a.dest == "command").choices[command]


def _flag_of(name: Arg, parser: argparse.ArgumentParser) -> str | None:
    """How the command line writes a parameter an error names (``--rgb-components 0,1,7``), or
    None where this command has no flag for it.

    Examples
    --------
    >>> from ._common.errors import arg
    >>> p = _command_parser(build_parser(), "render")
    >>> str(EmbedviewError(f"use {arg('device', 'cpu')}, {arg('nonfinite', 'omit')} or {arg('preprocess')}"))
    "use device='cpu', nonfinite='omit' or preprocess="
    >>> EmbedviewError(f"use {arg('device', 'cpu')}, {arg('nonfinite', 'omit')} or {arg('preprocess')}").render(
    ...     lambda a: _flag_of(a, p))
    'use --device cpu, --omit-nonfinite or --resize/--crop'
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    switch = _SWITCHES.get((name.name, name.value))
    dests = [switch] if switch else _FLAG_DESTS.get(name.name, name.name).split("/")
    if not all(d in actions for d in dests):
        return None
    flags = "/".join(max(actions[d].option_strings, key=len) for d in dests)
    return flags if switch or not name.value else f"{flags} {name.value}"


def _fail(message: str) -> int:
    """Print the one sentence; what it quotes from a file cannot forge lines or steer the terminal."""
    print(f"embedview: error: {printable(' '.join(message.split()))}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# option types (argparse turns their errors into usage errors, exit 2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _pixel_size(text: str):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected P or PY,PX in image pixels, got {text!r}") from None
    if len(values) not in (1, 2) or not all(0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected one or two positive numbers (P or PY,PX), got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas (like 0,1,2 or 512,512), got {text!r}") from None


# ---------------------------------------------------------------------------------------------
# render


def _render_command(args) -> int:
    from ._workflows.commands import render, render_many, settings_from_args
    from ._workflows.encode import render_inputs

    settings, output = settings_from_args(args)
    args.embeddings, args.image = render_inputs(args)  # with --model the input is an image, encoded on the way
    if len(args.embeddings) > 1:
        extra = next((flag for flag, given in (("--image", args.image), ("--fps", args.fps is not None),
                                               ("--montage", args.montage is not None)) if given), None)
        if extra:
            raise EmbedviewError(f"{extra} is for one input; with several inputs the side-by-side figure is "
                                 "written instead.")
        render_many(args.embeddings, output, settings=settings, separate_bases=args.separate_bases, ext=args.ext,
                    slice_=args.slice, quiet=args.quiet, inputs=_option_inputs(args))
        return 0
    if args.separate_bases:
        raise EmbedviewError("--separate-bases is for several inputs.")
    if args.ext:
        raise EmbedviewError("--ext chooses the format of several inputs' pictures; for one input, end -o with it.")
    render(args.embeddings[0], output, settings=settings, image=args.image, slice_=args.slice, montage=args.montage,
           quiet=args.quiet, inputs=_option_inputs(args), fps=args.fps)
    return 0


def _option_inputs(args) -> list:
    """The files options were read from: outputs must leave them alone."""
    return [("the mask", args.mask), ("the basis", args.basis), ("the checkpoint", getattr(args, "checkpoint", None))]


# ---------------------------------------------------------------------------------------------
# encode


def _add_model(p, model_help: str | None = None, prefix: str = "") -> None:
    """The model that encodes an image and how the image is cut for it (``encode``; ``render --model``,
    where ``model_help`` is given and the model is optional)."""
    p.add_argument("--model", required=model_help is None, default=None, metavar="NAME",
                   help=(model_help or "") + "micro_sam's name: vit_b, vit_l, vit_h, vit_t, vit_b_lm, vit_t_lm, "
                                             "vit_b_em_organelles, ...; or timm:NAME, hf:ORG/NAME, hub:OWNER/REPO:ENTRY")
    p.add_argument("--checkpoint", metavar="FILE", help=f"{prefix}the weights (else the model library's own cache)")
    p.add_argument("--layer", type=int, default=None, metavar="N",
                   help=f"{prefix}block N's features (negative from the end; default: the final ones)")
    _add_tiling(p, prefix)


def _add_tiling(p, prefix: str = "") -> None:
    """How an image is cut for the model (encode, and render --model)."""
    p.add_argument("--ndim", type=int, choices=(2, 3), default=None,
                   help=f"{prefix}3: a stack (Z, H, W[, C]) (default: from the shape)")
    p.add_argument("--tile-shape", type=_int_list, default=None, metavar="H,W", help=f"{prefix}encode in tiles of this size")
    p.add_argument("--halo", type=_int_list, default=None, metavar="H,W", help=f"{prefix}the tiles' overlap (default 0,0)")


def _add_encode(commands) -> None:
    p = commands.add_parser(
        "encode", help="compute embeddings of an image with a model (SAM family, timm, Hugging Face, torch.hub) into micro_sam's .zarr layout",
        description="Run the model's image encoder over the image (slice by slice, tile by tile) with its exact "
                    "preprocessing and write micro_sam's embedding file, which micro_sam reuses. Weights come from "
                    "--checkpoint or the model library's own cache; embedview never downloads.")
    p.add_argument("image", help="the image: .npy, .tif/.tiff, .png, .jpg, a zarr array")
    p.add_argument("-o", "--output", required=True, metavar="EMB.zarr", help="the embedding file to write")
    _add_model(p)
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: a GPU if there is one)")
    p.add_argument("--batch-size", type=_positive_int, default=1, metavar="N", help="blocks per forward pass (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_encode_command)


def _encode_command(args) -> int:
    from ._workflows.encode import encode_file

    encode_file(args.image, args.output, model=args.model, checkpoint=args.checkpoint, ndim=args.ndim,
                tile_shape=args.tile_shape, halo=args.halo, device=args.device, batch_size=args.batch_size,
                quiet=args.quiet, overwrite=args.overwrite, layer=args.layer)
    return 0


# ---------------------------------------------------------------------------------------------
# fit and similarity


def _fit_command(args) -> int:
    from ._workflows.commands import fit, settings_from_args

    settings, output = settings_from_args(args)
    fit(args.embeddings, output, settings=settings, quiet=args.quiet)
    return 0


def _similarity_command(args) -> int:
    if (args.point is None) == (args.mask is None):
        raise EmbedviewError("give the query as --point Y,X or as --mask MASK.")
    if args.point is not None and len(args.point) not in (2, 3):
        raise EmbedviewError(f"--point takes Y,X or Z,Y,X (image pixel indices); got {','.join(map(str, args.point))}.")
    from ._workflows.commands import geometry_from_args
    from ._workflows.similarity_map import similarity_map

    similarity_map(args.embeddings, args.output, point=args.point, mask=args.mask, image=args.image,
                   z=args.slice, pixel_size=args.pixel_size, quiet=args.quiet, geometry=geometry_from_args(args),
                   overwrite=args.overwrite)
    return 0


# ---------------------------------------------------------------------------------------------
# info


def _info_command(args) -> int:
    from ._workflows.commands import geometry_from_args
    from ._workflows.info import describe, format_info, info_json

    info = describe(args.embeddings, geometry_from_args(args))
    print(info_json(info) if args.json else format_info(info))
    return 0


# ---------------------------------------------------------------------------------------------
# demo


def _demo_command(args) -> int:
    from ._workflows.demo import demo

    demo(args.output, seed=args.seed, quiet=args.quiet, overwrite=args.overwrite)
    return 0
