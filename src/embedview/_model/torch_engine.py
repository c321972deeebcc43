"""The PyTorch engine: scatter accumulation and projection on a GPU (``device="cuda"``).

Only the arithmetic moves to the device. Pieces travel through a reused pinned host buffer
(``non_blocking`` copies), each piece is centred by the first piece's mean, its float32 scatter
is taken with IEEE float32 matmuls (never TF32, see :func:`_ieee_float32`) and accumulated in
float64 on the device, exactly the scheme of :class:`~embedview._model.fit.Accumulator`. At the end the
sums are copied to the host once and the numpy code does the rest (outlier removal, eigh, signs),
so both engines give the same basis to float32 rounding.

PyTorch is imported here only, and only when an engine is made: ``import embedview`` never
imports it.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .._common.errors import EmbedviewError, arg
from .fit import Accumulator, Basis, rescale
from .upsample import METHODS, TINY, axis_taps, nearest_cells

#: Pinned staging buffers: one being filled on the host while the other may still be copying.
_STAGING_SLOTS = 2

#: About how many bytes of device temporaries :meth:`TorchEngine.upsample` takes per band of rows.
_UPSAMPLE_BYTES = 128 * 2**20


class TorchEngine:
    """Scatter accumulation and projection with PyTorch on ``device``.

    Parameters
    ----------
    device : str
        A PyTorch device: ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``.

    Attributes
    ----------
    name : str
        The device as ``Execution(device=...)`` takes it: ``"cuda"``, ``"cuda:1"``, ``"mps"``, or
        ``"torch:cpu"`` for PyTorch on the CPU (``"cpu"`` alone means the numpy engine).

    Raises
    ------
    EmbedviewError
        If PyTorch is not installed, or the device is not available on this machine.

    Examples
    --------
    >>> import numpy as np
    >>> engine = TorchEngine("cpu")  # doctest: +SKIP
    >>> acc = engine.accumulator(8)  # doctest: +SKIP
    >>> acc.add(np.random.default_rng(0).normal(size=(8, 100)).astype(np.float32))  # doctest: +SKIP
    True
    >>> engine.project(acc.basis(3), np.zeros((8, 4, 4), np.float32)).shape  # doctest: +SKIP
    (3, 4, 4)
    """

    def __init__(self, device: str):
        label = "torch:cpu" if device == "cpu" else device
        try:
            import torch
        except ImportError:
            raise EmbedviewError(
                f"{arg('device', label)} needs PyTorch, which is not installed; install it with "
                f"pip install 'embedview[torch]' (a CUDA build for GPUs), or use {arg('device', 'cpu')}.") from None
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise EmbedviewError(
                f"unknown device {label!r}; use 'cpu' (numpy), 'cuda', 'cuda:N', 'mps' or 'torch:cpu'.") from None
        _check_available(torch, dev, label)
        self.name = label
        self.device = dev
        self._torch = torch
        self._staging = _Staging(torch, dev)
        self._projector: tuple[Basis, object, object] | None = None

    def __repr__(self) -> str:
        return f"TorchEngine({self.name!r})"

    def accumulator(self, n_channels: int, expected_cells: int | None = None, **state) -> "TorchAccumulator":
        """A :class:`TorchAccumulator` on this engine's device (``state``: ``shift``, ``bar``, as
        :class:`~embedview._model.fit.Accumulator` takes them)."""
        return TorchAccumulator(n_channels, expected_cells=expected_cells, engine=self, **state)

    def project(self, basis: Basis, features: np.ndarray) -> np.ndarray:
        """Project ``(C, ...)`` features to float32 ``(k, ...)`` components, as :meth:`Basis.project`."""
        if features.shape[0] != basis.n_channels:
            return basis.project(features)  # raises the numpy path's error
        torch = self._torch
        if self._projector is None or self._projector[0] is not basis:
            # the same float32 constants as Basis.project: W, and W μ taken in float64
            weights = torch.from_numpy(basis.components.astype(np.float32)).to(self.device)
            offset = torch.from_numpy((basis.components @ basis.mean).astype(np.float32)).to(self.device)
            self._projector = (basis, weights, offset[:, None])
        _, weights, offset = self._projector
        x = self._staging.upload(features).reshape(features.shape[0], -1)
        with _ieee_float32(torch):  # TF32 would lose ~1e-3·|x|: more than the spread when the mean is large
            out = torch.addmm(-offset, weights, x) if x.shape[1] else weights.new_empty((weights.shape[0], 0))
        return out.cpu().numpy().reshape((basis.n_components,) + features.shape[1:])

    def upsample(self, cells: np.ndarray, rows: np.ndarray, cols: np.ndarray, valid, method: str, *,
                 cell_guide: np.ndarray | None = None, pixel_guide: np.ndarray | None = None,
                 sigma_spatial: float = 1.0, sigma_range: float = 0.1, radius: int = 1) -> np.ndarray:
        """Sample one piece's projected cells at output pixels: float32 ``(ny, nx, k)``.

        The numpy kernel's definition (:func:`embedview._model.upsample.upsample_cells`, same
        parameters), computed in float32 on this engine's device, in bands of output rows that
        keep the device's temporaries near :data:`_UPSAMPLE_BYTES`.
        """
        torch = self._torch
        if method not in METHODS:
            raise EmbedviewError(f"unknown upsampling method {method!r}; use 'nearest', 'bilinear' or 'guided'.")
        if method == "guided" and (cell_guide is None or pixel_guide is None):
            raise EmbedviewError("upsampling method 'guided' needs cell_guide and pixel_guide; pass both.")
        rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
        vh, vw = int(valid[0]), int(valid[1])
        k, ny, nx = cells.shape[0], rows.size, cols.size
        out = np.empty((ny, nx, k), np.float32)
        if out.size == 0:
            return out
        dev = self.device
        # Cells as one flat (k, vh·vw) table, indexed by y·vw + x; the cells beyond `valid` never are.
        table = self._staging.upload(np.asarray(cells)[:, :vh, :vw]).reshape(k, vh * vw)
        near_y = torch.from_numpy(nearest_cells(rows, vh) * vw).to(dev)
        near_x = torch.from_numpy(nearest_cells(cols, vw)).to(dev)
        if method == "nearest":  # a gather: the same float32 values, bit for bit
            for a, b in _bands(ny, nx, 3 * k + 2):
                out[a:b] = table[:, near_y[a:b, None] + near_x[None, :]].permute(1, 2, 0).cpu().numpy()
            return out
        guided = method == "guided"
        # A neighbour weighs 0 where any component is not finite (not drawn) or, guided, its cell
        # guide is (no image pixel under it); zeroing those values keeps 0 * NaN out of the sums.
        ok = torch.isfinite(table).all(dim=0)
        g = 0
        if guided:
            guide = self._staging.upload(np.asarray(cell_guide)[:, :vh, :vw]).reshape(-1, vh * vw)
            g = guide.shape[0]
            ok &= torch.isfinite(guide).all(dim=0)
            guide = torch.where(ok, guide, 0.0)
            scale = float(np.float32(-0.5 / max(float(sigma_range) ** 2, 1e-37)))  # as upsample_cells
        values = torch.where(ok, table, 0.0)
        ok = ok.to(torch.float32)
        taps = [[(torch.from_numpy(i).to(dev), torch.from_numpy(w).to(dev)) for i, w in
                 axis_taps(u, n, method, float(sigma_spatial), int(radius))]
                for u, n in ((rows, vh), (cols, vw))]
        tiny = TINY
        for a, b in _bands(ny, nx, 5 * k + 3 * g + 10):
            num = table.new_zeros((k, b - a, nx))
            den = table.new_zeros((b - a, nx))
            if guided:
                pixels = self._staging.upload(np.asarray(pixel_guide)[a:b]).permute(2, 0, 1)
            for iy, wy in taps[0]:
                at_y = iy[a:b, None] * vw
                for ix, wx in taps[1]:
                    at = at_y + ix[None, :]
                    w = ok[at] * wy[a:b, None] * wx[None, :]
                    if guided:
                        diff = pixels - guide[:, at]
                        w = w * torch.exp((diff * diff).sum(dim=0) * scale)
                    den += w
                    num += values[:, at] * w
            nearest = table[:, near_y[a:b, None] + near_x[None, :]]
            # a weight sum that underflowed (or is 0) takes the nearest cell; a NaN nearest cell
            # leaves the pixel NaN, so the drawn footprint is the same for every method
            res = torch.where(den > tiny, num / den, nearest)
            res = torch.where(torch.isnan(nearest).any(dim=0), float("nan"), res)
            out[a:b] = res.permute(1, 2, 0).cpu().numpy()
        return out


class TorchAccumulator(Accumulator):
    """:class:`~embedview._model.fit.Accumulator` with the per-piece arithmetic on a PyTorch device.

    Same interface and semantics: ``add`` returns False (adding nothing) for NaN/Inf cells;
    ``basis`` copies the device sums to the host once and runs the numpy code (outlier removal,
    eigendecomposition, signs). Make it with :meth:`TorchEngine.accumulator`.

    ``add`` waits for the device once per piece, to return whether the piece was finite (and
    how many cells are far, for the outlier guard): one round trip of a few tens of microseconds
    on a GPU, which also keeps the host from queueing more than one piece ahead.

    Examples
    --------
    >>> import numpy as np
    >>> acc = TorchEngine("cpu").accumulator(4)  # doctest: +SKIP
    >>> acc.add(np.full((4, 3), np.nan, np.float32)), acc.count  # doctest: +SKIP
    (False, 0)
    """

    def __init__(self, n_channels: int, expected_cells: int | None = None, *, engine: TorchEngine, **state):
        super().__init__(n_channels, expected_cells=expected_cells, **state)
        torch = self._torch = engine._torch
        self._device = engine.device
        self._staging = engine._staging
        # float64 on the device where it has it (MPS has not: there the float32 piece sums are
        # added on the host, in float64, like the numpy path does)
        self._on_device = self._device.type != "mps"
        self._shift_d = None
        self._norms_d: list = []
        if self._on_device:
            self._total_d = torch.zeros(n_channels, dtype=torch.float64, device=self._device)
            self._scatter_d = torch.zeros((n_channels, n_channels), dtype=torch.float64, device=self._device)

    def add(self, cells: np.ndarray) -> bool:
        """Add ``(C, n)`` float32 cells (or ``(C, ...)``). False, adding nothing, if any is NaN or infinite."""
        n = math.prod(cells.shape[1:])
        if n == 0:
            return True
        torch = self._torch
        x = self._staging.upload(cells).reshape(cells.shape[0], n)
        if self._shift_d is None and self.shift is not None:  # given, or taken over by merge()
            self._shift_d = torch.from_numpy(np.asarray(self.shift, np.float32)).to(self._device)[:, None]
        # the shift is the first *finite* piece's mean (a NaN piece must not poison it)
        shift = self._shift_d if self._shift_d is not None else x.mean(dim=1, dtype=self._sum_dtype).float()[:, None]
        centred = x - shift
        total = centred.sum(dim=1, dtype=self._sum_dtype)
        with _ieee_float32(torch):
            scatter = centred @ centred.T
        # NaN and Inf propagate into the scatter's diagonal (every cell's squares enter it), so
        # its sum tells, as the sums do in the numpy path; its largest entry tells whether the
        # float32 squares underflow
        diagonal = torch.diagonal(scatter)
        checks = [diagonal.sum(dtype=self._sum_dtype), diagonal.max().to(self._sum_dtype)]
        norms = None
        if self.expected_cells:
            norms = torch.linalg.vector_norm(centred, dim=0)
            if self.bar is not None:
                checks.append((norms > self.bar).sum(dtype=self._sum_dtype))
        values = torch.stack(checks).tolist()  # the one wait for the device per piece
        scale = rescale(math.isfinite(values[0]), values[1],
                        lambda: max(x.abs().max().item(), shift.abs().max().item()))
        if scale is None:
            return False
        if scale != 1.0:  # as Accumulator.add: the piece again, scaled by a power of two (exact)
            centred = x * scale - shift * scale
            total = centred.sum(dim=1, dtype=self._sum_dtype)
            with _ieee_float32(torch):
                scatter = centred @ centred.T
            if norms is not None:
                norms = torch.linalg.vector_norm(centred, dim=0).to(self._sum_dtype) / scale
        n_far = 0
        if norms is not None:
            if self.bar is None:  # from the first finite piece, as numpy: np.median of its norms
                self._set_bar(norms.cpu().numpy())
            n_far = int(values[2]) if scale == 1.0 and len(values) == 3 else int((norms > self.bar).sum())
        if self._shift_d is None:
            self._shift_d = shift
            self.shift = shift[:, 0].cpu().numpy()  # once: Accumulator.basis needs it on the host
        self.count += n
        if self._on_device:
            if scale != 1.0:  # unscaled in float64, where the squares of |x| ≳ 1e18 fit
                total, scatter = total / scale, scatter.to(torch.float64) / (scale * scale)
            self._total_d += total
            self._scatter_d += scatter
        else:
            self.total += total.cpu().numpy().astype(np.float64) / scale
            self.scatter += scatter.cpu().numpy().astype(np.float64) / (scale * scale)
        if norms is not None:
            self._watch_device(centred, norms, n_far, scale)
        return True

    @property
    def _sum_dtype(self):
        return self._torch.float64 if self._on_device else self._torch.float32

    def _watch_device(self, centred, norms, n_far: int, scale: float = 1.0) -> None:
        """:meth:`Accumulator._watch` with the norms on the device: only the strided norm
        sample (kept on the device until :meth:`basis`) and the far cells are copied back."""
        self._norms_d.append(norms[:: self._stride].clone() if self._stride > 1 else norms)
        if not n_far:
            return
        far = norms > self.bar
        far_norms, far_cells = norms[far], centred[:, far]
        if n_far > self._capacity:
            # only the farthest `capacity` can outlive Accumulator._shrink: keep those, and
            # remember the largest one forgotten, as _shrink does
            top = self._torch.topk(far_norms, self._capacity + 1)
            self._dropped_above = max(self._dropped_above, float(top.values[-1]))
            keep = top.indices[:-1]
            far_norms, far_cells = far_norms[keep], far_cells[:, keep]
        if scale != 1.0:  # in the features' own units, in float64 where the device has it
            far_cells = far_cells.to(self._sum_dtype) / scale
        self._keep_far(far_norms.cpu().numpy(), far_cells.cpu().numpy())

    def _flush(self) -> None:
        """Move the device sums and norm sample into the host state of :class:`Accumulator`."""
        if self._on_device:
            self.total += self._total_d.cpu().numpy()
            self.scatter += self._scatter_d.cpu().numpy()
            self._total_d.zero_()
            self._scatter_d.zero_()
        if self._norms_d:
            # (cat promotes to float64 where a rescaled piece kept its norms in float64)
            self._norms.append(self._torch.cat(self._norms_d).cpu().numpy())
            self._norms_d = []

    def basis(self, n_components: int) -> Basis:
        """One symmetric eigendecomposition of the covariance (on the host, as :class:`Accumulator`)."""
        self._flush()
        return super().basis(n_components)

    def merge(self, other: Accumulator) -> "TorchAccumulator":
        """Add ``other``'s cells (either engine's) to this one, on the host (see :meth:`Accumulator.merge`)."""
        self._flush()
        if isinstance(other, TorchAccumulator):
            other._flush()
        return super().merge(other)


class _Staging:
    """Copies host arrays to the device through reused pinned buffers.

    On CUDA the host-side copy into page-locked memory lets the host→device copy run at full
    speed and asynchronously; the buffers are kept (allocating pinned memory is slow) and used
    in turn, each waiting only for the last copy out of it. Other devices take the array as is.
    """

    def __init__(self, torch, device):
        self._torch = torch
        self._device = device
        self._pinned = device.type == "cuda"
        self._buffers = [None] * _STAGING_SLOTS
        self._events = [None] * _STAGING_SLOTS
        self._slot = 0

    def upload(self, array: np.ndarray):
        """A float32 device tensor with ``array``'s shape and values."""
        torch = self._torch
        if not self._pinned:  # blocking: the caller may reuse the array as soon as we return
            return torch.from_numpy(_ordinary(array)).to(self._device, torch.float32)
        i = self._slot
        self._slot = (i + 1) % _STAGING_SLOTS
        if self._events[i] is not None:
            self._events[i].synchronize()
        n = array.size
        if self._buffers[i] is None or self._buffers[i].numel() < n:
            self._buffers[i] = torch.empty(n, dtype=torch.float32, pin_memory=True)
        host = self._buffers[i][:n].view(array.shape)
        if _torch_can_read(array):
            host.copy_(torch.from_numpy(array))  # parallel over the cores for large pieces
        else:
            np.copyto(host.numpy(), array, casting="unsafe")
        device = host.to(self._device, non_blocking=True)
        self._events[i] = torch.cuda.Event()
        self._events[i].record(torch.cuda.current_stream(self._device))  # the copy's stream, also for cuda:N
        return device


