"""Per-call cost on small inputs (tiles, patches, Dask blocks): convcli against scipy.ndimage.

    python benchmarks/bench_small.py [--calls 2000] [--rounds 7]

Each round times ``--calls`` back-to-back calls of each function, interleaved (convcli on 1
thread, on all threads, scipy, again ...; allocating and with a preallocated result, each side); prints the median and best microseconds per call over
the rounds, wall-clock and the process's CPU time (on a shared machine the wall clock mostly
measures the neighbours; CPU time also counts threads spinning on a parallel launch). Small calls
should cost no more than scipy's and never more on more threads.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import numpy as np


def per_call_us(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Wall-clock and process CPU microseconds per call (under ``fn.settings``' back end and
    thread count, when it has them: a user sets them once, not per call)."""
    from convcli.engine import tasks

    backend, threads = getattr(fn, "settings", ("auto", None))
    with tasks.backend(backend), tasks.using_threads(threads) if threads else contextlib.nullcontext():
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls * 1e6, (time.process_time() - c0) / calls * 1e6


def calls(x: np.ndarray, k: np.ndarray, cores: int) -> dict[str, Callable[[], object]]:
    import scipy.ndimage as ndi

    import convcli

    out = np.empty(x.shape, np.float32)

    def on(backend: str, threads: int, **kw: object) -> Callable[[], object]:
        def call() -> object:
            return convcli.correlate(x, k, **kw)  # type: ignore[arg-type]

        call.settings = (backend, threads)  # type: ignore[attr-defined]  # set around the timed loop, not per call
        return call

    return {
        "auto (numpy)": lambda: convcli.correlate(x, k),
        "auto out=": lambda: convcli.correlate(x, k, out=out),
        "numba t=1": on("numba", 1),
        f"numba t={cores}": on("numba", cores),
        f"numba out= t={cores}": on("numba", cores, out=out),
        "scipy": lambda: ndi.correlate(x, k, mode="reflect"),
        "scipy output=": lambda: ndi.correlate(x, k, mode="reflect", output=out),
    }


def main() -> None:
    from convcli.engine import _jit  # numba's first import goes through it (convcli's CPU features)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    cores = _jit.numba_config().NUMBA_NUM_THREADS
    rng = np.random.default_rng(0)
    cases = {
        "64^2 f32 3x3": (rng.random((64, 64), dtype=np.float32), rng.random((3, 3))),
        "64^2 f32 sobel": (rng.random((64, 64), dtype=np.float32), np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])),
        "128^2 f32 5x5": (rng.random((128, 128), dtype=np.float32), rng.random((5, 5))),
        "32^3 f32 3x3x3": (rng.random((32, 32, 32), dtype=np.float32), rng.random((3, 3, 3))),
    }
    for name, (x, k) in cases.items():
        fns = calls(x, k, cores)
        times: dict[str, list[tuple[float, float]]] = {n: [] for n in fns}
        for fn in fns.values():
            per_call_us(fn, 1)  # loads (or compiles) the kernel
        for _ in range(args.rounds):
            for n, fn in fns.items():
                times[n].append(per_call_us(fn, args.calls))
        for i, what in enumerate(("wall", "cpu")):
            cells = "  ".join(
                f"{n} {statistics.median(t[i] for t in ts):7.1f} (best {min(t[i] for t in ts):6.1f})" for n, ts in times.items()
            )
            print(f"{name:<16} {what:>4} us/call median: {cells}", flush=True)


if __name__ == "__main__":
    main()
