"""The napari plugin: reader, "Embedding PCA" widget, overlay on screen, light import.

Needs the ``napari`` extra and a display: pytest-xvfb starts a virtual X server (napari cannot
add layers on Qt's offscreen platform: it has no OpenGL context).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import embedview  # noqa: E402
from embedview.napari._reader import get_reader  # noqa: E402
from embedview.napari._widget import EmbeddingPCAWidget  # noqa: E402

from _fixtures import DATA, copy_fixture  # noqa: E402
from _napari_screenshot import frame, show_overlay  # noqa: E402

SHARED = Path(__file__).parents[1].parent / "shared" / "fixtures" / "micro_sam"
CASES = sorted(p.name[:-len(".zarr")] for p in DATA.glob("*.zarr"))


@pytest.fixture
def viewer(qtbot):
    viewer = napari.Viewer(show=False)
    yield viewer
    viewer.close()


@pytest.fixture
def notes():
    """Notifications napari shows during the test: (severity, message)."""
    from napari.utils.notifications import notification_manager

    seen = []

    def record(event):
        seen.append((str(event.severity), str(event.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)

# ---- import and manifest -----------------------------------------------------------------------


def test_import_does_not_load_napari_or_qt():
    code = ("import sys, embedview, embedview.napari; "
            "heavy = [m for m in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'magicgui', 'vispy', 'zarr') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_manifest_declares_reader_and_widget():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("embedview")
    [reader] = manifest.contributions.readers
    assert reader.filename_patterns == ["*.zarr"] and reader.accepts_directories
    assert [w.display_name for w in manifest.contributions.widgets] == ["Embedding PCA"]


# ---- reader ------------------------------------------------------------------------------------


def test_fixture_copies_cover_the_shared_fixtures():
    if not SHARED.is_dir():
        pytest.skip("../shared/fixtures/micro_sam is not beside this checkout")
    assert CASES == sorted(p.name[:-len(".zarr")] for p in SHARED.glob("*.zarr"))


@pytest.mark.parametrize("case", CASES)
def test_reader_opens_every_fixture(viewer, case):
    path = DATA / f"{case}.zarr"
    [layer] = viewer.open(str(path), plugin="embedview")
    vis = embedview.visualize(path)
    assert len(viewer.layers) == 1 and layer.name == case and layer.rgb
    np.testing.assert_array_equal(layer.data, vis.rgb)
    np.testing.assert_allclose(layer.scale, vis.scale)
    np.testing.assert_allclose(layer.translate, vis.translate)
    assert (layer.opacity, layer.blending) == (0.5, "translucent")
    meta = layer.metadata["embedview"]
    assert meta["source"] == str(path.resolve()) and meta["layout"] == vis.layout
    assert len(meta["explained_variance_ratio"][0]) == 3

    src = embedview.open_source(path)
    assert layer.ndim == (3 if src.is_stack else 2)
    if src.is_stack:  # one slice per step of the first axis
        assert layer.scale[0] == 1 and layer.translate[0] == 0 and layer.data.shape[0] == src.shape[0]
    # napari's world extent spans first to last pixel centre; a pixel covers ± scale/2 around it
    world = np.asarray(layer.extent.world)[:, -2:]
    scale = np.asarray(layer.scale[-2:])
    first, last = world[0] - scale / 2, world[1] + scale / 2
    height_width = np.asarray(src.image_shape, float)
    # the API's geometry: the layer starts at the image's edge (-0.5 in napari's pixel-centre
    # coordinates) and a partial last cell overhangs the far edge by less than one cell
    np.testing.assert_allclose(first, -0.5, atol=1e-9)
    assert np.all(last >= height_width - 0.5 - 1e-9) and np.all(last < height_width - 0.5 + scale)


def test_reader_leaves_other_paths_alone(tmp_path, monkeypatch):
    import zarr

    other = zarr.open_group(str(tmp_path / "labels.zarr"), mode="w")
    other.create_array("labels", shape=(4, 4), dtype="u1")
    v2 = zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    v2.attrs["original_size"] = [4, 4]  # micro_sam-like attributes but no features
    v2.attrs["input_size"] = [4, 4]
    (tmp_path / "plain.zarr").mkdir()
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    (tmp_path / "image.zarr").write_bytes(b"\0")
    for name in ("labels.zarr", "v2.zarr", "plain.zarr", "bad.zarr", "image.zarr", "missing.zarr"):
        assert get_reader(str(tmp_path / name)) is None, name
    assert get_reader([str(DATA / "2d.zarr"), str(DATA / "3d.zarr")]) is None


def test_reader_decides_from_metadata_only(tmp_path, monkeypatch):
    import zarr

    path = copy_fixture("2d", tmp_path)
    shutil.rmtree(path / "features" / "c")  # no feature chunks at all
    monkeypatch.setattr(zarr, "open_group", lambda *a, **k: pytest.fail("zarr was opened to decide"))
    monkeypatch.setattr(zarr, "open", lambda *a, **k: pytest.fail("zarr was opened to decide"))
    assert callable(get_reader(str(path)))
    assert callable(get_reader([str(DATA / "tiled2d_zarr2.zarr")]))


def _truncate_a_chunk(path):
    chunks = [Path(r) / f for r, _, fs in os.walk(path) for f in fs if not f.startswith((".", "zarr.json"))]
    chunk = max(chunks, key=lambda p: p.stat().st_size)
    chunk.write_bytes(chunk.read_bytes()[:100])


def _drop_attribute(path):
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"]["original_size"]
    (path / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_truncate_a_chunk, _drop_attribute,
                                    lambda p: shutil.rmtree(p / "features")])
def test_reader_reports_a_damaged_container(viewer, notes, tmp_path, damage):
    path = copy_fixture("2d", tmp_path)
    damage(path)
    assert callable(get_reader(str(path)))
    layers = viewer.open(str(path), plugin="embedview")  # no exception
    assert layers == [] and len(viewer.layers) == 0
    [(severity, message)] = notes
    assert severity == "error" and message.startswith("embedview: ") and "2d.zarr" in message


def test_reader_reports_a_damaged_picture(viewer, notes, tmp_path):
    out = tmp_path / "pca.zarr"
    embedview.visualize(DATA / "2d.zarr", pixel_size=1, output=out)  # two levels
    shutil.rmtree(out / "1")
    assert callable(get_reader(str(out)))  # ours by its marker
    assert viewer.open(str(out), plugin="embedview") == [] and len(viewer.layers) == 0
    (out / "0" / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(out / "0" / "fifo")  # would hang a chunk read: refused by the scan first
    assert viewer.open(str(out), plugin="embedview") == []
    [(severity, first), (_, second)] = notes
    assert severity == "error" and "pca.zarr is damaged" in first and "render it again" in first
    assert "fifo" in second and "not a regular file" in second


def test_reader_opens_vision_foundation_model_files(viewer, tmp_path):
    from _vfm import StandInEncoder, write_vfm_embeddings

    image = np.random.default_rng(0).integers(0, 255, (2, 90, 130)).astype(np.uint8)
    path = write_vfm_embeddings(tmp_path / "cells.zarr", image, StandInEncoder("vit_b_dinov2"),
                                tile_shape=(48, 64), halo=(8, 8))  # micro_sam's tiled-3d, no root sizes
    [layer] = viewer.open(str(path), plugin="embedview")
    vis = embedview.visualize(path)
    assert layer.name == "cells (vit_b_dinov2, patch 14)" and layer.rgb
    np.testing.assert_array_equal(layer.data, vis.rgb)
    np.testing.assert_allclose(layer.scale, vis.scale)
    np.testing.assert_allclose(layer.translate, vis.translate)
    meta = layer.metadata["embedview"]
    assert (meta["layout"], meta["patch_size"], meta["vfm_mode"]) == ("tiled stack", 14, "tiled-3d")


@pytest.fixture
def settings(monkeypatch):
    """napari's settings for this test only, never saved (the reader preference is one of them)."""
    from napari import settings as napari_settings

    fresh = napari_settings.NapariSettings(config_path=None)
    monkeypatch.setattr(napari_settings, "_SETTINGS", fresh)
    return fresh


