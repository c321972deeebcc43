"""Drop-in replacement for ``micro_sam.visualization``.

``compute_pca`` and ``project_embeddings_for_visualization`` keep micro_sam's signatures and
return what micro_sam 1.8.14 returns: the same PCA per slice (scikit-learn's components and
signs), the same min-max colours, micro_sam's crop of the padding, its tile stitching and its
``scale``. Replace ``from micro_sam.visualization import ...`` with
``from embedview.micro_sam import ...``.

How it differs:

- Files computed with a mask work. micro_sam raises ``KeyError`` when tiles are absent; here a
  missing tile keeps the place it would have had in the stitched picture, is left out of the
  fit and is drawn black (``0`` in rgb, ``NaN`` in components). Cells that the stitching blends
  from a missing tile and a present one count as missing too. The same holds for a thin last
  tile that keeps no cells of its grid (image sizes just over a multiple of the tile size), where
  micro_sam's resize fails with ``ValueError``.
- Faster and lighter: a streaming fit (count, sum and scatter in float64, one ``eigh``) instead of
  scikit-learn, one tile of one slice in memory at a time, a two-tap numpy resize instead of
  scikit-image, and the drawing pass resizes the projected components (``n_components``
  channels) instead of the features. Neither scikit-learn, scikit-image, nifty nor elf is needed.
- Bad input raises :class:`embedview.EmbedviewError` (a ``ValueError``) saying what was wrong.
- A slice whose components are all equal is drawn mid-grey (micro_sam divides by zero).

These functions reproduce micro_sam's approximate geometry on purpose (the crop rounds down,
``scale = image size / rows kept``, tiles are stitched by resampling). For pictures placed
exactly over the image, and one colour scale for all slices and tiles, use
:func:`embedview.visualize`.

Examples
--------
>>> import numpy as np
>>> from embedview.micro_sam import project_embeddings_for_visualization
>>> features = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
>>> rgb, scale = project_embeddings_for_visualization(
...     {"features": features, "input_size": [683, 1024], "original_size": [600, 900]})
>>> rgb.shape, rgb.dtype, scale
((42, 64, 3), dtype('uint8'), (14.285714285714286, 14.0625))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ._common.errors import EmbedviewError
from ._common.threads import blas_threads
from ._inputs.micro_sam_layout import check_feature_shape
from ._inputs.sources import Piece, Source, open_source
from ._model.colors import to_uint8
from ._model.fit import Accumulator, Basis

__all__ = ["compute_pca", "project_embeddings_for_visualization"]


def compute_pca(embeddings: np.ndarray, n_components: int = 3, as_rgb: bool = True) -> np.ndarray:
    """Project embeddings on their principal components, one PCA per slice, like micro_sam.

    Parameters
    ----------
    embeddings : array, shape (1, C, h, w) or (Z, 1, C, h, w)
        Image encoder features; a zarr array is read one slice at a time.
    n_components : int
        Principal components to keep.
    as_rgb : bool
        Map the components to uint8 with one min-max over all components of a slice (the
        minimum becomes 0, the maximum 255, rounded down). Needs ``n_components=3``.

    Returns
    -------
    ndarray, shape (h, w, n_components) or (Z, h, w, n_components)
        uint8 if ``as_rgb``, else float32 components.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.random.default_rng(0).normal(size=(2, 1, 8, 16, 16)).astype(np.float32)
    >>> compute_pca(features).shape
    (2, 16, 16, 3)
    >>> compute_pca(features[0], n_components=2, as_rgb=False).dtype
    dtype('float32')
    """
    _check_components(n_components, as_rgb)
    if not hasattr(embeddings, "shape"):
        embeddings = np.asarray(embeddings)
    n_slices, _, _ = check_feature_shape(embeddings.shape, "the embeddings passed to compute_pca")
    where = "the embeddings passed to compute_pca"
    if n_slices is None:
        return _slice_pca(_float32(embeddings[0]), n_components, as_rgb, where)
    return np.stack([_slice_pca(_float32(embeddings[z, 0]), n_components, as_rgb, f"slice {z} of {where}")
                     for z in range(n_slices)])


def project_embeddings_for_visualization(
    image_embeddings: Mapping[str, Any], n_components: int = 3, as_rgb: bool = True,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Project micro_sam image embeddings on their principal components, as micro_sam does.

    Parameters
    ----------
    image_embeddings : dict
        micro_sam's ``ImageEmbeddings``: ``features`` (an array ``(1, C, h, w)`` or
        ``(Z, 1, C, h, w)``, or for tiled embeddings the zarr group of tiles), ``input_size``
        (``None`` for tiled) and ``original_size``. A path to a micro_sam ``.zarr`` container
        works too.
    n_components : int
        Principal components to keep.
    as_rgb : bool
        Return uint8 colours (one min-max per slice over all components) instead of float32
        components. Needs ``n_components=3``.

    Returns
    -------
    picture : ndarray, shape (h, w, n_components) or (Z, h, w, n_components)
        One PCA per slice. Single images: the cell grid (64×64 for SAM; 73, 64 or 72 cells a
        side for micro_sam's DINOv2, DINOv3 and SAM3 files) with micro_sam's crop of the padding.
        Tiled: the tiles' inner blocks stitched as micro_sam stitches them; missing tiles
        (masked files) are black in rgb and NaN in components.
    scale : tuple of float
        Image pixels per picture pixel along each axis (``1.0`` along z), micro_sam's
        ``image size / picture size``.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.random.default_rng(0).normal(size=(3, 1, 8, 64, 64)).astype(np.float32)
    >>> embeddings = {"features": features, "input_size": [768, 1024], "original_size": [300, 400]}
    >>> components, scale = project_embeddings_for_visualization(embeddings, 2, as_rgb=False)
    >>> components.shape, scale
    ((3, 48, 64, 2), (1.0, 6.25, 6.25))
    """
    _check_components(n_components, as_rgb)
    src = open_source(image_embeddings)
    with blas_threads():
        if src.tiling is None:
            vis = _stack([_slice_pca(x, n_components, as_rgb, f"{piece.label} in {src.name}")
                          for piece, x in src.read_each(src.pieces())], src.is_stack)
            # micro_sam crops the padding after the PCA, so the fit and colours include it.
            rows, cols = _kept_cells(vis.shape[-3:-1], src.image_shape)
            vis = vis[..., :rows, :cols, :]
        else:
            vis = _project_tiled(src, n_components, as_rgb)
    scale = tuple(float(sh) / vsh for sh, vsh in zip(src.shape, vis.shape))
    return vis, scale


