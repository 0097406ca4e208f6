"""Drawing primitives on Pillow: the bundled font, text, colour bars, axes and line plots.

Every figure is assembled from these, with fixed font sizes so labels stay legible whatever the
kernel or image size. Pillow's bundled font (``ImageFont.load_default(size=...)``, Pillow >= 10.1)
needs no system fonts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colors import text_colour

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (90, 90, 90)
GRID = (205, 205, 205)
TITLE, LABEL, SMALL = 15, 12, 11  # font sizes (px)


# the bundled font lacks these glyphs; a plain spelling beats a box
_PLAIN = {"×": "x", "−": "-", "→": "->", "←": "<-", "≈": "~", "²": "^2", "³": "^3", "σ": "sigma", "Δ": "d", "⊗": "(x)"}


@cache
def _has_glyph(ch: str) -> bool:
    f = font(LABEL)
    return ch.isascii() or bytes(f.getmask(ch)) != bytes(f.getmask("\U0010fffd"))


def plain(s: str) -> str:
    """``s`` with every character the bundled font cannot draw spelled plainly (or as ``?``)."""
    return "".join(ch if _has_glyph(ch) else _PLAIN.get(ch, "?") for ch in s)


_fonts = threading.local()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px; one per thread, since ``apply --jobs`` draws
    comparisons on several threads and a FreeType face is not safe to share between them."""
    cached: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = _fonts.__dict__.setdefault("by_size", {})
    if size not in cached:
        cached[size] = ImageFont.load_default(size=size)
    return cached[size]


def text_width(text: str, size: int) -> float:
    return float(font(size).getlength(plain(text)))


