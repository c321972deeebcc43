"""The BLAS thread limit is set inside the block and restored after it."""

import numpy as np
import pytest

from embedview._threads import _bundled_openblas, _bundled_openblas_limit, blas_threads


def test_bundled_openblas_limit_sets_and_restores():
    calls = _bundled_openblas()
    if calls is None:
        pytest.skip("numpy does not bundle an OpenBLAS here")
    get, _ = calls
    before = get()
    with _bundled_openblas_limit(1):
        assert get() == 1
        np.ones((64, 64)) @ np.ones((64, 64))
    assert get() == before


def test_blas_threads_is_a_context_manager():
    with blas_threads(1):
        assert (np.eye(3) @ np.eye(3) == np.eye(3)).all()
