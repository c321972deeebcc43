"""Benchmark ``embedview.visualize`` against the floor, and against micro_sam where it is installed.

For every case (files written by ``generate.py``), in one run:

* **floor**: the minimal honest work — open the container with zarr, read every feature piece
  once (``x = arr[z, 0]`` as float32 ``(C, n)``), and one scatter pass (``x @ x.T`` accumulated
  in float64). Printed with its parts: time inside the reads, time inside the scatter GEMMs.
* **visualize**: wall time of ``embedview.visualize(path)`` with its defaults, and the ratio
  visualize / floor (target ≤ 2.0).
* **memory**: peak RSS of the visualize subprocess minus its RSS after imports, next to the
  output's own size (``vis.rgb.nbytes + vis.components.nbytes``); target: at most 400 MiB above
  the output.
* **micro_sam**: ``micro_sam.visualization.project_embeddings_for_visualization`` on the same
  files, where micro_sam is importable, and embedview's speed-up over it (targets ≥ 10× tiled,
  ≥ 3× stacks).
* **CLI start-up**: wall time of ``embedview --help`` (median of 5, target ≤ 0.3 s).

Every repeat runs in a fresh subprocess (so peak memory is clean), floor and visualize
interleaved, after one warm-up read of the files (warm page cache); medians are printed. Nothing
here asserts a time: it prints figures and whether each target is met.

Usage::

    python benchmarks/generate.py
    python benchmarks/bench_visualize.py                 # all cases, median of 3
    python benchmarks/bench_visualize.py stack300 -n 5 --json results.json
    python benchmarks/bench_visualize.py --small         # smoke run on the --small files
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Case, case_path, data_dir, dir_size, gib, mib, pick_cases  # noqa: E402

RATIO_TARGET = 2.0
MEMORY_TARGET_MIB = 400
HELP_TARGET_S = 0.3
SPEEDUP_TARGET = {"tiled": 10.0, "tiled stack": 10.0, "stack": 3.0, "single": 3.0}
RESULT_TAG = "BENCH-RESULT "


# ---------------------------------------------------------------------------------------------
# workers: each runs in its own process and prints one JSON line


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _peak() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _feature_pieces(path):
    """``[(array, index)]`` for every piece, slice by slice, tiles in C order."""
    import zarr

    root = zarr.open_group(path, mode="r")
    features = root["features"]
    if isinstance(features, zarr.Array):
        arrays = [features]
    else:
        arrays = [features[k] for k in sorted((k for k in features.array_keys() if k.isdigit()), key=int)]
    n_slices = arrays[0].shape[0] if arrays[0].ndim == 5 else None
    if n_slices is None:
        return [(a, (0,)) for a in arrays]
    return [(a, (z, 0)) for z in range(n_slices) for a in arrays]


def worker_floor(path: str) -> dict:
    import numpy as np
    import zarr  # noqa: F401  (imported before the baseline)

    rss0 = _rss()
    c0, t0 = _cpu(), time.perf_counter()
    pieces = _feature_pieces(path)
    t_open = time.perf_counter() - t0
    read = scatter = 0.0
    acc = None
    for arr, index in pieces:
        t1 = time.perf_counter()
        x = np.asarray(arr[index], dtype=np.float32)
        x = x.reshape(x.shape[0], -1)
        t2 = time.perf_counter()
        s = x @ x.T
        if acc is None:
            acc = np.zeros(s.shape, np.float64)
        acc += s
        t3 = time.perf_counter()
        read += t2 - t1
        scatter += t3 - t2
    total = time.perf_counter() - t0
    return {"seconds": total, "cpu_s": _cpu() - c0, "read_s": read, "scatter_s": scatter, "open_s": t_open,
            "pieces": len(pieces), "peak_above_imports": _peak() - rss0, "checksum": float(np.trace(acc))}


def worker_visualize(path: str) -> dict:
    import numpy as np  # noqa: F401
    import zarr  # noqa: F401

    import embedview

    visualize = embedview.visualize  # resolves the lazy import before the baseline
    rss0 = _rss()
    c0, t0 = _cpu(), time.perf_counter()
    vis = visualize(path)
    seconds = time.perf_counter() - t0
    cpu = _cpu() - c0
    peak = _peak()
    return {"seconds": seconds, "cpu_s": cpu, "peak_above_imports": peak - rss0,
            "output_bytes": int(vis.rgb.nbytes + vis.components.nbytes),
            "rgb_shape": list(vis.rgb.shape), "scale": list(vis.scale)}


def worker_micro_sam(path: str) -> dict:
    import zarr

    t0 = time.perf_counter()
    from micro_sam.visualization import project_embeddings_for_visualization
    import_s = time.perf_counter() - t0
    rss0 = _rss()
    c0, t0 = _cpu(), time.perf_counter()
    root = zarr.open_group(path, mode="r")
    embeddings = {"features": root["features"], "input_size": root.attrs["input_size"],
                  "original_size": root.attrs["original_size"]}
    note = ""
    try:
        vis, scale = project_embeddings_for_visualization(embeddings)
    except Exception as err:  # older zarr arrays may not iterate: give micro_sam numpy, as 2D loads do
        if embeddings["input_size"] is None:
            raise
        note = f"lazy array failed ({type(err).__name__}); features loaded with [:]"
        t0 = time.perf_counter()
        embeddings["features"] = root["features"][:]
        vis, scale = project_embeddings_for_visualization(embeddings)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_s": _cpu() - c0, "import_s": import_s, "peak_above_imports": _peak() - rss0,
            "output_bytes": int(vis.nbytes), "rgb_shape": list(vis.shape), "note": note}


WORKERS = {"floor": worker_floor, "visualize": worker_visualize, "micro_sam": worker_micro_sam}


# ---------------------------------------------------------------------------------------------
# the driver


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used so far (from /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


WORKER_ENV: dict[str, str] = {}  # --env KEY=VALUE: extra environment for the measured processes


def run_worker(mode: str, path: Path) -> dict:
    """Run one measurement in a fresh process; also note how much CPU *other* processes took."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, str(path)]
    return run_measured(cmd, mode, {**os.environ, **WORKER_ENV})


