"""Argument checks of the engine API: every message names the parameter, the value and the fix.

Errors are :class:`~convcli.errors.ArgumentError` (a ``ValueError``) and
:class:`~convcli.errors.ArgumentTypeError` (a ``TypeError``), so API users can catch the builtins
and the CLI can tell a user's mistake from a bug.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArgumentError, ArgumentTypeError

_KIND_NAMES = {"b": "boolean", "c": "complex", "O": "object", "U": "string", "S": "bytes"}


def check_numeric(a: np.ndarray, name: str) -> None:
    kind = a.dtype.kind
    if kind not in "iuf":
        what = _KIND_NAMES.get(kind, str(a.dtype))
        msg = f"{name} has dtype {a.dtype} ({what}); give an integer or real floating-point array"
        raise ArgumentTypeError(msg)


def check_kernel(kernel: object, *, max_ndim: int = 3, name: str = "kernel") -> np.ndarray:
    """A finite, non-empty numeric kernel of 1..max_ndim axes, as float64."""
    k = np.asarray(kernel)
    check_numeric(k, name)
    if k.ndim < 1 or k.ndim > max_ndim:
        msg = f"{name} has {k.ndim} axes (shape {k.shape}); give 1 to {max_ndim} axes"
        raise ArgumentError(msg)
    if k.size == 0:
        msg = f"{name} is empty (shape {k.shape})"
        raise ArgumentError(msg)
    k = k.astype(np.float64)
    if not np.isfinite(k).all():  # (the method: this runs on every small call)
        msg = f"{name} contains NaN or Inf; every tap must be a finite number"
        raise ArgumentError(msg)
    return k


def check_input(x: object, kernel_ndim: int) -> tuple[np.ndarray, bool]:
    """``x`` as an array, and whether its last axis is channels."""
    a = np.asarray(x)
    check_numeric(a, "x")
    if a.ndim == kernel_ndim:
        has_channels = False
    elif a.ndim == kernel_ndim + 1:
        has_channels = True
    else:
        msg = (
            f"x has shape {a.shape} and the kernel has {kernel_ndim} axes: x must have {kernel_ndim} "
            f"axes (one channel) or {kernel_ndim + 1} (channels last)"
        )
        raise ArgumentError(msg)
    if a.size == 0:
        msg = f"x is empty (shape {a.shape})"
        raise ArgumentError(msg)
    return a, has_channels


def check_out(out: object, shape: tuple[int, ...]) -> np.ndarray:
    """A caller's result array: an ndarray of ``shape``, float32 or float64, writable."""
    if not isinstance(out, np.ndarray):
        msg = f"out must be a numpy array (float32 or float64 of the result's shape {shape}), got {type(out).__name__}"
        raise ArgumentTypeError(msg)
    if out.dtype not in (np.float32, np.float64):
        msg = f"out has dtype {out.dtype}; give float32 or float64 (the result is float, never clipped)"
        raise ArgumentTypeError(msg)
    if out.shape != shape:
        msg = f"out has shape {out.shape} but the result has shape {shape}"
        raise ArgumentError(msg)
    if not out.flags.writeable:
        msg = "out is read-only; give a writable array"
        raise ArgumentError(msg)
    return out


def check_weight(weight: object) -> np.ndarray:
    """A layer's ``(Cout, Cin, *k)`` weight with 1 to 3 kernel axes, as float64."""
    w = np.asarray(weight)
    check_numeric(w, "weight")
    if w.ndim < 3 or w.ndim > 5:
        msg = f"weight has shape {w.shape}; give (Cout, Cin, *kernel) with 1 to 3 kernel axes"
        raise ArgumentError(msg)
    return check_kernel(w, max_ndim=5, name="weight")


def check_layer_input(x: object, weight_shape: tuple[int, ...]) -> np.ndarray:
    cin, kdim = weight_shape[1], len(weight_shape) - 2
    a = np.asarray(x)
    check_numeric(a, "x")
    if a.ndim != kdim + 1:
        msg = f"x has shape {a.shape}; a layer with {kdim}-axis kernels needs channels-last x with {kdim + 1} axes"
        raise ArgumentError(msg)
    if a.shape[-1] != cin:
        msg = f"x has {a.shape[-1]} channels (shape {a.shape}) but weight {weight_shape} expects Cin = {cin}"
        raise ArgumentError(msg)
    if a.size == 0:
        msg = f"x is empty (shape {a.shape})"
        raise ArgumentError(msg)
    return a


def check_bias(bias: object | None, cout: int, weight_shape: tuple[int, ...]) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.asarray(bias)
    check_numeric(b, "bias")
    if b.shape != (cout,):
        msg = f"bias has shape {b.shape}; weight {weight_shape} needs ({cout},)"
        raise ArgumentError(msg)
    if not np.all(np.isfinite(b)):
        msg = "bias contains NaN or Inf"
        raise ArgumentError(msg)
    return b


def check_mode(mode: str) -> str:
    if mode not in ("corr", "conv"):
        msg = f"mode={mode!r} is not 'corr' or 'conv'"
        raise ArgumentError(msg)
    return mode
