"""The streaming PCA fit against scikit-learn."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from embedview import EmbedviewError
from embedview._model.fit import Accumulator


def _fit(x, k, pieces=1):
    acc = Accumulator(x.shape[1])
    for block in np.array_split(x, pieces):
        assert acc.add(np.ascontiguousarray(block.T, dtype=np.float32))
    return acc.basis(k)


@pytest.mark.parametrize("pieces", [1, 7])
def test_matches_sklearn_components_signs_and_variance(pieces):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4000, 32)) * np.linspace(5, 0.5, 32) + 40).astype(np.float32)
    basis = _fit(x, 5, pieces)
    ref = PCA(5, svd_solver="covariance_eigh").fit(x.astype(np.float64))
    assert basis.n_samples == 4000
    np.testing.assert_allclose(basis.mean, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(basis.components, ref.components_, atol=1e-4)
    np.testing.assert_allclose(basis.explained_variance, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(basis.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(basis.project(x.T), ref.transform(x).T, atol=1e-3)


def test_large_mean_does_not_cancel():
    # features with a mean 1000× their spread: the shifted accumulation keeps the covariance exact
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(3000, 8)) * [3, 2, 1, 1, 1, 1, 1, 1] + 1000).astype(np.float32)
    basis = _fit(x, 3, pieces=5)
    ref = PCA(3).fit(x.astype(np.float64))
    np.testing.assert_allclose(basis.explained_variance, ref.explained_variance_, rtol=1e-3)
    assert np.abs(np.abs(basis.components @ ref.components_.T) - np.eye(3)).max() < 1e-3


def test_nonfinite_cells_are_reported_not_added():
    acc = Accumulator(4)
    block = np.ones((4, 10), np.float32)
    block[2, 3] = np.nan
    assert not acc.add(block)
    assert acc.count == 0


def test_bad_component_count_and_empty_fit():
    acc = Accumulator(4)
    with pytest.raises(EmbedviewError, match="no valid cells"):
        acc.basis(2)
    acc.add(np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32))
    with pytest.raises(EmbedviewError, match="choose 1 to 4"):
        acc.basis(5)


def test_projection_refuses_other_channel_count():
    basis = _fit(np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32), 2)
    with pytest.raises(EmbedviewError, match="6"):
        basis.project(np.zeros((5, 3, 3), np.float32))


def test_a_first_piece_with_nan_does_not_poison_the_shift():
    acc = Accumulator(4)
    bad = np.ones((4, 10), np.float32)
    bad[0, 3] = np.nan
    assert not acc.add(bad)
    assert acc.add(np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32))
    assert acc.count == 50 and np.isfinite(acc.shift).all()
