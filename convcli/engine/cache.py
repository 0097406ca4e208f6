"""Where the compiled engine lives, and compiling all of it ahead of time (``convcli warmup``).

No numpy or numba at import: the CLI asks for the folder before anything else loads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/convcli/numba`` (``~/.cache/convcli/numba``): Numba's cache for the CLI."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convcli" / "numba"


def cache_dir() -> Path:
    """The folder Numba writes convcli's compiled kernels to in this process."""
    from . import _jit  # Numba's first import goes through it (CPU features)

    folder = getattr(_jit.numba_config(), "CACHE_DIR", "")
    if folder:
        return Path(folder)
    return Path(__file__).resolve().parent / "__pycache__"  # Numba's default, beside the sources


def warmup(progress: Callable[[str, int, int], None] | None = None, *, full: bool = True) -> int:
    """Load or compile every kernel signature convcli uses (float32; with ``full`` also float64
    and every integer input type), calling ``progress(name, done, total)``; returns the count."""
    import numpy as np

    from . import tasks
    from ._convert import round_clip, to_float
    from ._direct import FOURS, MODE_NAMES, bank, columns_inplace, separable_yx, unrolled, unrolled_copies
    from ._jit import vector_registers
    from ._stats import int_moments, partials, squares
    from .dispatch import NO_INTEGERS
    from .tuning import block_rows

    accs = (np.float32, np.float64) if full else (np.float32,)
    ints = (np.uint8, np.uint16, np.int16, np.int32, np.uint32) if full else (np.uint8, np.uint16)
    m = np.zeros(4, np.int64)
    jobs: list[tuple[str, Callable[..., object], tuple[object, ...]]] = []
    # the copies that go four rows at a time only where dispatch takes them (16 vector registers:
    # two-row tap blocks)
    fours_here = block_rows(vector_registers()) < 3
    modes = [mode for mode in MODE_NAMES if fours_here or mode not in FOURS]
    for acc in accs:
        x, out = np.zeros((1, 1, 4, 4), acc), np.zeros((1, 1, 4, 4), acc)
        w = np.zeros((1, 1, 1, 1, 1), acc)
        f = np.zeros(1, acc)
        common = (m[:1], m, m, 0, acc(0), 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, out)
        post = np.zeros(6, acc)
        for mode in modes:  # each of correlate_bank's paths is compiled apart
            path = MODE_NAMES[mode]
            jobs.append((f"direct {path} {np.dtype(acc).name}", bank(mode), (x, w, *common, NO_INTEGERS, post, m, 3)))
            for raw in (np.uint8, np.uint16):  # the direct kernel reads 8/16-bit input as it is
                xr = np.zeros((1, 1, 4, 4), raw)
                jobs.append((f"direct {path} {np.dtype(raw).name}->{np.dtype(acc).name}", bank(mode), (xr, w, *common, NO_INTEGERS, post, m, 3)))
            # ... and writes 8-bit results itself (the same signature as above), 16-bit ones apart
            jobs.append((f"direct {path} uint16->{np.dtype(acc).name}->uint16", bank(mode),
                         (np.zeros((1, 1, 4, 4), np.uint16), w, *common, np.zeros((1, 1, 1, 1), np.uint16), post, m, 3)))  # fmt: skip
        # 3x3/5x5: rows of the kernel's type (and 8-bit ones on AVX-512) read in place, others through
        # the ring of converted rows (_direct.reads_in_place)
        for fours, k, sp in unrolled_copies(fours_here):  # compiled apart (_direct.unrolled)
            rows = f"{'fours' if fours else 'pairs'} {k}x{k}{' RGB' if sp == 3 else ''}"
            wk = np.zeros((1, 1, 1, k, k), acc)
            whole = (m[:1], m, m, 0, acc(0), 1, 1, 2, 0 if fours else -1, out)
            for source in (acc, np.uint8, np.uint16):
                jobs.append((f"direct {rows} {np.dtype(source).name}->{np.dtype(acc).name}", unrolled(fours, k, sp),
                             (np.zeros((1, 1, 4, 4), source), wk, *whole, NO_INTEGERS, post, m, 3)))  # fmt: skip
            jobs.append((f"direct {rows} uint16->{np.dtype(acc).name}->uint16", unrolled(fours, k, sp),
                         (np.zeros((1, 1, 4, 4), np.uint16), wk, *whole, np.zeros((1, 1, 1, 1), np.uint16), post, m, 3)))  # fmt: skip
        jobs.append((f"separable {np.dtype(acc).name}", separable_yx, (x, f, f, m, m, 0, 1, 1, 1, 1, 1, 4, out)))
        jobs.append((f"separable z in place {np.dtype(acc).name}", columns_inplace, (out, f, m, m, 1, 4)))
        for it in ints:
            bound = acc if np.dtype(it).itemsize <= 2 else float  # (as postprocess.to_integer passes them)
            jobs.append((f"to integer {np.dtype(acc).name}->{np.dtype(it).name}", round_clip,
                         (np.zeros(4, acc), bound(0), bound(1), np.zeros(4, it), m)))  # fmt: skip
        a = np.zeros((4, 1), acc)
        z = np.zeros((1, 1))
        jobs.append((f"statistics {np.dtype(acc).name}", partials, (a, z, z, z, z)))
        jobs.append((f"statistics {np.dtype(acc).name} (2)", squares, (a, np.zeros(1), 0.0, z, np.zeros(1))))
    for it in ints:
        if np.dtype(it).itemsize <= 2:
            sums = np.zeros((1, 1), np.int64)
            jobs.append((f"statistics {np.dtype(it).name}", int_moments, (np.zeros(4, it), 1, sums, sums, sums, sums)))
        for acc in accs:
            jobs.append((f"to float {np.dtype(it).name}->{np.dtype(acc).name}", to_float, (np.zeros(4, it), np.zeros(4, acc))))
    filters = [job for job in jobs if job[1] in {bank(mode) for mode in MODE_NAMES} | {unrolled(*copy) for copy in unrolled_copies(True)} | {separable_yx, columns_inplace}]
    runs = [(name, kernel, args, 1e18) for name, kernel, args in jobs]
    runs += [(f"{name}, small calls", kernel, args, 0.0) for name, kernel, args in filters]  # the serial twins
    for done, (name, kernel, args, work) in enumerate(runs):
        if progress is not None:
            progress(name, done, len(runs))
        tasks.run(kernel, 0, *args, work=work)  # compiles (or loads) without running a task
    if progress is not None:
        progress("done", len(runs), len(runs))
    return len(runs)
