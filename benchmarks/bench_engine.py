"""convcli's engine side by side with its peers, in one process, as ratios.

    pip install -e '.[bench]'
    python benchmarks/bench_engine.py            # every case (a few minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # smaller set

Repetitions are interleaved (convcli, peer, convcli, peer, ...) and the best time of each is
kept, so a noisy neighbour hurts both sides alike. Prints a table of ratios (convcli / peer:
below 1 means convcli is faster) and one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np

import convcli
from convcli.engine import _jit  # noqa: F401  (before numba's first import: convcli's CPU features, 512-bit vectors)
from convcli.engine._fft import backend as fft_backend
from convcli.engine.api import run_filter, run_filter_cast
from convcli.engine.cache import warmup
from convcli.engine.postprocess import Cast
from convcli.kernels import resolve
from convcli.kernels.generators import gaussian_1d


def best_times(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    times = {name: float("inf") for name in fns}
    for fn in fns.values():  # one untimed call each: caches, page faults, JIT
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - t0)
    return times


def set_threads(n: int) -> None:
    import cv2

    try:
        from convcli.engine import tasks

        tasks.set_threads(n)
    except ImportError:  # convcli 0.1 (parallel=True kernels), for A/B runs against it
        import numba

        numba.set_num_threads(n)
    cv2.setNumThreads(n)


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    import cv2
    import numba
    import scipy.ndimage as ndi

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer and smaller cases")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="run only cases whose name contains this text")
    args = ap.parse_args()
    cores = numba.config.NUMBA_NUM_THREADS
    warmup()
    rng = np.random.default_rng(0)
    rows: list[dict] = []

    def wanted(case: str) -> bool:
        return args.only in case

    def record(case: str, threads: int, times: dict[str, float], method: str) -> None:
        ms = {k: v * 1000 for k, v in times.items()}
        rows.append({"case": case, "threads": threads, "method": method, "ms": ms})
        ratios = "  ".join(f"/{k} {ms['convcli'] / v:5.2f}" for k, v in ms.items() if k != "convcli")
        print(f"{case:<34} t={threads}  convcli {ms['convcli']:8.1f} ms ({method:<9})  {ratios}", flush=True)

    n = 2048 if args.quick else 4096
    x = rng.random((n, n), dtype=np.float32)
    dst = np.empty_like(x)
    sizes = (3, 9, 31) if args.quick else (3, 5, 9, 15, 31)
    for threads in sorted({1, cores}):
        set_threads(threads)
        for k in sizes:
            if not wanted(f"float32 {n}^2 {k}x{k}"):
                continue
            kern = rng.random((k, k), dtype=np.float32)
            fns: dict[str, Callable[[], object]] = {
                "convcli": lambda: run_filter(x, kern, method="auto"),
                "filter2D": lambda: cv2.filter2D(x, -1, kern, borderType=cv2.BORDER_REFLECT),
                "copyto": lambda: np.copyto(dst, x),  # into a warm buffer: no page faults
                "copy": lambda: np.copy(x),  # allocating, as the filter does (issue 14's floor)
            }
            if k in (3, 9) and threads == 1:
                fns["scipy"] = lambda: ndi.correlate(x, kern, mode="reflect")
            record(f"float32 {n}^2 {k}x{k}", threads, best_times(fns, args.repeat), run_filter(x, kern).method)
        g = resolve("gaussian:sigma=5,size=31")
        if not wanted(f"float32 {n}^2 gaussian"):
            g = None
        if g is not None:
            g1 = gaussian_1d(5.0, 31).astype(np.float32)
            fns = {
                "convcli": lambda: run_filter(x, g.array, method="auto"),
                "sepFilter2D": lambda: cv2.sepFilter2D(x, -1, g1, g1, borderType=cv2.BORDER_REFLECT),
            }
            record(f"float32 {n}^2 gaussian s=5 31x31", threads, best_times(fns, args.repeat), run_filter(x, g.array).method)

        h, w = (1500, 2000) if args.quick else (3000, 4000)
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        k5 = rng.random((5, 5), dtype=np.float32) / 12.5

        def convcli_u8() -> np.ndarray:  # what `convcli apply` does: filter, rint/clip/count (in the kernel)
            return run_filter_cast(rgb, k5, Cast(np.dtype(np.uint8)))[0].array

        fns = {"convcli": convcli_u8, "filter2D": lambda: cv2.filter2D(rgb, -1, k5, borderType=cv2.BORDER_REFLECT)}
        if wanted(f"uint8 RGB {w}x{h}"):
            record(f"uint8 RGB {w}x{h} 5x5 -> uint8", threads, best_times(fns, args.repeat), run_filter(rgb, k5).method)

        for m in ((128,) if args.quick else (192, 256)):
            vol = rng.random((m, m, m), dtype=np.float32)
            for k in (3, 5, 7):
                kern = rng.random((k, k, k), dtype=np.float32)
                fns = {"convcli": lambda: run_filter(vol, kern, method="auto")}
                if threads == 1 and (k <= 5 or m <= 192):
                    fns["scipy"] = lambda: ndi.correlate(vol, kern, mode="reflect")
                if (len(fns) > 1 or threads != 1) and wanted(f"float32 {m}^3 {k}x{k}x{k}"):
                    record(f"float32 {m}^3 {k}x{k}x{k}", threads, best_times(fns, max(2, args.repeat // 2)), run_filter(vol, kern).method)
        gcase = "float32 256x512x512 gaussian3d s=2"  # issue 14: <= 0.25x single-threaded scipy
        if not args.quick and wanted(gcase):
            vol = rng.random((256, 512, 512), dtype=np.float32)
            g3 = resolve("gaussian3d:sigma=2").array
            fns = {
                "convcli": lambda: run_filter(vol, g3, method="auto"),
                "gaussian_filter": lambda: ndi.gaussian_filter(vol, 2.0, truncate=4.0, mode="reflect"),
            }
            record(gcase, threads, best_times(fns, 2), run_filter(vol, g3).method)
            del vol
    set_threads(cores)
    # thread scaling on 9x9
    k9 = rng.random((9, 9), dtype=np.float32)
    scaling = {}
    for threads in (1, cores):
        set_threads(threads)
        scaling[threads] = best_times({"convcli": lambda: run_filter(x, k9, method="direct")}, args.repeat)["convcli"]
    set_threads(cores)
    print(f"threads: 9x9 direct, 1 thread {scaling[1] * 1000:.1f} ms, {cores} threads {scaling[cores] * 1000:.1f} ms, speed-up {scaling[1] / scaling[cores]:.2f}x")
    machine = {
        "cpu": cpu_model(), "cores": cores, "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__, "opencv": cv2.__version__, "convcli": convcli.__version__,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), "fft": fft_backend().name,
    }  # fmt: skip
    print(json.dumps({"machine": machine, "rows": rows, "thread_speedup_9x9": scaling[1] / scaling[cores]}))


if __name__ == "__main__":
    main()
