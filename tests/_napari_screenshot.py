"""The plugin on screen: an image, its PCA overlay drawn by the widget, and a known camera.

Used by the screenshot test and by ``docs/make_napari_screenshot.py`` (the README's picture),
so both are made the same way; test and docs code, so it lives beside the tests, not in the
package. Needs a display (Xvfb on headless machines).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

#: Window size of the README screenshot (logical pixels).
WINDOW_SIZE = (1400, 760)


def show_overlay(image: np.ndarray, embeddings: str | os.PathLike, timeout_s: float = 60.0):
    """A shown viewer with ``image`` and its PCA overlay, drawn by the docked "Embedding PCA" widget.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The grey image the embeddings were computed from (drawn with contrast 0–255).
    embeddings : str or os.PathLike
        Its micro_sam embedding container.
    timeout_s : float
        How long to wait for the widget's worker.

    Returns
    -------
    viewer : napari.Viewer
    widget : EmbeddingPCAWidget
    overlay : napari.layers.Image

    Examples
    --------
    >>> viewer, widget, overlay = show_overlay(image, "tiled2d.zarr")  # doctest: +SKIP
    >>> overlay.name  # doctest: +SKIP
    'tiled2d PCA'
    """
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from embedview.napari._widget import EmbeddingPCAWidget

    viewer = napari.Viewer(show=True, title="embedview: Embedding PCA")
    viewer.window.resize(*WINDOW_SIZE)
    layer = viewer.add_image(image, name="image", colormap="gray", contrast_limits=(0, 255))
    widget = EmbeddingPCAWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Embedding PCA", area="right")
    widget.path.value = os.fspath(embeddings)
    widget.image_layer.value = layer

    loop = QEventLoop()
    worker = widget.run()
    if worker is None:
        raise RuntimeError("the Embedding PCA widget did not start; see the napari notification.")
    worker.finished.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    name = f"{widget.path.value.name[:-len('.zarr')]} PCA"
    if name not in viewer.layers:
        raise RuntimeError(f"the Embedding PCA widget added no layer {name!r} within {timeout_s} s.")
    return viewer, widget, viewer.layers[name]


def _camera(viewer):
    # napari 0.9 moved the camera to viewer.scene; older versions have viewer.camera only
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


@dataclass(frozen=True)
class Framing:
    """Where world points land on a canvas screenshot of a 2D view.

    The canvas centre shows the camera centre and one world unit is ``zoom`` canvas pixels;
    screenshots larger than the canvas (HiDPI) are scaled by their size over the canvas size.

    Examples
    --------
    >>> framing = Framing(canvas=(600, 800), center=(449.5, 549.5), zoom=0.5)
    >>> shot = np.zeros((600, 800, 4), np.uint8)
    >>> framing.to_screen(shot, [[449.5, 549.5], [-0.5, -0.5]]).tolist()
    [[300, 400], [75, 125]]
    >>> framing.to_world(shot, [[300, 400]]).tolist()
    [[450.5, 550.5]]
    """

    canvas: tuple[float, float]
    center: tuple[float, float]
    zoom: float

    def to_screen(self, screenshot: np.ndarray, points) -> np.ndarray:
        """Screen pixel ``(row, col)`` under world points ``(..., 2)``."""
        canvas = np.asarray(self.canvas, float)
        ratio = np.asarray(screenshot.shape[:2], float) / canvas
        screen = ((np.asarray(points, float) - self.center) * self.zoom + canvas / 2) * ratio
        return np.floor(screen).astype(int)

    def to_world(self, screenshot: np.ndarray, pixels) -> np.ndarray:
        """World point at the centre of screen pixels ``(..., 2)``."""
        canvas = np.asarray(self.canvas, float)
        ratio = np.asarray(screenshot.shape[:2], float) / canvas
        return ((np.asarray(pixels, float) + 0.5) / ratio - canvas / 2) / self.zoom + self.center


def frame(viewer, shape: tuple[int, int], margin: float = 0.1) -> Framing:
    """Centre the camera on an ``(H, W)`` image, zoom so it fills the canvas but a margin.

    Returns
    -------
    Framing
        To map world points to screenshot pixels (still valid after the viewer is closed).
    """
    h, w = viewer.window._qt_viewer.canvas.size  # canvas (rows, columns) in logical pixels
    camera = _camera(viewer)
    camera.center = ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    camera.zoom = (1 - 2 * margin) * min(h / shape[0], w / shape[1])
    return Framing((h, w), tuple(camera.center[-2:]), camera.zoom)
