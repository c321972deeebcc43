"""The PyTorch engine (``device="cuda"``) against the numpy one, run on PyTorch's CPU build."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import embedview  # noqa: E402
from embedview import EmbedviewError  # noqa: E402
from embedview._model.engines import engine_for  # noqa: E402
from embedview._model.fit import Accumulator  # noqa: E402
from embedview._model.torch_engine import TorchAccumulator, TorchEngine, _ieee_float32  # noqa: E402

DATA = Path(__file__).parent / "data" / "micro_sam"


@pytest.fixture(scope="module")
def engine():
    return TorchEngine("cpu")


def _cells(n=12_000, c=48, seed=0, mean=300.0, outliers=0):
    """Cells ``(c, n)`` with a large mean, well-separated variances and ``outliers`` far cells."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(c, n)) * np.geomspace(8, 0.5, c)[:, None] + mean
    if outliers:
        x[:, rng.choice(n, outliers, replace=False)] += 60 * rng.normal(size=(c, 1))
    return x.astype(np.float32)


def _both(x, engine, pieces=6, expected=None, k=5):
    numpy_acc = Accumulator(x.shape[0], expected_cells=expected)
    torch_acc = engine.accumulator(x.shape[0], expected_cells=expected)
    for block in np.array_split(x, pieces, axis=1):
        block = np.ascontiguousarray(block)
        assert numpy_acc.add(block) and torch_acc.add(block)
    return numpy_acc.basis(k), torch_acc.basis(k)


def _assert_same_basis(a, b, rtol=1e-4):
    assert a.n_samples == b.n_samples and a.n_outliers == b.n_outliers
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-6, atol=1e-6 * np.abs(a.mean).max())
    np.testing.assert_allclose(b.explained_variance, a.explained_variance, rtol=rtol)
    np.testing.assert_allclose(b.explained_variance_ratio, a.explained_variance_ratio, rtol=rtol)
    # the same signs: compared directly, no abs()
    np.testing.assert_allclose(b.components, a.components, atol=rtol)


@pytest.mark.parametrize("expected", [None, 12_000])
def test_accumulator_matches_numpy(engine, expected):
    a, b = _both(_cells(), engine, expected=expected)
    assert isinstance(engine.accumulator(4), TorchAccumulator)
    _assert_same_basis(a, b)


def test_high_norm_outliers_are_left_out_alike(engine):
    x = _cells(outliers=40)
    a, b = _both(x, engine, expected=x.shape[1])
    assert a.n_outliers == 40
    _assert_same_basis(a, b)


def test_too_many_far_cells_for_the_buffer_are_kept_alike(engine):
    # 3% far cells: more than the buffer holds, so neither engine removes any
    x = _cells(n=6000, outliers=180)
    a, b = _both(x, engine, pieces=3, expected=x.shape[1])
    assert a.n_outliers == b.n_outliers == 0
    _assert_same_basis(a, b)


def test_nonfinite_piece_adds_nothing(engine):
    x = _cells(n=300, c=6)
    acc = engine.accumulator(6, expected_cells=600)
    bad = x.copy()
    bad[2, 7] = np.inf
    assert not acc.add(bad)
    assert acc.count == 0
    bad[2, 7] = np.nan
    assert not acc.add(bad)
    # a bad first piece must not fix the shift or the outlier bar: the next piece fits normally
    assert acc.add(x) and acc.count == 300
    ref = Accumulator(6, expected_cells=600)
    ref.add(x)
    _assert_same_basis(ref.basis(3), acc.basis(3))


def test_empty_pieces_and_3d_pieces(engine):
    x = _cells(n=400, c=8)
    acc = engine.accumulator(8)
    assert acc.add(np.zeros((8, 0), np.float32)) and acc.count == 0
    assert acc.add(x.reshape(8, 20, 20)) and acc.count == 400
    ref = Accumulator(8)
    ref.add(x)
    _assert_same_basis(ref.basis(3), acc.basis(3))


def test_merge_of_partials(engine):
    if not hasattr(Accumulator, "merge"):
        pytest.skip("Accumulator.merge does not exist yet")
    x = _cells(outliers=20)
    whole, _ = _both(x, engine, expected=x.shape[1])
    first = np.ascontiguousarray(x[:, :4000])
    parts = [engine.accumulator(x.shape[0], expected_cells=x.shape[1]) for _ in range(2)]
    parts[0].add(first)
    parts[1].shift, parts[1].bar = parts[0].shift, parts[0].bar  # partials share shift and bar
    parts[1].add(np.ascontiguousarray(x[:, 4000:]))
    _assert_same_basis(whole, parts[0].merge(parts[1]).basis(5))


def test_projection_matches_numpy(engine):
    x = _cells(n=4096, c=32)
    basis = _both(x, engine, k=3)[0]
    features = x.reshape(32, 64, 64)[:, :40, :50]  # a strided view, as the pipeline passes
    got = engine.project(basis, features)
    want = basis.project(features)
    assert got.shape == want.shape == (3, 40, 50) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(x).max())
    assert engine.project(basis, features) is not got  # a fresh array each time
    with pytest.raises(EmbedviewError, match="32"):
        engine.project(basis, np.zeros((5, 3, 3), np.float32))


def test_read_only_and_float64_input(engine):
    x = _cells(n=500, c=8)
    ro = x.copy()
    ro.flags.writeable = False
    acc = engine.accumulator(8)
    assert acc.add(ro)
    basis = acc.basis(2)
    np.testing.assert_allclose(engine.project(basis, x.astype(np.float64)), basis.project(x), atol=1e-3)


def test_tf32_setting_is_overridden_and_restored():
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with _ieee_float32(torch):
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_engine_for_torch_devices():
    assert engine_for("torch:cpu").name == "torch:cpu"
    assert engine_for("cpu").name == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_says_so(device):
    with pytest.raises(EmbedviewError, match=r"CUDA.*device='cpu'") as info:
        engine_for(device)
    message = str(info.value)
    assert torch.__version__ in message and "\n" not in message
    if torch.version.cuda is None:
        assert "without CUDA" in message


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps_says_so():
    with pytest.raises(EmbedviewError, match=r"MPS.*device='cpu'"):
        engine_for("mps")


@pytest.mark.parametrize("device", ["gpu", "torch:cuda:x", "tpu", "cuda:-1"])
def test_unknown_device(device):
    with pytest.raises(EmbedviewError, match="device"):
        engine_for(device)


def test_missing_torch_is_explained(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(EmbedviewError, match=r"needs PyTorch.*embedview\[torch\]"):
        TorchEngine("cuda")


def test_import_embedview_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, embedview, embedview._model.engines; embedview.visualize; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- end to end ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["2d", "3d", "tiled2d"])
def test_visualize_torch_cpu_matches_numpy(case):
    want = embedview.visualize(DATA / f"{case}.zarr", execution=embedview.Execution(device="cpu"))
    got = embedview.visualize(DATA / f"{case}.zarr", execution=embedview.Execution(device="torch:cpu"))
    _assert_same_basis(want.basis, got.basis)
    np.testing.assert_allclose(got.basis.lo, want.basis.lo, rtol=1e-4, atol=1e-4 * np.abs(want.basis.lo).max())
    np.testing.assert_allclose(got.basis.hi, want.basis.hi, rtol=1e-4, atol=1e-4 * np.abs(want.basis.hi).max())
    assert got.rgb.shape == want.rgb.shape
    diff = np.abs(got.rgb.astype(int) - want.rgb.astype(int))
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.999
    np.testing.assert_array_equal(np.isnan(got.components), np.isnan(want.components))
