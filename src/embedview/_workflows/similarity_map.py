"""The similarity map as files: what ``embedview similarity`` writes, callable from Python.

:func:`embedview.similarity` computes the map; :func:`similarity_map` checks the output (and
the optional figure) before the work, writes the map with its values, and the image |
similarity | overlay figure, with its colour bar and the query marked (:func:`similarity_panel`).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError, arg
from .figure import GAP, Drawn, downsample


def similarity_map(embeddings, output, *, point=None, mask=None, image=None, z: int | None = None,
                   pixel_size=None, quiet: bool = False, geometry: dict | None = None, overwrite: bool = False) -> list[Path]:
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
        The image: also write ``<output stem>_figure.png`` (image | similarity | overlay, with
        a colour bar and the query marked; see :func:`similarity_panel`).
    z : int, optional
        Slice of a stack to draw (default: the point's slice, or the middle one).
    pixel_size : float or (float, float), optional
        Output pixel size in image pixels (default: one embedding cell).
    quiet : bool
        Print nothing; otherwise one summary line on stderr.
    geometry : dict, optional
        Keyword arguments of :func:`embedview.open_features` for ViT feature files.
    overwrite : bool
        The outputs may replace files embedview did not write (never an input).

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
    from .._run.settings import Execution
    from .._run.similarity import similarity
    from .figure import FigureFile

    src = open_embeddings(embeddings, geometry)
    inputs = [("the embeddings", embeddings), ("the mask", mask), ("the image", image)]
    out = check_output(output, inputs=inputs, overwrite=overwrite)
    given = z
    if point is not None and len(point) == 3:
        if z is not None and z != point[0]:
            raise EmbedviewError(f"{arg('point', list(point))} gives slice {point[0]} but {arg('z', z)}; give one.")
        given = z = point[0]
    mask_array = None if mask is None else read_image(mask)
    if z is None and src.is_stack and point is not None and len(point) == 2:
        z = src.n_slices // 2
    query_point = point if point is None or len(point) == 3 or not src.is_stack else (z,) + tuple(point)
    figure = FigureFile(src, out, image, z if image is not None else None, inputs, overwrite)
    sim = similarity(src, query_point, mask=mask_array, z=z, pixel_size=pixel_size,
                     execution=Execution(progress=not quiet))
    meta = {"source": str(embeddings), "query": {"point": list(point) if point else None, "mask": str(mask) if mask else None,
                                                   "slice": z}, "values": "cosine similarity"}
    written = [write_output(sim, out, metadata=meta, overwrite=overwrite)]

    def draw(p, zz):
        again = similarity(src, query_point, mask=mask_array, z=z, pixel_size=p)
        return similarity_panel(again, p, query_point, mask_plane(mask_array, src.shape, zz))

    # the figure checks the image against the embeddings' shape: a stack's, though the map is one slice
    written += figure.write(replace(sim, image_shape=tuple(src.shape)), draw=draw)
    if not quiet:
        query = f"pixel {tuple(point)}" if point else "the mask (mean)"
        if src.is_stack and z is not None and (point is None or len(point) == 2):
            chosen = "given by --slice" if given is not None else "the middle one; --point Z,Y,X or --slice Z picks another"
            query += f" of slice {z} ({chosen})"
        print(f"embedview: wrote {written[0]} (cosine similarity to the cell under {query}, scale "
              f"{sim.scale[-1]:.4g} image px)" + "".join(f" and {path}" for path in written[1:]), file=sys.stderr)
    return written


def similarity_panel(sim, pixel_size: int, point=None, mask=None) -> Drawn:
    """The middle panel of a similarity figure: the map, a colour bar under it, the query marked.

    The colour bar runs through the colours as drawn, from the map's display range
    (:func:`~embedview._run.similarity.display_range`) to 1.0, labelled with the values of its
    first, middle and last column. The query is marked on the map and the overlay: a ``+`` on
    the output pixel holding ``point``, or the outline of ``mask``.

    Parameters
    ----------
    sim : Visualization
        :func:`embedview.similarity` drawn at ``pixel_size``.
    pixel_size : int
        The figure's whole pixel size: output pixel ``k`` covers image pixels ``[k*p, (k+1)*p)``.
    point : (y, x) or (z, y, x), optional
        The query's image pixel.
    mask : ndarray, optional
        The query mask's plane ``(H, W)`` (:func:`mask_plane`).

    Returns
    -------
    Drawn
    """
    from .._outputs.legend import mark_outline, mark_point
    from .._run.similarity import display_range

    marks = None
    if point is not None:
        y, x = (int(v) // int(pixel_size) for v in point[-2:])
        arm = max(2, min(sim.rgb.shape[:2]) // 25)
        marks = lambda panel: mark_point(panel, y, x, arm)  # noqa: E731
    elif mask is not None:
        inside = downsample(mask, int(pixel_size)) > 0  # every output pixel the mask touches
        marks = lambda panel: mark_outline(panel, inside)  # noqa: E731
    lo = display_range(sim.components[..., 0])[0]
    return Drawn(sim.rgb, sim.valid, legend=lambda width, w: similarity_bar(lo, width, w), marks=marks)


def similarity_bar(lo: float, width: int, panel_width: int) -> np.ndarray:
    """A figure's colour bar (``width`` wide) under its middle panel: ``lo`` … 1.0 as
    :func:`~embedview._run.similarity.similarity_rgb` colours them, one column per output pixel.

    Examples
    --------
    >>> bar = similarity_bar(0.2, 300, 100)
    >>> bar.shape[1], [int(v) for v in bar[5, 108]]  # the first column: the ramp's darkest colour
    (300, [20, 11, 52])
    """
    from .._outputs.legend import colour_bar, font_size, load_font
    from .._run.similarity import similarity_rgb

    values = lo + (1.0 - lo) * np.linspace(0.0, 1.0, panel_width)
    digits = 2 if 1.0 - lo >= 0.1 else 3
    ticks = [(c, f"{values[c]:.{digits}f}") for c in (0, (panel_width - 1) // 2, panel_width - 1)]
    return colour_bar(similarity_rgb(values, lo), ticks, width, panel_width + GAP, load_font(font_size(width)),
                      caption="cosine similarity")


def mask_plane(mask, shape: tuple, z: int | None) -> np.ndarray | None:
    """The plane of a query mask the figure shows (slice ``z`` of a stack's mask), as bool.

    Examples
    --------
    >>> mask_plane(np.ones((2, 3, 4)), (2, 3, 4), 1).shape
    (3, 4)
    """
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and mask.shape[:2] == tuple(shape[-2:]):
        mask = mask[..., 0]  # an RGB(A) picture of a mask
    if mask.ndim == 3:
        mask = mask[z if z is not None else shape[0] // 2]
    return mask != 0

