"""Seeded k-means of the cells in PCA space, for a quick segmentation-like label picture.

numpy only: k-means++ seeding (greedy, as scikit-learn), Lloyd iterations until the centres
move less than a tolerance, the best of several seeds. It is fitted on a seeded subsample of
at most ``sample`` points and assignment works in chunks, so time and memory stay bounded
whatever the number of cells.

Label numbers are deterministic: clusters are ordered by their centre's first coordinate,
descending (ties by the next coordinates). In PCA space that is the strongest component, so
with a shared basis a material tends to keep its label number — and colour — from image to
image, whatever share of each image it covers.
"""

from __future__ import annotations

import colorsys

import numpy as np

from .._common.errors import EmbedviewError
from .._common.threads import blas_threads

#: Distances computed at once during assignment: bounds the temporary to ~16 MiB.
_CHUNK_ELEMENTS = 2**21
#: tab10 then the lighter half of tab20 (matplotlib's qualitative palettes), as uint8 RGB.
_PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
], np.uint8)
_GOLDEN = (5**0.5 - 1) / 2


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, n_init: int = 4, max_iter: int = 100,
           sample: int = 200_000, tol: float = 1e-4) -> tuple[np.ndarray, float]:
    """Fit ``k`` cluster centres to ``(n, m)`` points.

    Parameters
    ----------
    points : ndarray, shape (n, m)
        Finite values (leave NaN rows out first, or use :func:`cluster`).
    k : int
        Number of clusters.
    seed : int
        Seed of the subsample and the initialisations; the same seed gives the same result.
    n_init : int
        Initialisations tried; the one with the smallest inertia is kept.
    max_iter : int
        Lloyd iterations per initialisation at most.
    sample : int
        Fit on a seeded uniform subsample of this many points when there are more.
    tol : float
        Stop when the centres move (sum of squared shifts) less than ``tol`` times the mean
        variance of the coordinates, as scikit-learn.

    Returns
    -------
    centres : ndarray, shape (k, m)
        float64, ordered by the first coordinate, descending (see the module docstring).
    inertia : float
        Sum of squared distances of the fitted points (the subsample, if one was taken) to
        their nearest centre.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> points = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    >>> centres, inertia = kmeans(points, 2)
    >>> np.round(centres).astype(int).tolist()
    [[5, 5], [0, 0]]
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] == 0 or points.dtype.kind not in "biuf":
        raise EmbedviewError(f"k-means needs an (n, m) array of numbers with n, m ≥ 1; got "
                             f"{points.dtype} of shape {list(points.shape)}.")
    if int(k) != k or k < 1:
        raise EmbedviewError(f"the number of clusters must be a whole number ≥ 1; got {k!r}.")
    if n_init < 1 or max_iter < 1 or sample < 1:
        raise EmbedviewError(f"n_init, max_iter and sample must be ≥ 1; got {n_init}, {max_iter}, {sample}.")
    k = int(k)
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points).all(axis=1)).sum())
        raise EmbedviewError(f"{bad} of {points.shape[0]} points to cluster are NaN or infinite; "
                             "leave them out before fitting (cluster() does).")
    with blas_threads(1):  # tall, thin products: threads only spin (10x slower on a busy machine)
        return _fit(points, k, seed, n_init, max_iter, sample, tol)


def _fit(points, k, seed, n_init, max_iter, sample, tol):
    """:func:`kmeans` after its checks."""
    rng = np.random.default_rng(seed)
    n = points.shape[0]
    if n > sample:
        rows = np.sort(rng.choice(n, size=sample, replace=False))  # sorted: a sequential gather
        x = points[rows].astype(np.float64)
    else:
        x = points.astype(np.float64)
    if k > x.shape[0]:
        raise EmbedviewError(f"cannot make {k} clusters of {x.shape[0]} points; choose at most "
                             f"{x.shape[0]} clusters.")
    tolerance = tol * float(np.mean(np.var(x, axis=0)))
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centres = _lloyd(x, _kmeans_plus_plus(x, k, rng), max_iter, tolerance)
        inertia = float(_nearest(x, centres)[1].sum())
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    # Descending by the first coordinate, ties by the next ones: lexsort's last key is primary.
    order = np.lexsort(tuple(-best[:, j] for j in reversed(range(best.shape[1]))))
    return best[order], best_inertia


def assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Label of the nearest centre for each of ``(n, m)`` points; -1 for rows with NaN or Inf.

    Works in chunks, so the temporary distances stay bounded (~16 MiB) whatever ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> assign(np.array([[0.1, 0.0], [np.nan, 1.0], [4.0, 5.0]]), np.array([[5.0, 5.0], [0.0, 0.0]]))
    array([ 1, -1,  0], dtype=int32)
    """
    points = np.asarray(points)
    centres = np.asarray(centres, np.float64)
    if points.ndim != 2 or centres.ndim != 2 or points.shape[1] != centres.shape[1]:
        raise EmbedviewError(f"cannot assign points of shape {list(points.shape)} to centres of shape "
                             f"{list(centres.shape)}; both need the same number of coordinates.")
    with blas_threads(1):
        return _assign(points, centres)


