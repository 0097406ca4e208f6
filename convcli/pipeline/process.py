"""One input through the kernel chain: what ``convcli apply`` does per file.

Load (the caller's) -> split alpha -> each kernel in turn (engine) -> scale/offset/abs -> cast to
the output type (rint, clip, count) -> the report. Writing is the runner's job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import geometry
from ..engine import api, tasks
from ..engine._factor import matrix_rank
from ..engine.buffers import scratch
from ..engine.layout import accumulation_dtype
from ..engine.names import canonical_border
from ..engine.postprocess import Cast, cast, channel_stats, rescale
from ..errors import ProcessError
from ..io.limits import DEFAULT_MAX_PIXELS
from ..io.read import ImageData
from ..kernels import Kernel
from .options import AxisValue, FilterOptions, PaddingValue
from .report import FilterReport, Stats, StepReport

AXIS_NAMES = {"X": "W_out", "Y": "H_out", "Z": "D_out"}


@dataclass(frozen=True)
class Result:
    array: np.ndarray
    report: FilterReport


def kernel_for(k: Kernel, normalize: bool) -> np.ndarray:
    """The kernel's array, divided by its sum with ``normalize`` (a ProcessError if that is zero)."""
    arr = k.array
    if normalize:
        if k.bank:
            raise ProcessError("--normalize applies to single kernels, not to a filter bank")
        total = float(arr.sum())
        if abs(total) <= 1e-12 * float(np.abs(arr).sum()):
            raise ProcessError(f"kernel {k.name} sums to zero, so --normalize cannot divide by its sum (drop --normalize)")
        arr = arr / total
    return arr


def _for_kernel(value: AxisValue | PaddingValue, k: Kernel, n_spatial: int, name: str, fill: object) -> object:
    """An option given for the kernel's axes, lifted with ``fill`` for an extra leading (z) axis."""
    if isinstance(value, str):
        return value
    values = geometry.axis_values(value if isinstance(value, tuple) else (value,), k.ndim, f"--{name}", axes_of=f"kernel {k.name}")
    return geometry.lift(values, n_spatial, fill)