@pytest.mark.parametrize("kind", ["tiled2d", "2d", "picture"])
def test_opening_needs_the_one_step_the_readme_shows(viewer, settings, monkeypatch, tmp_path, kind):
    """napari's own reader also claims ``.zarr`` folders, and nothing a plugin declares outranks it:
    ``viewer.open(path)`` uses it (its default is ``plugin="napari"``), which cannot read these files;
    the GUI asks which reader. So the README and the widget show the one step: choose embedview
    when asked (*remember* keeps the choice for that folder only), ``plugin="embedview"``, or
    ``napari --plugin embedview PATH``."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.plugins import _npe2

    path = DATA / f"{kind}.zarr"
    if kind == "picture":
        path = tmp_path / "pca.zarr"
        embedview.visualize(DATA / "tiled2d.zarr", output=path)
    assert {"napari", "embedview"} <= set(_npe2.get_readers(str(path)))
    try:  # napari's reader: fails (ValueError) or shows the raw features, never embedview's picture
        layers = viewer.open(str(path))
    except Exception:
        layers = []
    assert all(layer.source.reader_plugin == "napari" for layer in layers)
    viewer.layers.clear()

    [layer] = viewer.open(str(path), plugin="embedview")  # the Python step
    assert layer.rgb and layer.source.reader_plugin == "embedview"
    viewer.layers.clear()
    qt_viewer = viewer.window._qt_viewer
    qt_viewer._qt_open([str(path)], stack=False, plugin="embedview")  # what `napari --plugin embedview PATH` does
    [layer] = viewer.layers
    assert layer.rgb and layer.source.reader_plugin == "embedview"
    viewer.layers.clear()

    # the GUI (File › Open Folder, a drop, `napari PATH`): napari asks; embedview chosen, "remember" ticked
    asked = []

    def choose(dialog):
        asked.append(sorted(button.text() for button in dialog.reader_btn_group.buttons()))
        return "embedview", True

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose)
    qt_viewer._qt_open([str(path)], stack=False)
    assert asked == [["embedview", "napari builtins"]]
    [layer] = viewer.layers
    assert layer.rgb and layer.source.reader_plugin == "embedview"
    assert dict(settings.plugins.extension2reader) == {os.path.realpath(path) + os.sep: "embedview"}
    viewer.layers.clear()
    qt_viewer._qt_open([str(path)], stack=False)  # remembered: no question
    assert len(asked) == 1 and viewer.layers[0].source.reader_plugin == "embedview"
    other = tmp_path / "other.zarr"  # ... for that folder only: another .zarr is asked about again
    import zarr

    zarr.open_array(str(other), mode="w", shape=(4, 4), dtype="u1")
    monkeypatch.setattr(QtReaderDialog, "get_user_choices", lambda dialog: asked.append("other") or (None, False))
    qt_viewer._qt_open([str(other)], stack=False)
    assert asked[-1] == "other"


# ---- widget ------------------------------------------------------------------------------------


def _run(widget, qtbot):
    worker = widget.run()
    assert worker is not None and not widget.run_button.enabled
    # poll: a worker that finishes before a waitSignal connects would never be seen
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert widget.run_button.enabled


def test_widget_draws_over_the_image_layer_and_updates_it(viewer, qtbot, notes):
    path = DATA / "2d.zarr"
    # the image layer has its own world placement: the overlay must follow it
    image = viewer.add_image(np.zeros((600, 900), np.uint8), name="image", scale=(0.5, 2.0),
                             translate=(10.0, -3.0))
    widget = EmbeddingPCAWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image_layer.value is image  # the one image layer is chosen by default
    widget.path.value = path

    _run(widget, qtbot)
    layer = viewer.layers["2d PCA"]
    vis = embedview.visualize(path)
    np.testing.assert_array_equal(layer.data, vis.rgb)
    np.testing.assert_allclose(layer.scale, np.multiply(image.scale, vis.scale))
    np.testing.assert_allclose(layer.translate, image.translate + image.scale * np.asarray(vis.translate))
    # first overlay pixel starts where the first image pixel starts, in world coordinates
    start = lambda lyr: np.asarray(lyr.extent.world)[0] - np.asarray(lyr.scale) / 2  # noqa: E731
    np.testing.assert_allclose(start(layer), start(image))
    ratio = vis.basis.explained_variance_ratio
    assert widget.variance.value.startswith("R: PC1 ") and widget.variance.value.endswith("%)")
    assert f"{100 * ratio[0]:.1f}%" in widget.variance.value
    assert not notes

    # other options: the same layer is updated, not duplicated
    widget.normalize.value = "channel"
    widget.rgb_components.value = "2, 0"
    widget.pixel_size.value = 4
    _run(widget, qtbot)
    assert [lyr.name for lyr in viewer.layers] == ["image", "2d PCA"]
    assert viewer.layers["2d PCA"] is layer
    vis = embedview.visualize(path, n_components=3, normalize="channel", pixel_size=4, rgb_components=(2, 0))
    np.testing.assert_array_equal(layer.data, vis.rgb)
    np.testing.assert_allclose(layer.scale, np.multiply(image.scale, 4))
    np.testing.assert_allclose(start(layer), start(image))
    assert "R: PC3 " in widget.variance.value and "G: PC1 " in widget.variance.value and "B:" not in widget.variance.value
    assert layer.metadata["embedview"]["options"]["normalize"] == "channel"


def test_widget_uses_a_reader_layer_for_a_stack(viewer, qtbot, notes):
    path = DATA / "3d.zarr"
    [opened] = viewer.open(str(path), plugin="embedview")
    image = viewer.add_image(np.zeros((5, 300, 400), np.uint8), name="volume")
    widget = EmbeddingPCAWidget(viewer)
    widget.embeddings_layer.value = opened  # the layer the reader added names its file
    assert Path(widget.path.value) == path.resolve()
    assert widget.image_layer.value is image  # reader layers are not offered as images
    widget.fit.value = "per_slice"
    _run(widget, qtbot)
    layer = viewer.layers["3d PCA"]
    vis = embedview.visualize(path, fit="per_slice", pixel_size=None)
    np.testing.assert_array_equal(layer.data, vis.rgb)
    np.testing.assert_allclose(layer.scale, vis.scale)
    assert "mean of 5 slices" in widget.variance.value
    assert not notes


def test_widget_reports_problems_as_notifications(viewer, qtbot, notes, tmp_path):
    viewer.add_image(np.zeros((100, 100), np.uint8), name="small")
    widget = EmbeddingPCAWidget(viewer)
    assert widget.run() is None  # no file chosen
    widget.path.value = DATA / "2d.zarr"
    widget.rgb_components.value = "red"
    assert widget.run() is None
    widget.rgb_components.value = "0, 1, 2"
    _run(widget, qtbot)  # shape mismatch: one error, nothing drawn over the wrong image
    damaged = copy_fixture("2d", tmp_path)
    _truncate_a_chunk(damaged)
    widget.path.value = damaged
    widget.image_layer.value = None  # image pixel coordinates: the file itself is refused
    _run(widget, qtbot)
    severities = [s for s, _ in notes]
    assert severities == ["error", "error", "error", "error"], notes
    assert "'small'" in notes[2][1] and "[100, 100]" in notes[2][1] and "[600, 900]" in notes[2][1]
    assert "damaged" in notes[3][1]
    assert notes[2][1].startswith("embedview: ") and notes[2][1].count(". ") == 0  # one sentence
    assert [lyr.name for lyr in viewer.layers] == ["small"]
    assert widget.variance.value == ""


def test_widget_does_not_offer_its_own_layers_as_embeddings(viewer, qtbot, notes):
    """Its PCA and similarity layers name their file too, but they are pictures: never offered."""
    [opened] = viewer.open(str(DATA / "2d.zarr"), plugin="embedview")
    viewer.add_image(np.zeros((600, 900), np.uint8), name="image")
    widget = EmbeddingPCAWidget(viewer)
    widget.path.value = DATA / "2d.zarr"
    _run(widget, qtbot)
    _click(viewer, widget, qtbot, (300.0, 450.0))
    assert [lyr.name for lyr in viewer.layers] == ["2d", "image", "2d PCA", "2d similarity"]
    assert list(widget.embeddings_layer.choices) == [None, opened]
    assert [layer.name for layer in widget.image_layer.choices if layer is not None] == ["image"]
    assert viewer.layers["2d PCA"].metadata["embedview"]["drawn_by_widget"] == "PCA"
    assert not notes


def test_widget_follows_layer_changes_and_refuses_an_image_of_another_size(viewer, qtbot, notes):
    """"align to" offers the layers there are now (names included), and a choice that changed under
    the user, to an image of another size, is refused when drawing: one notification, nothing drawn."""
    widget = EmbeddingPCAWidget(viewer)
    widget.path.value = DATA / "2d.zarr"
    assert widget.image_layer.value is None
    first = viewer.add_image(np.zeros((600, 900), np.uint8), name="first")
    assert widget.image_layer.value is first  # the first image layer is chosen, as at the start
    small = viewer.add_image(np.zeros((100, 100), np.uint8), name="small")
    big = viewer.add_image(np.zeros((600, 900), np.uint8), name="big")
    widget.image_layer.value = big
    big.name = "renamed"
    assert "renamed" in [widget.image_layer.native.itemText(i) for i in range(widget.image_layer.native.count())]
    viewer.layers.remove(first)
    assert widget.image_layer.value is big  # a choice still there is kept
    viewer.layers.remove(big)
    assert widget.image_layer.value is small  # napari's ComboBox falls back to another image...
    _run(widget, qtbot)  # ...of another size: refused before anything is computed
    [(severity, message)] = notes
    assert severity == "error" and "'small'" in message and "[100, 100]" in message and "[600, 900]" in message
    assert "choose the image they were computed from in 'align to'" in message
    assert [lyr.name for lyr in viewer.layers] == ["small"]
    assert widget.variance.value == ""
    _click(viewer, widget, qtbot, (50.0, 50.0))  # the similarity click is held to the same rule
    assert len(notes) == 2 and notes[1][0] == "warning" and "[100, 100]" in notes[1][1]
    assert [lyr.name for lyr in viewer.layers] == ["small"]

    # a stack's layer must have the slices too; leading axes (time) are allowed
    widget.path.value = DATA / "3d.zarr"
    widget.image_layer.value = viewer.add_image(np.zeros((2, 5, 300, 400), np.uint8), name="movie")
    _run(widget, qtbot)
    assert "3d PCA" in viewer.layers and len(notes) == 2
    widget.image_layer.value = viewer.add_image(np.zeros((300, 400), np.uint8), name="one slice")
    _run(widget, qtbot)
    assert len(notes) == 3 and "[300, 400]" in notes[2][1] and "[5, 300, 400]" in notes[2][1]


def test_widget_shows_how_to_open_a_file_with_embedview(viewer, tmp_path):
    """napari's viewer.open uses napari's own reader unless told otherwise; the widget says the step."""
    widget = EmbeddingPCAWidget(viewer)
    assert 'viewer.open(path, plugin="embedview")' in widget.open_hint.value
    assert "choose embedview when napari asks" in widget.open_hint.value


def test_widget_upsamples_guided_by_the_image_layer(viewer, qtbot, notes):
    """upsample=guided follows the "align to" layer's data (grey, RGB or a multiscale's level 0)
    at pixel size 1 when the pixel size is 0, placed as visualize places it."""
    path = DATA / "2d.zarr"
    image = np.load(DATA / "2d_image.npy")
    grey = viewer.add_image(image, name="image")
    widget = EmbeddingPCAWidget(viewer)
    widget.path.value = path
    assert widget.upsample.value == "nearest" and list(widget.upsample.choices) == ["nearest", "bilinear", "guided"]
    assert "pixel size 1" in widget.upsample.tooltip and "upsample bilinear or guided: 1" in widget.pixel_size.tooltip
    widget.upsample.value = "guided"
    assert widget.options()["pixel_size"] == 1 and widget.options()["upsample"] == "guided"
    _run(widget, qtbot)
    layer = viewer.layers["2d PCA"]
    vis = embedview.visualize(path, pixel_size=1, upsample=embedview.Upsample("guided", guide=image))
    nearest = embedview.visualize(path, pixel_size=1)
    assert layer.data.shape == (600, 900, 3)
    np.testing.assert_array_equal(layer.data, vis.rgb)
    assert (layer.data != nearest.rgb).any(axis=-1).mean() > 0.3
    np.testing.assert_allclose(layer.scale, vis.scale)
    np.testing.assert_allclose(layer.translate, vis.translate)
    assert layer.metadata["embedview"]["options"]["upsample"] == "guided"
    assert not notes

    # an RGB layer guides as an RGB image; a multiscale layer by its level 0
    rgb = np.stack([image, 255 - image, image // 2], axis=-1)
    widget.image_layer.value = viewer.add_image(rgb, name="rgb", rgb=True)
    _run(widget, qtbot)
    expected = embedview.visualize(path, pixel_size=1, upsample=embedview.Upsample("guided", guide=rgb))
    np.testing.assert_array_equal(viewer.layers["2d PCA"].data, expected.rgb)
    widget.image_layer.value = viewer.add_image([image, image[::2, ::2]], name="pyramid", multiscale=True)
    _run(widget, qtbot)
    np.testing.assert_array_equal(viewer.layers["2d PCA"].data, vis.rgb)

    # bilinear at pixel size 0 draws at 1 too; an explicit pixel size is kept
    widget.image_layer.value = grey
    widget.upsample.value = "bilinear"
    _run(widget, qtbot)
    np.testing.assert_array_equal(viewer.layers["2d PCA"].data,
                                  embedview.visualize(path, pixel_size=1, upsample="bilinear").rgb)
    widget.upsample.value = "guided"
    widget.pixel_size.value = 4
    _run(widget, qtbot)
    at4 = embedview.visualize(path, pixel_size=4, upsample=embedview.Upsample("guided", guide=image))
    np.testing.assert_array_equal(viewer.layers["2d PCA"].data, at4.rgb)
    np.testing.assert_allclose(viewer.layers["2d PCA"].scale, at4.scale)
    assert [lyr.name for lyr in viewer.layers] == ["image", "2d PCA", "rgb", "pyramid"]  # updated in place
    assert not notes


def test_widget_guided_without_the_image_notifies_and_draws_nothing(viewer, qtbot, notes):
    widget = EmbeddingPCAWidget(viewer)
    widget.path.value = DATA / "2d.zarr"
    widget.upsample.value = "guided"
    assert widget.image_layer.value is None
    assert widget.run() is None  # no image layer to follow
    small = viewer.add_image(np.zeros((100, 100), np.uint8), name="small")
    widget.image_layer.value = small
    _run(widget, qtbot)  # an image of another shape: an error, no layer
    assert [s for s, _ in notes] == ["error", "error"], notes
    assert "choose its layer in 'align to'" in notes[0][1]
    assert "'small'" in notes[1][1] and "[100, 100]" in notes[1][1] and "[600, 900]" in notes[1][1]
    for _, message in notes:  # one sentence each
        assert message.startswith("embedview: ") and message.endswith(".") and message.count(". ") == 0
    assert [lyr.name for lyr in viewer.layers] == ["small"]
    assert widget.variance.value == ""


# ---- on screen ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["tiled2d", "2d"])
def test_overlay_lies_over_the_image_on_screen(qtbot, tmp_path, case):
    """Screenshot: at known image positions the screen shows image and overlay blended half/half.

    ``2d`` is 600×900 with 14.0625-pixel cells: its last row of cells overhangs the bottom edge,
    so the bottom and right bands test that napari draws with the API's exact geometry.
    """
    image = np.load(DATA / f"{case}_image.npy")
    viewer, widget, overlay = show_overlay(image, DATA / f"{case}.zarr")
    try:
        framing = frame(viewer, image.shape)
        shot = viewer.screenshot(canvas_only=True, flash=False)
        window = viewer.screenshot(canvas_only=False, flash=False)
    finally:
        viewer.close()
    from PIL import Image

    png = tmp_path / f"napari_overlay_{case}.png"
    Image.fromarray(shot).save(png)
    Image.fromarray(window).save(tmp_path / f"napari_window_{case}.png")
    print(f"screenshot: {png} (whole window: {tmp_path / f'napari_window_{case}.png'})")

    vis = embedview.visualize(DATA / f"{case}.zarr")
    scale, translate = np.asarray(vis.scale), np.asarray(vis.translate)
    np.testing.assert_allclose(overlay.scale, scale)
    np.testing.assert_allclose(overlay.translate, translate)
    rows, cols = vis.rgb.shape[:2]
    h, w = image.shape

    def expected_at(pixels, shift=(0, 0)):
        # the image pixel and overlay pixel each screen pixel shows (nearest), blended 50/50
        world = framing.to_world(shot, pixels)
        ij = np.clip(np.round(world).astype(int), 0, np.asarray(image.shape) - 1)
        k = np.clip(np.round((world - translate) / scale).astype(int) + shift, 0, [rows - 1, cols - 1])
        grey = image[ij[:, 0], ij[:, 1]].astype(float)[:, None]
        return 0.5 * vis.rgb[k[:, 0], k[:, 1]] + 0.5 * grey

    def error_at(world, shift=(0, 0)):
        pixels = framing.to_screen(shot, world)
        seen = shot[pixels[:, 0], pixels[:, 1], :3].astype(float)
        return np.abs(seen - expected_at(pixels, shift)).max(axis=1)

    # centres of overlay pixels on a grid over the whole image, edges and corners included
    k = np.stack(np.meshgrid(np.linspace(0, rows - 1, 12).round(), np.linspace(0, cols - 1, 15).round(),
                             indexing="ij"), -1).reshape(-1, 2)
    centres = translate + k * scale
    inside = np.all(centres <= np.asarray(image.shape) - 1, axis=1)
    error = error_at(centres[inside])
    assert np.all(error <= 3), np.sort(error)[-10:]  # 8-bit rounding of the blend
    # one overlay pixel off would be visibly wrong: the check can tell where the overlay is
    for shift in [(0, 1), (1, 0), (0, -1), (-1, 0)]:
        assert np.median(error_at(centres[inside], shift)) > 10

    # the bottom and right edge bands: image pixels in the part of the last overlay row (column)
    # that lies on the image, half way between that cell's start and the image's edge
    band_y = round(((rows - 1) * scale[0] - 0.5 + h - 0.5) / 2)
    band_x = round(((cols - 1) * scale[1] - 0.5 + w - 0.5) / 2)
    along_x = translate[1] + np.arange(0, cols, max(1, cols // 20)) * scale[1]
    along_y = translate[0] + np.arange(0, rows, max(1, rows // 20)) * scale[0]
    bands = np.concatenate([np.stack([np.full(along_x.size, band_y), along_x], 1),
                            np.stack([along_y, np.full(along_y.size, band_x)], 1)])
    bands = bands[np.all(bands <= np.asarray(image.shape) - 1, axis=1)]
    error = error_at(bands)
    assert np.all(error <= 3), np.sort(error)[-10:]

    # just outside the top and left edges (2 screen pixels): background; the bottom and right
    # edges show the overhang of a partial last cell where there is one, else background
    background = shot[1, 1, :3]
    overhang = (rows * scale[0] - 0.5 > h - 0.5 + 1, cols * scale[1] - 0.5 > w - 0.5 + 1)
    edges = np.array([[-0.5, w / 2], [h - 0.5, w / 2], [h / 2, -0.5], [h / 2, w - 0.5]])
    outward = np.array([[-2, 0], [2, 0], [0, -2], [0, 2]])
    drawn_outside = [False, overhang[0], False, overhang[1]]
    for edge, out, drawn in zip(edges, outward, drawn_outside):
        row, col = framing.to_screen(shot, edge[None])[0] + out
        assert np.any(shot[row, col, :3] != background) == drawn
        row, col = framing.to_screen(shot, edge[None])[0] - out  # just inside: drawn
        assert np.any(shot[row, col, :3] != background)


# ---- similarity click --------------------------------------------------------------------------


def _click(viewer, widget, qtbot, world, modifiers=("Shift",)):
    """A modifier-click through napari's own mouse-press machinery; waits for the worker."""
    from types import SimpleNamespace

    from napari.utils.interactions import mouse_press_callbacks

    event = SimpleNamespace(type="mouse_press", modifiers=modifiers, position=tuple(world),
                            pos=np.zeros(2), handled=False, is_dragging=False)
    mouse_press_callbacks(viewer, event)
    qtbot.waitUntil(lambda: widget._similarity_worker is None, timeout=30_000)


