"""The one exception type for bad input, and how its messages name parameters.

A message is written once, for every front-end: where it names a parameter it writes
``arg("pixel_size", 0)`` (or ``arg("image_size", form="H,W")``, or a bare ``arg("patch_size")``)
inside its f-string. ``str(err)`` reads it in the API's terms (``pixel_size=0``); the command line
renders the same reference as its flag (``--pixel-size 0``, through :meth:`EmbedviewError.render`
and the parser's own table). Advice that only the API can follow (a parameter without a flag)
is wrapped in :func:`api_only`, which the command line leaves out.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

# A reference travels inside the message text between these separators (control characters
# that ``repr`` never writes), so f-strings stay as they are at the raise sites.
_ARG, _FIELD, _API_ONLY = "\x1f", "\x1e", "\x1d"
_NO_VALUE = object()


class Arg(NamedTuple):
    """A parameter named in a message: its API name, how the API writes it, the command's value text."""

    name: str
    api: str  # "pixel_size=0", "image_size=(H, W)", "patch_size="
    value: str | None  # the value as typed on a command line ("0,1,7"), None for a bare reference


def arg(name: str, value=_NO_VALUE, *, form: str | None = None) -> str:
    """A reference to parameter ``name`` inside a message (see the module's docstring).

    Parameters
    ----------
    name : str
        The API's parameter name.
    value : optional
        The value given (``rgb_components=[0, 1, 7]``) or advised (``prefix_tokens=1``).
    form : str, optional
        Instead of a value, its shape in words, items separated by commas (``"H,W"``).

    Examples
    --------
    >>> str(EmbedviewError(f"{arg('rgb_components', [0, 1, 7])} must name one to three; pass {arg('image_size', form='H,W')}."))
    'rgb_components=[0, 1, 7] must name one to three; pass image_size=(H, W).'
    """
    if form is not None:
        items = form.split(",")
        api, cli = "(" + ", ".join(items) + ")" if len(items) > 1 else form, form
    elif value is _NO_VALUE:
        api, cli = "", None
    else:
        api, cli = repr(value), _command_line_value(value)
    fields = [name, f"{name}={api}"] + ([] if cli is None else [printable(cli)])
    return _ARG + _FIELD.join(fields) + _ARG


def api_only(text: str) -> str:
    """Advice (``text``, which may hold :func:`arg` references) that the command line leaves out."""
    return f"{_API_ONLY}{text}{_API_ONLY}"


def _command_line_value(value) -> str:
    """``[0, 1, 7]`` → ``0,1,7``; ``'cuda'`` → ``cuda``; ``True`` → ```` (a switch)."""
    if value is True:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(_command_line_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def printable(text: str) -> str:
    """``text`` with control characters escaped, so what a file says cannot forge lines or
    move a terminal's cursor.

    Examples
    --------
    >>> printable("a\\nb\\x1b[2Jc\\tok")
    'a\\\\nb\\\\x1b[2Jc\\\\tok'
    """
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


class EmbedviewError(ValueError):
    """Raised for input that embedview cannot use.

    The message is one sentence: what was wrong and what to do instead. The
    command line prints it without a traceback and exits with status 2.

    Parameters
    ----------
    message : str
        The sentence; parameters named through :func:`arg`.
    param : str, optional
        The parameter that was wrong (default: the first one the message names with a value).

    Examples
    --------
    >>> import numpy as np, embedview
    >>> try:
    ...     embedview.visualize(np.zeros((2, 3)), original_size=(10, 10))
    ... except embedview.EmbedviewError as err:
    ...     print("refused")
    refused
    >>> err = EmbedviewError(f"{arg('pixel_size', 0)} must be positive.")
    >>> err.param, str(err), err.render(lambda a: f"--{a.name.replace('_', '-')} {a.value}")
    ('pixel_size', 'pixel_size=0 must be positive.', '--pixel-size 0 must be positive.')
    """

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        named = [a for a in self.args_named() if a.value is not None]
        self.param = param if param is not None else (named[0].name if named else None)

    def __reduce__(self):  # Dask sends errors between processes: keep the parameter
        return type(self), (self.args[0],), {"param": self.param}

    def args_named(self) -> list[Arg]:
        """The parameters the message names, in order."""
        return [a for part in _parts(str(self.args[0]) if self.args else "") if isinstance(part, tuple)
                for a in part[1] if isinstance(a, Arg)]

    def render(self, flag: Callable[[Arg], str | None] | None = None) -> str:
        """The message with each named parameter written by ``flag(arg)`` (the API's ``name=value``
        where it returns None), and without :func:`api_only` advice when ``flag`` is given."""
        out = []
        for api_only_part, pieces in _parts(str(self.args[0]) if self.args else ""):
            if api_only_part and flag is not None:
                continue
            for piece in pieces:
                out.append(piece if isinstance(piece, str) else (flag and flag(piece)) or piece.api)
        return "".join(out)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _parts(message: str) -> list[tuple[bool, list]]:
    """``message`` as (is it API-only advice, [text | Arg, ...]) runs."""
    runs = []
    for i, run in enumerate(message.split(_API_ONLY)):
        pieces = []
        for j, piece in enumerate(run.split(_ARG)):
            fields = piece.split(_FIELD)
            if j % 2 and len(fields) in (2, 3) and fields[0].isidentifier():
                pieces.append(Arg(fields[0], fields[1], fields[2] if len(fields) == 3 else None))
            elif piece:
                pieces.append(piece)
        runs.append((bool(i % 2), pieces))
    return runs
