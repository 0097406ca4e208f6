"""Every error convcli raises on purpose, under one base that carries the exit code.

Pure Python (no numpy): geometry, the engine, I/O, the pipeline and the CLI all raise these, and the
CLI maps them to one line on stderr and the exit code in one place. Anything else that escapes is
an internal error (a bug): exit 1, one line, a traceback only with ``--traceback``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3
    INTERRUPTED = 130


class ConvcliError(Exception):
    """Base of convcli's own errors; ``where`` names the input or option at fault (may be empty)."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


class ArgumentError(ConvcliError, ValueError):
    """A bad argument value (geometry, engine, options). Also a ``ValueError`` for API users."""

    exit_code = ExitCode.USAGE


class ArgumentTypeError(ConvcliError, TypeError):
    """An argument of the wrong type (non-numeric array, string where an int belongs)."""

    exit_code = ExitCode.USAGE


class UsageError(ArgumentError):
    """A bad command-line option or combination of options."""


class KernelError(ArgumentError):
    """A kernel that cannot be read or built; the message names it and what to change."""


class LayerError(ArgumentError):
    """A layer that cannot be built; the message names the layer and what to change."""


class ReadError(ConvcliError):
    """An input that cannot be read; the message says what is wrong and what to change."""


class WriteError(ConvcliError):
    """An output that cannot be written; the message says what to change."""


class ProcessError(ArgumentError):
    """An input and options that do not fit together (a 3-D kernel on a 2-D image, ...)."""


class Interrupted(ConvcliError):
    """Ctrl-C or SIGTERM while a batch ran."""

    exit_code = ExitCode.INTERRUPTED


def error_line(where: str, what: str) -> str:
    """The one-line error format, ``convcli: error: <where>: <what>``; control characters are
    escaped so that a newline in a file name cannot forge a second line."""
    text = f"convcli: error: {where}: {what}" if where else f"convcli: error: {what}"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