def test_similarity_click_draws_and_updates_the_map(viewer, qtbot, notes):
    path = DATA / "2d.zarr"
    image = viewer.add_image(np.zeros((600, 900), np.uint8), name="image", scale=(0.5, 2.0),
                             translate=(10.0, -3.0))
    widget = EmbeddingPCAWidget(viewer)
    assert widget.hint.value.startswith("Shift+click")
    _click(viewer, widget, qtbot, (20.0, 50.0))  # no embeddings chosen yet: ignored
    widget.path.value = path
    _click(viewer, widget, qtbot, (20.0, 50.0), modifiers=())  # a plain click: ignored
    assert [lyr.name for lyr in viewer.layers] == ["image"]

    world = lambda y, x: np.asarray(image.translate) + np.asarray(image.scale) * (y + 0.3, x - 0.4)  # noqa: E731
    _click(viewer, widget, qtbot, world(250, 400))
    layer = viewer.layers["2d similarity"]
    sim = embedview.similarity(path, point=(250, 400), pixel_size=None)
    np.testing.assert_array_equal(layer.data, sim.components[..., 0])
    assert not layer.rgb and layer.colormap.name == "inferno"
    np.testing.assert_allclose(layer.contrast_limits, [np.nanpercentile(layer.data, 1), 1.0])
    np.testing.assert_allclose(layer.scale, np.multiply(image.scale, sim.scale))
    np.testing.assert_allclose(layer.translate, image.translate + image.scale * np.asarray(sim.translate))
    assert (layer.opacity, layer.blending) == (0.5, "translucent")
    # the cursor at the click reads 1.0: the query cell lies under it
    cell = np.floor(layer.world_to_data(world(250, 400)) + 0.5).astype(int)
    assert layer.data[tuple(cell)] == 1.0
    assert layer.metadata["embedview"]["options"]["point"] == [250, 400]

    _click(viewer, widget, qtbot, world(20, 30))  # a second click updates the same layer
    assert [lyr.name for lyr in viewer.layers] == ["image", "2d similarity"]
    assert viewer.layers["2d similarity"] is layer
    np.testing.assert_array_equal(layer.data, embedview.similarity(path, point=(20, 30), pixel_size=None).components[..., 0])
    np.testing.assert_allclose(layer.contrast_limits, [np.nanpercentile(layer.data, 1), 1.0])
    assert not notes

    _click(viewer, widget, qtbot, world(700, 30))  # outside the image: a notification, no layer
    [(severity, message)] = notes
    assert severity == "warning" and "outside the image" in message
    assert [lyr.name for lyr in viewer.layers] == ["image", "2d similarity"]


