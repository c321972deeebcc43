"""Legends drawn on figures, in numpy and Pillow: text strips, a colour bar, query marks, and
the one explained-variance text (the figure's label and the napari widget's).

Everything here draws on uint8 ``(H, W, 3)`` arrays; the figures' layout is the caller's.
"""

from __future__ import annotations

import numpy as np

#: The query mark's colour: a light blue that no colour of the similarity ramp comes near, with
#: a black rim so that it stays visible on light and dark pixels alike.
MARK = (0, 200, 255)
MARK_RIM = (0, 0, 0)
#: Pixels above and below a line of text.
PAD = 3


def variance_text(explained: list[list[float]], components=None, sep: str = "\n") -> str:
    """The explained variance ratio of the drawn components, as a legend.

    Parameters
    ----------
    explained : list of list of float
        Per basis (one for a joint fit, one per slice for ``fit="per_slice"``) the ratio of
        each drawn component, in red, green, blue order; several rows are averaged.
    components : sequence of int, optional
        The components drawn (0-based); named ``PC1``... in the text when given.
    sep : str
        Between the lines (the widget's label has three; a figure's one line uses ``"  "``).

    Examples
    --------
    >>> variance_text([[0.412, 0.201, 0.093]])
    'R 41.2%, G 20.1%, B 9.3%\\n(sum 70.6%)'
    >>> variance_text([[0.412, 0.12, 0.075]], components=(0, 1, 2), sep="  ")
    'R: PC1 41.2%, G: PC2 12.0%, B: PC3 7.5%  (sum 60.7%)'
    >>> print(variance_text([[0.4, 0.2, 0.1], [0.5, 0.1, 0.1]]))
    mean of 2 slices:
    R 45.0%, G 15.0%, B 10.0%
    (sum 70.0%)
    """
    rows = len(explained)
    means = [sum(col) / rows for col in zip(*explained)]
    channels = "RGB" if len(means) > 1 else ["grey"]
    names = [f"{c}: PC{k + 1}" for c, k in zip(channels, components)] if components is not None else channels
    parts = ", ".join(f"{c} {100 * v:.1f}%" for c, v in zip(names, means))
    head = f"mean of {rows} slices:{sep}" if rows > 1 else ""
    return f"{head}{parts}{sep}(sum {100 * sum(means):.1f}%)"


