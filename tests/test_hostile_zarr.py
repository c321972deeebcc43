"""Careless and hostile micro_sam containers: damaged metadata, missing or hostile chunks, sizes
that would exhaust memory. Every case ends with exit 2 and one sentence, leaves the input as it
was and writes nothing. Cases that could blow memory or hang run in one subprocess under an
address-space limit and a timeout, so a regression fails fast instead of freezing the run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embedview
from _cli import run_fails, run_ok
from embedview import EmbedviewError, describe
from embedview.cli import main

from _fixtures import copy_fixture

#: Address-space limit of the subprocess: a small render needs about 0.5 GiB of it.
ADDRESS_LIMIT = 2 * 2**30


# ---------------------------------------------------------------------------------------------
# helpers


def snapshot(root: Path) -> dict:
    """Every entry under ``root``: kind and content (links by target, never followed)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_file() and st.st_size > 2**26:  # the sparse giant: never read
                state[rel] = ("big file", st.st_size, st.st_mtime_ns)
            elif path.is_file():
                state[rel] = ("file", path.read_bytes())
            elif path.is_dir():
                state[rel] = ("dir", None)
            else:
                state[rel] = ("special", st.st_mode)
    return state


def edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def set_attrs(path: Path, **attrs) -> None:
    """Set attributes of the node at ``path`` (zarr v3 zarr.json or v2 .zattrs)."""
    if (path / "zarr.json").exists():
        edit_json(path / "zarr.json", lambda m: m["attributes"].update(attrs))
    else:
        edit_json(path / ".zattrs", lambda m: m.update(attrs))


def drop_attr(path: Path, key: str) -> None:
    edit_json(path / "zarr.json", lambda m: m["attributes"].pop(key))


def array_meta(path: Path, **changes) -> None:
    name = "zarr.json" if (path / "zarr.json").exists() else ".zarray"
    edit_json(path / name, lambda m: m.update(changes))


def make_group(path: Path) -> None:
    """Turn the array at ``path`` into an empty group."""
    for entry in path.iterdir():
        if entry.is_dir():
            import shutil

            shutil.rmtree(entry)
        else:
            entry.unlink()
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))


def split_chunks(tmp_path: Path) -> Path:
    """A single-image file whose features are split in 4 chunks (read by zarr, not directly)."""
    import zarr

    path = tmp_path / "split.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"input_size": [1024, 1024], "original_size": [512, 512]})
    features = root.create_array("features", shape=(1, 16, 64, 64), chunks=(1, 16, 32, 32), dtype="f4")
    features[:] = np.random.default_rng(0).normal(size=(1, 16, 64, 64)).astype(np.float32)
    return path


def check_refused(stderr: str, rc: int, before: dict, path: Path, out: Path) -> None:
    lines = stderr.strip().splitlines()
    assert rc == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("embedview: error: "), stderr
    assert "Traceback" not in stderr
    assert snapshot(path) == before
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


# ---------------------------------------------------------------------------------------------
# damaged metadata and missing chunks, in this process

CHUNK_2D = "features/c/0/0/0/0"

