"""Write large micro_sam-layout embedding containers for the benchmarks.

The files have exactly the layout ``micro_sam.util.precompute_image_embeddings`` (1.8.14) writes
with zarr v3: root attributes ``data_signature, tile_shape, halo, model_type, model_name,
micro_sam_version, model_hash, input_size, original_size``; float32 features ``(Z, 1, 256, 64, 64)``
chunked per slice for stacks; for tiled images a group ``features`` (attributes ``shape``,
``tile_shape``, ``halo``) of arrays ``features/<id>``, ``(1, 256, 64, 64)`` or
``(Z, 1, 256, 64, 64)``, chunked per slice, each with its ``original_size`` (the outer block) and
``input_size``. Codecs: ``bytes`` + ``zstd`` level 0, zarr v3's defaults, as micro_sam gets them.

Features are synthetic but behave like an image encoder's: every cell's vector is a function of
the *image position* it covers (so overlapping tile halos agree), made of a few materials
(smooth random fields, soft argmax → 256-d material vectors), a smooth texture (random Fourier
fields through a fixed random projection), per-cell noise, a few high-norm "register" cells
(0.3 %, as ViTs produce) and a distinct padding vector where SAM's grid covers padding. Full
float32 mantissas, so zstd compresses them about as little as real SAM features.

Usage::

    python benchmarks/generate.py                  # all cases, full size, into benchmarks/data
    python benchmarks/generate.py --small          # tiny versions for a smoke run
    python benchmarks/generate.py stack300 --data /scratch/ev --force
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import GRID, MICRO_SAM_VERSION, C, Case, case_path, data_dir, dir_size, gib, pick_cases  # noqa: E402

SEED = 0
N_MATERIALS = 6
N_TEXTURES = 12
N_WAVES = 8  # Fourier terms per field
NOISE = 0.08
SHARPNESS = 4.0
REGISTER_RATE = 0.003
REGISTER_NORM = 10.0  # times the typical cell norm
GENERATOR_VERSION = 1


# ---------------------------------------------------------------------------------------------
# geometry, as micro_sam computes it


def resized_shape(block: tuple[int, int], longest: int = 1024) -> tuple[int, int]:
    """SAM's ``ResizeLongestSide``: the longest side becomes 1024 (micro_sam's ``input_size``)."""
    scale = longest / max(block)
    return tuple(int(s * scale + 0.5) for s in block)


def tile_blocks(case: Case):
    """Yield ``(tile_id, (oy0, ox0), (oh, ow))``: the outer blocks, in C order."""
    gy, gx = case.tile_grid
    (H, W), (th, tw), (hy, hx) = case.image_shape, case.tile_shape, case.halo
    for i in range(gy):
        for j in range(gx):
            y0, y1 = i * th, min((i + 1) * th, H)
            x0, x1 = j * tw, min((j + 1) * tw, W)
            oy0, oy1 = max(y0 - hy, 0), min(y1 + hy, H)
            ox0, ox1 = max(x0 - hx, 0), min(x1 + hx, W)
            yield i * gx + j, (oy0, ox0), (oy1 - oy0, ox1 - ox0)


# ---------------------------------------------------------------------------------------------
# the synthetic "encoder"


class Scene:
    """A deterministic function from (slice, image position) to a 256-d feature vector."""

    def __init__(self, case: Case, seed: int = SEED):
        rng = np.random.default_rng(seed)
        longest = max(case.image_shape)
        m, k, j = N_MATERIALS, N_TEXTURES, N_WAVES
        f = m + k
        wavelength = np.r_[np.full(m, longest / 6), np.full(k, longest / 24)]
        theta = rng.uniform(0, 2 * np.pi, (f, j))
        magnitude = rng.uniform(0.5, 1.5, (f, j)) / wavelength[:, None]
        self.ky = 2 * np.pi * magnitude * np.sin(theta)
        self.kx = 2 * np.pi * magnitude * np.cos(theta)
        # materials drift slowly through a stack (about one cycle per 40-ish slices)
        self.kz = 2 * np.pi * rng.normal(0, 1 / 40, (f, j)) if case.n_slices else np.zeros((f, j))
        self.phase = rng.uniform(0, 2 * np.pi, (f, j))
        self.amp = rng.normal(size=(f, j)) / np.sqrt(j)
        self.materials = rng.normal(0, 0.6, (m, C)).astype(np.float32)  # (M, C)
        self.offset = rng.normal(0, 0.3, C).astype(np.float32)
        self.texture = rng.normal(0, 0.15, (C, k)).astype(np.float32)
        self.padding = (self.offset + rng.normal(0, 0.4, C)).astype(np.float32)
        register = rng.normal(size=C)
        typical = np.sqrt(0.6**2 * C + 0.3**2 * C)
        self.register = (register / np.linalg.norm(register) * REGISTER_NORM * typical).astype(np.float32)
        self.seed = seed

    def fields(self, ys: np.ndarray, xs: np.ndarray, z: int) -> np.ndarray:
        """Smooth random fields ``(F, h, w)`` at image coordinates ``ys`` × ``xs`` of slice ``z``."""
        ay = self.ky[..., None] * ys  # (F, J, h)
        bx = self.kx[..., None] * xs + (self.kz * z + self.phase)[..., None]  # (F, J, w)
        a = self.amp[..., None]
        # cos(ay + bx) = cos ay cos bx − sin ay sin bx, summed over the J waves of each field
        return (np.einsum("fjh,fjw->fhw", a * np.cos(ay), np.cos(bx))
                - np.einsum("fjh,fjw->fhw", a * np.sin(ay), np.sin(bx)))

    def piece(self, origin, block, z: int, key: tuple) -> np.ndarray:
        """Features ``(C, 64, 64)`` float32 of the block ``origin + [0, block)`` encoded SAM-style."""
        cell = max(block) / GRID  # image pixels per cell
        ys = origin[0] + (np.arange(GRID) + 0.5) * cell
        xs = origin[1] + (np.arange(GRID) + 0.5) * cell
        g = self.fields(ys, xs, z).reshape(N_MATERIALS + N_TEXTURES, -1)
        logits = SHARPNESS * g[:N_MATERIALS]
        weights = np.exp(logits - logits.max(axis=0))
        weights /= weights.sum(axis=0)
        rng = np.random.default_rng((self.seed, GENERATOR_VERSION) + key)
        out = rng.standard_normal((C, GRID * GRID), dtype=np.float32)
        out *= NOISE
        out += self.materials.T @ weights.astype(np.float32)
        out += self.texture @ g[N_MATERIALS:].astype(np.float32)
        out += self.offset[:, None]
        # SAM pads the resized block at the bottom/right: those cells see zeros
        rows, cols = (-(-s // 16) for s in resized_shape(block))
        valid = np.zeros((GRID, GRID), bool)
        valid[:rows, :cols] = True
        valid = valid.ravel()
        if not valid.all():
            out[:, ~valid] = self.padding[:, None] + NOISE * rng.standard_normal(
                (C, int((~valid).sum())), dtype=np.float32)
        registers = np.nonzero(valid & (rng.random(valid.size) < REGISTER_RATE))[0]
        out[:, registers] += self.register[:, None]
        return out.reshape(C, GRID, GRID)


# ---------------------------------------------------------------------------------------------
# writing


def _params(case: Case) -> dict:
    return {"case": case.name, "layout": case.layout, "image_shape": list(case.image_shape),
            "n_slices": case.n_slices, "tile_shape": case.tile_shape and list(case.tile_shape),
            "halo": case.halo and list(case.halo), "channels": C, "seed": SEED,
            "generator_version": GENERATOR_VERSION}


def _root_attrs(case: Case, signature: str) -> dict:
    if case.tiled:
        input_size = original_size = None
        tile_shape, halo = list(case.tile_shape), list(case.halo)
    else:
        input_size, original_size = list(resized_shape(case.image_shape)), list(case.image_shape)
        tile_shape = halo = None
    return {"data_signature": signature, "tile_shape": tile_shape, "halo": halo,
            "model_type": "vit_b", "model_name": "vit_b", "micro_sam_version": MICRO_SAM_VERSION,
            "model_hash": None, "input_size": input_size, "original_size": original_size}


def _create_array(group, name, shape, attrs=None):
    import zarr
    from zarr.codecs import ZstdCodec

    chunks = (1,) * (len(shape) - 3) + shape[-3:]
    arr = group.create_array(name, shape=shape, chunks=chunks, dtype="float32", fill_value=0.0,
                             compressors=ZstdCodec(level=0, checksum=False))
    if attrs:
        arr.attrs.update(attrs)
    assert isinstance(arr, zarr.Array)
    return arr


def write_case(case: Case, path, workers: int | None = None) -> dict:
    """Write ``case`` to ``path`` (via a temporary sibling, renamed when complete)."""
    import zarr

    params = _params(case)
    signature = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()
    tmp = str(path) + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(tmp, mode="w", zarr_format=3)
    root.attrs.update(_root_attrs(case, signature))
    scene = Scene(case)
    zs = list(range(case.n_slices)) if case.n_slices else [None]
    zshape = (case.n_slices,) if case.n_slices else ()

    jobs = []  # (array, index, origin, block, z, key)
    if case.tiled:
        features = root.create_group("features")
        features.attrs.update({"shape": list(case.image_shape), "tile_shape": list(case.tile_shape),
                               "halo": list(case.halo)})
        for tile, origin, block in tile_blocks(case):
            arr = _create_array(features, str(tile), zshape + (1, C, GRID, GRID),
                                {"original_size": list(block), "input_size": list(resized_shape(block))})
            for z in zs:
                index = (0,) if z is None else (z, 0)
                jobs.append((arr, index, origin, block, z or 0, (tile, z or 0)))
    else:
        arr = _create_array(root, "features", zshape + (1, C, GRID, GRID))
        for z in zs:
            index = (0,) if z is None else (z, 0)
            jobs.append((arr, index, (0, 0), case.image_shape, z or 0, (0, z or 0)))

    def run(job):
        arr, index, origin, block, z, key = job
        arr[index] = scene.piece(origin, block, z, key)

    t0 = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        for _ in pool.map(run, jobs):
            done += 1
            if sys.stderr.isatty() and (done % 10 == 0 or done == len(jobs)):
                print(f"\r  {case.name}: {done}/{len(jobs)} pieces", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    seconds = time.perf_counter() - t0

    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    info = {**params, "pieces": len(jobs), "feature_bytes": case.feature_bytes,
            "disk_bytes": dir_size(path), "seconds": round(seconds, 2)}
    with open(str(path) + ".json", "w") as fh:
        json.dump(info, fh, indent=1)
    return info


def is_current(case: Case, path) -> bool:
    try:
        with open(str(path) + ".json") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return False
    return os.path.isdir(path) and all(info.get(k) == v for k, v in _params(case).items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="cases to write (default: all): stack300 tiled144 tiledstack6")
    parser.add_argument("--data", help="output folder (default benchmarks/data)")
    parser.add_argument("--small", action="store_true", help="tiny versions, for a smoke run (in DATA/small)")
    parser.add_argument("--force", action="store_true", help="rewrite files that are already there")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    args = parser.parse_args(argv)

    out = data_dir(args.data, args.small)
    out.mkdir(parents=True, exist_ok=True)
    for case in pick_cases(args.cases, args.small):
        path = case_path(out, case)
        if not args.force and is_current(case, path):
            print(f"{case.name}: up to date at {path} ({case.describe()})")
            continue
        info = write_case(case, path, args.workers)
        ratio = info["disk_bytes"] / info["feature_bytes"]
        print(f"{case.name}: wrote {path} ({case.describe()}) in {info['seconds']:.1f} s; "
              f"{gib(info['disk_bytes']):.2f} GiB on disk (zstd ratio {ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
