"""One input through the kernel chain: what ``convcli apply`` does per file, without Typer.

Load -> split alpha -> each kernel in turn (engine) -> scale/offset/abs -> cast to the output
type (rint, clip, count) -> the report facts. Writing is the caller's job.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import geometry
from ..engine import api
from ..engine._factor import matrix_rank
from ..io.read import ImageData
from ..kernels import Kernel

class ProcessError(Exception):
    """A per-input failure the user can fix; the message says what to change."""


@dataclass
class Options:
    kernels: list[Kernel]
    mode: str = "conv"
    border: str = "reflect"
    padding: Any = "same"  # word, or per-axis list of (before, after) / ints
    stride: Any = 1
    dilation: Any = 1
    cval: float = 0.0
    method: str = "auto"
    normalize: bool = False
    scale: float = 1.0
    offset: float = 0.0
    absolute: bool = False
    dtype: str = "keep"
    alpha: str = "keep"


@dataclass
class Result:
    array: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


def _axis_param(value: Any, n_spatial: int, n_given: int, name: str, lift: Any) -> Any:
    """Options given for the kernel's axes, lifted with ``lift`` for an extra leading (z) axis."""
    if isinstance(value, (list, tuple)):
        vals = list(value)
        if len(vals) == 1:
            vals = vals * n_given
        if len(vals) != n_given:
            raise ProcessError(f"--{name} gives {len(vals)} axes but the kernel has {n_given}")
        return tuple([lift] * (n_spatial - n_given) + vals)
    if isinstance(value, str):
        return value
    return tuple([lift] * (n_spatial - n_given) + [value] * n_given)


def kernel_for(k: Kernel, normalize: bool) -> np.ndarray:
    arr = k.array
    if normalize:
        if k.bank:
            raise ProcessError("--normalize applies to single kernels, not to a filter bank")
        total = float(arr.sum())
        if abs(total) <= 1e-12 * float(np.abs(arr).sum()):
            raise ProcessError(f"kernel {k.name} sums to zero, so --normalize cannot divide by its sum (drop --normalize)")
        arr = arr / total
    return arr


