"""Layer chains for ``convcli shape``: parse layer specs, carry shapes and channels through, count
parameters, MACs and receptive fields. Pure Python over :mod:`convcli.geometry` (no numpy).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import geometry
from .errors import ArgumentError, LayerError, UsageError
from .geometry import Pair

__all__ = ["LayerError", "LayerResult", "LayerSpec", "explain", "parse_axes", "parse_layer", "parse_padding", "run_chain"]

KINDS = ("conv", "conv3d", "convT", "pool", "dw")


def parse_axes(text: str, name: str, *, minimum: int | None = None) -> list[int]:
    """``7`` or ``7x5[x3]``: one int per axis (or one for all), each ``>= minimum`` if given."""
    text = str(text).strip()
    _check_axis_count(text, name)
    try:
        values = [int(part) for part in text.lower().replace("×", "x").split("x")]
    except ValueError:
        msg = f"--{name} {text!r}: expected N or NxM[xL]"
        raise UsageError(msg) from None
    if minimum is not None and min(values) < minimum:
        msg = f"--{name} {text!r}: every value must be >= {minimum}"
        raise UsageError(msg)
    for v in values:
        check_value(v, f"--{name} {text!r}")
    return values


def parse_padding(text: str, name: str = "padding") -> list[Pair] | str:
    """``same|valid|full``, or ``N``, ``NxM`` with ``B:A`` for per-side padding; never negative."""
    text = str(text).strip()
    if text.lower() in geometry.PADDING_WORDS:
        return text.lower()
    _check_axis_count(text, name)
    pairs: list[Pair] = []
    for part in text.lower().replace("×", "x").split("x"):
        try:
            b, a = part.split(":") if ":" in part else (part, part)
            pairs.append((int(b), int(a)))
        except ValueError:
            msg = f"--{name} {text!r}: expected N, NxM or same|valid|full, with B:A for per-side padding"
            raise UsageError(msg) from None
    if min(min(p) for p in pairs) < 0:
        msg = f"--{name} {text!r}: padding cannot be negative"
        raise UsageError(msg)
    for p in pairs:
        check_value(max(p), f"--{name} {text!r}")
    return pairs


def _check_axis_count(text: str, name: str) -> None:
    if text.lower().count("x") + text.count("×") > 2:
        msg = f"--{name} {text[:40]!r}{'...' if len(text) > 40 else ''}: give at most 3 axes"
        raise UsageError(msg)


MAX_VALUE = 2**31 - 1  # sizes, channels, strides...: beyond this no layer exists, and index arithmetic overflows


def check_value(value: int, where: str) -> int:
    if value > MAX_VALUE:
        msg = f"{where}: {value:,} is above {MAX_VALUE:,}, larger than any layer convcli calculates"
        raise UsageError(msg)
    return value


def broadcast(values: Sequence, ndim: int, name: str) -> list:
    """One value for every axis of ``--input``, or one per axis."""
    return list(geometry.axis_values(values, ndim, f"--{name}", axes_of="--input"))


@dataclass
class LayerSpec:
    kind: str = "conv"
    kernel: str = "3"
    filters: int | None = None  # None: keep channels (pool, dw)
    stride: str = "1"
    padding: str = "0"
    dilation: str = "1"
    groups: int = 1
    bias: bool = True
    output_padding: str = "0"
    pool: str = "max"
    ceil_mode: bool = False
    label: str = ""


@dataclass
class LayerResult:
    index: int
    spec: LayerSpec
    in_size: list[int]
    in_channels: int
    kernel: list[int]
    stride: list[int]
    dilation: list[int]
    padding: list[Pair]
    output_padding: list[int]
    output_size: list[int]
    out_channels: int
    weights: int
    bias: int
    macs: int
    receptive_field: list[float]
    jump: list[float]
    start: list[float]
    dropped: list[tuple[int, int]] = field(default_factory=list)  # (real input cells, padding cells)
    notes: list[str] = field(default_factory=list)

    @property
    def groups(self) -> int:
        """The groups in effect: a depthwise layer has one group per input channel."""
        return self.in_channels if self.spec.kind == "dw" else self.spec.groups

    @property
    def params(self) -> int:
        return self.weights + self.bias

    @property
    def activations(self) -> int:
        return math.prod(self.output_size) * self.out_channels

    def as_json(self) -> dict:
        return {
            "type": self.spec.kind,
            "input_size": self.in_size,
            "in_channels": self.in_channels,
            "kernel": self.kernel,
            "stride": self.stride,
            "dilation": self.dilation,
            "groups": self.groups,
            "output_size": self.output_size,
            "out_channels": self.out_channels,
            "padding": [list(p) for p in self.padding],
            "effective_kernel": [geometry.effective_kernel(k, d) for k, d in zip(self.kernel, self.dilation)],
            "weights": self.weights,
            "bias": self.bias,
            "params": self.params,
            "param_bytes_fp32": 4 * self.params,
            "macs": self.macs,
            "flops": 2 * self.macs,
            "bias_flops": self.bias and math.prod(self.output_size) * self.out_channels,
            "activations": self.activations,
            "activation_bytes_fp32": 4 * self.activations,
            "receptive_field": [whole(v) for v in self.receptive_field],
            "jump": [whole(v) for v in self.jump],
            "start": [whole(v) for v in self.start],
            "dropped_input_cells": [r for r, _ in self.dropped],
        }


def whole(v: float) -> int | float:
    """An int where the value is whole (JSON shows ``3``, not ``3.0``)."""
    return int(v) if float(v).is_integer() else v


def parse_layer(text: str, number: int = 1) -> LayerSpec:
    """``conv k=3 s=1 p=1 c=64``, ``pool max k=2 s=2 ceil``, ``dw k=3``, ``convT k=4 s=2 p=1 c=32 op=0``."""
    where = f"layer {number} ({text.strip()!r})"
    try:
        words = shlex.split(text, comments=True)
    except ValueError as exc:  # an unbalanced quote
        msg = f"{where}: {str(exc).lower()} (write key=value words, e.g. conv k=3 c=64)"
        raise LayerError(msg) from None
    if not words:
        msg = f"{where}: empty layer"
        raise LayerError(msg)
    kind = {"convt": "convT", "deconv": "convT", "conv2d": "conv", "conv1d": "conv", "depthwise": "dw",
            "maxpool": "pool", "avgpool": "pool"}.get(words[0].lower(), words[0])  # fmt: skip
    if kind not in KINDS:
        msg = f"{where}: unknown layer type {words[0]!r} (use one of {', '.join(KINDS)})"
        raise LayerError(msg)
    spec = LayerSpec(kind=kind, label=text.strip())
    if words[0].lower() in ("maxpool", "avgpool"):
        spec.pool = words[0].lower()[:3]
    keys = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation", "op": "output_padding",
            "kernel": "kernel", "stride": "stride", "padding": "padding", "dilation": "dilation"}  # fmt: skip
    for word in words[1:]:
        low = word.lower()
        if low in ("max", "avg"):
            spec.pool = low
        elif low == "ceil":
            spec.ceil_mode = True
        elif low in ("nobias", "no-bias", "bias=0", "bias=false"):
            spec.bias = False
        elif "=" in word:
            key, value = word.split("=", 1)
            key = key.lower()
            try:
                if key in keys:
                    setattr(spec, keys[key], value)
                elif key in ("c", "filters", "out"):
                    spec.filters = check_value(int(value), f"{where}: {key}")
                elif key in ("g", "groups"):
                    spec.groups = check_value(int(value), f"{where}: {key}")
                elif key == "bias":
                    spec.bias = value.lower() in ("1", "true", "yes")
                else:
                    msg = f"{where}: unknown key {key!r} (use k, s, p, d, c, g, op, bias)"
                    raise LayerError(msg)
            except ValueError as exc:
                if isinstance(exc, LayerError):
                    raise
                msg = f"{where}: {key}={value!r} is not an integer"
                raise LayerError(msg) from None
        else:
            msg = f"{where}: cannot read {word!r} (write key=value, e.g. k=3 s=2 p=1 c=64)"
            raise LayerError(msg)
    if kind == "pool" and spec.stride == "1" and "s=" not in text.replace(" ", "").lower():
        spec.stride = spec.kernel  # PyTorch: stride defaults to kernel_size for pooling
    return spec


def _divisors(n: int) -> list[int]:
    """Divisors of ``n`` in order, in O(sqrt(n)) steps (n may be a huge channel count)."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def run_layer(
    spec: LayerSpec,
    in_size: list[int],
    in_channels: int,
    rf: list[geometry.ReceptiveField],
    index: int = 1,
    strict: bool = False,
) -> tuple[LayerResult, list[geometry.ReceptiveField]]:
    where = f"layer {index} ({spec.label})" if spec.label else f"layer {index}"
    nd = len(in_size)
    kernel = broadcast(parse_axes(spec.kernel, "kernel"), nd, "kernel")
    stride = broadcast(parse_axes(spec.stride, "stride"), nd, "stride")
    dilation = broadcast(parse_axes(spec.dilation, "dilation"), nd, "dilation")
    opad = broadcast(parse_axes(spec.output_padding, "output-padding"), nd, "output-padding")
    for name, vals in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if min(vals) < 1:
            msg = f"{where}: {name} {vals} must be >= 1 on every axis"
            raise LayerError(msg)
    pad_arg = parse_padding(spec.padding)
    if isinstance(pad_arg, str):
        if spec.kind == "convT":
            msg = f"{where}: transposed convolution takes numeric padding, not {pad_arg!r}"
            raise LayerError(msg)
        padding = list(geometry.resolve_padding(pad_arg, in_size, kernel, stride, dilation))
        if pad_arg == "same" and max(stride) > 1:
            note = "'same' with stride > 1 follows TensorFlow: out = ceil(n/s), the extra padding cell at the end"
        else:
            note = ""
    else:
        padding = broadcast(pad_arg, nd, "padding")
        note = ""

    kind = spec.kind
    groups = spec.groups
    if kind == "dw":
        groups = in_channels
    out_channels = in_channels if kind in ("pool", "dw") and spec.filters is None else spec.filters
    if out_channels is None:
        msg = f"{where}: say how many filters (c=K, or --filters K)"
        raise LayerError(msg)
    if out_channels < 1 or in_channels < 1:
        msg = f"{where}: channels must be >= 1 (in {in_channels}, out {out_channels})"
        raise LayerError(msg)
    check_value(in_channels, f"{where}: in channels")
    check_value(out_channels, f"{where}: out channels")
    if groups < 1 or in_channels % groups or out_channels % groups:
        valid = _divisors(math.gcd(in_channels, out_channels))
        shown = ", ".join(map(str, valid[:12])) + (f", ... ({len(valid)} in all)" if len(valid) > 12 else "")
        msg = f"{where}: groups={groups} must divide in channels {in_channels} and out channels {out_channels} (valid: {shown})"
        raise LayerError(msg)
    if kind == "convT":
        for o, s, d in zip(opad, stride, dilation):
            if o < 0 or o >= max(s, d):
                msg = f"{where}: output padding {o} must be smaller than stride {s} or dilation {d}"
                raise LayerError(msg)

    out_size: list[int] = []
    dropped: list[tuple[int, int]] = []
    for axis, (n, k, s, d, (b, a)) in enumerate(zip(in_size, kernel, stride, dilation, padding)):
        keff = geometry.effective_kernel(k, d)
        if kind == "convT":
            o = geometry.transposed_output_size(n, k, s, d, b, a, output_padding=opad[axis])
            if o < 1:
                msg = f"{where}: output size {o} < 1 on axis {axis + 1}; reduce the padding"
                raise LayerError(msg)
            out_size.append(o)
            dropped.append((0, 0))
            continue
        padded = n + b + a
        try:
            if kind == "pool":
                o = geometry.pool_output_size(n, k, s, d, b, a, ceil_mode=spec.ceil_mode)
            else:
                o = geometry.output_size(n, k, s, d, b, a, axis=axis + 1)
        except ArgumentError as exc:
            raise LayerError(f"{where}: {exc}") from None
        out_size.append(o)
        covered = (o - 1) * s + keff  # cells of the padded input the windows reach
        rest = max(padded - covered, 0)
        pad_dropped = min(rest, a)
        dropped.append((rest - pad_dropped, pad_dropped))
    if strict and any(r for r, _ in dropped):
        axes = [str(i + 1) for i, (r, _) in enumerate(dropped) if r]
        msg = f"{where}: the floor drops real input cells on axis {', '.join(axes)} (--strict); change the padding or input size"
        raise LayerError(msg)

    bias = out_channels if spec.bias and kind != "pool" else 0
    if kind == "pool":
        weights = macs = 0
    elif kind == "convT":
        weights = geometry.transposed_params(in_channels, out_channels, kernel, groups, bias=False)
        macs = geometry.transposed_macs(in_channels, out_channels, kernel, in_size, groups)
    else:
        weights = geometry.conv_params(in_channels, out_channels, kernel, groups, bias=False)
        macs = geometry.conv_macs(in_channels, out_channels, kernel, out_size, groups)

    new_rf = []
    for field_, k, s, d, (b, _a) in zip(rf, kernel, stride, dilation, padding):
        if kind == "convT":
            keff = geometry.effective_kernel(k, d)
            jump = field_.jump / s
            size = field_.size + (math.ceil(keff / s) - 1) * field_.jump
            new_rf.append(geometry.ReceptiveField(size=size, jump=jump, start=field_.start))
        else:
            new_rf.append(field_.then(k, s, d, b))
    result = LayerResult(
        index=index, spec=spec, in_size=list(in_size), in_channels=in_channels, kernel=kernel,
        stride=stride, dilation=dilation, padding=[(b, a) for b, a in padding], output_padding=opad,
        output_size=out_size, out_channels=out_channels, weights=weights, bias=bias, macs=macs,
        receptive_field=[f.size for f in new_rf], jump=[f.jump for f in new_rf],
        start=[f.start for f in new_rf], dropped=dropped, notes=[note] if note else [],
    )  # fmt: skip
    return result, new_rf


