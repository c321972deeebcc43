"""Where an output may go, and getting it there whole.

One rule for every writer (:func:`guard_output`): an output replaces only what embedview wrote,
never an input or the user's own files. Every output is first written under a recognisable
temporary name in its own folder and moved into place only when complete (:func:`atomic_path`),
so an interrupted or failed run leaves either the old output or nothing, never a truncated
picture; temporaries that killed runs left are removed by the next run to the same output, and
a failed run removes what it created (:func:`undo_on_failure`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import EmbedviewError, arg

#: Output formats by extension; stacks need one that holds several slices. Movies hold only stacks.
OUTPUT_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".zarr": "zarr", ".npy": "npy", ".npz": "npz",
                  ".mp4": "MP4", ".gif": "GIF"}
STACK_FORMATS = (".tif", ".tiff", ".zarr", ".npy", ".npz", ".mp4", ".gif")
MOVIE_FORMATS = (".mp4", ".gif")

# ---------------------------------------------------------------------------------------------
# what an output may replace

#: The root attribute that marks a folder as embedview's: OME-Zarr outputs and written embeddings.
MARKER = "embedview"
#: How the rule names the kinds of :mod:`embedview._common.ownership` in its messages.
_KIND_NAMES = {"picture": "a picture", "basis": "a basis", "demo": "a demo file", "embeddings": "embeddings"}


def folder_marker(kind: str = "picture") -> dict:
    """What every folder embedview writes records under its root attribute :data:`MARKER`
    (:func:`embedview._common.ownership.marker`)."""
    from .ownership import marker

    return marker(kind)


def check_output(path, stack: bool = False, inputs=(), *, overwrite: bool = False, kind: str = "picture") -> Path:
    """Check that ``path`` can be written before working: known extension, existing writable
    folder, and :func:`guard_output`'s rule (nothing of the user's, no input, is replaced).

    Parameters
    ----------
    path : str or os.PathLike
    stack : bool
        The output is a stack of slices, which a PNG cannot hold (and a movie needs).
    inputs : iterable of (str, path)
        What the run reads, as for :func:`guard_output`.
    overwrite, kind
        As for :func:`guard_output`.

    Returns
    -------
    Path

    Examples
    --------
    >>> check_output("/nonexistent-folder/out.png")
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: cannot write /nonexistent-folder/out.png: the folder /nonexistent-folder does not exist.
    """
    path = guard_output(path, inputs, overwrite=overwrite, kind=kind)
    ext = _extension(path, OUTPUT_FORMATS, f"cannot write {path}: unknown output extension")
    if stack and ext not in STACK_FORMATS:
        raise EmbedviewError(
            f"cannot write {path}: a {OUTPUT_FORMATS[ext]} holds one 2D picture but these embeddings "
            "are a stack of slices; write a .tif (one page per slice) or a .zarr instead.")
    if not stack and ext in MOVIE_FORMATS:
        raise EmbedviewError(
            f"cannot write {path}: a movie has one frame per slice but these embeddings are one 2D image; "
            "write a .png, .tif or .zarr instead.")
    _check_folder(path)
    return path


def guard_output(path, inputs=(), *, into: bool = False, overwrite: bool = False, kind: str = "picture") -> Path:
    """The one rule for what an output may touch; an :class:`EmbedviewError` where it would break it.

    An output may replace only what embedview itself wrote at ``path``, of the output's own
    ``kind``: a file or folder whose embedview marker (:mod:`embedview._common.ownership`, read
    within bounded bytes) records that kind; an empty file holds nothing to lose. With
    ``overwrite`` it may also replace any other regular file, and any folder embedview marked
    (of another kind); never a folder embedview did not write. It may never be an input, lie
    inside one, or hold one (paths compared after resolving links), ``overwrite`` or not.

    Parameters
    ----------
    path : str or os.PathLike
    inputs : iterable of (str, path)
        What the run reads, e.g. ``[("the embeddings", "a.zarr"), ("the image", None)]``;
        ``None`` and things that are not paths (arrays) are skipped.
    into : bool
        ``path`` is a folder written into, not replaced: it may hold inputs, not lie in one.
    overwrite : bool
        The user said so (``--overwrite``, ``overwrite=True``): replace files embedview did not write.
    kind : str
        What the output is (:data:`embedview._common.ownership.KINDS`).

    Returns
    -------
    Path

    Examples
    --------
    >>> guard_output("outer.zarr", [("the embeddings", "outer.zarr/emb.zarr")])
    Traceback (most recent call last):
    ...
    embedview._common.errors.EmbedviewError: the output outer.zarr would overwrite the embeddings outer.zarr/emb.zarr (it holds them); choose another output name.
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
        _check_replaceable(path, path.suffix.lower() == ".zarr", kind, overwrite)
    return path


