"""convcli: convolution and cross-correlation of images and volumes, and a layer-shape calculator.

The public functions load lazily (PEP 562) so that the CLI's ``--help`` and ``shape`` never pay
for numpy, and nothing at all imports numba until a filter runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .geometry import output_shape

__all__ = ["conv_layer", "convolve", "correlate", "output_shape", "__version__"]
__version__ = "0.2.0"

if TYPE_CHECKING:
    from .engine.api import conv_layer, convolve, correlate


def __getattr__(name: str) -> Any:
    if name in ("conv_layer", "convolve", "correlate"):
        from .engine import api

        value = getattr(api, name)
        globals()[name] = value  # looked up once: small calls in a loop pay no __getattr__
        return value
    msg = f"module 'convcli' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
