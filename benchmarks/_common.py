"""Shared by the benchmark scripts: the cases, where their files live, small helpers.

Not part of the package; the scripts import it from their own folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "data"

C = 256  # SAM's channels
GRID = 64  # SAM's 64×64 cell grid
MICRO_SAM_VERSION = "1.8.14"


@dataclass(frozen=True)
class Case:
    """One benchmark container, in micro_sam's layout.

    ``n_slices`` is None for a 2D image; ``tile_shape``/``halo`` are None for untiled files.
    """

    name: str
    image_shape: tuple[int, int]
    n_slices: int | None = None
    tile_shape: tuple[int, int] | None = None
    halo: tuple[int, int] | None = None

    @property
    def tiled(self) -> bool:
        return self.tile_shape is not None

    @property
    def layout(self) -> str:
        if self.tiled:
            return "tiled stack" if self.n_slices else "tiled"
        return "stack" if self.n_slices else "single"

    @property
    def tile_grid(self) -> tuple[int, int]:
        if not self.tiled:
            return (1, 1)
        return tuple(-(-s // t) for s, t in zip(self.image_shape, self.tile_shape))

    @property
    def n_tiles(self) -> int:
        gy, gx = self.tile_grid
        return gy * gx

    @property
    def n_pieces(self) -> int:
        return (self.n_slices or 1) * self.n_tiles

    @property
    def feature_bytes(self) -> int:
        return self.n_pieces * C * GRID * GRID * 4

    def describe(self) -> str:
        h, w = self.image_shape
        z = f"{self.n_slices}×" if self.n_slices else ""
        tiles = ""
        if self.tiled:
            gy, gx = self.tile_grid
            tiles = f", tiles {self.tile_shape[0]} halo {self.halo[0]} ({gy}×{gx}={self.n_tiles})"
        return f"{self.layout}: {z}{h}×{w}{tiles}, {self.n_pieces} pieces, {gib(self.feature_bytes):.2f} GiB"


FULL_CASES = {
    "stack300": Case("stack300", (512, 512), n_slices=300),
    "tiled144": Case("tiled144", (12000, 12000), tile_shape=(1024, 1024), halo=(128, 128)),
    "tiledstack6": Case("tiledstack6", (1536, 2048), n_slices=6, tile_shape=(512, 512), halo=(64, 64)),
}

SMALL_CASES = {
    "stack300": Case("stack300", (512, 512), n_slices=12),
    "tiled144": Case("tiled144", (3000, 3000), tile_shape=(1024, 1024), halo=(128, 128)),
    "tiledstack6": Case("tiledstack6", (1536, 2048), n_slices=2, tile_shape=(512, 512), halo=(64, 64)),
}


#: For the scale-out benchmarks (bench_outofcore.py, bench_dask.py): 2048 pieces, 8 GiB of features.
SCALE_CASES = {"tiles2048": Case("tiles2048", (4096, 4096), n_slices=8, tile_shape=(256, 256), halo=(32, 32))}
SMALL_SCALE_CASES = {"tiles2048": Case("tiles2048", (1024, 1024), n_slices=2, tile_shape=(256, 256), halo=(32, 32))}


def cases(small: bool = False, scale: bool = False) -> dict[str, Case]:
    if scale:
        return SMALL_SCALE_CASES if small else SCALE_CASES
    return SMALL_CASES if small else FULL_CASES


def data_dir(data: str | os.PathLike | None, small: bool = False) -> Path:
    """``--data DIR`` or ``benchmarks/data``; small cases live in a ``small`` subfolder."""
    base = Path(data) if data else DEFAULT_DATA
    return base / "small" if small else base


def case_path(data: Path, case: Case) -> Path:
    return data / f"{case.name}.zarr"


def mib(nbytes: float) -> float:
    return nbytes / 2**20


def gib(nbytes: float) -> float:
    return nbytes / 2**30


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def pick_cases(names: list[str] | None, small: bool) -> list[Case]:
    table = cases(small)
    if names and all(n in cases(small, scale=True) for n in names):
        table = cases(small, scale=True)
    if not names:
        return list(table.values())
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {list(table)}")
    return [table[n] for n in names]
