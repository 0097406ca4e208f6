"""Chunked filtering of arrays larger than memory: lazy Zarr/OME-Zarr, TIFF and .npy inputs,
computed block by block on Dask (threads, processes or a ``dask.distributed`` cluster) and
written to a chunked Zarr store.

Layering: ``source`` (lazy readers) and ``plan`` (per-block index maps from the engine's own
geometry) feed ``block`` (one output block through the public engine API), ``schedule`` runs the
blocks on Dask, ``store`` writes the result atomically, ``run`` ties them together. Nothing here
imports dask or zarr until a chunked run starts.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConvcliError


class ChunkedError(ConvcliError):
    """A chunked input, output or scheduler the user must fix (exit 1); the message says what to
    change. Bad option values are :class:`~convcli.errors.UsageError` (exit 2)."""


def is_zarr_path(path: str | Path) -> bool:
    """A ``.zarr`` name, or a folder holding Zarr metadata (no numpy, no zarr imported)."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))


def require_extras(modules: tuple[str, ...] = ("zarr", "dask")) -> None:
    """The chunked path's optional dependencies, or a :class:`ChunkedError` naming the extra that
    installs them (instead of an ImportError deep inside a run)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        msg = f"Zarr input and output and --scheduler need {', '.join(missing)}, not installed here: pip install 'convcli[zarr]'"
        raise ChunkedError(msg)
