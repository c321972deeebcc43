"""Every ``embedview`` command in the README runs as written, in order, in a fresh folder.

The README's commands name the files ``embedview demo -o demo`` writes (its second set-up
command), so a new user can paste them one after the other; this test does just that and checks
that each exits with status 0.
"""

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import embedview

README = Path(__file__).resolve().parents[1] / "README.md"
#: Commands that need an optional extra: skipped (with the reason) where it is not installed.
EXTRAS = {"--scheduler": ("distributed", "dask"), "--device torch": ("torch", "torch")}


def readme_commands(text: str) -> list[str]:
    """The lines of the README's code blocks that start with ``embedview `` (continuations joined)."""
    commands, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        line = pending + line.strip() if pending else line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("embedview "):
            commands.append(line)
    return commands


def test_readme_commands_are_found():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert commands[0] == "embedview demo -o demo"
    assert len(commands) >= 15
    assert readme_commands("```bash\nembedview render a.zarr \\\n  -o b.png  # c\nother\n```\nembedview x\n") == \
        ["embedview render a.zarr  -o b.png  # c"]


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One fresh folder for all the commands, which build on each other in the README's order."""
    return tmp_path_factory.mktemp("readme")


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}" for i in range(len(COMMANDS))])
def test_readme_command_runs(folder, command):
    """Each README ``embedview`` line, in order, after its ``embedview demo -o demo``, exits 0."""
    for flag, (module, extra) in EXTRAS.items():
        if flag in command and importlib.util.find_spec(module) is None:
            pytest.skip(f"needs the {extra} extra (pip install -e '.[{extra}]')")
    src = str(Path(embedview.__file__).resolve().parents[1])  # the embedview under test, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    argv = shlex.split(command, comments=True)
    done = subprocess.run([sys.executable, "-m", *argv], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{command}\nexited {done.returncode}:\n{done.stderr[-2000:]}"


def test_ci_runs_the_readme_test_command():
    """.ci/run runs the README's test command as written (the two are kept in step)."""
    text = README.read_text(encoding="utf-8")
    test_section = text[text.index("## Test"):]
    command = next(line for line in test_section.splitlines() if line.startswith("pip install"))
    assert "torch" not in command  # a new user's test environment does not pull PyTorch's CUDA build
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci.splitlines()
