"""The ``embedview`` command: its parser, and dispatch to the library's workflows.

``info`` is :func:`embedview.describe` (:mod:`embedview._workflows.info`), ``similarity`` is
:func:`embedview._workflows.similarity_map.similarity_map`, ``demo`` is :func:`embedview._workflows.demo.demo`,
the figure is :func:`embedview.figure` (:class:`embedview._workflows.figure.FigureFile`). What stays here is
the command's own: its flags, turning them into keyword arguments, and the library's messages
reworded in flag names (:func:`in_cli_terms`). Only argparse is imported here; numpy, zarr and
the rest load inside the commands, so ``embedview --help`` answers at once. Bad input exits
with status 2 and one sentence on stderr (``embedview: error: ...``), never a traceback or a
half-written file; a failed run leaves nothing behind. A bug in embedview itself exits with
status 1 and one line (``embedview: internal error: ...``; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys

from ._common.errors import EmbedviewError
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedview`` command."""
    parser = argparse.ArgumentParser(
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
    p.add_argument("--fps", type=float, default=None, metavar="N", help="frames per second of a movie (default 5)")
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
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_render_command)

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
    for sub in commands.choices.values():  # --debug after the command works too
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


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
    args = build_parser().parse_args(argv)  # --help and usage errors exit here, before any import
    from ._common.output_paths import undo_on_failure

    interrupted = _on_sigterm()
    try:
        with undo_on_failure():
            return args.func(args)
    except EmbedviewError as err:
        return _fail(in_cli_terms(str(err)))
    except OSError as err:  # e.g. a disk filling up while writing
        where = f" ({err.filename})" if err.filename else ""
        return _fail(f"{(err.strerror or str(err)).rstrip('.')}{where}.")
    except KeyboardInterrupt:
        print("embedview: interrupted", file=sys.stderr)
        return 143 if interrupted.get("signal") else 130
    except Exception as err:  # a bug of embedview's, not the input's
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        else:
            detail = " ".join(str(err).split())[:500]
            print(f"embedview: internal error: {type(err).__name__}: {detail or 'no detail'} "
                  "(run again with --debug to see the traceback)", file=sys.stderr)
        return 1
    finally:
        interrupted["restore"]()


def _on_sigterm() -> dict:
    """Handle SIGTERM like Ctrl-C (a KeyboardInterrupt, so temporaries are removed) until restored."""
    import signal

    state = {"restore": lambda: None}

    def interrupt(signum, frame):
        state["signal"] = signum
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):  # not the main thread: leave signals alone
        return state
    state["restore"] = lambda: signal.signal(signal.SIGTERM, previous)
    return state


#: The API's parameter names (as its messages spell them, ``name=value``) and the command's flags.
_FLAGS = {"image_size": "--image-size", "patch_size": "--patch-size", "prefix_tokens": "--prefix-tokens",
          "grid": "--grid", "preprocess": "--resize/--crop", "resize": "--resize", "crop": "--crop",
          "key": "--key", "rgb_components": "--rgb-components", "n_components": "--components",
          "cluster_components": "--cluster-components", "clusters": "--clusters", "fit_sample": "--fit-sample",
          "foreground_threshold": "--foreground-threshold", "foreground_side": "--foreground-side",
          "foreground": "--foreground", "scheduler": "--scheduler", "device": "--device",
          "pixel_size": "--pixel-size", "normalize": "--normalize", "fit": "--fit", "fit_mode": "--fit", "mask": "--mask",
          "point": "--point", "z": "--slice", "image": "--image", "fps": "--fps", "montage": "--montage"}
#: Names translated without ``=`` too: no sentence uses them as ordinary words.
_BARE = ("image_size", "patch_size", "prefix_tokens", "preprocess", "rgb_components", "n_components",
         "cluster_components", "fit_sample", "foreground_threshold", "foreground_side", "pixel_size")
#: Whole phrases, translated first.
_PHRASES = {"(a PCA each)": "(--separate-bases)",
            "nonfinite='omit'": "--omit-nonfinite", "outliers='keep'": "--keep-outliers",
            "leave scheduler unset": "leave out --scheduler", " to embedview.open_features": ""}


def in_cli_terms(message: str) -> str:
    """An API error message with its parameter names replaced by the command's flags.

    The library's messages name Python parameters (``image_size=(H, W)``); printed by the
    command, they name the flags a user types (``--image-size H,W``).

    Examples
    --------
    >>> in_cli_terms("pass image_size=(H, W) and patch_size= (and preprocess= if resized).")
    'pass --image-size H,W and --patch-size (and --resize/--crop if resized).'
    >>> in_cli_terms("rgb_components=[0, 1, 7] must name one to three; use device='cpu'.")
    '--rgb-components 0,1,7 must name one to three; use --device cpu.'
    """
    import re

    for phrase, flag in _PHRASES.items():
        message = message.replace(phrase, flag)
    value = r"""('[^']*'|"[^"]*"|\[[^\]]*\]|\([^)]*\)|[^\s,;()\[\]]*[^\s,;.()\[\]])?"""

    def flag_value(match):
        text = (match.group(2) or "").strip("'\"")
        if text[:1] in "[(":
            text = ",".join(v.strip().strip("'\"") for v in text[1:-1].split(","))
        return _FLAGS[match.group(1)] + (f" {text}" if text else "")

    names = "|".join(sorted(_FLAGS, key=len, reverse=True))
    message = re.sub(rf"(?<![\w./-])({names})={value}", flag_value, message)
    return re.sub(rf"(?<![\w./-])({'|'.join(_BARE)})\b(?!=)", lambda m: _FLAGS[m.group(1)], message)


def _fail(message: str) -> int:
    print(f"embedview: error: {' '.join(message.split())}", file=sys.stderr)
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
        raise argparse.ArgumentTypeError(f"expected component numbers like 0,1,2, got {text!r}") from None


# ---------------------------------------------------------------------------------------------
# render


def _render_command(args) -> int:
    from ._workflows.commands import render, render_many, settings_from_args

    settings, output = settings_from_args(args)
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
    return [("the mask", args.mask), ("the basis", args.basis)]


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
                   z=args.slice, pixel_size=args.pixel_size, quiet=args.quiet, geometry=geometry_from_args(args))
    return 0


# ---------------------------------------------------------------------------------------------
# info


def _info_command(args) -> int:
    import json

    from ._workflows.commands import geometry_from_args
    from ._workflows.info import describe, format_info

    info = describe(args.embeddings, geometry_from_args(args))
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


# ---------------------------------------------------------------------------------------------
# demo


def _demo_command(args) -> int:
    from ._workflows.demo import demo

    demo(args.output, seed=args.seed, quiet=args.quiet)
    return 0
