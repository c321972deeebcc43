"""pytest: skip, never abort, where an optional part cannot run.

- Modules of an optional extra are doctested only where that extra is installed.
- Tests that need a Qt application (pytest-qt's ``qapp``, so ``qtbot`` and napari viewers) are
  skipped, with what to install, where Qt cannot start: without an X display Qt aborts the
  whole process (``Fatal Python error: Aborted``) when pytest-qt creates its application, so
  whether it can start is tried once in a subprocess first — after pytest-xvfb has started
  Xvfb (in its ``pytest_configure``) where Xvfb is installed.
"""

import importlib.util
import os
import subprocess
import sys


def _missing(*modules):
    return any(importlib.util.find_spec(m) is None for m in modules)


collect_ignore_glob = []
if _missing("napari", "magicgui"):
    collect_ignore_glob.append("src/embedview/napari/_*.py")
if _missing("dask", "distributed"):
    collect_ignore_glob.append("src/embedview/_dask.py")
if _missing("torch"):
    collect_ignore_glob.append("src/embedview/_torch.py")

_QT_PROBE = "from qtpy.QtWidgets import QApplication; app = QApplication([]); print('ok')"


def qt_unavailable() -> str | None:
    """Why a Qt application cannot start here (a skip reason naming what to install), or None."""
    if _missing("qtpy"):
        return "Qt is not installed: pip install -e '.[napari]'"
    try:
        done = subprocess.run([sys.executable, "-c", _QT_PROBE], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "a Qt application did not start within 60 s"
    if done.returncode == 0 and "ok" in done.stdout:
        return None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        return ("no X display: install Xvfb (apt-get install xvfb; pytest-xvfb then starts it) "
                "or run the tests under xvfb-run")
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if any("could not connect to display" in line for line in lines):
        return (f"the X display {os.environ.get('DISPLAY')!r} cannot be reached: start it, or install Xvfb "
                "(apt-get install xvfb) so that pytest-xvfb starts one")
    detail = next((line for line in lines if "needed" in line), lines[-1] if lines else "no message")
    return (f"Qt cannot start ({detail[:200]}): install Qt's system libraries "
            "(the Debian packages .ci/run installs: libgl1, libegl1, libxkbcommon-x11-0, libxcb-cursor0, ...)")


def pytest_collection_modifyitems(config, items):
    """Skip the tests that need a Qt application where none can start (probed once, only if needed)."""
    needs_qt = [item for item in items if "qapp" in getattr(item, "fixturenames", ())]
    if not needs_qt:
        return
    reason = qt_unavailable()
    if reason is None:
        return
    import pytest

    for item in needs_qt:
        item.add_marker(pytest.mark.skip(reason=reason))
