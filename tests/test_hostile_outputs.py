"""Outputs never destroy what the user owns, and a failed or killed run leaves nothing behind.

Every case runs the command (``embedview.cli.main``, or a subprocess where a signal or a crash is
needed) inside a folder whose every file is hashed before and after: a refused run exits 2 with
one sentence and no traceback, changes no byte and leaves nothing new (no temporary, no folder).
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import embedview
from embedview._common import output_paths as _io
from embedview._common.errors import EmbedviewError
from embedview._workflows.demo import DemoEncoder, make_demo_scene, write_demo_embeddings
from embedview.cli import main

from _readback import read_ome_zarr

SMALL = DemoEncoder(n_channels=16, grid=16)
SRC = str(Path(embedview.__file__).parents[1])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Inputs to copy: embeddings (2D and a stack), an image, a mask, a basis, ViT tokens."""
    root = tmp_path_factory.mktemp("hostile")
    image, labels = make_demo_scene((120, 180))
    write_demo_embeddings(root / "emb.zarr", image, labels, encoder=SMALL)
    write_demo_embeddings(root / "other.zarr", *make_demo_scene((120, 180), seed=1), encoder=SMALL)
    stack = np.stack([make_demo_scene((90, 120), seed=z)[0] for z in range(2)])
    write_demo_embeddings(root / "stack.zarr", stack, encoder=SMALL)
    Image.fromarray(image).save(root / "image.png")
    np.save(root / "mask.npy", (labels > 0).astype(np.uint8))
    assert main(["fit", str(root / "emb.zarr"), "-o", str(root / "basis.npz"), "-q"]) == 0
    np.savez(root / "tokens.npz", tokens=np.random.default_rng(0).normal(size=(1 + 14 * 14, 16)).astype(np.float32))
    return root


