"""Out-of-core OME-Zarr output: time and peak memory on a large tiled stack, against the floor.

Runs ``embedview render CASE -o OUT.zarr`` in a fresh process per run and reads its peak resident
memory (``ru_maxrss``), at the embedding grid and at image resolution (``--pixel-size 1``, where
the in-memory picture would be far larger than the process). The floor is one process reading every
piece once (zarr get + decompress): a render needs two reads (fit, then projection).

Usage::

    python benchmarks/generate.py tiles2048          # 2048 pieces (8 slices × 16×16 tiles), 8 GiB
    python benchmarks/bench_outofcore.py -n 3
    python benchmarks/bench_outofcore.py --small -n 1  # smoke run (generate.py tiles2048 --small first)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import case_path, data_dir, dir_size, gib, mib, pick_cases  # noqa: E402

FLOOR = """
import sys, time, zarr, numpy as np
root = zarr.open_group(sys.argv[1], mode="r")["features"]
arrays = [root[k] for k in sorted((k for k in root.array_keys() if k.isdigit()), key=int)]
t0 = time.perf_counter()
for z in range(arrays[0].shape[0]):
    for a in arrays:
        np.asarray(a[z, 0], dtype=np.float32)
print(time.perf_counter() - t0)
"""


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of any child so far: runs go from small to large.
    return seconds, max(peak, before) * 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeats", type=int, default=3)
    parser.add_argument("--data", help="folder of the generated cases (default benchmarks/data)")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--out", help="scratch folder for the outputs (default: a temporary one)")
    args = parser.parse_args(argv)

    (case,) = pick_cases(["tiles2048"], args.small)
    path = case_path(data_dir(args.data, args.small), case)
    if not path.exists():
        raise SystemExit(f"{path} is missing: run python benchmarks/generate.py tiles2048{' --small' if args.small else ''}")
    scratch = Path(args.out or tempfile.mkdtemp(prefix="ev-ooc-"))
    print(f"case {case.name}: {case.describe()}; {gib(dir_size(path)):.2f} GiB on disk")

    # Baseline memory of a process that only imports what the render imports.
    _, base = run([sys.executable, "-c", "import numpy, zarr, embedview._run.visualize, embedview._outputs.omezarr"])
    floors = [float(subprocess.run([sys.executable, "-c", FLOOR, str(path)], check=True, capture_output=True,
                                   text=True).stdout) for _ in range(args.repeats)]
    floor = statistics.median(floors)
    print(f"floor (read every piece once): {floor:.2f} s (median of {len(floors)}); imports alone: "
          f"{mib(base):.0f} MiB resident")

    results = []
    for label, extra in (("embedding grid", []), ("pixel size 1", ["--pixel-size", "1"])):
        times, peaks = [], []
        for _ in range(args.repeats):
            out = scratch / "out.zarr"
            shutil.rmtree(out, ignore_errors=True)
            seconds, peak = run([sys.executable, "-m", "embedview", "render", str(path), "-o", str(out), "-q", *extra])
            times.append(seconds)
            peaks.append(peak)
        import zarr

        root = zarr.open_group(str(out), mode="r")
        level0 = root["0"]
        in_memory = level0.size + root["components"].size * 4  # uint8 rgb + float32 components
        row = {"output": label, "shape": list(level0.shape), "levels": len(root.attrs["multiscales"][0]["datasets"]),
               "seconds": statistics.median(times), "vs_floor": statistics.median(times) / floor,
               "peak_mib": mib(max(peaks)), "above_imports_mib": mib(max(peaks) - base),
               "picture_in_memory_mib": mib(in_memory), "on_disk_mib": mib(dir_size(out))}
        results.append(row)
        print(f"{label:>15}: {row['seconds']:.2f} s = {row['vs_floor']:.2f}× the floor; peak RSS "
              f"{row['peak_mib']:.0f} MiB ({row['above_imports_mib']:.0f} MiB above imports) for a picture of "
              f"{row['picture_in_memory_mib']:.0f} MiB (rgb + components) in {row['levels']} levels, "
              f"{row['on_disk_mib']:.0f} MiB on disk; level 0 {row['shape']}")
    print(json.dumps({"case": case.name, "floor_s": floor, "results": results}))
    if not args.out:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
