"""The cost model behind ``method="auto"``.

Per output cell, in nanoseconds on the 2-core CI machine (both cores), fitted to
``benchmarks/bench_engine.py`` runs (float32 4096^2 and 192^3; see the README's Performance
section). Only the ratios matter: every method scales the same way with the channel count.
"""

from __future__ import annotations

import math

from .. import geometry

DIRECT_2D = (0.26, 0.0125)  # fixed, per tap
DIRECT_3D = (0.4, 0.013)
SEPARABLE_2D = (0.23, 0.025)  # fixed, per tap of the two 1-D factors
FFT_2D = 4.4  # tiled overlap-save, 512-point tiles, per computed cell
FFT_3D = 18.4  # 96-point tiles


def method_costs(geo: geometry.Geometry, separable: int) -> dict[str, float]:
    """Estimated cost of each method; ``separable`` is the number of rank-1 terms (0: none)."""
    out = math.prod(geo.out_shape)
    taps = math.prod(geo.kernel_shape)
    volume = len(geo.kernel_shape) == 3 and geo.kernel_shape[0] > 1
    fixed, per_tap = DIRECT_3D if volume else DIRECT_2D
    costs = {"direct": out * (fixed + per_tap * taps)}
    if separable and len(geo.kernel_shape) >= 2:
        ky, kx = geo.kernel_shape[-2:]
        sep = SEPARABLE_2D[0] + SEPARABLE_2D[1] * (ky + kx)
        if len(geo.kernel_shape) == 3:
            kz = geo.kernel_shape[0]
            sep += DIRECT_3D[0] + DIRECT_3D[1] * kz if kz > 1 else 0.0
        costs["separable"] = out * sep * separable
    if taps > 1:
        # the FFT computes every cell at full resolution, then keeps every stride-th
        costs["fft"] = out * math.prod(geo.stride) * (FFT_3D if volume else FFT_2D)
    return costs


def choose_method(geo: geometry.Geometry, separable: int, channels: int = 1, itemsize: int = 4) -> str:
    """The cheapest method; ties go to direct (exact border handling, no FFT rounding)."""
    costs = method_costs(geo, separable)
    return min(costs, key=lambda m: (costs[m], m != "direct"))
