"""Movies: one frame per slice of a stack, written as ``.mp4`` (H.264) or ``.gif``.

:class:`MovieSink` is the pipeline's sink for a movie (:func:`embedview._run.pipeline.execute`).
Like :class:`~embedview._outputs.sinks.ZarrSink` it keeps the projected pieces (at cell
resolution) until the colour ranges are known, then composes each slice's frame with
:func:`~embedview._outputs.sinks.compose`, the drawing path of every picture, and hands it to
the writer: one frame at pixel size is in memory at a time, never the stack. A caller passes
a :class:`MovieOutput` to the pipeline as the output. MP4 is written by the ffmpeg of
imageio-ffmpeg (the ``movie`` extra, whose wheel ships it), run here so that its exit status is
checked: a failed ffmpeg (a full disk) is an error and its file never takes the output's name.
GIF is written by Pillow (a core dependency). Both carry embedview's marker as a comment.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._inputs.sources import Piece
from .._model.fit import Basis
from .render import Placer
from .sinks import compose, projected_store

#: Frames per second unless asked otherwise.
DEFAULT_FPS = 5.0
#: GIF frame times are whole hundredths of a second: faster than this cannot be shown.
MAX_FPS = 100.0
#: The slowest frame rate, 100 s a frame: a GIF frame lasts at most 655.35 s (16 bits of
#: hundredths) and ffmpeg drops frames below about one per 1000 s; slower shows nothing more.
MIN_FPS = 0.01
#: The default frame's long side is at most this many pixels (and more than half of it), or the image's.
FRAME_SIDE = 1024
#: imageio-ffmpeg's quality 0–10 (7: H.264 at constant rate factor 15, near-lossless for these pictures).
MP4_QUALITY = 7
MOVIE_EXTRA = 'pip install "embedview[movie]"'


def frame_pixel_size(image_shape, side: int = FRAME_SIDE) -> int:
    """The default pixel size of a movie frame: the smallest whole number of image pixels that
    keeps the frame's long side within ``side`` (so between ``side / 2`` and ``side`` for larger
    images; a smaller image is drawn at its own size).

    Examples
    --------
    >>> frame_pixel_size((300, 400)), frame_pixel_size((600, 12000)), frame_pixel_size((1025, 900))
    (1, 12, 2)
    """
    return max(1, math.ceil(max(int(n) for n in image_shape) / side))


def check_fps(fps) -> float:
    """``fps`` as a float, or the sentence saying what it may be.

    Examples
    --------
    >>> check_fps(12)
    12.0
    """
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(fps, bool) or not MIN_FPS <= value <= MAX_FPS:
        raise EmbedviewError(f"{arg('fps', fps)} must be a number of frames per second from {MIN_FPS:g} to {MAX_FPS:g}.")
    return value


def require_writer(path) -> None:
    """Refuse, before any work, a movie format whose writer is not installed (MP4 needs imageio and imageio-ffmpeg)."""
    if Path(path).suffix.lower() != ".mp4":
        return
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise EmbedviewError(f"writing {Path(path).name} needs imageio and imageio-ffmpeg: {MOVIE_EXTRA} "
                             "(or write a .gif, which needs nothing more).") from None


def open_writer(path, fps: float = DEFAULT_FPS):
    """A frame writer for ``path`` by its extension: ``append(frame)`` uint8 ``(h, w, 3)``, then ``close()``."""
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        require_writer(path)
        return _Mp4Writer(path, fps)
    return _GifWriter(path, fps)


def write_frames(path, frames, fps: float = DEFAULT_FPS) -> None:
    """Write the uint8 ``(h, w, 3)`` frames of ``frames`` (any iterable) to ``path`` (not atomic:
    wrap in :func:`embedview._common.output_paths.atomic_path`)."""
    writer = open_writer(path, check_fps(fps))
    try:
        for frame in frames:
            writer.append(frame)
    finally:
        writer.close()


class _Mp4Writer:
    """H.264 in MP4, as yuv420p (what every player shows): that needs even sides, so a frame is
    padded with black at its bottom and right, never resampled. ffmpeg's messages go to a
    temporary file; :meth:`close` raises an :class:`OSError` (its last line; ``ENOSPC`` for a
    full disk) if ffmpeg failed, so the caller never moves a broken movie into place."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self._proc, self._size = Path(path), fps, None, None

    def _start(self, h: int, w: int) -> None:
        import subprocess
        import tempfile

        import imageio_ffmpeg

        from .._common.ownership import comment

        # imageio's own writer with quality=MP4_QUALITY: -crf (1 - q/10) * 51; it does not check
        # ffmpeg's exit status, which is why ffmpeg is run here.
        crf = int((1 - MP4_QUALITY / 10) * 51)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}",
               "-pix_fmt", "rgb24", "-r", f"{self.fps:.6f}", "-i", "-", "-an", "-vcodec", "libx264",
               "-pix_fmt", "yuv420p", "-crf", str(crf), "-metadata", f"comment={comment('picture')}",
               "-v", "error", "-f", "mp4", str(self.path)]
        self._log = tempfile.TemporaryFile()
        # Its own session: Ctrl-C interrupts embedview, which then closes ffmpeg's input (as imageio does).
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                                      start_new_session=os.name == "posix")
        self._size = (h, w)

    def append(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
        if self._proc is None:
            self._start(*frame.shape[:2])
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:  # ffmpeg stopped: close() says why
            self.close()
            raise self._failure() from None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            code = proc.wait()
        if code != 0 or not (self.path.is_file() and self.path.stat().st_size):  # exit 0 with no movie: failed too
            raise self._failure()
        self._log.close()

    def _failure(self) -> OSError:
        import errno

        lines = []
        if not self._log.closed:  # closed: ffmpeg stopped reading frames yet exited 0 (close() read nothing)
            self._log.seek(0)
            lines = [line.strip() for line in self._log.read()[-4096:].decode("utf-8", "replace").splitlines()
                     if line.strip()]
            self._log.close()
        text = lines[-1] if lines else "ffmpeg failed"
        full = any("No space left" in line for line in lines)
        return OSError(errno.ENOSPC if full else errno.EIO,
                       "no space left on the device" if full else f"ffmpeg could not write the movie ({text})",
                       str(self.path))


class _GifWriter:
    """An endlessly looping GIF written a frame at a time (Pillow's own GIF writer keeps every
    frame until the end); each frame is reduced to its own palette of 256 colours (median cut refined by k-means)."""

    def __init__(self, path: Path, fps: float):
        self._file = open(path, "wb")
        self._ms = max(10, round(1000 / fps))
        self._frames = 0

    def append(self, frame: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        image = Image.fromarray(np.ascontiguousarray(frame)).quantize(256, dither=0, kmeans=3)
        if not self._frames:
            from .._common.ownership import comment

            header, _ = GifImagePlugin.getheader(image, info={"loop": 0, "duration": self._ms})
            self._file.write(b"".join(header) + _gif_comment(comment("picture").encode()))
        for chunk in GifImagePlugin.getdata(image, duration=self._ms, include_color_table=True):
            self._file.write(chunk)
        self._frames += 1

    def close(self) -> None:
        if not self._file.closed:
            if self._frames:
                self._file.write(b";")  # the trailer
            self._file.close()


def _gif_comment(text: bytes) -> bytes:
    """A GIF comment extension holding ``text`` (sub-blocks of at most 255 bytes)."""
    blocks = b"".join(bytes([len(text[i:i + 255])]) + text[i:i + 255] for i in range(0, len(text), 255))
    return b"\x21\xfe" + blocks + b"\x00"


@dataclass(frozen=True)
class MovieOutput:
    """A movie as the pipeline's output (``outputs=[MovieOutput(...)]`` of :func:`embedview._run.pipeline.execute`).

    Attributes
    ----------
    path : Path
        ``.mp4`` or ``.gif``, checked by the caller (:func:`embedview._common.output_paths.check_output`);
        written under a temporary name and moved there when complete.
    fps : float
    frame : callable, optional
        ``frame(z, rgb) -> frame``: slice ``z``'s picture (uint8 ``(h, w, 3)``) made into its
        frame (e.g. beside the image); default the picture itself.
    overwrite : bool
        May replace a file embedview did not write (:func:`embedview._common.output_paths.guard_output`).
    """

    path: Path
    fps: float = DEFAULT_FPS
    frame: Callable | None = None
    overwrite: bool = False

    @contextlib.contextmanager
    def open_sink(self, src, grid, n_components: int, upsample=None, engine=None, *, remote: bool = False):
        """The :class:`MovieSink` writing ``src``'s frames into a temporary file renamed to :attr:`path`
        (the :class:`~embedview._outputs.sinks.Writer` contract). One frame is in memory at a time.

        ``upsample``, ``engine``: the :class:`Placer`'s, as the pipeline gives every sink's placer.
        """
        import tempfile

        from .._common.limits import check_picture_fits
        from .._common.output_paths import atomic_path

        check_picture_fits(1, grid.shape, n_components)  # one frame at a time, never the stack
        placing = (upsample, engine)
        pieces = src.pieces()
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path, overwrite=self.overwrite))
            store = projected_store(pieces, n_components, lambda: Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="embedview-movie-"))) / "projected")
            writer = open_writer(tmp, self.fps)
            stack.callback(writer.close)  # closed (the file complete) before it is moved into place
            yield MovieSink(writer, pieces, grid, n_components, self.frame, store, placing)


