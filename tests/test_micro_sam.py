"""embedview.micro_sam against micro_sam's own output and a literal port of its code.

``data/micro_sam/CASE_expected.npz`` holds what micro_sam 1.8.14's
``project_embeddings_for_visualization`` returned on ``CASE.zarr`` (see the README there).
scikit-learn and scikit-image are oracles here only; the package does not use them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from embedview import EmbedviewError
from embedview.micro_sam import _resize_axis, compute_pca, project_embeddings_for_visualization

DATA = Path(__file__).parent / "data" / "micro_sam"



CASES = ["2d", "2d_tall", "2d_thin", "2d_zarr2", "3d", "tiled2d", "tiled2d_zarr2", "tiled3d"]


def _open(case: str) -> dict:
    root = zarr.open_group(DATA / f"{case}.zarr", mode="r")
    return {"features": root["features"], "input_size": root.attrs["input_size"],
            "original_size": root.attrs["original_size"]}


def _assert_matches(rgb, scale, components, components_scale, expected):
    """micro_sam's output up to float rounding: rgb within ±2, components within 1e-3 std."""
    assert rgb.shape == expected["rgb"].shape and rgb.dtype == np.uint8
    assert components.shape == expected["components"].shape and components.dtype == np.float32
    assert np.allclose(scale, expected["scale"]) and len(scale) == len(expected["scale"])
    assert np.allclose(components_scale, expected["components_scale"])
    diff = np.abs(rgb.astype(int) - expected["rgb"].astype(int))
    assert np.mean(diff <= 2) >= 0.99
    want = expected["components"].reshape(-1, components.shape[-1])
    err = np.abs(components.reshape(want.shape) - want).max(axis=0)
    assert np.all(err <= 1e-3 * want.std(axis=0))


# ---------------------------------------------------------------------------------------------
# micro_sam's own output


@pytest.mark.parametrize("case", CASES)
def test_matches_micro_sam(case):
    embeddings = _open(case)
    rgb, scale = project_embeddings_for_visualization(embeddings)
    components, components_scale = project_embeddings_for_visualization(embeddings, as_rgb=False)
    _assert_matches(rgb, scale, components, components_scale, np.load(DATA / f"{case}_expected.npz"))


@pytest.mark.parametrize("case", ["2d", "3d"])
def test_numpy_features_same_as_zarr(case):
    embeddings = _open(case)
    loaded = {**embeddings, "features": np.asarray(embeddings["features"])}
    rgb, scale = project_embeddings_for_visualization(loaded)
    components, components_scale = project_embeddings_for_visualization(loaded, as_rgb=False)
    _assert_matches(rgb, scale, components, components_scale, np.load(DATA / f"{case}_expected.npz"))


def test_compute_pca_on_a_stack_is_per_slice():
    features = _open("3d")["features"]
    stack = compute_pca(features, n_components=2, as_rgb=False)
    one = compute_pca(np.asarray(features[3]), n_components=2, as_rgb=False)
    assert stack.shape == (5, 64, 64, 2) and stack.dtype == np.float32
    np.testing.assert_allclose(stack[3], one, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# files micro_sam cannot show


def _masked():
    return _open("tiled2d_masked")


def _filled_copy(embeddings, rng, channels=8):
    """The masked file with its missing tiles filled with random features, in memory.

    Only the first ``channels`` channels are kept: the geometry is what matters here.
    """
    features = embeddings["features"]
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    group = root.create_group("features")
    attrs = dict(features.attrs)
    attrs.pop("tiles_in_mask")
    group.attrs.update(attrs)
    template = np.asarray(features["0"])[:, :channels]
    n_tiles = math.prod(-(-s // t) for s, t in zip(attrs["shape"], attrs["tile_shape"]))
    for tile in range(n_tiles):
        data = (np.asarray(features[str(tile)])[:, :channels] if str(tile) in features
                else rng.normal(template.mean(), template.std(), template.shape).astype(np.float32))
        group.create_array(str(tile), data=data)
    return {**embeddings, "features": group}


def test_masked_file_gives_a_picture():
    embeddings = _masked()
    assert list(embeddings["features"].attrs["tiles_in_mask"]) == [0, 1]
    rgb, scale = project_embeddings_for_visualization(embeddings)
    components, _ = project_embeddings_for_visualization(embeddings, as_rgb=False)

    # The picture micro_sam would draw if the tiles existed: same shape and scale.
    filled = _filled_copy(embeddings, np.random.default_rng(0))
    full_rgb, full_scale = project_embeddings_for_visualization(filled)
    oracle_rgb, oracle_scale = _seed_project(filled)
    assert rgb.shape == full_rgb.shape == oracle_rgb.shape
    assert np.allclose(scale, full_scale) and np.allclose(scale, oracle_scale)

    missing = np.isnan(components[..., 0])
    assert np.isnan(components[missing]).all()
    assert (rgb[missing] == 0).all()
    # Tiles 0 and 1 are drawn; tile 2 (end of the first row) and the second row are not.
    assert 0.3 < missing.mean() < 0.7
    assert missing[-1].all() and not missing[0, 0]
    assert rgb[~missing].max() == 255
    # Missing cells stay out of the fit: the drawn cells' components are centred.
    drawn = components[~missing]
    assert np.all(np.abs(drawn.mean(axis=0)) < 1e-3 * drawn.std(axis=0))


# ---------------------------------------------------------------------------------------------
# compute_pca


def _elf_pca(x, n_components, as_rgb):
    """elf.segmentation.embeddings.embedding_pca, transposed as micro_sam does."""
    from sklearn.decomposition import PCA

    c, h, w = x.shape
    out = PCA(n_components).fit_transform(x.reshape(c, -1).T).T.reshape(n_components, h, w)
    if as_rgb:
        out = (255 * (out - out.min()) / np.ptp(out)).astype("uint8")
    return out.transpose(1, 2, 0)


@pytest.mark.parametrize("as_rgb", [True, False])
def test_compute_pca_matches_elf(as_rgb):
    rng = np.random.default_rng(1)
    scales = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.5, 0.5, 0.5], np.float32)[:, None, None]
    features = (rng.normal(size=(2, 1, 8, 20, 24)) * scales + 3).astype(np.float32)
    k = 3 if as_rgb else 4
    got = compute_pca(features, k, as_rgb)
    want = np.stack([_elf_pca(f[0], k, as_rgb) for f in features])
    assert got.shape == want.shape == (2, 20, 24, k) and got.dtype == want.dtype
    if as_rgb:
        assert np.abs(got.astype(int) - want).max() <= 1
    else:
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert compute_pca(features[1], k, as_rgb).shape == (20, 24, k)


@pytest.mark.parametrize("shape", [(8, 16, 16), (1, 1, 1, 8, 16, 16), (2, 8, 16, 16)])
def test_compute_pca_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"have shape \[.*\]; expected \(1, C, h, w\)"):
        compute_pca(np.zeros(shape, np.float32))


