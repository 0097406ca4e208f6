"""The kernel picture: the kernel as stored and as slid in each mode, its frequency response,
and profiles through DC. Pure functions from arrays to numbers (``views``,
``frequency_response``, ``downsample``) and from numbers to a :class:`Figure`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import canvas as cv
from .colors import DIVERGING, SEQUENTIAL, diverging, sequential

DYNAMIC_RANGE_DB = 60.0  # the frequency picture shows [top - 60 dB, top]
MAX_CELLS = 48  # more cells per axis than this cannot be told apart: block-average down
BANK_MAX = 12  # rows (filters) and columns (input channels) drawn of a filter bank
AXES = "zyx"


def views(array: np.ndarray) -> dict[str, np.ndarray]:
    """The kernel as stored, as slid in ``--mode conv`` (flipped on every axis) and in
    ``--mode corr`` (as stored)."""
    a = np.asarray(array, dtype=np.float64)
    return {"stored": a, "conv": a[(slice(None, None, -1),) * a.ndim], "corr": a}


def central_planes(a: np.ndarray) -> dict[str, np.ndarray]:
    """The planes of a 3-D array through its centre, one per axis: ``z`` (y×x), ``y`` (z×x), ``x`` (z×y)."""
    cz, cy, cx = (n // 2 for n in a.shape)
    return {"z": a[cz], "y": a[:, cy], "x": a[:, :, cx]}


def downsample(a: np.ndarray, limit: int = MAX_CELLS) -> tuple[np.ndarray, int]:
    """Block means so no axis has more than ``limit`` cells; returns the array and the factor."""
    factor = max(1, math.ceil(max(a.shape) / limit))
    if factor == 1:
        return a, 1
    pads = [(0, (-n) % factor) for n in a.shape]
    # edge-padding the last partial block keeps its mean an average of real taps
    padded = np.pad(a, pads, mode="edge")
    shape = []
    for n in padded.shape:
        shape += [n // factor, factor]
    return padded.reshape(shape).mean(axis=tuple(range(1, 2 * a.ndim, 2))), factor


def fft_size(kernel_shape: tuple[int, ...]) -> int:
    """Zero-pad to at least 8 samples per kernel tap (a smooth response), a power of two, and
    at least 128 (2-D) / 32 (3-D) so narrow features such as a box's zeros show."""
    k = max(kernel_shape)
    lo, hi = (128, 1024) if len(kernel_shape) < 3 else (64, 128)
    return int(min(max(2 ** math.ceil(math.log2(8 * k)), lo), max(hi, 2 ** math.ceil(math.log2(k)))))


@dataclass(frozen=True)
class FreqResponse:
    """``db`` is ``20·log10|H|`` on an ``n``-point grid per axis with DC at index ``n // 2``
    (fftshift order), clipped below at ``floor``; ``freqs`` are in cycles/pixel."""

    db: np.ndarray
    freqs: np.ndarray
    floor: float
    top: float
    peak_db: float

    @property
    def dc_index(self) -> int:
        return len(self.freqs) // 2


