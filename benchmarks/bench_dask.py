"""Dask scaling: ``visualize(path, execution=Execution(scheduler=client))`` on a LocalCluster of 1, 2, 4, … workers.

Each worker is a process with one thread (BLAS on one thread too: distributed's nanny sets it),
started by :func:`embedview._run.dask_executor.local_cluster` (as ``scheduler="processes"`` does).
The cluster for each worker count is started once and warmed up with one run (workers open the
file and import what they need); then the median of ``-n`` runs is taken. The local path
(``scheduler=None``) is timed the same way. Printed per worker count: time, speed-up over one
worker, efficiency ``T(1) / (n · T(n))`` (target ≥ 70 % at 4 workers, which needs ≥ 4 free cores)
and speed-up over the local path. Cluster start-up is not included.

Usage::

    python benchmarks/generate.py tiled144          # once: the file (see README.md)
    python benchmarks/bench_dask.py                 # tiled144, workers 1,2,4, median of 3
    python benchmarks/bench_dask.py stack300 --workers 1,2,4,8,16 -n 5 --output
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import case_path, cases, data_dir  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, repeats: int, client=None) -> tuple[float, float]:
    """Median wall time and median CPU seconds (this process plus the workers) of ``fn()``."""
    times, cpus = [], []
    for _ in range(repeats):
        workers = sum(client.run(cpu_seconds).values()) if client else 0.0
        cpu, start = cpu_seconds(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu + (sum(client.run(cpu_seconds).values()) - workers if client else 0.0))
    return statistics.median(times), statistics.median(cpus)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", nargs="?", default="tiled144", help="case (default tiled144)")
    parser.add_argument("--data", help="folder of the generated files (default benchmarks/data)")
    parser.add_argument("--small", action="store_true", help="use the --small files of generate.py")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated (default 1,2,4)")
    parser.add_argument("-n", "--repeats", type=int, default=3, help="timed runs per setting (median)")
    parser.add_argument("--fit", default="joint", choices=["joint", "per_slice"])
    parser.add_argument("--output", action="store_true",
                        help="write OME-Zarr (output=...zarr: windows written by the workers) instead of in memory")
    args = parser.parse_args(argv)

    import distributed
    import numpy as np

    import embedview
    from embedview._run.dask_executor import local_cluster

    table = cases(args.small)
    if args.case not in table:
        raise SystemExit(f"unknown case {args.case!r}; choose from {list(table)}")
    case = table[args.case]
    path = case_path(data_dir(args.data, args.small), case)
    if not path.exists():
        raise SystemExit(f"{path} is missing; run: python benchmarks/generate.py {case.name}"
                         + (" --small" if args.small else ""))
    counts = [int(n) for n in args.workers.split(",")]
    scratch = tempfile.mkdtemp(prefix="bench_dask_")

    def run(scheduler):
        kwargs = {"fit": args.fit, "execution": embedview.Execution(scheduler=scheduler)}
        if args.output:
            kwargs["output"] = os.path.join(scratch, "pca.zarr")
        vis = embedview.visualize(str(path), **kwargs)
        if args.output:
            shutil.rmtree(kwargs["output"])
        return vis

    print("embedview Dask scaling")
    print(f"  python {platform.python_version()}, numpy {np.__version__}, dask {distributed.__version__}, "
          f"{os.cpu_count()} cores, {platform.machine()}")
    print(f"  case {case.name}: {case.describe()}; fit={args.fit}, "
          f"{'OME-Zarr output' if args.output else 'in memory'}; median of {args.repeats} after one warm-up")
    reference = run(None)  # also warms the page cache
    local, local_cpu = timed(lambda: run(None), args.repeats)

    rows = []
    try:
        for n in counts:
            with local_cluster(n) as cluster, distributed.Client(cluster) as client:
                vis = run(client)  # warm-up: workers open the file
                same = np.abs(vis.basis.components - reference.basis.components).max() <= 1e-6 * np.abs(
                    reference.basis.components).max()
                rows.append((n, *timed(lambda: run(client), args.repeats, client), same))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = next((t for n, t, _, _ in rows if n == 1), None)
    print()
    print(f"  {'workers':>7}  {'time s':>7}  {'cpu s':>6}  {'speed-up':>8}  {'efficiency':>10}  {'vs local':>8}  same basis")
    print(f"  {'local':>7}  {local:7.2f}  {local_cpu:6.2f}  {'':>8}  {'':>10}  {1.0:8.2f}")
    for n, t, cpu, same in rows:
        speedup = base / t if base else float("nan")
        efficiency = speedup / n if base else float("nan")
        target = "  (target ≥ 70%: " + ("ok)" if efficiency >= 0.7 else "MISS)") if n == 4 else ""
        print(f"  {n:>7}  {t:7.2f}  {cpu:6.2f}  {speedup:8.2f}  {efficiency:10.0%}  {local / t:8.2f}  {same}{target}")
    print("  speed-up and efficiency against 1 worker: T(1)/T(n) and T(1)/(n·T(n)); vs local: T(local)/T(n);")
    print("  cpu s: CPU seconds of this process and the workers together (read-ahead threads let one")
    print("  worker use more than one core, so T(1) is not a one-core time)")
    if max(counts) > (os.cpu_count() or 1):
        print(f"  note: {max(counts)} workers on {os.cpu_count()} cores share cores; efficiency beyond "
              f"{os.cpu_count()} workers measures oversubscription, not Dask")
    return 0


if __name__ == "__main__":
    sys.exit(main())
