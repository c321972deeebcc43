"""Upsampling: sharpness (boundary displacement) on three scenes, and guided vs nearest time and memory.

(a) The quality metric of issue 11 on the synthetic scenes of ``tests/_scenes.py`` (a non-square 2D
image with SAM's 14.0625-pixel cells, a tiled image with halo, a stack): each output pixel (pixel
size 1) is assigned to the nearest pure-material colour; misassigned pixels per boundary pixel is
the mean boundary displacement, printed for nearest, bilinear and guided.

(b) tiled144 (144 tiles, 12000×12000) drawn at pixel size 1 to OME-Zarr, as ``render tiled144.zarr
-o OUT.zarr --pixel-size 1 --upsample nearest|guided`` does but through the API (the command would
also draw the ``--image`` figure), with a 12000×12000 uint8 guide written once as an uncompressed
TIFF (so it is memory-mapped), each run in a fresh process: wall time (median of ``-n`` runs), the
guided/nearest ratio and each run's peak resident memory (``ru_maxrss`` of that child).

Usage::

    python benchmarks/generate.py tiled144                 # once (or --data DIR with the files)
    python benchmarks/bench_upsample.py -n 1
    python benchmarks/bench_upsample.py --small -n 1       # smoke run (generate.py tiled144 --small)
    python benchmarks/bench_upsample.py --quality-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # the scenes are the test's
from _common import case_path, data_dir, mib, pick_cases  # noqa: E402


def quality() -> list[dict]:

    import _scenes as scenes
    import embedview
    from embedview._inputs.micro_sam_layout import write_micro_sam_embeddings

    tmp = Path(tempfile.mkdtemp(prefix="ev-up-"))
    features, labels, guide, protos = scenes.single()
    cases = [("2D 600×900, 64×64 cells of 14.0625 px", features, labels, guide, protos, {"original_size": labels.shape})]
    tiles, labels, guide, protos, tiling = scenes.tiled()
    path = write_micro_sam_embeddings(tmp / "t.zarr", tiles, original_size=tiling.shape, tile_shape=tiling.tile_shape,
                                      halo=tiling.halo)
    cases.append(("tiled 500×700, 2×3 tiles of 256 px, halo 32, cells 14.4–16 px", path, labels, guide, protos, {}))
    features, labels, guide, protos = scenes.stack()
    cases.append(("stack 3×300×420, cells of 15 px, a guide per slice", features, labels, guide, protos,
                  {"original_size": labels.shape[1:]}))
    rows = []
    for name, source, labels, guide, protos, kw in cases:
        basis = embedview.PCA().fit_transform(source, **kw)[0].basis
        row = {"scene": name, "boundary_pixels": int(scenes.boundary(labels).sum())}
        for method in ("nearest", "bilinear", "guided"):
            up = embedview.Upsample("guided", guide=guide) if method == "guided" else method
            t0 = time.perf_counter()
            vis = embedview.PCA.from_basis(basis).transform(source, pixel_size=1, upsample=up, **kw)
            row[method] = scenes.displacement(vis.components, labels, protos, basis)
            row[f"{method}_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{name}: displacement nearest {row['nearest']:.3f} px, bilinear {row['bilinear']:.3f} px, "
              f"guided {row['guided']:.3f} px ({row['boundary_pixels']} boundary pixels; drawing "
              f"{row['nearest_s']:.2f} / {row['bilinear_s']:.2f} / {row['guided_s']:.2f} s)", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def make_guide(path: Path, shape: tuple[int, int]) -> Path:
    """A uint8 guide of ``shape`` (smooth regions, curved edges, noise), written by bands into an
    uncompressed TIFF; never held whole in memory."""
    import numpy as np
    import tifffile

    if path.exists():
        return path
    tmp = path.with_name(path.name + ".part")
    out = tifffile.memmap(str(tmp), shape=shape, dtype=np.uint8)
    rng = np.random.default_rng(0)
    x = np.arange(shape[1]) + 0.5
    for y0 in range(0, shape[0], 512):
        y = (np.arange(y0, min(shape[0], y0 + 512)) + 0.5)[:, None]
        level = (np.sin(y / 700.0) + np.cos(x / 900.0 + y / 1500.0) > 0).astype(np.float32) * 90 + 60
        level += (np.hypot((y % 2000) - 1000, (x % 2400) - 1200) < 600) * 70
        out[y0:y0 + y.shape[0]] = np.clip(level + rng.normal(scale=8, size=level.shape), 0, 255).astype(np.uint8)
    out.flush()
    del out
    os.replace(tmp, path)
    return path


#: Runs a command and prints its peak RSS. The command is forked from this small launcher, not
#: from the benchmark: a child's ru_maxrss includes the memory of the process it was forked from
#: (here the scenes of the quality part, hundreds of MiB), which would inflate every figure.
LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); _, s, u = os.wait4(p.pid, 0); "
            "print(u.ru_maxrss); sys.exit(os.waitstatus_to_exitcode(s))")
#: What the guided and nearest runs do: the API, so that no figure is drawn beside the output.
RENDER = ("import sys, embedview; src, out, method, guide = sys.argv[1:]; "
          "up = embedview.Upsample('guided', guide=guide) if method == 'guided' else method; "
          "embedview.PCA().fit_transform(src, pixel_size=1, upsample=up, output=out)")


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process (see :data:`LAUNCHER`)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {done.returncode}")
    return time.perf_counter() - t0, int(done.stdout.split()[-1]) * 1024


def speed(args) -> dict:
    import zarr

    (case,) = pick_cases(["tiled144"], args.small)
    path = case_path(data_dir(args.data, args.small), case)
    if not path.exists():
        raise SystemExit(f"{path} is missing: run python benchmarks/generate.py tiled144{' --small' if args.small else ''}")
    scratch = Path(args.out or tempfile.mkdtemp(prefix="ev-up-"))
    scratch.mkdir(parents=True, exist_ok=True)
    guide = make_guide(Path(args.guide) if args.guide else scratch / f"{case.name}_guide.tif", case.image_shape)
    print(f"case {case.name}: {case.describe()}; guide {guide} ({case.image_shape[0]}×{case.image_shape[1]} uint8, "
          f"{mib(guide.stat().st_size):.0f} MiB)", flush=True)
    _, base = run([sys.executable, "-c", "import numpy, zarr, embedview._run.estimator, embedview._outputs.omezarr, embedview._outputs.guide"])
    results = {}
    # Through the API: the command line would also draw the --image figure, which is not the upsampling's.
    for method in ("nearest", "guided"):
        times, peaks = [], []
        for _ in range(args.repeats):
            out = scratch / "out.zarr"
            shutil.rmtree(out, ignore_errors=True)
            seconds, peak = run([sys.executable, "-c", RENDER, str(path), str(out), method, str(guide)])
            times.append(seconds)
            peaks.append(peak)
        root = zarr.open_group(str(out), mode="r")
        chunks = root["0"].chunks, root["components"].chunks
        results[method] = {"seconds": statistics.median(times), "runs": times, "peak_mib": mib(max(peaks)),
                           "above_imports_mib": mib(max(peaks) - base), "shape": list(root["0"].shape),
                           "chunks": [list(c) for c in chunks]}
        print(f"{method:>8}: {results[method]['seconds']:.1f} s (median of {len(times)}), peak RSS "
              f"{results[method]['peak_mib']:.0f} MiB ({results[method]['above_imports_mib']:.0f} MiB above "
              f"imports); level 0 {results[method]['shape']}, chunks {chunks}", flush=True)
    ratio = results["guided"]["seconds"] / results["nearest"]["seconds"]
    extra_mib = results["guided"]["peak_mib"] - results["nearest"]["peak_mib"]
    print(f"guided / nearest time: {ratio:.2f}× (target ≤ 3×); guided peak {extra_mib:+.0f} MiB vs nearest, "
          f"{results['guided']['above_imports_mib']:.0f} MiB above imports (target ≤ 400 MiB above the chunk buffers)")
    if not args.out:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"case": case.name, "image_shape": list(case.image_shape), "ratio": ratio, "results": results,
            "imports_mib": mib(base)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeats", type=int, default=3)
    parser.add_argument("--data", help="folder of the generated cases (default benchmarks/data)")
    parser.add_argument("--small", action="store_true", help="the small tiled144 (3000×3000): a smoke run")
    parser.add_argument("--out", help="scratch folder for the outputs and the guide (default: a temporary one)")
    parser.add_argument("--guide", help="where the guide TIFF is (made there if missing)")
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args(argv)
    report = {}
    if not args.speed_only:
        report["quality"] = quality()
    if not args.quality_only:
        report["speed"] = speed(args)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
