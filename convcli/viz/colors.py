"""Colour maps built in CIELAB so that lightness, not hue, carries the value.

Both maps have strictly increasing lightness, so they read in greyscale (and on a black-and-white
printout); the hues run along the blue-yellow axis that red-green colour-blind readers still see.

- ``DIVERGING`` (signed values, centred at 0): dark blue (negative) -> neutral grey (zero) ->
  light yellow (positive). Dark = negative, light = positive, also without colour.
- ``SEQUENTIAL`` (magnitudes, dB): dark violet -> teal -> light yellow (viridis-like).
"""

from __future__ import annotations

from functools import cache

import numpy as np

_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
_XYZ_TO_RGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def _lab_to_linear_rgb(lab: np.ndarray) -> np.ndarray:
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    d = 6 / 29
    xyz = np.where(f > d, f**3, 3 * d * d * (f - 4 / 29)) * _WHITE
    return xyz @ _XYZ_TO_RGB.T


def _encode(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def _in_gamut(L: float, C: float, h: float) -> bool:
    rgb = _lab_to_linear_rgb(np.array([L, C * np.cos(h), C * np.sin(h)]))
    return bool(np.all((rgb >= -1e-9) & (rgb <= 1 + 1e-9)))


def _build(lightness: np.ndarray, chroma: np.ndarray, hue_deg: np.ndarray) -> np.ndarray:
    """A 256x3 uint8 table. Where a colour falls outside sRGB its chroma is cut to the gamut
    boundary (found by bisection, so the map stays smooth) instead of clipping RGB, which would
    change the lightness that greyscale keeps."""
    out = np.empty((len(lightness), 3), dtype=np.uint8)
    for i, (L, C, h) in enumerate(zip(lightness, chroma, np.radians(hue_deg))):
        if not _in_gamut(L, C, h):
            lo, hi = 0.0, C
            for _ in range(30):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if _in_gamut(L, mid, h) else (lo, mid)
            C = lo
        rgb = _lab_to_linear_rgb(np.array([L, C * np.cos(h), C * np.sin(h)]))
        out[i] = np.rint(_encode(rgb) * 255)
    return out


def _diverging() -> np.ndarray:
    t = np.linspace(-1.0, 1.0, 256)
    lightness = 55 + 40 * t  # 15 (darkest blue) .. 55 (grey at 0) .. 95 (light yellow)
    chroma = 60 * np.abs(t) ** 0.7
    hue = np.where(t < 0, 285.0, 85.0)  # blue / yellow-orange: the axis deuteranopes keep
    return _build(lightness, chroma, hue)


def _sequential() -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)
    return _build(12 + 84 * t, 38 + 30 * t, 305 - 215 * t)


@cache
def _maps() -> dict[str, np.ndarray]:
    # built on first use (about 0.25 s of gamut searches): `apply` imports this module for its
    # report's histogram, and must not pay for colour maps it does not draw
    return {"DIVERGING": _diverging(), "SEQUENTIAL": _sequential()}


def __getattr__(name: str) -> np.ndarray:
    """``DIVERGING`` and ``SEQUENTIAL``: 256x3 uint8 lookup tables, built on first use."""
    if name in ("DIVERGING", "SEQUENTIAL"):
        return _maps()[name]
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance (WCAG) of uint8 sRGB colours, 0..1."""
    c = np.asarray(rgb, dtype=np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def text_colour(rgb: np.ndarray) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with the background (WCAG crossover at Y≈0.18)."""
    return (0, 0, 0) if float(luminance(np.asarray(rgb))) > 0.179 else (255, 255, 255)


def lut_index(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map values linearly onto 0..255 (clipped); NaN maps to the middle."""
    v = np.asarray(values, dtype=np.float64)
    span = hi - lo if hi > lo else 1.0
    idx = np.rint((v - lo) / span * 255)
    return np.clip(np.nan_to_num(idx, nan=127.5), 0, 255).astype(np.intp)


def diverging(values: np.ndarray, vmax: float) -> np.ndarray:
    """Signed values on a scale symmetric around 0: ``-vmax`` darkest, ``0`` grey, ``+vmax`` lightest."""
    vmax = float(vmax) if vmax > 0 else 1.0
    return _maps()["DIVERGING"][lut_index(values, -vmax, vmax)]


def sequential(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return _maps()["SEQUENTIAL"][lut_index(values, lo, hi)]


def grey(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    g = lut_index(values, lo, hi).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)
