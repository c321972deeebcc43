"""How many threads BLAS may use while embedview works.

OpenBLAS threads spin between matrix products; next to the threads that read and decompress
pieces they take the cores those need (on 2 cores, a 300-slice stack takes 4.9 s instead of
3.7 s). threadpoolctl sets the limit where it is installed; otherwise the OpenBLAS that numpy
bundles is asked directly; where neither works, nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os


def blas_threads(n: int | None = None):
    """Context manager limiting BLAS to ``n`` threads (default: all cores but the two readers').

    Examples
    --------
    >>> import numpy as np
    >>> with blas_threads(1):
    ...     _ = np.ones((4, 4)) @ np.ones((4, 4))
    """
    if n is None:
        n = max(1, (os.cpu_count() or 1) - 2)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _bundled_openblas_limit(n)
    return threadpool_limits(n, user_api="blas")


@contextlib.contextmanager
def _bundled_openblas_limit(n: int):
    calls = _bundled_openblas()
    if calls is None:
        yield
        return
    get, set_ = calls
    before = get()
    set_(n)
    try:
        yield
    finally:
        set_(before)


@functools.cache
def _bundled_openblas():
    """``(get_num_threads, set_num_threads)`` of the OpenBLAS numpy has loaded, or None."""
    import ctypes

    import numpy as np

    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "lib*openblas*.so*"))):
        try:  # RTLD_NOLOAD: only the library numpy already uses, never a second copy
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        except (OSError, AttributeError):
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, set_
    return None