@pytest.fixture
def work(tmp_path, made, monkeypatch):
    """A fresh copy of the inputs, as the current folder."""
    for entry in made.iterdir():
        (shutil.copytree if entry.is_dir() else shutil.copy)(entry, tmp_path / entry.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict:
    """Every file (its SHA-256) and folder under ``root``, hidden ones included."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            found[os.path.relpath(os.path.join(folder, d), root)] = "folder"
        for f in files:
            path = Path(folder, f)
            found[os.path.relpath(path, root)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                                  if path.is_file() else "not a file")  # a FIFO: no reading
    return found


def refused(capsys, root, *argv, code=2) -> str:
    """Run the command: exit ``code``, one line on stderr, no traceback, ``root`` byte-identical."""
    before = snapshot(root)
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert snapshot(root) == before
    return err


def no_leftovers(root: Path) -> None:
    hidden = [p for p in snapshot(root) if ".embedview-" in p]
    empty = [p for p, kind in snapshot(root).items() if kind == "folder" and not os.listdir(root / p)]
    assert hidden == [] and empty == []


# ---------------------------------------------------------------------------------------------
# never destroy


def test_render_onto_a_foreign_folder_or_file(work, capsys):
    (work / "mine.zarr").mkdir()
    (work / "mine.zarr" / "notes.txt").write_text("my own")
    err = refused(capsys, work, "render", "emb.zarr", "-o", "mine.zarr")
    assert "did not write" in err
    (work / "notes.png").write_text("not a picture")
    assert "did not write" in refused(capsys, work, "render", "emb.zarr", "-o", "notes.png")
    (work / "data.npy").write_text("not an array")
    refused(capsys, work, "render", "emb.zarr", "-o", "data.npy")
    os.mkfifo(work / "pipe.png")  # opened for its first bytes, it would hang
    refused(capsys, work, "render", "emb.zarr", "-o", "pipe.png")


def test_existing_folder_for_one_input_names_the_extensions(work, capsys):
    (work / "pics").mkdir()
    err = refused(capsys, work, "render", "emb.zarr", "-o", "pics")
    assert "existing folder" in err and ".png" in err and ".zarr" in err and "pics/pca.png" in err


@pytest.mark.parametrize("output", ["emb.zarr", "emb.zarr/pca.png", "emb.zarr/features", "."])
def test_render_onto_the_input_or_what_holds_it(work, capsys, output):
    assert "would overwrite the embeddings" in refused(capsys, work, "render", "emb.zarr", "-o", output)


def test_render_onto_a_marked_folder_holding_the_input(work, capsys):
    """`render outer.zarr/emb.zarr -o outer.zarr`: even an embedview folder may not go when it holds the input."""
    (work / "outer.zarr").mkdir()
    shutil.move(work / "emb.zarr", work / "outer.zarr" / "emb.zarr")
    (work / "outer.zarr" / ".zattrs").write_text(json.dumps({"embedview": _io.folder_marker()}))
    err = refused(capsys, work, "render", "outer.zarr/emb.zarr", "-o", "outer.zarr")
    assert "holds them" in err


@pytest.mark.parametrize("flag, path", [("--image", "image.png"), ("--mask", "mask.npy"), ("--basis", "basis.npz")])
def test_output_equal_to_an_option_input(work, capsys, flag, path):
    err = refused(capsys, work, "render", "emb.zarr", "-o", path, flag, path)
    assert "would overwrite the" in err and path in err


def test_figure_onto_an_input(work, capsys):
    shutil.copy(work / "image.png", work / "x_figure.png")
    refused(capsys, work, "render", "emb.zarr", "-o", "x.png", "--image", "x_figure.png")


def test_fit_onto_an_input(work, capsys):
    vit = ["--image-size", "224,224", "--patch-size", "16", "--prefix-tokens", "1"]
    refused(capsys, work, "fit", "tokens.npz", "-o", "tokens.npz", *vit)
    refused(capsys, work, "fit", "emb.zarr", "other.zarr", "-o", "other.zarr/basis.npz")
    (work / "notes.npz").write_text("mine")
    refused(capsys, work, "fit", "emb.zarr", "-o", "notes.npz")


def test_similarity_onto_an_input(work, capsys):
    refused(capsys, work, "similarity", "emb.zarr", "-o", "emb.zarr", "--point", "10,10")
    refused(capsys, work, "similarity", "emb.zarr", "-o", "mask.npy", "--mask", "mask.npy")
    refused(capsys, work, "similarity", "emb.zarr", "-o", "image.png", "--point", "10,10", "--image", "image.png")


def test_several_inputs_into_an_input(work, capsys):
    refused(capsys, work, "render", "emb.zarr", "other.zarr", "-o", "emb.zarr/pics")
    refused(capsys, work, "render", "emb.zarr", "other.zarr", "-o", "emb.zarr")
    (work / "kept").mkdir()
    (work / "kept" / "emb.png").write_text("my own notes")  # where the first picture would go
    assert "did not write" in refused(capsys, work, "render", "emb.zarr", "other.zarr", "-o", "kept")


def test_demo_into_a_foreign_embeddings_folder(work, capsys):
    (work / "d" / "tiled_embeddings.zarr").mkdir(parents=True)
    (work / "d" / "tiled_embeddings.zarr" / "mine.txt").write_text("my own")
    err = refused(capsys, work, "demo", "-o", "d", "-q")
    assert "tiled_embeddings.zarr" in err
    assert sorted(p.name for p in (work / "d").iterdir()) == ["tiled_embeddings.zarr"]  # nothing else written


def test_api_output_follows_the_same_rule(work):
    before = snapshot(work)
    (work / "mine.zarr").mkdir()
    for output in ("emb.zarr", "mine.zarr"):
        with pytest.raises(EmbedviewError):
            embedview.visualize("emb.zarr", output=output)
    with pytest.raises(EmbedviewError, match="would overwrite"):
        embedview.visualize(embedview.open_source("emb.zarr"), output="emb.zarr")
    (work / "mine.zarr").rmdir()
    assert snapshot(work) == before


def test_embedview_outputs_are_replaced(work, capsys):
    for argv in (["render", "emb.zarr", "-o", "p.zarr"], ["render", "emb.zarr", "-o", "p.png", "--image", "image.png"],
                 ["fit", "emb.zarr", "-o", "b.npz"], ["render", "stack.zarr", "-o", "s.tif"]):
        for _ in range(2):
            assert main(argv + ["-q"]) == 0, capsys.readouterr().err
    no_leftovers(work)


# ---------------------------------------------------------------------------------------------
# one line for every failure


def test_internal_error_is_one_line_exit_1(work, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug\nover two lines")

    monkeypatch.setattr("embedview._workflows.commands.open_embeddings", broken)
    err = refused(capsys, work, "render", "emb.zarr", "-o", "p.png", code=1)
    assert err.startswith("embedview: internal error: ZeroDivisionError: a bug over two lines") and "--debug" in err
    for argv in (["--debug", "render", "emb.zarr", "-o", "p.png"], ["render", "emb.zarr", "-o", "p.png", "--debug"]):
        assert main(argv) == 1
        assert "Traceback" in capsys.readouterr().err
    no_leftovers(work)


# ---------------------------------------------------------------------------------------------
# clean up


def test_several_inputs_failing_leave_no_folder(work, capsys):
    refused(capsys, work, "render", "emb.zarr", "other.zarr", "-o", "new/sub", "--ext", ".zarr", "--clusters", "3")
    refused(capsys, work, "render", "stack.zarr", "stack.zarr", "-o", "s", "--slice", "9")
    (work / "kept").mkdir()
    (work / "kept" / "a.txt").write_text("mine")
    refused(capsys, work, "render", "emb.zarr", "other.zarr", "-o", "kept", "--ext", ".zarr", "--clusters", "3")


def test_failure_after_a_first_file_removes_it(work, capsys, monkeypatch):
    """The picture is written, then the figure fails: the run leaves neither."""
    def broken(*args, **kwargs):
        raise EmbedviewError("the figure failed.")

    monkeypatch.setattr("embedview._workflows.figure.make_figure", broken)
    refused(capsys, work, "render", "emb.zarr", "-o", "p.png", "--image", "image.png")
    refused(capsys, work, "demo", "-o", "fresh", "-q")


SLOW = """
    import importlib, sys, time
    module, name, output = sys.argv[1:]
    holder = importlib.import_module(module)
    if "." in name:  # a method
        cls, name = name.split(".")
        holder = getattr(holder, cls)
    real = getattr(holder, name)
    def slow(*args, **kwargs):
        real(*args, **kwargs)
        print("writing", flush=True)
        time.sleep(60)
    setattr(holder, name, slow)
    from embedview.cli import main
    sys.exit(main(["render", "emb.zarr", "-o", output, "-q"]))
"""


@pytest.mark.parametrize("output, module, name", [
    ("p.png", "embedview._outputs.io", "write_png"),                        # a file output
    ("p.zarr", "embedview._outputs.omezarr", "OmeZarrWriter.finish"),      # a folder, written while computed
])
def test_sigterm_mid_write_leaves_nothing(work, output, module, name):
    before = snapshot(work)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SLOW), module, name, output], cwd=work,
                            env=dict(os.environ, PYTHONPATH=SRC), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert any(".embedview-" in p for p in snapshot(work))  # the temporary is there
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.strip() == "embedview: interrupted", err
    assert snapshot(work) == before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_runs_are_removed(work, capsys):
    host, dead = _io._host(), _dead_pid()
    stale_file = work / f".p.png.embedview-{host}-{dead}-0123abcd.tmp.png"
    stale_file.write_bytes(b"x" * 1000)
    stale_dir = work / f".p.zarr.embedview-{host}-{dead}-0123abcd.tmp.zarr"
    (stale_dir / "0").mkdir(parents=True)
    alive = work / f".p.png.embedview-{host}-{os.getppid()}-0123abcd.tmp.png"  # a writer still running
    alive.write_bytes(b"busy")
    other_host = work / f".p.png.embedview-00000000-{dead}-0123abcd.tmp.png"
    other_host.write_bytes(b"elsewhere")
    assert main(["render", "emb.zarr", "-o", "p.png", "-q"]) == 0
    assert main(["render", "emb.zarr", "-o", "p.zarr", "-q"]) == 0
    assert not stale_file.exists() and not stale_dir.exists()
    assert alive.exists() and other_host.exists()


def _watch(path: Path):
    """Poll ``path`` in a thread; the returned list gets True if it was ever missing."""
    seen, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            if not os.path.isdir(path):
                seen.append(True)

    thread = threading.Thread(target=poll)
    thread.start()
    return seen, lambda: (stop.set(), thread.join())


@pytest.mark.parametrize("exchange", [True, False])
def test_replacing_a_zarr_output_never_leaves_the_path_empty(work, capsys, monkeypatch, exchange):
    if exchange and _io._renameat2() is None:
        pytest.skip("no renameat2 here")
    if not exchange:
        monkeypatch.setattr(_io, "_rename2", lambda *args: None)  # the two-rename fallback
    assert main(["render", "emb.zarr", "-o", "p.zarr", "-q"]) == 0
    seen, stop = _watch(work / "p.zarr")
    try:
        assert main(["render", "other.zarr", "-o", "p.zarr", "-q"]) == 0
    finally:
        stop()
    if exchange:  # the fallback has its one window, too short to catch here: the crash test covers it
        assert seen == []
    assert read_ome_zarr(work / "p.zarr")[2]["embedview"]["source"] == "other.zarr"
    no_leftovers(work)


CRASH = """
    import os, sys
    from embedview._common import output_paths as _io
    real_rename2, real_rename = _io._rename2, os.rename
    mode = sys.argv[1]
    def rename2(src, dst, flags):
        if mode == "fallback":
            return None
        result = real_rename2(src, dst, flags)
        if flags == _io._RENAME_EXCHANGE:
            os._exit(9)  # killed after the exchange, before the old output is removed
        return result
    def rename(src, dst):
        real_rename(src, dst)
        if str(dst).endswith(".old"):
            os._exit(9)  # killed between the fallback's two renames
    _io._rename2, os.rename = rename2, rename
    from embedview.cli import main
    main(["render", "other.zarr", "-o", "p.zarr", "-q"])
"""


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_a_crash_inside_the_swap(work, capsys, mode):
    if mode == "exchange" and _io._renameat2() is None:
        pytest.skip("no renameat2 here")
    assert main(["render", "emb.zarr", "-o", "p.zarr", "-q"]) == 0
    old = snapshot(work / "p.zarr")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASH), mode], cwd=work, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=SRC), timeout=60)
    assert proc.returncode == 9, proc.stderr
    stale = [p for p in os.listdir(work) if ".embedview-" in p]
    if mode == "exchange":  # the new output is in place; the old one waits under a temporary name
        assert read_ome_zarr(work / "p.zarr")[2]["embedview"]["source"] == "other.zarr"
        assert [p for p in stale if ".tmp" in p]
    else:  # the window: nothing at the path, the old output under .old; the next run puts it back
        assert not (work / "p.zarr").exists() and [p for p in stale if p.endswith(".old")]
        _io.remove_stale(work / "p.zarr")
        assert snapshot(work / "p.zarr") == old
    assert main(["render", "other.zarr", "-o", "p.zarr", "-q"]) == 0
    assert read_ome_zarr(work / "p.zarr")[2]["embedview"]["source"] == "other.zarr"
    no_leftovers(work)


@pytest.mark.parametrize("exchange", [True, False])
def test_concurrent_writers_leave_one_output(work, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(_io, "_rename2", lambda *args: None)
    out, n = work / "c.zarr", 6
    barrier, errors = threading.Barrier(n), []

    def write(i):
        try:
            with _io.atomic_path(out, directory=True) as tmp:
                (tmp / ".zattrs").write_text(json.dumps({"embedview": dict(_io.folder_marker(), writer=i)}))
                barrier.wait()
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(os.listdir(out)) == [".zattrs"]
    assert sorted(p for p in os.listdir(work) if p.startswith(".c.zarr")) == []


# ---------------------------------------------------------------------------------------------
# an output replaces only what embedview wrote, of its own kind (issue 16)


@pytest.mark.parametrize("name, write", [
    ("holiday.png", lambda p: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p)),
    ("holiday.tif", lambda p: __import__("tifffile").imwrite(p, np.zeros((4, 4), np.uint8))),
    ("data.npy", lambda p: np.save(p, np.zeros(3))),
    ("data.npz", lambda p: np.savez(p, a=np.zeros(3))),
])
def test_a_users_file_needs_overwrite(work, capsys, name, write):
    write(work / name)
    err = refused(capsys, work, "render", "emb.zarr", "-o", name)
    assert "did not write" in err and "--overwrite" in err and "overwrite=True" not in err
    assert main(["render", "emb.zarr", "-o", name, "-q", "--overwrite"]) == 0
    assert main(["render", "emb.zarr", "-o", name, "-q"]) == 0  # now embedview's: replaced without asking
    no_leftovers(work)


def test_a_users_gif_and_a_basis_need_overwrite(work, capsys):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "mine.gif")
    assert "--overwrite" in refused(capsys, work, "render", "stack.zarr", "-o", "mine.gif")
    np.savez(work / "mine.npz", a=np.zeros(3))
    assert "--overwrite" in refused(capsys, work, "fit", "emb.zarr", "-o", "mine.npz")
    assert main(["fit", "emb.zarr", "-o", "mine.npz", "-q", "--overwrite"]) == 0
    assert main(["fit", "emb.zarr", "-o", "mine.npz", "-q"]) == 0  # a basis replaces a basis
    err = refused(capsys, work, "render", "emb.zarr", "-o", "mine.npz")  # a picture does not replace a basis
    assert "basis, not a picture" in err
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "sim.png")
    assert "--overwrite" in refused(capsys, work, "similarity", "emb.zarr", "-o", "sim.png", "--point", "10,10")
    assert main(["similarity", "emb.zarr", "-o", "sim.png", "--point", "10,10", "-q", "--overwrite"]) == 0


def test_overwrite_never_replaces_an_input_or_a_foreign_folder(work, capsys):
    assert "would overwrite the image" in refused(capsys, work, "render", "emb.zarr", "-o", "image.png",
                                                  "--image", "image.png", "--overwrite")
    refused(capsys, work, "render", "emb.zarr", "-o", "emb.zarr", "--overwrite")
    (work / "mine.zarr").mkdir()
    (work / "mine.zarr" / "notes.txt").write_text("my own")
    assert "even with" in refused(capsys, work, "render", "emb.zarr", "-o", "mine.zarr", "--overwrite")


def test_the_demo_image_is_not_a_picture(work, capsys, monkeypatch):
    """`render demo/embeddings.zarr -o demo/image.png` (the README's input) is refused; a demo re-run is not."""
    from embedview._workflows import demo

    monkeypatch.setattr(demo, "DEMO_LAYOUTS", {  # the demo's files, small
        "image": ((96, 128), None, None), "stack": ((2, 64, 96), None, None),
        "tiled_image": ((160, 200), (96, 128), (8, 8)), "tiled_stack": ((2, 160, 200), (96, 128), (8, 8))})
    real = demo.DemoEncoder
    monkeypatch.setattr(demo, "DemoEncoder", lambda *a, **k: real(*a, **k) if a or k else SMALL)
    (work / "d").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "d" / "labels.png")  # the user's, at a demo name
    assert "--overwrite" in refused(capsys, work, "demo", "-o", "d", "-q")
    assert main(["demo", "-o", "d", "-q", "--overwrite"]) == 0
    err = refused(capsys, work, "render", "emb.zarr", "-o", "d/image.png")
    assert "demo file, not a picture" in err and "--overwrite" in err
    refused(capsys, work, "render", "emb.zarr", "-o", "d/tiled_embeddings.zarr")  # embeddings, not a picture
    assert main(["render", "emb.zarr", "-o", "d/pca.png", "-q"]) == 0  # the demo's own picture: a picture
    assert main(["demo", "-o", "d", "-q"]) == 0
    no_leftovers(work)


def test_api_overwrite(work):
    vis = embedview.visualize("emb.zarr")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "mine.png")
    with pytest.raises(EmbedviewError, match="overwrite=True"):
        embedview.write_output(vis, "mine.png")
    embedview.write_output(vis, "mine.png", overwrite=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "fig.png")
    with pytest.raises(EmbedviewError, match="overwrite=True"):
        embedview.figure("emb.zarr", "image.png", vis, path="fig.png")
    embedview.figure("emb.zarr", "image.png", vis, path="fig.png", overwrite=True)
    model = embedview.PCA().fit("emb.zarr")
    np.savez(work / "mine.npz", a=np.zeros(3))
    with pytest.raises(EmbedviewError, match="overwrite=True"):
        model.save("mine.npz")
    model.save("mine.npz", overwrite=True)
    embedview.visualize("emb.zarr", output="p.zarr")
    (work / "e.zarr").mkdir()
    (work / "e.zarr" / ".zattrs").write_text(json.dumps({"embedview": _io.folder_marker("embeddings")}))
    with pytest.raises(EmbedviewError, match="embeddings, not a picture"):
        embedview.visualize("emb.zarr", output="e.zarr")
    embedview.visualize("emb.zarr", output=embedview.ZarrOutput("e.zarr", overwrite=True))
    assert read_ome_zarr(work / "e.zarr")[2]["embedview"]["embedview_kind"] == "picture"


