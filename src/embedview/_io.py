"""Files in and out: read an image, write a visualization by extension, never half-written.

Every output is first written under a recognisable temporary name in its own folder and moved
into place only when complete, so an interrupted or failed run leaves either the old output or
nothing, never a truncated picture; temporaries that killed runs left are removed by the next
run to the same output. An output replaces only what embedview wrote, never an input or the
user's own files (:func:`guard_output`, the one rule every writer goes through).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from ._errors import EmbedviewError
from ._progress import progress_bar

#: Output formats by extension; stacks need one that holds several slices.
OUTPUT_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".zarr": "zarr", ".npy": "npy", ".npz": "npz"}
STACK_FORMATS = (".tif", ".tiff", ".zarr", ".npy", ".npz")
PILLOW_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
IMAGE_FORMATS = (".npy", ".tif", ".tiff") + PILLOW_IMAGES


# ---------------------------------------------------------------------------------------------
# reading


def read_image(path) -> np.ndarray:
    """Read an image: ``.npy``, ``.tif``/``.tiff`` or a Pillow format (``.png``, ``.jpg``, ...).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ndarray
        ``(H, W)``, ``(H, W, 3|4)``, or ``(Z, H, W[, 3|4])`` as stored. ``.npy`` files are
        memory-mapped, so a large stack is not loaded whole.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "image.npy")
    >>> np.save(path, np.zeros((4, 5), np.uint8))
    >>> read_image(path).shape
    (4, 5)
    """
    path = Path(path)
    ext = _extension(path, IMAGE_FORMATS, f"cannot read the image {path}: unknown extension")
    if not path.is_file():
        raise EmbedviewError(f"the image {path} does not exist or is not a file.")
    try:
        if ext == ".npy":
            image = np.load(path, mmap_mode="r", allow_pickle=False)
        elif ext in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            image = _read_pillow(path)
    except EmbedviewError:
        raise
    except Exception as err:  # each reader fails in its own way on a damaged file
        raise EmbedviewError(
            f"could not read the image {path} ({type(err).__name__}: {str(err).strip() or 'no detail'}).") from None
    if image.ndim < 2 or image.dtype.kind not in "biuf":
        raise EmbedviewError(
            f"the image {path} holds a {image.dtype} array of shape {list(image.shape)}; "
            "expected numbers in 2D (H, W), RGB (H, W, 3) or a stack (Z, H, W).")
    return image


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):  # palettes and colour spaces → RGB
            img = img.convert("RGBA" if "A" in img.mode else "RGB")
        elif img.mode == "LA":
            img = img.convert("L")
        elif img.mode == "1":
            img = img.convert("L")
        return np.asarray(img)


# ---------------------------------------------------------------------------------------------
# what an output may replace

#: The first bytes of each output format: an existing file is replaced only if it starts so.
MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
         ".tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), ".npy": (b"\x93NUMPY",),
         ".npz": (b"PK\x03\x04", b"PK\x05\x06")}
#: The root attribute that marks a folder as embedview's: OME-Zarr outputs and written embeddings.
MARKER = "embedview"


def folder_marker() -> dict:
    """What every folder embedview writes records under its root attribute :data:`MARKER`."""
    from . import __version__

    return {"embedview_version": __version__}


def check_output(path, stack: bool = False, inputs=()) -> Path:
    """Check that ``path`` can be written before working: known extension, existing writable
    folder, and :func:`guard_output`'s rule (nothing of the user's, no input, is replaced).

    Parameters
    ----------
    path : str or os.PathLike
    stack : bool
        The output is a stack of slices, which a PNG cannot hold.
    inputs : iterable of (str, path)
        What the run reads, as for :func:`guard_output`.

    Returns
    -------
    Path

    Examples
    --------
    >>> check_output("/nonexistent-folder/out.png")
    Traceback (most recent call last):
    ...
    embedview._errors.EmbedviewError: cannot write /nonexistent-folder/out.png: the folder /nonexistent-folder does not exist.
    """
    path = guard_output(path, inputs)
    ext = _extension(path, OUTPUT_FORMATS, f"cannot write {path}: unknown output extension")
    if stack and ext not in STACK_FORMATS:
        raise EmbedviewError(
            f"cannot write {path}: a {OUTPUT_FORMATS[ext]} holds one 2D picture but these embeddings "
            "are a stack of slices; write a .tif (one page per slice) or a .zarr instead.")
    _check_folder(path)
    return path


def guard_output(path, inputs=(), *, into: bool = False) -> Path:
    """The one rule for what an output may touch; an :class:`EmbedviewError` where it would break it.

    An output may replace only what embedview itself wrote at ``path``: a file of the output's
    format (judged by its first bytes; an empty file holds nothing to lose) or a folder whose
    root attributes carry :data:`MARKER` (:func:`folder_marker`). It may never be an input, lie
    inside one, or hold one (paths compared after resolving links).

    Parameters
    ----------
    path : str or os.PathLike
    inputs : iterable of (str, path)
        What the run reads, e.g. ``[("the embeddings", "a.zarr"), ("the image", None)]``;
        ``None`` and things that are not paths (arrays) are skipped.
    into : bool
        ``path`` is a folder written into, not replaced: it may hold inputs, not lie in one.

    Returns
    -------
    Path

    Examples
    --------
    >>> guard_output("outer.zarr", [("the embeddings", "outer.zarr/emb.zarr")])
    Traceback (most recent call last):
    ...
    embedview._errors.EmbedviewError: the output outer.zarr would overwrite the embeddings outer.zarr/emb.zarr (it holds them); choose another output name.
    """
    path = Path(path)
    out = Path(os.path.realpath(path))
    for what, source in inputs:
        if not isinstance(source, (str, os.PathLike)):
            continue
        src = Path(os.path.realpath(source))
        if out == src:
            relation = "the same path"
        elif src in out.parents:
            relation = "it would lie inside them"
        elif out in src.parents and not into:
            relation = "it holds them"
        else:
            continue
        raise EmbedviewError(f"the output {path} would overwrite {what} {source} ({relation}); "
                             "choose another output name.")
    if not into:
        _check_replaceable(path, directory=path.suffix.lower() == ".zarr")
    return path


def _check_replaceable(path: Path, directory: bool) -> None:
    """Refuse to replace what embedview did not write (see :func:`guard_output`)."""
    if not path.exists():  # nothing there, or a dangling link: nothing to lose
        return
    if directory:
        for _ in range(16):  # another writer may swap the folder while we read its marker: look again
            try:
                before = os.stat(path)
                if stat.S_ISDIR(before.st_mode) and _has_marker(path):
                    return
                after = os.stat(path)
            except FileNotFoundError:
                return
            if (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino):
                break
        raise EmbedviewError(
            f"cannot write {path}: it is an existing {'folder' if path.is_dir() else 'file'} that embedview did "
            "not write (no embedview metadata in its root attributes), so it is left alone; choose another "
            "name, or remove it yourself if it may go.")
    if path.is_dir():
        raise _existing_folder(path)
    ext = path.suffix.lower()
    if ext in MAGIC and not _starts_with(path, MAGIC[ext]):
        raise EmbedviewError(
            f"cannot write {path}: it is an existing file that is not a {OUTPUT_FORMATS[ext]} file, so "
            "embedview did not write it and leaves it alone; choose another name, or remove it yourself "
            "if it may go.")


def _existing_folder(path: Path) -> EmbedviewError:
    return EmbedviewError(
        f"cannot write {path}: it is an existing folder; with one input -o names the output file: give a "
        f"name ending in {', '.join(OUTPUT_FORMATS)} (e.g. {path / 'pca.png'}), or a new .zarr folder.")


def _starts_with(path: Path, magic: tuple[bytes, ...]) -> bool:
    """A regular file that is empty or starts with one of ``magic`` (FIFOs, devices: no)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return False
        if info.st_size == 0:
            return True
        with open(path, "rb") as f:
            head = f.read(max(len(m) for m in magic))
    except OSError:
        return False
    return head.startswith(magic)


