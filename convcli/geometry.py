"""Pure integer arithmetic of convolution layers: padding splits, output sizes, parameters, MACs,
receptive fields.

No numpy and no numba here: the engine, the CLI report and ``convcli shape`` all call these
functions, and ``convcli shape`` must answer without loading the numeric stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar, Union

from .errors import ArgumentError, ArgumentTypeError

T = TypeVar("T")
Pair = tuple[int, int]
PaddingArg = Union[str, int, Sequence[Union[int, Sequence[int]]]]
OriginArg = Union[None, int, Sequence[int]]

PADDING_WORDS = ("same", "valid", "full")


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import operator

            return operator.index(value)  # type: ignore[arg-type]  # numpy integers
        except TypeError:
            msg = f"{name} must be an integer, got {value!r}"
            raise ArgumentTypeError(msg) from None
    return value


def axis_values(values: Sequence[T], ndim: int, name: str, axes_of: str = "") -> tuple[T, ...]:
    """One value per axis, where a single value stands for every axis (``-s 2`` on a volume);
    ``axes_of`` names what fixes the axis count, for the message."""
    if len(values) == 1:
        return tuple(values) * ndim
    if len(values) != ndim:
        against = f"{axes_of} has {ndim}" if axes_of else f"there are {ndim} spatial axes"
        msg = f"{name}={list(values)!r} gives {len(values)} axes but {against}; give one value or {ndim}"
        raise ArgumentError(msg)
    return tuple(values)


def per_axis(value: int | Sequence[int], ndim: int, name: str, minimum: int | None = 1) -> tuple[int, ...]:
    """An int, or exactly one int per axis, as ``ndim`` ints each ``>= minimum`` (the API's rule;
    ``minimum=None``: any int)."""
    if isinstance(value, (list, tuple)):
        values = tuple(_as_int(v, name) for v in value)
        if len(values) != ndim:
            msg = f"{name}={value!r} gives {len(values)} values for {ndim} spatial axes"
            raise ArgumentError(msg)
    else:
        values = (_as_int(value, name),) * ndim
    for v in values:
        if minimum is not None and v < minimum:
            msg = f"{name}={value!r}: every value must be >= {minimum}"
            raise ArgumentError(msg)
    return values


def lift(values: Sequence[T], ndim: int, fill: T) -> tuple[T, ...]:
    """``values`` for the last axes, ``fill`` for the leading ones (a 2-D kernel on a volume)."""
    return (fill,) * (ndim - len(values)) + tuple(values)


def effective_kernel(k: int, d: int) -> int:
    """Extent of a kernel of ``k`` taps spaced ``d`` apart: ``d*(k-1) + 1``."""
    return d * (k - 1) + 1


def same_padding(n: int, k: int, s: int = 1, d: int = 1) -> Pair:
    """TensorFlow/PyTorch "same": ``out = ceil(n/s)``, the odd cell goes at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + effective_kernel(k, d) - n, 0)
    before = total // 2
    return before, total - before


