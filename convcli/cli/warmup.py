"""``convcli warmup``: compile the engine's kernels into Numba's on-disk cache ahead of time."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from .common import err_console, handle_errors


@handle_errors
def warmup_command(
    quick: Annotated[bool, typer.Option("--quick", help="Only what 8/16-bit images need with float32 accumulation.")] = False,
) -> None:
    """Compile every kernel signature convcli uses; later runs load them from the cache."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

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