def _delta_like(shape: tuple[int, ...]) -> np.ndarray:
    d = np.zeros(shape)
    d[tuple((n - 1) // 2 for n in shape)] = 1.0
    return d


def output_dtype(image: ImageData, choice: str) -> np.dtype:
    if choice == "keep":
        return image.array.dtype
    return np.dtype({"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}[choice])


def stats_of(arr: np.ndarray, has_channels: bool) -> Stats:
    """min/max/mean/std over finite values, overall and per channel."""
    channels = arr.shape[-1] if has_channels else 1
    st = channel_stats(arr, channels)

    def one(n: float, mn: float, mx: float, mean: float, std: float) -> Stats:
        if n == 0:
            return Stats(np.nan, np.nan, np.nan, np.nan)
        return Stats(float(mn), float(mx), float(mean), float(std))

    overall = one(st.count_all, st.min.min(), st.max.max(), st.mean_all, st.std_all)
    if not has_channels:
        return overall
    per = tuple(one(st.count[c], st.min[c], st.max[c], st.mean[c], st.std[c]) for c in range(channels))
    return Stats(overall.min, overall.max, overall.mean, overall.std, per)


UNREAD_STATS = Stats(np.nan, np.nan, np.nan, np.nan)  # with summaries=False (-q without --json)

HISTOGRAM_BINS = 24
HISTOGRAM_SAMPLE = 1 << 20  # a sparkline needs no more values than this


def histogram_of(arr: np.ndarray) -> tuple[int, ...]:
    """Counts of the written values (every channel) over their finite range; arrays above a
    million values are sampled at a regular stride, which a 24-bin sketch cannot tell apart."""
    from ..viz.terminal import histogram_counts

    flat = arr.reshape(-1)
    step = max(1, flat.size // HISTOGRAM_SAMPLE)
    counts, _, _ = histogram_counts(flat[::step], HISTOGRAM_BINS)
    return tuple(int(c) for c in counts)


def _by_slabs(image: ImageData, opts: FilterOptions) -> bool:
    """A big 8/16-bit volume and one plain kernel: filtered slab by slab (no float copy of it)."""
    from ..engine.tuning import BAND_MIN_BYTES

    a = image.array
    k = opts.kernels[0]
    return (
        image.is_volume and not image.alpha and len(opts.kernels) == 1 and not k.bank
        and a.dtype.kind in "iu" and a.dtype.itemsize <= 2 and a.nbytes * 4 // a.dtype.itemsize >= BAND_MIN_BYTES
    )  # fmt: skip


def _process_by_slabs(image: ImageData, opts: FilterOptions) -> Result:
    """One kernel over a big 8/16-bit volume, slab by slab (:func:`convcli.chunked.run.filter_array`):
    the input, the output and a few MB of floats instead of two whole float copies."""
    from ..chunked.run import filter_array
    from .chunked import stats_from

    k = opts.kernels[0]
    arr = kernel_for(k, opts.normalize)
    has_c = image.axes.endswith("C")
    t0 = time.perf_counter() - tasks.preparation_seconds()
    out, stats, clipped, op = filter_array(
        image.array, "ZYXC" if has_c else "ZYX", arr, dtype=output_dtype(image, opts.dtype), kernel_offset=k.offset,
        scale=opts.scale, offset=opts.offset, absolute=opts.absolute, mode=opts.mode, border=opts.border,
        padding=opts.padding, stride=opts.stride, dilation=opts.dilation, cval=opts.cval, method=opts.method,
        origin=opts.origin, precision=opts.precision,
    )  # fmt: skip
    seconds = time.perf_counter() - t0 - tasks.preparation_seconds()
    channels = image.array.shape[-1] if has_c else 1
    step = _step_report(k, arr, api.FilterResult(np.empty(0), op.method, op.geometry, op.geometry.anchor(op.flip)), channels, seconds, opts.mode)
    report = FilterReport(
        input_shape=list(image.array.shape), axes=image.axes, dtype=str(image.array.dtype), mode=opts.mode,
        border=op.border, steps=(step,), output_shape=list(out.shape), output_dtype=str(out.dtype),
        seconds=seconds, stats=stats_from(stats), clipped=clipped, alpha=None, histogram=histogram_of(out),
    )  # fmt: skip
    return Result(out, report)


def process(image: ImageData, opts: FilterOptions, max_pixels: int = DEFAULT_MAX_PIXELS) -> Result:
    """Filter one loaded input; raises ConvcliError subclasses for what the user must change.
    ``max_pixels`` also bounds each step's padded input (0: no limit)."""
    if _by_slabs(image, opts):
        return _process_by_slabs(image, opts)
    data = image.array
    has_c = image.axes.endswith("C")
    n_spatial = 3 if image.is_volume else 2
    x = data if has_c else data[..., None]
    alpha = None
    if image.alpha and opts.alpha == "keep":
        x, alpha = x[..., :-1], x[..., -1:]

    steps: list[StepReport] = []
    total_seconds = 0.0
    dtype = output_dtype(image, opts.dtype)
    # integer output: each step's float result goes to this thread's reused buffers (the cast
    # copies out of them), so a batch of equally sized images faults its float pages in once
    reuse = dtype.kind in "iu"
    cast_done = False
    for i, k in enumerate(opts.kernels):
        if k.ndim > n_spatial:
            raise ProcessError(
                f"kernel {k.name} is {k.ndim}-D but the input is a 2-D image "
                "(give a volume: a multi-page TIFF, a 3-D .npy, or a folder of slices with --stack)"
            )
        arr = kernel_for(k, opts.normalize)
        spatial_kernel = geometry.lift(k.spatial_shape, n_spatial, 1)
        kw = dict(
            border=opts.border, cval=opts.cval,
            padding=_for_kernel(opts.padding, k, n_spatial, "padding", (0, 0)),
            stride=_for_kernel(opts.stride, k, n_spatial, "stride", 1),
            dilation=_for_kernel(opts.dilation, k, n_spatial, "dilation", 1),
        )  # fmt: skip
        planned = geometry.plan_geometry(x.shape[:-1], spatial_kernel, padding=kw["padding"], stride=kw["stride"],  # type: ignore[arg-type]
                                         dilation=kw["dilation"])  # type: ignore[arg-type]  # fmt: skip
        geometry.check_padded_extent(planned, max_pixels)  # x is channels-last here
        t0 = time.perf_counter() - tasks.preparation_seconds()
        if k.bank:
            weight: np.ndarray = arr.reshape((*arr.shape[:2], *spatial_kernel))
            if x.shape[-1] != weight.shape[1]:
                raise ProcessError(
                    f"filter bank {k.name} expects Cin = {weight.shape[1]} channels but the input has "
                    f"{x.shape[-1]}" + (" (its alpha is kept apart; use --alpha filter to include it)" if alpha is not None else "")
                )
            if opts.origin is not None or opts.precision != "auto":
                raise ProcessError(f"--origin and --precision apply to single kernels, not to the filter bank {k.name}")
            res = api.run_layer(x, weight, k.bias, mode=opts.mode, **kw)  # type: ignore[arg-type]
        else:
            origin = None if opts.origin is None else _for_kernel(opts.origin, k, n_spatial, "origin", 0)
            buf = scratch(f"step{i % 2}", (*planned.out_shape, x.shape[-1]), accumulation_dtype(x.dtype, opts.precision)) if reuse else None
            options = dict(flip=opts.mode == "conv", method=opts.method, origin=origin, precision=opts.precision, out=buf, **kw)
            if reuse and i == len(opts.kernels) - 1:
                # the last kernel: its offset, --scale/--offset/--abs and the cast to integers, inside
                # the direct kernel where it can (no float result), else after it
                res, clipped = api.run_filter_cast(x, arr.reshape(spatial_kernel), Cast(dtype, k.offset, opts.scale, opts.offset, opts.absolute), **options)  # type: ignore[arg-type]
                cast_done = True
            else:
                res = api.run_filter(x, arr.reshape(spatial_kernel), **options)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0 - tasks.preparation_seconds()
        total_seconds += seconds
        out = res.array  # the engine's own (or a reused buffer): later steps may change it in place
        if k.offset and not cast_done:
            out += out.dtype.type(k.offset)
        if alpha is not None and res.geometry.out_shape != res.geometry.in_shape:
            alpha = api.run_filter(alpha, _delta_like(spatial_kernel), border="nearest", method="direct",
                                   padding=kw["padding"], stride=kw["stride"], dilation=kw["dilation"]).array  # type: ignore[arg-type]  # fmt: skip
        steps.append(_step_report(k, arr, res, x.shape[-1], seconds, opts.mode))
        x = out

    if cast_done:
        result = x
    else:
        rescale(x, opts.scale, opts.offset, opts.absolute)  # in place: a 12 MP float copy costs 144 MB
        result, clipped = cast(x, dtype)
    if alpha is not None:
        a, _ = cast(alpha, dtype)
        result = np.concatenate([result, a], axis=-1)
    if result.shape[-1] == 1 and not has_c:
        result = result[..., 0]
    report = FilterReport(
        input_shape=list(image.array.shape), axes=image.axes, dtype=str(image.array.dtype), mode=opts.mode,
        border=canonical_border(opts.border)[0], steps=tuple(steps), output_shape=list(result.shape),
        output_dtype=str(result.dtype), seconds=total_seconds,
        stats=stats_of(result, result.ndim > len(steps[-1].output_spatial)) if opts.summaries else UNREAD_STATS,
        clipped=clipped, alpha="kept" if image.alpha and opts.alpha == "keep" else ("filtered" if image.alpha else None),
        histogram=histogram_of(result) if opts.summaries else (),
    )  # fmt: skip
    return Result(result, report)


def _step_report(k: Kernel, arr: np.ndarray, res: api.FilterResult, in_channels: int, seconds: float, mode: str) -> StepReport:
    geo = res.geometry
    spatial = k.spatial_shape
    if k.bank:
        cout, cin = arr.shape[:2]
        weights = geometry.conv_params(cin, cout, spatial, bias=False)
        with_bias = geometry.conv_params(cin, cout, spatial)
        params_formula = f"({'*'.join(map(str, spatial))}*{cin} + 1)*{cout} = {with_bias:,} with bias, {weights:,} without"
        params = with_bias if k.bias is not None else weights
        macs = geometry.conv_macs(cin, cout, spatial, geo.out_shape)
        rank = None
    else:
        # one kernel per channel: a depthwise layer without bias
        params = geometry.conv_params(1, 1, spatial, bias=False)
        params_formula = f"{'*'.join(map(str, spatial))} = {params}"
        macs = geometry.conv_macs(in_channels, in_channels, spatial, geo.out_shape, groups=in_channels)
        rank = matrix_rank(arr) if arr.ndim >= 2 else 1
    axis_names = "ZYX"[-len(geo.out_shape) :]
    return StepReport(
        kernel=k.name, kernel_source=k.source, kernel_shape=list(k.array.shape), kernel_sum=float(arr.sum()),
        separable_rank=rank, bank=k.bank, mode=mode, flipped=mode == "conv",
        padding=[list(p) for p in geo.padding], stride=list(geo.stride), dilation=list(geo.dilation),
        input_spatial=list(geo.in_shape), output_spatial=list(geo.out_shape),
        formula=[geo.formula(i, AXIS_NAMES[axis_names[i]]) for i in range(len(geo.out_shape))],
        params=params, params_formula=params_formula, macs=macs, method=res.method, seconds=seconds,
        anchor=[int(a) if float(a).is_integer() else float(a) for a in res.anchor],
    )  # fmt: skip
