"""Movies of stacks (embedview._outputs.movie, embedview._workflows.movie): one frame per slice in
one basis, frame 0 equal to the slice-0 picture, readable by Pillow and imageio; bad input is one
sentence and leaves nothing behind."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

import embedview
from _cli import run_fails, run_ok

from _fixtures import DATA

imageio = pytest.importorskip("imageio.v2", reason="the movie extra (imageio) is not installed")
pytest.importorskip("imageio_ffmpeg", reason="the movie extra (imageio-ffmpeg) is not installed")

STACK, TILED_STACK, SINGLE = DATA / "3d.zarr", DATA / "tiled3d.zarr", DATA / "2d.zarr"
#: Mean absolute error (uint8 levels) allowed for H.264 (yuv420p) and for a GIF's 256-colour palettes
#: (these pictures hold a few thousand colours: measured 3.3 to 4.6 levels).
MP4_ERROR, GIF_ERROR = 6.0, 6.0


def mp4_frames(path) -> list:
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return [np.asarray(frame) for frame in reader]


def gif_frames(path) -> list:
    """Frames as Pillow reads them, checked against imageio's reading."""
    with Image.open(path) as image:
        frames = []
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.asarray(image.convert("RGB")))
    read = [np.asarray(f)[..., :3] for f in imageio.mimread(str(path))]
    assert len(read) == len(frames) and all(np.array_equal(a, b) for a, b in zip(read, frames))
    return frames


def error(frame, picture) -> float:
    value = float(np.abs(frame.astype(float) - picture.astype(float)).mean())
    print(f"mean abs error {value:.2f}")  # shown with -s: the measured codec error
    return value


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_micro_sam_stack(tmp_path, capsys, ext):
    out = tmp_path / f"movie{ext}"
    err = run_ok(capsys, "render", STACK, "-o", out, "--fps", "4").err
    assert "5 frames at 4 fps" in err
    frames = mp4_frames(out) if ext == ".mp4" else gif_frames(out)
    picture = embedview.visualize(str(STACK), pixel_size=1).rgb  # 300 × 400: drawn at its own size
    assert len(frames) == 5 and frames[0].shape == picture.shape[1:]
    for frame, slice_ in zip(frames, picture):  # one basis: every frame is its slice of the joint picture
        assert error(frame, slice_) < (MP4_ERROR if ext == ".mp4" else GIF_ERROR)
    if ext == ".gif":
        with Image.open(out) as image:
            assert image.info["duration"] == 250 and image.info["loop"] == 0


@pytest.mark.parametrize("on_disk", [False, True])
def test_tiled_stack_with_the_python_entry(tmp_path, monkeypatch, on_disk):
    """The projected pieces wait in memory, or (many of them) in a scratch zarr that goes away."""
    import tempfile

    from embedview._outputs import sinks

    monkeypatch.setattr(sinks, "MEMORY_STORE_BYTES", -1 if on_disk else 2**40)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    os.mkdir(tmp_path / "scratch")
    out = embedview.movie(str(TILED_STACK), tmp_path / "tiled.gif", pixel_size=2)
    assert os.listdir(tmp_path / "scratch") == []
    frames = gif_frames(out)
    picture = embedview.visualize(str(TILED_STACK), pixel_size=2).rgb
    assert len(frames) == 2 and frames[0].shape == picture.shape[1:] == (300, 350, 3)
    assert error(frames[0], picture[0]) < GIF_ERROR and error(frames[1], picture[1]) < GIF_ERROR


def test_vit_tokens_with_a_time_axis(tmp_path, capsys):
    tokens = np.random.default_rng(0).normal(size=(4, 1 + 16 * 20, 32)).astype(np.float32)
    tokens[:, 1:, 0] += np.linspace(0, 8, 4)[:, None]  # the frames differ: one basis must show it
    np.save(tmp_path / "tokens.npy", tokens)
    geometry = ["--image-size", "224,280", "--patch-size", "14", "--prefix-tokens", "1"]
    run_ok(capsys, "render", tmp_path / "tokens.npy", "-o", tmp_path / "t.mp4", *geometry)
    src = embedview.open_features(tmp_path / "tokens.npy", image_size=(224, 280), patch_size=14, prefix_tokens=1)
    picture = embedview.visualize(src, pixel_size=1).rgb
    frames = mp4_frames(tmp_path / "t.mp4")
    assert len(frames) == 4 and frames[0].shape == (224, 280, 3)
    assert max(error(f, p) for f, p in zip(frames, picture)) < MP4_ERROR


def test_fitted_model_and_odd_sides_padded_black(tmp_path):
    """A large image gets a whole pixel size with a long side of at most 1024; an odd side is
    padded with black (H.264 needs even sides), never resampled."""
    features = np.random.default_rng(1).normal(size=(3, 1, 8, 16, 16)).astype(np.float32)
    src = embedview.open_source(features, original_size=(3000, 2000))
    model = embedview.PCA().fit(src)
    out = embedview.movie(src, tmp_path / "big.mp4", model=model, fps=10)
    picture = model.transform(src, pixel_size=3).rgb  # 1000 × 667
    frames = mp4_frames(out)
    assert len(frames) == 3 and frames[0].shape == (1000, 668, 3)
    assert error(frames[0][:, :667], picture[0]) < MP4_ERROR
    # the padding column is black, but for the chroma it shares with its neighbour (yuv420p: 2 × 2 blocks)
    assert frames[0][:, 667].mean() < 20 < frames[0][:, :667].mean()


