"""A reusable basis on disk: one PCA and its colour ranges, applied to many inputs.

The file is a plain ``.npz`` that loads with ``allow_pickle=False``: float64 arrays ``mean``,
``components``, ``explained_variance``, ``explained_variance_ratio``, ``lo`` and ``hi``, and
``metadata``, a UTF-8 JSON document stored as a uint8 byte array (format marker, version,
shapes, scalars, how and where the basis was fitted). Scalars go through JSON, whose float
``repr`` round-trips exactly, so a saved and loaded basis projects bit for bit the same.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError
from .._common.output_paths import atomic_path
from .fit import Basis

FORMAT = "embedview-basis"
#: Newest file version this module reads and the one it writes.
VERSION = 1
_ARRAYS = ("mean", "components", "explained_variance", "explained_variance_ratio", "lo", "hi")
_REFIT = "fit it again with `embedview fit`"
_SCALARS = {"n_samples": int, "n_outliers": int, "scale_reference": float, "feature_scale": float}
#: Scalars older files lack, and the value they meant.
_DEFAULTS = {"feature_scale": 1.0}
_RESERVED = {"format", "version", "n_channels", "n_components", *_SCALARS, "normalize", "fitted_on",
             "created", "embedview_version"}


def save_basis(path, basis: Basis, *, normalize: str, fitted_on: list[str],
               extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``basis`` and its colour ranges to a ``.npz`` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Must end in ``.npz``. Written under a temporary name and moved into place when
        complete, so a failure leaves the previous file or nothing.
    basis : Basis
        A fitted basis with colour ranges (``lo``/``hi``, see :meth:`Basis.with_ranges`).
    normalize : str
        How the colour ranges were chosen (``robust``, ``channel``, ``global``).
    fitted_on : list of str
        The inputs the basis was fitted on (paths or names), recorded for provenance.
    extra : dict, optional
        Further JSON-able entries for the metadata (e.g. the fit options).
    overwrite : bool
        Replace a file embedview did not write as a basis (by default only a basis file is replaced).

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedview._model.fit import Accumulator
    >>> acc = Accumulator(4)
    >>> _ = acc.add(np.random.default_rng(0).normal(size=(4, 100)).astype(np.float32))
    >>> basis = acc.basis(3).with_ranges([-1, -1, -1], [1, 1, 1])
    >>> path = save_basis(os.path.join(tempfile.mkdtemp(), "basis.npz"), basis,
    ...                   normalize="robust", fitted_on=["a.zarr"])
    >>> loaded, meta = load_basis(path)
    >>> meta["n_channels"], meta["fitted_on"], bool((loaded.components == basis.components).all())
    (4, ['a.zarr'], True)
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise EmbedviewError(f"cannot write the basis to {path}: a basis file must end in .npz; "
                             "choose a name like basis.npz.")
    if basis.lo is None or basis.hi is None:
        raise EmbedviewError("this basis has no colour ranges (lo/hi), so it would not colour other "
                             "inputs the same way; set them with Basis.with_ranges before saving.")
    arrays = {name: np.ascontiguousarray(getattr(basis, name), dtype=np.float64) for name in _ARRAYS}
    _check_shapes(arrays, f"the basis to save to {path}", "save a basis returned by a fit")
    clash = sorted(set(extra or {}) & _RESERVED)
    if clash:
        raise EmbedviewError(f"cannot write the basis to {path}: extra must not set {', '.join(clash)}, "
                             "which the basis file records itself; rename those entries.")
    from .._common.version import __version__

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "n_channels": int(basis.n_channels),
        "n_components": int(basis.n_components),
        "n_samples": int(basis.n_samples),
        "n_outliers": int(basis.n_outliers),
        "scale_reference": float(basis.scale_reference),
        "feature_scale": float(basis.feature_scale),
        "normalize": str(normalize),
        "fitted_on": [str(p) for p in fitted_on],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "embedview_version": __version__,
    }
    meta.update(extra or {})
    try:
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise EmbedviewError(f"cannot write the basis to {path}: its metadata is not plain JSON "
                             f"({err}); pass only numbers, strings, lists and dicts in extra.") from None
    # The metadata's format and embedview_version are the file's ownership marker (a basis:
    # embedview._common.ownership reads them), so the file holds only its documented members.
    with atomic_path(path, kind="basis", overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez must not append its own ".npz"
            np.savez(f, **arrays, metadata=np.frombuffer(text.encode("utf-8"), np.uint8))
    return path


def load_basis(path) -> tuple[Basis, dict]:
    """Read a basis written by :func:`save_basis`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    basis : Basis
        With colour ranges; arrays bitwise equal to the saved ones.
    metadata : dict
        The recorded metadata (``n_channels``, ``normalize``, ``fitted_on``, ``created``, ...).

    Raises
    ------
    EmbedviewError
        If the file is missing, not an ``.npz``, not an embedview basis, from a newer
        embedview, or damaged (missing arrays, inconsistent shapes, non-finite values).

    Examples
    --------
    >>> load_basis("/nonexistent/basis.npz")
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: the basis file /nonexistent/basis.npz does not exist; fit one with `embedview fit EMB ... -o basis.npz`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise EmbedviewError(f"a basis file is given by its path (a str or os.PathLike), not a {type(path).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise EmbedviewError(f"the basis file {path} does not exist; fit one with "
                             "`embedview fit EMB ... -o basis.npz`.")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception:  # npy, pickle, text and broken zips each fail differently
        raise EmbedviewError(f"{path} is not a readable .npz file (another format, or damaged); pass "
                             "the basis written by `embedview fit`, or fit it again.") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise EmbedviewError(f"{path} holds a single array (.npy), not a basis; pass the .npz file "
                             "written by `embedview fit`.")
    with data:
        try:
            _check_member_sizes(path)
            meta = _read_metadata(data, path)
            _check_version(meta, path)
            missing = [name for name in _ARRAYS if name not in data.files]
            if missing:
                raise EmbedviewError(f"the basis file {path} is incomplete: it lacks "
                                     f"{', '.join(missing)}; {_REFIT}.")
            arrays = {name: data[name] for name in _ARRAYS}
        except EmbedviewError:
            raise
        except Exception as err:  # a truncated member, an object array, a bad zlib stream
            raise EmbedviewError(f"the basis file {path} is damaged ({type(err).__name__}); "
                                 f"{_REFIT}.") from None
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            raise EmbedviewError(f"the basis file {path} is damaged: {name} holds {array.dtype}, "
                                 f"not floating-point numbers; {_REFIT}.")
        arrays[name] = array.astype(np.float64, copy=False)
    _check_shapes(arrays, f"the basis file {path}", _REFIT)
    k, c = arrays["components"].shape
    if (meta.get("n_channels"), meta.get("n_components")) != (c, k):
        raise EmbedviewError(
            f"the basis file {path} is inconsistent: its metadata says {meta.get('n_components')} "
            f"components of {meta.get('n_channels')} channels but the arrays hold {k} of {c}; {_REFIT}.")
    scalars = {}
    for key, kind in _SCALARS.items():
        value = meta.get(key, _DEFAULTS.get(key))
        if type(value) not in (int, float) or (kind is int and type(value) is not int):
            raise EmbedviewError(f"the basis file {path} is damaged: its metadata has no valid "
                                 f"{key} ({value!r}); {_REFIT}.")
        if not (math.isfinite(value) and value >= 0):
            raise EmbedviewError(f"the basis file {path} is damaged: its metadata has {key} {value!r}, not a "
                                 f"non-negative number; {_REFIT}.")
        scalars[key] = kind(value)
    if not (scalars["feature_scale"] > 0 and math.frexp(scalars["feature_scale"])[0] == 0.5):
        raise EmbedviewError(f"the basis file {path} is damaged: its feature_scale {scalars['feature_scale']!r} "
                             f"is not a power of two; {_REFIT}.")
    _check_values(arrays, scalars["scale_reference"], f"the basis file {path}", _REFIT)
    basis = Basis(arrays["mean"], arrays["components"], arrays["explained_variance"],
                  arrays["explained_variance_ratio"], lo=arrays["lo"], hi=arrays["hi"], **scalars)
    return basis, meta


