"""The README's shell lines: what tests/test_readme.py runs and checks, and what .ci/run installs.

Plain Python (no pytest, no embedview), so that CI can call it before anything is installed::

    python tests/_readme.py install-lines     # the README's `pip install` lines before its Test section
"""

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
#: The lines a new user copies: embedview's commands and the installs they need.
PREFIXES = ("embedview ", "pip install ")


def bash_lines(text: str, prefixes=PREFIXES) -> list[tuple[str, int]]:
    """``(line, block)`` for the lines of the README's ``bash`` blocks that start with one of
    ``prefixes``, continuations joined, in order; ``block`` numbers the block (from 0).

    Examples
    --------
    >>> text = "```bash\\npip install .\\nembedview render a.zarr \\\\\\n  -o b.png  # c\\nother\\n```\\n"
    >>> bash_lines(text + "```python\\nembedview x\\n```\\n")
    [('pip install .', 0), ('embedview render a.zarr  -o b.png  # c', 0)]
    """
    lines, block, in_bash, pending = [], -1, None, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if in_bash is None:
                in_bash = line.strip()[3:].strip() in ("bash", "sh", "shell", "console")
                block += in_bash
            else:
                in_bash = None
            pending = ""
            continue
        if not in_bash:
            continue
        line = pending + line.strip() if pending else line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith(prefixes):
            lines.append((line, block))
    return lines


def install_lines(text: str) -> list[str]:
    """The ``pip install`` lines of the README's bash blocks before its Test section (whose test
    command CI runs on its own)."""
    return [line for line, _ in bash_lines(text[:text.index("## Test")], ("pip install ",))]


if __name__ == "__main__":
    if sys.argv[1:] != ["install-lines"]:
        sys.exit("usage: python tests/_readme.py install-lines")
    print("\n".join(install_lines(README.read_text(encoding="utf-8"))))
