"""The before/after picture: input, output and their difference at the same zoom, with the
histograms of input and output under them and a caption naming the kernel, mode, border and
output shape. Volumes show the central slice along each axis."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from . import canvas as cv
from .colors import DIVERGING, diverging, grey

TARGET = 300  # pixels for the longest input side (2-D); volumes use 200 per slice
HIST_BINS = 64
_GREY_LUT = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def scalar_view(arr: np.ndarray, spatial_ndim: int) -> tuple[np.ndarray, str]:
    """What one panel shows of an array: (H, W[, 3]) float for RGB, else one scalar per pixel,
    and a note when channels were combined."""
    a = np.asarray(arr)
    if a.ndim == spatial_ndim:
        return a.astype(np.float64), ""
    c = a.shape[-1]
    if a.ndim != spatial_ndim + 1:
        msg = f"cannot draw an array of shape {a.shape} as a {spatial_ndim}-D image"
        raise ValueError(msg)
    if c in (3, 4) and spatial_ndim == 2 and float(np.nanmin(a)) >= 0:
        return a[..., :3].astype(np.float64), "RGB" + (" (alpha not drawn)" if c == 4 else "")
    if c == 2:
        return a[..., 0].astype(np.float64), "channel 0 of 2 (alpha not drawn)"
    if c == 1:
        return a[..., 0].astype(np.float64), ""
    return a.astype(np.float64).mean(axis=-1), f"mean of {c} channels"


def slices(a: np.ndarray, spatial_ndim: int) -> dict[str, np.ndarray]:
    """2-D: the image itself; 3-D: the central slice along each axis (z: y×x, y: z×x, x: z×y)."""
    if spatial_ndim == 2:
        return {"": a}
    cz, cy, cx = (n // 2 for n in a.shape[:3])
    return {"z": a[cz], "y": a[:, cy], "x": a[:, :, cx]}


def _colour(a: np.ndarray, signed: bool, lo: float, hi: float) -> np.ndarray:
    if signed:
        return diverging(a, hi)
    if a.ndim == 3:  # RGB: scale every channel alike
        idx = np.clip(np.rint((a - lo) / (hi - lo if hi > lo else 1.0) * 255), 0, 255)
        return np.nan_to_num(idx).astype(np.uint8)
    return grey(a, lo, hi)


def _picture(data: np.ndarray, rgb: np.ndarray, zoom: float, name: str, lo: float, hi: float) -> cv.Block:
    h, w = data.shape[:2]
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    resample = Image.Resampling.NEAREST if zoom >= 1 else Image.Resampling.BOX
    img = Image.fromarray(np.ascontiguousarray(rgb)).resize(size, resample)
    return cv.Block(img, {name: cv.Panel((0, 0, size[0], size[1]), data, lo, hi)})


def _pictures(data: np.ndarray, spatial_ndim: int, zoom: float, name: str, lo: float, hi: float,
              colour: Callable[[np.ndarray], np.ndarray]) -> list[cv.Block]:  # fmt: skip
    """One picture (2-D) or the central slice along each axis (3-D), titled with its index."""
    pics = []
    for ax, sl in slices(data, spatial_ndim).items():
        pic = _picture(sl, colour(sl), zoom, f"{name}_{ax}" if ax else name, lo, hi)
        pics.append(cv.titled(pic, f"central {ax} slice ({ax} = {data.shape['zyx'.index(ax)] // 2})", cv.SMALL) if ax else pic)
    return pics


def _histogram(values: np.ndarray, lo: float, hi: float, lut: np.ndarray, width: int, name: str) -> cv.Block:
    """Bars (log counts, so tails stay visible) over the same range the panel's colours use,
    with the colour map as the x axis."""
    v = values[np.isfinite(values)].ravel()
    hi_ = hi if hi > lo else lo + 1.0
    counts, _ = np.histogram(v, bins=HIST_BINS, range=(lo, hi_))
    plot_h, strip = 70, 8
    bar = cv.colour_bar(lut, lo, hi_, width, ticks=[lo, (lo + hi_) / 2, hi_], height=strip)
    img, draw = cv.new(bar.size[0], plot_h + 2)
    ox = (bar.size[0] - width) // 2
    heights = np.log1p(counts) / (np.log1p(counts.max()) or 1.0) * plot_h
    for b, hgt in enumerate(heights):
        x0 = ox + b * width / HIST_BINS
        x1 = ox + (b + 1) * width / HIST_BINS - 1
        if hgt > 0:
            draw.rectangle((x0, plot_h - hgt + 1, max(x0, x1), plot_h), fill=(70, 70, 70))
    draw.line((ox, plot_h + 1, ox + width - 1, plot_h + 1), fill=cv.MUTED)
    block = cv.stack([cv.Block(img, {name: cv.Panel((ox, 0, ox + width, plot_h), counts[None, :], lo, hi_)}), bar],
                     vertical=True, gap=0)  # fmt: skip
    return block


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def compare_figure(before: np.ndarray, after: np.ndarray, *, spatial_ndim: int = 2, caption: str = "") -> cv.Figure:
    """The picture ``convcli apply ... --compare FILE`` writes.

    ``before`` is the input and ``after`` the written output, channels last. Input and output share
    one grey scale (0 to the larger maximum) when both are non-negative; a signed output, and the
    difference ``after - before``, use the diverging map symmetric around 0. The difference needs
    equal shapes (stride, ``valid`` padding or a filter bank change the shape: then the panel
    says so).
    """
    if spatial_ndim not in (2, 3):
        msg = f"spatial_ndim must be 2 or 3, got {spatial_ndim}"
        raise ValueError(msg)
    a, a_note = scalar_view(before, spatial_ndim)
    b, b_note = scalar_view(after, spatial_ndim)
    finite = [x[np.isfinite(x)] for x in (a, b)]
    mins = [float(f.min()) if f.size else 0.0 for f in finite]
    maxs = [float(f.max()) if f.size else 0.0 for f in finite]
    a_signed, b_signed = mins[0] < 0, mins[1] < 0
    if not a_signed and not b_signed:
        scales = [(0.0, max(maxs) or 1.0)] * 2
    else:
        scales = [(-m, m) if s else (0.0, maxs[i] or 1.0)
                  for i, (s, m) in enumerate(((a_signed, max(abs(mins[0]), abs(maxs[0]))), (b_signed, max(abs(mins[1]), abs(maxs[1])))))]  # fmt: skip
    diff = None
    if a.shape == b.shape:
        diff = b - a
        if diff.ndim > spatial_ndim:  # RGB: one signed number per pixel
            diff = diff.mean(axis=-1)
        dmax = float(np.nanmax(np.abs(diff))) if diff.size else 0.0
        dmax = dmax or 1.0  # all-zero difference: every pixel at the map's grey centre
    longest = max(a.shape[:spatial_ndim])
    zoom = (TARGET if spatial_ndim == 2 else 200) / longest

    columns: list[cv.Block] = []
    specs = [("input", a, a_signed, scales[0], f"input {_shape(np.shape(before))} {np.asarray(before).dtype}", a_note),
             ("output", b, b_signed, scales[1], f"output {_shape(np.shape(after))} {np.asarray(after).dtype}", b_note)]  # fmt: skip
    for name, data, signed, (lo, hi), title, note in specs:
        def colour(sl: np.ndarray, signed: bool = signed, lo: float = lo, hi: float = hi) -> np.ndarray:
            return _colour(sl, signed, lo, hi)

        pics = _pictures(data, spatial_ndim, zoom, name, lo, hi, colour)
        lut = DIVERGING if signed else _GREY_LUT
        hist = cv.titled(_histogram(data, lo, hi, lut, 200, f"hist_{name}"), f"{name} histogram (log counts)", cv.SMALL)
        sub = "; ".join(x for x in (note, "signed: symmetric around 0" if signed else "") if x)
        columns.append(cv.titled(cv.stack(pics + [hist], vertical=True, gap=10), title, cv.LABEL, sub))
    if diff is not None:
        pics = _pictures(diff, spatial_ndim, zoom, "difference", -dmax, dmax, lambda sl: diverging(sl, dmax))
        bar = cv.colour_bar(DIVERGING, -dmax, dmax, 200, "output - input")
        sub = "symmetric around 0: grey = unchanged" + ("; mean over RGB" if a.ndim > spatial_ndim else "")
        columns.append(cv.titled(cv.stack(pics + [bar], vertical=True, gap=10), "difference (output - input)", cv.LABEL, sub))
    else:
        why = (f"no difference panel: the output's shape {_shape(b.shape)} differs from the input's "
               f"{_shape(a.shape)} (stride, padding or channels)")  # fmt: skip
        columns.append(cv.text_block(why, cv.LABEL, 200, cv.MUTED))
    body = cv.stack(columns, vertical=False, gap=24)
    width = body.size[0]
    head = cv.text_block(caption or "before / after", cv.TITLE, width)
    zoom_note = cv.text_block(f"all panels at the same zoom ({zoom:.3g}× the input's pixels)", cv.SMALL, width, cv.MUTED)
    full = cv.pad(cv.stack([head, zoom_note, body], vertical=True, gap=8), 16)
    return cv.Figure(full.image, full.panels, caption)
