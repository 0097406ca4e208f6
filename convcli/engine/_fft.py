"""FFT correlation (numpy.fft) with exactly the direct path's border and padding semantics."""

from __future__ import annotations

import numpy as np

from .. import geometry
from ._borders import index_map


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes pocketfft handles fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def padded_copy(xc: np.ndarray, geo3: geometry.Geometry, border: str) -> np.ndarray:
    """(C, Zp, Hp, Wp) with the border rule applied; constant cells are 0 (cval is shifted out)."""
    out = xc
    for axis, (n, (b, a)) in enumerate(zip(xc.shape[1:], geo3.padding)):
        idx = index_map(n, b, a, border)
        if border == "constant":
            zero = np.zeros_like(np.take(out, [0], axis=1 + axis))
            out = np.concatenate([out, zero], axis=1 + axis)
            idx = np.where(idx < 0, n, idx)
        out = np.take(out, idx, axis=1 + axis)
    return out


def fft_correlate(xc: np.ndarray, k3: np.ndarray, geo3: geometry.Geometry, border: str) -> np.ndarray:
    """Valid correlation of the padded input with the dilated kernel, then the stride."""
    xp = padded_copy(xc, geo3, border)
    dil = geo3.dilation
    ext = tuple(geometry.effective_kernel(k, d) for k, d in zip(k3.shape, dil))
    kd = np.zeros(ext, dtype=np.float64)
    kd[:: dil[0], :: dil[1], :: dil[2]] = k3
    kflip = kd[::-1, ::-1, ::-1]
    padded = xp.shape[1:]
    # A circular convolution of length >= the padded size leaves indices >= ext-1 untouched.
    axes_used = [i for i in range(3) if padded[i] > 1] or [2]
    sizes = [next_fast_len(padded[i]) for i in axes_used]
    kspec = np.fft.rfftn(kflip, s=sizes, axes=axes_used)
    real_dtype = xc.dtype
    out_c = []
    for c in range(xc.shape[0]):
        spec = np.fft.rfftn(xp[c].astype(np.float64, copy=False), s=sizes, axes=axes_used)
        full = np.fft.irfftn(spec * kspec, s=sizes, axes=axes_used)
        sl = tuple(
            slice(e - 1, e - 1 + (o - 1) * s + 1, s) for e, o, s in zip(ext, geo3.out_shape, geo3.stride)
        )
        out_c.append(full[sl].astype(real_dtype))
    return np.stack(out_c)
