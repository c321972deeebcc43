"""Similarity maps: how alike every cell is to one query cell (or to the mean of a mask).

"What else looks like this point?": the cosine similarity of each cell's feature vector to the
query vector, drawn at the same exact geometry as the PCA picture (same pieces, same placement,
same ``scale``/``translate``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from .._common.deprecation import deprecate_parameters
from .._common.errors import EmbedviewError, arg
from .._common.progress import progress_bar
from .._common.threads import blas_threads
from .._inputs.sources import Piece, Source, open_source
from .._model.selection import image_mask

#: Colours of the similarity scale, low to high (an inferno-like ramp; black is "nothing drawn").
RAMP = np.array([(20, 11, 52), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
                 (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164)], np.float64)


#: Bytes a similarity map takes per output pixel, its PNG or TIFF output included (measured: 95).
SIMILARITY_BYTES_PER_PIXEL = 100

class CosineQuery:
    """Projects features onto one query direction: ``cos(q, x)`` per cell, as a 1-component "basis"."""

    n_components = 1

    def __init__(self, query: np.ndarray):
        query = np.asarray(query, np.float64)
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm == 0:
            raise EmbedviewError("the query cell's feature vector is zero or not finite; choose another point.")
        self.unit = query / norm  # float64: exactly 1.0 at the query cell

    def project(self, features: np.ndarray) -> np.ndarray:
        flat = features.reshape(features.shape[0], -1)
        norms = np.sqrt(np.einsum("ij,ij->j", flat, flat, dtype=np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (self.unit @ flat.astype(np.float64)) / np.where(norms > 0, norms, np.nan)
        return np.clip(cos, -1, 1).astype(np.float32).reshape((1,) + features.shape[1:])


def _similarity_all(source, point=None, *, mask=None, z=None, pixel_size=None, original_size=None,
                    execution=None, progress=None):
    """:func:`similarity` with its old ``progress=`` (routed here with a ``FutureWarning``)."""
    from .settings import Execution

    if progress is not None:
        e = execution or Execution()
        execution = Execution(e.device, e.scheduler, bool(progress))
    return similarity(source, point, mask=mask, z=z, pixel_size=pixel_size, original_size=original_size,
                      execution=execution)


@deprecate_parameters({"progress": "execution=embedview.Execution(progress=True)"}, route=_similarity_all)
def similarity(source, point=None, *, mask=None, z: int | None = None, pixel_size=None,
               original_size=None, execution=None):
    """Cosine similarity of every cell to the cell under image pixel ``point`` (or to the mean of ``mask``).

    Parameters
    ----------
    source : str, path, dict, array or Source
        The embeddings (as for :func:`embedview.visualize`).
    point : (y, x) or (z, y, x), optional
        Image pixel whose cell is the query (pixel indices; for a stack give z here or as ``z``).
    mask : array, optional
        Instead of a point: an image-sized label/bool mask; the query is the mean feature vector
        of the cells whose centre lies on it.
    z : int, optional
        Slice of a stack to draw (default: the query's slice, or the middle one). The map
        covers that slice only.
    pixel_size : float or (float, float), optional
        Output pixel size in image pixels (default: the embedding grid, as the PCA picture).
    original_size : (int, int), optional
        Image size for plain arrays.
    execution : Execution, optional
        Its ``progress``: a progress bar on stderr (the map is computed in this process, on numpy).

    Returns
    -------
    Visualization
        ``components[..., 0]`` holds the similarity (1.0 at the query cell, NaN where nothing is
        drawn), ``rgb`` a colour ramp from the 1st percentile to 1.0, and ``scale``/``translate``
        as for the PCA picture; ``bases`` is empty.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
    >>> sim = similarity(embedview.open_source(features, (640, 640)), point=(5, 5))
    >>> float(sim.components[0, 0, 0]), sim.rgb.shape
    (1.0, (64, 64, 3))
    """
    from .._common.limits import check_picture_fits
    from .visualize import Visualization, place_plane

    src = open_source(source, original_size)
    if (point is None) == (mask is None):
        raise EmbedviewError(f"give the query as {arg('point', form='y,x')} or as {arg('mask')}, not both or neither.")
    grid = src.output_grid(pixel_size)
    # before the query's features are read; measured: about 95 bytes per output pixel with the output written
    check_picture_fits(1, grid.shape, 1, per_pixel=SIMILARITY_BYTES_PER_PIXEL,
                       remedy=f"choose a larger pixel size ({arg('pixel_size')})")
    with blas_threads():
        if point is not None:
            query_z, query = _point_query(src, point, z)
        else:
            query_z, query = None, _mask_query(src, mask, z)
    if z is None:
        z = query_z if query_z is not None else ((src.n_slices // 2) if src.is_stack else None)
    pieces = _slice_pieces(src, z)
    bar = progress_bar(len(pieces), bool(execution and execution.progress), desc="similarity")
    with blas_threads(), contextlib.closing(bar):
        values = place_plane(src, pieces, CosineQuery(query), grid, bar=bar)
    rgb = similarity_rgb(values[..., 0])
    return Visualization(rgb, values, grid.scale, grid.translate, (), src.layout, tuple(src.image_shape))


def display_range(values: np.ndarray) -> tuple[float, float]:
    """The range a similarity map is shown in: its 1st percentile (finite values) to 1.0.

    Examples
    --------
    >>> display_range(np.array([0.2, 0.5, 1.0, np.nan]))[1]
    1.0
    """
    finite = values[np.isfinite(values)]
    lo = float(np.percentile(finite, 1)) if finite.size else 0.0
    return min(lo, 1.0 - 1e-6), 1.0


def similarity_rgb(values: np.ndarray, lo: float | None = None) -> np.ndarray:
    """Colour similarities: ``lo`` (default :func:`display_range`'s) … 1.0 along :data:`RAMP`; NaN black."""
    lo = display_range(values)[0] if lo is None else min(lo, 1.0 - 1e-6)
    t = np.clip((np.nan_to_num(values, nan=lo) - lo) / (1.0 - lo), 0, 1) * (len(RAMP) - 1)
    i = np.minimum(t.astype(np.intp), len(RAMP) - 2)
    f = (t - i)[..., None]
    rgb = np.rint(RAMP[i] * (1 - f) + RAMP[i + 1] * f).astype(np.uint8)
    rgb[~np.isfinite(values)] = 0
    return rgb


def _slice_pieces(src: Source, z) -> list[Piece]:
    if src.is_stack and (z is None or not 0 <= int(z) < src.n_slices):
        raise EmbedviewError(f"{src.name} is a stack of {src.n_slices} slices; choose a slice z from 0 to {src.n_slices - 1}.")
    if not src.is_stack and z not in (None, 0):
        raise EmbedviewError(f"{src.name} is a 2D image; it has no slice {z}.")
    zz = int(z) if src.is_stack else None
    return [p for p in src.pieces() if p.z == zz]


def _point_query(src: Source, point, z) -> tuple[int | None, np.ndarray]:
    try:
        numbers = [float(v) for v in point]
    except (TypeError, ValueError):
        numbers = [np.nan]
    if not all(np.isfinite(v) and v == int(v) for v in numbers):
        raise EmbedviewError(f"{arg('point', point)} must be (y, x) or (z, y, x) image pixel indices (whole numbers).")
    point = tuple(int(v) for v in numbers)
    if len(point) == 3:
        if not src.is_stack:
            raise EmbedviewError(f"point {list(point)} has three coordinates but {src.name} is a 2D image; give (y, x).")
        z, point = point[0], point[1:]
    if len(point) != 2:
        raise EmbedviewError(f"point must be (y, x) or (z, y, x) image pixel indices; got {list(point)}.")
    h, w = src.image_shape
    if not (0 <= point[0] < h and 0 <= point[1] < w):
        raise EmbedviewError(f"point (y, x) = {point} lies outside the image ({h} × {w} pixels).")
    if src.is_stack and z is None:
        raise EmbedviewError(f"{src.name} is a stack; give the slice as {arg('point', form='z,y,x')} or {arg('z')}.")
    for piece in _slice_pieces(src, z):
        (y0, y1), (x0, x1) = piece.inner
        if y0 <= point[0] < y1 and x0 <= point[1] < x1:
            i, j = (int(piece.grid.cell_of(np.array([c + 0.5]), axis)[0]) for axis, c in enumerate(point))
            query = src.read(piece)[:, i, j]
            if not np.isfinite(query).all():
                raise EmbedviewError(f"the cell under {point} ({piece.label}) is NaN or infinite; choose another point.")
            return z, query
    raise EmbedviewError(f"no embeddings cover pixel {point} (a tile missing from a masked file?); choose another point.")


def _mask_query(src: Source, mask, z) -> np.ndarray:
    selection = image_mask(mask, src.shape)
    total, count = np.zeros(src.n_channels, np.float64), 0
    pieces = src.pieces() if z is None else _slice_pieces(src, z)
    for piece, x in src.read_each(pieces):
        cells = x[(slice(None),) + piece.fit_cells]
        keep = selection.cells(piece)[piece.fit_cells] & np.isfinite(cells).all(axis=0)
        total += cells[:, keep].sum(axis=1, dtype=np.float64)
        count += int(keep.sum())
    if count == 0:
        raise EmbedviewError("no cell centre lies on the mask; draw a larger mask.")
    return total / count
