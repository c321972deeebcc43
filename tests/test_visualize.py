"""visualize() on synthetic embeddings whose right picture is known."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA

import embedview
from embedview import EmbedviewError
from embedview._common.geometry import Tiling
from embedview._workflows.demo import write_micro_sam_embeddings

import _synthetic as syn

M, C = 5, 12


def _single(shape, seed=0, grid=64):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, M, size=(grid, grid))
    protos = syn.prototypes(M, C, seed)
    return labels, protos, syn.features_from_labels(labels, protos)[None]


@pytest.mark.parametrize("shape", [(600, 900), (100, 2000), (1300, 700), (1024, 1024), (37, 50)])
def test_single_image_is_exact_at_every_pixel(shape):
    labels, protos, features = _single(shape)
    truth = syn.exact_single(labels, shape)
    vis = embedview.visualize(features, n_components=M - 1, original_size=shape, pixel_size=1)
    assert vis.rgb.shape == shape + (3,) and vis.scale == (1.0, 1.0) and vis.translate == (0.0, 0.0)
    assert (syn.decode(vis.components, protos, vis.basis) == truth).all()

    # at the embedding grid, drawn through scale/translate (nearest, as napari does), too
    grid = embedview.visualize(features, n_components=M - 1, original_size=shape)
    (sy, sx), (ty, tx) = grid.scale, grid.translate
    rows = np.floor((np.arange(shape[0]) - ty) / sy + 0.5).astype(int)
    cols = np.floor((np.arange(shape[1]) - tx) / sx + 0.5).astype(int)
    shown = syn.decode(grid.components, protos, grid.basis)[np.ix_(rows, cols)]
    assert (shown == truth).all()
    # and only cells covering the image were drawn
    assert grid.rgb.shape[:2] == tuple(int(np.ceil(n * 64 / max(shape))) for n in shape)


def test_fit_uses_only_cells_covering_the_image():
    shape = (100, 2000)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(1, C, 64, 64)).astype(np.float32)
    features[..., 4:, :] = 1000  # padding cells must not enter the fit
    vis = embedview.visualize(features, original_size=shape)
    valid = features[0, :, :4, :].reshape(C, -1).T  # ceil(100 * 64 / 2000) = 4 rows
    ref = PCA(3).fit(valid.astype(np.float64))
    assert vis.basis.n_samples == valid.shape[0]
    np.testing.assert_allclose(vis.basis.components, ref.components_, atol=1e-4)
    np.testing.assert_allclose(vis.basis.mean, ref.mean_, rtol=1e-5, atol=1e-5)


def _tiled_case(shape=(700, 1000), tile=(256, 320), halo=(32, 48), seed=0, n_slices=None, drop=()):
    tiling = Tiling(shape, tile, halo)
    rng = np.random.default_rng(seed)
    protos = syn.prototypes(M, C, seed)
    labels, tiles = {}, {}
    for t in range(tiling.n_tiles):
        if t in drop:
            continue
        labels[t] = rng.integers(0, M, size=(64, 64))
        x = syn.features_from_labels(labels[t], protos)[None]
        tiles[t] = x if n_slices is None else np.repeat(x[None], n_slices, axis=0)
    return tiling, protos, labels, tiles


def test_tiled_image_with_halo_is_exact_at_every_pixel(tmp_path):
    tiling, protos, labels, tiles = _tiled_case()
    path = write_micro_sam_embeddings(tmp_path / "tiled.zarr", tiles, original_size=tiling.shape,
                                      tile_shape=tiling.tile_shape, halo=tiling.halo)
    vis = embedview.visualize(path, n_components=M - 1, pixel_size=1)
    assert vis.layout == "tiled" and vis.rgb.shape == tiling.shape + (3,)
    assert (syn.decode(vis.components, protos, vis.basis) == syn.exact_tiled(labels, tiling)).all()


def test_tiled_grid_output_uses_interior_tile_cells():
    tiling, protos, labels, tiles = _tiled_case()
    group = syn.memory_tiled_group(tiles, tiling)
    vis = embedview.visualize({"features": group, "input_size": None, "original_size": None})
    s = max(256 + 64, 320 + 96) / 64
    assert vis.scale == (s, s) and vis.translate == (s / 2 - 0.5, s / 2 - 0.5)
    assert vis.rgb.shape[:2] == (int(np.ceil(700 / s)), int(np.ceil(1000 / s)))
    # every output pixel shows the cell under its centre: compare with the exact pixel map
    # (a centre past the image edge is looked up at the last pixel centre)
    ys = np.minimum((np.arange(vis.rgb.shape[0]) + 0.5) * s, 699.5)
    xs = np.minimum((np.arange(vis.rgb.shape[1]) + 0.5) * s, 999.5)
    truth = syn.exact_tiled(labels, tiling, ys=ys, xs=xs)
    assert (syn.decode(vis.components, protos, vis.basis) == truth).all()


def test_masked_tiles_are_drawn_black_not_an_error(tmp_path):
    tiling, protos, labels, tiles = _tiled_case(drop=(1, 4))
    path = write_micro_sam_embeddings(tmp_path / "masked.zarr", tiles, original_size=tiling.shape,
                                      tile_shape=tiling.tile_shape, halo=tiling.halo,
                                      tiles_in_mask=sorted(tiles))
    vis = embedview.visualize(path, n_components=M - 1, pixel_size=1)
    truth = syn.exact_tiled(labels, tiling)
    assert (syn.decode(vis.components, protos, vis.basis) == truth).all()
    assert (vis.rgb[truth == -1] == 0).all() and not vis.valid[truth == -1].any()


def _stack(n_slices=4, shape=(300, 400), noise=0.0):
    rng = np.random.default_rng(5)
    protos = syn.prototypes(M, C, 5)
    labels = []
    for z in range(n_slices):
        # each slice has other proportions of the materials: a per-slice fit moves the colours
        p = rng.dirichlet(np.ones(M) * 0.7)
        labels.append(rng.choice(M, size=(64, 64), p=p))
    features = np.stack([syn.features_from_labels(lab, protos, noise, seed=z)[None]
                         for z, lab in enumerate(labels)])
    return protos, labels, features


def _material_colours(vis, labels, shape):
    colours = []
    for z, lab in enumerate(labels):
        truth = syn.exact_single(lab, shape)
        rgb = vis.rgb[z]
        colours.append([np.median(rgb[truth == m], axis=0) if (truth == m).any() else np.full(3, np.nan)
                        for m in range(M)])
    return np.array(colours)  # (Z, M, 3)


def test_joint_fit_keeps_a_material_colour_across_slices():
    protos, labels, features = _stack(noise=0.05)
    shape = (300, 400)
    joint = embedview.visualize(features, original_size=shape, pixel_size=1)
    assert joint.rgb.shape == (4, 300, 400, 3) and joint.scale == (1.0, 1.0, 1.0)
    colours = _material_colours(joint, labels, shape)
    spread = np.nanmax(colours, axis=0) - np.nanmin(colours, axis=0)
    assert np.nanmax(spread) <= 2
    per_slice = embedview.visualize(features, original_size=shape, pixel_size=1, fit="per_slice")
    assert len(per_slice.bases) == 4
    colours = _material_colours(per_slice, labels, shape)
    assert np.nanmax(np.nanmax(colours, axis=0) - np.nanmin(colours, axis=0)) > 20


def test_high_norm_tokens_do_not_wash_out_the_picture():
    rng = np.random.default_rng(7)
    n_mat = 4
    protos = syn.prototypes(n_mat, 64, seed=7)
    labels = rng.integers(0, n_mat, size=(64, 64))
    features = syn.features_from_labels(labels, protos, noise=0.5)
    flat = features.reshape(64, -1)
    outliers = rng.choice(flat.shape[1], size=int(0.003 * flat.shape[1]), replace=False)
    norm = np.linalg.norm(flat - flat.mean(1, keepdims=True), axis=0).mean()
    direction = rng.normal(size=(64, outliers.size))
    flat[:, outliers] = flat.mean(1, keepdims=True) + 30 * norm * direction / np.linalg.norm(direction, axis=0)

    def min_distance(normalize, mode="exclude"):
        vis, = embedview.PCA(normalize=normalize, outliers=mode).fit_transform(features[None], original_size=(1024, 1024))
        rgb = vis.rgb.reshape(-1, 3).astype(float)
        keep = np.ones(rgb.shape[0], bool)
        keep[outliers] = False
        means = np.array([rgb[keep & (labels.ravel() == m)].mean(0) for m in range(n_mat)])
        return min(np.linalg.norm(means[i] - means[j]) for i in range(n_mat) for j in range(i))

    assert min_distance("robust") >= 60
    # both halves matter: the seed's normalisation washes out, and kept outliers turn the axes
    assert min_distance("global") < 30
    assert min_distance("robust", mode="keep") < 40


def test_sources_agree_path_dict_array(tmp_path):
    labels, protos, features = _single((600, 900))
    path = write_micro_sam_embeddings(tmp_path / "single.zarr", features, original_size=(600, 900))
    import zarr
    root = zarr.open_group(str(path), mode="r")
    a = embedview.visualize(path)
    b = embedview.visualize({"features": root["features"], "input_size": root.attrs["input_size"],
                             "original_size": root.attrs["original_size"]})
    c = embedview.visualize(features, original_size=(600, 900))
    assert (a.rgb == b.rgb).all() and (a.rgb == c.rgb).all()
    assert a.layout == "single" and a.image_shape == (600, 900)


def test_as_components_and_channel_selection():
    labels, protos, features = _single((600, 900))
    vis = embedview.visualize(features, original_size=(600, 900), n_components=4, rgb_components=(3, 0, 1))
    assert vis.components.shape == (43, 64, 4) and vis.components.dtype == np.float32
    ref = embedview.visualize(features, original_size=(600, 900), n_components=4)
    assert (vis.rgb[..., 1] == ref.rgb[..., 0]).all()
    with pytest.raises(EmbedviewError, match="rgb_components"):
        embedview.visualize(features, original_size=(600, 900), rgb_components=(0, 5))


def test_constant_features_give_mid_grey():
    features = np.full((1, 8, 64, 64), 3.25, np.float32)
    vis = embedview.visualize(features, original_size=(64, 64))
    assert (vis.rgb == 128).all() and np.isfinite(vis.components).all()


@pytest.mark.parametrize("normalize", ["channel", "global"])
def test_normalize_modes_span_the_range(normalize):
    labels, protos, features = _single((600, 900))
    vis = embedview.visualize(features, original_size=(600, 900), normalize=normalize)
    assert vis.rgb.max() == 255 and vis.rgb.min() == 0


def test_nonfinite_features_raise_or_are_omitted():
    labels, protos, features = _single((640, 640))
    features = np.repeat(features[None], 3, axis=0)  # a stack
    features[1, 0, 2, 5:8, 10] = np.nan
    features[1, 0, 0, 20, 20] = np.inf
    with pytest.raises(EmbedviewError, match=r"4 cells of slice 1 .* nonfinite='omit'"):
        embedview.visualize(features, original_size=(640, 640))
    vis, = embedview.PCA(M - 1, nonfinite="omit").fit_transform(features, original_size=(640, 640))
    assert vis.basis.n_samples == 3 * 64 * 64 - 4
    assert (vis.rgb[1, 5:8, 10] == 0).all() and (vis.rgb[1, 20, 20] == 0).all()
    assert vis.valid.sum() == 3 * 64 * 64 - 4


@pytest.mark.parametrize("kwargs, match", [
    ({"n_components": 13}, "choose 1 to 12"),
    ({"n_components": 0}, "choose 1 to 12"),
    ({"fit": "slices"}, "fit must be one of"),
    ({"normalize": "minmax"}, "normalize must be one of"),
    ({"execution": "threads"}, "execution must be an embedview.Execution"),
    ({"pixel_size": 0}, "pixel_size"),
])
def test_bad_options(kwargs, match):
    _, _, features = _single((100, 100))
    with pytest.raises(EmbedviewError, match=match):
        embedview.visualize(features, original_size=(100, 100), **kwargs)


@pytest.mark.parametrize("shape", [(12, 64, 64), (2, 2, 12, 64, 64), (1, 12, 64, 64, 1)])
def test_wrong_ndim(shape):
    with pytest.raises(EmbedviewError, match=r"expected \(1, C, h, w\)"):
        embedview.visualize(np.zeros(shape, np.float32), original_size=(100, 100))


def test_plain_array_needs_original_size():
    with pytest.raises(EmbedviewError, match="original_size"):
        embedview.visualize(np.zeros((1, 12, 64, 64), np.float32))


def test_per_slice_basis_access():
    _, _, features = _stack()
    vis = embedview.visualize(features, original_size=(300, 400), fit="per_slice")
    with pytest.raises(EmbedviewError, match="bases"):
        vis.basis


def test_sampled_fit_stays_within_two_levels_of_the_exact_fit():
    # well separated principal axes (std 16, 4, 1): a sample of half the cells finds them
    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.normal(size=(C, C)))
    latent = rng.normal(size=(10, 64, 64, 3)) * [16, 4, 1]
    features = (latent @ q[:3] + 0.05 * rng.normal(size=(10, 64, 64, C))).astype(np.float32)
    features = np.moveaxis(features, -1, 1)[:, None]
    exact, = embedview.PCA(fit_sample=None).fit_transform(features, original_size=(512, 512))
    sampled, = embedview.PCA(fit_sample=20000).fit_transform(features, original_size=(512, 512))
    assert exact.basis.n_samples == 10 * 64 * 64
    assert 19000 < sampled.basis.n_samples < 21000
    close = np.abs(exact.rgb.astype(int) - sampled.rgb).max(axis=-1) <= 2
    assert close.mean() >= 0.99
    again, = embedview.PCA(fit_sample=20000).fit_transform(features, original_size=(512, 512))
    assert (again.rgb == sampled.rgb).all()  # seeded


def test_sampled_fit_still_reports_nonfinite_cells_it_skipped():
    protos, labels, features = _stack(n_slices=3)
    features[2, 0, :, 10, 10] = np.nan
    with pytest.raises(EmbedviewError, match="1 cells of slice 2"):
        embedview.PCA(fit_sample=1000).fit_transform(features, original_size=(300, 400))
    with pytest.raises(EmbedviewError, match="fit_sample"):
        embedview.PCA(fit_sample=10).fit_transform(features, original_size=(300, 400))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(20, 260), w=st.integers(20, 260), th=st.integers(24, 128), tw=st.integers(24, 128),
       hy=st.integers(0, 24), hx=st.integers(0, 24), p=st.sampled_from([1, 1.5, 3, 7.25]),
       seed=st.integers(0, 10**6))
def test_any_tiling_is_drawn_exactly(h, w, th, tw, hy, hx, p, seed):
    tiling = Tiling((h, w), (th, tw), (hy, hx))
    rng = np.random.default_rng(seed)
    protos = syn.prototypes(M, C, seed % 7)
    grid = 8
    labels = {t: rng.integers(0, M, size=(grid, grid)) for t in range(tiling.n_tiles)}
    tiles = {t: syn.features_from_labels(lab, protos)[None] for t, lab in labels.items()}
    vis = embedview.visualize({"features": syn.memory_tiled_group(tiles, tiling), "input_size": None,
                               "original_size": None}, n_components=M - 1, pixel_size=p)
    ny, nx = vis.rgb.shape[:2]
    assert (ny, nx) == (int(np.ceil(h / p)), int(np.ceil(w / p)))
    # every output pixel whose centre lies on the image shows the cell under that centre
    ys, xs = (np.arange(ny) + 0.5) * p, (np.arange(nx) + 0.5) * p
    ys, xs = ys[ys < h], xs[xs < w]
    truth = syn.exact_tiled(labels, tiling, grid=grid, ys=ys, xs=xs)
    shown = syn.decode(vis.components, protos, vis.basis)
    assert (shown[:ys.size, :xs.size] == truth).all()
    assert (shown >= 0).all()  # and overhanging pixels are drawn too


@pytest.mark.parametrize("shape", [(600, 900), (100, 2000), (1300, 700)])
def test_default_grid_starts_at_the_image_edge_and_its_last_cell_overhangs(shape):
    """One geometry: the embedding grid starts at the image's top-left edge, a partial last cell
    overhangs the bottom/right edge by less than a cell (that is where it lies); no stretching."""
    features = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
    vis = embedview.visualize(features, original_size=shape)
    s = max(shape) / 64
    for n, p, t, k in zip(shape, vis.scale, vis.translate, vis.rgb.shape[:2]):
        assert p == s and t - p / 2 == -0.5
        assert n - 0.5 <= t + (k - 0.5) * p < n - 0.5 + s
    for bad in ("fit", "tight"):
        with pytest.raises(embedview.EmbedviewError, match="pixel_size must be a number"):
            embedview.visualize(features, original_size=shape, pixel_size=bad)


def test_reprs_are_short_and_dump_no_arrays():
    vis = embedview.visualize(np.random.default_rng(0).random((1, 8, 64, 64), np.float32), original_size=(600, 900))
    text, basis = repr(vis), repr(vis.basis)
    assert text.startswith("Visualization(single, image 600×900, rgb 43×64×3 uint8, scale=(14.0625, 14.0625)")
    assert basis.startswith("Basis(3 components of 8 channels, explained_variance_ratio=[")
    assert len(text) < 200 and len(basis) < 200 and "array" not in text + basis


def test_a_visualization_shows_itself_in_a_notebook(tmp_path):
    """Jupyter's ``_repr_png_``: a small picture (long side ≤ 512; a stack's middle slice) over a
    legend with its scale and what its colours show."""
    import io

    from PIL import Image

    vis = embedview.visualize(np.random.default_rng(0).random((1, 8, 64, 64), np.float32), original_size=(600, 900))
    assert vis.summary().startswith("1 pixel = 14.0625 image pixels; R: PC1 ")
    picture = np.asarray(Image.open(io.BytesIO(vis._repr_png_())))
    assert picture.shape[1] == 256 and picture.shape[0] > 4 * 43  # enlarged 4×, legend under it
    np.testing.assert_array_equal(picture[:4 * 43:4, :4 * 64:4, :3], vis.rgb)
    big = embedview.visualize(np.random.default_rng(1).random((3, 1, 8, 64, 64), np.float32),
                              original_size=(600, 900), pixel_size=1, rgb_components=(2, 0, 1))
    assert big.summary().startswith("slice 1 of 3; 1 pixel = 1 image pixel; R: PC3 ")
    shown = np.asarray(Image.open(io.BytesIO(big._repr_png_())))
    assert max(shown.shape[:2]) <= 512 + 60 and shown.shape[1] <= 512
    np.testing.assert_array_equal(shown[:300, :, :3], big.rgb[1, ::2, ::2][:300])
    on_disk = embedview.PCA.from_basis(vis.basis).transform(
        np.zeros((1, 8, 64, 64), np.float32), original_size=(600, 900), output=tmp_path / "a.zarr")
    assert on_disk._repr_png_() is None and "a.zarr" in repr(on_disk)
    assert "1 basis of 3 components" in repr(vis)
