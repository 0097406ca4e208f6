"""The ``convcli`` Typer application. Command modules import numpy/numba only inside commands,
so ``convcli --help`` and ``convcli shape`` stay fast."""

from __future__ import annotations

from typing import Annotated

import typer

from .apply import apply_command
from .info import info_command
from .kernels import kernels_app
from .shape import shape_command
from .warmup import warmup_command

app = typer.Typer(
    name="convcli",
    help=(
        "Convolve and cross-correlate images and volumes with named or user kernels, and calculate "
        "convolution-layer shapes, parameters and costs."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"convcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """convcli: see the commands below; every command has its own --help."""


app.command("apply", help="Filter images and volumes with kernels; report output shape, parameters and cost.")(apply_command)
app.command("shape", help="Layer calculator: output sizes, padding, parameters, MACs, receptive field (no image needed).")(shape_command)


def main() -> None:
    import os

    from ..engine.cache import default_cache_dir

    # A cache folder of the user's own: works when site-packages is read-only, and warmup can name it.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(default_cache_dir()))
    app(prog_name="convcli")
app.command("info", help="What convcli sees in a file: shape, axes, dtype, pages, mode.")(info_command)
app.add_typer(kernels_app, name="kernels")
app.command("warmup", help="Compile the engine ahead of time (Numba's on-disk cache).")(warmup_command)
