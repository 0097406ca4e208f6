"""Pictures of kernels and of what they do (Pillow + NumPy only).

Drawing is a pure function from arrays to a :class:`Figure` (a Pillow image plus, per panel, the
numbers drawn and where), so tests can check values as well as pixels. Writing the PNG is the
caller's job (atomically, through ``convcli.io.write``). The CLI imports this package lazily:
``--help`` and ``shape`` never load numpy.
"""

from __future__ import annotations

from .canvas import Figure, Panel
from .kernel import FreqResponse, frequency_response, kernel_figure, views

__all__ = ["Figure", "FreqResponse", "Panel", "frequency_response", "kernel_figure", "views"]