CASES = {
    # root attributes
    "original_size Infinity": ("2d", lambda p: set_attrs(p, original_size=[float("inf"), 900])),
    "original_size NaN": ("2d", lambda p: set_attrs(p, original_size=[float("nan"), 900])),
    "original_size strings": ("2d", lambda p: set_attrs(p, original_size=["600", "900"])),
    "original_size nested": ("2d", lambda p: set_attrs(p, original_size=[[600], [900]])),
    "original_size negative": ("2d", lambda p: set_attrs(p, original_size=[-600, 900])),
    "original_size fraction": ("2d", lambda p: set_attrs(p, original_size=[600.5, 900])),
    "original_size three": ("2d", lambda p: set_attrs(p, original_size=[600, 900, 3])),
    "original_size missing": ("2d", lambda p: drop_attr(p, "original_size")),
    "original_size zarr v2": ("2d_zarr2", lambda p: set_attrs(p, original_size=[float("inf"), 1])),
    # the features array
    "features a group": ("2d", lambda p: make_group(p / "features")),
    "features zarr.json invalid": ("2d", lambda p: (p / "features/zarr.json").write_text("{not json")),
    "features zarr.json empty": ("2d", lambda p: (p / "features/zarr.json").write_text("")),
    "features shape strings": ("2d", lambda p: array_meta(p / "features", shape=["a", 256, 64, 64])),
    "features shape negative": ("2d", lambda p: array_meta(p / "features", shape=[-1, 256, 64, 64])),
    "features shape null": ("2d", lambda p: array_meta(p / "features", shape=None)),
    "features shape 3D": ("2d", lambda p: array_meta(p / "features", shape=[256, 64, 64])),
    "features dtype unknown": ("2d", lambda p: array_meta(p / "features", data_type="float33")),
    "features dtype string": ("2d", lambda p: array_meta(p / "features", data_type="string")),
    "features dtype bool": ("2d", lambda p: array_meta(p / "features", data_type="bool")),
    "features codec unknown": ("2d", lambda p: array_meta(p / "features", codecs=[{"name": "nonexistent"}])),
    "features codecs a number": ("2d", lambda p: array_meta(p / "features", codecs=5)),
    "features node_type": ("2d", lambda p: array_meta(p / "features", node_type="banana")),
    "features chunk grid": ("2d", lambda p: array_meta(p / "features", chunk_grid={"name": "irregular"})),
    "zarr v2 .zarray invalid": ("2d_zarr2", lambda p: (p / "features/.zarray").write_text("[1, 2")),
    "zarr v2 compressor": ("2d_zarr2", lambda p: array_meta(p / "features", compressor={"id": "nope"})),
    "zarr v2 dtype": ("2d_zarr2", lambda p: array_meta(p / "features", dtype="|O")),
    "zarr v2 dtype bogus": ("2d_zarr2", lambda p: array_meta(p / "features", dtype="<q9")),
    "zarr v2 shape": ("2d_zarr2", lambda p: array_meta(p / "features", shape=[-1, 256, 64, 64])),
    "zarr v2 .zattrs invalid": ("2d_zarr2", lambda p: (p / ".zattrs").write_text("{")),
    "root zarr.json invalid": ("2d", lambda p: (p / "zarr.json").write_text("{]")),
    # the features group of a tiled file and its tiles
    "tile_shape strings": ("tiled2d", lambda p: set_attrs(p / "features", tile_shape=["a", "b"])),
    "tile_shape null": ("tiled2d", lambda p: set_attrs(p / "features", tile_shape=None)),
    "tile_shape zero": ("tiled2d", lambda p: set_attrs(p / "features", tile_shape=[0, 512])),
    "halo Infinity": ("tiled2d", lambda p: set_attrs(p / "features", halo=[float("inf"), 64])),
    "halo negative": ("tiled2d", lambda p: set_attrs(p / "features", halo=[-1, 64])),
    "tiled shape a string": ("tiled2d", lambda p: set_attrs(p / "features", shape="900x1100")),
    "tile original_size string": ("tiled2d", lambda p: set_attrs(p / "features/0", original_size="576x576")),
    "tile original_size dict": ("tiled2d", lambda p: set_attrs(p / "features/0", original_size={"h": 1})),
    "tile original_size wrong": ("tiled2d", lambda p: set_attrs(p / "features/0", original_size=[1.5, 576])),
    "tile a group": ("tiled2d", lambda p: make_group(p / "features/0")),
    "tile zarr.json invalid": ("tiled2d", lambda p: (p / "features/2/zarr.json").write_text("nul")),
    "tile zarr v2 .zarray invalid": ("tiled2d_zarr2", lambda p: (p / "features/1/.zarray").write_text("{")),
    # missing chunks: zarr would read its fill value and draw a grey picture
    "missing chunk": ("2d", lambda p: (p / CHUNK_2D).unlink()),
    "missing chunk zarr v2": ("2d_zarr2", lambda p: (p / "features/0.0.0.0").unlink()),
    "missing chunk of a slice": ("3d", lambda p: (p / "features/c/2/0/0/0/0").unlink()),
    "missing chunk of a tile": ("tiled2d", lambda p: (p / "features/3/c/0/0/0/0").unlink()),
    "missing chunk of a tile v2": ("tiled2d_zarr2", lambda p: (p / "features/1/0.0.0.0").unlink()),
    "missing chunk read by zarr": ("split", lambda p: (p / "features/c/0/0/1/0").unlink()),
    # files that are not plain files
    "chunk a broken link": ("2d", lambda p: ((p / CHUNK_2D).unlink(), (p / CHUNK_2D).symlink_to("/nonexistent"))),
    "chunk of 64 GiB (sparse)": ("2d", lambda p: os.truncate(p / CHUNK_2D, 64 * 2**30)),
    "chunk a folder loop": ("2d", lambda p: (p / "features/c/loop").symlink_to(p / "features")),
}


def _damaged(case: str, tmp_path: Path) -> Path:
    fixture, damage = CASES[case]
    path = split_chunks(tmp_path) if fixture == "split" else copy_fixture(fixture, tmp_path)
    damage(path)
    return path


