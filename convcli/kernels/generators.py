"""Parametric kernels built in code (``gaussian:sigma=2``, ``box:5``, ``motion:length=9,angle=30``).

Separable kernels are built from their 1-D factors (as scikit-image builds Sobel); the engine
finds the factors again by SVD, for every kernel alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .value import FLOAT32_MAX, MAX_TAPS, Kernel, KernelError


def _outer(*factors: np.ndarray) -> np.ndarray:
    out = factors[0]
    for f in factors[1:]:
        out = np.multiply.outer(out, f)
    return out


def gaussian_1d(sigma: float, size: int | None = None) -> np.ndarray:
    radius = int(4 * sigma + 0.5) if size is None else (size - 1) / 2
    x = np.arange(-radius, radius + 1, dtype=np.float64) if size is None else np.arange(size) - radius
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


MAX_SIDE = 1025  # taps along one axis of a generated kernel


def _sigma(p: dict[str, float], default: float = 1.0, key: str = "sigma") -> float:
    s = float(p.get(key, default))
    if not s > 0:
        msg = f"{key}={s:g} must be > 0"
        raise KernelError(msg)
    if 8 * s + 1 > MAX_SIDE:
        msg = f"{key}={s:g} needs a kernel wider than {MAX_SIDE} taps; give {key} <= {(MAX_SIDE - 1) / 8:g}"
        raise KernelError(msg)
    return s


def _taps(side: int, nd: int) -> None:
    if side**nd > MAX_TAPS:
        msg = f"a {'x'.join([str(side)] * nd)} kernel has {side**nd:,} taps, over the limit of {MAX_TAPS:,}"
        raise KernelError(msg)


def _size(p: dict[str, float], key: str = "size", default: int | None = None, odd: bool = False) -> int | None:
    if key not in p:
        return default
    n = p[key]
    if n != int(n) or n < 1 or n > MAX_SIDE:
        msg = f"{key}={n:g} must be a whole number from 1 to {MAX_SIDE}"
        raise KernelError(msg)
    if odd and int(n) % 2 == 0:
        msg = f"{key}={int(n)} must be odd so the kernel has a centre"
        raise KernelError(msg)
    return int(n)


def box(p: dict[str, float], nd: int = 2) -> np.ndarray:
    n = _size(p, "size", 3)
    assert n is not None
    _taps(n, nd)
    return _outer(*[np.full(n, 1.0 / n)] * nd)


def gaussian(p: dict[str, float], nd: int = 2) -> np.ndarray:
    g = gaussian_1d(_sigma(p), _size(p))
    _taps(g.size, nd)
    return _outer(*[g] * nd)


def unsharp(p: dict[str, float]) -> np.ndarray:
    amount = float(p.get("amount", 1.0))
    g = gaussian({"sigma": _sigma(p)})
    delta = np.zeros_like(g)
    delta[tuple(n // 2 for n in g.shape)] = 1.0
    return (1 + amount) * delta - amount * g


def log(p: dict[str, float]) -> np.ndarray:
    """Laplacian of Gaussian (negative centre), shifted to sum exactly to zero."""
    s = _sigma(p)
    size = _size(p, odd=True)
    r = (size - 1) // 2 if size else int(4 * s + 0.5)
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    q = (x**2 + y**2) / (2 * s**2)
    k = -(1 - q) * np.exp(-q) / (math.pi * s**4)
    return k - k.mean()


def dog(p: dict[str, float]) -> np.ndarray:
    s1, s2 = float(p.get("s1", 1.0)), float(p.get("s2", 1.6))
    if not (s1 > 0 and s2 > 0):
        msg = "dog needs two sigmas > 0: dog:s1=1,s2=2 (or dog:1,2)"
        raise KernelError(msg)
    s1, s2 = _sigma(p, 1.0, "s1"), _sigma(p, 1.6, "s2")
    size = 2 * int(4 * max(s1, s2) + 0.5) + 1
    a = gaussian_1d(s1, size)
    b = gaussian_1d(s2, size)
    return np.outer(a, a) - np.outer(b, b)


def motion(p: dict[str, float]) -> np.ndarray:
    """A normalised line of ``length`` pixels at ``angle`` degrees (counter-clockwise from +x)."""
    length = _size(p, "length", 9)
    assert length is not None
    angle = math.radians(float(p.get("angle", 0.0)))
    size = length if length % 2 else length + 1
    c = size // 2
    k = np.zeros((size, size))
    samples = 8 * size
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, samples):
        x, y = c + t * math.cos(angle), c - t * math.sin(angle)  # rows grow downwards
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                    k[y0 + dy, x0 + dx] += wy * wx
    return k / k.sum()


Builder = Callable[[dict[str, float]], np.ndarray]

# name -> (builder, positional parameter names, description)
GENERATORS: dict[str, tuple[Builder, tuple[str, ...], str]] = {
    "box": (lambda p: box(p, 2), ("size",), "Mean over an N×N window (box:N)"),
    "box3d": (lambda p: box(p, 3), ("size",), "Mean over an N×N×N window (box3d:N)"),
    "gaussian": (lambda p: gaussian(p, 2), ("sigma", "size"), "Gaussian blur, radius int(4σ+0.5) unless size given (gaussian:sigma=S[,size=N])"),
    "gaussian3d": (lambda p: gaussian(p, 3), ("sigma", "size"), "3-D Gaussian blur (gaussian3d:sigma=S[,size=N])"),
    "unsharp": (unsharp, ("amount", "sigma"), "Unsharp mask: (1+A)·δ − A·Gaussian(σ) (unsharp:amount=A,sigma=S)"),
    "log": (log, ("sigma", "size"), "Laplacian of Gaussian, exactly zero-sum (log:sigma=S)"),
    "dog": (dog, ("s1", "s2"), "Difference of Gaussians G(s1) − G(s2) (dog:s1,s2)"),
    "motion": (motion, ("length", "angle"), "Motion blur along a line (motion:length=L,angle=A degrees)"),
}


def parse_params(name: str, text: str, positional: tuple[str, ...]) -> dict[str, float]:
    params: dict[str, float] = {}
    if not text:
        return params
    for i, part in enumerate(p for p in text.split(",") if p.strip()):
        if "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
        elif i < len(positional):
            key, value = positional[i], part.strip()
        else:
            msg = f"kernel {name}:{text}: too many values (parameters: {', '.join(positional)})"
            raise KernelError(msg)
        if key not in positional:
            msg = f"kernel {name}: unknown parameter {key!r} (use {', '.join(positional)})"
            raise KernelError(msg)
        if key in params:
            msg = f"kernel {name}:{text}: {key} is given twice"
            raise KernelError(msg)
        try:
            params[key] = float(value)
        except ValueError:
            msg = f"kernel {name}: {key}={value!r} is not a number"
            raise KernelError(msg) from None
        if not math.isfinite(params[key]):
            msg = f"kernel {name}: {key}={value!r} must be a finite number"
            raise KernelError(msg)
    return params


def generate(name: str, text: str) -> Kernel:
    builder, positional, description = GENERATORS[name]
    params = parse_params(name, text, positional)
    try:
        arr = builder(params)
    except KernelError as exc:
        msg = f"kernel {name}: {exc}"
        raise KernelError(msg) from None
    if not np.all(np.isfinite(arr)) or np.abs(arr).max() > FLOAT32_MAX:
        msg = f"kernel {name}:{text}: the parameters give values that are not finite in float32 (use smaller ones)"
        raise KernelError(msg)
    label = name if not text else f"{name}:{text}"
    return Kernel(arr, label, "generator", description=description)
