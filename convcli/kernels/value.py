"""The Kernel value: an array with the name and source it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import KernelError

__all__ = ["Kernel", "KernelError"]


MAX_TAPS = 1 << 20  # taps per kernel (or filter bank): far beyond any useful filter, cheap to refuse
MAX_FILE_BYTES = 16 << 20  # kernel and layer-spec files: parsing more takes seconds and says nothing new
FLOAT32_MAX = 3.4028234663852886e38  # kernels are applied in float32 for integer and float32 images


@dataclass(frozen=True)
class Kernel:
    """A single kernel ``(k...)`` with 1-3 axes, or a filter bank ``(Cout, Cin, k...)``."""

    array: np.ndarray
    name: str
    source: str
    description: str = ""
    bias: np.ndarray | None = None
    offset: float = 0.0  # added to the output (libvips .mat files carry one)
    bank: bool = False

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[2:] if self.bank else self.array.shape)

    @property
    def ndim(self) -> int:
        return len(self.spatial_shape)

    def flipped(self) -> np.ndarray:
        """The array as slid in ``--mode conv`` (every spatial axis reversed)."""
        lead = (slice(None),) * (2 if self.bank else 0)
        return self.array[lead + (slice(None, None, -1),) * self.ndim]
