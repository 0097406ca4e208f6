"""Terminal pictures: a one-line unicode-block histogram and kernel matrices coloured by sign and
magnitude with rich (the same diverging map as the PNGs; ``NO_COLOR`` leaves the plain numbers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .colors import diverging, text_colour

if TYPE_CHECKING:
    from rich.text import Text

BLOCKS = " ▁▂▃▄▅▆▇█"


def histogram_counts(values: np.ndarray, bins: int = 24) -> tuple[np.ndarray, float, float]:
    """Counts over the finite values' range, with that range."""
    values = np.asarray(values)
    if values.dtype.kind in "ui" and values.dtype.itemsize <= 2:  # via each value's count: 10x faster
        lowest = int(np.iinfo(values.dtype).min)
        per_value = np.bincount(values.ravel().astype(np.int32) - lowest)
        seen = np.flatnonzero(per_value)
        if seen.size == 0:
            return np.zeros(bins, dtype=np.int64), 0.0, 0.0
        lo, hi = float(seen[0] + lowest), float(seen[-1] + lowest)
        levels = np.arange(per_value.size, dtype=np.float64) + lowest
        counts, _ = np.histogram(levels, bins=bins, range=(lo, hi if hi > lo else lo + 1.0), weights=per_value)
        return counts.astype(np.int64), lo, hi
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(bins, dtype=np.int64), 0.0, 0.0
    lo, hi = float(v.min()), float(v.max())
    big = np.finfo(np.float64).max / 8
    scale = 1.0 if np.isfinite(hi - lo) and max(abs(lo), abs(hi)) < big else 0.125  # (near 1e308 the width overflows)
    a, b = lo * scale, hi * scale
    # bins at least a few float steps wide: a constant 1e17 image has no lo + 1.0, and numpy refuses
    # bins narrower than the values' spacing
    width = max(b - a, 1.0 if b == a else 0.0, float(np.spacing(max(abs(a), abs(b)))) * 4 * bins)
    counts, _ = np.histogram(v * scale if scale != 1.0 else v, bins=bins, range=(a, a + width))
    return counts, lo, hi


def histogram_blocks(values: np.ndarray, bins: int = 24) -> str:
    """``▁▃█▆▂ ▁``: one character per bin of the values' histogram."""
    return blocks(histogram_counts(values, bins)[0])


def blocks(counts: np.ndarray | tuple[int, ...]) -> str:
    """One character per count, height by the square root (so small bins still show); an empty
    bin is a space, a non-empty one at least ``▁``."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0 or counts.max() == 0:
        return " " * counts.size
    levels = np.sqrt(counts / counts.max()) * (len(BLOCKS) - 1)
    idx = np.where(counts > 0, np.maximum(np.ceil(levels - 1e-9), 1), 0).astype(int)
    return "".join(BLOCKS[i] for i in idx)


def cell_width(array: np.ndarray, digits: int = 6) -> int:
    """Characters of the widest value as :func:`kernel_text` writes it."""
    return max(len(f"{v:.{digits}g}") for v in np.asarray(array, dtype=np.float64).ravel())


def _hex(rgb: tuple[int, ...]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def kernel_text(array: np.ndarray, vmax: float | None = None, width: int | None = None, digits: int = 6) -> Text:
    """A rich ``Text`` of a 1-D/2-D kernel: right-aligned values, each on its diverging-map colour
    (dark blue negative, grey zero, light yellow positive; ``vmax`` sets the scale, by default the
    largest magnitude), black or white for contrast. ``width`` (characters per value) lines up the
    planes of a 3-D kernel; ``digits`` are the significant digits written."""
    from rich.text import Text

    a = np.atleast_2d(np.asarray(array, dtype=np.float64))
    vmax = vmax or float(np.abs(a).max()) or 1.0
    cells = [[f"{v:.{digits}g}" for v in row] for row in a]  # the format cell_width measures
    width = max([len(c) for row in cells for c in row] + [width or 0])
    colours = diverging(a, vmax)
    out = Text(no_wrap=True, overflow="ignore")  # a matrix row never wraps into the next
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            bg = _hex(tuple(int(c) for c in colours[i, j]))
            fg = _hex(text_colour(colours[i, j]))
            out.append(" " + cell.rjust(width) + " ", style=f"{fg} on {bg}")
        if i < len(cells) - 1:
            out.append("\n")
    return out