def check_basis_channels(basis: Basis, n_channels: int, source_name: str) -> None:
    """Refuse to apply ``basis`` to embeddings with another number of channels.

    Call it before reading any feature, so the mistake costs nothing.

    Examples
    --------
    >>> import numpy as np
    >>> basis = Basis(np.zeros(256), np.eye(3, 256), np.ones(3), np.ones(3) / 3, 10)
    >>> check_basis_channels(basis, 256, "a.zarr")
    >>> check_basis_channels(basis, 64, "b.zarr")
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: the basis was fitted on embeddings with 256 channels but b.zarr has 64; use a basis fitted on embeddings of the same model, or fit one on these with `embedview fit`.
    """
    if int(n_channels) != basis.n_channels:
        raise EmbedviewError(
            f"the basis was fitted on embeddings with {basis.n_channels} channels but {source_name} "
            f"has {n_channels}; use a basis fitted on embeddings of the same model, or fit one on "
            "these with `embedview fit`.")


def _check_member_sizes(path: Path) -> None:
    """Read no array whose header disagrees with the bytes the file holds, or that would not fit
    in memory (numpy allocates what a member's header claims before reading it)."""
    from .._common.limits import check_fits
    from .._inputs.vit_files import npz_members

    try:
        members = npz_members(str(path), kinds="fiuU")
    except EmbedviewError:
        raise EmbedviewError(f"the basis file {path} is damaged: the headers of its arrays do not match what "
                             f"it holds; {_REFIT}.") from None
    claimed = sum(math.prod(m.shape) * m.dtype.itemsize for m in members.values())
    check_fits(2 * claimed, f"the arrays of the basis file {path}", _REFIT)


