"""Sizes before memory: how much an in-memory result may take, checked before allocating.

The limit defaults to half of the memory the machine has available now (``MemAvailable``), or
of the address-space limit where one is set (``ulimit -v``), whichever is smaller. Set the
environment variable ``EMBEDVIEW_MEMORY_LIMIT`` (bytes, or with a unit: ``512M``, ``8G``) to
choose another.
"""

from __future__ import annotations

import os

from .errors import EmbedviewError, arg

ENV_VAR = "EMBEDVIEW_MEMORY_LIMIT"
#: Results this small are never refused, whatever the limit says.
ALWAYS_FITS = 64 * 2**20
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def format_bytes(n: float) -> str:
    """``n`` bytes in a readable unit.

    Examples
    --------
    >>> format_bytes(3 * 2**30), format_bytes(1536), format_bytes(12)
    ('3.0 GiB', '1.5 KiB', '12 bytes')
    """
    n = float(n)
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        size = 2 ** (10 * ("KMGTP".index(unit[0]) + 1))
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def parse_bytes(text: str) -> int:
    """``"8G"`` → 8 GiB in bytes; plain numbers are bytes.

    Examples
    --------
    >>> parse_bytes("512M"), parse_bytes("1000")
    (536870912, 1000)
    """
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise EmbedviewError(f"{ENV_VAR}={text!r} is not a size; use bytes or a unit, e.g. 8G or 512M.") from None
    if not value > 0 or value == float("inf"):
        raise EmbedviewError(f"{ENV_VAR}={text!r} must be a positive size, e.g. 8G or 512M.")
    return int(value)


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def memory_limit() -> tuple[int, str]:
    """The most bytes one in-memory result may take, and where that number comes from."""
    if os.environ.get(ENV_VAR):
        return parse_bytes(os.environ[ENV_VAR]), f"set by {ENV_VAR}"
    limit, why = available_memory() // 2, "half the available memory"
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft not in (resource.RLIM_INFINITY, -1) and soft // 2 < limit:
            limit, why = soft // 2, "half the address-space limit (ulimit -v)"
    except (ImportError, OSError, ValueError):
        pass
    return int(limit), why


#: Float32 copies of one piece held at once while it is read and fitted (read-ahead, centring,
#: projection).
PIECE_COPIES = 5


def check_piece_fits(n_channels: int, grid: tuple[int, int], name: str, remedy: str) -> None:
    """Refuse pieces of ``n_channels × grid`` cells whose reading and fitting would not fit.

    Examples
    --------
    >>> check_piece_fits(256, (64, 64), "a.zarr", "check the file")  # 4 MiB a piece: fine
    """
    check_fits(PIECE_COPIES * 4 * n_channels * grid[0] * grid[1],
               f"one piece of {name} ({n_channels} channels × {grid[0]}×{grid[1]} cells)", remedy)


#: Bytes an in-memory picture takes per output pixel: 4 per component (float32), the uint8 RGB,
#: and the colouring's temporaries (about 16 per shown channel). Measured: the demo at pixel size
#: 0.25 (8.6 M pixels) peaks at 21, 63 and 83 bytes per pixel for 1, 3 and 8 components.
PICTURE_BYTES_PER_COMPONENT = 4
PICTURE_BYTES_PER_PIXEL = 3 * 16 + 8
TOO_BIG_REMEDY = f"write a .zarr output (drawn window by window) or choose a larger pixel size ({arg('pixel_size')})"


def check_picture_fits(n_slices: int, shape: tuple[int, int], n_components: int, clustered: bool = False,
                       per_pixel: int | None = None, remedy: str = TOO_BIG_REMEDY) -> None:
    """Refuse, before allocating, an in-memory picture of ``n_slices`` × ``shape`` output pixels.

    ``per_pixel`` overrides the bytes per output pixel estimated from ``n_components``.

    Examples
    --------
    >>> check_picture_fits(1, (43, 64), 3)  # the demo's default picture: a few hundred KiB
    """
    n_pixels = n_slices * shape[0] * shape[1]
    if per_pixel is None:
        per_pixel = PICTURE_BYTES_PER_COMPONENT * n_components + PICTURE_BYTES_PER_PIXEL + 8 * clustered
    slices = f" × {n_slices} slices" if n_slices > 1 else ""
    check_fits(n_pixels * per_pixel, f"the picture of {shape[0]} × {shape[1]} pixels{slices}", remedy)


def check_fits(n_bytes: float, what: str, remedy: str) -> None:
    """Refuse, before allocating, a result of ``n_bytes`` that exceeds :func:`memory_limit`.

    Parameters
    ----------
    n_bytes : float
        What the result and its working arrays would take.
    what : str
        What would be allocated, e.g. ``"the 20000×30000 picture"``.
    remedy : str
        What to do instead, e.g. ``"write a .zarr output or choose a larger --pixel-size"``.

    Examples
    --------
    >>> check_fits(2**60, "the picture", "choose a larger pixel size")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: the picture would take 1024.0 PiB, more than ...
    """
    if n_bytes <= ALWAYS_FITS:  # no need to ask the system (a file read) for a few MiB
        return
    limit, why = memory_limit()
    if n_bytes > limit:
        raise EmbedviewError(f"{what} would take {format_bytes(n_bytes)}, more than the {format_bytes(limit)} "
                             f"allowed ({why}; set {ENV_VAR} to change it); {remedy}.")
