"""Kernels: the Kernel value, parsers for every kernel format, generators, the named registry."""

from .registry import available, resolve
from .value import Kernel, KernelError

__all__ = ["Kernel", "KernelError", "available", "resolve"]