@pytest.mark.parametrize("command", ["render", "info"])
@pytest.mark.parametrize("case", list(CASES))
def test_damaged_file_is_refused_in_one_sentence(case, command, tmp_path, capsys):
    path = _damaged(case, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(path)
    argv = ["info", str(path)] if command == "info" else ["render", str(path), "-o", str(out / "pca.png"), "-q"]
    rc = main(argv)
    err = capsys.readouterr().err
    if command == "info" and rc == 0:  # info may describe what it does not need (never for sizes)
        assert case.startswith(("features codec", "features dtype", "zarr v2 compressor", "zarr v2 dtype",
                                "chunk")), case
        return
    check_refused(err, rc, before, path, out)


@pytest.mark.parametrize("case", ["missing chunk", "missing chunk of a tile", "missing chunk read by zarr"])
def test_missing_chunk_names_the_chunk(case, tmp_path):
    path = _damaged(case, tmp_path)
    with pytest.raises(EmbedviewError, match=r"chunk .* is missing"):
        embedview.visualize(path)


def test_missing_chunk_of_arrays_handed_over_open(tmp_path):
    """An ImageEmbeddings dict or a zarr group (micro_sam hands these over) is checked like a path."""
    import zarr

    path = _damaged("missing chunk read by zarr", tmp_path)
    group = zarr.open_group(str(path), mode="r")
    embeddings = {"features": group["features"], "input_size": [1024, 1024], "original_size": [512, 512]}
    for source in (group, embeddings):
        with pytest.raises(EmbedviewError, match=r"chunk features/c/0/0/1/0 .* is missing"):
            embedview.open_source(source)


def test_missing_tile_of_a_masked_file_is_still_drawn_black(tmp_path):
    vis = embedview.visualize(copy_fixture("tiled2d_masked", tmp_path))
    assert (~vis.valid).any() and vis.valid.any()


def test_missing_tile_folder_of_an_unmasked_file_is_refused(tmp_path, capsys):
    """A whole tile folder gone from an unmasked tiling would draw a black hole: refused, by render and info."""
    import shutil

    path = copy_fixture("tiled2d", tmp_path)
    shutil.rmtree(path / "features" / "4")
    before = snapshot(path)
    for command in (["render", path, "-o", tmp_path / "out.png"], ["info", path]):
        err = run_fails(capsys, tmp_path, *command)
        assert "tile 4 of" in err and "is missing" in err and "recompute" in err, err
    assert snapshot(path) == before


def test_missing_listed_tile_of_a_masked_file_is_refused(tmp_path, capsys):
    """A masked tiling lacking a tile its own tiles_in_mask lists is refused; unlisted ones stay black."""
    import shutil

    path = copy_fixture("tiled2d_masked", tmp_path)
    shutil.rmtree(path / "features" / "1")
    err = run_fails(capsys, tmp_path, "render", path, "-o", tmp_path / "out.png")
    assert "tile 1 of" in err and "tiles_in_mask lists it" in err, err
    set_attrs(path / "features", tiles_in_mask=[0])  # the mask says so: drawn, tile 1 black
    vis = embedview.visualize(path)
    assert (~vis.valid).any() and vis.valid.any()
    out = run_ok(capsys, "info", path).out
    assert "missing tiles:" in out and "outside the mask" in out, out


@pytest.mark.parametrize("value", [[0, 99], ["0"], {"0": [0], "1": "x"}, 3, [True]])
def test_damaged_tiles_in_mask_is_refused(value, tmp_path):
    path = copy_fixture("tiled2d_masked", tmp_path)
    set_attrs(path / "features", tiles_in_mask=value)
    with pytest.raises(EmbedviewError, match="tiles_in_mask"):
        embedview.open_source(path)


def test_a_masked_tiled_stack_lists_its_tiles_per_slice(tmp_path, capsys):
    """micro_sam records a masked tiled stack's tiles per slice ({"z": [ids]}) and writes a tile's
    chunks only for the slices that list it: those are drawn, the others are black; a listed chunk
    that is missing is still refused."""
    path = copy_fixture("tiled3d", tmp_path)
    whole = embedview.visualize(path)
    set_attrs(path / "features", tiles_in_mask={"0": [0, 1], "1": [1, 2, 3]})
    for tile, z in ((2, 0), (3, 0), (0, 1)):  # as micro_sam leaves them: never written
        (path / f"features/{tile}/c/{z}/0/0/0/0").unlink()
    vis = embedview.visualize(path, fit="per_slice")
    assert vis.valid[0].any() and vis.valid[1].any() and not (vis.valid == whole.valid).all()
    inner = embedview.open_source(path).tiling.inner
    for tile, z in ((2, 0), (3, 0), (0, 1)):  # each missing tile's inner block is black
        (y0, y1), (x0, x1) = (tuple(int(v) // int(vis.scale[-1 - a]) for v in r) for a, r in zip((1, 0), inner(tile)))
        assert not vis.valid[z, y0:y1, x0:x1].any()
    run_ok(capsys, "info", path)
    (path / "features/1/c/1/0/0/0/0").unlink()  # slice 1 lists tile 1: its chunk must be there
    with pytest.raises(EmbedviewError, match=r"chunk features/1/c/1/0/0/0/0 .* is missing"):
        embedview.open_source(path)
    set_attrs(path / "features", tiles_in_mask={"0": [0], "7": [1]})
    with pytest.raises(EmbedviewError, match=r"tiles_in_mask for slices \[0, 7\], but its features are 2 slices"):
        embedview.open_source(path)
    set_attrs(path / "features", tiles_in_mask={"0": [0], "1": [9]})
    with pytest.raises(EmbedviewError, match="tiles_in_mask"):  # 9 is not a tile of this 2×2 tiling
        embedview.open_source(path)


@pytest.mark.parametrize("case", ["tiled2d", "tiled2d_zarr2"])
def test_stray_desktop_files_in_a_tiled_file_give_no_warning(case, tmp_path, capsys):
    """.DS_Store, ._* and Thumbs.db inside a container are not zarr nodes; zarr's warning about them is not shown."""
    import warnings

    path = copy_fixture(case, tmp_path)
    for name in (".DS_Store", "features/.DS_Store", "features/._0", "features/Thumbs.db"):
        (path / name).write_bytes(b"\0\1junk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for quiet in ([], ["-q"]):
            run_ok(capsys, "render", *quiet, path, "-o", tmp_path / f"out{len(quiet)}.png")
    assert not [w for w in caught if "not recognized" in str(w.message)], [str(w.message) for w in caught]


def test_info_of_a_file_claiming_a_million_tiles_is_bounded(tmp_path, capsys):
    path = copy_fixture("tiled2d_masked", tmp_path)
    set_attrs(path / "features", shape=[2**20, 2**20])  # 2048 × 2048 tiles of 512: ~4 M, 3 present
    info = describe(path)
    assert info["tiles"]["count"] == 2048 * 2048
    assert info["tiles"]["missing_count"] == info["tiles"]["count"] - info["tiles"]["present"]
    assert len(info["tiles"]["missing"]) == 1000
    # a trillion one-pixel tiles: counted, not listed; the default output is too large to draw
    set_attrs(path / "features", tile_shape=[1, 1], halo=[0, 0])
    for tile in ("0", "1"):
        edit_json(path / "features" / tile / "zarr.json", lambda m: m["attributes"].pop("original_size"))
    assert main(["info", str(path)]) == 0
    assert "larger than embedview draws" in capsys.readouterr().out
    assert describe(path)["tiles"]["missing_count"] == 2**40 - 2


# ---------------------------------------------------------------------------------------------
# memory and hangs: one subprocess under an address-space limit and a timeout

RUNNER = """
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from embedview.cli import main
results = {{}}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except BaseException as e:  # noqa: BLE001 - a regression: reported, not hidden
            rc, err = -1, io.StringIO(f"Traceback: {{type(e).__name__}}: {{e}}")
    results[name] = [rc, err.getvalue()]
    print(json.dumps({{name: results[name]}}), flush=True)
"""


def _hostile(name: str, base: Path) -> tuple[Path, list]:
    """Make the case ``name`` under ``base``; return the input and the command line."""
    out = base / "out"
    out.mkdir(parents=True)
    fixture = "tiled2d" if "tiled" in name else "2d"
    path = copy_fixture(fixture, base)
    png, zarr_out = str(out / "pca.png"), str(out / "pca.zarr")
    if name == "chunk links to /dev/zero":
        (path / CHUNK_2D).unlink()
        (path / CHUNK_2D).symlink_to("/dev/zero")
    elif name == "chunk is a FIFO":
        (path / CHUNK_2D).unlink()
        os.mkfifo(path / CHUNK_2D)
    elif name == "features zarr.json is a FIFO":
        (path / "features/zarr.json").unlink()
        os.mkfifo(path / "features/zarr.json")
    elif name == "root zarr.json links to /dev/zero":
        (path / "zarr.json").unlink()
        (path / "zarr.json").symlink_to("/dev/zero")
    elif name.startswith("original_size 1e9"):
        set_attrs(path, original_size=[10**9, 10**9])
    elif name.startswith("tiled shape 1e9"):
        set_attrs(path / "features", shape=[10**9, 10**9])
    elif name == "features of 1e9 channels":
        edit_json(path / "features/zarr.json", lambda m: (m.update(shape=[1, 10**9, 64, 64]),
                                                          m["chunk_grid"]["configuration"].update(
                                                              chunk_shape=[1, 10**9, 64, 64])))
    elif name == "stack of 1e9 slices":
        edit_json(path / "features/zarr.json", lambda m: (m.update(shape=[10**9, 1, 256, 64, 64]),
                                                          m["chunk_grid"]["configuration"].update(
                                                              chunk_shape=[1, 1, 256, 64, 64])))
    if name.endswith("info"):
        argv = ["info", str(path)]
    elif name.startswith("similarity"):
        argv = ["similarity", str(path), "--point", "300,400", "-o", png, "-q", "--pixel-size", name.split()[-1]]
    elif name.startswith("pixel size"):
        argv = ["render", str(path), "-o", png, "-q", "--pixel-size", name.split()[-1]]
    else:
        argv = ["render", str(path), "-o", zarr_out if name.endswith(".zarr") else png, "-q"]
    return path, argv


# The FIFOs last: where one hangs (a regression) the cases after it report nothing.
HOSTILE = ["chunk links to /dev/zero", "root zarr.json links to /dev/zero", "pixel size 0.03", "pixel size 0.01",
           "similarity 0.01", "original_size 1e9 .zarr", "original_size 1e9 info", "tiled shape 1e9 .zarr",
           "tiled shape 1e9 info", "features of 1e9 channels", "stack of 1e9 slices",
           "chunk is a FIFO", "features zarr.json is a FIFO"]


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    made = {name: _hostile(name, base / f"case{i}") for i, name in enumerate(HOSTILE)}
    before = {name: snapshot(path) for name, (path, _) in made.items()}
    env = {**os.environ, "PYTHONPATH": str(Path(embedview.__file__).parents[1])}
    env.pop("EMBEDVIEW_MEMORY_LIMIT", None)
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER.format(limit=ADDRESS_LIMIT),
                               json.dumps({name: argv for name, (_, argv) in made.items()})],
                              capture_output=True, text=True, timeout=60, env=env)
        stdout = proc.stdout
    except subprocess.TimeoutExpired as err:  # a hang: the cases that did not report fail
        stdout = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    results = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    return made, before, results


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_case_fails_fast_in_one_sentence(name, hostile_runs):
    made, before, results = hostile_runs
    assert name in results, f"{name}: no result (killed for memory or hung)"
    rc, err = results[name]
    path, argv = made[name]
    check_refused(err, rc, before[name], path, Path(argv[argv.index("-o") + 1]).parent if "-o" in argv
                  else path.parent / "out")


# ---------------------------------------------------------------------------------------------
# fuzzing the metadata micro_sam writes: only EmbedviewError may escape

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([0, 1, 64, 512, 2**20, 2**21])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8)
SIZES = st.lists(st.integers(-3, 2**21) | st.floats(allow_nan=True, allow_infinity=True) | JSON, max_size=3)
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)), deadline=None, suppress_health_check=list(HealthCheck))


