"""Where does ``embedview.visualize`` spend its time? Stage timers, cProfile, optionally py-spy.

Stage timers wrap the pipeline's functions (reads run in the read-ahead thread, so their time
overlaps the main thread's work; the main thread's "waiting for reads" is what is left of the
wall time). cProfile sees the main thread only. ``--py-spy`` samples every thread, native frames
included (``pip install py-spy``), and sums self time by stage.

Usage::

    python benchmarks/profile_visualize.py                 # stack300, stage timers + cProfile top 25
    python benchmarks/profile_visualize.py tiled144 --py-spy
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import case_path, data_dir, pick_cases  # noqa: E402


class StageTimer:
    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.threads = defaultdict(set)
        self._lock = threading.Lock()

    def wrap(self, owner, name, stage):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    self.seconds[stage] += dt
                    self.calls[stage] += 1
                    self.threads[stage].add(
                        "main" if threading.current_thread() is threading.main_thread() else "read-ahead")

        setattr(owner, name, timed)
        return original


def instrument(timer: StageTimer):
    from embedview._inputs import sources as _sources
    from embedview._model import fit as _fit
    from embedview._outputs import render as _render
    from embedview._outputs import sinks as _sinks
    from embedview._run import executors as _executors
    from embedview._run import pipeline as _pipeline

    timer.wrap(_sources.Source, "read", "read (zarr get + decompress + asarray)")
    timer.wrap(_fit.Accumulator, "add", "fit: Accumulator.add (shift, sum, x@x.T)")
    timer.wrap(_fit.Accumulator, "basis", "fit: eigh")
    timer.wrap(_executors, "project_piece", "project: Basis.project + finite check")
    timer.wrap(_executors, "_sample_fit_cells", "colour: sample fitted cells")
    timer.wrap(_render.Placer, "place", "render: Placer.place")
    timer.wrap(_pipeline, "colour_ranges", "colour: ranges (percentile)")
    timer.wrap(_sinks, "colour", "colour: to uint8")
    timer.wrap(_sources, "open_source", "open source (metadata)")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each live thread of this process, by native id (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return out


def thread_report(path: str) -> None:
    """Who burns the CPU: the main thread, Python's helper threads, and native threads (OpenBLAS)."""
    import embedview

    before, c0, t0 = _thread_cpu(), os.times(), time.perf_counter()
    embedview.visualize(path)
    wall = time.perf_counter() - t0
    after, c1 = _thread_cpu(), os.times()
    total = (c1.user + c1.system) - (c0.user + c0.system)
    names = {t.native_id: t.name for t in threading.enumerate()}
    rows = defaultdict(float)
    for tid, cpu in after.items():
        used = cpu - before.get(tid, 0.0)
        if tid == os.getpid():
            rows["main thread"] += used
        elif tid in names:
            rows[f"python thread {names[tid].split('-')[0].rstrip('_0123456789')}"] += used
        else:
            rows["native threads (OpenBLAS workers)"] += used
    rows["threads that ended (read-ahead pool)"] = max(0.0, total - sum(rows.values()))
    print(f"\nCPU by thread (wall {wall:.2f} s, process CPU {total:.2f} s = {total / wall:.2f} cores):")
    for name, cpu in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<46} {cpu:6.2f} s")


def stage_report(path: str) -> None:
    import embedview

    timer = StageTimer()
    instrument(timer)
    t0 = time.perf_counter()
    vis = embedview.visualize(path)
    wall = time.perf_counter() - t0
    main = sum(s for k, s in timer.seconds.items() if timer.threads[k] == {"main"})
    print(f"\nStage timers (wall {wall:.2f} s; output {vis.rgb.shape})")
    print(f"  {'stage':<46} {'thread':>10} {'calls':>6} {'s':>7} {'% wall':>7}")
    for stage, s in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        threads = ",".join(sorted(timer.threads[stage]))
        print(f"  {stage:<46} {threads:>10} {timer.calls[stage]:>6} {s:>7.2f} {100 * s / wall:>6.0f}%")
    rest = wall - main
    print(f"  {'main thread: waiting for reads + loop overhead':<46} {'main':>10} {'':>6} {rest:>7.2f} "
          f"{100 * rest / wall:>6.0f}%")


