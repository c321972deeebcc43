"""visualize(..., execution=Execution(scheduler=...)) on a 2-process LocalCluster equals the local path."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import embedview  # noqa: E402
from embedview import EmbedviewError  # noqa: E402
from embedview._inputs.sources import open_source  # noqa: E402
from embedview._run.dask_executor import DaskExecutor, _cluster_errors  # noqa: E402
from embedview._run.executors import PassOptions  # noqa: E402
from embedview._workflows.demo import DemoEncoder, make_demo_scene, write_demo_embeddings, write_micro_sam_embeddings  # noqa: E402

from _readback import read_ome_zarr  # noqa: E402

DATA = Path(__file__).parent / "data" / "micro_sam"
FIXTURES = ["2d", "3d", "tiled2d", "tiled3d", "tiled2d_masked"]


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A synthetic tiled stack (3 slices × 12 tiles) with a few high-norm cells."""
    image, labels = make_demo_scene((3, 400, 600))
    encoder = DemoEncoder(n_channels=32, grid=32, high_norm_fraction=0.003, high_norm_factor=100)
    return str(write_demo_embeddings(tmp_path_factory.mktemp("dask") / "stack.zarr", image, labels,
                                     tile_shape=(160, 160), halo=(16, 16), encoder=encoder))


class Counter:
    n = 0

    def update(self, n=1):
        self.n += n


def assert_same(vis, ref, rgb=None, components=None):
    """Same bases (1e-6 relative), ≥ 99.9% of uint8 values identical and none off by more than 1."""
    assert len(vis.bases) == len(ref.bases)
    for b, r in zip(vis.bases, ref.bases):
        assert (b.n_samples, b.n_outliers) == (r.n_samples, r.n_outliers)
        for name in ("components", "mean", "explained_variance"):
            got, want = getattr(b, name), getattr(r, name)
            assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), name
        np.testing.assert_allclose(b.lo, r.lo, rtol=1e-5, atol=1e-5 * np.abs(r.hi - r.lo).max())
        np.testing.assert_allclose(b.hi, r.hi, rtol=1e-5, atol=1e-5 * np.abs(r.hi - r.lo).max())
    rgb = vis.rgb if rgb is None else rgb
    components = vis.components if components is None else components
    assert rgb.shape == ref.rgb.shape
    assert (rgb == ref.rgb).mean() >= 0.999
    assert np.abs(rgb.astype(int) - ref.rgb).max() <= 1
    np.testing.assert_array_equal(np.isnan(components), np.isnan(ref.components))
    np.testing.assert_allclose(components, ref.components, atol=1e-4 * np.nanmax(np.abs(ref.components)))


@pytest.mark.parametrize("case", FIXTURES)
@pytest.mark.parametrize("fit", ["joint", "per_slice"])
def test_micro_sam_files_equal_the_local_result(client, case, fit):
    path = str(DATA / f"{case}.zarr")
    assert_same(embedview.visualize(path, fit=fit, execution=embedview.Execution(scheduler=client)), embedview.visualize(path, fit=fit))


@pytest.mark.parametrize("fit", ["joint", "per_slice"])
def test_tiled_stack_in_memory_and_as_ome_zarr(client, stack, tmp_path, fit):
    ref = embedview.visualize(stack, fit=fit)
    assert ref.bases[0].n_outliers > 0  # the outlier guard's partial buffers were merged
    assert_same(embedview.visualize(stack, fit=fit, execution=embedview.Execution(scheduler=client)), ref)
    out = tmp_path / "pca.zarr"
    vis = embedview.visualize(stack, fit=fit, execution=embedview.Execution(scheduler=client), output=out)
    rgb, components, attrs = read_ome_zarr(out)
    assert vis.path == out and not (out / "_projected").exists()
    assert_same(vis, ref, rgb, components)


def test_options_travel_to_the_workers(client, stack):
    def draw(execution=None):
        model = embedview.PCA(normalize="channel", fit_sample=20_000, execution=execution)
        return model.fit_transform(stack, foreground="auto", pixel_size=7)[0]

    assert_same(draw(embedview.Execution(scheduler=client)), draw())


