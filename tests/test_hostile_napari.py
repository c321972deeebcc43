"""Hostile folders handed to napari's reader hook: declined in bounded memory, never raising.

napari asks every reader whose pattern matches (``*.zarr``) about every folder a user opens, so
``get_reader`` must answer for any folder without reading it whole. Its module imports neither
napari nor Qt: these cases run without the napari extra.
"""

import json
import os
import time
import tracemalloc

import pytest

from embedview.napari._reader import get_reader

#: micro_sam's root attributes: with them and a ``features`` member a folder is claimed.
ATTRS = {"original_size": [600, 900], "input_size": [683, 1024]}


def _container(path, meta_name="zarr.json"):
    """A folder that would be claimed as micro_sam's if its metadata file were fine."""
    (path / "features").mkdir(parents=True)
    (path / "features" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "array"}))
    if meta_name == ".zattrs":
        (path / ".zgroup").write_text('{"zarr_format": 2}')
    return path / meta_name


def _declined_cheaply(path, bound=8 * 2**20):
    """get_reader returns None within a second, its Python allocations peaking below ``bound``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        answer = get_reader(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer is None
    assert peak < bound, f"{peak} bytes allocated to decide"
    assert time.perf_counter() - start < 1


def test_good_container_is_claimed(tmp_path):
    meta = _container(tmp_path / "ok.zarr")
    meta.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": ATTRS}))
    assert callable(get_reader(str(tmp_path / "ok.zarr")))


@pytest.mark.parametrize("meta_name", ["zarr.json", ".zattrs"])
def test_2_gib_metadata_is_declined_unread(tmp_path, meta_name):
    """A sparse 2 GiB metadata file (no disk used) starting like micro_sam's: not read."""
    meta = _container(tmp_path / "huge.zarr", meta_name)
    head = {"zarr_format": 3, "node_type": "group", "attributes": ATTRS} if meta_name == "zarr.json" else ATTRS
    meta.write_text(json.dumps(head)[:-1] + ', "pad": "')
    os.truncate(meta, 2 * 2**30)
    _declined_cheaply(tmp_path / "huge.zarr")


def test_metadata_at_the_limit_is_read_and_one_byte_more_declined(tmp_path):
    from embedview._inputs.container import MAX_METADATA_BYTES

    meta = _container(tmp_path / "big.zarr")
    text = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {**ATTRS, "pad": ""}})
    meta.write_text(text[:-4] + " " * (MAX_METADATA_BYTES - len(text)) + '""}}')  # JSON whitespace
    assert meta.stat().st_size == MAX_METADATA_BYTES
    assert callable(get_reader(str(tmp_path / "big.zarr")))
    with open(meta, "ab") as f:
        f.write(b" ")
    _declined_cheaply(tmp_path / "big.zarr", bound=3 * MAX_METADATA_BYTES)


@pytest.mark.parametrize("meta_name", ["zarr.json", ".zattrs"])
def test_deeply_nested_metadata_is_declined(tmp_path, meta_name):
    """100 000 levels of nesting exhaust json's recursion: declined, no RecursionError."""
    meta = _container(tmp_path / "deep.zarr", meta_name)
    deep = "[" * 100_000 + "]" * 100_000
    if meta_name == "zarr.json":
        meta.write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"original_size": '
                        + deep + ', "input_size": [1, 1]}}')
    else:
        meta.write_text('{"original_size": ' + deep + ', "input_size": [1, 1]}')
    _declined_cheaply(tmp_path / "deep.zarr")


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"", b"[1, 2, 3]", b'{"node_type": "array"}',
                                     b'{"node_type": "group", "attributes": [1]}', b"NaN" * 10])
def test_metadata_that_is_not_a_group_is_declined(tmp_path, content):
    meta = _container(tmp_path / "odd.zarr")
    meta.write_bytes(content)
    _declined_cheaply(tmp_path / "odd.zarr")


def test_metadata_that_is_not_a_regular_file_is_declined(tmp_path):
    fifo = _container(tmp_path / "fifo.zarr")
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    _declined_cheaply(tmp_path / "fifo.zarr")
    zero = _container(tmp_path / "zero.zarr")
    zero.symlink_to("/dev/zero")  # endless bytes
    _declined_cheaply(tmp_path / "zero.zarr")
    folder = _container(tmp_path / "folder.zarr")
    folder.mkdir()
    _declined_cheaply(tmp_path / "folder.zarr")


@pytest.mark.parametrize("path", [b"/tmp/x.zarr", 3, None, ["a.zarr", "b.zarr"], "no\0such.zarr", "x" * 5000])
def test_odd_paths_are_declined(path):
    assert get_reader(path) is None