def test_image_beside_the_pca(tmp_path, capsys):
    image = (np.arange(5 * 300 * 400) % 251).reshape(5, 300, 400).astype(np.uint16) * 7
    np.save(tmp_path / "image.npy", image)
    run_ok(capsys, "render", STACK, "-o", tmp_path / "m.gif", "--image", tmp_path / "image.npy", "-q")
    frames = gif_frames(tmp_path / "m.gif")
    picture = embedview.visualize(str(STACK), pixel_size=1).rgb
    assert len(frames) == 5 and frames[0].shape == (300, 2 * 400 + 8, 3)
    assert (frames[0][:, 400:408] == 255).all()  # the white gap
    assert error(frames[0][:, 408:], picture[0]) < GIF_ERROR
    grey = frames[0][:, :400, 0].astype(float)
    assert abs(np.corrcoef(grey.ravel(), image[0].ravel())[0, 1]) > 0.99  # the image's slice 0


def test_write_output_writes_an_in_memory_stack(tmp_path):
    vis = embedview.visualize(str(STACK))
    path = embedview.write_output(vis, tmp_path / "cells.gif")
    frames = gif_frames(path)
    assert len(frames) == 5 and error(frames[0], vis.rgb[0]) < GIF_ERROR


def test_replaces_its_own_movie_but_not_other_files(tmp_path, capsys):
    out = tmp_path / "m.gif"
    run_ok(capsys, "render", STACK, "-o", out, "-q")
    run_ok(capsys, "render", STACK, "-o", out, "-q", "--fps", "2")  # a GIF there: embedview's to replace
    (tmp_path / "notes.mp4").write_text("my notes")
    err = run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "notes.mp4")
    assert "did not write" in err and (tmp_path / "notes.mp4").read_text() == "my notes"


# ---------------------------------------------------------------------------------------------
# bad input: one sentence, exit 2, nothing written


def test_a_2d_input_is_not_a_movie(tmp_path, capsys):
    err = run_fails(capsys, tmp_path, "render", SINGLE, "-o", tmp_path / "m.mp4")
    assert "one frame per slice" in err and "2D image" in err
    with pytest.raises(embedview.EmbedviewError, match="one frame per slice"):
        embedview.movie(str(SINGLE), tmp_path / "m.gif")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("shape", [(4, 300, 400), (5, 300, 401)])
def test_an_image_of_another_shape(tmp_path, capsys, shape):
    np.save(tmp_path / "image.npy", np.zeros(shape, np.uint8))
    err = run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "m.gif", "--image", tmp_path / "image.npy")
    assert str(list(shape)) in err and "[5, 300, 400]" in err


def test_mp4_without_imageio_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    err = run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "m.mp4")
    assert 'pip install "embedview[movie]"' in err
    run_ok(capsys, "render", STACK, "-o", tmp_path / "m.gif", "-q")  # a GIF needs only Pillow


@pytest.mark.parametrize("options, words", [
    (["--fps", "0"], "--fps"), (["--fit", "per_slice"], "one basis"), (["--slice", "2"], "every slice"),
    (["--clusters", "3"], "not a movie"), (["--pixel-size", "0.01"], "--pixel-size")])
def test_bad_movie_options(tmp_path, capsys, options, words):
    assert words in run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "m.gif", *options)


def test_fps_needs_a_movie(tmp_path, capsys):
    assert ".mp4 or .gif" in run_fails(capsys, tmp_path, "render", STACK, "-o", tmp_path / "m.tif", "--fps", "3")


def test_a_saved_basis_draws_the_same_movie(tmp_path, capsys):
    run_ok(capsys, "fit", STACK, "-o", tmp_path / "basis.npz", "-q")
    run_ok(capsys, "render", STACK, "-o", tmp_path / "fitted.gif", "-q")
    run_ok(capsys, "render", STACK, "-o", tmp_path / "loaded.gif", "--basis", tmp_path / "basis.npz", "-q")
    fitted, loaded = gif_frames(tmp_path / "fitted.gif"), gif_frames(tmp_path / "loaded.gif")
    assert len(loaded) == 5 and all(np.array_equal(a, b) for a, b in zip(fitted, loaded))


def test_guided_frames_are_the_guided_pictures(tmp_path):
    """The movie draws through the one pipeline: --upsample reaches its frames (API and CLI)."""
    rng = np.random.default_rng(0)
    image = (rng.normal(size=(5, 300, 400)) * 10 + np.where(np.hypot(*np.mgrid[:300, :400] - 150) < 90, 200, 60))
    image = np.clip(image, 0, 255).astype(np.uint8)
    path = embedview.movie(str(STACK), tmp_path / "g.gif", image=image, upsample="guided")
    guided = embedview.visualize(str(STACK), pixel_size=1, upsample=embedview.Upsample("guided", guide=image)).rgb
    nearest = embedview.visualize(str(STACK), pixel_size=1).rgb
    frames = gif_frames(path)
    assert len(frames) == 5
    assert error(frames[0][:, 408:], guided[0]) < GIF_ERROR < error(guided[0], nearest[0]) * 10
    assert error(frames[0][:, 408:], guided[0]) < error(frames[0][:, 408:], nearest[0])
