"""Comparable colours and exploration: reusable bases, joint fits, masks, foreground, similarity, clusters."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import embedview

import _synthetic as syn

SIZE = (1024, 1024)  # 64×64 cells of 16 pixels: output pixel (i, j) is cell (i, j)


def _scene(seed, n_materials=5, weights=None, channels=32, noise=0.3, protos=None):
    rng = np.random.default_rng(seed)
    protos = syn.prototypes(n_materials, channels, seed=0) if protos is None else protos
    labels = rng.choice(n_materials, size=(64, 64), p=weights)
    return labels, syn.features_from_labels(labels, protos, noise=noise, seed=seed)[None], protos


def _material_colours(vis, labels, materials):
    rgb = vis.rgb.reshape(-1, 3).astype(float)
    return np.array([rgb[labels.ravel() == m].mean(0) for m in materials])


def _min_distance(colours):
    n = len(colours)
    return min(np.linalg.norm(colours[i] - colours[j]) for i in range(n) for j in range(i))


def test_a_basis_fitted_on_a_gives_b_the_same_colours(tmp_path):
    labels_a, a, protos = _scene(1, weights=[0.5, 0.2, 0.1, 0.1, 0.1], noise=0.05)
    labels_b, b, _ = _scene(2, weights=[0.1, 0.1, 0.2, 0.2, 0.4], noise=0.05, protos=protos)
    vis_a = embedview.visualize(a, original_size=SIZE)
    path = embedview.PCA.from_basis(vis_a.basis).save(tmp_path / "basis.npz", fitted_on=["a"])
    loaded = embedview.PCA.load(path)
    basis = loaded.basis_
    assert loaded.n_channels_ == 32 and loaded.fitted_on_ == str(path)
    for name in ("mean", "components", "explained_variance", "lo", "hi"):
        np.testing.assert_array_equal(getattr(basis, name), getattr(vis_a.basis, name))
    vis_b = loaded.transform(b, original_size=SIZE)
    materials = range(5)
    same = np.abs(_material_colours(vis_a, labels_a, materials) - _material_colours(vis_b, labels_b, materials))
    assert same.max() <= 2
    # Fitted on its own, B's colours differ: the basis is what keeps them.
    alone = embedview.visualize(b, original_size=SIZE)
    assert np.abs(_material_colours(alone, labels_b, materials) - _material_colours(vis_a, labels_a, materials)).max() > 20


def test_a_basis_with_other_channels_is_refused():
    _, a, _ = _scene(1)
    basis = embedview.visualize(a, original_size=SIZE).basis
    other = np.zeros((1, 16, 64, 64), np.float32)
    with pytest.raises(embedview.EmbedviewError, match="32 channels.*16"):
        embedview.PCA.from_basis(basis).transform(other, original_size=SIZE)


def test_joint_fit_over_several_inputs():
    labels_a, a, protos = _scene(1, weights=[0.5, 0.2, 0.1, 0.1, 0.1], noise=0.05)
    labels_b, b, _ = _scene(2, weights=[0.1, 0.1, 0.2, 0.2, 0.4], noise=0.05, protos=protos)
    sources = [embedview.open_source(x, SIZE) for x in (a, b)]
    vis_a, vis_b = embedview.PCA().fit_transform(*sources)
    assert vis_a.basis is vis_b.basis and vis_a.basis.n_samples == 2 * 64 * 64
    materials = range(5)
    assert np.abs(_material_colours(vis_a, labels_a, materials) - _material_colours(vis_b, labels_b, materials)).max() <= 2
    # The same basis as fit alone, and the same pictures as applying it one by one.
    basis = embedview.PCA().fit(*sources).basis_
    np.testing.assert_allclose(basis.components, vis_a.basis.components, atol=1e-9)
    np.testing.assert_array_equal(basis.lo, vis_a.basis.lo)
    np.testing.assert_array_equal(embedview.PCA.from_basis(basis).transform(sources[1]).rgb, vis_b.rgb)
    with pytest.raises(embedview.EmbedviewError, match="different numbers of channels"):
        embedview.PCA().fit(sources[0], embedview.open_source(np.zeros((1, 8, 64, 64), np.float32), SIZE))


def test_mask_fits_only_under_the_mask_and_draws_the_rest_dark():
    labels, x, _ = _scene(3)
    mask = np.zeros(SIZE, bool)
    mask[:512] = True  # cells of rows 0..31
    vis, = embedview.PCA().fit_transform(x, original_size=SIZE, mask=mask)
    assert vis.basis.n_samples == 32 * 64
    assert vis.valid[:32].all() and not vis.valid[32:].any()
    assert (vis.rgb[32:] == 0).all()
    expected = embedview.visualize(x[:, :, :32], original_size=(512, 1024)).basis
    np.testing.assert_allclose(np.abs(vis.basis.components), np.abs(expected.components), atol=1e-6)
    with pytest.raises(embedview.EmbedviewError, match="shape"):
        embedview.PCA().fit_transform(x, original_size=SIZE, mask=np.ones((10, 10), bool))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_foreground_auto_separates_what_the_background_squeezed(seed):
    # 80% of cells are one material; five others share the rest.
    rng = np.random.default_rng(seed)
    protos = syn.prototypes(6, 32, seed=seed)
    labels = np.zeros((64, 64), int)
    minority = rng.random((64, 64)) < 0.2
    labels[minority] = rng.integers(1, 6, size=minority.sum())
    x = syn.features_from_labels(labels, protos, noise=0.3)[None]
    plain = embedview.visualize(x, original_size=SIZE)
    fg, = embedview.PCA().fit_transform(x, original_size=SIZE, foreground="auto")
    (rule,) = fg.foreground
    assert 0.15 < rule.fraction < 0.25
    assert (fg.valid == minority).mean() > 0.99  # the background is dropped, drawn dark
    materials = range(1, 6)
    assert _min_distance(_material_colours(fg, labels, materials)) >= 2 * _min_distance(_material_colours(plain, labels, materials))
    # The threshold and side can be set.
    flipped, = embedview.PCA().fit_transform(x, original_size=SIZE, foreground={
        "threshold": rule.threshold, "side": "below" if rule.side == "above" else "above"})
    assert (flipped.valid == ~minority).mean() > 0.99


def test_similarity_map_is_the_cosine_at_the_pca_geometry():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, 16, 64, 64)).astype(np.float32)
    shape = (600, 900)  # padding rows: cells 0..42 hold the image
    sim = embedview.similarity(features, point=(300, 450), original_size=shape)
    vis = embedview.visualize(features, original_size=shape)
    assert sim.scale == vis.scale and sim.translate == vis.translate and sim.rgb.shape == vis.rgb.shape
    s = 900 / 64
    i, j = int(300.5 // s), int(450.5 // s)
    values = sim.components[..., 0]
    assert values[i, j] == 1.0
    x = features[0].reshape(16, -1).astype(np.float64)
    q = x[:, i * 64 + j]
    cos = (q @ x / np.linalg.norm(q) / np.linalg.norm(x, axis=0)).reshape(64, 64)
    np.testing.assert_allclose(values, cos[: values.shape[0]], atol=1e-6)
    # The mean of a mask as the query; at image resolution too.
    mask = np.zeros(shape, bool)
    mask[:100, :100] = True
    by_mask = embedview.similarity(features, mask=mask, original_size=shape, pixel_size=1)
    assert by_mask.rgb.shape == (600, 900, 3) and by_mask.scale == (1.0, 1.0)
    centres = (np.arange(64) + 0.5) * s
    inside = np.flatnonzero(centres < 100)
    mean = features[0][:, inside][:, :, inside].reshape(16, -1).astype(np.float64).mean(axis=1)
    expect = (mean @ x / np.linalg.norm(mean) / np.linalg.norm(x, axis=0)).reshape(64, 64)
    np.testing.assert_allclose(by_mask.components[200, 300, 0], expect[int(200.5 // s), int(300.5 // s)], atol=1e-6)


def test_similarity_on_stacks_and_bad_points(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 64, 64)).astype(np.float32)
    sim = embedview.similarity(x, point=(2, 10, 10), original_size=(64, 64))
    assert sim.components.shape == (64, 64, 1) and sim.components[10, 10, 0] == 1.0
    with pytest.raises(embedview.EmbedviewError, match="stack"):
        embedview.similarity(x, point=(10, 10), original_size=(64, 64))
    with pytest.raises(embedview.EmbedviewError, match="outside"):
        embedview.similarity(x[0], point=(64, 3), original_size=(64, 64))
    with pytest.raises(embedview.EmbedviewError, match="not both"):
        embedview.similarity(x[0], original_size=(64, 64))


@pytest.mark.filterwarnings("ignore:visualize\\(clust:FutureWarning")  # the pipeline's own clusters, kept for the old keywords
def test_clusters_recover_the_materials():
    labels, x, _ = _scene(5, noise=0.3)
    vis = embedview.visualize(x, original_size=SIZE, n_components=4, clusters=5)
    assert vis.labels.shape == (64, 64) and vis.labels.min() == 0
    assert adjusted_rand_score(labels.ravel(), vis.labels.ravel()) >= 0.9
    again = embedview.visualize(x, original_size=SIZE, n_components=4, clusters=5)
    np.testing.assert_array_equal(again.labels, vis.labels)  # seeded
    colours = {tuple(c) for c in vis.rgb.reshape(-1, 3)}
    assert len(colours) == 5
    with pytest.raises(embedview.EmbedviewError, match="cluster_components"):
        embedview.visualize(x, original_size=SIZE, clusters=5, cluster_components=7)
