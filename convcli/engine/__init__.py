"""The engine: typed API (``api``) over private Numba kernels (``_direct``)."""