def run_chain(specs: Sequence[LayerSpec], in_size: list[int], in_channels: int, strict: bool = False) -> list[LayerResult]:
    if not in_size or min(in_size) < 1:
        msg = f"--input {in_size}: every size must be >= 1"
        raise LayerError(msg)
    rf = [geometry.INPUT_FIELD] * len(in_size)
    results = []
    size, channels = list(in_size), in_channels
    for i, spec in enumerate(specs, 1):
        if spec.kind == "conv3d" and len(size) != 3:
            msg = f"layer {i} ({spec.label}): conv3d needs a 3-axis --input, got {len(size)} axes"
            raise LayerError(msg)
        res, rf = run_layer(spec, size, channels, rf, i, strict)
        results.append(res)
        size, channels = res.output_size, res.out_channels
    return results


def explain(res: LayerResult) -> list[str]:
    """The derivation, numbers substituted, one line per axis plus notes."""
    lines = []
    for axis, (n, k, s, d, (b, a), o) in enumerate(
        zip(res.in_size, res.kernel, res.stride, res.dilation, res.padding, res.output_size), 1
    ):
        keff = geometry.effective_kernel(k, d)
        kterm = f"{k}" if d == 1 else f"({d}*({k}-1)+1)"
        if res.spec.kind == "convT":
            op = res.output_padding[axis - 1]
            lines.append(
                f"axis {axis}: out = (n-1)*s - before - after + d*(k-1) + output_padding + 1 = "
                f"({n}-1)*{s} - {b} - {a} + {d}*({k}-1) + {op} + 1 = {o}"
            )
            continue
        num = n + b + a - keff
        if res.spec.kind == "pool" and res.spec.ceil_mode:
            lines.append(
                f"axis {axis}: out = ceil(({n} + {b} + {a} - {kterm})/{s}) + 1 = ceil({num}/{s}) + 1 -> {o}"
                " (ceil mode: the last window must start inside the input or the left padding)"
            )
        elif num % s == 0:
            lines.append(f"axis {axis}: out = ({n} + {b} + {a} - {kterm})/{s} + 1 = {num}/{s} + 1 = {o}")
        else:
            lines.append(f"axis {axis}: out = floor(({n} + {b} + {a} - {kterm})/{s}) + 1 = floor({num}/{s}) + 1 = {o}")
        real, pad = res.dropped[axis - 1]
        if real or pad:
            what = []
            if real:
                what.append(f"{real} real input cell{'s' if real > 1 else ''}")
            if pad:
                what.append(f"{pad} padding cell{'s' if pad > 1 else ''}")
            lines.append(f"        the floor drops {' and '.join(what)} at the end of axis {axis}")
    g = res.groups
    kprod = "*".join(map(str, res.kernel))
    if res.spec.kind == "pool":
        lines.append("params = 0 (pooling has no weights)")
    elif res.spec.kind == "convT":
        lines.append(f"params = C*(K/G)*prod(k) + K = {res.in_channels}*({res.out_channels}/{g})*{kprod} + {res.bias} = {res.params:,}")
        lines.append(f"MACs = C*prod(in)*(K/G)*prod(k) = {res.in_channels}*{'*'.join(map(str, res.in_size))}*{res.out_channels // g}*{kprod} = {res.macs:,}")
    else:
        lines.append(
            f"params = (prod(k)*C/G + 1)*K = ({kprod}*{res.in_channels}/{g} + {1 if res.bias else 0})*{res.out_channels} = {res.params:,}"
        )
        lines.append(f"MACs = K*prod(out)*(C/G)*prod(k) = {res.out_channels}*{'*'.join(map(str, res.output_size))}*{res.in_channels // g}*{kprod} = {res.macs:,}")
    lines.extend(res.notes)
    return lines
