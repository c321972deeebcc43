"""The micro_sam-written fixtures in tests/data/micro_sam and writable copies of them."""

import os
import shutil
from pathlib import Path

DATA = Path(__file__).parent / "data" / "micro_sam"


def copy_fixture(case: str, tmp_path: Path) -> Path:
    """A writable copy of ``CASE.zarr`` in ``tmp_path`` (to damage in a test)."""
    dst = tmp_path / f"{case}.zarr"
    shutil.copytree(DATA / f"{case}.zarr", dst)
    for root, dirs, files in os.walk(dst):  # the fixtures may be read-only
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    return dst
