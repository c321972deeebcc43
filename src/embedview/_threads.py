"""How many threads BLAS may use while embedview works.

OpenBLAS threads spin between matrix products; next to the threads that read and decompress
pieces they take the cores those need. threadpoolctl (installed with scikit-learn, optional
here) sets the limit; without it, nothing changes.
"""

from __future__ import annotations

import contextlib
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
        return contextlib.nullcontext()
    return threadpool_limits(n, user_api="blas")