def _only_embedview_errors(path: Path) -> None:
    try:
        src = embedview.open_source(path)
        describe(path)
        embedview.visualize(src, pixel_size=max(src.image_shape) / 64)  # a small picture
    except EmbedviewError:
        pass


@FUZZ
@given(key=st.sampled_from(["original_size", "input_size"]), value=JSON | SIZES)
def test_fuzz_root_attributes(tmp_path_factory, key, value):
    path = copy_fixture("2d", tmp_path_factory.mktemp("fuzz"))
    set_attrs(path, **{key: value})
    _only_embedview_errors(path)


@FUZZ
@given(key=st.sampled_from(["shape", "tile_shape", "halo", "tiles_in_mask"]), value=JSON | SIZES)
def test_fuzz_tiled_group_attributes(tmp_path_factory, key, value):
    path = copy_fixture("tiled2d_masked", tmp_path_factory.mktemp("fuzz"))
    set_attrs(path / "features", **{key: value})
    _only_embedview_errors(path)


@FUZZ
@given(value=JSON | SIZES, tile=st.sampled_from(["0", "1"]))
def test_fuzz_tile_attributes(tmp_path_factory, value, tile):
    path = copy_fixture("tiled2d_masked", tmp_path_factory.mktemp("fuzz"))
    tiles = sorted(p.name for p in (path / "features").iterdir() if p.name.isdigit())
    set_attrs(path / "features" / tiles[int(tile) % len(tiles)], original_size=value)
    _only_embedview_errors(path)
