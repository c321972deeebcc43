"""The settings of a run, made once by each front-end and carried whole down the layers.

A run has four kinds of settings, each in one frozen object with one meaning:

- the model's: the estimator, :class:`embedview.PCA` (components, fit mode, colour ranges,
  outliers, non-finite cells, fit sample); the cells fitted (``mask=``, ``foreground=``) are
  arguments of its methods, like ``sample_weight`` in scikit-learn, because they depend on the
  data;
- drawing: :class:`Draw` (pixel size, components shown, upsampling, k-means labels);
- execution: :class:`Execution` (device, Dask scheduler, progress bar);
- output: :class:`Output` (path, format, whether a file embedview did not write may be replaced,
  the extra metadata recorded).

The command line builds them from argparse in one function
(:func:`embedview._workflows.commands.settings_from_args`), the API from keywords
(:meth:`embedview.PCA.transform` and friends); below that nothing re-derives a setting or copies
it into a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .._common.errors import EmbedviewError
from .executors import LocalExecutor


@dataclass(frozen=True)
class Execution:
    """Where and how the passes run; accepted as ``execution=`` by :func:`embedview.visualize`
    and :class:`embedview.PCA`.

    Attributes
    ----------
    device : str
        Where the arithmetic runs: ``"cpu"`` (numpy, the default) or a PyTorch device
        (``"cuda"``, ``"cuda:1"``, ``"mps"``; ``"torch:cpu"`` runs PyTorch on the CPU). Needs the
        ``torch`` extra; the result equals the numpy path's (uint8 ±1).
    scheduler : str or distributed.Client, optional
        Run the passes with Dask (the ``dask`` extra): ``"threads"``, ``"processes"``, the
        address of a ``dask.distributed`` scheduler (``"tcp://host:8786"``) or a ``Client``.
        Workers read the features themselves (the inputs must be file paths for processes and
        clusters). The result equals the local one. Default: this process, no Dask.
    progress : bool
        Show a progress bar on stderr for work that takes over a second.

    Examples
    --------
    >>> Execution(scheduler="threads")
    Execution(device='cpu', scheduler='threads', progress=False)
    """

    device: str = "cpu"
    scheduler: object = None
    progress: bool = False

    def executor(self, inputs):
        """The executor running the passes over ``inputs``."""
        if self.scheduler is None:
            from .._model.engines import engine_for

            return LocalExecutor(inputs, engine_for(self.device))
        from .dask_executor import DaskExecutor  # the workers build their engines: this process may have no GPU

        return DaskExecutor(inputs, self.scheduler, self.device)


@dataclass(frozen=True)
class Draw:
    """How a model's picture is drawn: the same for the picture, its figure, montage or movie.

    Attributes
    ----------
    pixel_size : float or (float, float), optional
        Output pixel size in image pixels; default the embedding grid (for tiled inputs, the
        cell size of a full interior tile). ``1`` draws at image resolution.
    rgb_components : tuple of int, optional
        Which components become red, green and blue; default the first three.
    upsample : {"nearest", "bilinear", "guided"}, Upsample or Upsampling, optional
        How cells become output pixels (:class:`embedview.Upsample`); :meth:`for_source` resolves
        it once for one input (the guide opened), and the resolved one is used as it is.
    clusters : int, optional
        Draw k-means labels of this many clusters instead of RGB (:func:`embedview.cluster`).
    cluster_components : int, optional
        Cluster in the first this many components (default all computed).

    Examples
    --------
    >>> Draw(pixel_size=2, rgb_components=(0, 2, 1))
    Draw(pixel_size=2, rgb_components=(0, 2, 1), upsample=None, clusters=None, cluster_components=None)
    """

    pixel_size: float | tuple | None = None
    rgb_components: tuple | None = None
    upsample: object = None
    clusters: int | None = None
    cluster_components: int | None = None

    def __post_init__(self):
        if isinstance(self.rgb_components, list):  # checked when drawn (shown_components)
            object.__setattr__(self, "rgb_components", tuple(self.rgb_components))

    @property
    def clustered(self) -> bool:
        """Whether the picture shows k-means labels."""
        return self.clusters is not None

    def shown(self, n_components: int) -> tuple[int, ...]:
        """The components shown as red, green and blue, checked against ``n_components``."""
        from .._common.deprecation import shown_components

        return shown_components(self.rgb_components, n_components)

    def for_source(self, src, image=None) -> "Draw":
        """This drawing with its upsampling resolved for ``src`` (``"guided"`` without a guide
        takes ``image``); checked before any work."""
        from .._outputs.guide import resolve_upsampling

        return replace(self, upsample=resolve_upsampling(self.upsample, src.shape, str(src.name), image=image))


@dataclass(frozen=True)
class Output:
    """Where a picture is written, and how.

    Attributes
    ----------
    path : Path
        The file; its extension is the format (:attr:`format`).
    overwrite : bool
        Replace a file that embedview did not write (``--overwrite``); by default only an
        earlier embedview output is replaced (:mod:`embedview._common.output_paths`).
    metadata : dict, optional
        Extra JSON-able entries recorded in the file.
    sink : Output of embedview._outputs.sinks, optional
        The writer that opens this output's sink when the pipeline draws into it
        (:class:`embedview._outputs.sinks.Writer`: e.g. a movie's
        :class:`~embedview._outputs.movie.MovieOutput`); default :meth:`writer`'s OME-Zarr. An
        output drawn in memory first (PNG, TIFF, NPY) is written by
        :func:`embedview._outputs.io.write_picture`.

    Examples
    --------
    >>> Output("pca.zarr").format
    '.zarr'
    """

    path: Path
    overwrite: bool = False
    metadata: dict | None = None
    sink: object = None

    def __post_init__(self):
        if not isinstance(self.path, Path):
            try:
                object.__setattr__(self, "path", Path(self.path))
            except TypeError:
                raise EmbedviewError(f"output= must be a path; got {type(self.path).__name__}.") from None
        if not isinstance(self.overwrite, bool):
            raise EmbedviewError(f"overwrite must be True or False; got {self.overwrite!r}.")

    @property
    def format(self) -> str:
        """The extension, lower case (``".png"``, ``".zarr"``, ...)."""
        return self.path.suffix.lower()

    def check(self, *, stack: bool = False, inputs=()) -> Path:
        """This output's path, checked where it may go (:func:`embedview._common.output_paths.check_output`,
        with this output's ``overwrite``)."""
        from .._common.output_paths import check_output

        return check_output(self.path, stack=stack, inputs=inputs, overwrite=self.overwrite)

    def writer(self):
        """What writes this output when the pipeline draws into it (an
        :class:`embedview._outputs.sinks.Writer`): its :attr:`sink`, or OME-Zarr
        (:class:`~embedview._outputs.sinks.ZarrOutput`, which refuses another extension)."""
        from .._outputs.sinks import ZarrOutput

        return self.sink if self.sink is not None else ZarrOutput(self.path, self.overwrite)

    @classmethod
    def of(cls, value, metadata=None) -> "Output | None":
        """``None``, a path or an :class:`Output` as an :class:`Output` (``metadata`` added)."""
        if value is None or isinstance(value, cls) and metadata is None:
            return value
        if isinstance(value, cls):
            return replace(value, metadata={**(value.metadata or {}), **metadata})
        if hasattr(value, "open_sink"):  # a writer (embedview.ZarrOutput(path, overwrite=True), a movie's)
            return cls(value.path, bool(value.overwrite), metadata, sink=value)
        return cls(value, metadata=metadata)
