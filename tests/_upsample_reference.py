"""A slow, literal reading of the upsampling kernel's definition, one output pixel at a time.

Only for tiny cases in tests: every pixel loops over its neighbour cells in Python, in float64.
The engines' kernels (numpy :func:`embedview._model.upsample.upsample_cells`, PyTorch
:meth:`embedview._model.torch_engine.TorchEngine.upsample`) are held to it.
"""

import math

import numpy as np

#: A weight sum below float32's smallest normal number counts as underflowed.
TINY = float(np.finfo(np.float32).tiny)


def nearest_cell(u: float, n_valid: int) -> int:
    """The cell whose centre is nearest ``u`` (a half-way point goes up), clipped to ``[0, n_valid)``."""
    return min(max(math.floor(u + 0.5 + 1e-9), 0), n_valid - 1)


def reference_upsample(cells, rows, cols, valid, method, *, cell_guide=None, pixel_guide=None,
                       sigma_spatial=1.0, sigma_range=0.1, radius=1):
    """``(ny, nx, k)`` float32: each pixel by the kernel's definition (see the module docstring)."""
    cells = np.asarray(cells, np.float64)
    k = cells.shape[0]
    vh, vw = valid
    out = np.empty((len(rows), len(cols), k), np.float32)
    for py, uy in enumerate(rows):
        for px, ux in enumerate(cols):
            n_y, n_x = nearest_cell(uy, vh), nearest_cell(ux, vw)
            nearest = cells[:, n_y, n_x]
            if method == "nearest":
                out[py, px] = nearest
                continue
            if np.isnan(nearest).any():
                out[py, px] = np.nan
                continue
            if method == "bilinear":
                neighbours = []
                i0, j0 = math.floor(uy), math.floor(ux)
                ty, tx = uy - i0, ux - j0
                for i, wy in ((i0, 1 - ty), (i0 + 1, ty)):
                    for j, wx in ((j0, 1 - tx), (j0 + 1, tx)):
                        neighbours.append((i, j, wy * wx))
            else:
                neighbours = []
                g = np.asarray(pixel_guide, np.float64)[py, px]
                for i in range(n_y - radius, n_y + radius + 1):
                    for j in range(n_x - radius, n_x + radius + 1):
                        if not (0 <= i < vh and 0 <= j < vw):
                            continue
                        c = np.asarray(cell_guide, np.float64)[:, i, j]
                        if np.isnan(c).any():
                            continue
                        spatial = math.exp(-((uy - i) ** 2 + (ux - j) ** 2) / (2 * sigma_spatial**2))
                        similar = math.exp(-float(np.sum((g - c) ** 2)) / (2 * sigma_range**2))
                        neighbours.append((i, j, spatial * similar))
            total, acc = 0.0, np.zeros(k)
            for i, j, weight in neighbours:
                if not (0 <= i < vh and 0 <= j < vw) or np.isnan(cells[:, i, j]).any():
                    continue
                total += weight
                acc += weight * cells[:, i, j]
            out[py, px] = acc / total if total > TINY else nearest
    return out
