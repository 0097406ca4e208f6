"""Array layouts between the caller and the kernels: the accumulation dtype, the canonical
``(C, Z, H, W)`` layout, channels-last data kept interleaved, and back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import geometry
from .tuning import CONVERT_CHUNK, PARALLEL_CONVERT_MIN


def accumulation_dtype(dtype: np.dtype, precision: str = "auto") -> np.dtype:
    """float64 for float64 input or ``precision="float64"``, float32 for everything else (integers included)."""
    d = np.dtype(dtype)
    wide = precision == "float64" or (d.kind == "f" and d.itemsize == 8)  # any byte order
    return np.dtype(np.float64) if wide else np.dtype(np.float32)


def lift3(values: Sequence[int], fill: int = 1) -> tuple[int, int, int]:
    z, y, x = geometry.lift(values, 3, fill)
    return z, y, x


def lift_geometry(geo: geometry.Geometry) -> geometry.Geometry:
    """The same pass on three axes (size-1 leading axes, no padding there)."""
    return geometry.Geometry(
        in_shape=lift3(geo.in_shape),
        kernel_shape=lift3(geo.kernel_shape),
        stride=lift3(geo.stride),
        dilation=lift3(geo.dilation),
        padding=geometry.lift(geo.padding, 3, (0, 0)),
        out_shape=lift3(geo.out_shape),
    )


def as_float(a: np.ndarray, acc: np.dtype) -> np.ndarray:
    """A C-contiguous, writable copy-if-needed of ``a`` in ``acc``, converted in parallel."""
    if a.dtype == acc and a.flags.c_contiguous and a.flags.writeable:
        return a
    if a.size < PARALLEL_CONVERT_MIN or not a.flags.c_contiguous:
        return np.array(a, dtype=acc, order="C")
    from . import buffers, tasks
    from ._convert import to_float

    out = buffers.empty(a.shape, acc)
    tasks.run(to_float, -(-a.size // CONVERT_CHUNK), a.reshape(-1), out.reshape(-1), work=a.size)
    return out


RAW_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))  # the direct kernel reads these as they are


def _kernel_ready(a: np.ndarray, acc: np.dtype, raw: bool) -> np.ndarray:
    """``a`` as the kernels take it: in ``acc``, or with ``raw`` an 8/16-bit array as it is (the
    direct kernel converts each row as it copies it into its strip: no float copy of the input)."""
    if raw and a.dtype in RAW_DTYPES:
        return a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C")
    return as_float(a, acc)


def interleaved_input(a: np.ndarray, acc: np.dtype, raw: bool = False) -> np.ndarray:
    """Channels-last (*spatial, C) as one channel (1, Z, H, W*C), without a transpose."""
    xf = _kernel_ready(a, acc, raw)
    *spatial, c = xf.shape
    z, h, w = lift3(spatial)
    return xf.reshape((1, z, h, w * c))


def interleave_map(xmap: np.ndarray, channels: int) -> np.ndarray:
    """Pixel index map -> interleaved index map: padded cell p*C+ch reads m*C+ch (or -1)."""
    ch = np.arange(channels, dtype=np.int64)
    m = xmap[:, None] * channels + ch[None, :]
    return np.where(xmap[:, None] < 0, -1, m).reshape(-1)


def planar_input(a: np.ndarray, has_channels: bool, acc: np.dtype, raw: bool = False) -> np.ndarray:
    """(C, Z, H, W) C-contiguous writable array in the accumulation dtype (with ``raw``, 8/16-bit
    data as it is): one copy at most."""
    if not has_channels:
        return _kernel_ready(a, acc, raw).reshape((1, *lift3(a.shape)))  # copies read-only input
    keep = raw and a.dtype in RAW_DTYPES
    planar = np.ascontiguousarray(np.moveaxis(a, -1, 0), dtype=a.dtype if keep else acc)
    if not planar.flags.writeable:  # np.asarray(PIL image) is read-only; numba types those apart
        planar = planar.copy()
    return planar.reshape((planar.shape[0], *lift3(planar.shape[1:])))


def restore(out: np.ndarray, spatial_out: tuple[int, ...], has_channels: bool) -> np.ndarray:
    """(C, Z, H, W) kernel output -> the caller's (*spatial[, C])."""
    channels = out.shape[0]
    if not has_channels:
        return out.reshape(spatial_out)
    return np.ascontiguousarray(np.moveaxis(out.reshape((channels, *spatial_out)), 0, -1))


def depthwise(k3: np.ndarray, channels: int, acc: np.dtype) -> np.ndarray:
    """One kernel for each of ``channels`` groups: the direct kernel's (Cout, 1, KD, KH, KW) bank."""
    bank = np.empty((channels, 1, *k3.shape), dtype=acc)
    bank[:, 0] = k3
    return bank