def test_metadata_must_be_json(work):
    vis = embedview.visualize("emb.zarr")
    before = snapshot(work)
    with pytest.raises(EmbedviewError, match="plain JSON"):
        embedview.write_output(vis, "p.png", metadata={"a": object()})
    with pytest.raises(EmbedviewError, match="plain JSON"):
        embedview.write_output(vis, "p.png", metadata={"a": float("nan")})
    with pytest.raises(EmbedviewError, match="plain JSON"):
        embedview.PCA().fit_transform("emb.zarr", output="p.zarr", metadata={"a": {1, 2}})
    assert snapshot(work) == before


def test_no_name_collision_in_an_output_folder(work, capsys):
    shutil.copytree(work / "emb.zarr", work / "side_by_side.zarr")
    assert main(["render", "side_by_side.zarr", "other.zarr", "-o", "out", "-q"]) == 0
    assert sorted(os.listdir(work / "out")) == ["other.png", "side_by_side.png", "side_by_side_2.png"]
    assert Image.open(work / "out" / "side_by_side.png").size != Image.open(work / "out" / "side_by_side_2.png").size
    shutil.copytree(work / "other.zarr", work / "EMB.zarr")  # equal but for case: one file on macOS
    assert main(["render", "EMB.zarr", "emb.zarr", "-o", "out2", "-q"]) == 0
    names = os.listdir(work / "out2")
    assert len(names) == 3 and len({n.casefold() for n in names}) == 3