def _delta_like(shape: tuple[int, ...]) -> np.ndarray:
    d = np.zeros(shape)
    d[tuple((n - 1) // 2 for n in shape)] = 1.0
    return d


def _stats(arr: np.ndarray, has_channels: bool) -> dict[str, Any]:
    """min/max/mean/std over finite values, overall and per channel."""
    channels = arr.shape[-1] if has_channels else 1
    st = api.channel_stats(arr, channels)

    def one(n: float, mn: float, mx: float, mean: float, std: float) -> dict[str, float]:
        if n == 0:
            return {"min": math.nan, "max": math.nan, "mean": math.nan, "std": math.nan}
        return {"min": float(mn), "max": float(mx), "mean": float(mean), "std": float(std)}

    out = one(st["count_all"], st["min"].min(), st["max"].max(), st["mean_all"], st["std_all"])
    if has_channels:
        out["per_channel"] = [one(st["count"][c], st["min"][c], st["max"][c], st["mean"][c], st["std"][c]) for c in range(channels)]
    return out


def cast(arr: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """rint and clip to an integer type (counting clipped values and NaNs); floats pass through."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return arr.astype(dtype, copy=False), 0
    return api.to_integer(arr, dtype)


def output_dtype(image: ImageData, choice: str) -> np.dtype:
    if choice == "keep":
        return image.array.dtype
    return np.dtype({"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}[choice])


def process(image: ImageData, opts: Options) -> Result:
    """Filter one loaded input; raises ProcessError/ValueError for what the user must change."""
    data = image.array
    has_c = image.axes.endswith("C")
    n_spatial_img = 3 if image.is_volume else 2
    x = data if has_c else data[..., None]
    alpha = None
    if image.alpha and opts.alpha == "keep":
        x, alpha = x[..., :-1], x[..., -1:]

    steps: list[dict[str, Any]] = []
    total_seconds = 0.0
    for k in opts.kernels:
        kdim = k.ndim
        if kdim > n_spatial_img:
            raise ProcessError(
                f"kernel {k.name} is {kdim}-D but the input is a 2-D image "
                "(give a volume: a multi-page TIFF, a 3-D .npy, or a folder of slices with --stack)"
            )
        arr = kernel_for(k, opts.normalize)
        lift = (1,) * (n_spatial_img - kdim)
        spatial_kernel = lift + k.spatial_shape
        padding = _axis_param(opts.padding, n_spatial_img, kdim, "padding", (0, 0))
        stride = _axis_param(opts.stride, n_spatial_img, kdim, "stride", 1)
        dilation = _axis_param(opts.dilation, n_spatial_img, kdim, "dilation", 1)
        kw = dict(border=opts.border, padding=padding, stride=stride, dilation=dilation, cval=opts.cval)
        t0 = time.perf_counter()
        if k.bank:
            weight = arr.reshape(arr.shape[:2] + spatial_kernel)
            if x.shape[-1] != weight.shape[1]:
                raise ProcessError(
                    f"filter bank {k.name} expects Cin = {weight.shape[1]} channels but the input has "
                    f"{x.shape[-1]}" + (" (its alpha is kept apart; use --alpha filter to include it)" if alpha is not None else "")
                )
            res = api.run_layer(x, weight, k.bias, mode="conv" if opts.mode == "conv" else "corr", **kw)
        else:
            res = api.run_filter(x, arr.reshape(spatial_kernel), flip=opts.mode == "conv", method=opts.method, **kw)
        seconds = time.perf_counter() - t0
        total_seconds += seconds
        res_array = res.array  # a fresh array from the engine: later steps may change it in place
        if k.offset:
            res_array += res_array.dtype.type(k.offset)
        if alpha is not None and res.geometry.out_shape != res.geometry.in_shape:
            alpha = api.run_filter(alpha, _delta_like(spatial_kernel), border="nearest", method="direct",
                                   padding=padding, stride=stride, dilation=dilation).array  # fmt: skip
        steps.append(_step_report(k, arr, res, x.shape[-1], seconds, opts))
        x = res_array

    # in place: x is the engine's own result, and a 12 MP float copy costs 144 MB
    if opts.scale != 1.0:
        x *= x.dtype.type(opts.scale)
    if opts.offset:
        x += x.dtype.type(opts.offset)
    if opts.absolute:
        np.abs(x, out=x)
    dtype = output_dtype(image, opts.dtype)
    out, clipped = cast(x, dtype)
    if alpha is not None:
        a, _ = cast(alpha, dtype)
        out = np.concatenate([out, a], axis=-1)
    if out.shape[-1] == 1 and not has_c:
        out = out[..., 0]
    report = _report(image, steps, out, clipped, total_seconds, opts)
    return Result(out, report)


def _step_report(k: Kernel, arr: np.ndarray, res: api.FilterResult, in_channels: int, seconds: float, opts: Options) -> dict[str, Any]:
    geo = res.geometry
    spatial = k.spatial_shape
    if k.bank:
        cout, cin = arr.shape[:2]
        weights = int(arr.size)
        with_bias = weights + cout
        params_formula = f"({'*'.join(map(str, spatial))}*{cin} + 1)*{cout} = {with_bias:,} with bias, {weights:,} without"
        params = with_bias if k.bias is not None else weights
        macs = geometry.conv_macs(cin, cout, spatial, geo.out_shape)
        rank = None
    else:
        params = int(math.prod(spatial))
        params_formula = f"{'*'.join(map(str, spatial))} = {params}"
        macs = int(math.prod(geo.out_shape)) * params * in_channels
        rank = matrix_rank(arr) if arr.ndim >= 2 else 1
    axis_names = "ZYX"[-len(geo.out_shape):] if len(geo.out_shape) <= 3 else "?" * len(geo.out_shape)
    names = {"X": "W_out", "Y": "H_out", "Z": "D_out"}
    return {
        "kernel": k.name,
        "kernel_source": k.source,
        "kernel_shape": list(k.array.shape),
        "kernel_sum": float(arr.sum()),
        "separable_rank": rank,
        "bank": k.bank,
        "mode": opts.mode,
        "flipped": opts.mode == "conv",
        "padding": [list(p) for p in geo.padding],
        "stride": list(geo.stride),
        "dilation": list(geo.dilation),
        "input_spatial": list(geo.in_shape),
        "output_spatial": list(geo.out_shape),
        "formula": [geo.formula(i, names[axis_names[i]]) for i in range(len(geo.out_shape))],
        "params": params,
        "params_formula": params_formula,
        "macs": macs,
        "method": res.method,
        "seconds": seconds,
    }


def _report(image: ImageData, steps: list[dict[str, Any]], out: np.ndarray, clipped: int, seconds: float, opts: Options) -> dict[str, Any]:
    last = steps[-1]
    pixels = math.prod(last["input_spatial"])
    has_c = out.ndim > len(last["output_spatial"])
    report = {
        "input": image.source,
        "status": "ok",
        "input_shape": list(image.array.shape),
        "axes": image.axes,
        "dtype": str(image.array.dtype),
        "kernel": " > ".join(s["kernel"] for s in steps),
        "kernel_shape": last["kernel_shape"],
        "mode": opts.mode,
        "flipped": opts.mode == "conv",
        "border": api.canonical_border(opts.border)[0],
        "padding": last["padding"],
        "stride": last["stride"],
        "dilation": last["dilation"],
        "formula": last["formula"],
        "output_shape": list(out.shape),
        "output_dtype": str(out.dtype),
        "params": sum(s["params"] for s in steps),
        "macs": sum(s["macs"] for s in steps),
        "method": last["method"],
        "seconds": seconds,
        "mpixels_per_s": pixels / 1e6 / seconds if seconds > 0 else None,
        "stats": _stats(out, has_c),
        "clipped": clipped,
        "alpha": "kept" if image.alpha and opts.alpha == "keep" else ("filtered" if image.alpha else None),
        "steps": steps,
    }
    return report
