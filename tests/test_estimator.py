"""The estimator (PCA), Execution, cluster(), the one pipeline for several inputs, visualize's
ten parameters and the deprecation helper."""

import inspect
import warnings

import numpy as np
import pytest

import embedview
from embedview import EmbedviewError
from embedview._common.deprecation import deprecate_parameters

from _fixtures import DATA

SIZE = (120, 180)


def _features(seed, channels=8, shape=(1, 16, 16)):
    x = np.random.default_rng(seed).normal(size=(shape[0], channels) + shape[1:]).astype(np.float32)
    x[:, :2] += np.linspace(-3, 3, shape[-1], dtype=np.float32)  # some structure to fit
    return x


def _same(a, b):
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.components, b.components)
    assert a.scale == b.scale and a.translate == b.translate


def test_fit_two_transform_a_third_save_load_is_identical(tmp_path):
    model = embedview.PCA(n_components=3).fit(DATA / "2d.zarr", DATA / "2d_tall.zarr")
    assert model.components_.shape == (3, model.n_channels_) and model.mean_.shape == (model.n_channels_,)
    assert model.basis_.lo is not None and len(model.explained_variance_ratio_) == 3
    first = model.transform(DATA / "2d_thin.zarr")
    path = model.save(tmp_path / "basis.npz", fitted_on=["2d.zarr", "2d_tall.zarr"])
    again = embedview.PCA.load(path).transform(DATA / "2d_thin.zarr")
    _same(first, again)
    # the older functions read and write the same file (deprecated, with their versions)
    with pytest.warns(FutureWarning, match=r"load_basis\(\) is deprecated since embedview 0.2 and will be removed in 0.3"):
        basis, meta = embedview.load_basis(path)
    np.testing.assert_array_equal(basis.components, model.components_)
    assert meta["fitted_on"] == ["2d.zarr", "2d_tall.zarr"]
    _same(embedview.PCA.from_basis(basis).transform(DATA / "2d_thin.zarr"), first)


def test_existing_basis_files_load(tmp_path):
    with pytest.warns(FutureWarning, match=r"fit_basis\(\) is deprecated"):
        basis = embedview.fit_basis([DATA / "2d.zarr", DATA / "tiled2d.zarr"])
    with pytest.warns(FutureWarning, match=r"save_basis\(\) is deprecated"):
        path = embedview.save_basis(tmp_path / "old.npz", basis, normalize="channel", fitted_on=["x"])
    model = embedview.PCA.load(path)
    assert model.normalize == "channel" and model.n_components == basis.n_components
    _same(model.transform(DATA / "3d.zarr"), embedview.PCA.from_basis(basis).transform(DATA / "3d.zarr"))


def test_one_basis_over_mixed_layouts_equals_drawing_each_alone():
    paths = [DATA / "2d.zarr", DATA / "3d.zarr", DATA / "tiled2d.zarr"]
    model = embedview.PCA()
    together = model.fit_transform(*paths)
    assert [v.layout for v in together] == ["single", "stack", "tiled"]
    assert all(v.basis is together[0].basis for v in together)
    for path, vis in zip(paths, together):
        _same(vis, model.transform(path))
    fitted = embedview.PCA().fit(*paths)
    np.testing.assert_array_equal(fitted.components_, model.components_)
    np.testing.assert_array_equal(fitted.basis_.lo, model.basis_.lo)


def test_mask_foreground_and_sample_reach_every_input():
    a, b = _features(0), _features(1)
    mask = np.zeros(SIZE, bool)
    mask[:80] = True
    for kwargs, params in (({"mask": mask}, {}), ({"foreground": "auto"}, {}),
                           ({}, {"fit_sample": 1000}), ({"foreground": {"side": "below"}}, {})):
        model = embedview.PCA(**params)
        va, vb = model.fit_transform(a, b, original_size=SIZE, **kwargs)
        _same(va, model.transform(a, original_size=SIZE, mask=kwargs.get("mask")))
        _same(vb, model.transform(b, original_size=SIZE, mask=kwargs.get("mask")))
    assert len(embedview.PCA().fit(a, b, original_size=SIZE, foreground="auto").foreground_) == 1


def test_per_slice_and_execution():
    model = embedview.PCA(fit_mode="per_slice")
    vis, = model.fit_transform(DATA / "3d.zarr")
    assert len(model.bases_) == len(vis.bases) > 1
    _same(vis, model.transform(DATA / "3d.zarr"))
    with pytest.raises(EmbedviewError, match="bases_"):
        model.basis_
    with pytest.raises(EmbedviewError, match="slices"):
        model.transform(DATA / "2d.zarr")
    with pytest.raises(EmbedviewError, match="per_slice"):
        model.fit(DATA / "3d.zarr", DATA / "3d.zarr")
    threads = embedview.PCA(execution=embedview.Execution(scheduler="threads"))
    _same(threads.fit_transform(DATA / "tiled2d.zarr")[0], embedview.PCA().fit_transform(DATA / "tiled2d.zarr")[0])


