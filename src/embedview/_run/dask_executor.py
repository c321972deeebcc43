"""Run the passes of :func:`embedview.visualize` with Dask (``visualize(..., execution=Execution(scheduler=...))``).

:class:`DaskExecutor` implements :class:`embedview._run.executors.Executor`:

- **fit**: partial sums (count, sum, scatter: an :class:`~embedview._model.fit.Accumulator`) over
  contiguous batches of pieces, merged pairwise in a tree of tasks; the client only runs the
  final eigendecomposition. Every partial shifts its cells by the same reference and uses the
  same outlier bar (both from the group's first fitted piece, as the local fit takes them), so
  the merged state equals one accumulator fed every piece: the basis differs from the local one
  by floating-point summation order only.
- **project**: a task per batch returns the projected pieces (``k`` channels) and their colour
  range samples (seeded by the piece's number in its group, as locally), yielded in group order.
- **map**: the output windows of :class:`~embedview._outputs.sinks.ZarrSink`, one task each.

Workers read the features themselves: tasks carry the file's path and the pieces (their
geometry and keys), never feature arrays. Each worker process opens a file once and keeps it
open. Nothing here imports Dask at module level: ``import embedview`` never does.

Schedulers: ``"threads"`` is Dask's threaded scheduler in this process (any source, nothing is
pickled); ``"processes"`` starts a ``distributed.LocalCluster`` (one single-threaded worker
process per core) and closes it when the executor is closed or garbage-collected; an address
(``"tcp://host:8786"``) connects to a running scheduler; a ``distributed.Client`` is used as it
is (and left open). Clusters need the source to be a file that every worker can read under the
same path.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._common.threads import blas_threads
from .._inputs.composite import Inputs
from .._inputs.sources import Piece, Source, open_source
from .._model.fit import Accumulator, Basis
from .executors import Executor, FitPlan, PassOptions, per_group, project_piece

#: Seconds to wait for a scheduler given by address before giving up.
CONNECT_TIMEOUT = 5.0
#: Batches (tasks) per worker thread in each pass: several, so a slow worker does not hold up
#: the rest, but not one per piece, so per-task overhead and merges stay small.
BATCHES_PER_SLOT = 4

#: Environment of the worker processes embedview starts (see :func:`local_cluster`).
WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}

_INSTALL = 'pip install "embedview[dask]"'


def _import_dask():
    try:
        import dask
        import distributed  # noqa: F401  (every remote scheduler needs it; "threads" checks it too)
    except ImportError:
        raise EmbedviewError(
            f"{arg('scheduler')} needs Dask and dask.distributed, which are not installed; run {_INSTALL} "
            f"or do not pass {arg('scheduler')}.") from None
    return dask


class DaskExecutor(Executor):
    """Fit, project and write windows with Dask; results equal :class:`LocalExecutor`'s.

    Parameters
    ----------
    src : Source or Inputs
        The embeddings (one input or several). For anything but ``"threads"`` each must have
        been opened from a file (``name`` is its path), which every worker reads under that path.
    scheduler : {"threads", "processes"}, str or distributed.Client
        ``"threads"``: Dask's threaded scheduler here; ``"processes"``: a
        ``distributed.LocalCluster`` with a single-threaded worker process per core, closed with
        this executor; ``"tcp://host:port"``: connect to that scheduler; a ``Client``: use it.
    device : str
        Passed to every worker, which builds its own engine (:func:`embedview._model.engines.engine_for`).
    batches_per_slot : int
        Tasks per worker thread in each pass.

    Attributes
    ----------
    remote : bool
        True when tasks run in other processes (so they cannot see this process's memory).

    Examples
    --------
    >>> import numpy as np
    >>> from embedview._inputs.sources import open_source
    >>> features = np.random.default_rng(0).normal(size=(1, 8, 64, 64)).astype(np.float32)
    >>> src = open_source(features, (600, 900))
    >>> from embedview._run.executors import PassOptions
    >>> with DaskExecutor(src, "threads") as executor:
    ...     basis = executor.fit(src.pieces(), PassOptions(n_components=3))
    >>> executor.remote, basis.components.shape
    (False, (3, 8))
    >>> DaskExecutor(open_source("embeddings.zarr"), "tcp://10.0.0.5:8786")  # doctest: +SKIP
    """

    def __init__(self, src: Source, scheduler, device: str = "cpu", *, batches_per_slot: int = BATCHES_PER_SLOT):
        _import_dask()
        src = src if isinstance(src, Inputs) else Inputs([src])
        self.src, self.device, self.batches_per_slot = src, device, batches_per_slot
        if isinstance(scheduler, str) and scheduler == "threads":
            self._backend = _ThreadBackend(os.cpu_count() or 1)
            self._job = _Job(None, device, src)
        else:
            paths = tuple(_file_path(s, scheduler) for s in src.sources)
            self._backend = _ClientBackend.open(scheduler)
            self._job = _Job(paths, device, None)
        self.remote = self._backend.remote

    # -- the Executor contract -----------------------------------------------------------------

    def fit_many(self, groups: list[list[Piece]], options: PassOptions, bar=None) -> list[Basis]:
        """One basis per group: partial sums per batch, merged in a tree of tasks; all groups'
        trees computed together. The options (with the cell selection) travel to the workers."""
        roots, sizes, leaves = [], {}, []
        for group in groups:
            root, group_sizes, group_leaves = self._fit_graph(group, options)
            roots.append(root)
            sizes.update(group_sizes)
            leaves += group_leaves
        return [acc.basis(options.n_components) for acc in self._backend.compute(roots, bar, sizes, leaves)]

    def _fit_graph(self, group, options):
        """The tree of tasks fitting ``group``: its root, and its leaves with their piece counts."""
        dask = _import_dask()
        numbered = list(enumerate(group))
        batches = _split(numbered, self._backend.slots() * self.batches_per_slot)
        token = uuid.uuid4().hex[:12]
        job = _literal(dask, self._job, f"embedview-job-{token}")
        plan = _literal(dask, FitPlan.for_pieces(group, options), f"embedview-plan-{token}")
        # The shift and outlier bar of the first batch are the ones it finds itself: those of
        # the group's first fitted piece, as locally. The other batches get them from a task
        # that reads pieces from the start until one has cells to fit (usually the first).
        head = None
        if len(batches) > 1:
            head = dask.delayed(_head, pure=False)(job, numbered, plan, dask_key_name=f"embedview-head-{token}")
        leaves = [dask.delayed(_partial, pure=False)(job, batch, plan, head if j else None,
                                                     dask_key_name=f"embedview-partial-{token}-{j}")
                  for j, batch in enumerate(batches)]
        level, depth = leaves, 0
        while len(level) > 1:  # pairwise, neighbours first: a tree of depth log2(batches)
            depth += 1
            level = [dask.delayed(_merge, pure=False)(*level[j:j + 2],
                                                      dask_key_name=f"embedview-merge-{token}-{depth}-{j}")
                     if j + 1 < len(level) else level[j] for j in range(0, len(level), 2)]
        sizes = {leaf.key: len(batch) for leaf, batch in zip(leaves, batches)}
        return level[0], sizes, leaves

    def project_many(self, groups, bases, rates, options: PassOptions, bar=None):
        """For each group in turn, an iterator of its ``(piece, projected, range sample)``.

        Every group's tasks are submitted at once (slices project in parallel); results come
        back in order, so consume each group's iterator before the next.
        """
        dask = _import_dask()
        tasks, batches = [], []
        for group, basis, rate in zip(groups, bases, rates):
            numbered = list(enumerate(group))
            group_batches = _split(numbered, self._backend.slots() * self.batches_per_slot)
            token = uuid.uuid4().hex[:12]
            job = _literal(dask, self._job, f"embedview-job-{token}")
            shared = _literal(dask, (basis, options), f"embedview-basis-{token}")
            tasks += [dask.delayed(_project, pure=False)(job, batch, shared, rate,
                                                         dask_key_name=f"embedview-project-{token}-{j}")
                      for j, batch in enumerate(group_batches)]
            batches += group_batches

        def ordered():
            for batch, results in zip(batches, self._backend.stream(tasks, bar, [len(b) for b in batches])):
                for (_, piece), (projected, sample) in zip(batch, results):
                    yield piece, projected, sample

        return per_group(ordered(), groups)

    def map(self, fn, items) -> list:
        """``[fn(*item) for item in items]``, one task per item; ``fn`` is shipped once."""
        dask = _import_dask()
        items = list(items)
        if not items:
            return []
        token = uuid.uuid4().hex[:12]
        shared = _literal(dask, _Call(fn), f"embedview-fn-{token}")
        tasks = [dask.delayed(_call, pure=False)(shared, *item, dask_key_name=f"embedview-window-{token}-{j}")
                 for j, item in enumerate(items)]
        return self._backend.compute(tasks)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the cluster this executor started (a given ``Client`` is left open)."""
        self._backend.close()


# ---------------------------------------------------------------------------------------------
# where tasks run


class _ThreadBackend:
    """Dask's threaded scheduler in this process; BLAS on one thread per task."""

    remote = False

    def __init__(self, n_threads: int):
        self.n_threads = n_threads

    def slots(self) -> int:
        return self.n_threads

    def compute(self, tasks, bar=None, sizes=None, watch=()) -> list:
        import dask

        # One BLAS thread per task: the tasks themselves fill the cores.
        with blas_threads(1), _progress(bar, sizes):
            return list(dask.compute(*tasks, scheduler="threads", num_workers=self.n_threads,
                                     optimize_graph=False))

    def stream(self, tasks, bar=None, sizes=()) -> Iterator[Any]:
        # Waves of a few tasks per thread keep what is in flight bounded (the threaded scheduler
        # hands back results only when a whole compute call ends).
        wave = 2 * self.n_threads
        sizes = list(sizes)
        for start in range(0, len(tasks), wave):
            chunk = tasks[start:start + wave]
            yield from self.compute(chunk, bar, {t.key: n for t, n in zip(chunk, sizes[start:start + wave])})

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _progress(bar, sizes):
    """Advance ``bar`` by ``sizes[key]`` as each of those tasks ends (threaded scheduler)."""
    if bar is None or not sizes:
        yield
        return
    from dask.callbacks import Callback

    def posttask(key, result, dsk, state, worker_id):
        if key in sizes:  # callbacks are global: other computations' keys are not ours
            bar.update(sizes[key])

    with Callback(posttask=posttask):
        yield


class _ClientBackend:
    """A ``dask.distributed`` client: tasks run in worker processes, here or elsewhere."""

    remote = True

    def __init__(self, client, cluster=None):
        self.client, self.cluster = client, cluster
        # Close a cluster we started when the executor goes away, even if nobody calls close().
        self._finalizer = weakref.finalize(self, _shutdown, client, cluster) if cluster is not None else None

    @classmethod
    def open(cls, scheduler) -> "_ClientBackend":
        import distributed

        if isinstance(scheduler, distributed.Client):
            return cls(scheduler)
        if scheduler == "processes":
            cluster = local_cluster(os.cpu_count() or 1)
            return cls(distributed.Client(cluster, set_as_default=False), cluster)
        if isinstance(scheduler, str) and ("://" in scheduler or _looks_like_host_port(scheduler)):
            _check_address(scheduler)  # before a Client exists: a half-made one hangs 10 s in __del__
            try:
                client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as err:
                raise EmbedviewError(
                    f"could not reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT:g} s "
                    f"({type(err).__name__}); start it (`dask scheduler`) or check the address.") from None
            return _OwnedClient(client)
        raise EmbedviewError(
            f"{arg('scheduler', scheduler)} must be 'threads', 'processes', the address of a Dask scheduler "
            "('tcp://host:8786') or a distributed.Client.")

    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def compute(self, tasks, bar=None, sizes=None, watch=()) -> list:
        """Results of ``tasks``; ``bar`` advances by ``sizes[key]`` as each of ``watch`` ends."""
        from distributed import as_completed

        watch = list(watch) if bar is not None and sizes else []
        futures = self.client.compute(list(tasks) + watch, optimize_graph=False)
        results, watched = futures[:len(tasks)], futures[len(tasks):]
        del futures
        with _cluster_errors(self.client, results, self.close):
            if watched:
                for future in as_completed(watched, loop=self.client.loop):
                    bar.update(sizes[future.key])
                watched.clear()  # let the scheduler forget them once merged
            return self.client.gather(results)

    def stream(self, tasks, bar=None, sizes=()) -> Iterator[Any]:
        """Each task's result, in order, as soon as it and those before it are done."""
        from distributed import as_completed

        futures = self.client.compute(list(tasks), optimize_graph=False)
        order = {f.key: j for j, f in enumerate(futures)}
        sizes, done, following = list(sizes), set(), 0
        with _cluster_errors(self.client, futures, self.close):
            for future in as_completed(futures, loop=self.client.loop):
                j = order[future.key]
                done.add(j)
                if bar is not None and sizes:
                    bar.update(sizes[j])
                while following in done:
                    result = futures[following].result()
                    futures[following] = None  # fetched: the worker may drop it
                    yield result
                    following += 1

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


class _OwnedClient(_ClientBackend):
    """A client this executor connected (by address): closed with it, the cluster left running."""

    def __init__(self, client):
        super().__init__(client)
        self._finalizer = weakref.finalize(self, _shutdown, client, None)


def local_cluster(n_workers: int, **kwargs):
    """A ``distributed.LocalCluster`` of single-threaded worker processes, tuned for embedview.

    Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also stops glibc
    from raising its mmap threshold: every piece-sized buffer (MiBs) is then mapped afresh and
    page-faulted, which doubles the CPU time of a fit. ``MALLOC_MMAP_THRESHOLD_`` (64 MiB) keeps
    such buffers on the reused heap. Start workers of other clusters with the same variable.

    Examples
    --------
    >>> with local_cluster(2) as cluster:  # doctest: +SKIP
    ...     vis = embedview.visualize("embeddings.zarr", execution=embedview.Execution(scheduler=distributed.Client(cluster)))
    """
    import logging

    import dask
    import distributed

    # The workers log nothing: what fails in a task comes back to the client (a refusal is one
    # sentence, anything else an exception with its traceback), and a cluster torn down by an
    # interrupt would log every broken connection.
    options = dict(threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL)
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}):
        return distributed.LocalCluster(n_workers=n_workers, **{**options, **kwargs})


