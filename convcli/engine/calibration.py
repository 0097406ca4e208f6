"""This machine's direct kernel against its FFT, measured once and stored beside the compiled kernels.

The cost model behind ``method="auto"`` (``tuning.method_costs``) was fitted on one CPU. How fast
the direct kernel runs against an FFT differs by several times between CPUs (2-D direct per
multiply-add: AVX-512 Xeon against an AVX2 Zen 1, whose FMA units are 128 bits wide), so where the
fit alone could pick the wrong method (``tuning.calibration_matters``), ``auto`` asks
:func:`direct_scale`: a 9x9 direct filter and a 31x31 FFT filter timed on this machine, about 0.3 s,
stored in ``calibration.json`` in Numba's cache folder (``NUMBA_CACHE_DIR``, else the CLI's
default) under the CPU and the FFT library. Later processes read it, so a machine keeps one choice per filter.

``CONVCLI_CALIBRATION=off`` keeps the fitted model (scale 1), e.g. to compare methods across
machines; the test suite runs so. The fit is the AVX-512 Xeon's, the fastest kind at direct
against the FFT, so a measured scale (at least 1) only moves work from the direct kernel to the
FFT or separable passes, and a filter the fit sends to the FFT never measures or compiles anything.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeGuard

from .. import geometry
from . import tuning
from ._fft import installed_backend

FILE = "calibration.json"
SIDE = 1928  # output side: four full 512-point FFT tiles of a 31x31 kernel per axis (at 964, edge tiles
# and the kernel's spectrum cost the FFT 1.5x per cell, and the direct rows stayed in cache)
REPEAT = 2
KEYS = ("direct_scale", "direct_9x9_ms", "fft_31x31_ms", "fft", "side")  # an entry of the file
_lock = threading.Lock()


def auto_method(geo: geometry.Geometry, separable: int, *, fused_cast: bool = False) -> str:
    """``auto``'s method: the fitted cost model, scaled by this machine's measurement where it matters."""
    return auto_choice(geo, separable, fused_cast=fused_cast)[0]


def auto_choice(geo: geometry.Geometry, separable: int, *, fused_cast: bool = False) -> tuple[str, bool]:
    """:func:`auto_method`, and whether the measurement was asked (the choice then follows
    ``CONVCLI_CALIBRATION`` and a new measurement, so it is not remembered: see plan.plan_key)."""
    fft = installed_backend()
    costs = tuning.method_costs(geo, separable, fft_backend=fft, fused_cast=fused_cast)
    if tuning.calibration_matters(costs, geo):
        costs = tuning.method_costs(geo, separable, fft_backend=fft, fused_cast=fused_cast, direct_scale=direct_scale())
        return tuning.cheapest(costs), True
    return tuning.cheapest(costs), False


def enabled() -> bool:
    """Off with ``CONVCLI_CALIBRATION=off``, with the numpy back end pinned (the FFT is then the
    only compiled method to weigh), and under ``NUMBA_DISABLE_JIT=1`` (which would time Python)."""
    from . import tasks

    if os.environ.get("CONVCLI_CALIBRATION", "").strip().lower() in ("off", "0", "no", "false"):
        return False
    return os.environ.get("NUMBA_DISABLE_JIT", "0").strip() in ("", "0") and tasks.backend_choice() != "numpy"


def direct_scale() -> float:
    """This machine's direct kernel against the fitted model, relative to the FFT (1: as fitted):
    read from the cache folder, else measured and stored there."""
    if not enabled():
        return 1.0
    with _lock:  # the threads of a batch wait for one measurement (two at once would time each other)
        return _stored_scale()


@lru_cache(maxsize=1)
def _stored_scale() -> float:
    return _clamp(float(calibrate()["direct_scale"]))


def calibrate(*, again: bool = False) -> dict[str, Any]:
    """This machine's entry in the cache folder's calibration file: read, or (``again``, or none
    yet) measured and stored."""
    key = machine_key()
    path = _path()
    entry = _read(path).get(key)
    if not again and _valid(entry):
        return dict(entry)
    with _file_lock(path):  # processes on one machine (a cluster's workers) measure one at a time
        entries = _read(path)  # (another may have measured while this one waited)
        entry = entries.get(key)
        if not again and _valid(entry):
            return dict(entry)
        fresh = measure()
        entries[key] = fresh
        _write(path, entries)
    _stored_scale.cache_clear()
    return fresh


def measure() -> dict[str, Any]:
    """Time a 9x9 direct filter and a 31x31 FFT filter on SIDE x SIDE float32 outputs (best of
    REPEAT, interleaved) and return the scale that makes the model's ratio of the two the measured one."""
    import numpy as np

    from . import tasks
    from .api import run_filter

    rng = np.random.default_rng(0)
    x = rng.random((SIDE, SIDE), dtype=np.float32)
    kernels = {"direct": rng.random((9, 9), dtype=np.float32), "fft": rng.random((31, 31), dtype=np.float32)}
    best = {m: float("inf") for m in kernels}
    with tasks.backend("numba"):  # the compiled kernel, whatever CONVCLI_BACKEND says
        for _ in range(REPEAT + 1):  # the first round loads the kernel and the FFT plans
            for m, k in kernels.items():
                t0 = time.perf_counter()
                run_filter(x, k, method=m)
                best[m] = min(best[m], time.perf_counter() - t0)
    fft = installed_backend()
    model = {m: tuning.method_costs(_geometry(k.shape[0]), 0, fft_backend=fft)[m] for m, k in kernels.items()}
    scale = (best["direct"] / best["fft"]) / (model["direct"] / model["fft"])
    return dict(zip(KEYS, (scale, best["direct"] * 1e3, best["fft"] * 1e3, fft, SIDE), strict=True))


def _valid(entry: Any) -> TypeGuard[dict[str, Any]]:
    if not (isinstance(entry, dict) and set(KEYS) <= set(entry)):
        return False
    scale = entry["direct_scale"]
    return isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0


def machine_key() -> str:
    """The CPU (its model name, family and model), the target Numba is told to compile for if any,
    and the FFT library: a cache folder shared by machines of different kinds (a home directory on
    a cluster) keeps one entry per kind. (Read from /proc/cpuinfo: no Numba or LLVM to load.)"""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "cpu family", "model") and name not in fields:
                    fields[name] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    import platform

    cpu = " ".join(fields.get(k, "") for k in ("model name", "cpu family", "model")).strip() or platform.processor() or platform.machine()
    target = " ".join(os.environ.get(v, "") for v in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_ENABLE_AVX")).strip()
    return f"{cpu}{' / ' + target if target else ''} / {installed_backend()}"


def _geometry(k: int) -> geometry.Geometry:
    return geometry.plan_geometry((SIDE, SIDE), (k, k))


def _clamp(scale: float) -> float:
    lo, hi = tuning.CALIBRATE_SCALE
    return min(max(scale, lo), hi)


def _path() -> Path:
    """In Numba's cache folder as the CLI sets it (``NUMBA_CACHE_DIR``), else in the CLI's default
    one (``~/.cache/convcli/numba``: a package's own folder may not be writable): no Numba to import."""
    from .cache import default_cache_dir

    return Path(os.environ.get("NUMBA_CACHE_DIR") or default_cache_dir()) / FILE


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (fcntl; without it, or without a writable folder, none)."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 (held until the block ends)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, entries: dict[str, Any]) -> None:
    """Atomically (processes of a batch may measure at once: the last one wins, whole); a cache
    folder that cannot be written keeps the measurement for this process only."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # (mkstemp's 0600 would hide it from the other users of a shared cache)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
