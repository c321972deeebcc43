"""The ``embedview`` command: ``render``, ``info`` and ``demo``.

Only argparse is imported here; numpy, zarr and the rest load inside the commands, so
``embedview --help`` answers at once. Bad input exits with status 2 and one sentence on
stderr (``embedview: error: ...``), never a traceback or a half-written file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from ._errors import EmbedviewError

EPILOG = """\
examples:
  embedview demo -o demo/                      make and render a built-in example
  embedview info embeddings.zarr               what a micro_sam embedding file holds
  embedview render embeddings.zarr -o pca.png --image image.tif
                                               PCA picture plus image | PCA | overlay figure
  embedview render stack.zarr -o pca.tif --pixel-size 1
                                               a stack at image resolution, one page per slice
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedview`` command."""
    parser = argparse.ArgumentParser(
        prog="embedview", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="See what an image encoder sees: PCA pictures of SAM / micro_sam embeddings, "
                    "placed exactly over the image.")
    parser.add_argument("--version", action="version", version=f"embedview {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "render", help="draw embeddings as an RGB picture (PNG, TIFF, zarr)",
        description="Fit a PCA on the embeddings and write its first components as RGB. The output "
                    "format follows the extension: .png (2D), .tif/.tiff (2D or one page per slice), "
                    ".zarr (OME-Zarr multiscale RGB plus components, written chunk by chunk with "
                    "bounded memory), .npy, .npz. Scale and translate (image "
                    "pixels) are recorded in the file.")
    p.add_argument("embeddings", help="micro_sam embedding file (.zarr folder)")
    p.add_argument("-o", "--output", required=True, help="output file: .png, .tif, .tiff, .zarr, .npy or .npz")
    p.add_argument("--image", help="the image the embeddings came from (.npy, .tif, .png, .jpg, ...): "
                                   "also write OUTPUT_figure.png with image | PCA | overlay")
    p.add_argument("--slice", type=int, default=None, metavar="Z", help="slice of a stack for the figure (default: the middle one)")
    p.add_argument("--fit", choices=("joint", "per_slice"), default="joint",
                   help="joint: one PCA for all slices and tiles (default); per_slice: one per slice, as micro_sam")
    p.add_argument("--normalize", choices=("robust", "channel", "global"), default="robust",
                   help="colour ranges: 1st-99th percentile per channel (default), min-max per channel, "
                        "or one min-max for all channels (micro_sam's)")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="P",
                   help="output pixel size in image pixels, P or PY,PX (default: one embedding cell; 1: image resolution)")
    p.add_argument("--components", type=_positive_int, default=3, metavar="N", dest="n_components",
                   help="principal components to compute (default 3)")
    p.add_argument("--rgb-components", type=_int_list, default=None, metavar="I,J,K",
                   help="components shown as red, green, blue (default 0,1,2)")
    p.add_argument("--omit-nonfinite", action="store_true",
                   help="leave NaN/Inf cells out of the fit and draw them black instead of failing")
    p.add_argument("--keep-outliers", action="store_true",
                   help="let rare high-norm cells (over 10x the median distance, e.g. ViT artefact "
                        "tokens) into the fit; by default they are left out of it but still drawn")
    p.add_argument("--fit-sample", type=_positive_int, default=None, metavar="N",
                   help="fit on a seeded uniform sample of about N cells (default: every cell)")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (numpy, default), or a PyTorch device: cuda, cuda:N, mps, torch:cpu "
                        "(needs the torch extra)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_render_command)

    p = commands.add_parser(
        "info", help="print what an embedding file holds (reads metadata only)",
        description="Print layout, image size, slices, channels, cell grid and size, tiles (with masked "
                    "or missing ones), model and micro_sam version. Features are not read.")
    p.add_argument("embeddings", help="micro_sam embedding file (.zarr folder)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_info_command)

    p = commands.add_parser(
        "demo", help="make a built-in example and render it (no download)",
        description="Write a generated image (demo_image.png), synthetic micro_sam-layout embeddings of "
                    "it (demo_embeddings.zarr) and their rendering (demo_pca.png, demo_pca_figure.png).")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into (created if needed)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_demo_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``embedview`` command; returns the exit status (0 success, 2 bad input).

    Examples
    --------
    >>> main(["info", "/nonexistent.zarr"])  # doctest: +SKIP
    2
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EmbedviewError as err:
        return _fail(str(err))
    except OSError as err:  # e.g. a disk filling up while writing
        where = f" ({err.filename})" if err.filename else ""
        return _fail(f"{(err.strerror or str(err)).rstrip('.')}{where}.")
    except KeyboardInterrupt:
        print("embedview: interrupted", file=sys.stderr)
        return 130


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


def render(embeddings, output, *, image=None, fit: str = "joint", normalize: str = "robust",
           pixel_size=None, n_components: int = 3, rgb_components=None, omit_nonfinite: bool = False,
           keep_outliers: bool = False, fit_sample: int | None = None, slice_: int | None = None,
           device: str = "cpu", quiet: bool = False) -> list[Path]:
    """What ``embedview render`` does: visualize, write ``output`` and, with ``image``, a figure.

    Everything that can be checked cheaply (the embeddings' metadata, the output folder and
    format, the image's shape) is checked before the PCA runs.

    Parameters
    ----------
    embeddings : str or os.PathLike
        A micro_sam embedding file.
    output : str or os.PathLike
        ``.png``, ``.tif``/``.tiff``, ``.zarr``, ``.npy`` or ``.npz``.
    image : str or os.PathLike, optional
        The image; also writes ``<output stem>_figure.png`` beside ``output``.
    fit, normalize, pixel_size, n_components, rgb_components :
        As for :func:`embedview.visualize`.
    omit_nonfinite : bool
        Leave NaN/Inf cells out instead of failing.
    keep_outliers : bool
        Fit on rare high-norm cells too (``outliers="keep"``).
    fit_sample, device : optional
        As for :func:`embedview.visualize`.
    slice_ : int, optional
        Slice of a stack drawn in the figure (default: the middle one).
    quiet : bool
        No progress bar, no summary.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> render("embeddings.zarr", "pca.png", image="image.tif")  # doctest: +SKIP
    [PosixPath('pca.png'), PosixPath('pca_figure.png')]
    """
    from ._figure import image_plane, make_figure
    from ._io import atomic_path, check_output, read_image, write_output, write_png
    from ._sources import open_source
    from ._visualize import visualize

    src = open_source(embeddings)
    out = check_output(output, stack=src.is_stack)
    _refuse_overwriting(out, embeddings, "the embeddings")
    plane_source = figure_path = None
    if image is not None:
        plane_source = read_image(image)
        image_plane(plane_source, src.shape, slice_, name=f"the image {image}")
        figure_path = check_output(out.with_name(f"{out.stem}_figure.png"))
        _refuse_overwriting(figure_path, embeddings, "the embeddings")
        _refuse_overwriting(figure_path, image, "the image")
    elif slice_ is not None:
        raise EmbedviewError("--slice chooses the slice of the figure; pass --image IMAGE too.")

    meta = {"source": str(embeddings), "fit": fit, "normalize": normalize,
            "rgb_components": list(rgb_components) if rgb_components else None}
    # A .zarr output is written chunk by chunk while it is computed: memory stays bounded.
    direct = out.suffix.lower() == ".zarr"
    vis = visualize(src, n_components, fit, normalize, pixel_size, rgb_components=rgb_components,
                    nonfinite="omit" if omit_nonfinite else "raise",
                    outliers="keep" if keep_outliers else "exclude", fit_sample=fit_sample,
                    device=device, output=out if direct else None, metadata=meta, progress=not quiet)
    figure = None
    if plane_source is not None:
        figure = make_figure(src, vis, plane_source, z=slice_, rgb_components=rgb_components,
                             image_name=f"the image {image}")
    written = [out if direct else write_output(vis, out, metadata=meta, progress=not quiet)]
    if figure is not None:
        with atomic_path(figure_path) as tmp:
            write_png(tmp, figure, {"source": str(embeddings), "image": str(image), "panels": ["image", "pca", "overlay"]})
        written.append(figure_path)
    if not quiet:
        print(_summary(vis, src, written, fit), file=sys.stderr)
    return written


def _refuse_overwriting(output: Path, source, what: str) -> None:
    """An output must not replace (or land inside) an input: the input would be lost."""
    out, src = output.resolve(), Path(source).resolve()
    if out == src or src in out.parents:
        raise EmbedviewError(f"the output {output} would overwrite {what} {source}; choose another output name.")


def _summary(vis, src, written, fit) -> str:
    from ._geometry import OutputGrid

    shape = OutputGrid.for_image(src.image_shape, vis.scale[-2:]).shape
    pixels = "×".join(str(n) for n in src.shape[:-2] + shape)
    size = "×".join(str(n) for n in vis.image_shape)
    p = vis.scale[-1]
    explained = ""
    if len(vis.bases) == 1:
        ratios = "/".join(f"{100 * r:.0f}" for r in vis.bases[0].explained_variance_ratio[:3])
        explained = f"; the first components explain {ratios} % of the variance"
    also = "".join(f" and {path}" for path in written[1:])
    return (f"embedview: wrote {written[0]} ({pixels} px at {p:.4g} image px each; {vis.layout} layout, "
            f"image {size}, {src.n_channels} channels, fit {fit}{explained}){also}")


def _render_command(args) -> int:
    render(args.embeddings, args.output, image=args.image, fit=args.fit, normalize=args.normalize,
           pixel_size=args.pixel_size, n_components=args.n_components, rgb_components=args.rgb_components,
           omit_nonfinite=args.omit_nonfinite, keep_outliers=args.keep_outliers,
           fit_sample=args.fit_sample, slice_=args.slice, device=args.device, quiet=args.quiet)
    return 0


# ---------------------------------------------------------------------------------------------
# info


def describe(embeddings) -> dict:
    """What ``embedview info`` reports, as a JSON-able dict; reads metadata only, never features.

    Examples
    --------
    >>> describe("embeddings.zarr")["layout"]  # doctest: +SKIP
    'tiled'
    """
    from ._geometry import OutputGrid
    from ._sources import open_source

    src = open_source(embeddings)
    pieces = src.pieces()
    grid = pieces[0].grid.shape
    cell_sizes = sorted({float(piece.grid.cell_size[0]) for piece in pieces})
    meta = src.metadata
    info = {
        "path": str(embeddings),
        "layout": src.layout,
        "image_size": list(src.image_shape),
        "slices": src.n_slices,
        "channels": src.n_channels,
        "cell_grid": list(grid),
        "cell_size": float(src.default_pixel_size()),
        "cell_size_range": [cell_sizes[0], cell_sizes[-1]],
        "default_output_shape": list(OutputGrid.for_image(src.image_shape, src.default_pixel_size()).shape),
        "feature_bytes": len(pieces) * src.n_channels * grid[0] * grid[1] * 4,
        "tiles": None,
        "model_type": meta.get("model_type"),
        "model_name": meta.get("model_name"),
        "micro_sam_version": meta.get("micro_sam_version"),
        "data_signature": meta.get("data_signature"),
        "zarr_format": _zarr_format(embeddings),
    }
    if src.tiling is not None:
        t = src.tiling
        info["tiles"] = {
            "grid": list(t.grid), "tile_shape": list(t.tile_shape), "halo": list(t.halo), "count": t.n_tiles,
            "present": len(src.present_tiles), "missing": list(src.missing_tiles),
            "tiles_in_mask": meta.get("tiles_in_mask"),
        }
    return info


def _zarr_format(path) -> int | None:
    root = Path(path)
    if (root / "zarr.json").is_file():
        return 3
    if (root / ".zgroup").is_file():
        return 2
    return None


def format_info(info: dict) -> str:
    """Human-readable lines for :func:`describe`'s dict."""
    def size(values):
        return " × ".join(str(v) for v in values)

    lines = [
        ("file", info["path"]),
        ("layout", info["layout"]),
        ("image size", f"{size(info['image_size'])} pixels (H × W)"),
        ("slices", info["slices"] if info["slices"] is not None else "none (2D)"),
        ("channels", info["channels"]),
        ("cell grid", f"{size(info['cell_grid'])} cells" + (" per tile" if info["tiles"] else "")),
    ]
    lo, hi = info["cell_size_range"]
    cell = f"{info['cell_size']:.6g} image pixels"
    if info["tiles"]:
        tiles_range = f"{lo:.6g}" if lo == hi else f"{lo:.6g} to {hi:.6g}"
        cell += f" in a full interior tile (the default output pixel); this file's tiles: {tiles_range}"
    lines += [("cell size", cell),
              ("default output", f"{size(info['default_output_shape'])} pixels")]
    tiles = info["tiles"]
    if tiles:
        lines.append(("tiles", f"{size(tiles['grid'])} grid of {size(tiles['tile_shape'])} pixels, halo "
                               f"{size(tiles['halo'])}; {tiles['present']} of {tiles['count']} present"))
        missing = tiles["missing"]
        if missing:
            why = " (masked)" if tiles["tiles_in_mask"] is not None else ""
            lines.append(("missing tiles", ", ".join(map(str, missing)) + why))
    model = info["model_type"] or "unknown"
    if info["model_name"]:
        model += f" ({info['model_name']})"
    lines += [("features", f"{info['feature_bytes'] / 2**20:.1f} MiB (float32)"),
              ("model", model),
              ("micro_sam version", info["micro_sam_version"] or "unknown"),
              ("zarr format", info["zarr_format"] or "unknown")]
    width = max(len(key) for key, _ in lines) + 1
    return "\n".join(f"{key + ':':<{width}} {value}" for key, value in lines)


def _info_command(args) -> int:
    import json

    info = describe(args.embeddings)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


# ---------------------------------------------------------------------------------------------
# demo


def demo(out_dir, *, quiet: bool = False) -> list[Path]:
    """What ``embedview demo`` does: a generated image, its synthetic embeddings, their rendering.

    Writes ``demo_image.png``, ``demo_embeddings.zarr`` (micro_sam's layout), ``demo_pca.png``
    and ``demo_pca_figure.png`` into ``out_dir`` (created if needed), through :func:`render`.

    Examples
    --------
    >>> [p.name for p in demo("demo", quiet=True)]  # doctest: +SKIP
    ['demo_image.png', 'demo_embeddings.zarr', 'demo_pca.png', 'demo_pca_figure.png']
    """
    from ._demo import make_demo_scene, write_demo_embeddings
    from ._io import atomic_path, write_png

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EmbedviewError(f"cannot create the folder {out}: {(err.strerror or str(err)).lower()}.") from None
    if not out.is_dir():
        raise EmbedviewError(f"cannot write into {out}: it is a file, not a folder.")
    image, labels = make_demo_scene()
    image_path = out / "demo_image.png"
    with atomic_path(image_path) as tmp:
        write_png(tmp, image)
    embeddings = Path(write_demo_embeddings(out / "demo_embeddings.zarr", image, labels, progress=not quiet))
    if not quiet:
        print(f"embedview: wrote {image_path} (a generated {image.shape[0]}×{image.shape[1]} image) and "
              f"{embeddings} (synthetic embeddings in micro_sam's layout)", file=sys.stderr)
    rendered = render(embeddings, out / "demo_pca.png", image=image_path, quiet=quiet)
    if not quiet:
        print(f"embedview: next, try `embedview info {embeddings}` or "
              f"`embedview render {embeddings} -o pca.tif --pixel-size 1`", file=sys.stderr)
    return [image_path, embeddings] + rendered


def _demo_command(args) -> int:
    demo(args.output, quiet=args.quiet)
    return 0
