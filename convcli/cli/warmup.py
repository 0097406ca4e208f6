"""``convcli warmup``: compile the engine's kernels into Numba's on-disk cache ahead of time."""

from __future__ import annotations

import time

import typer

from .common import handle_errors


@handle_errors
def warmup_command() -> None:
    """Compile every kernel signature convcli uses (later runs load them from the cache)."""
    t0 = time.perf_counter()
    from ..engine.api import warmup

    warmup()
    typer.echo(f"convcli: engine ready in {time.perf_counter() - t0:.1f} s (cached for later runs)")
