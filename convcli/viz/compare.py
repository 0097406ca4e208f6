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


def scalar_view(arr: np.ndarray, signed: bool, features: bool = False) -> tuple[np.ndarray, str]:
    """What a panel shows of one 2-D slice ``(h, w[, C])``: RGB for 3-4 non-negative channels,
    else one number per pixel (channel 0 of grey + alpha or of a filter bank's ``features``, or
    the mean of the channels), with a note when channels were combined."""
    a = np.asarray(arr)
    if features and a.ndim == 3 and a.shape[-1] > 1:  # a mean of unrelated feature maps shows nothing
        return a[..., 0].astype(np.float64), f"channel 0 of {a.shape[-1]}"
    if a.ndim == 2:
        return a.astype(np.float64), ""
    c = a.shape[-1]
    if c in (3, 4) and not signed:
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


def value_range(a: np.ndarray) -> tuple[float, float]:
    """Finite minimum and maximum without a float copy of the whole array."""
    if a.dtype.kind in "biu":
        return float(a.min()), float(a.max())
    with np.errstate(invalid="ignore"):
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    flat = a.reshape(-1)  # ±inf present (or all NaN): the finite values decide
    finite = flat[np.isfinite(flat)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


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


def _pictures(views: dict[str, np.ndarray], shape: tuple[int, ...], zoom: float, name: str, *, lo: float, hi: float,
              colour: Callable[[np.ndarray], np.ndarray]) -> list[cv.Block]:  # fmt: skip
    """One picture (2-D, key "") or the central slice along each axis of a volume of ``shape``,
    titled with its index."""
    pics = []
    for ax, sl in views.items():
        pic = _picture(sl, colour(sl), zoom, f"{name}_{ax}" if ax else name, lo, hi)
        pics.append(cv.titled(pic, f"central {ax} slice ({ax} = {shape['zyx'.index(ax)] // 2})", cv.SMALL) if ax else pic)
    return pics


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> np.ndarray:
    """``np.histogram`` over ``[lo, hi]`` (NaN and ±inf fall outside); 8/16-bit data through a
    ``bincount`` first, the same counts several times faster on a 12-megapixel photo."""
    if values.dtype in (np.uint8, np.uint16):
        flat = values.reshape(-1)
        per_value = np.zeros(256 if values.dtype == np.uint8 else 65536, dtype=np.int64)
        for i in range(0, flat.size, 1 << 22):  # bincount copies to intp: bound that copy
            per_value += np.bincount(flat[i : i + (1 << 22)], minlength=per_value.size)
        return np.histogram(np.arange(per_value.size), bins=bins, range=(lo, hi), weights=per_value)[0].astype(np.int64)
    return np.histogram(values, bins=bins, range=(lo, hi))[0]


def _histogram(values: np.ndarray, lo: float, hi: float, lut: np.ndarray, width: int, name: str) -> cv.Block:
    """Bars (log counts, so tails stay visible) over the same range the panel's colours use,
    with the colour map as the x axis."""
    hi_ = hi if hi > lo else lo + 1.0
    counts = histogram(values, lo, hi_)
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
    says so). Large images are subsampled to the drawn size before any float copy is made; the
    histograms count every value.
    """
    if spatial_ndim not in (2, 3):
        msg = f"spatial_ndim must be 2 or 3, got {spatial_ndim}"
        raise ValueError(msg)
    raw = {"input": np.asarray(before), "output": np.asarray(after)}
    for name, arr in raw.items():
        if arr.ndim not in (spatial_ndim, spatial_ndim + 1) or arr.size == 0:
            msg = f"cannot draw the {name} of shape {arr.shape} as a {spatial_ndim}-D image"
            raise ValueError(msg)
    ranges = {name: value_range(arr) for name, arr in raw.items()}
    signed = {name: lo < 0 for name, (lo, _) in ranges.items()}
    if not any(signed.values()):
        shared = (0.0, max(hi for _, hi in ranges.values()) or 1.0)
        scales = {name: shared for name in raw}
    else:
        scales = {name: ((-max(abs(lo), abs(hi)) or -1.0, max(abs(lo), abs(hi)) or 1.0) if signed[name] else (0.0, hi or 1.0))
                  for name, (lo, hi) in ranges.items()}  # fmt: skip
    zoom = (TARGET if spatial_ndim == 2 else 200) / max(raw["input"].shape[:spatial_ndim])
    step = max(1, int(1 / zoom)) if spatial_ndim == 2 else 1  # every step-th pixel: no more than is drawn
    views: dict[str, dict[str, np.ndarray]] = {}
    notes: dict[str, str] = {}
    channels = {name: arr.shape[-1] if arr.ndim > spatial_ndim else 1 for name, arr in raw.items()}
    for name, arr in raw.items():
        views[name] = {}
        features = name == "output" and channels["output"] != channels["input"]  # a filter bank's outputs
        for ax, sl in slices(arr[::step, ::step] if step > 1 else arr, spatial_ndim).items():
            views[name][ax], notes[name] = scalar_view(sl, signed[name], features)
    diff = None
    if raw["input"].shape == raw["output"].shape:
        def gray(v: np.ndarray) -> np.ndarray:  # RGB: one number per pixel, as the other side may be
            return v.mean(axis=-1) if v.ndim == 3 else v

        diff = {ax: gray(views["output"][ax]) - gray(views["input"][ax]) for ax in views["input"]}
        dmax = max(float(np.nanmax(np.abs(d))) for d in diff.values())
        dmax = dmax if np.isfinite(dmax) and dmax > 0 else 1.0  # all zero: every pixel at the map's grey centre
    zoom_drawn = zoom * step

    columns: list[cv.Block] = []
    for name, arr in raw.items():
        lo, hi = scales[name]

        def colour(sl: np.ndarray, s: bool = signed[name], lo: float = lo, hi: float = hi) -> np.ndarray:
            return _colour(sl, s, lo, hi)

        pics = _pictures(views[name], arr.shape, zoom_drawn, name, lo=lo, hi=hi, colour=colour)
        lut = DIVERGING if signed[name] else _GREY_LUT
        hist = cv.titled(_histogram(arr, lo, hi, lut, 200, f"hist_{name}"), f"{name} histogram (log counts)", cv.SMALL)
        sub = "; ".join(x for x in (notes[name], "signed: symmetric around 0" if signed[name] else "") if x)
        columns.append(cv.titled(cv.stack(pics + [hist], vertical=True, gap=10), f"{name} {_shape(arr.shape)} {arr.dtype}", cv.LABEL, sub))
    if diff is not None:
        pics = _pictures(diff, raw["input"].shape, zoom_drawn, "difference", lo=-dmax, hi=dmax, colour=lambda sl: diverging(sl, dmax))
        bar = cv.colour_bar(DIVERGING, -dmax, dmax, 200, "output - input")
        sub = "symmetric around 0: grey = unchanged" + ("; mean over RGB" if notes["input"].startswith("RGB") else "")
        columns.append(cv.titled(cv.stack(pics + [bar], vertical=True, gap=10), "difference (output - input)", cv.LABEL, sub))
    else:
        why = (f"no difference panel: the output's shape {_shape(raw['output'].shape)} differs from the input's "
               f"{_shape(raw['input'].shape)} (stride, padding or channels)")  # fmt: skip
        columns.append(cv.text_block(why, cv.LABEL, 200, cv.MUTED))
    body = cv.stack(columns, vertical=False, gap=24)
    width = body.size[0]
    head = cv.text_block(caption or "before / after", cv.TITLE, width)
    zoom_note = cv.text_block(f"all panels at the same zoom ({zoom:.3g}× the input's pixels)", cv.SMALL, width, cv.MUTED)
    full = cv.pad(cv.stack([head, zoom_note, body], vertical=True, gap=8), 16)
    return cv.Figure(full.image, full.panels, caption)
