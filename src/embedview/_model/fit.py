"""Streaming PCA: accumulate count, sum and scatter in float64 piece by piece, then one eigh.

Memory is O(C²) whatever the input size. Each piece is shifted by a fixed reference (the
first piece's mean) before its scatter is taken, so the final ``S - n·μμᵀ`` step does not
cancel catastrophically when the features have a large mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._common.limits import check_fits
from .._common.numerics import power_of_two
from .._common.threads import blas_threads


@dataclass(frozen=True)
class Basis:
    """A fitted PCA: what is needed to project features and colour them.

    Attributes
    ----------
    mean : ndarray, shape (C,)
    components : ndarray, shape (k, C)
        Unit principal axes, strongest first; each signed so that its largest-magnitude
        loading is positive (scikit-learn's convention).
    explained_variance : ndarray, shape (k,)
        Variance along each component (with ``n - 1`` in the denominator, like scikit-learn).
    explained_variance_ratio : ndarray, shape (k,)
    n_samples : int
        Cells the fit used.
    n_outliers : int
        High-norm cells left out of the fit (see :class:`Accumulator`).
    lo, hi : ndarray, shape (k,), optional
        Colour ranges: component values drawn as 0 and 255.
    feature_scale : float
        The power of two the features were multiplied by before the fit (1 but for float64
        features beyond float32's range, see :attr:`~embedview._inputs.source_base.Source.feature_scale`);
        other inputs are read with it, so one basis draws them all alike.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 6)) * [5, 3, 1, 1, 1, 1]
    >>> acc = Accumulator(6)
    >>> acc.add(x.T.astype(np.float32))
    True
    >>> basis = acc.basis(2)
    >>> basis.components.shape, bool(basis.explained_variance[0] > basis.explained_variance[1])
    ((2, 6), True)
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    n_samples: int
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    scale_reference: float = 1.0
    n_outliers: int = 0
    feature_scale: float = 1.0

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    @property
    def n_channels(self) -> int:
        return self.components.shape[1]

    def __repr__(self) -> str:
        ratios = ", ".join(f"{r:.3f}" for r in self.explained_variance_ratio[:3])
        more = ", ..." if self.n_components > 3 else ""
        ranges = "" if self.lo is None else ", with colour ranges"
        return (f"Basis({self.n_components} components of {self.n_channels} channels, "
                f"explained_variance_ratio=[{ratios}{more}], n_samples={self.n_samples}{ranges})")

    def with_ranges(self, lo, hi) -> "Basis":
        return replace(self, lo=np.asarray(lo, np.float64), hi=np.asarray(hi, np.float64))

    def project(self, features: np.ndarray) -> np.ndarray:
        """Project ``(C, ...)`` features to float32 ``(k, ...)`` components."""
        if features.shape[0] != self.n_channels:
            raise EmbedviewError(
                f"features have {features.shape[0]} channels but the basis was fitted on "
                f"{self.n_channels}; use a basis fitted on embeddings of the same model.")
        flat = features.reshape(features.shape[0], -1)
        # (W x - W μ) instead of W (x - μ): no centred copy of the piece; the float32 error
        # stays ~1e-7·|x|, far below the spread of the components.
        out = self.components.astype(np.float32) @ flat
        out -= (self.components @ self.mean).astype(np.float32)[:, None]
        return out.reshape((self.n_components,) + features.shape[1:])


#: A cell whose distance from the data is this many times the median is a high-norm outlier.
OUTLIER_FACTOR = 10.0
#: Outliers are left out of the fit only while they are rare: at most this fraction of cells.
OUTLIER_MAX_FRACTION = 0.01
_NORM_SAMPLE = 4_000_000
_OUTLIER_BUFFER_BYTES = 64 * 2**20