def test_similarity_click_on_a_stack_and_on_a_missing_tile(viewer, qtbot, notes):
    path = DATA / "3d.zarr"
    viewer.add_image(np.zeros((5, 300, 400), np.uint8), name="volume", scale=(2.0, 1.0, 1.0))
    widget = EmbeddingPCAWidget(viewer)
    widget.path.value = path
    viewer.dims.set_current_step(0, 3)
    _click(viewer, widget, qtbot, (0.0, 120.2, 80.6))  # the slice comes from the viewer's dims
    layer = viewer.layers["3d similarity"]
    sim = embedview.similarity(path, point=(3, 120, 81), pixel_size=None)
    assert layer.data.shape == (1, *sim.components.shape[:2])
    np.testing.assert_array_equal(layer.data[0], sim.components[..., 0])
    np.testing.assert_allclose(layer.scale, (2.0, *sim.scale))
    np.testing.assert_allclose(layer.translate, (6.0, *sim.translate))  # on slice 3 only
    assert not notes

    masked = DATA / "tiled2d_masked.zarr"
    with pytest.raises(embedview.EmbedviewError, match="no embeddings cover"):
        embedview.similarity(masked, point=(990, 10))
    viewer.layers.clear()
    widget.path.value = masked
    _click(viewer, widget, qtbot, (990.0, 10.0))  # no image layer: world = image pixels
    [(severity, message)] = notes
    assert severity == "warning" and "no embeddings cover" in message
    assert len(viewer.layers) == 0


