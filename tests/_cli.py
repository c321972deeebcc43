"""Running the command line in tests: a success, or one clean error sentence that leaves nothing behind."""

import os

from embedview.cli import main


def run_ok(capsys, *argv):
    """Run ``embedview ARGV``: it exits 0; returns what it printed (``.out``, ``.err``)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured


def run_fails(capsys, folder, *argv) -> str:
    """Run ``embedview ARGV``: exit 2, one ``embedview: error:`` line, no traceback and, unless
    ``folder`` is None, nothing new in ``folder``; returns the line."""
    before = None if folder is None else sorted(os.listdir(folder))
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("embedview: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    if folder is not None:
        assert sorted(os.listdir(folder)) == before
    return err