def origin_padding(n: int, k: int, s: int, d: int, origin: int, *, flip: bool = False, axis: int | None = None) -> Pair:
    """A "same" output (``ceil(n/s)`` cells) anchored by scipy.ndimage's ``origin``.

    As scipy does on the (dilated) kernel of extent ``e = d*(k-1) + 1``: correlation puts tap
    ``e//2 + origin`` over each input cell, so ``before = e//2 + origin``; convolution is
    correlation with the flipped kernel and origin ``-origin - 1`` for an even extent, else
    ``-origin``. Valid origins: ``-(e//2) <= origin <= (e-1)//2``, as in scipy.
    """
    e = effective_kernel(k, d)
    if not -(e // 2) <= origin <= (e - 1) // 2:
        where = "" if axis is None else f" on axis {axis}"
        msg = (
            f"origin={origin}{where} is outside the kernel: a kernel of extent {e} takes origins "
            f"{-(e // 2)} to {(e - 1) // 2} (the anchor tap e//2 + origin must lie in the kernel)"
        )
        raise ArgumentError(msg)
    before = e // 2 - origin - (1 - e % 2) if flip else e // 2 + origin
    out = -(-n // s)
    return before, max(0, (out - 1) * s + e - n - before)


def resolve_padding(
    padding: PaddingArg,
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[Pair, ...]:
    """Per-axis ``(before, after)`` padding for a word, an int, per-axis ints or pairs."""
    ndim = len(kernel_shape)
    if isinstance(padding, str):
        word = padding.lower()
        if word == "same":
            return tuple(
                same_padding(n, k, s, d) for n, k, s, d in zip(in_shape, kernel_shape, stride, dilation)
            )
        if word == "valid":
            return ((0, 0),) * ndim
        if word == "full":
            return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel_shape, dilation))
        msg = f"padding={padding!r} is not one of {', '.join(PADDING_WORDS)} or a number"
        raise ArgumentError(msg)
    if isinstance(padding, (list, tuple)):
        items = list(padding)
        if len(items) != ndim:
            msg = f"padding={padding!r} gives {len(items)} entries for {ndim} spatial axes"
            raise ArgumentError(msg)
    else:
        items = [padding] * ndim
    pairs: list[Pair] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            if len(item) != 2:
                msg = f"padding={padding!r}: a per-axis entry must be an int or a (before, after) pair"
                raise ArgumentError(msg)
            pair = (_as_int(item[0], "padding"), _as_int(item[1], "padding"))
        else:
            p = _as_int(item, "padding")
            pair = (p, p)
        if pair[0] < 0 or pair[1] < 0:
            msg = f"padding={padding!r}: padding cannot be negative"
            raise ArgumentError(msg)
        pairs.append(pair)
    return tuple(pairs)


def output_size(n: int, k: int, s: int, d: int, before: int, after: int, *, axis: int | None = None) -> int:
    """``floor((n + before + after - d*(k-1) - 1) / s) + 1``; an error if below 1."""
    numerator = n + before + after - d * (k - 1) - 1
    if numerator < 0:
        where = "" if axis is None else f" on axis {axis}"
        msg = (
            f"output size below 1{where}: n + before + after - d*(k-1) - 1 = "
            f"{n} + {before} + {after} - {d}*({k}-1) - 1 = {numerator} < 0 "
            f"(the padded input {n + before + after} is smaller than the effective kernel "
            f"{effective_kernel(k, d)}; the smallest input that works is {max(1, effective_kernel(k, d) - before - after)}, "
            "or add padding, or use a smaller kernel or dilation)"
        )
        raise ArgumentError(msg)
    return numerator // s + 1


def output_shape(
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    padding: PaddingArg = "same",
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
) -> tuple[int, ...]:
    """Spatial output shape of a correlation/convolution (SPEC §2)."""
    geo = plan_geometry(in_shape, kernel_shape, padding=padding, stride=stride, dilation=dilation)
    return geo.out_shape


@dataclass(frozen=True)
class Geometry:
    """Everything about one sliding-window pass that does not depend on values."""

    in_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[Pair, ...]
    out_shape: tuple[int, ...]

    def anchor(self, flip: bool = False) -> tuple[float, ...]:
        """Per axis, the tap of the kernel as given that lies over input cell ``i*s`` of output
        cell ``i`` (``before / d``; with ``flip``, counted in the unflipped kernel). Whole for
        "same" padding without dilation; between two taps when ``before`` is not a multiple of ``d``."""
        taps = []
        for k, d, (before, _) in zip(self.kernel_shape, self.dilation, self.padding):
            j = before / d
            taps.append(float(k - 1 - j if flip else j))
        return tuple(taps)

    def formula(self, axis: int, name: str = "out") -> str:
        """The seed's formula with this axis' numbers substituted."""
        n, k, s, d = self.in_shape[axis], self.kernel_shape[axis], self.stride[axis], self.dilation[axis]
        b, a = self.padding[axis]
        keff = effective_kernel(k, d)
        kterm = str(k) if d == 1 else f"{keff}"
        num = n + b + a - keff
        exact = "" if num % s == 0 else f" = floor({num}/{s}) + 1"
        return f"{name} = ({n} + {b} + {a} - {kterm})/{s} + 1{exact} = {self.out_shape[axis]}"


def plan_geometry(
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    padding: PaddingArg = "same",
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    origin: OriginArg = None,
    flip: bool = False,
) -> Geometry:
    """The pass's geometry; ``origin`` (with ``"same"`` padding only) anchors the kernel as
    scipy.ndimage does, for correlation or (``flip``) convolution: see :func:`origin_padding`."""
    ndim = len(kernel_shape)
    if len(in_shape) != ndim:
        msg = f"input shape {tuple(in_shape)} and kernel shape {tuple(kernel_shape)} have different axis counts"
        raise ArgumentError(msg)
    for k in kernel_shape:
        if k < 1:
            msg = f"kernel shape {tuple(kernel_shape)}: every size must be >= 1"
            raise ArgumentError(msg)
    for n in in_shape:
        if n < 1:
            msg = f"input shape {tuple(in_shape)}: every size must be >= 1"
            raise ArgumentError(msg)
    strides = per_axis(stride, ndim, "stride")
    dilations = per_axis(dilation, ndim, "dilation")
    if origin is None:
        pads = resolve_padding(padding, in_shape, kernel_shape, strides, dilations)
    else:
        if not (isinstance(padding, str) and padding.lower() == "same"):
            msg = (
                f"origin={origin!r} needs padding='same', got padding={padding!r} (origin places the kernel "
                "over each cell of a same-size output, as in scipy.ndimage; explicit padding already places it)"
            )
            raise ArgumentError(msg)
        origins = per_axis(origin, ndim, "origin", minimum=None)
        pads = tuple(
            origin_padding(n, k, s, d, o, flip=flip, axis=i)
            for i, (n, k, s, d, o) in enumerate(zip(in_shape, kernel_shape, strides, dilations, origins))
        )
    out = tuple(
        output_size(n, k, s, d, b, a, axis=i)
        for i, (n, k, s, d, (b, a)) in enumerate(zip(in_shape, kernel_shape, strides, dilations, pads))
    )
    return Geometry(tuple(in_shape), tuple(kernel_shape), strides, dilations, pads, out)


def check_padded_extent(geo: Geometry, limit: int) -> None:
    """Refuse a geometry whose padded input (index maps, FFT buffers) is larger than ``limit``
    cells and than 16 times the input: huge dilation or padding on a small image would grow
    memory with the padded extent, not with the output."""
    padded = [n + b + a for n, (b, a) in zip(geo.in_shape, geo.padding)]
    cells = math.prod(padded)
    if limit and cells > max(limit, 16 * math.prod(geo.in_shape)):
        msg = (
            f"padding {[list(p) for p in geo.padding]} with dilation {list(geo.dilation)} makes the "
            f"{'x'.join(map(str, geo.in_shape))} input {'x'.join(map(str, padded))} ({cells:,} cells), over "
            f"the limit of --max-pixels {limit:,}; reduce --dilation, --padding or the kernel size"
        )
        raise ArgumentError(msg)



def transposed_output_size(n: int, k: int, s: int, d: int, before: int, after: int, *, output_padding: int) -> int:
    """PyTorch ConvTranspose: ``(n-1)*s - before - after + d*(k-1) + output_padding + 1``."""
    return (n - 1) * s - before - after + d * (k - 1) + output_padding + 1


def pool_output_size(n: int, k: int, s: int, d: int, before: int, after: int, *, ceil_mode: bool) -> int:
    """PyTorch pooling: with ``ceil_mode`` the last window must start inside input or left padding."""
    span = n + before + after - effective_kernel(k, d)
    if not ceil_mode:
        if span < 0:
            return output_size(n, k, s, d, before, after)  # raises with the numbers
        return span // s + 1
    # PyTorch: ceil((n + b + a - keff)/s) + 1, less the last window if it starts in the right
    # padding; a window may end past the padded edge (n=5, k=6, s=4 gives 1).
    out = -(-span // s) + 1
    if out >= 1 and (out - 1) * s >= n + before:
        out -= 1
    if out < 1:
        return output_size(n, k, s, d, before, after)  # raises with the numbers
    return out


def conv_params(in_channels: int, out_channels: int, kernel_shape: Sequence[int], groups: int = 1, bias: bool = True) -> int:
    """``K*(C/G)*prod(k) + K`` (no ``+K`` without bias); the seed's ``(w*h*Din + 1)*k`` for G=1."""
    return out_channels * (in_channels // groups) * math.prod(kernel_shape) + (out_channels if bias else 0)


def transposed_params(in_channels: int, out_channels: int, kernel_shape: Sequence[int], groups: int = 1, bias: bool = True) -> int:
    """``C*(K/G)*prod(k) + K``: PyTorch's ConvTranspose weight is ``(C, K/G, *k)``."""
    return in_channels * (out_channels // groups) * math.prod(kernel_shape) + (out_channels if bias else 0)


def conv_macs(in_channels: int, out_channels: int, kernel_shape: Sequence[int], out_shape: Sequence[int], groups: int = 1) -> int:
    """``K*prod(out)*(C/G)*prod(k)``."""
    return out_channels * math.prod(out_shape) * (in_channels // groups) * math.prod(kernel_shape)


def transposed_macs(in_channels: int, out_channels: int, kernel_shape: Sequence[int], in_shape: Sequence[int], groups: int = 1) -> int:
    """``C*prod(in)*(K/G)*prod(k)``: every input cell scatters one kernel per output channel."""
    return in_channels * math.prod(in_shape) * (out_channels // groups) * math.prod(kernel_shape)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output cell on the network input, per axis."""

    size: int
    jump: int
    start: float

    def then(self, k: int, s: int, d: int, before: int) -> ReceptiveField:
        keff = effective_kernel(k, d)
        return ReceptiveField(
            size=self.size + (keff - 1) * self.jump,
            jump=self.jump * s,
            start=self.start + ((keff - 1) / 2 - before) * self.jump,
        )


INPUT_FIELD = ReceptiveField(size=1, jump=1, start=0.0)
