"""A figure of image | PCA | overlay side by side, composed in numpy (no matplotlib).

The PCA panel is drawn at the figure's own pixel size from the fitted basis, with the same
exact placement as :func:`embedview.visualize`, so the overlay shows where each cell lies.
"""

from __future__ import annotations

import math

import numpy as np

from ._errors import EmbedviewError

#: White pixels between panels.
GAP = 8
#: The figure is downsampled by a whole factor until it is at most this wide and high.
MAX_SIDE = 2048
DISPLAY_PERCENTILES = (1.0, 99.0)
OVERLAY_ALPHA = 0.5


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


def figure_pixel_size(image_shape: tuple[int, int], max_side: int = MAX_SIDE, gap: int = GAP) -> int:
    """The smallest whole pixel size that keeps three panels within ``max_side``.

    Examples
    --------
    >>> figure_pixel_size((600, 900)), figure_pixel_size((100, 200))
    (2, 1)
    """
    h, w = (int(v) for v in image_shape[-2:])
    p = max(1, math.ceil(3 * w / max(max_side - 2 * gap, 3)), math.ceil(h / max_side))
    while 3 * math.ceil(w / p) + 2 * gap > max_side and p < w:
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


def display_rgb(image: np.ndarray, percentiles=DISPLAY_PERCENTILES) -> np.ndarray:
    """Stretch an image's 1st–99th percentile to 0–255 and return uint8 ``(H, W, 3)``.

    Grey images are repeated into three channels; an alpha channel is dropped. A constant
    image becomes mid-grey.

    Examples
    --------
    >>> display_rgb(np.array([[10.0, 20.0], [30.0, 60.0]]), (0, 100))[..., 0]
    array([[  0,  51],
           [102, 255]], dtype=uint8)
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = image[..., :3]
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


def render_plane(source, vis, pixel_size: float, z: int | None = None,
                 rgb_components: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
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

    Returns
    -------
    rgb : uint8 ``(h, w, 3)``
    valid : bool ``(h, w)``
        Where something was drawn.
    """
    from ._visualize import render_plane as draw

    i = 0 if len(vis.bases) == 1 else z
    rgb, components = draw(source, vis.bases[i], pixel_size, z, rgb_components,
                           select=vis.selections[i] if vis.selections else None,
                           centres=vis.centres[i] if vis.centres else None)
    return rgb, ~np.isnan(components[..., 0])


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
                image_name: str = "the image", draw=None) -> np.ndarray:
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
        ``draw(pixel_size, z) -> (rgb, valid)`` for the middle panel instead of the PCA of
        ``vis`` (e.g. a similarity map drawn at the figure's pixel size).

    Returns
    -------
    ndarray of uint8, shape (h, 3 * w + 2 * GAP, 3)

    Examples
    --------
    >>> import embedview
    >>> features = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
    >>> src = embedview.open_source(features, original_size=(60, 90))
    >>> make_figure(src, embedview.visualize(src), np.zeros((60, 90))).shape
    (60, 286, 3)
    """
    plane = image_plane(image, vis.image_shape, z, image_name)
    if len(vis.image_shape) == 3:
        z = vis.image_shape[0] // 2 if z is None else int(z)
    p = figure_pixel_size(vis.image_shape[-2:], max_side)
    pca, valid = draw(p, z) if draw is not None else render_plane(source, vis, p, z, rgb_components)
    shown = display_rgb(downsample(plane, p))
    return compose(shown, pca, valid)


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
