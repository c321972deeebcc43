"""Mistakes that once gave a page of usage, a traceback or another error type: each is now one
sentence (exit 2 from the command, an EmbedviewError from the API), and what a file says is
printed escaped, never obeyed by the terminal."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import embedview
from _cli import run_fails
from embedview import EmbedviewError
from embedview._workflows.demo import DemoEncoder, demo, make_cells_scene, write_demo_embeddings
from embedview.cli import main

SRC = str(Path(__file__).parents[1] / "src")
SMALL = DemoEncoder(n_channels=8, grid=16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    image, labels = make_cells_scene((128, 160))
    np.save(root / "image.npy", image)
    return {"emb": write_demo_embeddings(root / "emb.zarr", image, labels, encoder=SMALL),
            "image": root / "image.npy", "root": root}


# ---------------------------------------------------------------------------------------------
# a bad flag: the error and where the help is, not the usage


@pytest.mark.parametrize("argv, expected", [
    (["render", "{emb}", "-o", "x.png", "--pixel-size", "0"], "argument --pixel-size: expected one or two positive"),
    (["render", "{emb}", "-o", "x.png", "--fit", "perslice"], "argument --fit: invalid choice: 'perslice'"),
    (["render", "{emb}"], "the following arguments are required: -o/--output"),
    (["rendr", "{emb}"], "argument COMMAND: invalid choice: 'rendr'"),
    (["render", "{emb}", "-o", "x.png", "--key", "a\x1b[2Jb", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_usage_error_is_two_lines(files, capsys, argv, expected):
    with pytest.raises(SystemExit) as done:
        main([a.format(emb=files["emb"]) for a in argv])
    err = capsys.readouterr().err
    assert done.value.code == 2
    lines = err.splitlines()
    prog = "embedview" if argv[0] == "rendr" or "--bogus" in argv else "embedview render"  # the top parser's
    assert len(lines) == 2 and lines[0].startswith(f"{prog}: error: ") and expected in lines[0], err
    assert lines[1] == f"see '{prog} --help' for the options."
    assert "usage:" not in err and "\x1b" not in err


# ---------------------------------------------------------------------------------------------
# internal errors that were the input's


def test_a_negative_seed_is_refused(tmp_path, capsys):
    err = run_fails(capsys, tmp_path, "demo", "-o", tmp_path / "d", "--seed", "-1")
    assert "--seed -1 must be a whole number ≥ 0" in err
    with pytest.raises(EmbedviewError, match=r"seed=-1 must be"):
        demo(tmp_path / "d", seed=-1)


@pytest.mark.parametrize("flag, value", [("--sigma-range", "1e-300"), ("--sigma-spatial", "1e-300"),
                                         ("--sigma-range", "1e+300")])
def test_sigmas_out_of_range_are_refused(files, capsys, flag, value):
    err = run_fails(capsys, files["root"], "render", files["emb"], "-o", files["root"] / "x.png",
                    "--upsample", "guided", "--image", files["image"], flag, value)
    assert f"{flag} {value} must be a number from" in err
    with pytest.raises(EmbedviewError, match=re.escape(f"{flag[2:].replace('-', '_')}={value} must be a number from")):
        embedview.Upsample.of(embedview.Upsample("guided", **{flag[2:].replace("-", "_"): float(value)}),
                              image=np.zeros((128, 160)))


def test_the_kernel_never_divides_by_zero():
    """Whatever sigmas reach it, the guided kernel gives finite weights (at worst the nearest cell's value)."""
    from embedview._model.upsample import upsample_cells

    rng = np.random.default_rng(0)
    cells = rng.normal(size=(3, 6, 6)).astype(np.float32)
    rows = cols = (np.arange(24) + 0.5) / 4 - 0.5
    guide = rng.random((1, 6, 6)).astype(np.float32)
    pixels = rng.random((24, 24, 1)).astype(np.float32)
    with np.errstate(divide="raise", invalid="raise"):
        out = upsample_cells(cells, rows, cols, (6, 6), "guided", cell_guide=guide, pixel_guide=pixels,
                             sigma_spatial=1e-300, sigma_range=1e-300)
    assert np.isfinite(out).all() and out.shape == (24, 24, 3)


_UNDER_LIMIT = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
    from embedview.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_memory_beyond_the_machine_is_one_sentence(files, tmp_path):
    """EMBEDVIEW_MEMORY_LIMIT lifted past what there is: the allocation fails, and says so."""
    env = dict(os.environ, PYTHONPATH=SRC, EMBEDVIEW_MEMORY_LIMIT="1T", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _UNDER_LIMIT, "render", str(files["emb"]), "-o",
                           str(tmp_path / "big.png"), "--pixel-size", "0.006", "-q"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("embedview: error: the picture does not fit in this machine's memory")
    assert done.stderr.count("\n") == 1 and os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# the API's mistakes are EmbedviewErrors


@pytest.mark.parametrize("call, expected", [
    (lambda f: embedview.visualize(str(f["emb"]), rgb_components="abc"), "rgb_components='abc' must name"),
    (lambda f: embedview.visualize(str(f["emb"]), rgb_components=[0, 1.5]), "must name one to three"),
    (lambda f: embedview.PCA().fit(str(f["emb"]), foreground={"threshold": "a"}), "threshold must be a finite"),
    (lambda f: embedview.PCA().fit(str(f["emb"]), foreground={"threshold": float("nan")}), "finite number"),
    (lambda f: embedview.similarity(str(f["emb"]), point=(float("nan"), 2)), r"point=(nan, 2) must be"),
    (lambda f: embedview.similarity(str(f["emb"]), point="ab"), "must be (y, x) or (z, y, x)"),
    (lambda f: embedview.PCA.load(None), "a basis file is given by its path"),
    (lambda f: embedview.cluster(str(f["emb"]), 5), "cluster() takes visualizations, not a str"),
    (lambda f: embedview.cluster(3, 5), "cluster() takes visualizations, not a int"),
])
def test_api_mistakes_are_embedview_errors(files, call, expected):
    with pytest.raises(EmbedviewError) as err:
        call(files)
    assert expected in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# what a file says is printed, not obeyed


def _forged(root: Path) -> Path:
    import zarr

    image, labels = make_cells_scene((128, 160))
    path = write_demo_embeddings(root / "forged.zarr", image, labels, encoder=SMALL)
    zarr.open_group(str(path), mode="r+").attrs.update(
        model_type="vit_b\x1b[2J\x1b[H\nfile:              /etc/passwd", micro_sam_version="1.0\r\x07",
        data_signature=float("nan"))
    return path


def test_info_escapes_what_the_file_says(tmp_path, capsys):
    path = _forged(tmp_path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "vit_b\\x1b[2J\\x1b[H\\nfile:" in out
    assert sum(line.startswith("file:") for line in out.splitlines()) == 1  # no forged line


def test_info_json_is_strict(tmp_path, capsys):
    path = _forged(tmp_path)
    assert main(["info", "--json", str(path)]) == 0
    out = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    info = json.loads(out, parse_constant=refuse)
    assert info["data_signature"] is None and "\x1b" not in out
    assert info["model_type"].startswith("vit_b\x1b[2J")  # the value itself, escaped as JSON escapes it


def test_an_error_quoting_a_file_name_is_escaped(tmp_path, capsys):
    err = run_fails(capsys, tmp_path, "info", tmp_path / "a\x1b[2Jb\x07.zarr")
    assert "\x1b" not in err and "\x07" not in err and "a\\x1b[2Jb\\x07.zarr" in err


# ---------------------------------------------------------------------------------------------
# an interrupt: one line, and no temporary left (zarr's loop may still be writing into it)


@pytest.fixture(scope="module")
def tiled_stack(tmp_path_factory):
    image, labels = make_cells_scene((3, 400, 600))
    return write_demo_embeddings(tmp_path_factory.mktemp("stack") / "stack.zarr", image, labels,
                                 tile_shape=(160, 160), halo=(16, 16), encoder=SMALL)


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_sigterm_during_a_zarr_render_is_one_line(tiled_stack, tmp_path, delay):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "embedview", "render", str(tiled_stack), "-o",
                             str(tmp_path / "s.zarr"), "--pixel-size", "0.25", "-q"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=SRC))
    try:
        deadline = time.monotonic() + 30
        while not os.listdir(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the output's temporary is there: zarr writes into it
        time.sleep(delay)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err == "embedview: interrupted\n", err
    assert os.listdir(tmp_path) == []
