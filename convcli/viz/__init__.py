"""Pictures of kernels and of what they do (Pillow + NumPy only).

Drawing is a pure function from arrays to a :class:`Figure` (a Pillow image plus, per panel, the
numbers drawn and where), so tests can check values as well as pixels. Writing the PNG is the
caller's job (atomically, through ``convcli.io.write``). The CLI imports this package lazily:
``--help`` and ``shape`` never load numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Figure", "FreqResponse", "Panel", "frequency_response", "kernel_figure", "views"]

if TYPE_CHECKING:
    from .canvas import Figure, Panel
    from .kernel import FreqResponse, frequency_response, kernel_figure, views


def __getattr__(name: str) -> Any:
    # lazily: `apply` imports viz.terminal for its report's histogram on every run, and must not
    # pay for Pillow drawing or the colour maps (built on first use, about 0.25 s)
    if name in ("Figure", "Panel"):
        from . import canvas

        return getattr(canvas, name)
    if name in ("FreqResponse", "frequency_response", "kernel_figure", "views"):
        from . import kernel

        return getattr(kernel, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
