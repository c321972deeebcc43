"""The similarity map as files: what ``embedview similarity`` writes, callable from Python.

:func:`embedview.similarity` computes the map; :func:`similarity_map` checks the output (and
the optional figure) before the work, writes the map with its values, and the image |
similarity | overlay figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .._common.errors import EmbedviewError


def similarity_map(embeddings, output, *, point=None, mask=None, image=None, z: int | None = None,
                   pixel_size=None, quiet: bool = False, geometry: dict | None = None) -> list[Path]:
    """Write the cosine similarity map of every cell to one point (or to a mask's mean).

    Parameters
    ----------
    embeddings : str or os.PathLike
        A micro_sam embedding file, or ViT features with ``geometry``.
    output : str or os.PathLike
        ``.png``, ``.tif``/``.tiff``, ``.zarr``, ``.npy`` or ``.npz``; the values are stored
        beside the colours where the format can hold them (``.npz``, ``.zarr``).
    point : (y, x) or (z, y, x), optional
        Image pixel of the query; give ``point`` or ``mask``.
    mask : str or os.PathLike, optional
        An image-sized mask file: the query is the mean of the cells under it.
    image : str or os.PathLike, optional
        The image: also write ``<output stem>_figure.png`` (image | similarity | overlay).
    z : int, optional
        Slice of a stack to draw (default: the point's slice, or the middle one).
    pixel_size : float or (float, float), optional
        Output pixel size in image pixels (default: one embedding cell).
    quiet : bool
        Print nothing; otherwise one summary line on stderr.
    geometry : dict, optional
        Keyword arguments of :func:`embedview.open_features` for ViT feature files.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> similarity_map("embeddings.zarr", "sim.png", point=(300, 450))  # doctest: +SKIP
    [PosixPath('sim.png')]
    """
    from .._common.output_paths import check_output
    from .._inputs.sources import open_embeddings
    from .._outputs.io import read_image, write_output
    from .._run.similarity import similarity
    from .figure import FigureFile

    src = open_embeddings(embeddings, geometry)
    inputs = [("the embeddings", embeddings), ("the mask", mask), ("the image", image)]
    out = check_output(output, inputs=inputs)
    given = z
    if point is not None and len(point) == 3:
        if z is not None and z != point[0]:
            raise EmbedviewError(f"point={list(point)} gives slice {point[0]} but z={z}; give one.")
        given = z = point[0]
    mask_array = None if mask is None else read_image(mask)
    if z is None and src.is_stack and point is not None and len(point) == 2:
        z = src.n_slices // 2
    query_point = point if point is None or len(point) == 3 or not src.is_stack else (z,) + tuple(point)
    figure = FigureFile(src, out, image, z if image is not None else None, inputs)
    sim = similarity(src, query_point, mask=mask_array, z=z, pixel_size=pixel_size, progress=not quiet)
    meta = {"source": str(embeddings), "query": {"point": list(point) if point else None, "mask": str(mask) if mask else None,
                                                   "slice": z}, "values": "cosine similarity"}
    written = [write_output(sim, out, metadata=meta)]

    def draw(p, zz):
        again = similarity(src, query_point, mask=mask_array, z=z, pixel_size=p)
        return again.rgb, again.valid

    written += figure.write(sim, draw=draw)
    if not quiet:
        query = f"pixel {tuple(point)}" if point else "the mask (mean)"
        if src.is_stack and z is not None and (point is None or len(point) == 2):
            chosen = "given by --slice" if given is not None else "the middle one; --point Z,Y,X or --slice Z picks another"
            query += f" of slice {z} ({chosen})"
        print(f"embedview: wrote {written[0]} (cosine similarity to the cell under {query}, scale "
              f"{sim.scale[-1]:.4g} image px)" + "".join(f" and {path}" for path in written[1:]), file=sys.stderr)
    return written
