"""What every command shares: exit codes, consoles, the one-line error format."""

from __future__ import annotations

import os
import sys
from enum import IntEnum
from typing import NoReturn

import typer


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3
    INTERRUPTED = 130


class UsageError(Exception):
    """A bad option, kernel or argument: exit 2 with one line on stderr."""


def _console(stderr: bool):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def out_console():  # type: ignore[no-untyped-def]
    return _console(False)


def err_console():  # type: ignore[no-untyped-def]
    return _console(True)


def error_line(where: str, what: str) -> str:
    where = f"{where}: " if where else ""
    return f"convcli: error: {where}{what}"


def print_error(where: str, what: str) -> None:
    print(error_line(where, what), file=sys.stderr, flush=True)


def fail(where: str, what: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    print_error(where, what)
    raise typer.Exit(int(code))