def test_estimator_contract():
    model = embedview.PCA(5, fit_mode="per_slice", fit_sample=2000)
    assert repr(model) == "PCA(n_components=5, fit_mode='per_slice', fit_sample=2000)"
    assert repr(embedview.PCA()) == "PCA()" and not model.is_fitted and not hasattr(model, "bases_")
    with pytest.raises(EmbedviewError, match="not fitted"):
        model.transform(DATA / "2d.zarr")
    with pytest.raises(EmbedviewError, match="normalize"):
        embedview.PCA(normalize="nope").fit(DATA / "2d.zarr")
    with pytest.raises(EmbedviewError, match="nonfinite must be one of"):
        embedview.PCA(nonfinite="drop").fit(DATA / "2d.zarr")
    assert embedview.PCA().fit(_features(0), original_size=SIZE).n_channels_ == 8


def test_visualize_has_at_most_ten_parameters_and_old_keywords_warn():
    assert len(inspect.signature(embedview.visualize).parameters) <= 10
    x = _features(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = embedview.visualize(x, original_size=SIZE, nonfinite="omit", outliers="keep")
    assert [str(w.message).split(";")[0] for w in caught if w.category is FutureWarning] == [
        "visualize(nonfinite=...) is deprecated since embedview 0.2 and will be removed in 0.3",
        "visualize(outliers=...) is deprecated since embedview 0.2 and will be removed in 0.3"]
    assert "use PCA(nonfinite=...).fit_transform(source) instead" in str(caught[0].message)
    _same(old, embedview.PCA(nonfinite="omit", outliers="keep").fit_transform(x, original_size=SIZE)[0])
    with pytest.warns(FutureWarning, match="Execution"):
        embedview.visualize(x, original_size=SIZE, scheduler="threads")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedview.visualize(x, original_size=SIZE)  # the new API warns about nothing


def test_basis_no_longer_overrides_fit_or_n_components():
    x = _features(3)
    basis = embedview.visualize(x, original_size=SIZE, n_components=4).basis
    # visualize(basis=...) is deprecated (PCA.from_basis(basis).transform) but still checked
    with pytest.warns(FutureWarning, match=r"PCA.from_basis\(basis\).transform"):
        assert embedview.visualize(x, original_size=SIZE, basis=basis).basis.n_components == 4
    with pytest.warns(FutureWarning):
        embedview.visualize(x, original_size=SIZE, basis=basis, n_components=4)  # agreeing is fine
    with pytest.raises(EmbedviewError, match="n_components=3 but the basis given has 4"), pytest.warns(FutureWarning):
        embedview.visualize(x, original_size=SIZE, basis=basis, n_components=3)
    with pytest.raises(EmbedviewError, match="fit='per_slice'"), pytest.warns(FutureWarning):
        embedview.visualize(x, original_size=SIZE, basis=basis, fit="per_slice")


def test_cluster_is_a_function_of_visualizations():
    a = embedview.visualize(_features(0), original_size=SIZE)
    b = embedview.PCA.from_basis(a.basis).transform(_features(1), original_size=SIZE)  # one basis: one space
    la, lb = embedview.cluster([a, b], 3, components=2)
    assert la.labels.shape == a.rgb.shape[:2] and la.centres[0] is lb.centres[0]
    assert set(np.unique(la.labels)) | set(np.unique(lb.labels)) <= {-1, 0, 1, 2}
    single = embedview.cluster(a, 3, components=2, seed=0)
    assert single.rgb.dtype == np.uint8 and single.labels.max() <= 2
    with pytest.raises(EmbedviewError, match="cluster_components"):
        embedview.cluster(a, 3, components=9)


def test_deprecate_parameters_routes_old_keywords():
    def full(x, y=1, old=None):
        return (x, y, old)

    @deprecate_parameters({"old": "y"}, route=full)
    def f(x, y=1):
        return full(x, y)

    assert f(1) == (1, 1, None)
    with pytest.warns(FutureWarning, match=r"f\(old=...\) is deprecated since embedview 0.2 and will be removed in 0.3; use y instead"):
        assert f(2, old=5) == (2, 1, 5)
    assert list(inspect.signature(f).parameters) == ["x", "y"]


@pytest.mark.filterwarnings("ignore:visualize\\(foreground:FutureWarning")
def test_foreground_rule_is_saved_with_the_basis(tmp_path):
    a, b = _features(4), _features(5)
    model = embedview.PCA().fit(a, original_size=SIZE, foreground="auto")
    path = model.save(tmp_path / "fg.npz")
    loaded = embedview.PCA.load(path)
    assert loaded.foreground_ == model.foreground_
    _same(loaded.transform(b, original_size=SIZE), model.transform(b, original_size=SIZE))
    with pytest.raises(EmbedviewError, match="a basis was given"), pytest.warns(FutureWarning):
        embedview.visualize(b, original_size=SIZE, basis=loaded.basis_, foreground="auto")


def test_cluster_runs_one_kmeans_per_basis():
    """Per-slice bases (or separately fitted pictures) project into different spaces: each basis
    gets its own centres; planes of one basis share theirs, so a label means the same in each."""
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 16, 16)).astype(np.float32)
    per_slice = embedview.cluster(embedview.visualize(x, original_size=(64, 64), fit="per_slice"), 3)
    assert len(per_slice.centres) == 3 and per_slice.labels.shape == (3, 16, 16)
    for z in range(3):  # each slice labelled as if it were clustered alone, with its own basis
        alone = embedview.cluster(embedview.visualize(x[z], original_size=(64, 64)), 3)
        np.testing.assert_array_equal(per_slice.centres[z], alone.centres[0])
        np.testing.assert_array_equal(per_slice.labels[z], alone.labels)
    a, b = (embedview.visualize(x[:, :, :, :, ::-1] if flip else x, original_size=(64, 64)) for flip in (0, 1))
    la, lb = embedview.cluster([a, b], 3)
    assert not np.array_equal(la.centres[0], lb.centres[0])
    same = embedview.PCA.from_basis(a.basis).transform(x, original_size=(64, 64))
    la, ls = embedview.cluster([a, same], 3)
    assert la.centres[0] is ls.centres[0]
    np.testing.assert_array_equal(la.labels, ls.labels)


