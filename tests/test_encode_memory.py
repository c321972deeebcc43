"""A big image encodes tiled in bounded memory, and the one-step path equals the two-step one.

An 8192×8192 RGB TIFF (tiled, zlib-compressed, so the file stays small) is encoded in tiles of
512 with a halo of 64 by a cheap encoder (a strided-convolution patch embedding with SAM's
declared preprocessing: 16-pixel patches on the 1024² input, a 64×64 grid of 16 channels), so
the test measures embedview's memory, not a model's time. The encoding runs in a subprocess
whose peak RSS must stay under 2 GiB; then the image is drawn to OME-Zarr from the written file
(``encode`` then ``render``) and straight from the image (``encode`` in memory, then ``render``),
and both must be equal.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tifffile = pytest.importorskip("tifffile")

SIDE, TILE, HALO = 8192, (512, 512), (64, 64)
LIMIT = 2 * 2**30
COMPRESSION = None  # uncompressed (201 MiB in tmp_path): tile reads cost no decoding


def tiny_sam_encoder():
    """A 16-pixel strided convolution (3 → 16 channels, fixed seed) declared as SAM's preprocessing."""
    import embedview
    from embedview._encode.sam import PIXEL_MEAN, PIXEL_STD, sam_preprocess

    torch.manual_seed(0)
    module = torch.nn.Conv2d(3, 16, kernel_size=16, stride=16).eval()
    return embedview.Encoder(module, patch_size=16, preprocess=sam_preprocess(), mean=PIXEL_MEAN, std=PIXEL_STD,
                             pixel_range=255, name="tiny_patch16")


def _write_tiff(path: Path) -> None:
    """8192² RGB uint8, written tile by tile (never whole in memory): smooth ramps that vary per tile."""
    yy, xx = np.mgrid[0:TILE[0], 0:TILE[1]]
    grid = SIDE // TILE[0]

    def tiles():
        for i in range(grid):
            for j in range(grid):
                yield np.stack([(yy + 7 * i) % 256, (xx + 11 * j) % 256, (yy + xx + 13 * (i + j)) % 256],
                               axis=-1).astype(np.uint8)

    tifffile.imwrite(path, tiles(), shape=(SIDE, SIDE, 3), dtype=np.uint8, tile=TILE, photometric="rgb",
                     compression=COMPRESSION)


_CHILD = """
import resource, sys
sys.path.insert(0, {tests!r})
from test_encode_memory import tiny_sam_encoder, TILE, HALO
import embedview
encoder = tiny_sam_encoder()
before = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:")][0]
src = embedview.encode({image!r}, encoder, tile_shape=TILE, halo=HALO, output={output!r})
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, before, len(src.pieces()))
"""


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.tif"
    _write_tiff(path)
    return path


def test_big_tiff_encodes_tiled_in_bounded_memory_and_renders_as_two_steps(big_tiff, tmp_path):
    import embedview

    emb = tmp_path / "emb.zarr"
    code = _CHILD.format(tests=str(Path(__file__).parent), image=str(big_tiff), output=str(emb))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak, before, pieces = map(int, proc.stdout.split("PEAK")[1].split())
    assert pieces == (SIDE // TILE[0]) ** 2
    print(f"encode peak RSS {peak / 2**20:.0f} MiB, {(peak - before) / 2**20:.0f} MiB above the imports and model")
    # besides the imports and the model, encoding stays under the limit (the criterion). Seen
    # here: 250-265 MiB run alone; once 1583 MiB inside the whole suite on a shared machine (unexplained).
    assert peak - before < LIMIT, (f"peak RSS {peak / 2**20:.0f} MiB, {(peak - before) / 2**20:.0f} MiB above the "
                                   f"imports (the image is {SIDE * SIDE * 3 / 2**20:.0f} MiB)")

    from embedview._workflows.commands import render

    two_step = tmp_path / "two_step.zarr"
    render(str(emb), str(two_step), quiet=True)
    in_memory = embedview.encode(str(big_tiff), tiny_sam_encoder(), tile_shape=TILE, halo=HALO)
    one_step = tmp_path / "one_step.zarr"
    render(in_memory, str(one_step), quiet=True)

    import zarr

    a, b = zarr.open_group(str(two_step), mode="r"), zarr.open_group(str(one_step), mode="r")
    assert sorted(a.array_keys()) == sorted(b.array_keys()) and list(a.array_keys())
    for key in a.array_keys():
        assert a[key].shape == b[key].shape
        np.testing.assert_array_equal(a[key][...], b[key][...])
