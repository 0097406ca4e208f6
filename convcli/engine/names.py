"""The engine's vocabulary, importable without numpy: methods and border names with their aliases.

The CLI builds its option choices and help text from these, so each list exists once.
"""

from __future__ import annotations

from typing import Literal

from ..errors import ArgumentError, ArgumentTypeError

METHODS = ("auto", "direct", "separable", "fft")
Method = Literal["auto", "direct", "separable", "fft"]

PRECISIONS = ("auto", "float64")
Precision = Literal["auto", "float64"]

BORDERS = ("reflect", "mirror", "nearest", "constant", "wrap")
ALIASES = {
    "symmetric": "reflect",
    "reflect101": "mirror",
    "reflect_101": "mirror",
    "replicate": "nearest",
    "edge": "nearest",
    "zero": "constant",
    "zeros": "constant",
    "circular": "wrap",
    "periodic": "wrap",
}
ZERO_ALIASES = ("zero", "zeros")


def canonical_border(border: str) -> tuple[str, bool]:
    """Canonical border name and whether the alias forces ``cval = 0``."""
    if not isinstance(border, str):
        msg = f"border must be a string, got {border!r}"
        raise ArgumentTypeError(msg)
    word = border.lower().strip()
    if word in BORDERS:
        return word, False
    if word in ALIASES:
        return ALIASES[word], word in ZERO_ALIASES
    msg = f"border={border!r} is not known (use one of {', '.join(BORDERS + tuple(ALIASES))})"
    raise ArgumentError(msg)


def check_method(method: str) -> str:
    if method not in METHODS:
        msg = f"method={method!r} is not one of {', '.join(METHODS)}"
        raise ArgumentError(msg)
    return method


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        msg = f"precision={precision!r} is not one of {', '.join(PRECISIONS)} (auto: float32 sums unless the input is float64)"
        raise ArgumentError(msg)
    return precision


def border_help() -> str:
    """The ``--border`` help text: names, then aliases."""
    return f"{', '.join(BORDERS)} (aliases: {', '.join(ALIASES)})."