# -- the estimator's contract (issue 16): scikit-learn as the oracle -------------------------------


def test_sklearn_clone_get_params_and_set_params():
    from sklearn.base import clone

    model = embedview.PCA(5, fit_mode="per_slice", normalize="channel", fit_sample=2000,
                          execution=embedview.Execution(scheduler="threads"))
    signature = list(inspect.signature(embedview.PCA).parameters)
    assert sorted(model.get_params(deep=True)) == sorted(model.get_params(deep=False)) == sorted(signature)
    copy = clone(model)  # sklearn checks that every parameter comes back as the same object
    assert copy is not model and copy.get_params() == model.get_params() and not copy.is_fitted
    assert clone(embedview.PCA()).get_params() == embedview.PCA().get_params()
    assert model.set_params(n_components=4, outliers="keep") is model
    assert model.get_params()["n_components"] == 4 and model.outliers == "keep"
    assert embedview.PCA(**model.get_params()).get_params() == model.get_params()  # round trip
    with pytest.raises(EmbedviewError, match="not a parameter of PCA.*fit_mode"):
        model.set_params(fit="joint")
    for name in signature:  # stored under its own name, as given
        assert getattr(model, name) is model.get_params()[name]


def test_fit_is_the_method_and_the_old_keyword_warns_with_its_schedule():
    with pytest.warns(FutureWarning, match=r"PCA\(fit=...\) is deprecated since embedview 0.2 and will be "
                                           r"removed in 0.3; use PCA\(fit_mode=...\)"):
        model = embedview.PCA(fit="per_slice")
    assert model.fit_mode == "per_slice" and callable(model.fit)
    with pytest.raises(EmbedviewError, match="pass fit_mode= only"):
        embedview.PCA(fit="joint", fit_mode="joint")


def test_is_fitted_is_the_estimators_own_check():
    model = embedview.PCA()
    assert not model.is_fitted and not model.__sklearn_is_fitted__()
    with pytest.raises(EmbedviewError, match="not fitted"):
        model.check_is_fitted()
    model.fit(_features(0), original_size=SIZE)
    assert model.is_fitted and model.__sklearn_is_fitted__() and model.check_is_fitted() is model.bases_


def test_fit_transform_returns_a_list_whatever_the_number_of_inputs():
    model = embedview.PCA()
    one = model.fit_transform(_features(0), original_size=SIZE)
    two = model.fit_transform(_features(0), _features(1), original_size=SIZE)
    assert isinstance(one, list) and isinstance(two, list) and (len(one), len(two)) == (1, 2)
    assert type(model.transform(_features(0), original_size=SIZE)).__name__ == "Visualization"