def _read_metadata(data, path: Path) -> dict:
    not_basis = EmbedviewError(f"{path} is an .npz file but not an embedview basis; pass the file "
                               "written by `embedview fit`.")
    if "metadata" not in data.files:
        raise not_basis
    raw = data["metadata"]
    try:
        if raw.dtype == np.uint8 and raw.ndim == 1:
            meta = json.loads(raw.tobytes().decode("utf-8"))
        elif raw.dtype.kind == "U" and raw.ndim == 0:  # the other pickle-free way to hold text
            meta = json.loads(str(raw))
        else:
            raise not_basis
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise not_basis from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise not_basis
    return meta


def _check_version(meta: dict, path: Path) -> None:
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise EmbedviewError(f"the basis file {path} is damaged: its format version {version!r} "
                             f"is not a positive whole number; {_REFIT}.")
    if version > VERSION:
        raise EmbedviewError(
            f"the basis file {path} has format version {version}, newer than this embedview reads "
            f"(up to {VERSION}); upgrade embedview or fit the basis again with this one.")


#: Largest deviation of ``components @ components.T`` from the identity a basis file may have.
ORTHONORMAL_TOLERANCE = 1e-4
#: A colour range end or foreground threshold farther from 0 than this many times the features'
#: scale (``scale_reference``: ‖mean‖ + RMS spread) lies where no cell can project: damage.
#: Genuine ones lie within a few times it (high-norm tokens: tens).
MAX_REFERENCE_MULTIPLE = 1e4
#: Values the float32 projection must hold: means, colour ranges, thresholds (float32's largest
#: is 3.4e38; beyond, the picture would be NaN, i.e. black).
MAX_MAGNITUDE = 1e38


