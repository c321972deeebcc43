"""Streaming PCA: accumulate count, sum and scatter in float64 piece by piece, then one eigh.

Memory is O(C²) whatever the input size. Each piece is shifted by a fixed reference (the
first piece's mean) before its scatter is taken, so the final ``S - n·μμᵀ`` step does not
cancel catastrophically when the features have a large mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ._errors import EmbedviewError


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
        Cells the fit saw.
    lo, hi : ndarray, shape (k,), optional
        Colour ranges: component values drawn as 0 and 255.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 6)) * [5, 3, 1, 1, 1, 1]
    >>> acc = Accumulator(6)
    >>> acc.add(x.T.astype(np.float32))
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

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    @property
    def n_channels(self) -> int:
        return self.components.shape[1]

    def with_ranges(self, lo, hi) -> "Basis":
        return replace(self, lo=np.asarray(lo, np.float64), hi=np.asarray(hi, np.float64))

    def project(self, features: np.ndarray) -> np.ndarray:
        """Project ``(C, ...)`` features to float32 ``(k, ...)`` components."""
        if features.shape[0] != self.n_channels:
            raise EmbedviewError(
                f"features have {features.shape[0]} channels but the basis was fitted on "
                f"{self.n_channels}; use a basis fitted on embeddings of the same model.")
        flat = features.reshape(features.shape[0], -1)
        centred = flat - self.mean.astype(np.float32)[:, None]
        out = self.components.astype(np.float32) @ centred
        return out.reshape((self.n_components,) + features.shape[1:])


@dataclass
class Accumulator:
    """Running count, sum and scatter of cells (columns of ``(C, n)`` blocks)."""

    n_channels: int
    count: int = 0
    shift: np.ndarray | None = None
    total: np.ndarray = field(init=False)
    scatter: np.ndarray = field(init=False)

    def __post_init__(self):
        self.total = np.zeros(self.n_channels, np.float64)
        self.scatter = np.zeros((self.n_channels, self.n_channels), np.float64)

    def add(self, cells: np.ndarray) -> bool:
        """Add ``(C, n)`` float32 cells. Returns False (adding nothing) if any is NaN or infinite."""
        if cells.shape[1] == 0:
            return True
        if self.shift is None:
            self.shift = cells.mean(axis=1, dtype=np.float64).astype(np.float32)
        centred = cells - self.shift[:, None]
        total = centred.sum(axis=1, dtype=np.float64)
        scatter = centred @ centred.T
        # NaN and Inf propagate into the sums, so checking them is free compared to a scan.
        if not (np.isfinite(total).all() and np.isfinite(np.diagonal(scatter)).all()):
            return False
        self.count += cells.shape[1]
        self.total += total
        self.scatter += scatter
        return True

    def basis(self, n_components: int) -> Basis:
        """One symmetric eigendecomposition of the covariance."""
        n, c = self.count, self.n_channels
        if n == 0:
            raise EmbedviewError("no valid cells to fit: every cell is padding, masked or not finite.")
        if not 1 <= n_components <= c:
            raise EmbedviewError(
                f"n_components={n_components} is not possible for features with {c} channels; "
                f"choose 1 to {c}.")
        delta = self.total / n
        mean = self.shift.astype(np.float64) + delta
        cov = (self.scatter - n * np.outer(delta, delta)) / max(n - 1, 1)
        cov = (cov + cov.T) / 2
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:n_components]
        values = np.clip(values[order], 0, None)
        vectors = vectors[:, order].T
        signs = np.sign(vectors[np.arange(n_components), np.argmax(np.abs(vectors), axis=1)])
        vectors *= np.where(signs == 0, 1, signs)[:, None]
        total_var = float(np.clip(np.trace(cov), 0, None))
        ratio = values / total_var if total_var > 0 else np.zeros_like(values)
        reference = float(np.linalg.norm(mean) + np.sqrt(total_var))
        return Basis(mean, vectors, values, ratio, n, scale_reference=reference)
