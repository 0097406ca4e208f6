"""The cost model behind ``method="auto"`` (constants from benchmarks/bench_engine.py)."""

from __future__ import annotations

import math

from .. import geometry

# Relative costs in "direct MAC" units, measured on the 2-core CI machine (see README Performance).
SEPARABLE_PASS_OVERHEAD = 3.0  # strip copy and write of each 1-D pass, per output cell
FFT_POINT_LOG = 1.6  # per padded cell per log2(size), forward + inverse + product
DIRECT_MIN_FOR_FFT = 120  # below this many taps the direct path always wins


def method_costs(geo: geometry.Geometry, separable: bool, threads: int = 2) -> dict[str, float]:
    out = math.prod(geo.out_shape)
    taps = math.prod(geo.kernel_shape)
    costs = {"direct": float(out * taps)}
    if separable:
        cells = 0.0
        shape = list(geo.in_shape)
        for axis in reversed(range(len(shape))):
            shape[axis] = geo.out_shape[axis]
            cells += math.prod(shape) * (geo.kernel_shape[axis] + SEPARABLE_PASS_OVERHEAD)
        costs["separable"] = cells
    if taps >= DIRECT_MIN_FOR_FFT:
        padded = math.prod(n + b + a for n, (b, a) in zip(geo.in_shape, geo.padding))
        # numpy's FFT runs on one core, the direct kernels on all of them.
        costs["fft"] = padded * math.log2(max(padded, 2)) * FFT_POINT_LOG * threads / 2
    return costs


def choose_method(geo: geometry.Geometry, separable: bool, channels: int = 1, itemsize: int = 4) -> str:
    costs = method_costs(geo, separable)
    return min(costs, key=costs.__getitem__)