def test_threads_scheduler_takes_any_source(stack):
    features = np.random.default_rng(0).normal(size=(2, 1, 16, 64, 64)).astype(np.float32)
    assert_same(embedview.visualize(features, original_size=(300, 500), execution=embedview.Execution(scheduler="threads")),
                embedview.visualize(features, original_size=(300, 500)))
    assert_same(embedview.visualize(stack, fit="per_slice", execution=embedview.Execution(scheduler="threads")),
                embedview.visualize(stack, fit="per_slice"))
    src, bar = open_source(stack), Counter()
    executor = DaskExecutor(src, "threads")
    basis = executor.fit(src.pieces(), PassOptions(3), bar)
    assert not executor.remote and bar.n == len(src.pieces())
    assert [p for p, _, _ in executor.project(src.pieces(), basis, 1.0, PassOptions(3), bar)] == src.pieces()
    assert bar.n == 2 * len(src.pieces())


def test_processes_scheduler_starts_and_closes_its_cluster():
    src = open_source(str(DATA / "tiled2d.zarr"))
    ref = embedview.visualize(str(DATA / "tiled2d.zarr"))
    bar = Counter()
    with DaskExecutor(src, "processes") as executor:
        cluster = executor._backend.cluster
        assert executor.remote and len(executor._backend.client.nthreads()) == (os.cpu_count() or 1)
        basis = executor.fit(src.pieces(), PassOptions(3), bar)
        projected = list(executor.project(src.pieces(), ref.basis, 1.0, PassOptions(3), bar))
    assert cluster.status.name == "closed"
    assert bar.n == 2 * len(src.pieces())  # progress: every piece once per pass
    assert [p for p, _, _ in projected] == src.pieces()
    assert np.abs(basis.components - ref.basis.components).max() <= 1e-6


def _killer(marker: str, prefix: str):
    """A worker plugin that makes its worker process exit once, when a task ``prefix…`` finishes."""

    class Killer(distributed.WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "memory" and str(key).startswith(prefix):
                try:  # O_EXCL: exactly one worker, once
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    return
                os._exit(1)

    return Killer()


@pytest.mark.parametrize("phase", ["embedview-partial", "embedview-project", "embedview-window"])
def test_a_worker_dying_mid_run_changes_nothing(client, stack, tmp_path, phase):
    ref = embedview.visualize(stack)
    marker = tmp_path / "killed"
    client.register_plugin(_killer(str(marker), phase), name="killer")
    try:
        vis = embedview.visualize(stack, execution=embedview.Execution(scheduler=client), output=tmp_path / "pca.zarr")
    finally:
        client.unregister_worker_plugin("killer")
        client.wait_for_workers(2, timeout=60)
    assert marker.exists()  # a worker did die
    rgb, components, _ = read_ome_zarr(vis.path)
    assert_same(vis, ref, rgb, components)


def test_workers_that_keep_dying_give_one_clear_sentence(client):
    with pytest.raises(EmbedviewError, match="kept dying .* embedview-partial-x"):
        with _cluster_errors(client, []):
            raise distributed.scheduler.KilledWorker("embedview-partial-x", None, 3)


def test_feature_errors_on_workers_reach_the_caller(client, tmp_path):
    features = np.random.default_rng(0).normal(size=(3, 1, 8, 64, 64)).astype(np.float32)
    features[1, 0, :, 0, :3] = np.nan
    path = write_micro_sam_embeddings(tmp_path / "nan.zarr", features, original_size=(90, 120))
    with pytest.raises(EmbedviewError, match="3 cells of slice 1 .* are NaN"):
        embedview.visualize(path, execution=embedview.Execution(scheduler=client))
    assert_same(embedview.PCA(nonfinite="omit", execution=embedview.Execution(scheduler=client)).fit_transform(path)[0],
                embedview.PCA(nonfinite="omit").fit_transform(path)[0])


def test_zarr_sink_pickles_as_paths(tmp_path, stack):
    from embedview._common.geometry import OutputGrid
    from embedview._outputs.sinks import ZarrSink

    src = open_source(stack)
    grid = OutputGrid.for_image(src.image_shape, 1)
    sink = ZarrSink(tmp_path / "out.zarr", src.pieces(), grid, src.n_slices, 3, on_disk=True)
    sink.place(0, src.pieces()[0], np.ones((3, 32, 32), np.float32))
    blob = pickle.dumps(sink)
    assert len(blob) < 100_000  # pieces and paths, no arrays
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.store[0][:, :32, :32], 1)
    basis = embedview.visualize(stack).basis
    window = (slice(0, 64), slice(0, 64))
    copy._write_window(0, window, [(0, src.pieces()[0])], basis, (0, 1, 2))
    assert sink.writer.levels[0][:, 0, 0, 0].tolist() != [0, 0, 0]  # written through the copy
    sink.close()


