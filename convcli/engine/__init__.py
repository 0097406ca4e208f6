"""The engine, one module per concern:

- ``api``: the public typed functions (correlate, convolve, conv_layer, run_filter, run_layer)
- ``validate``: argument checks; ``names``: methods and borders (no numpy)
- ``plan``: the Plan (geometry, method, layout) decided before anything runs
- ``dispatch``: runs a plan on the private kernels; ``layout``: array layouts and dtypes
- ``tuning``: every block size, threshold and the ``auto`` cost model
- ``postprocess``: back to integer types, statistics
- private Numba kernels: ``_direct``, ``_convert``, ``_stats``; ``_fft`` (numpy FFT); ``_borders``
  (index maps); ``_factor`` (separability); ``_jit`` (the only place with JIT options)
"""
