"""The options of ``convcli apply`` as typed values, and the text forms they are parsed from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

from ..errors import UsageError
from ..geometry import Pair
from ..io.limits import DEFAULT_MAX_PIXELS
from ..layers import parse_axes, parse_padding

if TYPE_CHECKING:
    from ..kernels import Kernel

AxisValue = Union[int, tuple[int, ...]]  # one value for every axis, or one per kernel axis
PaddingValue = Union[str, tuple[Pair, ...]]  # a word (same, valid, full) or per-axis pairs


def parse_axis_option(text: str, name: str, minimum: int | None = 1) -> AxisValue:
    """``--stride``/``--dilation``: ``N`` or ``NxM[xL]``, every value >= 1 (``--origin``: any int)."""
    values = parse_axes(text, name, minimum=minimum)
    return values[0] if len(values) == 1 else tuple(values)


def parse_padding_option(text: str) -> PaddingValue:
    """``--padding``: ``same|valid|full``, ``N``, ``NxM`` or ``B:A`` per side, never negative."""
    values = parse_padding(text)
    return values if isinstance(values, str) else tuple(values)


@dataclass(frozen=True)
class FilterOptions:
    """How each input is filtered and cast (the per-file part of ``convcli apply``)."""

    kernels: tuple[Kernel, ...]
    mode: Literal["conv", "corr"] = "conv"
    border: str = "reflect"
    padding: PaddingValue = "same"
    stride: AxisValue = 1
    dilation: AxisValue = 1
    cval: float = 0.0
    method: str = "auto"
    origin: Union[AxisValue, None] = None  # scipy.ndimage's origin; None: the TF/PyTorch split
    precision: Literal["auto", "float64"] = "auto"
    normalize: bool = False
    scale: float = 1.0
    offset: float = 0.0
    absolute: bool = False
    dtype: Literal["keep", "uint8", "uint16", "float32"] = "keep"
    alpha: Literal["keep", "filter"] = "keep"
    summaries: bool = True  # statistics and histogram of each result (False: nobody reads them, -q)


@dataclass(frozen=True)
class ChunkedOptions:
    """How Zarr inputs and outputs run block by block (``--chunks``, ``--component``,
    ``--scheduler``, ``--workers``)."""

    chunks: tuple[int, ...] | None = None  # output chunks per spatial axis; None: the input's
    component: str = ""  # array path inside a Zarr group
    scheduler: str = "threads"  # threads | processes | tcp://HOST:PORT
    workers: int = 0  # Dask threads or processes; 0: one per core


def parse_chunks_option(text: str | None) -> tuple[int, ...] | None:
    """``--chunks Z,Y,X`` (or ``Y,X``): positive ints."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"{text!r}: give positive sizes per spatial axis, e.g. 64,256,256", "--chunks")
    return values


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs and where its results go (the per-call part of ``convcli apply``)."""

    as_json: bool = False
    quiet: bool = False
    traceback: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    keep_metadata: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    stack: bool = False
    fail_fast: bool = False
    jobs: int = 0  # 0: one per core
    chunked: ChunkedOptions = ChunkedOptions()