def check_components(components: np.ndarray, what: str, remedy: str) -> None:
    """Refuse components that are not unit and orthogonal (a zero one projects every cell to 0).

    Examples
    --------
    >>> check_components(np.eye(2, 4), "the basis", "fit it again")
    >>> check_components(np.zeros((1, 4)), "the basis", "fit it again")
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: the basis is damaged: component 0 is all zeros; fit it again.
    """
    norms = np.linalg.norm(components, axis=1)
    if not norms.all():
        raise EmbedviewError(f"{what} is damaged: component {int(np.flatnonzero(norms == 0)[0])} is all zeros; "
                             f"{remedy}.")
    deviation = float(np.abs(components @ components.T - np.eye(len(components))).max())
    if not deviation <= ORTHONORMAL_TOLERANCE:
        raise EmbedviewError(f"{what} is damaged: its components are not orthonormal (off by {deviation:.2g}); "
                             f"{remedy}.")


def check_magnitude(name: str, values, reference: float | None, what: str, remedy: str) -> None:
    """Refuse ``values`` (finite) beyond float32's range, or beyond :data:`MAX_REFERENCE_MULTIPLE`
    times ``reference`` (the features' scale; ``None``: no such check)."""
    values = np.abs(np.asarray(values, np.float64))
    largest = float(values.max()) if values.size else 0.0
    if not largest <= MAX_MAGNITUDE:
        raise EmbedviewError(f"{what} is damaged: its {name} reaches {largest:.3g}, beyond what a float32 "
                             f"picture holds; {remedy}.")
    if reference is not None and not largest <= MAX_REFERENCE_MULTIPLE * reference:
        raise EmbedviewError(f"{what} is damaged: its {name} reaches {largest:.3g}, far beyond the features' "
                             f"scale ({reference:.3g}), where no cell projects; {remedy}.")


def _check_values(arrays: dict, reference: float, what: str, remedy: str) -> None:
    """Refuse a basis that would draw a wrong picture: colour ranges that are empty, reversed or far
    beyond the features' scale (``reference``), components that are not orthonormal, a mean float32
    cannot hold, negative variances or ratios above one.

    ``lo == hi == 0`` marks a flat channel (drawn mid-grey), as :func:`~embedview._model.colors.colour_ranges`
    writes it; any other ``lo >= hi`` is damage.
    """
    lo, hi = arrays["lo"], arrays["hi"]
    reversed_ = np.flatnonzero(~((lo < hi) | ((lo == 0) & (hi == 0))))
    if reversed_.size:
        i = int(reversed_[0])
        raise EmbedviewError(f"{what} is damaged: the colour range of component {i} runs from {lo[i]:g} to "
                             f"{hi[i]:g}, not upwards; {remedy}.")
    check_magnitude("colour ranges", np.concatenate([lo, hi]), reference, what, remedy)
    check_magnitude("mean", arrays["mean"], None, what, remedy)
    check_components(arrays["components"], what, remedy)
    negative = [name for name in ("explained_variance", "explained_variance_ratio") if (arrays[name] < 0).any()]
    if negative:
        raise EmbedviewError(f"{what} is damaged: {' and '.join(negative)} hold negative values; {remedy}.")
    if not float(arrays["explained_variance_ratio"].sum()) <= 1 + 1e-6:
        raise EmbedviewError(f"{what} is damaged: its explained variance ratios add up to more than 1; {remedy}.")


def _check_shapes(arrays: dict, what: str, remedy: str) -> None:
    components = arrays["components"]
    if components.ndim != 2 or 0 in components.shape:
        raise EmbedviewError(f"{what} is inconsistent: components has shape {list(components.shape)}, "
                             f"not (n_components, n_channels); {remedy}.")
    k, c = components.shape
    expected = {"mean": (c,), "explained_variance": (k,), "explained_variance_ratio": (k,),
                "lo": (k,), "hi": (k,)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise EmbedviewError(
                f"{what} is inconsistent: {name} has shape {list(arrays[name].shape)} but "
                f"{k} components of {c} channels need {list(shape)}; {remedy}.")
    bad = [name for name in _ARRAYS if not np.isfinite(arrays[name]).all()]
    if bad:
        raise EmbedviewError(f"{what} holds NaN or infinite values in {', '.join(bad)}; {remedy}.")
