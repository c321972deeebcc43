"""A montage of a stack: evenly spaced slices drawn in one basis, each tile labelled with its slice.

The tiles are drawn with :func:`~embedview._workflows.figure.draw_plane` (the exact geometry of
:func:`embedview.visualize`) at one whole pixel size that keeps the montage within
:data:`~embedview._workflows.figure.MAX_SIDE`; with the image, each slice's image tile sits above
its PCA tile. :func:`montage` is the public entry; :class:`MontageFile` is ``render``'s montage
file (checked before the work, written after it).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError, arg
from .figure import (
    GAP,
    LEGEND_ROOM,
    MAX_SIDE,
    checked_image,
    checked_png,
    display_rgb,
    downsample,
    draw_plane,
    figure_pixel_size,
    figure_upsampling,
    pca_legend,
    text_legend,
    write_figure,
)

#: Slices in a montage unless asked otherwise.
DEFAULT_SLICES = 6
#: Height kept per row of tiles for its caption when choosing the pixel size.
CAPTION_ROOM = 40


def montage_slices(n_slices: int | None, count, name: str = "montage") -> list[int]:
    """``count`` evenly spaced slices of a stack of ``n_slices``, the first and last included
    (all of them when ``count`` is larger; the middle one for 1).

    ``name`` is the option's name in the error of a 2D input or of a count that is not a whole
    number from 1 up.

    Examples
    --------
    >>> montage_slices(50, 6), montage_slices(4, 6), montage_slices(5, 1)
    ([0, 10, 20, 29, 39, 49], [0, 1, 2, 3], [2])
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise EmbedviewError(f"{arg(name, count)} must be the number of slices to show, 1 or more.")
    if not n_slices:
        raise EmbedviewError(f"{arg(name)} draws evenly spaced slices of a stack, but the embeddings describe "
                             f"a 2D image; leave out {arg(name)}.")
    if count == 1:
        return [n_slices // 2]
    return [int(v) for v in np.rint(np.linspace(0, n_slices - 1, min(int(count), n_slices)))]


def make_montage(source, vis, slices: list[int], image: np.ndarray | None = None, *,
                 rgb_components: tuple[int, ...] | None = None, max_side: int = MAX_SIDE,
                 upsample=None) -> np.ndarray:
    """The montage of ``slices`` of ``vis`` (image tile over PCA tile with ``image``), on white.

    Each tile is :func:`~embedview._workflows.figure.draw_plane` of its slice at the montage's
    pixel size, captioned ``z = <slice>``; the PCA's explained variance is written under the
    tiles (:func:`~embedview._workflows.figure.pca_legend`). ``upsample`` draws the PCA tiles as
    :func:`embedview.visualize` would (``"guided"``: guided by ``image``, each slice by its plane).

    Returns
    -------
    uint8 ndarray, shape (H, W, 3)
    """
    from .._outputs.legend import font_size, line_height, load_font, text_strip

    h, w = (int(v) for v in vis.image_shape[-2:])
    per = 1 if image is None else 2  # tiles per slice, one above the other
    cols = max(1, min(len(slices), math.ceil(math.sqrt(len(slices) * per * h / w))))
    rows = math.ceil(len(slices) / cols)
    cols = math.ceil(len(slices) / rows)  # rows as full as they can be: 4 tiles 2 × 2, not 3 + 1
    p = figure_pixel_size((h, w), max_side, across=cols, down=rows * per,
                          extra_height=rows * CAPTION_ROOM + LEGEND_ROOM)
    upsampling = figure_upsampling(upsample, image, source)  # resolved once for every tile
    tiles = []
    for z in slices:
        pca = draw_plane(source, vis, p, z, rgb_components, upsampling)[0]
        tiles.append(pca if image is None else _stacked(display_rgb(downsample(image[z], p)), pca))
    th, tw = tiles[0].shape[:2]
    width = cols * tw + (cols - 1) * GAP
    font = load_font(font_size(width))
    cell = line_height(font) + th  # caption over the tile(s)
    picture = np.full((rows * cell + (rows - 1) * GAP, width, 3), 255, np.uint8)
    for k, (z, tile) in enumerate(zip(slices, tiles)):
        y, x = (k // cols) * (cell + GAP), (k % cols) * (tw + GAP)
        picture[y:y + cell - th, x:x + tw] = text_strip(f"z = {z}", tw, font)[:cell - th]
        picture[y + cell - th:y + cell, x:x + tw] = tile
    legend = text_legend(pca_legend(vis, None, rgb_components))(width, tw)
    return np.concatenate([picture, legend])


def _stacked(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    gap = np.full((GAP,) + top.shape[1:], 255, np.uint8)
    return np.concatenate([top, gap, bottom])


def montage(source, image=None, vis=None, *, slices: int = DEFAULT_SLICES,
            rgb_components: tuple[int, ...] | None = None, upsample=None, path=None,
            max_side: int = MAX_SIDE, overwrite: bool = False) -> np.ndarray:
    """A montage of evenly spaced slices of a stack in one basis, as a uint8 array (and a PNG if asked).

    Each tile is the slice's PCA picture drawn again at the montage's whole pixel size (at most
    ``max_side`` wide and high), placed exactly as :func:`embedview.visualize` places it, and
    captioned with its slice index; with ``image``, the slice's image sits above it. The
    explained variance of the red, green and blue channels is written under the tiles.

    Parameters
    ----------
    source : str, os.PathLike, dict, array or Source
        The embeddings of a stack (anything :func:`embedview.open_source` takes).
    image : ndarray, str or os.PathLike, optional
        The stack the embeddings were computed from, ``(Z, H, W)`` plus an optional colour axis.
    vis : Visualization, optional
        A visualization of ``source`` whose basis the tiles use; default
        ``embedview.visualize(source)`` (one basis for all slices, so colours hold across them).
    slices : int
        How many slices: evenly spaced, the first and last included (all if the stack has fewer).
    rgb_components : tuple of int, optional
        As given to :func:`embedview.visualize`.
    upsample : {"nearest", "bilinear", "guided"} or Upsample, optional
        How the PCA tiles' cells become pixels, as for :func:`embedview.visualize` (default
        nearest); ``"guided"`` needs ``image`` and guides each tile with its slice.
    path : str or os.PathLike, optional
        Also write the montage there, as a ``.png`` (replacing only embedview's own picture
        unless ``overwrite``).
    max_side : int
        Largest width and height of the montage in pixels.
    overwrite : bool
        Replace a file at ``path`` that embedview did not write (never an input).

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Examples
    --------
    >>> import numpy as np, embedview
    >>> features = np.random.default_rng(0).normal(size=(5, 1, 8, 16, 16)).astype(np.float32)
    >>> src = embedview.open_source(features, original_size=(160, 160))
    >>> embedview.montage(src, slices=3).shape[-1]  # slices 0, 2 and 4, two across
    3
    """
    from .._inputs.sources import open_source
    from .._run.visualize import Visualization

    if isinstance(source, Visualization):
        raise EmbedviewError("montage() draws each slice again and needs the embeddings: pass "
                             "montage(source, image, vis).")
    src = open_source(source)
    chosen = montage_slices(src.n_slices if src.is_stack else None, slices, "slices")
    out = None
    if path is not None:
        out = checked_png(path, [("the embeddings", source), ("the image", image)], "a montage", overwrite)
    if vis is not None and tuple(vis.image_shape) != tuple(src.shape):
        raise EmbedviewError(f"vis describes an image of shape {list(vis.image_shape)} but the embeddings one of "
                             f"{list(src.shape)}; pass the visualization of these embeddings.")
    name = None
    if image is not None:
        name, image = checked_image(image, src, None)
    upsampling = figure_upsampling(upsample, image, src)  # a wrong upsample fails before the PCA runs
    if vis is None:
        from .._run.visualize import visualize

        vis = visualize(src, rgb_components=rgb_components)
    picture = make_montage(src, vis, chosen, image, rgb_components=rgb_components, max_side=max_side,
                           upsample=upsampling)
    if out is not None:
        write_figure(out, picture, {"source": src.name, "slices": chosen,
                              "image": name[len("the image "):] if name else None}, overwrite)
    return picture


class MontageFile:
    """``render``'s montage file beside its output: checked before the work, written after it.

    Parameters
    ----------
    src : Source
        The embeddings.
    out : Path
        The main output; the montage is ``<out stem>_montage.png`` beside it.
    count : int or None
        Slices in the montage (``--montage N``); ``None`` writes one only for a stack with ``image``
        (:data:`DEFAULT_SLICES`).
    image : str, os.PathLike or None
        The image file (a stack): its slices sit above the PCA tiles.
    inputs : iterable of (str, path)
        What the run reads, which the montage may not replace.
    array : ndarray, optional
        ``image`` already read and checked (the figure's), so that it is not read twice.
    path : Path, optional
        Where to write the montage, already checked (default ``<out stem>_montage.png``).
    overwrite : bool
        May replace a file embedview did not write.
    """

    def __init__(self, src, out: Path, count, image, inputs, array=None, path=None, overwrite: bool = False):
        from .._common.output_paths import check_output
        from .figure import companion

        self.src, self.image_name, self.slices, self.overwrite = src, image, None, overwrite
        self.path = self.image = None
        if count is None and (image is None or not src.is_stack):
            return
        self.slices = montage_slices(src.n_slices if src.is_stack else None,
                                     DEFAULT_SLICES if count is None else count)
        if image is not None:
            self.image = array if array is not None else checked_image(image, src, None)[1]
        self.path = path or check_output(companion(out, "montage"), inputs=inputs, overwrite=overwrite)

    def write(self, vis, drawing=None) -> list[Path]:
        """Write the montage of ``vis``, its PCA tiles drawn as ``drawing`` (the main output's
        :class:`~embedview._run.settings.Draw`, at the montage's pixel size) says; the paths written."""
        if self.path is None:
            return []
        rgb, upsample = (None, None) if drawing is None else (drawing.rgb_components, drawing.upsample)
        picture = make_montage(self.src, vis, self.slices, self.image, rgb_components=rgb, upsample=upsample)
        write_figure(self.path, picture, {"source": self.src.name, "slices": self.slices,
                                    "image": None if self.image_name is None else str(self.image_name)},
                     self.overwrite)
        return [self.path]