def _bands(ny: int, nx: int, floats_per_pixel: int):
    """``(start, stop)`` bands of output rows whose temporaries take about :data:`_UPSAMPLE_BYTES`."""
    step = max(1, _UPSAMPLE_BYTES // (4 * floats_per_pixel * max(nx, 1)))
    return [(a, min(a + step, ny)) for a in range(0, ny, step)]


def _torch_can_read(array: np.ndarray) -> bool:
    """Whether ``torch.from_numpy`` takes ``array`` as it is (without copying or warning)."""
    return (array.dtype == np.float32 and array.flags.writeable
            and all(s >= 0 for s in array.strides) and array.dtype.isnative)


def _ordinary(array: np.ndarray) -> np.ndarray:
    return array if _torch_can_read(array) else np.array(array, dtype=np.float32)


@contextlib.contextmanager
def _ieee_float32(torch):
    """Run float32 matmuls in IEEE float32 whatever the process chose (TF32, bf16), then restore.

    TF32 keeps 10 bits of mantissa: its ~1e-3 relative error would break the "same results as
    numpy" guarantee. PyTorch ≥ 2.9 has a second, per-backend API and refuses reads through the
    old one once the new one was used, so the precision is set through whichever is in use.
    """
    try:
        before = torch.get_float32_matmul_precision()
    except RuntimeError:  # the per-backend API is in use
        before = None
    if before == "highest":
        yield
        return
    if before is not None:
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)
        return
    backends = [b.matmul for b in (torch.backends.cuda, getattr(torch.backends, "mkldnn", None))
                if b is not None and hasattr(getattr(b, "matmul", None), "fp32_precision")]
    saved = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, saved):
            b.fp32_precision = value


def _check_available(torch, dev, label: str) -> None:
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                why = f"the installed PyTorch {torch.__version__} is built without CUDA"
            else:
                why = (f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA GPU "
                       "on this machine (no GPU, or no NVIDIA driver)")
            raise EmbedviewError(
                f"{arg('device', label)} needs a CUDA GPU, but {why}; use {arg('device', 'cpu')} (the numpy engine), "
                "or install a CUDA build of PyTorch on a machine with an NVIDIA GPU.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise EmbedviewError(
                f"{arg('device', label)} does not exist: this machine has {count} CUDA GPU"
                f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1}).")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            why = ("is built without MPS" if not torch.backends.mps.is_built()
                   else "finds no MPS device (it needs Apple silicon and macOS ≥ 12.3)")
            raise EmbedviewError(
                f"{arg('device', label)} needs Apple's Metal (MPS), but the installed PyTorch "
                f"{torch.__version__} {why}; use {arg('device', 'cpu')} (the numpy engine).")
    elif dev.type != "cpu":
        raise EmbedviewError(
            f"unknown device {label!r}; use 'cpu' (numpy), 'cuda', 'cuda:N', 'mps' or 'torch:cpu'.")
