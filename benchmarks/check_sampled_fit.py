"""How far a sampled fit's picture lies from the exact fit's, on the benchmark files.

``PCA(fit_sample=N)`` fits on a seeded uniform sample of about N cells. The issue
allows a sampled default only where the picture stays within ±2 uint8 levels of the exact fit
on ≥ 99% of pixels; this prints that fraction per case (and the time of both).

Usage::

    python benchmarks/generate.py
    python benchmarks/check_sampled_fit.py [CASE ...] [--small] [--sample N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import case_path, data_dir, pick_cases  # noqa: E402

import embedview  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*")
    parser.add_argument("--data")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--sample", type=int, default=500_000, help="cells in the sample (default 500000)")
    args = parser.parse_args()
    print(f"sampled fit: about {args.sample:,} cells; target: ≥ 99% of pixels within ±2 levels")
    print(f"{'case':12} {'cells':>10} {'exact s':>8} {'sampled s':>9} {'within ±2':>10} {'max diff':>8}")
    for case in pick_cases(args.cases, args.small):
        path = case_path(data_dir(args.data, args.small), case)
        t0 = time.perf_counter()
        exact, = embedview.PCA(fit_sample=None).fit_transform(path)
        t1 = time.perf_counter()
        sampled, = embedview.PCA(fit_sample=args.sample).fit_transform(path)
        t2 = time.perf_counter()
        diff = np.abs(exact.rgb.astype(np.int16) - sampled.rgb).max(axis=-1)
        valid = exact.valid
        within = float((diff[valid] <= 2).mean())
        print(f"{case.name:12} {exact.basis.n_samples:>10,} {t1 - t0:>8.2f} {t2 - t1:>9.2f} "
              f"{100 * within:>9.2f}% {int(diff[valid].max()):>8}  {'ok' if within >= 0.99 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
