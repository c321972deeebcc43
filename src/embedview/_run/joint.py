"""One basis for several inputs: :func:`fit_basis` and :func:`visualize_many`, kept for
compatibility as thin wrappers over :class:`embedview.PCA` (``PCA().fit(a, b)``,
``PCA().fit_transform(a, b)``).

Use them to compare images, time points or files: a material gets the same colour in every
picture. (Embeddings of different models live in different spaces: fit each on its own.)
"""

from __future__ import annotations

from .._common.errors import EmbedviewError
from .._model.fit import Basis
from .._outputs.visualization import Visualization
from .pipeline import Execution


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
    >>> basis = fit_basis([a, b])
    >>> basis.n_samples, basis.lo is not None
    (8192, True)
    """
    from .estimator import PCA

    model = PCA(n_components, normalize=normalize, nonfinite=nonfinite, outliers=outliers,
                execution=Execution(device=device, progress=progress))
    return model.fit(*_listed(sources)).basis_


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
    >>> a, b = visualize_many([embedview.open_source(x, (64, 64)) for x in arrays])
    >>> a.basis is b.basis
    True
    """
    from .estimator import PCA

    params = dict(normalize=normalize, nonfinite=nonfinite, outliers=outliers,
                  execution=Execution(device=device, progress=progress))
    model = PCA(n_components, **params) if basis is None else PCA.from_basis(basis, **params)
    sources = _listed(sources)
    out = model._run(sources, pixel_size=pixel_size, rgb_components=rgb_components, fitted=basis is not None)
    return out if len(sources) > 1 else [out]


def _listed(sources) -> list:
    if isinstance(sources, (str, bytes)) or not hasattr(sources, "__iter__"):
        raise EmbedviewError("pass a list of embeddings (paths, dicts or Sources).")
    sources = list(sources)
    if not sources:
        raise EmbedviewError("no embeddings given; pass at least one.")
    return sources