def run_measured(cmd: list, mode: str, env=None) -> dict:
    """Run ``cmd`` (a worker printing ``RESULT_TAG`` + JSON); its result with the CPU share other
    processes took meanwhile (``others_cpu_share``), or ``{"error": ...}``."""
    busy0, own0, t0 = _busy_cpu_seconds(), _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    others = (_busy_cpu_seconds() - busy0) - (_children_cpu() - own0)
    noise = max(0.0, others) / (wall * (os.cpu_count() or 1))
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return {**json.loads(line[len(RESULT_TAG):]), "others_cpu_share": noise}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"{mode} failed (rc={proc.returncode}): {tail}"}


def wait_quiet(limit_s: float, share: float = 0.10, window_s: float = 3.0) -> float:
    """Wait (at most ``limit_s``) for a ``window_s`` window in which the machine was ≤ ``share`` busy.

    Returns the busy share of the last window."""
    deadline = time.monotonic() + limit_s
    while True:
        busy0 = _busy_cpu_seconds()
        time.sleep(window_s)
        busy = (_busy_cpu_seconds() - busy0) / (window_s * (os.cpu_count() or 1))
        if busy <= share or time.monotonic() >= deadline:
            return busy


def run_quiet(mode: str, path: Path, max_noise: float, retries: int) -> dict:
    """``run_worker``, retried (after a pause) while other processes took over ``max_noise`` of the CPUs."""
    for attempt in range(retries + 1):
        res = run_worker(mode, path)
        if "error" in res or res["others_cpu_share"] <= max_noise or attempt == retries:
            res["attempts"] = attempt + 1
            return res
        print(f"    ({mode}: other processes used {100 * res['others_cpu_share']:.0f}% of the CPUs; "
              f"retrying)", flush=True)
        time.sleep(5)
    return res


