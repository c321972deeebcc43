"""The direct chunk reader agrees with zarr, and steps aside where it cannot."""

from pathlib import Path

import numpy as np
import pytest
import zarr

from embedview._inputs.chunks import direct_reader

DATA = Path(__file__).parent / "data" / "micro_sam"


@pytest.mark.parametrize("case, tile, index", [
    ("2d", None, (0,)), ("2d_zarr2", None, (0,)), ("3d", None, (3, 0)),
    ("tiled2d_zarr2", "2", (0,)), ("tiled3d", "3", (1, 0)),
])
def test_matches_zarr(case, tile, index):
    array = zarr.open_group(str(DATA / f"{case}.zarr"), mode="r")["features"]
    array = array if tile is None else array[tile]
    read = direct_reader(array, len(index))
    assert read is not None
    np.testing.assert_array_equal(read(index), array[index])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_missing_chunk_is_an_error_not_the_fill_value(tmp_path, zarr_format):
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(3, 1, 4, 5, 5), chunks=(1, 1, 4, 5, 5),
                              dtype="f4", fill_value=2.5, zarr_format=zarr_format)
    array[0] = 1.0
    read = direct_reader(array, 2)
    assert (read((0, 0)) == 1).all()
    with pytest.raises(ValueError, match="missing"):
        read((2, 0))


@pytest.mark.parametrize("compressor", [None, "zstd", "gzip", "blosc"])
def test_refuses_what_is_not_a_plausible_chunk(tmp_path, compressor):
    import os

    import numcodecs

    codec = {None: None, "zstd": numcodecs.Zstd(), "gzip": numcodecs.GZip(), "blosc": numcodecs.Blosc()}[compressor]
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(2, 1, 4, 5, 5), chunks=(1, 1, 4, 5, 5),
                              dtype="f4", zarr_format=2, compressors=codec)
    array[:] = 1.0
    read = direct_reader(array, 2)
    chunk = tmp_path / "a.zarr" / "1.0.0.0.0"
    chunk.unlink()
    os.mkfifo(chunk)  # opened without blocking, refused
    with pytest.raises(ValueError, match="not a regular file"):
        read((1, 0))
    chunk.unlink()
    chunk.write_bytes(b"\0" * 200_000)  # far more than 400 bytes could ever encode to
    with pytest.raises(ValueError, match="more than any encoding"):
        read((1, 0))
    if compressor is not None:  # a small chunk that decodes to far more than it should hold
        chunk.write_bytes(codec.encode(np.zeros(10**7, np.uint8)))
        with pytest.raises(ValueError):
            read((1, 0))


def test_falls_back_where_chunks_are_not_pieces(tmp_path):
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(2, 1, 4, 8, 8), chunks=(1, 1, 4, 4, 4), dtype="f4")
    assert direct_reader(array, 2) is None
    sharded = zarr.create_array(str(tmp_path / "s.zarr"), shape=(2, 1, 4, 8, 8), chunks=(1, 1, 4, 8, 8),
                                shards=(2, 1, 4, 8, 8), dtype="f4")
    assert direct_reader(sharded, 2) is None
    wide = zarr.create_array(str(tmp_path / "d.zarr"), shape=(1, 4, 8, 8), chunks=(1, 4, 8, 8), dtype="f8")
    assert direct_reader(wide, 1) is None


def test_damaged_chunk_raises(tmp_path):
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(1, 4, 8, 8), chunks=(1, 4, 8, 8), dtype="f4")
    array[:] = np.random.default_rng(0).normal(size=(1, 4, 8, 8))
    chunk = tmp_path / "a.zarr" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(Exception):
        direct_reader(array, 1)((0,))


def test_zstd_frame_that_states_no_size_cannot_grow_past_the_chunk(tmp_path):
    """RLE blocks of 128 KiB, 4 bytes each, in a frame without a content size: 160 bytes → 5 MiB."""
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(2, 1, 4, 5, 5), chunks=(1, 1, 4, 5, 5), dtype="f4")
    array[:] = 1.0
    read = direct_reader(array, 2)
    blocks = b"".join(((131072 << 3) | (1 << 1) | (i == 39)).to_bytes(3, "little") + b"\x07" for i in range(40))
    (tmp_path / "a.zarr" / "c" / "1" / "0" / "0" / "0" / "0").write_bytes(b"\x28\xb5\x2f\xfd\x00\x38" + blocks)
    with pytest.raises(Exception, match="too small"):
        read((1, 0))
    assert (read((0, 0)) == 1).all()