def test_similarity_click_from_the_canvas_until_the_widget_goes(viewer, qtbot):
    """A real Shift-press on the vispy canvas reaches the widget; a deleted widget stops listening."""
    from vispy.util.keys import SHIFT

    viewer.add_image(np.zeros((600, 900), np.uint8), name="image")
    widget = EmbeddingPCAWidget(viewer)
    widget.path.value = DATA / "2d.zarr"
    viewer.reset_view()  # the canvas centre shows the image centre
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    centre = (canvas.size[0] / 2, canvas.size[1] / 2)
    canvas.events.mouse_press(pos=centre, modifiers=(SHIFT,), button=1)
    qtbot.waitUntil(lambda: widget._similarity_worker is None, timeout=30_000)
    canvas.events.mouse_release(pos=centre, modifiers=(SHIFT,), button=1)
    pixel = np.floor(np.asarray(viewer.cursor.position) + 0.5).astype(int).tolist()
    assert viewer.layers["2d similarity"].metadata["embedview"]["options"]["point"] == pixel

    assert widget._on_click in viewer.mouse_drag_callbacks
    with qtbot.waitSignal(widget.native.destroyed):
        widget.native.deleteLater()
    assert widget._on_click not in viewer.mouse_drag_callbacks


@pytest.mark.parametrize("case, pixel_size", [("tiled3d", None), ("2d", 1)])
def test_reader_opens_embedview_ome_zarr_pictures_in_place(viewer, tmp_path, case, pixel_size):
    out = tmp_path / f"{case}_pca.zarr"
    vis = embedview.visualize(DATA / f"{case}.zarr", pixel_size=pixel_size)
    embedview.visualize(DATA / f"{case}.zarr", pixel_size=pixel_size, output=out)
    assert get_reader(str(out)) is not None
    [layer] = viewer.open(str(out), plugin="embedview")
    assert layer.rgb and layer.multiscale == (pixel_size == 1)
    level0 = layer.data[0] if layer.multiscale else layer.data
    np.testing.assert_array_equal(np.asarray(level0), vis.rgb)
    np.testing.assert_allclose(layer.scale, vis.scale)
    np.testing.assert_allclose(layer.translate, vis.translate)