def warm_cache(path: Path) -> int:
    """Read every file once so that all runs see a warm page cache."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
    return total


def time_command(cmd: list[str], repeats: int) -> tuple[float | None, str]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or [f"rc={proc.returncode}"])[-1]
            return None, f"FAILS (rc={proc.returncode}: {tail})"
    return statistics.median(times), ""


def cli_startup(repeats: int) -> list[tuple[str, float | None, str]]:
    """Time ``embedview --help``: the script installed beside this interpreter (what a venv user
    runs), and the one on PATH when that differs (a pyenv shim adds its own ~0.1 s)."""
    rows = []
    local = Path(sys.executable).parent / "embedview"
    on_path = shutil.which("embedview")
    scripts = [str(local)] if local.exists() else []
    if on_path and (not scripts or os.path.realpath(on_path) != os.path.realpath(scripts[0])):
        scripts.append(on_path)
    for exe in scripts:
        label = "embedview --help" + ("" if exe == scripts[0] else f" (PATH: {exe})")
        rows.append((label, *time_command([exe, "--help"], repeats)))
    if not scripts:
        rows.append(("embedview --help", None, "MISSING (no embedview script installed)"))
    if rows[0][1] is None:
        t, err = time_command([sys.executable, "-m", "embedview", "--help"], repeats)
        rows.append(("python -m embedview --help", t, err))
    # references: the interpreter alone and the bare package import
    rows.append(("python -c pass (reference)", *time_command([sys.executable, "-c", "pass"], repeats)))
    rows.append(("python -c 'import embedview' (reference)",
                 *time_command([sys.executable, "-c", "import embedview"], repeats)))
    return rows


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def clean_runs(runs: list[dict], max_noise: float) -> list[dict]:
    """The runs during which other processes stayed under ``max_noise`` of the CPUs (all, if none did)."""
    clean = [r for r in runs if r.get("others_cpu_share", 0.0) <= max_noise]
    return clean or runs


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def fmt(value, spec=".2f", missing="—") -> str:
    return missing if value is None else format(value, spec)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """First and last columns left-aligned (names, verdicts), numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    last = len(header) - 1

    def line(cells):
        return "  " + "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(f"\n{title}")
    print(line(header))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def environment() -> list[str]:
    import numpy as np

    try:
        import zarr
        zarr_version = zarr.__version__
    except ImportError:
        zarr_version = "missing"
    try:
        import embedview
        ev = embedview.__version__
    except ImportError:
        ev = "missing"
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")
        info = cfg["Build Dependencies"]["blas"]
        blas = f"{info.get('name')} {info.get('version')}"
    except Exception:
        pass
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
    return [
        f"python {platform.python_version()}, numpy {np.__version__} ({blas}), zarr {zarr_version}, "
        f"embedview {ev}",
        f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {platform.processor() or platform.machine()}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')!s}"
        + (f", {threads}" if threads else ""),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="cases (default: all): stack300 tiled144 tiledstack6")
    parser.add_argument("--data", help="folder of the generated files (default benchmarks/data)")
    parser.add_argument("--small", action="store_true", help="use the --small files of generate.py")
    parser.add_argument("-n", "--repeats", type=int, default=3, help="repeats per measurement (median)")
    parser.add_argument("--help-repeats", type=int, default=5, help="repeats of `embedview --help`")
    parser.add_argument("--no-micro-sam", action="store_true", help="skip micro_sam even if installed")
    parser.add_argument("--max-noise", type=float, default=10.0, metavar="PCT",
                        help="retry a run while other processes used more than PCT%% of the CPUs (default 10)")
    parser.add_argument("--retries", type=int, default=3, help="retries of a noisy run (default 3)")
    parser.add_argument("--wait-quiet", type=float, default=60, metavar="S",
                        help="before each case, wait up to S seconds for the machine to go idle (default 60)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the measured runs (floor, visualize, micro_sam alike), "
                             "e.g. --env OPENBLAS_NUM_THREADS=1 to see the effect of BLAS threads")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        mode, path = args.worker
        print(RESULT_TAG + json.dumps(WORKERS[mode](path)), flush=True)
        return 0

    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env takes KEY=VALUE, got {item!r}")
        WORKER_ENV[key] = value
    data = data_dir(args.data, args.small)
    selected = pick_cases(args.cases, args.small)
    missing = [c.name for c in selected if not case_path(data, c).is_dir()]
    if missing:
        flags = (" --small" if args.small else "") + (f" --data {args.data}" if args.data else "")
        print(f"missing benchmark files {missing} in {data}; run: python benchmarks/generate.py{flags}",
              file=sys.stderr)
        return 2
    have_micro_sam = not args.no_micro_sam and importlib.util.find_spec("micro_sam") is not None

    print("embedview benchmark" + (" (SMALL smoke files)" if args.small else ""))
    for line in environment():
        print("  " + line)
    print(f"  median of {args.repeats}, each repeat a fresh subprocess; warm page cache; data in {data}")
    if WORKER_ENV:
        print(f"  measured runs under extra environment: {' '.join(f'{k}={v}' for k, v in WORKER_ENV.items())}")

    results = {}
    for case in selected:
        path = case_path(data, case)
        print(f"\n[{case.name}] {case.describe()}", flush=True)
        warm_cache(path)
        if args.wait_quiet:
            busy = wait_quiet(args.wait_quiet)
            print(f"  machine {100 * busy:.0f}% busy before the runs", flush=True)
        runs = {"floor": [], "visualize": [], "micro_sam": []}
        for r in range(args.repeats):
            for mode in ("floor", "visualize") + (("micro_sam",) if have_micro_sam else ()):
                res = run_quiet(mode, path, args.max_noise / 100, args.retries)
                runs[mode].append(res)
                shown = res.get("error") or (
                    f"{res['seconds']:.2f} s (cpu {res['cpu_s']:.2f} s), peak +{mib(res['peak_above_imports']):.0f} MiB"
                    f"; others used {100 * res['others_cpu_share']:.0f}% of the CPUs")
                print(f"  repeat {r + 1}: {mode:<9} {shown}", flush=True)
        results[case.name] = {"case": case, "disk_bytes": dir_size(path),
                              **{k: [r for r in v if "error" not in r] for k, v in runs.items()},
                              "errors": [r["error"] for v in runs.values() for r in v if "error" in r]}

    print(f"\nCLI start-up (median of {args.help_repeats})", flush=True)
    help_rows = cli_startup(args.help_repeats)

    # ------------------------------------------------------------------ report
    print("\n" + "=" * 100)
    print_table("Cases", ["case", "layout", "image", "slices", "tiles", "pieces", "features GiB", "disk GiB"], [
        [name, res["case"].layout, "×".join(map(str, res["case"].image_shape)),
         str(res["case"].n_slices or 1), str(res["case"].n_tiles), str(res["case"].n_pieces),
         f"{gib(res['case'].feature_bytes):.2f}", f"{gib(res['disk_bytes']):.2f}"]
        for name, res in results.items()])

    time_rows, mem_rows, ms_rows = [], [], []
    summary = {}
    for name, res in results.items():
        case: Case = res["case"]
        floor, vis = clean_runs(res["floor"], args.max_noise / 100), clean_runs(res["visualize"], args.max_noise / 100)
        f_s, v_s = median_of(floor, "seconds"), median_of(vis, "seconds")
        ratio = v_s / f_s if f_s and v_s else None
        read_s, scat_s = median_of(floor, "read_s"), median_of(floor, "scatter_s")
        other = f_s - read_s - scat_s if f_s is not None else None
        noise = max([r["others_cpu_share"] for r in floor + vis] or [0.0])
        used = f"{len(floor)}+{len(vis)}"
        time_rows.append([name, fmt(f_s), fmt(read_s), fmt(scat_s), fmt(other), fmt(v_s),
                          fmt(median_of(vis, "cpu_s")), used, f"{100 * noise:.0f}%", fmt(ratio),
                          "n/a" if ratio is None else f"{verdict(ratio <= RATIO_TARGET)} (≤{RATIO_TARGET})"])
        peak = median_of(vis, "peak_above_imports")
        out = median_of(vis, "output_bytes")
        above = peak - out if peak is not None and out is not None else None
        mem_rows.append([name, fmt(peak and mib(peak), ".0f"), fmt(out and mib(out), ".1f"),
                         fmt(above and mib(above), ".0f"),
                         "n/a" if above is None else f"{verdict(mib(above) <= MEMORY_TARGET_MIB)} (≤{MEMORY_TARGET_MIB})",
                         fmt(median_of(floor, "peak_above_imports") and mib(median_of(floor, "peak_above_imports")), ".0f")])
        ms = res["micro_sam"]
        m_s = median_of(ms, "seconds")
        speedup = m_s / v_s if m_s and v_s else None
        target = SPEEDUP_TARGET[case.layout]
        if have_micro_sam:
            ms_rows.append([name, fmt(m_s), fmt(median_of(ms, "peak_above_imports") and
                                                 mib(median_of(ms, "peak_above_imports")), ".0f"),
                            fmt(v_s), fmt(speedup, ".1f"),
                            "n/a" if speedup is None else f"{verdict(speedup >= target)} (≥{target:g}×)"])
        summary[name] = {"layout": case.layout, "pieces": case.n_pieces, "feature_gib": gib(case.feature_bytes),
                         "floor_s": f_s, "floor_read_s": read_s, "floor_scatter_s": scat_s,
                         "visualize_s": v_s, "visualize_cpu_s": median_of(vis, "cpu_s"), "ratio": ratio,
                         "max_others_cpu_share": noise, "peak_above_imports_mib": peak and mib(peak),
                         "output_mib": out and mib(out), "micro_sam_s": m_s, "speedup": speedup,
                         "runs": {k: res[k] for k in ("floor", "visualize", "micro_sam")},
                         "errors": res["errors"]}

    print_table(f"Time, s (median of {args.repeats}); floor = open + read every piece once + x@x.T scatter",
                ["case", "floor", "  read", "  scatter", "  other", "visualize", "(cpu)", "runs", "noise", "ratio", "target"],
                time_rows)
    print("  read/scatter/other: the floor's time inside zarr reads, inside x@x.T, and the rest (opening);"
          "\n  (cpu): visualize's CPU seconds (threads add up); runs: floor+visualize runs in the medians (those"
          "\n  during which other processes took under --max-noise of the CPUs, all if none did); noise: the most"
          "\n  CPU other processes took during any of those")
    print_table("Memory, MiB: peak RSS minus RSS after imports (visualize subprocess)",
                ["case", "visualize peak", "output", "peak - output", "target", "floor peak"], mem_rows)
    if have_micro_sam:
        print_table("micro_sam.visualization.project_embeddings_for_visualization vs embedview.visualize",
                    ["case", "micro_sam s", "micro_sam peak MiB", "embedview s", "speed-up", "target"], ms_rows)
        notes = {r.get("note") for res in results.values() for r in res["micro_sam"] if r.get("note")}
        for note in notes:
            print(f"  note: {note}")
    else:
        print("\nmicro_sam not installed, skipped" if not args.no_micro_sam else "\nmicro_sam skipped (--no-micro-sam)")

    print_table(f"CLI start-up, s (median of {args.help_repeats})", ["command", "wall s", "target"], [
        [label, fmt(t, ".3f"), err or (f"{verdict(t <= HELP_TARGET_S)} (≤{HELP_TARGET_S})"
                                        if "reference" not in label else "")]
        for label, t, err in help_rows])
    errors = [e for res in results.values() for e in res["errors"]]
    for e in errors:
        print(f"  error: {e}")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"environment": environment(), "repeats": args.repeats, "cases": summary,
                       "cli": [{"command": label, "seconds": t, "error": err} for label, t, err in help_rows]},
                      fh, indent=1, default=str)
        print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
