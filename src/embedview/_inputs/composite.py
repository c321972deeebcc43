"""Several inputs as one source, so one pipeline draws one input or many.

:class:`Inputs` holds the opened sources; its pieces are theirs, each tagged with the number of
its input (:attr:`Piece.input`), so executors read, fit and project them in one stream and sinks
route each projected piece to its input's output.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .._common.errors import EmbedviewError, api_only
from .sources import Piece, Source, open_source


class Inputs:
    """The sources ``sources`` (one or more, same number of channels) read as one.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = (open_source(rng.normal(size=(1, 8, 64, 64)).astype(np.float32), (64, 64)) for _ in range(2))
    >>> inputs = Inputs([a, b])
    >>> [p.input for p in inputs.pieces()], inputs.n_channels
    ([0, 1], 8)
    """

    def __init__(self, sources: list[Source]):
        self.sources = list(sources)
        self._scale = None
        self.n_channels = self.sources[0].n_channels
        self.offsets, self._pieces = [], []
        for i, src in enumerate(self.sources):
            self.offsets.append(len(self._pieces))
            self._pieces += src.pieces() if i == 0 else [replace(p, input=i) for p in src.pieces()]

    @property
    def name(self) -> str:
        return ", ".join(str(s.name) for s in self.sources)

    def pieces(self) -> list[Piece]:
        """Every input's pieces, input by input."""
        return list(self._pieces)

    def local_index(self, index: int, piece: Piece) -> int:
        """The number of piece ``index`` (of :meth:`pieces`) within its own input."""
        return index - self.offsets[piece.input]

    def name_of(self, piece: Piece) -> str:
        return self.sources[piece.input].name

    @property
    def feature_scale(self) -> float:
        """The first input's (:attr:`Source.feature_scale`), or the one given to :meth:`use_feature_scale`:
        one scale for every input, so one fit holds them all."""
        return self._scale if self._scale is not None else self.sources[0].feature_scale

    def use_feature_scale(self, scale: float) -> None:
        """Read every input with ``scale`` (a fitted basis's :attr:`~embedview._model.fit.Basis.feature_scale`)."""
        self._scale = float(scale)

    def read(self, piece: Piece) -> np.ndarray:
        return self.sources[piece.input].read(piece, self.feature_scale)

    read_each = Source.read_each  # read-ahead crosses the inputs


def open_inputs(sources, original_size=None) -> Inputs:
    """Open each of ``sources`` (as :func:`open_source` does) and check they share one model."""
    opened = [open_source(s, original_size) for s in sources]
    if not opened:
        raise EmbedviewError("no embeddings given; pass at least one.")
    channels = {s.n_channels for s in opened}
    if len(channels) > 1:
        names = ", ".join(f"{s.name} ({s.n_channels})" for s in opened)
        raise EmbedviewError(
            f"the embeddings have different numbers of channels: {names}; one basis needs one model, "
            f"so fit each model's embeddings on their own{api_only(' (a PCA each)')}.")
    return Inputs(opened)