def _shutdown(client, cluster) -> None:
    with contextlib.suppress(Exception):
        client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close()


@contextlib.contextmanager
def _cluster_errors(client, futures, close=lambda: None):
    """Cancel what is left on failure; a worker lost too often becomes one clear sentence; on an
    interrupt, also ``close()`` the cluster we started at once, so that no worker still writes
    into an output's temporary while it is removed."""
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    try:
        yield
    except KilledWorker as err:
        _cancel(client, futures)
        task = err.args[0] if err.args else "?"
        raise EmbedviewError(
            f"Dask workers kept dying while running embedview's task {task} (KilledWorker); check "
            "the workers' memory limits and logs, then run again.") from None
    except CancelledError:
        _cancel(client, futures)
        raise EmbedviewError(
            "the Dask computation was cancelled (the scheduler or client went away); check the "
            "cluster and run again.") from None
    except BaseException as err:
        _cancel(client, futures)
        if not isinstance(err, Exception):  # KeyboardInterrupt (Ctrl-C, or SIGTERM in the command)
            close()
        raise


def _cancel(client, futures) -> None:
    with contextlib.suppress(Exception):
        client.cancel([f for f in futures if f is not None])


def _check_address(address: str) -> None:
    """Refuse an address that dask.distributed cannot parse (``tcp://[::1``, ``tcp://host:99999``)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address, strict=False)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            port = parse_host_port(location)[1]
            if not 0 < port < 65536:
                raise ValueError(f"port {port} is not between 1 and 65535")
    except (ValueError, TypeError) as err:
        raise EmbedviewError(f"{arg('scheduler', address)} is not a Dask scheduler address ({err}); "
                             "write it as tcp://host:8786.") from None


def _looks_like_host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def _file_path(src: Source, scheduler) -> str:
    """The path workers open, or a clear error when they cannot re-read ``src``."""
    name = src.name
    if not (isinstance(name, str) and os.path.isdir(name)):
        raise EmbedviewError(
            f"with {arg('scheduler', scheduler) if isinstance(scheduler, str) else 'this scheduler'} the workers open the features by path, but "
            f"{name} is not a micro_sam .zarr container; save the embeddings as one or use "
            f"{arg('scheduler', 'threads')}.")
    return os.path.abspath(name)


# ---------------------------------------------------------------------------------------------
# tasks (run on workers; module-level so they pickle by reference)


@dataclass(frozen=True)
class _Job:
    """What every task needs besides its pieces: where the features are and the device.

    ``src`` is the open inputs for the threaded scheduler (same process); ``None`` on clusters,
    where each worker opens the files ``paths`` itself.
    """

    paths: tuple[str, ...] | None
    device: str
    src: Inputs | None = None

    def source(self) -> Inputs:
        if self.src is not None:
            return self.src
        return _open_on_worker(self.paths, tuple(_stamp(p) for p in self.paths))

    def engine(self):
        # One engine per thread: engines may keep staging buffers that are not thread-safe.
        engines = _local.__dict__.setdefault("engines", {})
        if self.device not in engines:
            from .._model.engines import engine_for

            engines[self.device] = engine_for(self.device)
        return engines[self.device]


_local = threading.local()


def _stamp(path: str) -> tuple:
    """Changes when the container's root metadata does: a rewritten file is opened again."""
    stamps = []
    for meta in ("zarr.json", ".zgroup", ".zattrs"):
        with contextlib.suppress(OSError):
            st = os.stat(os.path.join(path, meta))
            stamps.append((meta, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


@functools.lru_cache(maxsize=8)
def _open_on_worker(paths: tuple[str, ...], stamps: tuple) -> Inputs:
    return Inputs([open_source(p) for p in paths])


@dataclass(frozen=True)
class _Call:
    """Holds the function of :meth:`DaskExecutor.map` (a graph node, so it is shipped once)."""

    fn: Any


def _call(holder: _Call, *args):
    return holder.fn(*args)


def _literal(dask, obj, name: str):
    """``obj`` as one node of the graph: shipped once, not traversed or hashed by Dask."""
    return dask.delayed(obj, name=name, traverse=False)


def _head(job: _Job, numbered: list[tuple[int, Piece]], plan: FitPlan):
    """``(shift, bar)`` the local fit would take: from the first piece with cells to fit."""
    src, engine = job.source(), job.engine()
    for item in numbered:
        acc = plan.accumulate(src, [item], engine)
        if acc.count:
            return acc.shift, acc.bar
    return None, None  # nothing to fit anywhere: the basis will say so


def _partial(job: _Job, batch: list[tuple[int, Piece]], plan: FitPlan, head=None) -> Accumulator:
    """Partial sums over ``batch`` (``(number in group, piece)``), as a host accumulator."""
    if head is not None:
        plan = plan.with_head(*head)
    acc = plan.accumulate(job.source(), batch, job.engine())
    return _on_host(acc)


def _on_host(acc: Accumulator) -> Accumulator:
    """A plain :class:`Accumulator` with ``acc``'s state (device sums copied to the host)."""
    if type(acc) is Accumulator:
        return acc
    acc._flush()  # PyTorch engine: its sums live on the device until flushed
    host = Accumulator(acc.n_channels, expected_cells=acc.expected_cells)
    return host.merge(acc)


def _merge(a: Accumulator, b: Accumulator) -> Accumulator:
    # Into a new accumulator: the inputs may still be held by the worker (or retried), so they
    # must not change.
    out = Accumulator(a.n_channels, expected_cells=a.expected_cells)
    return out.merge(a).merge(b)


def _project(job: _Job, batch: list[tuple[int, Piece]], shared: tuple, rate: float) -> list:
    (basis, options), src, engine = shared, job.source(), job.engine()
    return [project_piece(engine, basis, src, piece, x, rate, i, options)
            for (i, _), (piece, x) in zip(batch, src.read_each([p for _, p in batch]))]


def _split(items: list, n: int) -> list[list]:
    """``items`` in ``min(n, len(items))`` contiguous batches of near-equal size."""
    n = max(1, min(n, len(items)))
    bounds = np.linspace(0, len(items), n + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
