"""The ``convcli`` Typer application. Command modules import numpy/numba only inside commands,
so ``convcli --help`` and ``convcli shape`` stay fast."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .apply import apply_command
from .info import info_command
from .kernels import kernels_app
from .shape import shape_command
from .warmup import warmup_command


class ConvcliGroup(TyperGroup):
    """Typer's group with convcli's error manners: a usage error from option parsing is one
    ``convcli: error:`` line and exit 2 (not Typer's multi-line box)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **kw: Any) -> Any:  # fmt: skip
        from .common import ExitCode, click_exceptions, print_error

        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                               windows_expand_args=windows_expand_args, **kw)  # fmt: skip
        except click_exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(int(ExitCode.USAGE))
        except click_exceptions.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            print_error("", exc.format_message().rstrip(".") + hint)
            sys.exit(int(ExitCode.USAGE))
        except click_exceptions.ClickException as exc:
            print_error("", exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("", "interrupted")
            sys.exit(int(ExitCode.INTERRUPTED))
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=ConvcliGroup,
    name="convcli",
    help=(
        "Convolve and cross-correlate images and volumes with named or user kernels, and calculate "
        "convolution-layer shapes, parameters and costs."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain Click help: Typer's rich help imports 0.15 s of modules on every --help
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


def _terminate(signum: int, frame: Any) -> None:
    # Raised in the main thread, so a read blocked on stdin or a FIFO ends too (exit 130).
    raise KeyboardInterrupt


def main() -> None:
    import os
    import warnings

    from ..engine.cache import default_cache_dir

    # A cache folder of the user's own: works when site-packages is read-only, and warmup can name it.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(default_cache_dir()))
    # Pillow warns of a damaged EXIF block (and reads the pixels): not an error line of ours
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    app(prog_name="convcli")
app.command("info", help="What convcli sees in a file: shape, axes, dtype, pages, mode.")(info_command)
app.add_typer(kernels_app, name="kernels")
app.command("warmup", help="Compile the engine ahead of time (Numba's on-disk cache).")(warmup_command)
