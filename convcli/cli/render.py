"""Human output of ``convcli apply``: a rich table per input, one row per input for batches, the
batch summary, and the progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..pipeline.report import FileReport, Stats
from ..pipeline.runner import BatchOutcome
from .common import fmt_number


def fmt_shape(shape: list[int], axes: str = "") -> str:
    dims = "×".join(map(str, shape))
    return f"{dims} ({', '.join(axes)})" if axes and len(axes) == len(shape) else dims


def _stats_line(label: str, st: Stats) -> str:
    return f"{label}: min {fmt_number(st.min)}  max {fmt_number(st.max)}  mean {fmt_number(st.mean)}  std {fmt_number(st.std)}"


def render_single(console: Any, rep: FileReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    f = rep.filtered
    assert f is not None
    table = Table(title=escape(f"convcli apply: {rep.input} → {rep.output}"), show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("input", f"{fmt_shape(f.input_shape, f.axes)}, {f.dtype}")
    for i, step in enumerate(f.steps, 1):
        tag = f" {i}" if len(f.steps) > 1 else ""
        shape = "×".join(map(str, step.kernel_shape))
        kind = "filter bank (Cout, Cin, k...)" if step.bank else f"sum {fmt_number(step.kernel_sum)}"
        rank = "" if step.separable_rank is None else (
            ", separable (rank 1)" if step.separable_rank == 1 else f", rank {step.separable_rank} (not separable)"
        )
        table.add_row(f"kernel{tag}", escape(f"{step.kernel} ({step.kernel_source}), {shape}, {kind}{rank}"))
        table.add_row(
            f"mode{tag}",
            "conv: true convolution (kernel flipped)" if step.flipped else "corr: cross-correlation (kernel not flipped)",
        )
        table.add_row(f"padding{tag}", ", ".join(f"{b} before / {a} after" for b, a in step.padding) + f"   border {f.border}")
        table.add_row(f"stride / dilation{tag}", f"{'×'.join(map(str, step.stride))} / {'×'.join(map(str, step.dilation))}")
        anchor = ", ".join(fmt_number(a) for a in step.anchor)
        table.add_row(f"anchor{tag}", f"kernel tap ({anchor}) as stored lies over the pixel")
        table.add_row(f"output size{tag}", "\n".join(step.formula))
        table.add_row(f"parameters{tag}", step.params_formula)
        table.add_row(f"MACs{tag}", f"{step.macs:,}")
        table.add_row(f"method{tag}", f"{step.method} ({step.seconds * 1000:.1f} ms)")
    table.add_row("output", f"{fmt_shape(f.output_shape)}, {f.output_dtype} ({rep.format})")
    mp = f.to_json()["mpixels_per_s"]
    table.add_row("time", f"{f.seconds * 1000:.1f} ms filtering" + (f", {mp:.1f} Mpixel/s" if mp else ""))
    lines = [_stats_line("all", f.stats)]
    lines += [_stats_line(f"ch {c}", st) for c, st in enumerate(f.stats.per_channel or ())]
    table.add_row("output stats", "\n".join(lines))
    if f.histogram:
        from ..viz.terminal import blocks

        # unicode blocks from the minimum (left) to the maximum (right) of the written values
        table.add_row("histogram", f"{blocks(f.histogram)}  {fmt_number(f.stats.min)} … {fmt_number(f.stats.max)}")
    table.add_row("clipped", f"{f.clipped:,} values" + (" (use --dtype float32 to keep them)" if f.clipped else ""))
    if f.chunks is not None:
        table.add_row("chunked", f"chunks {'×'.join(map(str, f.chunks))}, scheduler {f.scheduler}, {f.workers} workers")
    if f.alpha:
        table.add_row("alpha", f.alpha)
    if rep.compare:
        table.add_row("picture", escape(rep.compare))
    console.print(table)


def render_batch(console: Any, reps: list[FileReport]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"convcli apply: {len(reps)} outputs", title_justify="left")
    for col in ("input", "output", "shape", "method", "ms", "clipped"):
        table.add_column(col, justify="right" if col in ("ms", "clipped") else "left", overflow="fold")
    for r in reps:
        f = r.filtered
        assert f is not None
        table.add_row(escape(r.input), escape(r.output), "×".join(map(str, f.output_shape)), f.steps[-1].method,
                      f"{f.seconds * 1000:.1f}", f"{f.clipped:,}")  # fmt: skip
    console.print(table)


def render_outcome(console: Any, outcome: BatchOutcome, *, planned: int, as_json: bool) -> None:
    """The table(s) and, for batches or an interruption, the summary line."""
    oks = [r for r in outcome.reports if r.status == "ok"]
    if not as_json and oks:
        if planned == 1:
            render_single(console, oks[0])
        else:
            render_batch(console, oks)
    if planned > 1 or outcome.interrupted:
        n = len(oks)
        rate = n / outcome.seconds if outcome.seconds > 0 else 0.0
        console.print(
            f"{'interrupted: ' if outcome.interrupted else ''}ok {n}, failed {outcome.count('error')}, "
            f"skipped {outcome.count('skipped')} in {outcome.seconds:.2f} s ({rate:.1f} images/s)"
        )


class ProgressBar:
    """Files done, rate, ETA and the current file, on stderr (only when it is a terminal)."""

    def __init__(self, total: int, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
            console=console, transient=False,
        )  # fmt: skip
        self.start = time.perf_counter()
        self.task = self.p.add_task("filtering", total=total, rate="", current="")
        self.p.start()

    def advance(self, current: str) -> None:
        done = self.p.tasks[0].completed + 1
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.p.update(self.task, advance=1, rate=f"{rate:.1f}/s", current=Path(current).name)

    def stop(self) -> None:
        self.p.stop()


class CompileNotice:
    """The engine compiles a kernel for this CPU once (then Numba's cache has it): a spinner on a
    terminal, else one line on stderr; never on stdout."""

    def __init__(self, console: Any, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.status: Any = None
        self.said = False

    def start(self, what: str) -> None:
        text = f"compiling the engine for this CPU, once: {what} (later runs load it from the cache)"
        if self.console.is_terminal:
            self.status = self.console.status(text, spinner="dots")
            self.status.start()
        elif not self.said and not self.quiet:
            self.console.print(f"convcli: {text}", markup=False, highlight=False)
            self.said = True

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


class BlockProgress:
    """Blocks done of one chunked input, with ETA, on stderr (only when it is a terminal)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.p: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.p is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("blocks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                              console=self.console, transient=True)  # fmt: skip
            self.task = self.p.add_task("blocks", total=total)
            self.p.start()
        self.p.update(self.task, completed=done)

    def stop(self) -> None:
        if self.p is not None:
            self.p.stop()
