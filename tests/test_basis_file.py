"""A basis on disk: exact round trip, no pickle, clear errors, never half-written."""

import json
import zipfile

import numpy as np
import pytest

import embedview._model.basis_file as basis_file
from embedview import EmbedviewError
from embedview._model.basis_file import VERSION, check_basis_channels, load_basis, save_basis
from embedview._model.colors import colour_ranges
from embedview._model.fit import Accumulator, Basis

ARRAYS = ("mean", "components", "explained_variance", "explained_variance_ratio", "lo", "hi")


@pytest.fixture(scope="module")
def basis():
    rng = np.random.default_rng(0)
    cells = (rng.normal(size=(2000, 12)) * np.linspace(3, 0.5, 12) + 7).astype(np.float32)
    acc = Accumulator(12, expected_cells=cells.shape[0])
    acc.add(cells.T)
    fitted = acc.basis(3)
    lo, hi = colour_ranges(fitted.project(cells.T).T, "robust", fitted.scale_reference)
    return fitted.with_ranges(lo, hi)


@pytest.fixture
def saved(tmp_path, basis):
    return save_basis(tmp_path / "basis.npz", basis, normalize="robust", fitted_on=["a.zarr", "b.zarr"])


def _rewrite(src, dst, *, drop=(), meta=None, **arrays):
    """Copy a basis file with some arrays replaced, dropped, or the metadata edited."""
    with np.load(src, allow_pickle=False) as data:
        content = {name: data[name] for name in data.files if name not in drop}
    if meta is not None:
        old = json.loads(content["metadata"].tobytes().decode())
        content["metadata"] = np.frombuffer(json.dumps({**old, **meta}).encode(), np.uint8)
    content.update(arrays)
    np.savez(dst, **content)
    return dst


def test_round_trip_is_exact(saved, basis):
    loaded, meta = load_basis(saved)
    for name in ARRAYS:
        a, b = getattr(loaded, name), getattr(basis, name)
        assert a.dtype == np.float64 and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    assert (loaded.n_samples, loaded.n_outliers, loaded.scale_reference) == \
        (basis.n_samples, basis.n_outliers, basis.scale_reference)
    features = np.random.default_rng(1).normal(size=(12, 5, 7)).astype(np.float32)
    assert np.array_equal(loaded.project(features), basis.project(features))
    assert meta["format"] == "embedview-basis" and meta["version"] == VERSION
    assert (meta["n_channels"], meta["n_components"], meta["normalize"]) == (12, 3, "robust")
    assert meta["fitted_on"] == ["a.zarr", "b.zarr"] and meta["created"] and meta["embedview_version"]


def test_awkward_scalars_and_extra_survive(tmp_path):
    basis = Basis(np.arange(4.0) / 3, np.eye(2, 4), np.array([2.0, 1.0]), np.array([0.6, 0.3]), 17,
                  lo=np.array([-0.1, -1e-300]), hi=np.array([1 / 3, np.nextafter(0.3, 1)]),  # (7e300: refused)
                  scale_reference=0.1 + 0.2, n_outliers=5)
    path = save_basis(tmp_path / "b.npz", basis, normalize="global", fitted_on=["ü/ß.zarr"],
                      extra={"fit_sample": None, "options": {"outliers": "keep"}})
    loaded, meta = load_basis(path)
    assert loaded.scale_reference == 0.1 + 0.2 and loaded.n_outliers == 5 and loaded.n_samples == 17
    assert loaded.hi.tobytes() == basis.hi.tobytes() and loaded.lo.tobytes() == basis.lo.tobytes()
    assert meta["fitted_on"] == ["ü/ß.zarr"] and meta["options"] == {"outliers": "keep"}


def test_plain_numpy_reads_it_without_pickle(saved):
    with np.load(saved, allow_pickle=False) as data:
        assert set(data.files) == set(ARRAYS) | {"metadata"}
        assert all(data[name].dtype != object for name in data.files)
        assert json.loads(data["metadata"].tobytes().decode("utf-8"))["format"] == "embedview-basis"


def test_a_basis_without_colour_ranges_is_refused(tmp_path, basis):
    with pytest.raises(EmbedviewError, match="no colour ranges"):
        save_basis(tmp_path / "b.npz", Basis(basis.mean, basis.components, basis.explained_variance,
                                             basis.explained_variance_ratio, 10),
                   normalize="robust", fitted_on=[])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, extra, match", [
    ("b.npy", None, "must end in .npz"),
    ("b.npz", {"version": 7}, "must not set version"),
    ("b.npz", {"when": object()}, "not plain JSON"),
    ("b.npz", {"x": float("nan")}, "not plain JSON"),
])
def test_bad_save_requests_write_nothing(tmp_path, basis, name, extra, match):
    with pytest.raises(EmbedviewError, match=match):
        save_basis(tmp_path / name, basis, normalize="robust", fitted_on=[], extra=extra)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, basis, monkeypatch):
    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(basis_file.np, "savez", broken_savez)
    with pytest.raises(EmbedviewError, match="no space left"):
        save_basis(tmp_path / "b.npz", basis, normalize="robust", fitted_on=[])
    assert list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    path = save_basis(tmp_path / "b.npz", basis, normalize="robust", fitted_on=["first"])
    before = path.read_bytes()
    monkeypatch.setattr(basis_file.np, "savez", broken_savez)
    with pytest.raises(EmbedviewError):
        save_basis(path, basis, normalize="robust", fitted_on=["second"])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["b.npz"]


