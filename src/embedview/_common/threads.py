"""How many threads BLAS may use while embedview works.

OpenBLAS threads spin between matrix products; next to the threads that read and decompress
pieces they take the cores those need (on 2 cores, a 300-slice stack takes 4.9 s instead of
3.7 s). threadpoolctl (a dependency) sets the limit for whichever BLAS numpy uses.
"""

from __future__ import annotations

import os


def blas_threads(n: int | None = None):
    """Context manager limiting BLAS to ``n`` threads (default: all cores but the two readers').

    Examples
    --------
    >>> import numpy as np
    >>> with blas_threads(1):
    ...     _ = np.ones((4, 4)) @ np.ones((4, 4))
    """
    from threadpoolctl import threadpool_limits

    if n is None:
        n = max(1, (os.cpu_count() or 1) - 2)
    return threadpool_limits(n, user_api="blas")