def _assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    labels = np.empty(points.shape[0], np.int32)
    # Chunks here bound the float64 copy of the points; _nearest bounds the distances.
    step = max(1, _CHUNK_ELEMENTS // max(centres.shape[0], points.shape[1]))
    for start in range(0, points.shape[0], step):
        chunk = points[start:start + step].astype(np.float64)
        finite = np.isfinite(chunk).all(axis=1)
        nearest, _ = _nearest(np.where(finite[:, None], chunk, 0.0), centres, distances=False)
        labels[start:start + step] = np.where(finite, nearest, -1)
    return labels


def cluster(points: np.ndarray, k: int, *, seed: int = 0, sample: int = 200_000,
            **options) -> tuple[np.ndarray, np.ndarray]:
    """Fit k-means on the finite rows of ``(n, m)`` points and label every row.

    The subsample is drawn over all rows and then rid of the non-finite ones, so no index of
    the finite rows (``8n`` bytes) is ever built.

    Parameters
    ----------
    points : ndarray, shape (n, m)
        May hold NaN rows (cells that are not drawn); they get label -1.
    k, seed, sample, **options
        As :func:`kmeans`.

    Returns
    -------
    labels : ndarray, shape (n,), int32
    centres : ndarray, shape (k, m)

    Examples
    --------
    >>> import numpy as np
    >>> points = np.array([[0.0], [0.1], [np.nan], [9.0], [9.2]])
    >>> labels, centres = cluster(points, 2)
    >>> labels.tolist()
    [1, 1, -1, 0, 0]
    """
    points = np.asarray(points)
    if points.ndim != 2:
        raise EmbedviewError(f"k-means needs an (n, m) array; got shape {list(points.shape)}.")
    n = points.shape[0]
    if n > sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        fit = points[rows]
    else:
        fit = points
    fit = fit[np.isfinite(fit).all(axis=1)]
    if fit.shape[0] == 0:
        raise EmbedviewError("no cell has finite components to cluster; check that the picture is "
                             "not empty (all NaN).")
    centres, _ = kmeans(fit, k, seed=seed, sample=sample, **options)
    return assign(points, centres), centres


def label_colours(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 colours for labels ``0 … k-1``: tab10, tab20's light half, then
    golden-ratio hues, so neighbouring label numbers are always far apart in hue.

    Examples
    --------
    >>> label_colours(2).tolist()
    [[31, 119, 180], [255, 127, 14]]
    >>> label_colours(25).shape
    (25, 3)
    """
    if k <= len(_PALETTE):
        return _PALETTE[:k].copy()
    more = []
    for i in range(k - len(_PALETTE)):
        # Alternate the value so hues that come back close still differ in brightness.
        r, g, b = colorsys.hsv_to_rgb((0.1 + i * _GOLDEN) % 1.0, 0.75, 0.95 if i % 2 == 0 else 0.7)
        more.append((round(255 * r), round(255 * g), round(255 * b)))
    return np.concatenate([_PALETTE, np.array(more, np.uint8)])


def labels_to_rgb(labels: np.ndarray, k: int) -> np.ndarray:
    """Colour a label image: ``labels.shape + (3,)`` uint8, label -1 drawn black.

    Examples
    --------
    >>> labels_to_rgb(np.array([[0, -1]]), 2).tolist()
    [[[31, 119, 180], [0, 0, 0]]]
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < -1 or labels.max() >= k):
        raise EmbedviewError(f"labels must lie in -1 … {k - 1} for {k} clusters; got "
                             f"{labels.min()} … {labels.max()}.")
    table = np.concatenate([label_colours(k), np.zeros((1, 3), np.uint8)])
    return table[np.where(labels < 0, k, labels)]  # -1 → the black row after the palette


# ---------------------------------------------------------------------------------------------
# the algorithm


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: each new centre is the best of a few candidates drawn ∝ D²."""
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    closest = _sq_distance(x, centres[0])
    for c in range(1, k):
        cumulative = np.cumsum(closest)
        # Exact differences make D² exactly 0 at chosen points: none is drawn twice, and a
        # total of 0 means every point equals a chosen centre.
        if cumulative[-1] <= 0:
            raise EmbedviewError(f"cannot make {k} clusters: the points take only {c} distinct "
                                 f"values; choose at most {c} clusters.")
        # side="right" with draws below the last sum never lands on a zero-distance point.
        picks = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
        candidates = np.minimum(closest[:, None], np.stack([_sq_distance(x, x[i]) for i in picks], axis=1))
        best = int(np.argmin(candidates.sum(axis=0)))
        centres[c] = x[picks[best]]
        closest = candidates[:, best]
    return centres


def _lloyd(x: np.ndarray, centres: np.ndarray, max_iter: int, tolerance: float) -> np.ndarray:
    """Lloyd iterations from ``centres``; an empty cluster restarts at the farthest point."""
    k = centres.shape[0]
    labels = None
    for _ in range(max_iter):
        new_labels, _ = _nearest(x, centres, distances=False)
        if labels is not None and np.array_equal(labels, new_labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=k) for j in range(x.shape[1])], axis=1)
        new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            # The points worst served by their centre, farthest first, one per empty cluster.
            far = np.argsort(-_nearest(x, centres)[1], kind="stable")[:empty.size]
            new[empty] = x[far]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tolerance and not empty.size:
            break
    return centres


def _nearest(x: np.ndarray, centres: np.ndarray, distances: bool = True):
    """Index of (int32) and squared distance to (or None) the nearest centre, in chunks."""
    n = x.shape[0]
    nearest = np.empty(n, np.int32)
    dist = np.empty(n) if distances else None
    minus_2c = -2.0 * centres.T
    c2 = (centres * centres).sum(axis=1)
    step = max(1, _CHUNK_ELEMENTS // max(centres.shape[0], x.shape[1]))
    for start in range(0, n, step):
        part = x[start:start + step]
        # |x - c|² = |x|² - 2x·c + |c|²: |x|² is the same for every centre, so it is added to
        # the nearest one only (one matrix product and one pass over the distances).
        d = part @ minus_2c
        d += c2
        idx = np.argmin(d, axis=1)
        nearest[start:start + step] = idx
        if distances:
            best = np.take_along_axis(d, idx[:, None], axis=1)[:, 0]
            dist[start:start + step] = np.maximum(best + np.einsum("ij,ij->i", part, part), 0.0)
    return nearest, dist


def _sq_distance(x: np.ndarray, point: np.ndarray) -> np.ndarray:
    diff = x - point
    return np.einsum("ij,ij->i", diff, diff)
