"""Seeded k-means: recovers synthetic materials, deterministic, bounded, clear errors."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score  # test-only dependency

import embedview._model.clusters as clusters
from embedview import EmbedviewError
from embedview._model.clusters import assign, cluster, kmeans, label_colours, labels_to_rgb


def blobs(n, k=5, m=3, spread=0.6, seed=0):
    """``n`` points around ``k`` random centres in ``m`` dims, with unequal cluster sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, m))
    truth = rng.choice(k, size=n, p=np.linspace(1, 3, k) / np.linspace(1, 3, k).sum())
    return (centres[truth] + rng.normal(scale=spread, size=(n, m))).astype(np.float32), truth


@pytest.mark.parametrize("k, m", [(5, 3), (8, 6), (3, 2)])
def test_recovers_synthetic_materials(k, m):
    points, truth = blobs(4000, k=k, m=m, seed=k)
    labels, centres = cluster(points, k)
    assert centres.shape == (k, m) and labels.dtype == np.int32
    assert adjusted_rand_score(truth, labels) >= 0.9


def test_same_seed_same_result_and_labels_ordered():
    points, _ = blobs(3000)
    c1, i1 = kmeans(points, 5, seed=3)
    c2, i2 = kmeans(points, 5, seed=3)
    assert np.array_equal(c1, c2) and i1 == i2
    assert (np.diff(c1[:, 0]) <= 0).all()  # label 0 has the largest first coordinate
    # Clean clusters: another seed finds the same clusters, and the ordering the same numbers.
    c3, _ = kmeans(points, 5, seed=11)
    assert np.allclose(c1, c3) and np.array_equal(assign(points, c1), assign(points, c3))


def test_large_inputs_are_fitted_on_a_subsample(monkeypatch):
    points, truth = blobs(60_000, seed=2)
    sizes = []
    lloyd = clusters._lloyd
    monkeypatch.setattr(clusters, "_lloyd", lambda x, *a: sizes.append(x.shape[0]) or lloyd(x, *a))
    centres, _ = kmeans(points, 5, sample=3000, n_init=2)
    assert sizes == [3000, 3000]
    assert adjusted_rand_score(truth, assign(points, centres)) >= 0.9
    assert np.array_equal(centres, kmeans(points, 5, sample=3000, n_init=2)[0])


def test_assignment_in_chunks_matches_one_piece(monkeypatch):
    points, _ = blobs(5000)
    points[::7] = np.nan
    centres, _ = kmeans(points[np.isfinite(points).all(axis=1)], 5)
    whole = assign(points, centres)
    monkeypatch.setattr(clusters, "_CHUNK_ELEMENTS", 64)
    assert np.array_equal(assign(points, centres), whole)
    assert (whole[::7] == -1).all() and (np.delete(whole, np.s_[::7]) >= 0).all()


def test_nan_rows_get_minus_one_and_are_not_fitted():
    points, truth = blobs(3000)
    points[5] = np.nan
    points[9, 1] = np.inf
    labels, centres = cluster(points, 5)
    assert labels[5] == labels[9] == -1 and np.isfinite(centres).all()
    keep = labels >= 0
    assert adjusted_rand_score(truth[keep], labels[keep]) >= 0.9
    with pytest.raises(EmbedviewError, match="2 of 3000 points .* NaN or infinite"):
        kmeans(points, 5)


def test_too_many_clusters():
    points = np.repeat(np.array([[0.0, 1.0], [2.0, 3.0], [5.0, 5.0]]), 20, axis=0)
    with pytest.raises(EmbedviewError, match="only 3 distinct values; choose at most 3"):
        kmeans(points, 4)
    assert kmeans(points, 3)[1] == 0.0
    with pytest.raises(EmbedviewError, match="cannot make 5 clusters of 4 points"):
        kmeans(np.arange(8.0).reshape(4, 2), 5)
    with pytest.raises(EmbedviewError, match="whole number"):
        kmeans(points, 0)
    with pytest.raises(EmbedviewError, match="no cell has finite"):
        cluster(np.full((4, 2), np.nan), 2)


def test_an_empty_cluster_restarts_at_the_farthest_point():
    points, truth = blobs(2000, k=3, seed=4)
    x = points.astype(np.float64)
    start = np.array([x[truth == 0].mean(0), x[truth == 1].mean(0) + 0.01, [1e6, 1e6, 1e6]])
    centres = clusters._lloyd(x, start, 100, 1e-8)
    assert np.abs(centres).max() < 100  # the far centre found points
    assert len(np.unique(assign(points, centres))) == 3


def test_palette():
    assert label_colours(20).shape == (20, 3)
    many = label_colours(40)
    assert many.dtype == np.uint8 and len({tuple(c) for c in many}) == 40
    assert not (many == 0).all(axis=1).any()  # black is kept for "no label"
    assert np.array_equal(many[:20], label_colours(20))
    rgb = labels_to_rgb(np.array([[0, 1], [-1, 39]]), 40)
    assert rgb.shape == (2, 2, 3) and rgb[1, 0].tolist() == [0, 0, 0]
    assert rgb[1, 1].tolist() == many[39].tolist()
    with pytest.raises(EmbedviewError, match="labels must lie in -1"):
        labels_to_rgb(np.array([3]), 3)


@pytest.mark.parametrize("seed", range(3))
def test_inertia_matches_scikit_learn(seed):
    """Seeded k-means++ and Lloyd reach scikit-learn's inertia (within 1 %) on the same points."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (6, 3))
    points = np.concatenate([c + rng.normal(0, 1, (400, 3)) for c in centres])
    _, inertia = kmeans(points, 6, seed=seed)
    reference = KMeans(6, n_init=4, random_state=seed).fit(points).inertia_
    assert inertia <= 1.01 * reference