@dataclass
class Accumulator:
    """Running count, sum and scatter of cells (columns of ``(C, n)`` blocks).

    With ``expected_cells`` given, it also watches for high-norm outliers (the artefact tokens
    of ViTs): cells farther from the data than ``OUTLIER_FACTOR`` times the median distance.
    While they are rare (≤ 1% of cells) they are taken out of the fit again at the end, so a
    handful of them cannot turn the principal axes towards themselves. They are kept in
    memory (bounded: the farthest ones, at most 64 MiB) to subtract them exactly.
    """

    n_channels: int
    expected_cells: int | None = None
    count: int = 0
    shift: np.ndarray | None = None
    n_outliers: int = 0
    bar: float | None = None
    total: np.ndarray = field(init=False)
    scatter: np.ndarray = field(init=False)

    def __post_init__(self):
        c = int(self.n_channels)
        # the scatter, its float32 piece, and the covariance and eigh copies in basis()
        check_fits(_SCATTER_COPIES * 8 * c * c, f"the {c}×{c} scatter matrix of the fit ({c} channels)",
                   "check that the channel axis is the right one (layout=, channels_last=)")
        self.total = np.zeros(self.n_channels, np.float64)
        self.scatter = np.zeros((self.n_channels, self.n_channels), np.float64)
        self._norms: list[np.ndarray] = []
        self._far: list[tuple[np.ndarray, np.ndarray]] = []  # (norms, centred cells)
        self._dropped_above = 0.0  # largest norm a full buffer had to forget
        if self.expected_cells:
            self._stride = max(1, -(-self.expected_cells // _NORM_SAMPLE))
            by_fraction = int(OUTLIER_MAX_FRACTION * self.expected_cells) + 1
            self._capacity = min(by_fraction, _OUTLIER_BUFFER_BYTES // (4 * self.n_channels))

    def add(self, cells: np.ndarray) -> bool:
        """Add ``(C, n)`` float32 cells. Returns False (adding nothing) if any is NaN or infinite."""
        if cells.shape[1] == 0:
            return True
        # The first *finite* piece's mean: a piece with NaN must not fix a NaN shift for good.
        with np.errstate(over="ignore", invalid="ignore"):  # Inf input, or overflow (mended below)
            if self.shift is None:
                shift = cells.mean(axis=1, dtype=np.float64).astype(np.float32)
            else:
                shift = self.shift
            centred = cells - shift[:, None]
            total = centred.sum(axis=1).astype(np.float64)  # centred: float32 sums lose nothing
            scatter = centred @ centred.T
        # NaN and Inf propagate into the sums, so checking them is free compared to a scan.
        diagonal = np.diagonal(scatter)
        scale = rescale(bool(np.isfinite(total).all() and np.isfinite(diagonal).all()), float(diagonal.max()),
                        lambda: max(np.abs(cells).max(), np.abs(shift).max()))
        if scale is None:
            return False
        if scale != 1.0:  # the piece again, scaled by a power of two: exact, and in float32's range
            centred = cells * np.float32(scale)
            centred -= (shift * np.float32(scale))[:, None]
            total = centred.sum(axis=1).astype(np.float64) / scale
            scatter = (centred @ centred.T).astype(np.float64) / (scale * scale)
        self.shift = shift
        self.count += cells.shape[1]
        self.total += total
        self.scatter += scatter
        if self.expected_cells:
            self._watch(centred, scale)
        return True

    def _watch(self, centred: np.ndarray, scale: float = 1.0) -> None:
        norms = np.sqrt(np.einsum("ij,ij->j", centred, centred))
        if scale != 1.0:  # norms and far cells in the features' own units, in float64 where they fit
            norms = norms.astype(np.float64) / scale
        self._norms.append(norms[:: self._stride])
        if self.bar is None:
            self._set_bar(norms)
        far = norms > self.bar
        if far.any():
            cells = centred[:, far].copy() if scale == 1.0 else centred[:, far].astype(np.float64) / scale
            self._keep_far(norms[far], cells)

    def _set_bar(self, first_norms: np.ndarray) -> None:
        """Cells farther than this are remembered: a low bar from the first piece keeps the buffer small."""
        self.bar = 0.5 * OUTLIER_FACTOR * float(np.median(first_norms))

    def _keep_far(self, norms: np.ndarray | None = None, cells: np.ndarray | None = None) -> None:
        """Remember far cells (centred), shrinking the buffer to the farthest ones when it is full."""
        if norms is not None:
            self._far.append((norms, cells))
        if sum(n.size for n, _ in self._far) > 2 * self._capacity:
            self._shrink()

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Add another accumulator's cells (a partial sum over other pieces) to this one.

        Both must share ``shift`` and ``bar`` (give them to each partial, e.g. from the first
        piece), so the merged state equals one accumulator fed every piece.
        """
        if other.count == 0:
            return self
        if self.count == 0 and self.shift is None:
            self.shift, self.bar = other.shift, other.bar
        if not np.array_equal(self.shift, other.shift) or self.bar != other.bar:
            raise ValueError("partial sums with different shifts or outlier bars cannot be merged")
        self.count += other.count
        self.total += other.total
        self.scatter += other.scatter
        self._norms += other._norms
        self._far += other._far
        self._dropped_above = max(self._dropped_above, other._dropped_above)
        if self.expected_cells:
            self._keep_far()
        return self

    def _shrink(self) -> None:
        norms = np.concatenate([n for n, _ in self._far])
        cells = np.concatenate([c for _, c in self._far], axis=1)
        if norms.size > self._capacity:
            keep = np.argsort(norms)[-self._capacity:]
            self._dropped_above = max(self._dropped_above, float(np.delete(norms, keep).max()))
            norms, cells = norms[keep], cells[:, keep]
        self._far = [(norms, cells)]

    def _remove_outliers(self) -> None:
        if not self.expected_cells or not self._far:
            return
        self._shrink()
        threshold = OUTLIER_FACTOR * float(np.median(np.concatenate(self._norms)))
        if self._dropped_above > threshold:
            return  # more than the buffer holds lie beyond: they are not rare, keep them all
        norms, cells = self._far[0]
        out = cells[:, norms > threshold].astype(np.float64)
        if out.shape[1] == 0 or out.shape[1] > OUTLIER_MAX_FRACTION * self.count:
            return
        self.count -= out.shape[1]
        self.total -= out.sum(axis=1)
        self.scatter -= out @ out.T
        self.n_outliers = out.shape[1]
        self._far = []

    def basis(self, n_components: int) -> Basis:
        """One symmetric eigendecomposition of the covariance."""
        self._remove_outliers()
        n, c = self.count, self.n_channels
        if n == 0:
            raise EmbedviewError("no valid cells to fit: every cell is padding, masked or not finite.")
        if not 1 <= n_components <= c:
            raise EmbedviewError(
                f"{arg('n_components', n_components)} is not possible for features with {c} channels; "
                f"choose 1 to {c}.")
        delta = self.total / n
        mean = self.shift.astype(np.float64) + delta
        cov = (self.scatter - n * np.outer(delta, delta)) / max(n - 1, 1)
        cov = (cov + cov.T) / 2
        values, vectors = _eigh(cov)
        order = np.argsort(values)[::-1][:n_components]
        values = np.clip(values[order], 0, None)
        vectors = vectors[:, order].T
        signs = np.sign(vectors[np.arange(n_components), np.argmax(np.abs(vectors), axis=1)])
        vectors *= np.where(signs == 0, 1, signs)[:, None]
        total_var = float(np.clip(np.trace(cov), 0, None))
        ratio = values / total_var if total_var > 0 else np.zeros_like(values)
        reference = float(np.linalg.norm(mean) + np.sqrt(total_var))
        return Basis(mean, vectors, values, ratio, n, scale_reference=reference,
                     n_outliers=self.n_outliers)


#: Float32 scatter entries below this (sums of squares of cells ≲ 1e-6) lose bits to underflow.
_TINY_SQUARES = 2.0 ** -40
#: Copies of the C×C float64 scatter a fit holds at once (see Accumulator.__post_init__).
_SCATTER_COPIES = 6


def rescale(finite: bool, largest_square: float, magnitude) -> float | None:
    """The power of two to scale a piece by before taking its float32 scatter, or None if the
    piece holds NaN or infinite cells.

    ``finite``: whether the piece's float32 sums came out finite; ``largest_square``: the
    largest diagonal entry of its scatter; ``magnitude()``: the largest ``|x|`` of the cells
    and the shift, computed only when needed (off the hot path). Finite sums of ordinary
    squares keep 1. Sums that overflowed although the cells are finite (``|x| ≳ 1e18``), or
    squares that underflow (``|x| ≲ 1e-6``), get ``2**-e`` bringing ``magnitude()`` into
    ``[0.5, 1)``: multiplying float32 by it is exact, so the fit of ``x·2**k`` is the fit of ``x``
    scaled, without rounding.

    Examples
    --------
    >>> rescale(True, 1.0, None), rescale(False, float("inf"), lambda: 3e20)
    (1.0, 1.6940658945086007e-21)
    >>> rescale(False, float("nan"), lambda: float("nan")), rescale(True, 1e-40, lambda: 1e-20)
    (None, 7.378697629483821e+19)
    """
    if finite and not 0 < largest_square < _TINY_SQUARES:
        return 1.0
    if largest_square != largest_square:  # NaN squares come only from NaN cells: no scan can mend them
        return None
    m = float(magnitude())
    if not np.isfinite(m):
        return None
    scale = power_of_two(m)
    if not finite:  # overflow can be mended only by scaling down
        return scale if scale < 1.0 else None
    return scale if scale > 1.0 else 1.0  # underflow only by scaling up


def _eigh(matrix: np.ndarray):
    """``eigh`` on one BLAS thread: for C×C with C ~ 256, threads only add cost (~10 ms on one
    thread, up to a second of spinning on a busy machine)."""
    with blas_threads(1):
        return np.linalg.eigh(matrix)
