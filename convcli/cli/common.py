"""What every command shares: consoles, the one-line error format, and the one place where
errors become exit codes (:func:`handle_errors`)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

try:  # Typer >= 0.22 vendors Click (and may be installed without it); the commands raise these
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from ..errors import ConvcliError, ExitCode, error_line

__all__ = ["ExitCode", "click_exceptions", "err_console", "error_line", "fmt_number", "handle_errors", "out_console", "print_error"]

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def out_console() -> Any:
    return _console(False)


def err_console() -> Any:
    return _console(True)


def fmt_number(v: float | int | None) -> str:
    """``-`` for None, whole numbers without a decimal point, others to 6 significant digits."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"
    return str(v)


def print_error(where: str, what: str) -> None:
    print(error_line(where, what), file=sys.stderr, flush=True)


def handle_errors(command: F) -> F:
    """Wrap a Typer command: a ConvcliError prints one line and exits with its code; any other
    exception is an internal error (exit 1, one line; the traceback only with ``--traceback``)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exceptions.ClickException, KeyboardInterrupt):
            raise
        except ConvcliError as exc:
            if kwargs.get("traceback"):
                import traceback

                traceback.print_exc()
            print_error(exc.where, str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except Exception as exc:
            if kwargs.get("traceback") or "--traceback" in sys.argv[1:]:
                import traceback

                traceback.print_exc()
            print_error("", f"internal error {type(exc).__name__}: {exc} (rerun with --traceback and report it)")
            raise typer.Exit(int(ExitCode.FAILED)) from None

    return wrapper  # type: ignore[return-value]