def _has_marker(folder: Path) -> bool:
    """The zarr group ``folder`` (v2 ``.zattrs`` or v3 ``zarr.json``) carries :data:`MARKER`."""
    for name in (".zattrs", "zarr.json"):
        attrs = _read_json(folder / name)
        if name == "zarr.json" and isinstance(attrs, dict):
            attrs = attrs.get("attributes")
        if isinstance(attrs, dict) and isinstance(attrs.get(MARKER), dict) and "embedview_version" in attrs[MARKER]:
            return True
    return False


def _read_json(path: Path, limit: int = 16 * 2**20):
    """A small regular JSON file's content, or ``None`` (missing, too big, not a file, not JSON)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with open(path, "rb") as f:
            return json.loads(f.read(limit))
    except (OSError, ValueError, RecursionError):
        return None


def _extension(path: Path, formats, problem: str) -> str:
    """``path``'s lower-case extension, or an error saying ``problem`` and which ones work."""
    ext = path.suffix.lower()
    if ext not in formats:
        raise EmbedviewError(f"{problem} {ext or '(none)'!r}; use one of {', '.join(formats)}.")
    return ext


def _check_folder(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise EmbedviewError(f"cannot write {path}: the folder {parent} does not exist.")
    if not parent.is_dir():
        raise EmbedviewError(f"cannot write {path}: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EmbedviewError(f"cannot write {path}: the folder {parent} is not writable.")


# ---------------------------------------------------------------------------------------------
# atomic writing, and what a failed or killed run leaves


@contextlib.contextmanager
def atomic_path(path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, else remove it.

    The temporary is named ``.<name>.embedview-<host>-<pid>-<random>.tmp<ext>``; temporaries of
    dead runs on this host (SIGKILL, power loss) are removed first (:func:`remove_stale`). What
    is at ``path`` must be replaceable (:func:`guard_output`). A file is moved in with
    :func:`os.replace`; a folder (``directory=True``, a ``.zarr``) is swapped in by
    :func:`_swap_in`, so the old or the new output is at ``path`` at every moment.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    _check_folder(path)
    remove_stale(path)
    _check_replaceable(path, directory)
    existed = os.path.lexists(path)
    try:
        tmp = _make_temp(path, directory)
    except OSError as err:
        raise EmbedviewError(f"cannot write {path}: {_reason(err)}.") from None
    try:
        yield tmp
        if directory:
            _swap_in(tmp, path)
        else:
            _check_replaceable(path, directory)  # still so after the work
            os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError):
            raise EmbedviewError(f"cannot write {path}: {_reason(err)}.") from None
        raise
    if not existed:
        _record(path, folder=False)


_TEMP_TAG = ".embedview-"


def _make_temp(path: Path, directory: bool) -> Path:
    """Create the temporary file or folder for ``path`` (normal permissions: the umask applies)."""
    parent = path.parent if str(path.parent) else Path(".")
    while True:
        tmp = parent / f".{path.name}{_TEMP_TAG}{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def remove_stale(path) -> None:
    """Remove the temporaries of ``path`` that runs no longer alive on this host left behind.

    Only names of :func:`atomic_path`'s pattern whose process id is dead are touched, so a
    writer still running (here or on another host sharing the folder) is not disturbed. An
    old output stranded by a crash inside :func:`_swap_in`'s two-rename fallback (``….old``
    while nothing is at ``path``) is renamed back to ``path``.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}{_TEMP_TAG}") + r"([0-9a-f]{8})-(\d+)-[0-9a-f]{8}\.(tmp|old)")
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(f".{path.name}{_TEMP_TAG}"))
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if not match or match[1] != _host() or _alive(int(match[2])):
            continue
        if match[3] == "old" and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.rename(parent / name, path)
                continue
        _remove(parent / name)


@functools.cache
def _host() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # someone else's process (EPERM), or not a pid at all
        return True
    return True


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
#: Errors of renameat2 that mean "not here" (old kernel, seccomp, a file system without the flag).
_NO_RENAMEAT2 = (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP)


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` at ``path``; at every moment the old or the new folder is there.

    On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps the two in one step (and ``tmp``, which then
    holds the old output, is removed), or ``RENAME_NOREPLACE`` moves ``tmp`` to a free place.
    Another writer getting in between only makes it try again, so concurrent writers leave one
    output and nothing else. Where renameat2 is missing (other systems, some network file
    systems), two renames: the old output aside to ``.<name>.embedview-…old``, the new one in.
    The one window that remains is between those two renames: a crash there leaves nothing at
    ``path`` but the old output under that name, and the next run writing ``path`` renames it
    back first (:func:`remove_stale`); an error there puts it back at once.
    """
    olds = []
    try:
        for _ in range(16):
            if os.path.lexists(path):
                _check_replaceable(path, directory=True)  # still embedview's, after the work
                err = _rename2(tmp, path, _RENAME_EXCHANGE)
                if err == 0:
                    _remove(tmp)  # the old output now
                    return
            else:
                err = _rename2(tmp, path, _RENAME_NOREPLACE)
                if err == 0:
                    return
            if err in (errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY):  # another writer got in between
                continue
            if err is not None and err not in _NO_RENAMEAT2:
                raise OSError(err, os.strerror(err), str(path))
            if os.path.lexists(path):
                olds.append(tmp.with_name(tmp.name[:tmp.name.rindex(".tmp")] + f".old{len(olds) or ''}"))
                try:
                    os.rename(path, olds[-1])
                except FileNotFoundError:
                    olds.pop()
            try:
                os.rename(tmp, path)
                return
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        raise OSError(errno.EBUSY, "other writers keep replacing it", str(path))
    except BaseException:
        if olds and not os.path.lexists(path):  # never leave the place empty
            with contextlib.suppress(OSError):
                os.rename(olds.pop(), path)
        raise
    finally:
        for old in olds:
            _remove(old)


def _rename2(src: Path, dst: Path, flags: int) -> int | None:
    """Linux ``renameat2``: 0, or the errno; ``None`` where the call does not exist."""
    call = _renameat2()
    if call is None:
        return None
    import ctypes

    if call(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:  # -100: AT_FDCWD
        return 0
    return ctypes.get_errno()


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2  # glibc ≥ 2.28
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def _remove(path: Path) -> None:
    path = Path(path)
    for _ in range(20):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        if not os.path.lexists(path):
            return
        time.sleep(0.05)  # a thread of an interrupted writer may still be adding a file


def _reason(err: OSError) -> str:
    return err.strerror.lower() if err.strerror else str(err)


#: What the innermost :func:`undo_on_failure` block created so far: (path, is a made folder).
_created: list | None = None


@contextlib.contextmanager
def undo_on_failure() -> Iterator[None]:
    """If the block fails (an error, Ctrl-C, SIGTERM), remove what it created: the outputs
    :func:`atomic_path` put where nothing was, and the folders :func:`make_folder` made (once
    empty). What existed before is never removed. Blocks nest: an inner one that succeeds hands
    its list to the outer one.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = os.path.join(tempfile.mkdtemp(), "new")
    >>> try:
    ...     with undo_on_failure():
    ...         with atomic_path(make_folder(folder) / "a.txt") as tmp:
    ...             _ = tmp.write_text("a")
    ...         raise RuntimeError("later step failed")
    ... except RuntimeError:
    ...     pass
    >>> os.path.exists(folder)
    False
    """
    global _created
    outer, _created = _created, []
    try:
        yield
    except BaseException:
        for path, folder in reversed(_created):
            if folder:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            else:
                _remove(path)
        raise
    else:
        if outer is not None:
            outer.extend(_created)
    finally:
        _created = outer


def _record(path: Path, folder: bool) -> None:
    if _created is not None:
        _created.append((Path(path), folder))


def make_folder(path) -> Path:
    """Create the folder ``path`` and missing parents; recorded for :func:`undo_on_failure`."""
    path = Path(path)
    missing, p = [], path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EmbedviewError(f"cannot create the folder {path}: {_reason(err)}.") from None
    if not path.is_dir():
        raise EmbedviewError(f"cannot write into {path}: it is a file, not a folder.")
    for p in reversed(missing):
        _record(p, folder=True)
    return path


# ---------------------------------------------------------------------------------------------
# writing a visualization


def output_metadata(vis, extra: dict | None = None) -> dict:
    """What every output records besides pixels: geometry, layout and the PCA's explained variance.

    Examples
    --------
    >>> import numpy as np, embedview
    >>> vis = embedview.visualize(np.ones((1, 4, 64, 64), np.float32), original_size=(64, 64))
    >>> output_metadata(vis)["scale"]
    [1.0, 1.0]
    """
    from . import __version__

    ratios = [[float(v) for v in basis.explained_variance_ratio] for basis in vis.bases]
    meta = {
        "embedview_version": __version__,
        "axes": (["z"] if len(vis.scale) == 3 else []) + ["y", "x", "c"],
        "scale": [float(v) for v in vis.scale],
        "translate": [float(v) for v in vis.translate],
        "layout": vis.layout,
        "image_shape": [int(v) for v in vis.image_shape],
        "n_components": int(vis.components.shape[-1] if vis.components is not None else vis.bases[0].n_components),
        # One list for fit="joint", one per slice for fit="per_slice".
        "explained_variance_ratio": ratios[0] if len(ratios) == 1 else ratios,
    }
    meta.update(extra or {})
    return meta


def write_output(vis, path, *, metadata: dict | None = None, progress: bool = False) -> Path:
    """Write a :class:`~embedview.Visualization` to ``path``, chosen by extension, atomically.

    Parameters
    ----------
    vis : Visualization
    path : str or os.PathLike
        ``.png`` (2D only), ``.tif``/``.tiff`` (2D RGB or one page per slice), ``.zarr``
        (OME-Zarr: a multiscale RGB image plus ``components``, see :mod:`embedview._omezarr`), ``.npy`` (the RGB array) or ``.npz`` (``rgb``,
        ``components``, ``scale``, ``translate``). All but ``.npy`` record ``scale`` and
        ``translate``: the PNG in its ``embedview`` text chunk, the TIFF in its JSON
        ImageDescription, the zarr group in its attributes.
    metadata : dict, optional
        Extra JSON-able entries to record (e.g. the source and options).
    progress : bool
        Progress bar on stderr while writing a large zarr output.

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, embedview, tempfile, os
    >>> vis = embedview.visualize(np.random.rand(1, 8, 64, 64).astype(np.float32), original_size=(600, 900))
    >>> out = write_output(vis, os.path.join(tempfile.mkdtemp(), "pca.png"))
    >>> read_image(out).shape
    (43, 64, 3)
    """
    path = check_output(path, stack=vis.rgb.ndim == 4)
    meta = output_metadata(vis, metadata)
    ext = path.suffix.lower()
    with atomic_path(path, directory=ext == ".zarr") as tmp:
        if ext == ".png":
            write_png(tmp, vis.rgb, meta)
        elif ext in (".tif", ".tiff"):
            _write_tiff(tmp, vis.rgb, meta)
        elif ext == ".zarr":
            _write_zarr(tmp, vis, meta, progress, path.name)
        elif ext == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, vis.rgb)
        else:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, rgb=vis.rgb, components=vis.components,
                                    scale=np.asarray(vis.scale), translate=np.asarray(vis.translate),
                                    image_shape=np.asarray(vis.image_shape),
                                    metadata=np.asarray(json.dumps(meta)))
    return path


def write_png(path, rgb: np.ndarray, metadata: dict | None = None) -> None:
    """Write a uint8 ``(H, W, 3)`` array as PNG (not atomic: wrap in :func:`atomic_path`)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if metadata:
        info.add_text("embedview", json.dumps(metadata))
    Image.fromarray(np.ascontiguousarray(rgb)).save(path, format="PNG", pnginfo=info)


def _write_tiff(path: Path, rgb: np.ndarray, meta: dict) -> None:
    import tifffile

    sy, sx = meta["scale"][-2:]
    # The JSON ImageDescription (tifffile's "shaped" metadata) holds the exact geometry; the
    # resolution tags give other readers the pixel size in image pixels.
    tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib", metadata=meta,
                     resolution=(1.0 / sx, 1.0 / sy), resolutionunit="NONE")


def _write_zarr(path: Path, vis, meta: dict, progress: bool, name: str) -> None:
    """The in-memory picture as OME-Zarr, written window by window like an out-of-core one."""
    from ._omezarr import OmeZarrWriter, windows

    n_slices = vis.rgb.shape[0] if vis.rgb.ndim == 4 else None
    writer = OmeZarrWriter(path, vis.rgb.shape[-3:-1], n_slices, vis.components.shape[-1])
    zs = [None] if n_slices is None else range(n_slices)
    bar = progress_bar(len(zs), progress, desc=f"writing {name}")
    try:
        for z in zs:
            rgb, components = (vis.rgb, vis.components) if z is None else (vis.rgb[z], vis.components[z])
            for window in windows(rgb.shape[:2], writer.chunk):
                writer.write(z, window, rgb[window], components[window])
            bar.update()
        writer.finish(vis.scale, vis.translate, meta)
    finally:
        bar.close()
