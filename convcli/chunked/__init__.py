"""Chunked filtering of arrays larger than memory: lazy Zarr/OME-Zarr, TIFF and .npy inputs,
computed block by block on Dask (threads, processes or a ``dask.distributed`` cluster) and
written to a chunked Zarr store.

Layering: ``source`` (lazy readers) and ``plan`` (per-block index maps from the engine's own
geometry) feed ``block`` (one output block through the public engine API), ``schedule`` runs the
blocks on Dask, ``store`` writes the result atomically, ``run`` ties them together. Nothing here
imports dask or zarr until a chunked run starts.
"""

from __future__ import annotations

from ..errors import ConvcliError


class ChunkedError(ConvcliError):
    """A chunked input, output or scheduler the user must fix (exit 1); the message says what to
    change. Bad option values are :class:`~convcli.errors.UsageError` (exit 2)."""
