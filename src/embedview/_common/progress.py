"""Progress bars on stderr, shown only for work that takes over a second."""

from __future__ import annotations

import sys


class _Silent:
    def update(self, n=1):
        pass

    def set_description(self, text):
        pass

    def close(self):
        pass


def progress_bar(total: int, enabled: bool, desc: str = ""):
    """A tqdm bar on stderr that appears after one second, or a silent stand-in."""
    if not enabled:
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="piece", file=sys.stderr, delay=1.0, leave=False)