def _check_replaceable(path: Path, directory: bool, kind: str = "picture", overwrite: bool = False) -> None:
    """Refuse to replace what embedview did not write, or wrote as another kind (see :func:`guard_output`)."""
    from .ownership import owner_kind

    if not path.exists():  # nothing there, or a dangling link: nothing to lose
        return
    if directory:
        for _ in range(16):  # another writer may swap the folder while we read its marker: look again
            try:
                before = os.stat(path)
                found = owner_kind(path, directory=True) if stat.S_ISDIR(before.st_mode) else None
                after = os.stat(path)
            except FileNotFoundError:
                return
            if (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino):
                break
        if found == kind or (found is not None and overwrite):
            return
        if found is not None:
            raise _other_kind(path, found, kind)
        raise EmbedviewError(
            f"cannot write {path}: it is an existing {'folder' if path.is_dir() else 'file'} that embedview did "
            f"not write (no embedview metadata in its root attributes), so it is left alone, even with "
            f"{arg('overwrite', True)}; choose another name, or remove it yourself if it may go.")
    if path.is_dir():
        raise _existing_folder(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise EmbedviewError(f"cannot write {path}: it is not a regular file (a pipe or a device), so it is "
                             "left alone; choose another name.")
    if info.st_size == 0 or overwrite:
        return
    found = owner_kind(path, directory=False)
    if found == kind:
        return
    if found is not None:
        raise _other_kind(path, found, kind)
    raise EmbedviewError(
        f"cannot write {path}: it is an existing file that embedview did not write (no embedview metadata "
        f"in it), so it is left alone; choose another name, or pass {arg('overwrite', True)} to replace it.")


def _other_kind(path: Path, found: str, kind: str) -> EmbedviewError:
    return EmbedviewError(
        f"cannot write {path}: embedview wrote it as {_KIND_NAMES[found]}, not {_KIND_NAMES[kind]}, so this "
        f"output leaves it alone; choose another name, or pass {arg('overwrite', True)} to replace it.")


def _existing_folder(path: Path) -> EmbedviewError:
    return EmbedviewError(
        f"cannot write {path}: it is an existing folder; with one input -o names the output file: give a "
        f"name ending in {', '.join(OUTPUT_FORMATS)} (e.g. {path / 'pca.png'}), or a new .zarr folder.")


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
def atomic_path(path, directory: bool = False, *, kind: str = "picture", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, else remove it.

    The temporary is named ``.<name>.embedview-<host>-<pid>-<random>.tmp<ext>`` (a long name
    shortened, so it fits in the file system's 255 bytes: :func:`_temp_stem`); temporaries of
    dead runs on this host (SIGKILL, power loss) are removed first (:func:`remove_stale`). What
    is at ``path`` must be replaceable by an output of ``kind`` (:func:`guard_output`, with
    ``overwrite``), before and again after the work. A file is moved in with
    :func:`os.replace`; a folder (``directory=True``, a ``.zarr``) is swapped in by
    :func:`_swap_in`, so the old or the new output is at ``path`` at every moment. The writer
    must put embedview's marker of ``kind`` into what it writes (:mod:`embedview._common.ownership`).

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
    _check_replaceable(path, directory, kind, overwrite)
    existed = os.path.lexists(path)
    try:
        tmp = _make_temp(path, directory)
    except OSError as err:
        raise EmbedviewError(f"cannot write {path}: {_reason(err)}.") from None
    try:
        yield tmp
        if directory:
            _swap_in(tmp, path, kind, overwrite)
        else:
            _check_replaceable(path, directory, kind, overwrite)  # still so after the work
            os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError):
            raise EmbedviewError(f"cannot write {path}: {_reason(err)}.") from None
        raise
    if not existed:
        _record(path, folder=False)


_TEMP_TAG = ".embedview-"
#: A file name's most bytes (NAME_MAX on Linux and macOS), and what a temporary adds to the
#: output's name at most: ".", the tag, host, a pid of up to 10 digits, random, ".tmp" or ".old12".
NAME_MAX = 255
_TEMP_ROOM = 1 + len(_TEMP_TAG) + 8 + 1 + 10 + 1 + 8 + len(".tmp")


def _temp_stem(path: Path) -> str:
    """The part of ``path``'s name its temporaries carry: the name itself, or, where the
    temporary's name would pass :data:`NAME_MAX` bytes, its start and a hash of the whole name
    (the same every time, so :func:`remove_stale` finds them).

    Examples
    --------
    >>> _temp_stem(Path("pca.png")), len(_temp_stem(Path("x" * 240 + ".png")).encode())
    ('pca.png', 207)
    """
    room = NAME_MAX - _TEMP_ROOM - len(os.fsencode(path.suffix))
    name = os.fsencode(path.name)
    if len(name) <= room:
        return path.name
    import hashlib

    digest = hashlib.sha1(name).hexdigest()[:8]
    return _cut(name, room - 9) + "~" + digest


def _cut(name: bytes, n: int) -> str:
    """The first ``n`` bytes of a file name, not splitting a UTF-8 character."""
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:  # not UTF-8: bytes as the file system has them
        return os.fsdecode(name[:n])
    return name[:n].decode("utf-8", "ignore")


def _make_temp(path: Path, directory: bool) -> Path:
    """Create the temporary file or folder for ``path`` (normal permissions: the umask applies)."""
    parent = path.parent if str(path.parent) else Path(".")
    stem = _temp_stem(path)
    while True:
        tmp = parent / f".{stem}{_TEMP_TAG}{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}"
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
    prefix = f".{_temp_stem(path)}{_TEMP_TAG}"
    pattern = re.compile(re.escape(prefix) + r"([0-9a-f]{8})-(\d+)-[0-9a-f]{8}\.(tmp|old)")
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(prefix))
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


def _swap_in(tmp: Path, path: Path, kind: str = "picture", overwrite: bool = False) -> None:
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
                _check_replaceable(path, True, kind, overwrite)  # still embedview's, after the work
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