# ---------------------------------------------------------------------------------------------
# errors on load


def test_missing_file(tmp_path):
    with pytest.raises(EmbedviewError, match="does not exist"):
        load_basis(tmp_path / "nothing.npz")


@pytest.mark.parametrize("content", [b"just text\n", b"PK\x03\x04 truncated zip", b""])
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "b.npz"
    path.write_bytes(content)
    with pytest.raises(EmbedviewError, match="not a readable .npz file"):
        load_basis(path)


def test_an_npy_array_is_not_a_basis(tmp_path):
    path = tmp_path / "b.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(EmbedviewError, match=r"single array \(.npy\)"):
        load_basis(path)


def test_a_truncated_basis_is_damaged(saved, tmp_path):
    path = tmp_path / "cut.npz"
    data = saved.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EmbedviewError, match="not a readable .npz file|damaged"):
        load_basis(path)


@pytest.mark.parametrize("metadata", [
    None,                                                         # no marker at all
    np.asarray(json.dumps({"scale": [1, 1]})),                    # a visualization's .npz
    np.frombuffer(json.dumps({"format": "other"}).encode(), np.uint8),
    np.frombuffer(b"\xff\xfe not json", np.uint8),
    np.arange(3.0),
])
def test_other_npz_files_are_not_a_basis(tmp_path, metadata):
    path = tmp_path / "other.npz"
    np.savez(path, rgb=np.zeros((2, 2, 3), np.uint8), **({} if metadata is None else {"metadata": metadata}))
    with pytest.raises(EmbedviewError, match="not an embedview basis"):
        load_basis(path)


def test_unicode_metadata_is_accepted(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as data:
        text = data["metadata"].tobytes().decode()
    path = _rewrite(saved, tmp_path / "u.npz", metadata=np.asarray(text))
    assert load_basis(path)[1]["normalize"] == "robust"


def test_a_newer_version_is_refused(saved, tmp_path):
    with pytest.raises(EmbedviewError, match=f"version {VERSION + 1}, newer .* upgrade embedview"):
        load_basis(_rewrite(saved, tmp_path / "v.npz", meta={"version": VERSION + 1}))
    with pytest.raises(EmbedviewError, match="format version"):
        load_basis(_rewrite(saved, tmp_path / "v.npz", meta={"version": "1"}))


@pytest.mark.parametrize("change, match", [
    ({"mean": np.zeros(11)}, "mean has shape"),
    ({"lo": np.zeros((3, 1))}, "lo has shape"),
    ({"explained_variance": np.zeros(2)}, "explained_variance has shape"),
    ({"components": np.zeros(12)}, "components has shape"),
    ({"hi": np.array([1.0, np.nan, 2.0])}, "NaN or infinite"),
    ({"mean": np.zeros(12, np.int64)}, "not floating-point"),
])
def test_inconsistent_arrays(saved, tmp_path, change, match):
    with pytest.raises(EmbedviewError, match=match):
        load_basis(_rewrite(saved, tmp_path / "bad.npz", **change))


def test_inconsistent_metadata_and_missing_parts(saved, tmp_path):
    with pytest.raises(EmbedviewError, match="metadata says 3 components of 64 channels"):
        load_basis(_rewrite(saved, tmp_path / "m.npz", meta={"n_channels": 64}))
    with pytest.raises(EmbedviewError, match="lacks hi"):
        load_basis(_rewrite(saved, tmp_path / "m.npz", drop=("hi",)))
    with pytest.raises(EmbedviewError, match="no valid n_samples"):
        load_basis(_rewrite(saved, tmp_path / "m.npz", meta={"n_samples": "many"}))


def test_an_object_array_is_damaged_not_unpickled(saved, tmp_path):
    path = _rewrite(saved, tmp_path / "o.npz", lo=np.array([1.0, None, 2.0], dtype=object))
    with pytest.raises(EmbedviewError, match="damaged"):
        load_basis(path)


def test_channel_check(basis):
    check_basis_channels(basis, 12, "a.zarr")
    with pytest.raises(EmbedviewError, match="fitted on embeddings with 12 channels but x.zarr has 64; "):
        check_basis_channels(basis, 64, "x.zarr")


def test_the_zip_has_only_npy_members(saved):
    with zipfile.ZipFile(saved) as z:
        assert sorted(z.namelist()) == sorted(f"{n}.npy" for n in (*ARRAYS, "metadata"))