def test_clear_errors(client, monkeypatch):
    features = np.zeros((1, 8, 64, 64), np.float32)
    with pytest.raises(EmbedviewError, match="open the features by path, but the feature array is not a micro_sam .zarr container"):
        embedview.visualize(features, original_size=(64, 64), execution=embedview.Execution(scheduler=client))
    with pytest.raises(EmbedviewError, match="scheduler='sync' must be 'threads', 'processes'"):
        embedview.visualize(str(DATA / "2d.zarr"), execution=embedview.Execution(scheduler="sync"))
    monkeypatch.setattr("embedview._run.dask_executor.CONNECT_TIMEOUT", 0.5)
    for address in ("tcp://[::1", "tcp://host:99999", "foo://host:1", "tcp://host:abc"):
        with pytest.raises(EmbedviewError, match="is not a Dask scheduler address"):
            embedview.visualize(str(DATA / "2d.zarr"), execution=embedview.Execution(scheduler=address))
    with pytest.raises(EmbedviewError, match="could not reach the Dask scheduler at tcp://127.0.0.1:9"):
        embedview.visualize(str(DATA / "2d.zarr"), execution=embedview.Execution(scheduler="tcp://127.0.0.1:9"))
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(EmbedviewError, match=r'pip install "embedview\[dask\]"'):
        embedview.visualize(str(DATA / "2d.zarr"), execution=embedview.Execution(scheduler="threads"))


def test_nothing_imports_dask_without_a_scheduler():
    code = ("import sys, embedview; embedview.visualize(sys.argv[1]); "
            "assert not {'dask', 'distributed'} & set(sys.modules), sorted(m for m in sys.modules if 'dask' in m)")
    subprocess.run([sys.executable, "-c", code, str(DATA / "tiled2d.zarr")], check=True)


# ---------------------------------------------------------------------------------------------
# the command under Dask: one sentence, or one line on an interrupt (subprocesses: what the
# process prints while it exits counts too)


def _command(*argv):
    return [sys.executable, "-m", "embedview", *map(str, argv)]


def _env():
    return dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), OMP_NUM_THREADS="1")


def test_a_malformed_address_is_one_line_at_once(tmp_path):
    """No half-made Client left to time out in __del__ at exit (it printed a traceback after 10 s)."""
    done = subprocess.run(_command("render", DATA / "2d.zarr", "-o", tmp_path / "x.png", "--scheduler", "tcp://[::1"),
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("embedview: error: --scheduler tcp://[::1 is not a Dask scheduler address")


@pytest.mark.slow
def test_a_damaged_chunk_under_processes_is_the_refusal_alone(tmp_path):
    import shutil

    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(DATA / "2d.zarr", damaged)
    chunk = next(p for p in sorted((damaged / "features").rglob("*")) if p.is_file() and p.name[0].isdigit())
    chunk.write_bytes(b"garbage")
    done = subprocess.run(_command("render", damaged, "-o", tmp_path / "x.png", "--scheduler", "processes", "-q"),
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "the file looks damaged" in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_sigterm_under_processes_is_one_line_and_leaves_nothing(stack, tmp_path, delay):
    import signal
    import time

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(_command("render", stack, "-o", out / "s.zarr", "--pixel-size", "0.25", "--scheduler",
                                     "processes", "-q"), stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 90
        while not os.listdir(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the output's temporary appears once the cluster runs
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if finished or (proc.returncode == 0 and not err):
        assert not [n for n in os.listdir(out) if n != "s.zarr"], os.listdir(out)  # complete, nothing left over
        if finished:
            pytest.skip("the render finished before it could be interrupted")
        # Known, not fixed: a SIGTERM that arrives at some moments of a Dask `processes` run is
        # swallowed and the render runs to completion (exit 0, a complete output, nothing else).
        pytest.xfail("a SIGTERM during a Dask processes run was swallowed; the render completed")
    assert proc.returncode == 143 and err == "embedview: interrupted\n", err
    assert os.listdir(out) == []
