"""A command's settings, made once by its front-end and carried whole: :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._run.settings import Draw


@dataclass(frozen=True)
class Settings:
    """The settings of one command, built once (:func:`embedview._workflows.commands.settings_from_args`) and passed whole.

    Attributes
    ----------
    model : PCA
        The estimator: fitted (``--basis``): draw with it; else fitted by the command.
    draw : Draw
        How the pictures (and the figure, montage, movie) are drawn.
    mask : ndarray, optional
        Fit on, and draw, only the cells under it (``--mask``).
    foreground : dict, optional
        The foreground rule's fixed parts (``--foreground auto``).
    geometry : dict, optional
        :func:`embedview.open_features`' keywords for ViT feature files.
    """

    model: object = None
    draw: Draw = field(default_factory=Draw)
    mask: object = None
    foreground: dict | None = None
    geometry: dict | None = None

    @classmethod
    def default(cls, quiet: bool = False) -> "Settings":
        """A command's settings when none are given: ``PCA()`` with a progress bar unless ``quiet``."""
        from .._run.estimator import PCA
        from .._run.settings import Execution

        return cls(PCA(execution=Execution(progress=not quiet)))
