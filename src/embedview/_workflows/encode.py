"""``embedview encode``: an image through a model into micro_sam's embedding file."""

from __future__ import annotations

import sys
from pathlib import Path


def encode_file(image, output, *, model, checkpoint=None, ndim=None, tile_shape=None, halo=None, device=None,
                batch_size: int = 1, quiet: bool = False, overwrite: bool = False, layer=None) -> Path:
    """Encode ``image`` with ``model`` into the ``.zarr`` file ``output``; print where it went unless ``quiet``.

    The work is :func:`embedview.encode`; this adds the command's report.
    """
    from .._encode.run import encode

    src = encode(image, model, checkpoint=checkpoint, ndim=ndim, tile_shape=tile_shape, halo=halo, device=device,
                 output=output, batch_size=batch_size, progress=not quiet, overwrite=overwrite, layer=layer)
    if not quiet:
        grid = src.pieces()[0].grid.shape
        print(f"embedview: wrote {output} ({src.metadata.get('model_name')}: {src.layout} layout, "
              f"{len(src.pieces())} piece(s) of {src.n_channels} channels on {grid[0]}×{grid[1]} cells)", file=sys.stderr)
    return Path(output)


def encode_for_render(args):
    """``render IMAGE --model NAME``: the image encoded on the way (in memory), ``--image`` defaulting to it.

    Returns ``(embeddings, image)`` for the rest of the render command: a source in place of the
    embedding file, and the image for the figure and the guide. The output is checked before the
    model runs, so a bad ``-o`` costs no encoding.
    """
    from .._common.errors import EmbedviewError, arg
    from .._common.output_paths import check_output
    from .._encode.images import open_image
    from .._encode.run import encode

    if args.model is None:  # --layer alone
        raise EmbedviewError(f"{arg('layer', args.layer)} chooses a block of the model that encodes an image; pass "
                             f"{arg('model', form='NAME')} too, or leave {arg('layer')} out for embeddings.")
    if len(args.embeddings) != 1:
        raise EmbedviewError(f"{arg('model', args.model)} encodes one image; render several images one at a time.")
    image = args.embeddings[0]
    img = open_image(image, args.ndim)
    check_output(args.output, stack=img.n_slices is not None, overwrite=args.overwrite,
                 inputs=[("the image", image), ("the checkpoint", args.checkpoint)])
    # --device is the PCA's (numpy on cpu); the encoder takes a GPU where one is asked for, else the best present
    device = args.device if str(args.device).startswith(("cuda", "mps")) else None
    src = encode(img.array, args.model, checkpoint=args.checkpoint, ndim=args.ndim, tile_shape=args.tile_shape,
                 halo=args.halo, device=device, progress=not args.quiet, layer=getattr(args, "layer", None))
    src.name = str(image)
    return [src], args.image if args.image is not None else image


def render_inputs(args):
    """``(embeddings, image)`` of ``render``: as given, or with ``--model`` the image encoded on the way."""
    if args.model is None and args.layer is None:
        refuse_encoding_flags(args)
        return args.embeddings, args.image
    return encode_for_render(args)


def refuse_encoding_flags(args) -> None:
    """``render EMBEDDINGS`` with a flag that only says how an image is encoded: one sentence."""
    from .._common.errors import EmbedviewError

    given = next((flag for flag, value in (("--ndim", args.ndim), ("--tile-shape", args.tile_shape),
                                           ("--halo", args.halo), ("--checkpoint", args.checkpoint))
                  if value is not None), None)
    if given:
        raise EmbedviewError(f"{given} tells how an image is encoded; add --model NAME (the input is then an "
                             "image), or drop it.")