def test_a_long_output_name_fits_its_temporary(work, capsys):
    name = "p" * 240 + ".png"  # legal (≤ 255 bytes); its temporary must be too
    for _ in range(2):
        assert main(["render", "emb.zarr", "-o", name, "-q"]) == 0
    host, dead = _io._host(), _dead_pid()
    stale = work / f".{_io._temp_stem(Path(name))}{_io._TEMP_TAG}{host}-{dead}-0123abcd.tmp.png"
    stale.write_bytes(b"x")
    assert main(["render", "emb.zarr", "-o", name, "-q"]) == 0
    assert not stale.exists()
    no_leftovers(work)


@pytest.mark.parametrize("fps", ["1e-5", "0.001", "1000", "nan"])
def test_fps_out_of_range(work, capsys, fps):
    assert "--fps" in refused(capsys, work, "render", "stack.zarr", "-o", "m.gif", "--fps", fps)


def test_a_failing_movie_writer_leaves_nothing(work, capsys, monkeypatch):
    """A full disk while ffmpeg writes: one sentence, exit 2, no movie under the final name, no temporary."""
    pytest.importorskip("imageio_ffmpeg")
    from embedview._outputs import movie

    def full(self):
        import errno

        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        self._proc = None
        raise OSError(errno.ENOSPC, "no space left on the device", str(self.path))

    monkeypatch.setattr(movie._Mp4Writer, "close", full)
    err = refused(capsys, work, "render", "stack.zarr", "-o", "m.mp4")
    assert "no space left" in err