def test_a_fitted_model_says_so_in_its_repr(tmp_path):
    model = embedview.PCA(n_components=3)
    assert repr(model) == "PCA()"
    model.fit(_features(0), _features(1), original_size=SIZE)
    assert repr(model) == "PCA() fitted: 3 components of 8 channels on 2 inputs"
    path = model.save(tmp_path / "b.npz")
    assert repr(embedview.PCA.load(path)) == f"PCA() fitted: 3 components of 8 channels, from {path}"
    stack = embedview.PCA(2, fit_mode="per_slice").fit(DATA / "3d.zarr")
    assert repr(stack).startswith("PCA(n_components=2, fit_mode='per_slice') fitted: 2 components of ")
    assert f"per slice ({len(stack.bases_)} slices) on 1 input" in repr(stack)


def test_load_refuses_parameters_of_a_fit_it_does_not_do(tmp_path):
    model = embedview.PCA(normalize="channel").fit(_features(0), original_size=SIZE)
    path = model.save(tmp_path / "b.npz")
    for name, value in (("normalize", "global"), ("n_components", 3), ("fit_sample", 5000),
                        ("outliers", "keep"), ("fit_mode", "joint")):
        with pytest.raises(EmbedviewError, match=f"{name}= describes a fit"):
            embedview.PCA.load(path, **{name: value})
        with pytest.raises(EmbedviewError, match=f"{name}= describes a fit"):
            embedview.PCA.from_basis(model.basis_, **{name: value})
    loaded = embedview.PCA.load(path, nonfinite="omit")  # what drawing uses may be given
    assert loaded.normalize == "channel" and loaded.nonfinite == "omit"
    with pytest.raises(EmbedviewError, match="a basis file is given by its path"):
        embedview.PCA.load(None)


def test_every_deprecation_names_its_versions_and_none_outlives_its_removal():
    import embedview._run.joint  # noqa: F401  (registers its wrappers)
    import embedview._run.similarity  # noqa: F401
    from embedview._common.deprecation import SCHEDULE
    from embedview._common.version import __version__

    def version(text):
        return tuple(int(p) for p in text.split(".")[:2])

    names = {what for what, _, _ in SCHEDULE}
    assert {"fit_basis()", "visualize_many()", "save_basis()", "load_basis()", "PCA(fit=)",
            "visualize(device=)", "visualize(progress=)", "render_plane(device=)", "similarity(progress=)"} <= names
    for what, since, removed_in in SCHEDULE:
        assert version(since) < version(removed_in), what
        assert version(__version__) < version(removed_in), f"{what} was to be removed in {removed_in}"


def test_compatibility_wrappers_warn_and_still_work():
    a, b = _features(0), _features(1)
    with pytest.warns(FutureWarning, match=r"visualize_many\(\) is deprecated since embedview 0.2"):
        va, vb = embedview.visualize_many([embedview.open_source(x, SIZE) for x in (a, b)])
    joint = embedview.PCA().fit_transform(a, b, original_size=SIZE)
    _same(va, joint[0])
    _same(vb, joint[1])
    with pytest.warns(FutureWarning, match=r"render_plane\(device=...\) is deprecated"):
        rgb, _ = embedview.render_plane(embedview.open_source(a, SIZE), va.basis, 4, device="cpu")
    np.testing.assert_array_equal(rgb, embedview.render_plane(embedview.open_source(a, SIZE), va.basis, 4)[0])
    src = embedview.open_source(a, SIZE)
    with pytest.warns(FutureWarning, match=r"similarity\(progress=...\) is deprecated.*Execution\(progress=True\)"):
        old = embedview.similarity(src, (5, 5), progress=False)
    np.testing.assert_array_equal(old.components, embedview.similarity(src, (5, 5)).components)
    assert "similarity" in repr(old) and old.summary().endswith("1.0 at its cell")
    assert "Piece" not in embedview.__all__ and embedview.Piece.__name__ == "Piece"  # importable, not advertised
    assert "fit_basis" not in embedview.__all__ and {"PCA", "Draw", "Output", "Execution"} <= set(embedview.__all__)


def test_run_takes_the_settings_objects_whole(tmp_path):
    model = embedview.PCA()
    draw = embedview.Draw(pixel_size=4, rgb_components=(2, 1, 0))
    vis, = model.run([_features(0)], draw, original_size=SIZE)
    _same(vis, model.transform(_features(0), original_size=SIZE, pixel_size=4, rgb_components=(2, 1, 0)))
    written, = model.run([_features(0)], draw, [embedview.Output(tmp_path / "a.zarr", metadata={"k": 1})],
                         refit=False, original_size=SIZE)
    assert written.path == tmp_path / "a.zarr" and written.rgb is None
    with pytest.raises(EmbedviewError, match="rgb_components"):
        embedview.PCA().fit_transform(_features(0), original_size=SIZE, rgb_components="abc")
