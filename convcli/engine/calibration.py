"""This machine's direct kernel against its FFT, measured once and stored beside the compiled kernels.

The cost model behind ``method="auto"`` (``tuning.method_costs``) was fitted on one CPU. How fast
the direct kernel runs against an FFT differs by several times between CPUs (2-D direct per
multiply-add: AVX-512 Xeon against an AVX2 Zen 1, whose FMA units are 128 bits wide), so where the
fit alone could pick the wrong method (``tuning.calibration_matters``), ``auto`` asks
:func:`direct_scale`: a 9x9 direct filter and a 31x31 FFT filter timed on this machine, about 0.3 s,
stored in ``calibration.json`` in Numba's cache folder (``cache.cache_dir``) under the CPU's name
and the FFT library. Later processes read it, so a machine keeps one choice per filter.

``CONVCLI_CALIBRATION=off`` keeps the fitted model (scale 1), e.g. to compare methods across
machines; the test suite runs so.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
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
    fft = installed_backend()
    costs = tuning.method_costs(geo, separable, fft_backend=fft, fused_cast=fused_cast)
    if tuning.calibration_matters(costs, geo):
        costs = tuning.method_costs(geo, separable, fft_backend=fft, fused_cast=fused_cast, direct_scale=direct_scale())
    return tuning.cheapest(costs)


def enabled() -> bool:
    return os.environ.get("CONVCLI_CALIBRATION", "").strip().lower() not in ("off", "0", "no", "false")


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
    entries = _read(path)
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
    """The CPU (its model name and LLVM's name for it) and the FFT library: a cache folder shared by
    machines of different kinds (a home directory on a cluster) keeps one entry per kind."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    import llvmlite.binding as ll

    return f"{model or 'unknown'} / {ll.get_host_cpu_name()} / {installed_backend()}"


def _geometry(k: int) -> geometry.Geometry:
    return geometry.plan_geometry((SIDE, SIDE), (k, k))


def _clamp(scale: float) -> float:
    lo, hi = tuning.CALIBRATE_SCALE
    return min(max(scale, lo), hi)


def _path() -> Path:
    from .cache import cache_dir

    return cache_dir() / FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, entries: dict[str, Any]) -> None:
    """Atomically (processes of a batch may measure at once: the last one wins, whole); a cache
    folder that cannot be written keeps the measurement for this process only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
