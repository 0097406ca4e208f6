"""The per-file report of ``convcli apply``: typed values, and ``FileReport.to_json()``, which *is*
the NDJSON schema the README documents (one object per input)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "error", "skipped"]


@dataclass(frozen=True)
class Stats:
    """Over finite values of the written array; NaN where a channel has none."""

    min: float
    max: float
    mean: float
    std: float
    per_channel: tuple[Stats, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"min": self.min, "max": self.max, "mean": self.mean, "std": self.std}
        if self.per_channel is not None:
            doc["per_channel"] = [c.to_json() for c in self.per_channel]
        return doc


@dataclass(frozen=True)
class StepReport:
    """One kernel of the chain: its geometry with the formula filled in, its cost and method."""

    kernel: str
    kernel_source: str
    kernel_shape: list[int]
    kernel_sum: float
    separable_rank: int | None  # None for a filter bank
    bank: bool
    mode: str
    flipped: bool
    padding: list[list[int]]
    stride: list[int]
    dilation: list[int]
    input_spatial: list[int]
    output_spatial: list[int]
    formula: list[str]
    params: int
    params_formula: str
    macs: int
    method: str
    seconds: float
    anchor: list[float]  # per axis, the tap of the kernel as stored over input cell i*s of output cell i


@dataclass(frozen=True)
class FilterReport:
    """What filtering one input did (the ``ok`` part of a file's report)."""

    input_shape: list[int]
    axes: str
    dtype: str
    mode: str
    border: str
    steps: tuple[StepReport, ...]
    output_shape: list[int]
    output_dtype: str
    seconds: float
    stats: Stats
    clipped: int
    alpha: str | None  # "kept", "filtered" or None (no alpha)
    # counts over [stats.min, stats.max] for the human report's unicode histogram; not in the JSON
    histogram: tuple[int, ...] = ()
    # chunked runs only (Zarr in or out): the output chunks, the Dask scheduler and its workers
    chunks: list[int] | None = None
    scheduler: str | None = None
    workers: int | None = None

    def to_json(self) -> dict[str, Any]:
        last = self.steps[-1]
        pixels = math.prod(last.input_spatial)
        doc = {
            "input_shape": self.input_shape,
            "axes": self.axes,
            "dtype": self.dtype,
            "kernel": " > ".join(s.kernel for s in self.steps),
            "kernel_shape": last.kernel_shape,
            "mode": self.mode,
            "flipped": self.mode == "conv",
            "border": self.border,
            "padding": last.padding,
            "stride": last.stride,
            "dilation": last.dilation,
            "formula": last.formula,
            "output_shape": self.output_shape,
            "output_dtype": self.output_dtype,
            "params": sum(s.params for s in self.steps),
            "macs": sum(s.macs for s in self.steps),
            "method": last.method,
            "seconds": self.seconds,
            "mpixels_per_s": pixels / 1e6 / self.seconds if self.seconds > 0 else None,
            "stats": self.stats.to_json(),
            "clipped": self.clipped,
            "alpha": self.alpha,
            "steps": [asdict(s) for s in self.steps],
        }
        if self.chunks is not None:
            doc.update(chunks=self.chunks, scheduler=self.scheduler, workers=self.workers)
        return doc


@dataclass(frozen=True)
class FileReport:
    """One input's outcome: ``ok`` with the filter report, ``error`` with a message, or
    ``skipped`` with a reason."""

    input: str
    output: str  # a path, or "-" for stdout
    status: Status
    error: str | None = None
    reason: str | None = None
    filtered: FilterReport | None = None
    format: str | None = None
    wall_seconds: float | None = None
    compare: str | None = None  # the --compare picture written for this input

    def to_json(self) -> dict[str, Any]:
        """The NDJSON object for this input (non-finite floats become null)."""
        doc: dict[str, Any] = {"input": self.input, "status": self.status}
        if self.filtered is not None:
            doc.update(self.filtered.to_json())
            doc.update(output=self.output, format=self.format, wall_seconds=self.wall_seconds)
            if self.compare is not None:
                doc["compare"] = self.compare
        else:
            doc["output"] = self.output
            if self.error is not None:
                doc["error"] = self.error
            if self.reason is not None:
                doc["reason"] = self.reason
        return _finite_or_null(doc)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _finite_or_null(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