def frequency_response(kernel: np.ndarray, size: int | None = None) -> FreqResponse:
    a = np.asarray(kernel, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    n = size or fft_size(a.shape)
    mag = np.abs(np.fft.fftshift(np.fft.fftn(a, s=(n,) * a.ndim, axes=tuple(range(a.ndim)))))
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(mag)
    peak = float(db.max()) if np.isfinite(db.max()) else -np.inf
    # tiny rounding above a multiple of 10 must not push the top a whole 10 dB up
    top = 10 * math.ceil(round(peak, 6) / 10) if np.isfinite(peak) else 0.0
    floor = top - DYNAMIC_RANGE_DB
    return FreqResponse(np.maximum(db, floor), np.fft.fftshift(np.fft.fftfreq(n)), floor, float(top), peak)


def heatmap(values: np.ndarray, vmax: float, target: int) -> cv.Block:
    """Cells coloured on the diverging map, the values written in them when they fit."""
    values = np.atleast_2d(values)
    cell = int(max(4, min(64, target // max(values.shape))))
    rgb = diverging(values, vmax)
    img = cv.grid_image(rgb, cell)
    size = cv.label_size(values, cell)
    if size is not None:
        cv.cell_labels(img, values, rgb, cell, size)
    h, w = values.shape
    block = cv.Block(img, {"cells": cv.Panel((0, 0, w * cell, h * cell), values, -vmax, vmax, "" if size else "no values")})
    return block


def _titled_panel(block: cv.Block, name: str, title: str, subtitle: str = "") -> cv.Block:
    block = cv.Block(block.image, {name: block.panels["cells"]})
    return cv.titled(block, title, cv.LABEL, subtitle)


def _mode_titles(nd: int) -> dict[str, tuple[str, str]]:
    flip = "rotated 180°" if nd == 2 else ("reversed" if nd == 1 else "flipped on every axis")
    return {
        "stored": ("as stored", "the file's or generator's matrix"),
        "conv": ("slid in --mode conv", f"true convolution: {flip}"),
        "corr": ("slid in --mode corr", "cross-correlation: as stored"),
    }


def _freq_image(db2: np.ndarray, fr: FreqResponse, display: int, xlabel: str, ylabel: str) -> cv.Block:
    """One plane of the response with frequency axes; the panel maps bins onto pixels."""
    from PIL import Image

    rgb = sequential(db2, fr.floor, fr.top)
    img = Image.fromarray(np.ascontiguousarray(rgb))
    resample = Image.Resampling.NEAREST if img.size[0] <= display else Image.Resampling.BOX
    img = img.resize((display, display), resample)
    left, bottom, top = 58, 32, 8
    out, draw = cv.new(display + left + 12, display + bottom + top + 4)
    out.paste(img, (left, top))
    n = db2.shape[0]
    for t in (-0.5, -0.25, 0.0, 0.25, 0.5):
        # bin j (frequency -0.5 + j/n) is centred at (j + 0.5) * display / n
        p = min((t + 0.5) * n + 0.5, n - 0.5) * display / n
        draw.line((left + p, top + display, left + p, top + display + 4), fill=cv.MUTED)
        cv.text(draw, (left + p, top + display + 5), cv.fmt(t), cv.SMALL, cv.INK, "ma")
        draw.line((left - 5, top + p, left - 1, top + p), fill=cv.MUTED)
        cv.text(draw, (left - 6, top + p), cv.fmt(t), cv.SMALL, cv.INK, "rm")
    cv.text(draw, (left + display / 2, top + display + cv.SMALL + 8), xlabel, cv.SMALL, cv.MUTED, "ma")
    cv.vertical_label(out, ylabel, top + display / 2)
    return cv.Block(out, {"freq": cv.Panel((left, top, left + display, top + display), db2, fr.floor, fr.top)})


def _profiles(fr: FreqResponse, nd: int) -> cv.Block:
    c = fr.dc_index
    db = fr.db
    if nd == 2:
        lines = {"x": db[c, :], "y": db[:, c]}
    else:
        lines = {"x": db[c, c, :], "y": db[c, :, c], "z": db[:, c, c]}
    colours = {"x": (0, 80, 160), "y": (200, 110, 0), "z": (40, 40, 40)}
    series = [(f"along f{ax}", fr.freqs, v, colours[ax], ax != "x") for ax, v in lines.items()]
    block = cv.line_plot(series, (-0.5, 0.5), (fr.floor, fr.top), (300, 200), xlabel="frequency (cycles/pixel)", ylabel="|H| (dB)",
                         xticks=[-0.5, -0.25, 0.0, 0.25, 0.5], yticks=cv.nice_ticks(fr.floor, fr.top, 4))  # fmt: skip
    block.panels = {"profile_" + ax: cv.Panel(block.panels["plot"].box, np.atleast_2d(v), fr.floor, fr.top) for ax, v in lines.items()}
    return cv.titled(block, "profiles through DC", cv.LABEL, "the response along each frequency axis")


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _header(name: str, array: np.ndarray, width: int) -> cv.Block:
    total = float(array.sum())
    total = 0.0 if abs(total) < 1e-12 else total
    head = f"{name or 'kernel'}: {_shape(array.shape)}, sum {cv.fmt(total)}"
    return cv.text_block(head, cv.TITLE, width)


def _single_figure(array: np.ndarray, name: str, description: str) -> cv.Figure:
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    nd = a.ndim
    vmax = float(np.abs(a).max()) or 1.0
    small, factor = downsample(a)
    note = (f"downsampled {factor}× for drawing (each cell is the mean of a {factor}^{nd} block of the "
            f"{_shape(a.shape)} kernel); the frequency response uses every tap") if factor > 1 else ""  # fmt: skip
    titles = _mode_titles(nd)
    rows: list[cv.Block] = []
    if nd == 2:
        row = [_titled_panel(heatmap(v, vmax, 210), mode, *titles[mode]) for mode, v in views(small).items()]
        rows.append(cv.stack(row, vertical=False, gap=24))
    else:
        centre = dict(zip(AXES, (n // 2 for n in small.shape)))
        for mode, v in views(small).items():
            cells = []
            for ax, p in central_planes(v).items():
                rest = "".join(x for x in AXES if x != ax)
                sub = f"{ax} = {centre[ax]}: {rest[0]} down, {rest[1]} across"
                cells.append(_titled_panel(heatmap(p, vmax, 150), f"{mode}_{ax}", sub))
            rows.append(cv.titled(cv.stack(cells, vertical=False, gap=20), f"{titles[mode][0]}  ({titles[mode][1]})"))
    kern = cv.stack(rows, vertical=True, gap=14)
    bar = cv.colour_bar(DIVERGING, -vmax, vmax, 240, "kernel value (dark: negative, grey: 0, light: positive)")

    fr = frequency_response(a)
    n = len(fr.freqs)
    if nd == 2:
        freq = [_freq_image(fr.db, fr, 256, "fx (cycles/pixel)", "fy (cycles/pixel)")]
    else:
        c = fr.dc_index
        planes = {"z": (fr.db[c], "fx", "fy"), "y": (fr.db[:, c], "fx", "fz"), "x": (fr.db[:, :, c], "fy", "fz")}
        freq = [cv.titled(_freq_image(p, fr, 180, f"{xa} (cycles/pixel)", f"{ya} (cycles/pixel)"), f"f{ax} = 0")
                for ax, (p, xa, ya) in planes.items()]  # fmt: skip
        for ax, b in zip(planes, freq):
            b.panels = {f"freq_{ax}": b.panels["freq"]}
    freq_row = cv.stack(freq + [_profiles(fr, nd)], vertical=False, gap=24)
    fbar = cv.colour_bar(SEQUENTIAL, fr.floor, fr.top, 240, "|H| in dB, 20·log10; clipped at the floor",
                         ticks=cv.nice_ticks(fr.floor, fr.top, 4))  # fmt: skip
    freq_block = cv.titled(
        cv.stack([freq_row, fbar], vertical=True, gap=8),
        "magnitude of the frequency response",
        cv.LABEL,
        f"zero-padded {n}-point FFT per axis, DC at the centre; the same in both modes (flipping changes only the phase)",
    )
    width = max(kern.size[0], freq_block.size[0])
    if any(p.note == "no values" for p in kern.panels.values()):
        bar = cv.stack([bar, cv.text_block("the cells are too small to write the values in; "
                                           "`convcli kernels show` prints them", cv.SMALL, width, cv.MUTED)], vertical=True, gap=2)  # fmt: skip
    parts = [_header(name, a, width), cv.text_block(description, cv.SMALL, width, cv.MUTED) if description else None,
             kern, bar, cv.text_block(note, cv.LABEL, width, (170, 40, 0)) if note else None, freq_block]  # fmt: skip
    body = cv.pad(cv.stack([p for p in parts if p is not None], vertical=True, gap=10), 16)
    caption = f"{name or 'kernel'} {_shape(a.shape)}" + (f"; {note}" if note else "")
    return cv.Figure(body.image, body.panels, caption)


def _bank_figure(array: np.ndarray, name: str, bias: np.ndarray | None) -> cv.Figure:
    w = np.asarray(array, dtype=np.float64)
    cout, cin = w.shape[:2]
    nd = w.ndim - 2
    shown_out, shown_in = min(cout, BANK_MAX), min(cin, BANK_MAX)
    vmax = float(np.abs(w).max()) or 1.0
    kshape = w.shape[2:]
    target = 96 if max(shown_out, shown_in) <= 4 else 64
    notes = []
    if nd == 3:
        notes.append("3-D kernels: each cell shows its central z plane")
    if shown_out < cout or shown_in < cin:
        notes.append(f"the first {shown_out} of {cout} filters and {shown_in} of {cin} input channels are drawn")
    grid: list[cv.Block] = []
    head, _ = cv.new(70, 20)
    header_row = [cv.Block(head)]
    for c in range(shown_in):
        img, draw = cv.new(target, 20)
        cv.text(draw, (target / 2, 10), f"in {c}", cv.SMALL, cv.INK, "mm")
        header_row.append(cv.Block(img))
    grid.append(cv.stack(header_row, vertical=False, gap=6, align="center"))
    factor = 1
    for j in range(shown_out):
        img, draw = cv.new(70, target)
        cv.text(draw, (0, target / 2 - 7), f"filter {j}", cv.SMALL, cv.INK, "lm")
        if bias is not None:
            cv.text(draw, (0, target / 2 + 7), f"bias {cv.fmt(float(bias[j]))}", cv.SMALL, cv.MUTED, "lm")
        row = [cv.Block(img)]
        for c in range(shown_in):
            k = w[j, c] if nd == 2 else central_planes(w[j, c])["z"]
            small, factor = downsample(k, 24)
            b = heatmap(small, vmax, target)
            b.panels = {f"k{j}_{c}": b.panels["cells"]}
            bw, bh = b.size  # centre each kernel in a fixed cell so the grid lines up
            cell_img, _ = cv.new(target, target)
            cell_img.paste(b.image, ((target - bw) // 2, (target - bh) // 2))
            row.append(cv.Block(cell_img, {k: p.offset((target - bw) // 2, (target - bh) // 2) for k, p in b.panels.items()}))
        grid.append(cv.stack(row, vertical=False, gap=6, align="center"))
    if factor > 1:
        notes.append(f"downsampled {factor}× for drawing (block means)")
    body = cv.stack(grid, vertical=True, gap=6)
    width = max(body.size[0], 420)
    title = f"{name or 'filter bank'}: {cout} filters × {cin} input channels of {_shape(kshape)} kernels (Cout × Cin)"
    sub = ("each filter sums its input channels' results (plus its bias) into one output channel; drawn as stored "
           "= as slid in --mode corr; --mode conv flips every kernel" + ("; " + "; ".join(notes) if notes else ""))  # fmt: skip
    bar = cv.colour_bar(DIVERGING, -vmax, vmax, 240, "kernel value (dark: negative, grey: 0, light: positive)")
    full = cv.pad(cv.stack([cv.text_block(title, cv.TITLE, width), cv.text_block(sub, cv.SMALL, width, cv.MUTED), body, bar],
                           vertical=True, gap=8), 16)  # fmt: skip
    return cv.Figure(full.image, full.panels, f"{title}" + ("; " + "; ".join(notes) if notes else ""))


def kernel_figure(array: np.ndarray, *, name: str = "", bank: bool = False, bias: np.ndarray | None = None,
                  description: str = "") -> cv.Figure:  # fmt: skip
    """The picture ``convcli kernels show K --png FILE`` writes.

    A single kernel (1-3 axes): heatmaps as stored / conv / corr (central planes for 3-D), the
    magnitude of its frequency response in dB and profiles through DC. A filter bank
    ``(Cout, Cin, k...)``: a ``Cout × Cin`` grid of its kernels.
    """
    a = np.asarray(array)
    if a.size == 0 or not np.all(np.isfinite(a)):
        msg = "cannot draw an empty kernel or one with NaN/Inf values"
        raise ValueError(msg)
    if bank:
        if a.ndim not in (4, 5):
            msg = f"a filter bank has shape (Cout, Cin, kh, kw[, kd]); got {a.shape}"
            raise ValueError(msg)
        return _bank_figure(a, name, bias)
    if a.ndim not in (1, 2, 3):
        msg = f"a kernel has 1-3 axes; got shape {a.shape}"
        raise ValueError(msg)
    return _single_figure(a, name, description)