def test_as_rgb_needs_three_components():
    features = np.zeros((1, 8, 16, 16), np.float32)
    with pytest.raises(EmbedviewError, match="as_rgb=True needs n_components=3"):
        compute_pca(features, n_components=2)
    with pytest.raises(ValueError, match="as_rgb=True needs n_components=3"):
        project_embeddings_for_visualization(_open("2d"), n_components=4)


def test_nonfinite_features_are_refused():
    features = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32)
    features[0, 3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        compute_pca(features)


# ---------------------------------------------------------------------------------------------
# the resize


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(0, 2), st.integers(1, 12), st.integers(0, 25), st.integers(0, 2**32 - 1))
def test_resize_matches_skimage(ndim, axis, m, extra, seed):
    from skimage.transform import resize

    axis = axis % ndim
    rng = np.random.default_rng(seed)
    shape = [int(s) for s in rng.integers(1, 5, ndim)]
    shape[axis] = m
    x = (rng.normal(size=shape) * 10).astype(np.float32)
    out_shape = list(shape)
    out_shape[axis] = m + extra
    got = _resize_axis(x, m + extra, axis)
    want = resize(x, out_shape)
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1.0, np.abs(x).max()))


def test_resize_refuses_to_shrink():
    with pytest.raises(ValueError, match="only enlarging"):
        _resize_axis(np.zeros((3, 5)), 4, axis=1)


# ---------------------------------------------------------------------------------------------
# tiled geometry beyond the fixtures, against a literal port of micro_sam's code


