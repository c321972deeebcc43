"""OME-Zarr output: levels, chunking, scale/translate metadata and values equal to the in-memory render."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import embedview
from embedview._outputs import sinks as _sinks
from embedview._outputs.omezarr import level_shapes, level_transforms

from _readback import read_ome_zarr

DATA = Path(__file__).parent / "data" / "micro_sam"


@pytest.mark.parametrize("case, pixel_size", [("tiled2d.zarr", None), ("tiled2d.zarr", 1),
                                              ("tiled3d.zarr", 3), ("2d.zarr", None),
                                              ("tiled2d_masked.zarr", 2)])
@pytest.mark.parametrize("on_disk", [False, True])
def test_out_of_core_output_equals_the_in_memory_render(tmp_path, monkeypatch, case, pixel_size, on_disk):
    # Small chunks: many windows, pieces straddling window borders.
    monkeypatch.setattr(_sinks, "CHUNK", 128)
    monkeypatch.setattr(_sinks, "MEMORY_STORE_BYTES", -1 if on_disk else 2**40)
    vis = embedview.visualize(DATA / case, pixel_size=pixel_size)
    out = tmp_path / "pca.zarr"
    written, = embedview.PCA().fit_transform(DATA / case, pixel_size=pixel_size, output=out, metadata={"note": "x"})
    assert written.rgb is None and written.path == out
    rgb, components, attrs = read_ome_zarr(out)
    np.testing.assert_array_equal(rgb, vis.rgb)
    np.testing.assert_array_equal(components, vis.components)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pca.zarr"]
    assert not (out / "_projected").exists()

    root = zarr.open_group(str(out), mode="r")
    assert root.metadata.zarr_format == 2
    (multiscale,) = attrs["multiscales"]
    axes = [a["name"] for a in multiscale["axes"]]
    assert axes == ["c"] + (["z"] if vis.rgb.ndim == 4 else []) + ["y", "x"]
    shapes = level_shapes(vis.rgb.shape[-3:-1])
    assert len(multiscale["datasets"]) == len(shapes)
    for level, (dataset, shape) in enumerate(zip(multiscale["datasets"], shapes)):
        array = root[dataset["path"]]
        assert array.shape == (3,) + vis.rgb.shape[:-3] + shape and array.dtype == np.uint8
        assert array.chunks[-2:] == tuple(min(128, n) for n in shape)
        scale, translate = (t[k] for t, k in zip(dataset["coordinateTransformations"], ("scale", "translation")))
        f = 2 ** level
        # Level pixel i averages level-0 pixels [i·f, (i+1)·f): its centre in image pixels.
        assert scale[-2:] == [s * f for s in vis.scale[-2:]]
        assert translate[-2:] == pytest.approx([t + s * (f - 1) / 2 for s, t in zip(vis.scale[-2:], vis.translate[-2:])])
    assert attrs["embedview"]["scale"] == list(vis.scale) and attrs["embedview"]["note"] == "x"
    assert [c["color"] for c in attrs["omero"]["channels"]] == ["FF0000", "00FF00", "0000FF"]
    # Level 1 is the 2×2 mean of level 0.
    if len(shapes) > 1:
        level1 = np.moveaxis(root["1"][...], 0, -1).astype(float)
        full = rgb.astype(float)[..., : 2 * (rgb.shape[-3] // 2), : 2 * (rgb.shape[-2] // 2), :]
        mean = full.reshape(full.shape[:-3] + (full.shape[-3] // 2, 2, full.shape[-2] // 2, 2, 3)).mean(axis=(-4, -2))
        np.testing.assert_array_less(np.abs(level1[..., : mean.shape[-3], : mean.shape[-2], :] - mean), 0.51)


def test_level_geometry():
    assert level_shapes((100, 100)) == [(100, 100)]
    assert level_shapes((1025, 300), smallest=256) == [(1025, 300), (513, 150), (257, 75), (129, 38)]
    assert level_transforms((1.0, 2.0, 2.0), (0.0, 0.5, 0.5), 2) == ([1.0, 8.0, 8.0], [0.0, 3.5, 3.5])


def test_a_failed_run_leaves_no_output(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(_sinks.ZarrSink, "_write_window", boom)
    with pytest.raises(RuntimeError):
        embedview.visualize(DATA / "2d.zarr", output=tmp_path / "pca.zarr")
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_zarr(tmp_path):
    with pytest.raises(embedview.EmbedviewError, match="OME-Zarr"):
        embedview.visualize(DATA / "2d.zarr", output=tmp_path / "pca.png")


def test_a_masked_tiled_file_with_a_huge_claimed_image_writes_only_what_it_draws(tmp_path):
    """Two tiles of a masked file claiming a 2²⁰-pixel side: the OME-Zarr output (about 10⁵ pixels
    a side) writes and downsamples only the windows the tiles meet; the rest reads as fill (black,
    NaN). Composing every empty window took minutes."""
    path = tmp_path / "huge.zarr"
    shutil.copytree(DATA / "tiled2d_masked.zarr", path)
    zarr.open_group(str(path / "features"), mode="r+").attrs["shape"] = [2**20, 2**20]
    out = tmp_path / "out.zarr"
    done = subprocess.run([sys.executable, "-m", "embedview", "render", str(path), "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    root = zarr.open_group(str(out), mode="r")
    level0 = root["0"]
    assert level0.shape[-2:] == (104858, 104858)
    corner = level0[:, :100, :110]
    assert corner.any()  # the present tiles are drawn
    assert not level0[:, 50000:50010, 50000:50010].any()  # nothing drawn far away: black fill
    written = sum(len(files) for _, _, files in os.walk(out / "0"))
    assert written <= 4  # the chunks the two tiles meet, not 103² of them
