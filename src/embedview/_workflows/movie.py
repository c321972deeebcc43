"""A stack as a movie: :func:`movie`, and ``embedview render STACK -o movie.mp4`` (or ``.gif``).

One frame per slice (or frame of a time series), all drawn in one basis fitted jointly over
every slice (or a basis given), so a colour means the same in every frame; optionally beside
the image. The one pipeline draws them through :class:`embedview._outputs.movie.MovieSink`,
a frame at a time, at the exact geometry of every other picture: by default at a whole pixel
size that makes the frame's long side 513 to 1024 pixels (or the image's size if smaller).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._common.errors import EmbedviewError, arg
from .._outputs.movie import DEFAULT_FPS
from .figure import DISPLAY_PERCENTILES, checked_image, display_rgb, downsample, side_by_side

#: Slices sampled for the image's display range (one range for every frame).
RANGE_SLICES = 16


def movie(source, path, *, model=None, image=None, fps: float = DEFAULT_FPS, pixel_size=None,
          rgb_components=None, mask=None, upsample=None, overwrite: bool = False) -> Path:
    """Write a stack's PCA pictures as a movie, one frame per slice, all in one basis.

    Parameters
    ----------
    source : str, os.PathLike, dict, array or Source
        A stack: a micro_sam stack or tiled stack, or ViT features with a batch or time axis
        (:func:`embedview.open_features`); anything :func:`embedview.open_source` takes.
    path : str or os.PathLike
        ``.mp4`` (H.264; needs the ``movie`` extra: ``pip install "embedview[movie]"``) or
        ``.gif``. Written under a temporary name and moved there when complete.
    model : PCA, optional
        Fitted: draw with its basis (one, not one per slice); else fitted here jointly over
        every slice (default ``PCA()``).
    image : ndarray, str or os.PathLike, optional
        The image stack ``(Z, H, W[, 3|4])`` the embeddings were computed from: each frame
        shows it beside the PCA picture (one display range for the whole stack).
    fps : float
        Frames per second, 0.01 to 100 (a GIF's frame lasts whole hundredths of a second).
    pixel_size : float or (float, float), optional
        Output pixel size in image pixels; default the smallest whole number that keeps the
        frame's long side within 1024 pixels (1 for smaller images).
    rgb_components : tuple of int, optional
        Which components become red, green and blue.
    mask : array, optional
        Fit on, and draw, only the cells under this ``(Z, H, W)`` or ``(H, W)`` mask.
    upsample : {"nearest", "bilinear", "guided"} or Upsample, optional
        How cells become frame pixels (:class:`embedview.Upsample`); ``"guided"`` follows the
        edges of ``image``.
    overwrite : bool
        Replace a file at ``path`` that embedview did not write (never an input).

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, tempfile, os, embedview
    >>> stack = np.random.default_rng(0).normal(size=(3, 1, 8, 16, 16)).astype(np.float32)
    >>> src = embedview.open_source(stack, original_size=(64, 64))
    >>> embedview.movie(src, os.path.join(tempfile.mkdtemp(), "stack.gif")).suffix
    '.gif'
    """
    from .._inputs.sources import open_source
    from .._run.settings import Draw, Output
    from .settings import Settings

    named = [("the embeddings", source), ("the image", image)]
    inputs = [(what, f) for what, f in named if isinstance(f, (str, os.PathLike))]
    settings = Settings.default(quiet=True) if model is None else Settings(model)
    settings = replace(settings, draw=Draw(pixel_size, rgb_components, upsample), mask=mask)
    return write_movie(open_source(source), Output(path, overwrite=overwrite), settings=settings, image=image,
                       fps=fps, inputs=inputs)


def write_movie(src, output, *, settings=None, image=None, fps: float | None = DEFAULT_FPS, quiet: bool = True,
                inputs=()) -> Path:
    """What :func:`movie` and ``embedview render STACK -o movie.mp4`` do, for an opened source.

    Everything cheap is checked before the PCA runs: a stack, the output's place and writer,
    the frame rate, one basis, the image's shape. ``output``: a path or an
    :class:`~embedview._run.settings.Output`; ``settings``: a
    :class:`~embedview._workflows.commands.Settings` (model, drawing, mask, foreground);
    ``inputs`` as for :func:`embedview._workflows.commands.render`.
    """
    from .._outputs.movie import MovieOutput, check_fps, frame_pixel_size, require_writer
    from .._run.settings import Output
    from .settings import Settings

    settings = settings or Settings.default(quiet)
    model, output = settings.model, Output.of(output)
    out = output.check(stack=src.is_stack, inputs=inputs)  # a 2D input is refused here
    require_writer(out)
    fps = check_fps(DEFAULT_FPS if fps is None else fps)
    fitted = model.is_fitted
    if (len(model.bases_) > 1) if fitted else model.fit_mode != "joint":
        raise EmbedviewError("a movie is drawn in one basis, so that a colour means the same in every frame; "
                             f"{arg('fit_mode', 'joint')}, not 'per_slice'.")
    draw = settings.draw
    if draw.clustered:
        raise EmbedviewError("clusters are drawn in memory; write them to .png, .tif, .npy or .npz, not a movie.")
    if draw.pixel_size is None:  # a movie's own default: frames of a watchable size
        draw = replace(draw, pixel_size=frame_pixel_size(src.image_shape))
    draw = draw.for_source(src, image=image)  # guided: by the image beside the frames
    frame = None
    if image is not None:  # a wrong image fails before the PCA runs
        name, stack = checked_image(image, src, None)
        frame = BesideImage(stack, src.output_grid(draw.pixel_size))
    rgb = draw.rgb_components
    meta = {"source": src.name, "fit": "joint", "normalize": model.normalize,
            "rgb_components": list(rgb) if rgb else None}
    output = replace(output, path=out, metadata={**meta, **(output.metadata or {})},
                     sink=MovieOutput(out, fps, frame, output.overwrite))
    vis, = model.run([src], draw, [output], mask=settings.mask, foreground=settings.foreground, refit=not fitted,
                     extra_inputs=inputs)
    if not quiet:
        from .info import result_summary

        for rule in vis.foreground:
            print(f"embedview: {rule.describe()}", file=sys.stderr)
        beside = ", beside the image" if image is not None else ""
        summary = result_summary(vis, src, [out], "joint")  # "embedview: wrote OUT (...)"
        print(f"{summary[:-1]}; {src.n_slices} frames at {fps:g} fps{beside})", file=sys.stderr)
    return out


class BesideImage:
    """A movie frame: the image's slice | the PCA picture, the image drawn on the picture's grid.

    The image panel is :func:`~embedview._workflows.figure.downsample`'s block means at a whole
    pixel size (as the figure shows it), else the image pixel under each output pixel's centre;
    one display range, the stack's 1st–99th percentile, holds for every frame.
    """

    def __init__(self, stack: np.ndarray, grid):
        self.stack, self.grid = stack, grid
        self.limits = display_limits(stack)

    def panel(self, z: int) -> np.ndarray:
        plane, (py, px) = self.stack[z], self.grid.pixel_size
        if py == px and float(py).is_integer():
            small = downsample(plane, int(py))
        else:
            rows, cols = (np.minimum(self.grid.centres(a).astype(np.int64), plane.shape[a] - 1) for a in (0, 1))
            small = np.asarray(plane[rows][:, cols], np.float32)
        return display_rgb(small, limits=self.limits)

    def __call__(self, z: int, rgb: np.ndarray) -> np.ndarray:
        return side_by_side([self.panel(z), rgb])


def display_limits(stack: np.ndarray, n: int = RANGE_SLICES, values: int = 2**20):
    """The display range (1st–99th percentile) of up to ``n`` evenly spaced slices of ``stack``, each read at a
    stride that leaves about ``values`` pixels (a memory-mapped stack is not loaded); ``None``
    if nothing is finite.

    Examples
    --------
    >>> display_limits(np.arange(2 * 10 * 10, dtype=float).reshape(2, 10, 10))
    (1.99, 197.01)
    """
    zs = np.unique(np.linspace(0, len(stack) - 1, min(n, len(stack))).round().astype(int))
    step = max(1, math.isqrt(stack.shape[1] * stack.shape[2] // values))

    def plane(z):
        x = np.asarray(stack[z, ::step, ::step], np.float32)
        return (x[..., :3] if x.ndim == 3 else x).ravel()  # an alpha channel is not shown

    sample = np.concatenate([plane(z) for z in zs])
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, DISPLAY_PERCENTILES)
    return float(lo), float(hi)