class MovieSink:
    """Keeps the projected pieces, then writes one frame per slice, in order, as the slices are coloured.

    Parameters
    ----------
    writer : object
        ``append(frame)`` and ``close()`` (:func:`open_writer`).
    pieces : list of Piece
        Every piece of the source, in :meth:`Source.pieces` order (``index`` refers to it).
    grid : OutputGrid
    n_components : int
    frame : callable, optional
        As :attr:`MovieOutput.frame`.
    store : dict or scratch zarr
        Where the projected pieces wait (:func:`embedview._outputs.sinks.projected_store`).
    placing : tuple
        The :class:`Placer`'s arguments after the grid (how cells become pixels), as the other
        sinks' placers get them: a movie frame is drawn exactly as an OME-Zarr window.
    """

    def __init__(self, writer, pieces: list[Piece], grid, n_components: int, frame=None, store=None,
                 placing=()):
        self.writer, self.pieces, self.grid, self.k, self.frame = writer, pieces, grid, n_components, frame
        self.placer = Placer(grid, *placing)
        self.by_slice: dict[int, list] = {}  # slice → its pieces' indices and pieces
        for i, piece in enumerate(pieces):
            self.by_slice.setdefault(piece.z or 0, []).append((i, piece))
        self.store = {} if store is None else store
        self.written = 0

    def place(self, index: int, piece: Piece, projected: np.ndarray) -> None:
        self.store[index] = projected

    def colour(self, zs, basis: Basis, shown, executor=None) -> None:
        """Compose, colour and write the frames of the slices ``zs`` (the next ones of the movie)."""
        window = (slice(0, self.grid.shape[0]), slice(0, self.grid.shape[1]))
        for z in zs:
            if z != self.written:  # frames are written in order; the pipeline colours slices so
                raise RuntimeError(f"movie frame {z} came before frame {self.written}")
            parts = ((p, self.store[i]) for i, p in self.by_slice.get(z, ()))
            _, rgb = compose(self.placer, parts, window, self.k, basis, shown)
            self.writer.append(rgb if self.frame is None else self.frame(z, rgb))
            self.written += 1

    def finish(self, scale, translate, metadata: dict) -> None:
        self.writer.close()
