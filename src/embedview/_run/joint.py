"""The functions that came before the estimator, kept for compatibility until 0.3 as thin
wrappers over :class:`embedview.PCA`, each with a ``FutureWarning`` naming what replaces it:
:func:`fit_basis` (``PCA().fit(a, b).basis_``), :func:`visualize_many`
(``PCA().fit_transform(a, b)``), :func:`save_basis` (``PCA.from_basis(basis).save(path)``) and
:func:`load_basis` (``PCA.load(path)``).
"""

from __future__ import annotations

from .._common.deprecation import deprecated
from .._common.errors import EmbedviewError
from .._model.fit import Basis
from .._outputs.visualization import Visualization
from .settings import Draw, Execution


@deprecated("PCA(...).fit(*sources).basis_")
def fit_basis(sources, n_components: int = 3, normalize: str = "robust", *, nonfinite: str = "raise",
              outliers: str = "exclude", device: str = "cpu", progress: bool = False) -> Basis:
    """Fit one basis, with colour ranges, jointly over the cells of several inputs.

    ``PCA(n_components, normalize=..., ...).fit(*sources).basis_``.

    Parameters
    ----------
    sources : list
        Embeddings as :func:`embedview.visualize` takes them (paths, dicts, Sources), all of
        the same model (same number of channels).
    n_components, normalize, nonfinite, outliers, device, progress :
        As for :class:`embedview.PCA` and :class:`embedview.Execution`.

    Returns
    -------
    Basis
        Apply it with ``PCA.from_basis(basis).transform(source)``; save it with :func:`save_basis`.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> rng = np.random.default_rng(0)
    >>> a, b = (embedview.open_source(rng.normal(size=(1, 8, 64, 64)).astype(np.float32), (64, 64))
    ...         for _ in range(2))
    >>> basis = fit_basis([a, b])  # doctest: +SKIP
    >>> basis.n_samples, basis.lo is not None  # doctest: +SKIP
    (8192, True)
    """
    from .estimator import PCA

    model = PCA(n_components, normalize=normalize, nonfinite=nonfinite, outliers=outliers,
                execution=Execution(device=device, progress=progress))
    return model.fit(*_listed(sources)).basis_


@deprecated("PCA(...).fit_transform(*sources)")
def visualize_many(sources, n_components: int = 3, normalize: str = "robust", pixel_size=None, *,
                   rgb_components=None, nonfinite: str = "raise", outliers: str = "exclude",
                   basis: Basis | None = None, device: str = "cpu",
                   progress: bool = False) -> list[Visualization]:
    """Draw several inputs with one basis fitted jointly over all of them (or the ``basis`` given).

    ``PCA(...).fit_transform(*sources)`` (or ``PCA.from_basis(basis)``: one ``transform`` run over
    all inputs).

    Returns
    -------
    list of Visualization
        One per input, in order, all with the same basis.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> rng = np.random.default_rng(0)
    >>> arrays = [rng.normal(size=(1, 8, 64, 64)).astype(np.float32) for _ in range(2)]
    >>> a, b = visualize_many([embedview.open_source(x, (64, 64)) for x in arrays])  # doctest: +SKIP
    >>> a.basis is b.basis  # doctest: +SKIP
    True
    """
    from .estimator import PCA

    execution = Execution(device=device, progress=progress)
    if basis is None:
        model = PCA(n_components, normalize=normalize, nonfinite=nonfinite, outliers=outliers, execution=execution)
    else:
        model = PCA.from_basis(basis, nonfinite=nonfinite, execution=execution)
    return model.run(_listed(sources), Draw(pixel_size, rgb_components), refit=basis is None)


@deprecated("PCA.from_basis(basis).save(path)")
def save_basis(path, basis: Basis, *, normalize: str, fitted_on=(), extra=None):
    """Write ``basis`` (with colour ranges) to a ``.npz`` basis file; see
    :func:`embedview._model.basis_file.save_basis`."""
    from .._model.basis_file import save_basis as save

    return save(path, basis, normalize=normalize, fitted_on=list(fitted_on), extra=extra)


@deprecated("PCA.load(path) (its basis_; the file's normalize is its normalize)")
def load_basis(path):
    """``(basis, metadata)`` of a basis file; see :func:`embedview._model.basis_file.load_basis`."""
    from .._model.basis_file import load_basis as load

    return load(path)


def _listed(sources) -> list:
    if isinstance(sources, (str, bytes)) or not hasattr(sources, "__iter__"):
        raise EmbedviewError("pass a list of embeddings (paths, dicts or Sources).")
    sources = list(sources)
    if not sources:
        raise EmbedviewError("no embeddings given; pass at least one.")
    return sources
