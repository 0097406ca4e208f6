"""``convcli warmup``: compile the engine's kernels into Numba's on-disk cache ahead of time."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from .common import err_console, handle_errors


@handle_errors
def warmup_command(
    quick: Annotated[bool, typer.Option("--quick", help="Only what 8/16-bit images need with float32 accumulation.")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Measure this machine's direct kernel against the FFT again.")] = False,
) -> None:
    """Compile every kernel signature convcli uses and measure this machine's direct kernel against
    the FFT (what method=auto weighs); later runs load both from the cache."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..engine import calibration
    from ..engine.cache import cache_dir, warmup

    t0 = time.perf_counter()
    console = err_console()
    with Progress(TextColumn("compiling"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  console=console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("", total=1)

        def progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=name, completed=done, total=total)

        count = warmup(progress, full=not quick)
    typer.echo(f"convcli: {count} engine kernels ready in {time.perf_counter() - t0:.1f} s, cached in {cache_dir()}")
    if not calibration.enabled():
        typer.echo("convcli: no calibration (CONVCLI_CALIBRATION=off, the numpy back end or NUMBA_DISABLE_JIT): method=auto uses the fitted cost model")
        return
    entry = calibration.calibrate(again=calibrate)
    typer.echo(
        f"convcli: direct kernel {entry['direct_scale']:.2f}x the fitted cost against the FFT ({entry['fft']}; "
        f"9x9 direct {entry['direct_9x9_ms']:.1f} ms, 31x31 FFT {entry['fft_31x31_ms']:.1f} ms on {entry['side']}^2)"
    )
