"""Reading images and writing visualizations: formats, metadata round trips, atomicity."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

import embedview
from embedview import EmbedviewError
from embedview._common.output_paths import atomic_path, check_output
from embedview._outputs.io import read_image, write_output
from embedview._workflows.demo import DemoEncoder, make_demo_scene, write_demo_embeddings

from _readback import read_ome_zarr

SMALL = DemoEncoder(n_channels=16, grid=16)


@pytest.fixture(scope="module")
def vis2d():
    image, labels = make_demo_scene((90, 130))
    features = SMALL.encode(image, labels)[None]
    return embedview.visualize(features, original_size=(90, 130))


@pytest.fixture(scope="module")
def vis3d(tmp_path_factory):
    image, labels = make_demo_scene((3, 60, 80))
    path = write_demo_embeddings(tmp_path_factory.mktemp("io") / "s.zarr", image, labels, encoder=SMALL)
    return embedview.visualize(path, fit="per_slice")


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# reading


@pytest.mark.parametrize("ext", [".npy", ".tif", ".png", ".jpg", ".bmp"])
def test_read_image_formats(tmp_path, ext):
    image = make_demo_scene((40, 50))[0]
    path = tmp_path / f"im{ext}"
    if ext == ".npy":
        np.save(path, image)
    elif ext == ".tif":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path)
    read = read_image(path)
    assert read.shape == (40, 50)
    if ext != ".jpg":
        np.testing.assert_array_equal(read, image)


def test_read_image_rgb_palette_and_stack(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert read_image(tmp_path / "rgb.png").shape == (20, 30, 3)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (20, 30, 3)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((4, 20, 30), np.uint16), photometric="minisblack")
    assert read_image(tmp_path / "stack.tif").shape == (4, 20, 30)


@pytest.mark.parametrize("name, content, match", [
    ("im.xyz", b"", "unknown extension"),
    ("missing.png", None, "does not exist"),
    ("broken.png", b"not a png", "could not read"),
    ("obj.npy", "pickle", "could not read"),
])
def test_read_image_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if content == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(EmbedviewError, match=match):
        read_image(path)


# ---------------------------------------------------------------------------------------------
# writing


def test_png_round_trip(tmp_path, vis2d):
    path = write_output(vis2d, tmp_path / "pca.png", metadata={"source": "x"})
    np.testing.assert_array_equal(read_image(path), vis2d.rgb)
    with Image.open(path) as img:
        meta = json.loads(img.text["embedview"])
    assert meta["scale"] == list(vis2d.scale) and meta["translate"] == list(vis2d.translate)
    assert meta["image_shape"] == [90, 130] and meta["source"] == "x" and meta["layout"] == "single"
    assert len(meta["explained_variance_ratio"]) == 3
    assert _names(tmp_path) == ["pca.png"]


@pytest.mark.parametrize("which", ["vis2d", "vis3d"])
def test_tiff_round_trip(tmp_path, which, request):
    vis = request.getfixturevalue(which)
    path = write_output(vis, tmp_path / "pca.tif")
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        meta = tif.shaped_metadata[0]
        assert len(tif.pages) == (1 if vis.rgb.ndim == 3 else vis.rgb.shape[0])
    np.testing.assert_array_equal(data, vis.rgb)
    assert meta["scale"] == list(vis.scale) and meta["translate"] == list(vis.translate)
    assert meta["axes"][-3:] == ["y", "x", "c"]


def test_per_slice_metadata_lists_each_slice(tmp_path, vis3d):
    path = write_output(vis3d, tmp_path / "pca.tif")
    with tifffile.TiffFile(path) as tif:
        ratios = tif.shaped_metadata[0]["explained_variance_ratio"]
    assert len(ratios) == 3 and all(len(r) == 3 for r in ratios)


@pytest.mark.parametrize("which", ["vis2d", "vis3d"])
def test_zarr_round_trip(tmp_path, which, request):
    vis = request.getfixturevalue(which)
    path = write_output(vis, tmp_path / "pca.zarr")
    rgb, components, attrs = read_ome_zarr(path)
    np.testing.assert_array_equal(rgb, vis.rgb)
    np.testing.assert_array_equal(components, vis.components)
    assert components.dtype == np.float32
    assert "multiscales" in attrs
    attrs = attrs["embedview"]
    assert attrs["scale"] == list(vis.scale) and attrs["translate"] == list(vis.translate)
    assert attrs["layout"] == vis.layout and attrs["image_shape"] == list(vis.image_shape)
    assert "explained_variance_ratio" in attrs
    assert _names(tmp_path) == ["pca.zarr"]


def test_zarr_output_replaces_an_existing_one(tmp_path, vis2d, vis3d):
    write_output(vis3d, tmp_path / "pca.zarr")
    write_output(vis2d, tmp_path / "pca.zarr")
    assert read_ome_zarr(tmp_path / "pca.zarr")[0].shape == vis2d.rgb.shape
    assert _names(tmp_path) == ["pca.zarr"]


def test_npy_and_npz(tmp_path, vis3d):
    np.testing.assert_array_equal(np.load(write_output(vis3d, tmp_path / "a.npy")), vis3d.rgb)
    with np.load(write_output(vis3d, tmp_path / "a.npz")) as data:
        np.testing.assert_array_equal(data["rgb"], vis3d.rgb)
        assert tuple(data["scale"]) == vis3d.scale and tuple(data["translate"]) == vis3d.translate


def test_png_refuses_a_stack(tmp_path, vis3d):
    with pytest.raises(EmbedviewError, match=r"\.tif.*\.zarr"):
        write_output(vis3d, tmp_path / "pca.png")
    assert _names(tmp_path) == []


@pytest.mark.parametrize("target, match", [
    ("missing/out.png", "does not exist"),
    ("afile/out.png", "is a file"),
    ("out.jpg", "unknown output extension"),
    ("adir.png", "existing folder"),
])
def test_check_output_errors(tmp_path, target, match):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.png").mkdir()
    with pytest.raises(EmbedviewError, match=match):
        check_output(tmp_path / target)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "out.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt", overwrite=True) as tmp:  # the user's file: only with overwrite
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["out.txt"] and (tmp_path / "out.txt").read_text() == "old"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.zarr", directory=True) as tmp:
            (tmp / "part").write_text("half")
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["out.txt"]


def test_atomic_path_turns_os_errors_into_one_sentence(tmp_path):
    with pytest.raises(EmbedviewError, match="cannot write"):
        with atomic_path(tmp_path / "out.txt"):
            raise PermissionError(13, "Permission denied")
    assert _names(tmp_path) == []


def test_written_file_has_normal_permissions(tmp_path, vis2d):
    path = write_output(vis2d, tmp_path / "pca.png")
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


# ---------------------------------------------------------------------------------------------
# embedview's ownership marker


@pytest.mark.parametrize("ext", [".png", ".tif", ".npy", ".npz", ".zarr"])
def test_every_picture_carries_the_marker(tmp_path, vis2d, vis3d, ext):
    from embedview._common.ownership import owner_kind

    out = write_output(vis2d, tmp_path / f"p{ext}")
    assert owner_kind(out) == "picture"
    stack = write_output(vis3d, tmp_path / f"s{'.gif' if ext == '.png' else ext}")  # a GIF: a stack only
    assert owner_kind(stack) == "picture"
    if ext == ".npy":  # the trailer after the data changes nothing numpy reads
        np.testing.assert_array_equal(np.load(out), vis2d.rgb)
        np.testing.assert_array_equal(read_image(out), vis2d.rgb)
        np.testing.assert_array_equal(np.load(out, mmap_mode="r"), vis2d.rgb)


def test_a_basis_is_marked_by_its_format(tmp_path):
    from embedview._common.ownership import owner_kind

    model = embedview.PCA().fit(np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32),
                                original_size=(64, 64))
    path = model.save(tmp_path / "b.npz")
    assert owner_kind(path) == "basis"  # its metadata's format: the file keeps only its documented members
    with np.load(path) as data:
        meta = json.loads(data["metadata"].tobytes())
        meta["format"] = "something else"
        np.savez(tmp_path / "other.npz", **{k: data[k] for k in data.files if k != "metadata"},
                 metadata=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    assert owner_kind(tmp_path / "other.npz") == "picture"  # an embedview file, but not a basis
    embedview.PCA.load(path)


def test_forged_or_damaged_markers_are_nobodys(tmp_path):
    from embedview._common import ownership

    trailer = ownership.npy_trailer("picture")
    np.save(tmp_path / "a.npy", np.zeros(4))
    with open(tmp_path / "a.npy", "ab") as f:
        f.write(b"x" + trailer)  # not where the data ends
    (tmp_path / "b.npy").write_bytes(trailer)  # no array at all
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff\xff\xff\xfftEXt")  # a chunk claiming 4 GiB
    (tmp_path / "d.tif").write_bytes(b"II*\x00\xff\xff\xff\x7f")  # an IFD past the end
    (tmp_path / "e.npz").write_bytes(b"PK\x05\x06" + b"\x00" * 8 + b"\xff\xff\xff\x7f" + b"\x00" * 6)
    (tmp_path / "f.gif").write_bytes(b"GIF89a" + b"\x00" * 7 + b"\x21\xfe\xff")  # a comment cut short
    (tmp_path / "g.mp4").write_bytes(b"\x00\x00\x00\x08ftyp" + b"\xff\xff\xff\xffmoov")
    for name in ("a.npy", "b.npy", "c.png", "d.tif", "e.npz", "f.gif", "g.mp4"):
        assert ownership.owner_kind(tmp_path / name) is None, name
    (tmp_path / "h.zarr").mkdir()
    (tmp_path / "h.zarr" / ".zattrs").write_text(json.dumps({"embedview": {"embedview_kind": "picture"}}))
    assert ownership.owner_kind(tmp_path / "h.zarr") is None  # no version: not the marker


def test_one_writer_contract():
    """Every sink the pipeline draws into follows Sink; every file output follows Writer."""
    from pathlib import Path

    from embedview._outputs.movie import MovieOutput, MovieSink
    from embedview._outputs.sinks import MemorySink, Sink, Writer, ZarrOutput, ZarrSink

    methods = [name for name in vars(Sink) if not name.startswith("_")]
    assert methods == ["place", "colour", "finish"]
    for cls in (MemorySink, ZarrSink, MovieSink):
        assert all(callable(getattr(cls, name, None)) for name in methods), cls
    for out in (ZarrOutput("p.zarr"), MovieOutput(Path("m.gif"))):
        assert isinstance(out, Writer) and out.overwrite is False
    with pytest.raises(EmbedviewError, match="ending in .zarr"):
        ZarrOutput("p.png")