@dataclass
class Panel:
    """Where one panel's data sits in the figure and the numbers drawn there.

    ``data`` is the 2-D grid as displayed (row 0 at the top); ``box`` is its pixel rectangle
    ``(x0, y0, x1, y1)`` (x1, y1 exclusive), so cell ``(i, j)`` covers
    ``x0 + j*w/cols .. x0 + (j+1)*w/cols`` and likewise in y.
    """

    box: tuple[int, int, int, int]
    data: np.ndarray
    lo: float
    hi: float
    note: str = ""

    def cell_box(self, i: int, j: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = self.box
        rows, cols = self.data.shape[:2]
        return (x0 + (x1 - x0) * j // cols, y0 + (y1 - y0) * i // rows,
                x0 + (x1 - x0) * (j + 1) // cols, y0 + (y1 - y0) * (i + 1) // rows)  # fmt: skip

    def offset(self, dx: int, dy: int) -> Panel:
        x0, y0, x1, y1 = self.box
        return Panel((x0 + dx, y0 + dy, x1 + dx, y1 + dy), self.data, self.lo, self.hi, self.note)


@dataclass
class Figure:
    """A rendered picture and, per panel name, the numbers it shows and where."""

    image: Image.Image
    panels: dict[str, Panel]
    caption: str

    def png(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


@dataclass
class Block:
    """A piece of a figure under construction: its image and the panels inside it."""

    image: Image.Image
    panels: dict[str, Panel] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def new(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (max(width, 1), max(height, 1)), BACKGROUND)
    return img, ImageDraw.Draw(img)


def text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], s: str, size: int = LABEL,
         fill: tuple[int, int, int] = INK, anchor: str = "la") -> None:  # fmt: skip
    draw.text(xy, plain(s), font=font(size), fill=fill, anchor=anchor)


def wrap(s: str, size: int, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (long captions fold instead of being clipped)."""
    lines: list[str] = []
    for para in plain(s).split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if line and text_width(trial, size) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def text_block(s: str, size: int, width: int, fill: tuple[int, int, int] = INK) -> Block:
    lines = wrap(s, size, width)
    step = size + 4
    img, draw = new(width, step * len(lines) + 4)
    for i, line in enumerate(lines):
        text(draw, (0, 2 + i * step), line, size, fill)
    return Block(img)


def stack(blocks: list[Block], *, vertical: bool, gap: int = 12, align: str = "start") -> Block:
    """Place blocks one after the other, offsetting the panels they carry."""
    blocks = [b for b in blocks if b is not None]
    if vertical:
        w = max(b.size[0] for b in blocks)
        h = sum(b.size[1] for b in blocks) + gap * (len(blocks) - 1)
    else:
        w = sum(b.size[0] for b in blocks) + gap * (len(blocks) - 1)
        h = max(b.size[1] for b in blocks)
    img, _ = new(w, h)
    panels: dict[str, Panel] = {}
    pos = 0
    for b in blocks:
        bw, bh = b.size
        if vertical:
            dx, dy = ((w - bw) // 2 if align == "center" else 0), pos
            pos += bh + gap
        else:
            dx, dy = pos, ((h - bh) // 2 if align == "center" else 0)
            pos += bw + gap
        img.paste(b.image, (dx, dy))
        panels.update({k: p.offset(dx, dy) for k, p in b.panels.items()})
    return Block(img, panels)


def pad(block: Block, margin: int) -> Block:
    w, h = block.size
    img, _ = new(w + 2 * margin, h + 2 * margin)
    img.paste(block.image, (margin, margin))
    return Block(img, {k: p.offset(margin, margin) for k, p in block.panels.items()})


def titled(block: Block, title: str, size: int = LABEL, subtitle: str = "") -> Block:
    """A title (and an optional muted subtitle) above a block, wrapped to the block's width."""
    w = max(block.size[0], 120)
    parts = [text_block(title, size, w)]
    if subtitle:
        parts.append(text_block(subtitle, SMALL, w, MUTED))
    return stack(parts + [block], vertical=True, gap=2)


def fmt(v: float) -> str:
    """A short label for a value: 3 significant digits, no "-0"."""
    if v == 0 or abs(v) < 1e-12:
        return "0"
    s = f"{v:.3g}"
    return s.replace("e-0", "e-").replace("e+0", "e")


def grid_image(rgb: np.ndarray, cell: int) -> Image.Image:
    """An (h, w, 3) uint8 array drawn with every element as a ``cell``-pixel square."""
    big = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    return Image.fromarray(np.ascontiguousarray(big))


def cell_labels(img: Image.Image, values: np.ndarray, rgb: np.ndarray, cell: int, size: int) -> None:
    """Write each value in its cell, black or white for contrast."""
    draw = ImageDraw.Draw(img)
    for (i, j), v in np.ndenumerate(values):
        text(draw, (j * cell + cell / 2, i * cell + cell / 2), fmt(float(v)), size, text_colour(rgb[i, j]), "mm")


def label_size(values: np.ndarray, cell: int, sizes: tuple[int, ...] = (13, 12, 11, 10)) -> int | None:
    """The largest font size at which every value fits its cell, or None (then no values)."""
    if cell < 14:
        return None
    labels = {fmt(float(v)) for v in np.unique(values)}
    for s in sizes:
        if max(text_width(label, s) for label in labels) + 4 <= cell and s + 2 <= cell:
            return s
    return None


def colour_bar(lut: np.ndarray, lo: float, hi: float, width: int, label: str = "", *,
               ticks: list[float] | None = None, height: int = 10) -> Block:  # fmt: skip
    """A horizontal bar of the colour map with tick values under it."""
    idx = np.linspace(0, 255, width).round().astype(int)
    strip = np.repeat(lut[idx][None], height, axis=0)
    tick_h, lab_h = 4, (LABEL + 6 if label else 0)
    ticks = ticks if ticks is not None else [lo, (lo + hi) / 2, hi]
    ox = int(max(text_width(fmt(t), SMALL) for t in ticks) / 2) + 4  # room for the end labels
    img, draw = new(max(width + 2 * ox, ox + int(text_width(label, SMALL)) + 4), height + tick_h + SMALL + 4 + lab_h)
    img.paste(Image.fromarray(strip), (ox, 0))
    draw.rectangle((ox, 0, ox + width - 1, height - 1), outline=MUTED)
    for t in ticks:
        x = ox + (t - lo) / (hi - lo if hi > lo else 1) * (width - 1)
        draw.line((x, height, x, height + tick_h), fill=MUTED)
        text(draw, (x, height + tick_h + 1), fmt(t), SMALL, INK, "ma")
    if label:
        text(draw, (ox, height + tick_h + SMALL + 5), label, SMALL, MUTED, "la")
    return Block(img)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = np.ceil(lo / step - 1e-9) * step
    return [float(t) for t in np.arange(first, hi + step * 1e-6, step)]


def vertical_label(img: Image.Image, label: str, y_centre: float) -> None:
    """An axis label turned 90° (read bottom to top) at the left edge of ``img``."""
    rot, rdraw = new(int(text_width(label, SMALL)) + 4, SMALL + 4)
    text(rdraw, (2, 1), label, SMALL, MUTED)
    rot = rot.rotate(90, expand=True)
    img.paste(rot, (0, max(0, int(y_centre - rot.size[1] / 2))))


def dashes(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], colour: tuple[int, int, int],
           on: float = 6.0, off: float = 4.0) -> None:  # fmt: skip
    """A dashed polyline, dashes measured along its length (steep parts dash like flat ones)."""
    phase = 0.0  # distance into the current on+off period
    for (xa, ya), (xb, yb) in pairwise(pts):
        seg = float(np.hypot(xb - xa, yb - ya))
        pos = 0.0
        while pos < seg:
            in_on = phase < on
            step = min(seg - pos, (on - phase) if in_on else (on + off - phase))
            if in_on and step > 0:
                t0, t1 = pos / seg, (pos + step) / seg
                draw.line((xa + (xb - xa) * t0, ya + (yb - ya) * t0, xa + (xb - xa) * t1, ya + (yb - ya) * t1), fill=colour, width=2)
            pos += step
            phase = (phase + step) % (on + off)
            if step <= 0:
                break


def line_plot(series: list[tuple[str, np.ndarray, np.ndarray, tuple[int, int, int], bool]],
              xlim: tuple[float, float], ylim: tuple[float, float], size: tuple[int, int], *,
              xlabel: str, ylabel: str, xticks: list[float], yticks: list[float]) -> Block:  # fmt: skip
    """Axes with lines ``(label, x, y, colour, dashed)``; values outside ``ylim`` are clipped to
    its edges. The panel ``plot`` carries the plotting rectangle and the data of the first line."""
    pw, ph = size
    left, bottom, right = 44, 34, 10
    top = 8 + (SMALL + 4) * len(series)
    img, draw = new(pw + left + right, ph + top + bottom)
    x0, y0 = left, top

    def px(x: np.ndarray) -> np.ndarray:
        return x0 + (np.asarray(x, dtype=float) - xlim[0]) / (xlim[1] - xlim[0]) * (pw - 1)

    def py(y: np.ndarray) -> np.ndarray:
        y = np.clip(np.asarray(y, dtype=float), ylim[0], ylim[1])
        return y0 + (ylim[1] - y) / (ylim[1] - ylim[0]) * (ph - 1)

    for t in yticks:
        y = float(py(np.array(t)))
        draw.line((x0, y, x0 + pw - 1, y), fill=GRID)
        text(draw, (x0 - 4, y), fmt(t), SMALL, INK, "rm")
    for t in xticks:
        x = float(px(np.array(t)))
        draw.line((x, y0, x, y0 + ph - 1), fill=GRID)
        text(draw, (x, y0 + ph + 3), fmt(t), SMALL, INK, "ma")
    draw.rectangle((x0, y0, x0 + pw - 1, y0 + ph - 1), outline=MUTED)
    for _label, xs, ys, colour, dashed in series:
        pts = list(zip(px(xs).tolist(), py(ys).tolist()))
        if dashed:  # dashes keep the two lines apart in greyscale, where colour is lost
            dashes(draw, pts, colour)
        else:
            draw.line(pts, fill=colour, width=2)
    text(draw, (x0 + pw / 2, y0 + ph + SMALL + 6), xlabel, SMALL, MUTED, "ma")
    ly = 2
    for label, _xs, _ys, colour, dashed in series:  # legend above the axes, clear of the lines
        lx = x0 + 30
        for k in range(0, 18, 6 if dashed else 18):
            draw.line((lx - 24 + k, ly + 6, lx - 24 + k + (3 if dashed else 18), ly + 6), fill=colour, width=2)
        text(draw, (lx, ly), label, SMALL, INK)
        ly += SMALL + 4
    vertical_label(img, ylabel, y0 + ph / 2)
    first = series[0]
    return Block(img, {"plot": Panel((x0, y0, x0 + pw, y0 + ph), np.atleast_2d(first[2]), ylim[0], ylim[1])})