def _seed_blocks(shape, tile_shape, halo):
    """nifty.tools.blocking: C-order blocks; outer = inner ± halo, clipped."""
    grid = [-(-s // t) for s, t in zip(shape, tile_shape)]
    for tile in range(grid[0] * grid[1]):
        pos = divmod(tile, grid[1])
        inner = [(p * t, min((p + 1) * t, s)) for p, t, s in zip(pos, tile_shape, shape)]
        outer = [(max(a - h, 0), min(b + h, s)) for (a, b), h, s in zip(inner, halo, shape)]
        yield tile, pos, inner, outer


def _seed_get_crop(embed_shape, shape):
    if shape[0] == shape[1]:
        return np.s_[:, :, :]
    if shape[0] > shape[1]:
        return np.s_[:, :int(float(shape[1] / shape[0]) * embed_shape[1])]
    return np.s_[:int(float(shape[0] / shape[1]) * embed_shape[0]), :]


def _seed_resize_and_concatenate(arrays, axis):
    from skimage.transform import resize

    resize_axis = -1 if axis == -2 else -2
    resize_len = max(arr.shape[resize_axis] for arr in arrays)
    axis_ = arrays[0].ndim + resize_axis
    return np.concatenate(
        [resize(arr, tuple(resize_len if i == axis_ else s for i, s in enumerate(arr.shape))) for arr in arrays],
        axis=axis)


def _seed_project(embeddings, n_components=3, as_rgb=True):
    """micro_sam.visualization._project_tiled_embeddings, with sklearn/skimage, no nifty."""
    features = embeddings["features"]
    shape, tile_shape, halo = (list(features.attrs[k]) for k in ("shape", "tile_shape", "halo"))
    grid = [-(-s // t) for s, t in zip(shape, tile_shape)]
    embeds = [[None] * grid[1] for _ in range(grid[0])]
    for tile, (i, j), inner, outer in _seed_blocks(shape, tile_shape, halo):
        tile_embeds = features[str(tile)][:]
        outer_shape = tuple(b - a for a, b in outer)
        crop = _seed_get_crop(tile_embeds.shape[-2:], outer_shape)
        crop = (tile_embeds.ndim - len(crop)) * (slice(None),) + crop
        this = tile_embeds[crop]
        tile_scale = tuple(e / float(f) for e, f in zip(this.shape[-2:], outer_shape))
        bb = tuple(slice(int(np.round((a - o) * s)), int(np.round((b - o) * s)))
                   for (a, b), (o, _), s in zip(inner, outer, tile_scale))
        embeds[i][j] = this[(tile_embeds.ndim - 2) * (slice(None),) + bb]
    stitched = _seed_resize_and_concatenate(
        [_seed_resize_and_concatenate(row, axis=-1) for row in embeds], axis=-2)
    if stitched.ndim == 4:
        vis = _elf_pca(stitched[0], n_components, as_rgb)
        full = tuple(shape)
    else:
        vis = np.stack([_elf_pca(s[0], n_components, as_rgb) for s in stitched])
        full = (stitched.shape[0],) + tuple(shape)
    return vis, tuple(float(s) / v for s, v in zip(full, vis.shape))


def _synthetic_tiles(shape, tile_shape, halo, n_slices=None, grid=16, seed=0):
    """A tiled ImageEmbeddings dict in memory, 6 channels of distinct variance per cell."""
    rng = np.random.default_rng(seed)
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    group = root.create_group("features")
    group.attrs.update(shape=list(shape), tile_shape=list(tile_shape), halo=list(halo))
    # Distinct variances per channel keep the principal components well separated.
    scales = np.array([6.0, 3.0, 1.5, 0.5, 0.5, 0.5], np.float32)[:, None, None]
    lead = (1,) if n_slices is None else (n_slices, 1)
    n_tiles = math.prod(-(-s // t) for s, t in zip(shape, tile_shape))
    for tile in range(n_tiles):
        data = rng.normal(size=lead + (6, grid, grid)) * scales + 1
        group.create_array(str(tile), data=data.astype(np.float32))
    return {"features": group, "input_size": None, "original_size": None}


GEOMETRIES = [
    # shape, tile_shape, halo, slices: row widths differ, non-square tiles, thin last tiles, a stack
    ((300, 500), (128, 128), (16, 16), None),
    ((250, 180), (100, 64), (10, 20), None),
    ((140, 300), (128, 96), (0, 8), None),  # one-row pieces stretched to nine
    ((200, 260), (96, 96), (16, 16), 2),
]


@pytest.mark.parametrize("shape, tile_shape, halo, n_slices", GEOMETRIES)
def test_tiled_geometry_matches_the_seed(shape, tile_shape, halo, n_slices):
    embeddings = _synthetic_tiles(shape, tile_shape, halo, n_slices, seed=sum(shape))

    got, scale = project_embeddings_for_visualization(embeddings, 3, as_rgb=False)
    want, want_scale = _seed_project(embeddings, 3, as_rgb=False)
    assert got.shape == want.shape and scale == pytest.approx(want_scale)
    want_std = want.reshape(-1, 3).std(axis=0)
    assert np.all(np.abs(got - want).reshape(-1, 3).max(axis=0) <= 1e-4 * want_std)

    rgb, _ = project_embeddings_for_visualization(embeddings)
    want_rgb, _ = _seed_project(embeddings)
    assert np.abs(rgb.astype(int) - want_rgb).max() <= 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scikit-image dividing by zero, in the seed
def test_thin_last_tiles_give_a_picture():
    # An image just taller than two tiles: the last tile row is 2 pixels, and micro_sam keeps
    # no cells of the first tile there, so its resize fails. Here that piece is drawn black.
    embeddings = _synthetic_tiles((1026, 600), (512, 512), (64, 64), grid=64)
    with pytest.raises(ValueError):
        _seed_project(embeddings)
    components, scale = project_embeddings_for_visualization(embeddings, as_rgb=False)
    rgb, _ = project_embeddings_for_visualization(embeddings)
    assert components.shape == (115, 94, 3) and rgb.shape == (115, 94, 3)
    assert scale == pytest.approx((1026 / 115, 600 / 94))
    missing = np.isnan(components[..., 0])
    assert missing[-1, :57].all() and not missing[-1, 57:].any() and not missing[:-1].any()
    assert (rgb[-1, :57] == 0).all()
