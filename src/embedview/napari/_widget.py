"""The "Embedding PCA" widget: draw embeddings over an image layer, in a background thread."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, PushButton

from .._outputs.legend import variance_text
from ._reader import layer_kwargs, layer_name

if TYPE_CHECKING:
    import napari
    from napari.qt.threading import FunctionWorker

#: Held with a click on the canvas, asks for the similarity map of the clicked pixel. Not Alt:
#: napari binds Alt+drag to its zoom box, and many X11 window managers take Alt+click to move
#: windows, so the click never reaches napari.
SIMILARITY_MODIFIER = "Shift"

_FILE = "(the file below)"
_NO_IMAGE = "(none: image pixel coordinates)"
_COMPUTING = "computing…"
#: The one step that opens a .zarr with embedview's reader: napari's own reader also claims .zarr
#: folders, and ``viewer.open`` uses it unless told otherwise (its default is ``plugin="napari"``).
OPEN_HINT = ("to open a .zarr as a layer: choose embedview when napari asks,\n"
             "or viewer.open(path, plugin=\"embedview\")")
#: Metadata key (under ``"embedview"``) of the layers the widget draws: what they show. They are
#: pictures, not embeddings, so they are never offered as an "embeddings layer".
WIDGET_KEY = "drawn_by_widget"
#: The widget's "upsample" choices: :func:`embedview.visualize`'s methods.
UPSAMPLE_CHOICES = ("nearest", "bilinear", "guided")


class EmbeddingPCAWidget(Container):
    """Choose embeddings and an image layer, set the core's options, and draw the PCA over it.

    Embeddings come from the file chooser, or from a layer embedview added (its source path is
    in the layer's metadata). The picture is placed on the chosen image layer's world
    coordinates: ``world = image_translate + image_scale * (translate + scale * i)``. It is
    computed by :func:`embedview.visualize` in a worker thread with napari's progress; the
    layer ``"<name> PCA"`` is added, or updated in place on later runs. The chosen image layer's
    trailing axes must be the image the embeddings describe (``(H, W)``, or ``(Z, H, W)`` for a
    stack): else one notification says so and nothing is drawn. The choices follow the viewer's
    layers; the layers the widget draws are marked (:data:`WIDGET_KEY`) and never offered as
    embeddings.

    "upsample" is :func:`embedview.visualize`'s ``upsample``: ``guided`` follows the edges of
    the chosen image layer's data (its level 0 if multiscale; grey or RGB), which must be the
    image the embeddings describe. ``bilinear`` and ``guided`` interpolate within a cell, so a
    pixel size of 0 (the embedding grid) draws at pixel size 1 (the image's resolution) with them.

    Shift+click on the canvas draws the cosine similarity of every cell to the clicked image
    pixel's cell (:func:`embedview.similarity`, in a worker thread) as the layer
    ``"<name> similarity"``, placed like the PCA; see :meth:`similarity_at`.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer to read layers from and draw into.

    Examples
    --------
    >>> import napari  # doctest: +SKIP
    >>> viewer = napari.Viewer()  # doctest: +SKIP
    >>> widget = EmbeddingPCAWidget(viewer)  # doctest: +SKIP
    >>> widget.path.value = "embeddings.zarr"  # doctest: +SKIP
    >>> worker = widget.run()  # doctest: +SKIP
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._worker = None
        self._similarity_worker = None
        self.embeddings_layer = ComboBox(label="embeddings layer", choices=self._embedding_choices,
                                         tooltip="a layer embedview drew: use its embedding file")
        self.path = FileEdit(label="embeddings", mode="d", filter="*.zarr",
                             tooltip="a micro_sam embedding file (.zarr folder)")
        self.image_layer = ComboBox(label="align to", choices=self._image_choices,
                                    tooltip="the image layer the embeddings were computed from")
        self.fit = ComboBox(label="fit", choices=["joint", "per_slice"], value="joint",
                            tooltip="joint: one PCA for everything; per_slice: one per slice")
        self.normalize = ComboBox(label="normalize", choices=["robust", "channel", "global"],
                                  value="robust", tooltip="colour ranges of the components")
        self.rgb_components = LineEdit(label="rgb components", value="0, 1, 2",
                                       tooltip="the principal components shown as red, green, blue: "
                                               "one to three, counted from 0")
        self.upsample = ComboBox(label="upsample", choices=list(UPSAMPLE_CHOICES), value="nearest",
                                 tooltip="how cells become pixels: nearest (flat cells), bilinear, or guided "
                                         "(edge-aware: follows the edges of the 'align to' image layer); "
                                         "bilinear and guided draw at pixel size 1 when the pixel size is 0")
        self.pixel_size = FloatSpinBox(label="pixel size", value=0.0, min=0.0, max=1e6, step=1.0,
                                       tooltip="output pixel size in image pixels; 0: the embedding grid, fitted "
                                               "to the image (with upsample bilinear or guided: 1, the image's "
                                               "resolution, since they interpolate within a cell)")
        self.run_button = PushButton(text="Run")
        self.variance = Label(label="explained variance", value="")
        # room for three lines and the full width up front: the dock does not grow with the text
        from qtpy.QtWidgets import QSizePolicy

        label = self.variance.native
        label.setMinimumHeight(3 * label.fontMetrics().height() + 4)
        label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.hint = Label(value=f"{SIMILARITY_MODIFIER}+click on the image: similarity to that point")
        self.open_hint = Label(value=OPEN_HINT)
        self.extend([self.embeddings_layer, self.path, self.image_layer, self.fit, self.normalize,
                     self.rgb_components, self.upsample, self.pixel_size, self.run_button, self.variance,
                     self.hint, self.open_hint])

        self.embeddings_layer.changed.connect(self._on_embeddings_layer)
        self.run_button.changed.connect(self.run)
        events = napari_viewer.layers.events
        self._had_images = self.image_layer.value is not None
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self._refresh_choices)
        # clicks count only while the widget exists: closing its dock deletes it
        callbacks, callback = napari_viewer.mouse_drag_callbacks, self._on_click
        callbacks.append(callback)
        self.native.destroyed.connect(lambda *_: callback in callbacks and callbacks.remove(callback))

    # ---- choices ------------------------------------------------------------------------------

    def _embedding_choices(self, _widget=None) -> list[tuple[str, Any]]:
        # layers embedview's reader added name their file; the layers this widget drew are pictures
        layers = [(layer.name, layer) for layer in self._viewer.layers
                  if _source_of(layer) and not _drawn_by_widget(layer)]
        return [(_FILE, None)] + layers

    def _image_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        layers = [(layer.name, layer) for layer in self._viewer.layers
                  if isinstance(layer, Image) and not _source_of(layer)]
        return layers + [(_NO_IMAGE, None)]

    def _refresh_choices(self, *_event) -> None:
        """Offer the layers there are now, keeping each choice by layer, not by name (magicgui's
        ComboBox matches names, so a renamed layer would lose its place). A removed layer is no longer
        chosen: the first remaining one is; the first image layer added to a viewer that had none is
        chosen, as at the start. Whether the chosen image fits is checked when drawing."""
        chosen = {combo: combo.value for combo in (self.embeddings_layer, self.image_layer)}
        self.reset_choices()
        for combo, layer in chosen.items():
            if layer is not None and combo.value is not layer and any(layer is c for c in combo.choices):
                with combo.changed.blocked():  # the same layer: nothing changed for the user
                    combo.value = layer
        images = [layer for _, layer in self._image_choices() if layer is not None]
        if not self._had_images and images and self.image_layer.value is None:
            self.image_layer.value = images[0]
        self._had_images = bool(images)

    def _on_embeddings_layer(self, layer) -> None:
        if layer is not None:
            self.path.value = _source_of(layer)

    # ---- running ------------------------------------------------------------------------------

    def options(self) -> dict:
        """The core's keyword arguments from the current settings (raises EmbedviewError)."""
        from embedview import EmbedviewError

        text = self.rgb_components.value.replace(",", " ").split()
        try:
            shown = tuple(int(v) for v in text)
        except ValueError:
            shown = ()
        if not 1 <= len(shown) <= 3 or min(shown) < 0:
            raise EmbedviewError(
                f"rgb components {self.rgb_components.value!r} must be one to three numbers ≥ 0 "
                "separated by commas, e.g. '0, 1, 2'.")
        upsample = self.upsample.value
        pixel_size = self.pixel_size.value or None
        if pixel_size is None and upsample != "nearest":  # they interpolate within a cell: finer pixels
            pixel_size = 1.0
        # "guided" names the method here (also in the layer's metadata); run() adds the guide
        return {"n_components": max(shown) + 1, "fit": self.fit.value,
                "normalize": self.normalize.value, "rgb_components": shown,
                "pixel_size": pixel_size, "upsample": upsample}

    def _path(self) -> str | None:
        path = os.fspath(self.path.value or "")
        return None if not path or path == "." else path

    def run(self, *_args) -> "FunctionWorker | None":
        """Start drawing in a worker thread; returns the worker (None if nothing was started)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        import embedview

        if self._worker is not None:
            show_info("embedview: the previous Embedding PCA run is still going; wait for it.")
            return None
        path = self._path()
        if path is None:
            show_error("embedview: choose an embedding file (.zarr folder) or an embeddings layer first.")
            return None
        try:
            options = self.options()
        except embedview.EmbedviewError as err:
            show_error(f"embedview: {err}")
            return None
        image = self.image_layer.value
        guide = None
        if options["upsample"] == "guided":
            if image is None:
                show_error("embedview: upsample guided follows the edges of the image: choose its layer "
                           "in 'align to'.")
                return None
            guide = _guide_of(image)
        # unexpected exceptions reach napari's own error notification (with its traceback)
        worker = create_worker(_compute, path, options, guide, _target_of(image), _ignore_errors=True,
                               _start_thread=False,
                               _progress={"total": 0, "desc": f"Embedding PCA of {layer_name(path)}"})
        worker.returned.connect(lambda result: self._show(*result, path, options, image))
        worker.finished.connect(self._finished)
        self._worker = worker
        self.run_button.enabled = False
        self.variance.value = _COMPUTING
        worker.start()
        return worker

    def _finished(self) -> None:
        self._worker = None
        self.run_button.enabled = True
        if self.variance.value == _COMPUTING:  # failed unexpectedly: napari has reported it
            self.variance.value = ""

    def _show(self, vis, error: str | None, path: str, options: dict, image) -> None:
        """Add or update ``"<name> PCA"`` over ``image`` (runs on the GUI thread)."""
        if error is not None:
            from napari.utils.notifications import show_error

            self.variance.value = ""
            show_error(f"embedview: {error}")
            return
        kwargs = layer_kwargs(vis, path, name=f"{layer_name(path)} PCA", options=options)
        kwargs["metadata"]["embedview"][WIDGET_KEY] = "PCA"
        kwargs["scale"], kwargs["translate"] = _on_layer(image, kwargs["scale"], kwargs["translate"])
        self.variance.value = variance_text(kwargs["metadata"]["embedview"]["explained_variance_ratio"],
                                            components=options["rgb_components"])
        self.add_or_update(vis.rgb, kwargs)

    # ---- similarity click ---------------------------------------------------------------------

    def _on_click(self, viewer, event) -> None:
        """napari mouse callback: a Shift+click with embeddings chosen starts the similarity map."""
        if (getattr(event, "type", None) != "mouse_press" or SIMILARITY_MODIFIER not in event.modifiers
                or self._path() is None):
            return
        self.similarity_at(event.position)

    def similarity_at(self, position) -> "FunctionWorker | None":
        """Start the similarity map of the image pixel under a world point, in a worker thread.

        The point goes through the chosen image layer's ``world_to_data`` (no image layer: world
        coordinates are image pixels) and is rounded to the pixel index; on a stack the slice is
        the viewer's current one. The layer ``"<name> similarity"`` shows the similarity values
        (1.0 at the query cell) with the colormap "inferno", from the 1st percentile to 1.0.

        Parameters
        ----------
        position : sequence of float
            World coordinates, as napari's ``event.position`` (all of the viewer's axes).

        Returns
        -------
        FunctionWorker or None
            None if nothing was started (a notification says why).
        """
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        path = self._path()
        if path is None:
            show_error("embedview: choose an embedding file (.zarr folder) or an embeddings layer first.")
            return None
        if self._similarity_worker is not None:
            show_info("embedview: the previous similarity map is still being computed; wait for it.")
            return None
        if self._viewer.dims.ndisplay != 2:
            show_info("embedview: similarity clicks work in the 2D view; switch the viewer to 2D.")
            return None
        image = self.image_layer.value
        pixel = _pixel_under(image, position, self._viewer.dims)
        pixel_size = self.pixel_size.value or None
        worker = create_worker(_similarity, path, pixel, pixel_size, _target_of(image), _ignore_errors=True,
                               _start_thread=False,
                               _progress={"total": 0, "desc": f"Similarity in {layer_name(path)}"})
        worker.returned.connect(lambda result: self._show_similarity(*result, path, image, pixel_size))
        worker.finished.connect(self._similarity_finished)
        self._similarity_worker = worker
        worker.start()
        return worker

    def _similarity_finished(self) -> None:
        self._similarity_worker = None

    def _show_similarity(self, vis, point, error: str | None, path: str, image, pixel_size) -> None:
        """Add or update ``"<name> similarity"`` over ``image`` (runs on the GUI thread)."""
        if error is not None:
            from napari.utils.notifications import show_warning

            show_warning(f"embedview: {error}")
            return
        values = vis.components[..., 0]
        kwargs = layer_kwargs(vis, path, name=f"{layer_name(path)} similarity",
                              options={"point": list(point), "pixel_size": pixel_size})
        kwargs["metadata"]["embedview"][WIDGET_KEY] = "similarity"
        from embedview._run.similarity import display_range  # the core's colour ramp's range

        kwargs.update(rgb=False, colormap="inferno", contrast_limits=display_range(values))
        scale, translate = kwargs["scale"], kwargs["translate"]
        if len(point) == 3:  # a stack: the map covers the query's slice only, so it lies on that slice
            values, scale, translate = values[None], (1.0, *scale), (float(point[0]), *translate)
        kwargs["scale"], kwargs["translate"] = _on_layer(image, scale, translate)
        self.add_or_update(values, kwargs)

    def add_or_update(self, data, kwargs: dict):
        """Update the layer named ``kwargs["name"]`` in place, or add it; returns the layer.

        ``data`` is an RGB picture if ``kwargs["rgb"]``, else values drawn with
        ``kwargs["contrast_limits"]`` (the colormap is set only when the layer is added).
        """
        from napari.layers import Image

        name, rgb = kwargs["name"], bool(kwargs.get("rgb"))
        layer = self._viewer.layers[name] if name in self._viewer.layers else None
        if not (isinstance(layer, Image) and layer.rgb == rgb and layer.ndim == data.ndim - rgb):
            return self._viewer.add_image(data, **kwargs)
        # geometry first, then data: the new picture is never drawn on the old grid
        layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
        layer.data = data
        if "contrast_limits" in kwargs:
            layer.contrast_limits = kwargs["contrast_limits"]
        layer.metadata = {**layer.metadata, **kwargs["metadata"]}
        return layer


def _source_of(layer) -> str | None:
    meta = getattr(layer, "metadata", None) or {}
    return (meta.get("embedview") or {}).get("source")


def _on_layer(image, scale, translate) -> tuple[tuple, tuple]:
    """Compose the picture's placement (image pixels) with the image layer's scale/translate."""
    if image is None:
        return tuple(scale), tuple(translate)
    n = len(scale)
    # the image layer's trailing axes are the spatial ones the embeddings describe
    img_scale = ([1.0] * n + [float(v) for v in image.scale])[-n:]
    img_translate = ([0.0] * n + [float(v) for v in image.translate])[-n:]
    return (tuple(s * v for s, v in zip(img_scale, scale)),
            tuple(t + s * v for t, s, v in zip(img_translate, img_scale, translate)))


def _pixel_under(image, position, dims) -> tuple[int, ...]:
    """Image pixel indices (all of the layer's axes) under a world point, on the current slice."""
    import numpy as np

    world = np.asarray(position, float)
    if len(world) == dims.ndim:  # the slice shown, whatever the event carried for hidden axes
        hidden = [axis for axis in range(dims.ndim) if axis not in dims.displayed]
        world[hidden] = np.asarray(dims.point, float)[hidden]
    data = world if image is None else np.asarray(image.world_to_data(world), float)
    # napari's pixel i covers [i - 0.5, i + 0.5) around its centre
    return tuple(int(v) for v in np.floor(data + 0.5))


def _guide_of(layer) -> tuple[str, Any, bool]:
    """``(name, data, rgb)`` of an image layer as the guide of ``upsample="guided"``: its data, level 0
    of a multiscale layer (read by windows in the worker, never copied whole)."""
    return layer.name, layer.data[0] if layer.multiscale else layer.data, bool(layer.rgb)


def _drawn_by_widget(layer) -> bool:
    return bool(((getattr(layer, "metadata", None) or {}).get("embedview") or {}).get(WIDGET_KEY))


def _target_of(image) -> tuple[str, tuple[int, ...]] | None:
    """``(name, shape)`` of the "align to" layer for the worker: the shape without RGB's channel
    axis, of level 0 if multiscale (read on the GUI thread)."""
    return None if image is None else (image.name, tuple(int(v) for v in image.level_shapes[0]))


def _mismatch(target, src) -> str | None:
    """Why the picture of ``src`` cannot lie on the image layer ``target`` (:func:`_target_of`), or None.

    The layer's trailing axes must be the image the embeddings describe: ``(H, W)``, or
    ``(Z, H, W)`` for a stack (leading axes, e.g. time, are allowed).
    """
    if target is None:
        return None
    name, shape = target
    expected = tuple(int(v) for v in src.shape)
    if shape[-len(expected):] == expected:
        return None
    return (f"the image layer {name!r} has shape {list(shape)} but the embeddings describe an image of "
            f"{list(expected)}, so the picture would not lie on it; choose the image they were computed from "
            "in 'align to'.")


def _similarity(path: str, pixel: tuple[int, ...], pixel_size, target=None):
    """``(vis, point, None)``, or ``(None, None, message)`` for a point embedview cannot use (worker thread).

    ``pixel`` holds every axis of the image layer; its trailing (y, x), or (z, y, x) for a
    stack, are the query. ``target``: :func:`_target_of` the "align to" layer, which must fit.
    """
    import embedview

    try:
        src = embedview.open_source(path)
        if (why := _mismatch(target, src)) is not None:
            return None, None, why
        point = tuple(pixel[-3:] if src.is_stack else pixel[-2:])
        return embedview.similarity(src, point=point, pixel_size=pixel_size), point, None
    except embedview.EmbedviewError as err:  # one sentence, no traceback: a plain notification
        return None, None, str(err)


def _compute(path: str, options: dict, guide: tuple | None = None, target=None):
    """``(vis, None)``, or ``(None, message)`` for input embedview cannot use (worker thread).

    ``guide``: :func:`_guide_of` the image layer that ``options["upsample"] == "guided"`` follows;
    ``target``: :func:`_target_of` the "align to" layer. The file's image must be the layer's
    (checked from its metadata, before anything is computed): nothing is drawn over another image.
    """
    import embedview

    try:
        src = embedview.open_source(path)
        if (why := _mismatch(target, src)) is not None:
            return None, why
        if guide is not None:
            name, data, rgb = guide
            shape = [int(v) for v in (data.shape[:-1] if rgb else data.shape)]
            if shape != [int(v) for v in src.shape]:  # the guide is the image itself: no leading axes
                return None, (f"upsample guided follows the image layer {name!r}, but it has shape {shape} and the "
                              f"embeddings describe an image of {list(src.shape)}; choose the image they were "
                              "computed from in 'align to'.")
            options = {**options, "upsample": embedview.Upsample("guided", guide=data)}
        return embedview.visualize(src, **options), None
    except embedview.EmbedviewError as err:  # one sentence, no traceback: a plain notification
        return None, str(err)