# ---------------------------------------------------------------------------------------------
# one slice


def _check_components(n_components, as_rgb) -> None:
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise EmbedviewError(f"n_components must be a positive integer, got {n_components!r}.")
    if as_rgb and n_components != 3:
        raise EmbedviewError(
            f"as_rgb=True needs n_components=3 (red, green, blue), got n_components={n_components}; "
            "pass as_rgb=False to get other numbers of components as float32.")


def _float32(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def _fit(acc: Accumulator, cells: np.ndarray, where: str) -> None:
    if not acc.add(cells):
        raise EmbedviewError(
            f"{where} holds NaN or infinite features, which a PCA cannot use; use "
            "embedview.PCA(nonfinite='omit') to leave them out and draw them black.")


def _slice_pca(x: np.ndarray, n_components: int, as_rgb: bool, where: str) -> np.ndarray:
    """elf's ``embedding_pca`` on one ``(C, h, w)`` grid, returned as ``(h, w, k)``."""
    acc = Accumulator(x.shape[0])
    _fit(acc, x.reshape(x.shape[0], -1), where)
    components = np.moveaxis(acc.basis(n_components).project(x), 0, -1)
    return _min_max_rgb(components) if as_rgb else np.ascontiguousarray(components)


def _min_max_rgb(components: np.ndarray) -> np.ndarray:
    """elf's colours: one min and max over all components of a slice; NaN (missing) → 0."""
    finite = components[np.isfinite(components)]
    k = components.shape[-1]
    if finite.size == 0:
        return np.zeros(components.shape, np.uint8)
    return to_uint8(components, np.full(k, finite.min()), np.full(k, finite.max()))


def _stack(slices: list[np.ndarray], is_stack: bool) -> np.ndarray:
    return np.stack(slices) if is_stack else slices[0]


def _kept_cells(embed_shape, shape) -> tuple[int, int]:
    """micro_sam's ``_get_crop``: rows and columns kept of a grid encoding a ``shape`` block.

    The short side keeps ``int(aspect * cells)``, truncated, as micro_sam does.
    """
    rows, cols = int(embed_shape[0]), int(embed_shape[1])
    if shape[0] > shape[1]:
        cols = int(float(shape[1] / shape[0]) * cols)
    elif shape[1] > shape[0]:
        rows = int(float(shape[0] / shape[1]) * rows)
    return rows, cols


# ---------------------------------------------------------------------------------------------
# tiles


def _resize_axis(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Stretch ``x`` to length ``n`` along ``axis`` exactly as ``skimage.transform.resize`` does.

    scikit-image's defaults: linear interpolation with half-pixel centres
    (``x_in = (i + 0.5) * m / n - 0.5``) and a mirror boundary (``-x`` below 0,
    ``2 (m - 1) - x`` above ``m - 1``). Only upsampling: scikit-image would smooth first when
    shrinking, and micro_sam's stitching only ever stretches to the longest piece.
    Weights are float64 and the result has ``x``'s dtype, as with scipy's zoom.

    Examples
    --------
    >>> _resize_axis(np.array([0.0, 1.0]), 4, axis=0).tolist()  # the mirror keeps ends off 0 and 1
    [0.25, 0.25, 0.75, 0.75]
    """
    m = x.shape[axis]
    if n == m:
        return x
    if not 0 < m < n:
        raise EmbedviewError(
            f"cannot resize {m} cells to {n}: only enlarging a non-empty axis is supported "
            "(scikit-image would smooth before shrinking, which micro_sam's stitching never does).")
    pos = (np.arange(n, dtype=np.float64) + 0.5) * (m / n) - 0.5
    lower = np.floor(pos)
    frac = pos - lower
    lower = lower.astype(np.intp)
    if m == 1:
        lower = upper = np.zeros(n, np.intp)
    else:
        lower, upper = (np.abs(i) for i in (lower, lower + 1))
        upper = np.where(upper > m - 1, 2 * (m - 1) - upper, upper)
    shape = [1] * x.ndim
    shape[axis] = n
    frac = frac.reshape(shape)
    out = np.take(x, lower, axis=axis) * (1 - frac) + np.take(x, upper, axis=axis) * frac
    return out.astype(x.dtype, copy=False)


@dataclass(frozen=True)
class _Stitching:
    """micro_sam's stitched picture of a tiling, computed from geometry alone.

    ``cells[t]`` are the (rows, cols) of tile ``t``'s grid that micro_sam keeps (its inner block,
    after the padding crop); each tile row is stretched to ``row_heights[i]`` and concatenated,
    then every row is stretched to ``width`` and the rows are stacked.
    """

    grid: tuple[int, int]
    cells: dict
    row_heights: tuple[int, ...]
    width: int

    @classmethod
    def of(cls, src: Source) -> "_Stitching":
        tiling = src.tiling
        grid_shape = src.pieces()[0].grid.shape
        cells = {}
        for tile in range(tiling.n_tiles):
            outer = tiling.outer(tile)
            outer_shape = tuple(b - a for a, b in outer)
            kept = _kept_cells(grid_shape, outer_shape)
            tile_scale = tuple(k / float(o) for k, o in zip(kept, outer_shape))
            # micro_sam's tile_bb: the inner block in outer-local pixels, times the cell scale,
            # rounded half to even by numpy, then sliced (which clips to the kept cells).
            bb = (slice(int(np.round((a - o0) * s)), int(np.round((b - o0) * s)))
                  for (a, b), (o0, _), s in zip(tiling.inner(tile), outer, tile_scale))
            cells[tile] = tuple(slice(a, max(a, b)) for a, b, _ in (sl.indices(k) for sl, k in zip(bb, kept)))
        gy, gx = tiling.grid
        stitching = cls((gy, gx), cells, (), 0)
        heights = tuple(max(stitching.size(i * gx + j)[0] for j in range(gx)) for i in range(gy))
        width = max(sum(stitching.size(i * gx + j)[1] for j in range(gx)) for i in range(gy))
        return cls((gy, gx), cells, heights, width)

    def size(self, tile: int) -> tuple[int, int]:
        """Rows and columns of tile ``tile``'s kept cells (before stretching)."""
        return tuple(sl.stop - sl.start for sl in self.cells[tile])

    @property
    def shape(self) -> tuple[int, int]:
        return sum(self.row_heights), self.width

    def rows(self, block: Callable[[int], np.ndarray | None], channels: int) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, (channels, h, width) row)`` per tile row; ``block(t)`` gives tile ``t``'s
        kept cells, or None for a missing tile.

        Missing tiles are NaN. So are pieces with no cells along the axis to stretch (a thin last
        tile row or column can keep none), where micro_sam's resize fails.
        """
        gy, gx = self.grid
        y = 0
        for i, height in enumerate(self.row_heights):
            parts = []
            for tile in range(i * gx, (i + 1) * gx):
                data = block(tile)
                if data is None or (data.shape[-2] == 0 < height):
                    data = np.full((channels, height, self.size(tile)[1]), np.nan, np.float32)
                parts.append(_resize_axis(data, height, axis=-2))
            row = np.concatenate(parts, axis=-1)
            if row.shape[-1] == 0 < self.width:
                row = np.full((channels, height, self.width), np.nan, np.float32)
            yield slice(y, y + height), _resize_axis(row, self.width, axis=-1)
            y += height


def _tile_blocks(src: Source, pieces: list[Piece], stitching: _Stitching,
                 transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[int], np.ndarray | None]:
    """``block(t)`` for :meth:`_Stitching.rows`: reads present tiles in order, one at a time."""
    reader = src.read_each(pieces)
    present = {piece.tile for piece in pieces}

    def block(tile: int):
        if tile not in present:
            return None
        piece, x = next(reader)
        assert piece.tile == tile
        return transform(x[(slice(None),) + stitching.cells[tile]])

    return block


def _project_tiled(src: Source, n_components: int, as_rgb: bool) -> np.ndarray:
    stitching = _Stitching.of(src)
    zs = [None] if not src.is_stack else range(src.n_slices)
    slices, valids = [], {}
    for z in zs:
        pieces = [p for p in src.pieces() if p.z == z]
        # Where the stitched cells come from present tiles only (a masked stack's differ per slice):
        # stitch ones (NaN for the missing).
        present = frozenset(p.tile for p in pieces)
        if present not in valids:
            ones = lambda tile: np.ones((1,) + stitching.size(tile), np.float32) if tile in present else None  # noqa: E731
            valid = np.isfinite(np.concatenate([row[0] for _, row in stitching.rows(ones, 1)], axis=0))
            valids[present] = None if valid.all() else valid
        valid = valids[present]
        where = src.name if z is None else f"slice {z} of {src.name}"
        # Pass 1: fit on the stitched (stretched) cells, as micro_sam does.
        acc = Accumulator(src.n_channels)
        for rows, row in stitching.rows(_tile_blocks(src, pieces, stitching, lambda x: x), src.n_channels):
            cells = row.reshape(src.n_channels, -1)
            if valid is not None:
                cells = cells[:, valid[rows].ravel()]
            _fit(acc, cells, where)
        basis: Basis = acc.basis(n_components)
        # Pass 2: projecting commutes with the stretch (linear, weights summing to 1), so
        # stretch the projected k channels instead of the C features.
        components = np.empty(stitching.shape + (n_components,), np.float32)
        for rows, row in stitching.rows(_tile_blocks(src, pieces, stitching, basis.project), n_components):
            components[rows] = np.moveaxis(row, 0, -1)
        slices.append(_min_max_rgb(components) if as_rgb else components)
    return _stack(slices, src.is_stack)
