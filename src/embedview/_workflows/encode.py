"""``embedview encode``: an image through a model into micro_sam's embedding file."""

from __future__ import annotations

from pathlib import Path


def encode_file(image, output, *, model, checkpoint=None, ndim=None, tile_shape=None, halo=None, device=None,
                batch_size: int = 1, quiet: bool = False) -> Path:
    """Encode ``image`` with ``model`` into the ``.zarr`` file ``output``; print where it went unless ``quiet``.

    The work is :func:`embedview.encode`; this adds the command's report.
    """
    from .._encode.run import encode

    src = encode(image, model, checkpoint=checkpoint, ndim=ndim, tile_shape=tile_shape, halo=halo, device=device,
                 output=output, batch_size=batch_size, progress=not quiet)
    if not quiet:
        grid = src.pieces()[0].grid.shape
        print(f"wrote {output}: {src.layout}, {len(src.pieces())} piece(s) of {src.n_channels} channels on "
              f"{grid[0]}×{grid[1]} cells ({src.metadata.get('model_name')})")
    return Path(output)