def test_ffmpeg_failing_is_an_error(work, capsys, monkeypatch):
    """ffmpeg's own failure (its exit status, which imageio never checked) is one sentence."""
    pytest.importorskip("imageio_ffmpeg")
    import imageio_ffmpeg

    fake = work / "ffmpeg"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    assert "no space left" in refused(capsys, work, "render", "stack.zarr", "-o", "m.mp4")


def test_ffmpeg_that_stops_reading_but_exits_0_is_an_error(work, capsys, monkeypatch):
    """ffmpeg quitting early with status 0 (frames refused, nothing to read from its log) is one sentence too."""
    pytest.importorskip("imageio_ffmpeg")
    import imageio_ffmpeg

    fake = work / "ffmpeg"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    assert "ffmpeg could not write the movie" in refused(capsys, work, "render", "stack.zarr", "-o", "m.mp4")


def test_the_readme_promise(work, capsys):
    """README: "An output replaces only what embedview wrote there before, as the same kind of file
    ..., and never an input or a folder holding one; `--overwrite` ... never an input or a folder
    embedview did not write." Each clause, as written."""
    readme = " ".join((Path(SRC).parent / "README.md").read_text().split())
    promise = ("An output replaces only what embedview wrote there before, as the same kind of file (its files "
               "carry embedview's metadata: a picture replaces a picture, never the demo's image or a file you made), "
               "and never an input or a folder holding one; `--overwrite` (`overwrite=True` in Python) lets it "
               "replace a file embedview did not write, but never an input or a folder embedview did not write.")
    assert promise in readme
    # what embedview wrote there before is replaced (.png, .tif, .zarr, a basis: test_embedview_outputs_are_replaced)
    for emb, out in (("emb.zarr", "own.npy"), ("emb.zarr", "own.npz"), ("stack.zarr", "own.gif")):
        for _ in range(2):
            assert main(["render", emb, "-o", out, "-q"]) == 0
    assert main(["fit", "emb.zarr", "-o", "own_basis.npz", "-q"]) == 0
    assert "basis, not a picture" in refused(capsys, work, "render", "emb.zarr", "-o", "own_basis.npz")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "made.png")  # a file you made
    assert "--overwrite" in refused(capsys, work, "render", "emb.zarr", "-o", "made.png")
    assert "would overwrite" in refused(capsys, work, "render", "emb.zarr", "-o", "image.png", "--image",
                                        "image.png", "--overwrite")  # an input
    assert "holds them" in refused(capsys, work, "render", "emb.zarr", "-o", ".", "--overwrite")  # holding one
    (work / "yours.zarr").mkdir()
    assert "did not write" in refused(capsys, work, "render", "emb.zarr", "-o", "yours.zarr", "--overwrite")
    (work / "yours.zarr").rmdir()
    assert main(["render", "emb.zarr", "-o", "made.png", "-q", "--overwrite"]) == 0
    no_leftovers(work)
