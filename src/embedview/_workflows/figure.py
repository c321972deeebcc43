"""A figure of image | PCA | overlay side by side, composed in numpy (no matplotlib).

The PCA panel is drawn at the figure's own pixel size from the fitted basis, with the same
exact placement as :func:`embedview.visualize`, so the overlay shows where each cell lies.
:func:`figure` is the public entry; :class:`FigureFile` is the command's figure file
(checked before the work, written after it); :func:`side_by_side` and :func:`panel` make the
figure of several inputs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .._common.errors import EmbedviewError, arg

#: White pixels between panels.
GAP = 8
#: The figure is downsampled by a whole factor until it is at most this wide and high.
MAX_SIDE = 2048
DISPLAY_PERCENTILES = (1.0, 99.0)
OVERLAY_ALPHA = 0.5
#: Height kept for the legend under a figure's panels when choosing its pixel size.
LEGEND_ROOM = 60


def image_plane(image: np.ndarray, expected_shape: tuple, z: int | None = None, name: str = "the image") -> np.ndarray:
    """Check ``image`` against the embeddings' image shape and return the 2D plane to draw.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, 3|4)``; for a stack ``(Z, H, W)`` or ``(Z, H, W, 3|4)``.
    expected_shape : tuple of int
        ``(H, W)`` or ``(Z, H, W)``, e.g. ``vis.image_shape``.
    z : int, optional
        The slice of a stack (default: the middle one).
    name : str
        How to call the image in error messages.

    Returns
    -------
    ndarray
        ``(H, W)`` or ``(H, W, 3|4)``.

    Examples
    --------
    >>> image_plane(np.zeros((5, 4, 6)), (5, 4, 6)).shape
    (4, 6)
    """
    expected = tuple(int(v) for v in expected_shape)
    shape = tuple(image.shape)
    spatial = shape[:-1] if len(shape) == len(expected) + 1 and shape[-1] in (3, 4) else shape
    if spatial != expected:
        raise EmbedviewError(
            f"{name} has shape {list(shape)} but the embeddings describe an image of shape "
            f"{list(expected)}; pass the image the embeddings were computed from.")
    if len(expected) == 2:
        if z not in (None, 0):
            raise EmbedviewError(f"slice {z} was asked for but the embeddings describe a 2D image.")
        return image
    z = expected[0] // 2 if z is None else int(z)
    if not 0 <= z < expected[0]:
        raise EmbedviewError(f"slice {z} does not exist; the stack has slices 0 to {expected[0] - 1}.")
    return image[z]


def figure_pixel_size(image_shape: tuple[int, int], max_side: int = MAX_SIDE, gap: int = GAP,
                      across: int = 3, down: int = 1, extra_height: int = 0) -> int:
    """The smallest whole pixel size that keeps ``across`` × ``down`` panels (three side by side by
    default), and ``extra_height`` rows of legends and captions, within ``max_side``.

    Examples
    --------
    >>> figure_pixel_size((600, 900)), figure_pixel_size((100, 200)), figure_pixel_size((600, 900), across=3, down=4)
    (2, 1, 2)
    """
    h, w = (int(v) for v in image_shape[-2:])

    def room(n, extra=0):  # pixels left for n panels between their gaps
        return max(max_side - (n - 1) * gap - extra, n)

    p = max(1, math.ceil(across * w / room(across)), math.ceil(down * h / room(down, extra_height)))
    while ((across * math.ceil(w / p) + (across - 1) * gap > max_side
            or down * math.ceil(h / p) + (down - 1) * gap + extra_height > max_side) and p < max(w, h)):
        p += 1
    return p


def downsample(image: np.ndarray, p: int) -> np.ndarray:
    """Block means over ``p × p`` image pixels (the last blocks clipped), as float32.

    Output pixel ``k`` covers image pixels ``[k*p, (k+1)*p)``, as in :class:`OutputGrid`. Rows
    are read a band at a time, so a memory-mapped image is never loaded whole.

    Examples
    --------
    >>> downsample(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    h, w = image.shape[:2]
    if p == 1:
        return np.asarray(image, np.float32)
    rows, cols = -(-h // p), -(-w // p)
    starts = np.arange(cols) * p
    counts = np.minimum(starts + p, w) - starts
    out = np.empty((rows, cols) + image.shape[2:], np.float32)
    for r in range(rows):
        band = np.asarray(image[r * p:(r + 1) * p], np.float32).mean(axis=0)
        sums = np.add.reduceat(band, starts, axis=0)
        out[r] = sums / counts.reshape((-1,) + (1,) * (band.ndim - 1))
    return out


def display_rgb(image: np.ndarray, percentiles=DISPLAY_PERCENTILES, limits=None) -> np.ndarray:
    """Stretch an image's 1st–99th percentile to 0–255 and return uint8 ``(H, W, 3)``.

    Grey images are repeated into three channels; an alpha channel is dropped. A constant
    image becomes mid-grey. ``limits`` ``(lo, hi)`` stretches those values instead (e.g. a
    whole stack's percentiles, so every slice is shown alike).

    Examples
    --------
    >>> display_rgb(np.array([[10.0, 20.0], [30.0, 60.0]]), (0, 100))[..., 0]
    array([[  0,  51],
           [102, 255]], dtype=uint8)
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image[..., :3]
    if limits is not None:
        lo, hi = limits
    else:
        finite = image[np.isfinite(image)]
        if finite.size == 0:
            return np.zeros(image.shape[:2] + (3,), np.uint8)
        lo, hi = np.percentile(finite, percentiles)
    if hi <= lo:
        scaled = np.full(image.shape, 128.0, np.float32)
    else:
        scaled = np.clip((image - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255)  # + 0.5: round, not truncate
    scaled = np.nan_to_num(scaled, nan=0.0).astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=2) if scaled.ndim == 2 else scaled


def draw_plane(source, vis, pixel_size: float, z: int | None = None,
               rgb_components: tuple[int, ...] | None = None, upsample=None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one slice of ``vis`` again at ``pixel_size``, reusing its fitted basis.

    Only the pieces of that slice are read, so this stays cheap for a long stack.

    Parameters
    ----------
    source : Source or anything :func:`embedview.open_source` takes
        The embeddings ``vis`` was made from.
    vis : Visualization
    pixel_size : float
        Output pixel size in image pixels.
    z : int, optional
        Slice of a stack (required for stacks).
    rgb_components : tuple of int, optional
        As given to :func:`embedview.visualize`.
    upsample : optional
        As for :func:`embedview._run.visualize.render_plane` (e.g. :func:`figure_upsampling`'s).

    Returns
    -------
    rgb : uint8 ``(h, w, 3)``
    valid : bool ``(h, w)``
        Where something was drawn.
    """
    from .._run.visualize import render_plane

    i = 0 if len(vis.bases) == 1 else z
    rgb, components = render_plane(source, vis.bases[i], pixel_size, z, rgb_components,
                           select=vis.selections[i] if vis.selections else None,
                           centres=vis.centres[i] if vis.centres else None, upsample=upsample)
    return rgb, ~np.isnan(components[..., 0])


def figure_upsampling(upsample, image, source):
    """The upsampling of a figure's or montage's PCA panels, resolved once for ``source`` (the
    guide opened and its defaults taken once for all panels); ``None`` for nearest, and an
    already resolved one as it is.

    ``"guided"`` (or an :class:`~embedview.Upsample` ``"guided"`` without a guide) takes ``image``,
    the whole image or stack the embeddings came from, as its guide: the panels are then drawn
    as :func:`embedview.visualize` draws with ``Upsample("guided", guide=image)``.

    Examples
    --------
    >>> import embedview
    >>> src = embedview.open_source(np.zeros((1, 4, 8, 8), np.float32), original_size=(40, 60))
    >>> figure_upsampling("guided", np.zeros((40, 60)), src).method, figure_upsampling(None, None, src)
    ('guided', None)
    """
    from .._inputs.sources import open_source
    from .._outputs.guide import resolve_upsampling

    if upsample is None:
        return None
    src = open_source(source)
    return resolve_upsampling(upsample, src.shape, str(src.name), image=image)


class Drawn(NamedTuple):
    """The middle panel of a figure, with what explains it.

    Attributes
    ----------
    rgb : uint8 ndarray, shape (h, w, 3)
    valid : bool ndarray, shape (h, w)
        Where something was drawn (the overlay blends only there).
    legend : callable, optional
        ``legend(figure_width, panel_width) -> strip``: a white uint8 strip as wide as the
        figure, put under it.
    marks : callable, optional
        ``marks(panel)`` draws on a panel's pixels in place (the query on a similarity map);
        applied to the middle panel and the overlay.
    """

    rgb: np.ndarray
    valid: np.ndarray
    legend: Callable | None = None
    marks: Callable | None = None


def pca_legend(vis, z: int | None = None, rgb_components: tuple[int, ...] | None = None) -> str:
    """What the channels of a PCA picture show: each one's component and explained variance
    (:func:`~embedview._outputs.legend.variance_text`), or the number of clusters.

    ``z`` picks slice ``z``'s basis when there is one per slice; without it, several bases are
    averaged.

    Examples
    --------
    >>> import embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32)
    >>> pca_legend(embedview.visualize(features, original_size=(160, 160)))  # doctest: +ELLIPSIS
    'R: PC1 ...%, G: PC2 ...%, B: PC3 ...%  (sum ...%)'
    """
    from .._common.deprecation import shown_components
    from .._outputs.legend import variance_text

    if vis.centres:
        return f"{len(vis.centres[0])} k-means clusters of the first {vis.centres[0].shape[1]} components"
    bases = vis.bases if len(vis.bases) == 1 or z is None else (vis.bases[z],)
    shown = shown_components(rgb_components, bases[0].n_components)
    explained = [[float(b.explained_variance_ratio[c]) for c in shown] for b in bases]
    return variance_text(explained, components=shown, sep="  ")


def text_legend(text: str) -> Callable:
    """A :attr:`Drawn.legend` holding ``text`` in a size readable at the figure's width."""
    from .._outputs.legend import font_size, load_font, text_strip

    return lambda width, _: text_strip(text, width, load_font(font_size(width)))


def pca_panel(source, vis, pixel_size: int, z: int | None = None,
              rgb_components: tuple[int, ...] | None = None, upsample=None) -> Drawn:
    """The PCA panel of a figure (:func:`draw_plane`) with its variance label."""
    rgb, valid = draw_plane(source, vis, pixel_size, z, rgb_components, upsample)
    return Drawn(rgb, valid, legend=text_legend(pca_legend(vis, z, rgb_components)))


def compose(image_rgb: np.ndarray, pca_rgb: np.ndarray, valid: np.ndarray,
            alpha: float = OVERLAY_ALPHA, gap: int = GAP) -> np.ndarray:
    """Put image, PCA and their blend side by side, separated by white ``gap`` columns.

    Examples
    --------
    >>> img = np.zeros((2, 3, 3), np.uint8)
    >>> pca = np.full((2, 3, 3), 200, np.uint8)
    >>> fig = compose(img, pca, np.ones((2, 3), bool), gap=1)
    >>> fig.shape, int(fig[0, 8, 0])
    ((2, 11, 3), 100)
    """
    if image_rgb.shape != pca_rgb.shape:
        raise EmbedviewError(
            f"image panel {list(image_rgb.shape)} and PCA panel {list(pca_rgb.shape)} differ in shape.")
    blend = image_rgb.astype(np.float32)
    mix = (1 - alpha) * blend + alpha * pca_rgb.astype(np.float32)
    blend[valid] = mix[valid]
    overlay = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    h, w = image_rgb.shape[:2]
    figure = np.full((h, 3 * w + 2 * gap, 3), 255, np.uint8)
    for i, panel in enumerate((image_rgb, pca_rgb, overlay)):
        figure[:, i * (w + gap):i * (w + gap) + w] = panel
    return figure


def make_figure(source, vis, image: np.ndarray, *, z: int | None = None,
                rgb_components: tuple[int, ...] | None = None, max_side: int = MAX_SIDE,
                image_name: str = "the image", draw=None, upsample=None) -> np.ndarray:
    """Image | PCA | overlay of one plane, at image resolution or downsampled to ``max_side``.

    Parameters
    ----------
    source : Source or anything :func:`embedview.open_source` takes
        The embeddings ``vis`` was made from.
    vis : Visualization
    image : ndarray
        The image (or stack) the embeddings were computed from; its shape must match
        ``vis.image_shape`` (plus an optional colour axis).
    z : int, optional
        Slice of a stack to draw; default the middle one.
    rgb_components : tuple of int, optional
        As given to :func:`embedview.visualize`.
    max_side : int
        Largest width and height of the figure in pixels.
    image_name : str
        How to call the image in error messages.
    draw : callable, optional
        ``draw(pixel_size, z) -> Drawn`` for the middle panel instead of the PCA of ``vis``
        (e.g. a similarity map drawn at the figure's pixel size, with its colour bar).
    upsample : optional
        How the PCA panel's cells become pixels, as for :func:`embedview.visualize`; ``"guided"``
        is guided by ``image`` (:func:`figure_upsampling`).

    Returns
    -------
    ndarray of uint8, shape (h + legend, 3 * w + 2 * GAP, 3)
        The panels, with the middle panel's legend (:attr:`Drawn.legend`) under them.

    Examples
    --------
    >>> import embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
    >>> src = embedview.open_source(features, original_size=(60, 90))
    >>> make_figure(src, embedview.visualize(src), np.zeros((60, 90))).shape
    (79, 286, 3)
    """
    plane = image_plane(image, vis.image_shape, z, image_name)
    if len(vis.image_shape) == 3:
        z = vis.image_shape[0] // 2 if z is None else int(z)
    p = figure_pixel_size(vis.image_shape[-2:], max_side, extra_height=LEGEND_ROOM)
    if draw is None:
        drawn = pca_panel(source, vis, p, z, rgb_components, figure_upsampling(upsample, image, source))
    else:
        drawn = draw(p, z)
    shown = display_rgb(downsample(plane, p))
    picture = compose(shown, drawn.rgb, drawn.valid)
    w = shown.shape[1]
    if drawn.marks is not None:
        for i in (1, 2):  # the middle panel and the overlay (views: drawn in place)
            drawn.marks(picture[:, i * (w + GAP):i * (w + GAP) + w])
    if drawn.legend is not None:
        picture = np.concatenate([picture, drawn.legend(picture.shape[1], w)])
    return picture


def figure(source, image, vis=None, *, z: int | None = None, rgb_components: tuple[int, ...] | None = None,
           upsample=None, path=None, max_side: int = MAX_SIDE, overwrite: bool = False) -> np.ndarray:
    """The image | PCA | overlay figure of one plane, as a uint8 array (and a PNG file if asked).

    The PCA panel is drawn again at the figure's pixel size (a whole number of image pixels,
    so that the figure is at most ``max_side`` wide and high) with the fitted basis of
    ``vis``, placed exactly as :func:`embedview.visualize` places it; the overlay is half
    image, half PCA where something is drawn. The image panel stretches the image's 1st–99th
    percentile to the full range. ``upsample`` draws the PCA panel's cells sharper (the
    geometry stays exact); ``"guided"`` follows the edges of ``image``.

    Parameters
    ----------
    source : str, os.PathLike, dict, array or Source
        The embeddings (anything :func:`embedview.open_source` takes).
    image : ndarray, str or os.PathLike
        The image (or stack) the embeddings were computed from, or its file; its shape must be
        the embeddings' ``image_shape``, plus an optional colour axis of 3 or 4.
    vis : Visualization, optional
        A visualization of ``source`` whose fitted basis (colour ranges, mask, foreground,
        clusters) the figure uses; default ``embedview.visualize(source)``.
    z : int, optional
        Slice of a stack to draw (default: the middle one).
    rgb_components : tuple of int, optional
        As given to :func:`embedview.visualize`.
    upsample : {"nearest", "bilinear", "guided"} or Upsample, optional
        How the PCA panel's cells become pixels, as for :func:`embedview.visualize` (default
        nearest); ``"guided"`` is guided by ``image``.
    path : str or os.PathLike, optional
        Also write the figure there, as a ``.png``. An existing file is replaced only if
        embedview wrote it as a picture, unless ``overwrite``.
    max_side : int
        Largest width and height of the figure in pixels.
    overwrite : bool
        Replace a file at ``path`` that embedview did not write (never the embeddings or the image).

    Returns
    -------
    ndarray of uint8, shape (h + label, 3 * w + 16, 3)
        Image, PCA and overlay panels separated by 8 white columns, over a white strip that
        says which component each colour shows and how much of the variance it explains
        (:func:`pca_legend`, e.g. ``R: PC1 41.2%, G: PC2 12.0%, B: PC3 7.5%  (sum 60.7%)``).

    Examples
    --------
    >>> import numpy as np, embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
    >>> src = embedview.open_source(features, original_size=(60, 90))
    >>> embedview.figure(src, np.zeros((60, 90))).shape
    (79, 286, 3)
    >>> vis = embedview.visualize(src, normalize="global")
    >>> embedview.figure(src, np.zeros((60, 90)), vis, path="pca_figure.png").shape  # doctest: +SKIP
    (79, 286, 3)
    """
    from .._inputs.sources import open_source
    from .._run.visualize import Visualization

    if isinstance(source, Visualization):  # the panel is drawn again, from the embeddings
        raise EmbedviewError("figure() draws the PCA again at the figure's pixel size and needs the "
                             "embeddings: pass figure(source, image, vis).")
    src = open_source(source)
    out = None if path is None else checked_png(path, [("the embeddings", source), ("the image", image)],
                                                overwrite=overwrite)
    if vis is not None and tuple(vis.image_shape) != tuple(src.shape):
        raise EmbedviewError(f"vis describes an image of shape {list(vis.image_shape)} but the embeddings one of "
                             f"{list(src.shape)}; pass the visualization of these embeddings.")
    name, image = checked_image(image, src, z)  # a wrong image fails before the PCA runs
    upsampling = figure_upsampling(upsample, image, src)  # and so does a wrong upsample
    if vis is None:
        from .._run.visualize import visualize

        vis = visualize(src, rgb_components=rgb_components)
    picture = make_figure(src, vis, image, z=z, rgb_components=rgb_components, max_side=max_side,
                          image_name=name, upsample=upsampling)
    if out is not None:
        write_figure(out, picture, {"source": src.name, "image": name[len("the image "):] or None}, overwrite)
    return picture


def checked_image(image, src, z) -> tuple[str, np.ndarray]:
    """``(name for messages, image)``: read if a path, checked against the embeddings' shape
    (``(Z, H, W)`` for a stack) and slice ``z``."""
    name = "the image"
    if isinstance(image, (str, os.PathLike)):
        from .._outputs.io import read_image

        name = f"the image {image}"  # its header's shape checked before any pixel is decoded
        image = read_image(image, lambda shape: image_plane(np.broadcast_to(np.uint8(0), shape), src.shape, z, name))
    image_plane(image, src.shape, z, name)
    return name, image


def checked_png(path, inputs, what: str = "a figure", overwrite: bool = False) -> Path:
    """``path`` checked as a ``.png`` output that replaces none of ``inputs`` (``(what, file)``;
    files that are arrays, not paths, are skipped)."""
    from .._common.output_paths import check_output

    out = check_output(path, inputs=[(name, f) for name, f in inputs if isinstance(f, (str, os.PathLike))],
                       overwrite=overwrite)
    if out.suffix.lower() != ".png":
        raise EmbedviewError(f"{what} is written as .png; got path={str(out)!r}.")
    return out


def write_figure(path: Path, picture: np.ndarray, metadata: dict, overwrite: bool = False) -> None:
    """Write a figure (a montage, a side-by-side figure) as a PNG picture, atomically."""
    from .._common.output_paths import atomic_path
    from .._outputs.io import write_png

    with atomic_path(path, overwrite=overwrite) as tmp:
        write_png(tmp, picture, metadata)


class FigureFile:
    """The command's optional figure file beside its output: checked before the work, written after it.

    Parameters
    ----------
    src : Source
        The embeddings.
    out : Path
        The main output; the figure is ``<out stem>_figure.png`` beside it.
    image : str, os.PathLike or None
        The image file; ``None`` writes no figure.
    z : int or None
        Slice of a stack to draw (default: the middle one); needs ``image``.
    inputs : iterable of (str, path)
        What the run reads, which the figure may not replace (:func:`embedview._common.output_paths.guard_output`).
    overwrite : bool
        May replace a file embedview did not write.
    """

    def __init__(self, src, out: Path, image, z, inputs, overwrite: bool = False):
        from .._common.output_paths import check_output

        self.src, self.image, self.slice, self.overwrite = src, image, z, overwrite
        self.plane = self.path = None
        if image is not None:
            self.plane = checked_image(image, src, z)[1]
            self.path = check_output(companion(out, "figure"), inputs=inputs, overwrite=overwrite)
        elif z is not None:
            raise EmbedviewError(f"{arg('z')} chooses the slice of the figure; pass {arg('image')} too.")

    def write(self, vis, drawing=None, draw=None) -> list[Path]:
        """Write the figure of ``vis`` (or of ``draw``, as :func:`make_figure`), its PCA panel drawn
        as ``drawing`` says (a :class:`~embedview._run.settings.Draw`: the main output's components
        shown and upsampling; its pixel size is the figure's own); the paths written."""
        if self.plane is None:
            return []
        rgb, upsample = (None, None) if drawing is None else (drawing.rgb_components, drawing.upsample)
        picture = make_figure(self.src, vis, self.plane, z=self.slice, rgb_components=rgb,
                              image_name=f"the image {self.image}", draw=draw, upsample=upsample)
        write_figure(self.path, picture, {"source": self.src.name, "image": str(self.image)}, self.overwrite)
        return [self.path]


#: The side-by-side figure's name in a folder of several inputs' pictures.
SIDE_BY_SIDE = "side_by_side"


def companion(out: Path, what: str) -> Path:
    """The file written beside the output ``out``: ``<stem>_figure.png`` or ``<stem>_montage.png``.
    It never is ``out`` itself: its name ends in ``_figure.png``/``_montage.png`` after ``out``'s
    whole stem.

    Examples
    --------
    >>> companion(Path("a/pca.tif"), "montage")
    PosixPath('a/pca_montage.png')
    """
    return out.with_name(f"{out.stem}_{what}.png")


def folder_names(paths: list[Path], suffixes: list[str]) -> tuple[list[str], str]:
    """Every name in the output folder of several inputs: ``(picture names, side-by-side name)``.

    The one place those names are chosen, so no two are the same, even on a file system that
    ignores case: the pictures are named after the inputs (:func:`input_names`: distinct even
    ignoring case), the side-by-side figure is ``side_by_side.png``, and a picture that would
    take a name already given (an input named ``side_by_side``) gets ``_2``, ``_3``, ...

    Examples
    --------
    >>> folder_names([Path("side_by_side.zarr"), Path("b.zarr")], [".png", ".png"])
    (['side_by_side_2.png', 'b.png'], 'side_by_side.png')
    >>> folder_names([Path("A.zarr"), Path("a.zarr")], [".png", ".png"])
    (['0_A.png', '1_a.png'], 'side_by_side.png')
    """
    side = f"{SIDE_BY_SIDE}.png"
    taken = {side.casefold()}
    names = []
    for stem, suffix in zip(input_names(paths), suffixes):
        name, n = f"{stem}{suffix}", 1
        while name.casefold() in taken:
            n += 1
            name = f"{stem}_{n}{suffix}"
        taken.add(name.casefold())
        names.append(name)
    return names, side


def input_names(paths: list[Path]) -> list[str]:
    """Short distinct names for several inputs: the file stems, with their folder when stems repeat
    (compared ignoring case). :func:`folder_names` makes the files' names from them.

    Examples
    --------
    >>> input_names([Path("a/x.zarr"), Path("b/x.zarr"), Path("y.zarr")])
    ['a_x', 'b_x', 'y']
    """
    def distinct(names):
        return len({n.casefold() for n in names}) == len(names)

    names = [p.stem for p in paths]
    if not distinct(names):
        names = [f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem for p in paths]
    if not distinct(names):
        names = [f"{i}_{name}" for i, name in enumerate(names)]
    return names


def panel(src, vis, slice_, drawing, n_panels: int) -> np.ndarray:
    """One input's picture for :func:`side_by_side` of ``n_panels``, at a whole pixel size that fits,
    drawn as ``drawing`` (a :class:`~embedview._run.settings.Draw`) says but at that pixel size
    (nearest or bilinear: several inputs have no one guide)."""
    z = (src.n_slices // 2 if slice_ is None else int(slice_)) if src.is_stack else None
    p = figure_pixel_size(src.image_shape, max_side=max(64, 3 * MAX_SIDE // (2 * n_panels)))
    return draw_plane(src, vis, p, z, drawing.rgb_components, drawing.upsample)[0]


def side_by_side(panels: list[np.ndarray], captions: list[str] | None = None, gap: int = GAP) -> np.ndarray:
    """Pictures side by side on white, top-aligned, each under its caption.

    Examples
    --------
    >>> side_by_side([np.zeros((4, 5, 3), np.uint8), np.zeros((6, 2, 3), np.uint8)]).shape
    (6, 15, 3)
    """
    strip = 0
    if captions:
        strip = 18
    height = max(p.shape[0] for p in panels) + strip
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    figure = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for panel in panels:
        figure[strip:strip + panel.shape[0], x:x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    if captions:
        from PIL import Image, ImageDraw

        image = Image.fromarray(figure)
        draw = ImageDraw.Draw(image)
        x = 0
        for panel, caption in zip(panels, captions):
            draw.text((x + 2, 3), caption, fill=(0, 0, 0))
            x += panel.shape[1] + gap
        figure = np.asarray(image)
    return figure