def read_breakdown(path: str) -> None:
    """The read path alone, sequential: group lookup, zarr decode, and nothing else."""
    import numpy as np
    import zarr

    root = zarr.open_group(path, mode="r")
    feats = root["features"]
    t_lookup = t_get = 0.0
    n = 0
    if isinstance(feats, zarr.Array):
        for z in range(feats.shape[0] if feats.ndim == 5 else 1):
            t0 = time.perf_counter()
            np.asarray(feats[(z, 0) if feats.ndim == 5 else (0,)], np.float32)
            t_get += time.perf_counter() - t0
            n += 1
    else:
        keys = sorted((k for k in feats.array_keys() if k.isdigit()), key=int)
        first = feats[keys[0]]
        zs = range(first.shape[0]) if first.ndim == 5 else [None]
        for z in zs:
            for k in keys:
                t0 = time.perf_counter()
                arr = feats[k]
                t1 = time.perf_counter()
                np.asarray(arr[(0,) if z is None else (z, 0)], np.float32)
                t_get += time.perf_counter() - t1
                t_lookup += t1 - t0
                n += 1
    # raw decompression of the same chunks, without zarr
    import numcodecs

    zstd = numcodecs.Zstd()
    files = []
    for rootdir, _, names in os.walk(path):
        files += [os.path.join(rootdir, f) for f in names if f != "zarr.json" and not f.endswith(".json")]
    t0 = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh:
            zstd.decode(fh.read())
    t_raw = time.perf_counter() - t0
    print(f"\nRead path, sequential, {n} pieces: zarr get {t_get:.2f} s "
          f"({1e3 * t_get / n:.1f} ms/piece)" + (f", group[tile] lookups {t_lookup:.2f} s" if t_lookup else "")
          + f"; file read + bare zstd decode of the {len(files)} chunks {t_raw:.2f} s "
          f"({1e3 * t_raw / max(len(files), 1):.1f} ms/chunk)")


def cprofile_report(path: str, top: int) -> None:
    import embedview

    prof = cProfile.Profile()
    prof.enable()
    embedview.visualize(path)
    prof.disable()
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        text = buf.getvalue()
        print(f"\ncProfile (main thread), top {top} by {key}:")
        print(text[text.index("   ncalls"):].rstrip())


PY_SPY_STAGES = [  # (stage, substrings of a stack, outermost match wins in order)
    ("fit: eigh", ("basis (embedview/_model/fit.py",)),
    ("fit: Accumulator.add", ("add (embedview/_model/fit.py",)),
    ("project", ("project_piece",)),
    ("render: place", ("place (embedview/_outputs/render.py",)),
    ("colour: ranges", ("colour_ranges",)),
    ("colour: to uint8", ("colour (",)),
    ("read: zstd decode", ("zstd", "Zstd", "ZSTD")),
    ("read: zarr other", ("zarr/",)),
    ("read-ahead thread idle", ("_worker (concurrent/futures/thread.py",)),
]


def py_spy_report(path: str) -> None:
    exe = shutil.which("py-spy")
    if not exe:
        print("\npy-spy not installed (pip install py-spy); skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "raw.txt")
        code = f"import embedview; embedview.visualize({path!r})"
        cmd = [exe, "record", "--native", "--threads", "--rate", "250", "--format", "raw", "-o", out,
               "--", sys.executable, "-c", code]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            print(f"\npy-spy failed: {proc.stderr.strip()[-300:]}")
            return
        totals, self_time = defaultdict(int), defaultdict(int)
        total = 0
        with open(out) as fh:
            for line in fh:
                stack, _, count = line.rstrip().rpartition(" ")
                count = int(count)
                total += count
                frames = stack.split(";")
                leaf = frames[-1]
                self_time[leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].split(":")[0].split("/")[-1]] += count
                for stage, keys in PY_SPY_STAGES:
                    if any(k in stack for k in keys):
                        totals[stage] += count
                        break
                else:
                    totals["other (imports, setup, idle threads)"] += count
    print(f"\npy-spy, all threads, {total} samples (a sample per thread per tick: 2 busy threads = 2×):")
    for stage, n in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<40} {100 * n / total:5.1f}%")
    print("  top self-time frames:")
    for frame, n in sorted(self_time.items(), key=lambda kv: -kv[1])[:15]:
        print(f"    {100 * n / total:5.1f}%  {frame[:100]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", nargs="?", default="stack300")
    parser.add_argument("--data")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--py-spy", action="store_true", help="also sample all threads with py-spy")
    parser.add_argument("--no-cprofile", action="store_true")
    args = parser.parse_args(argv)
    (case,) = pick_cases([args.case], args.small)
    path = str(case_path(data_dir(args.data, args.small), case))
    if not os.path.isdir(path):
        print(f"{path} missing; run python benchmarks/generate.py first", file=sys.stderr)
        return 2
    print(f"profile of embedview.visualize on {case.name}: {case.describe()}")
    print(f"  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, {os.cpu_count()} cores")
    import embedview

    embedview.visualize(path)  # warm up: page cache, imports
    read_breakdown(path)
    stage_report(path)
    thread_report(path)
    if not args.no_cprofile:
        cprofile_report(path, args.top)
    if args.py_spy:
        py_spy_report(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