def font_size(width: int) -> int:
    """A readable text size (pixels) for a figure ``width`` pixels wide: 11 to 24.

    Examples
    --------
    >>> font_size(286), font_size(2048)
    (11, 24)
    """
    return int(min(24, max(11, width // 60)))


def load_font(size: int):
    """Pillow's scalable default font at ``size`` (Pillow ≥ 10.1), else its bitmap default."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):  # older Pillow, or no FreeType
        return ImageFont.load_default()


def _bbox(text: str, font) -> tuple[int, int, int, int]:
    if hasattr(font, "getbbox"):
        return tuple(int(v) for v in font.getbbox(text))
    width, height = font.getsize(text)  # the bitmap font of Pillow < 9.2
    return 0, 0, int(width), int(height)


def text_width(text: str, font) -> int:
    """Width of ``text`` drawn in ``font``, in pixels."""
    left, _, right, _ = _bbox(text, font)
    return right - left


def line_height(font) -> int:
    """Height of one line of ``font`` with :data:`PAD` above and below."""
    _, top, _, bottom = _bbox("Ag0%", font)
    return bottom + 2 * PAD - min(0, top)


def text_strip(text: str, width: int, font) -> np.ndarray:
    """A white strip ``width`` wide holding ``text`` (one line per ``\\n``, long lines wrapped by
    :func:`wrap`), left-aligned in black.

    Examples
    --------
    >>> strip = text_strip("R: PC1 41.2%", 200, load_font(11))
    >>> strip.shape[1], bool((strip < 128).any())
    (200, True)
    """
    from PIL import Image, ImageDraw

    lines = [wrapped for line in text.split("\n") for wrapped in wrap(line, width - 2 * PAD, font)]
    step = line_height(font)
    image = Image.new("RGB", (int(width), step * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((PAD, i * step + PAD), line, fill=(0, 0, 0), font=font)
    return np.asarray(image).copy()


def wrap(line: str, width: int, font) -> list[str]:
    """``line`` in pieces at most ``width`` pixels wide, broken after a comma or at a double space
    (so that ``R: PC1 41.2%`` stays together); a piece wider on its own stays whole.

    Examples
    --------
    >>> wrap("R: PC1 41.2%, G: PC2 12.0%  (sum 53.2%)", 150, load_font(11))
    ['R: PC1 41.2%, G: PC2 12.0%', '(sum 53.2%)']
    """
    import re

    tokens = re.split(r"((?<=,) | {2})", line)  # pieces, with the separator before each after the first
    lines = [tokens[0]]
    for sep, piece in zip(tokens[1::2], tokens[2::2]):
        if text_width(lines[-1] + sep + piece, font) <= width:
            lines[-1] += sep + piece
        else:
            lines.append(piece)
    return lines


def colour_bar(colours: np.ndarray, ticks: list[tuple[int, str]], width: int, x0: int, font,
               height: int = 12, caption: str = "") -> np.ndarray:
    """A white strip ``width`` wide holding a colour bar and its tick labels.

    Parameters
    ----------
    colours : uint8 ndarray, shape (n, 3)
        Column ``i`` of the bar is ``colours[i]``; the bar spans strip columns ``x0 … x0 + n - 1``.
    ticks : list of (int, str)
        Bar columns (0 … n - 1) marked with a short tick and their label, centred under it (kept
        inside the strip).
    width, x0 : int
        The strip's width and where the bar starts in it.
    font
        A Pillow font (:func:`load_font`).
    height : int
        The bar's height in pixels.
    caption : str
        Written right of the bar, where there is room.

    Returns
    -------
    uint8 ndarray, shape (PAD + height + 3 + line, width, 3)
        The bar occupies rows ``PAD … PAD + height - 1``.

    Examples
    --------
    >>> bar = colour_bar(np.zeros((50, 3), np.uint8), [(0, "0"), (49, "1")], 60, 5, load_font(11))
    >>> bar.shape[1], bool((bar[PAD:PAD + 12, 5:55] == 0).all())
    (60, True)
    """
    from PIL import Image, ImageDraw

    n = len(colours)
    strip = np.full((PAD + height + 3 + line_height(font), int(width), 3), 255, np.uint8)
    strip[PAD:PAD + height, x0:x0 + n] = colours[None]
    image = Image.fromarray(strip)
    draw = ImageDraw.Draw(image)
    for column, label in ticks:
        x = x0 + int(column)
        draw.line([(x, PAD + height), (x, PAD + height + 2)], fill=(0, 0, 0))
        w = text_width(label, font)
        left = min(max(0, x - w // 2), int(width) - w - 1)
        draw.text((left, PAD + height + 3 + PAD), label, fill=(0, 0, 0), font=font)
    if caption and x0 + n + 2 * PAD + text_width(caption, font) < width:
        draw.text((x0 + n + 2 * PAD, PAD), caption, fill=(0, 0, 0), font=font)
    return np.asarray(image).copy()


def mark_point(rgb: np.ndarray, y: int, x: int, arm: int) -> None:
    """Draw a ``+`` of :data:`MARK` centred on pixel ``(y, x)`` of ``rgb`` (in place), arms
    ``arm`` pixels long, rimmed with :data:`MARK_RIM`; clipped at the edges.

    Examples
    --------
    >>> rgb = np.zeros((9, 9, 3), np.uint8)
    >>> mark_point(rgb, 4, 4, 2)
    >>> [tuple(int(v) for v in np.argwhere((rgb == MARK).all(-1)).mean(0))], int((rgb == MARK).all(-1).sum())
    ([(4, 4)], 9)
    """
    h, w = rgb.shape[:2]
    cross = np.zeros((h, w), bool)
    cross[max(0, y - arm):y + arm + 1, x] = True
    cross[y, max(0, x - arm):x + arm + 1] = True
    rim = _grow(cross) & ~cross
    rgb[rim] = MARK_RIM
    rgb[cross] = MARK


def mark_outline(rgb: np.ndarray, inside: np.ndarray) -> None:
    """Draw the outline of the bool region ``inside`` (its pixels next to the outside) in :data:`MARK`
    on ``rgb`` (in place)."""
    edge = inside & _grow(~inside, border=True)
    rgb[edge] = MARK


def _grow(region: np.ndarray, border: bool = False) -> np.ndarray:
    """``region`` and its 8 neighbours (``border``: the outside of the array counts as in)."""
    padded = np.pad(region, 1, constant_values=border)
    out = np.zeros_like(region)
    h, w = region.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= padded[dy:dy + h, dx:dx + w]
    return out
