"""The BLAS thread limit is set inside the block and restored after it."""

import numpy as np
from threadpoolctl import threadpool_info

from embedview._common.threads import blas_threads


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_threads_sets_and_restores():
    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    before = _blas_threads()
    assert before, "threadpoolctl sees no BLAS: the test would check nothing"
    with blas_threads(1):
        assert set(_blas_threads()) <= {1}
        assert (np.eye(3) @ np.eye(3) == np.eye(3)).all()
    assert _blas_threads() == before
