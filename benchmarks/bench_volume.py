"""Volumes larger than memory: peak resident memory and time of the chunked path, side by side
with ``dask_image.ndfilters.convolve`` (same chunks, same threaded scheduler) and with the
in-memory engine on a volume that fits.

    python benchmarks/bench_volume.py                  # 1 GiB and 4 GiB uint16 volumes
    python benchmarks/bench_volume.py --sizes 0.0625   # a quick 64 MiB check
    python benchmarks/bench_volume.py --keep DIR       # keep the generated volumes in DIR

Every measurement runs in its own process; its peak RSS comes from ``os.wait4`` (the kernel's
``ru_maxrss`` of that child, i.e. ``getrusage`` for one child). Linux carries the parent's peak
into a child across fork+exec, so the volumes are made in a child too and this parent stays
small (it never imports zarr or holds a volume). Timings on a shared machine are noisy: read
ratios, not digits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNKS = (64, 256, 256)
GIB = 1 << 30


def make_volume(path: Path, gib: float) -> tuple[int, int, int]:
    """A uint16 Zarr volume of about ``gib`` GiB: smooth structure plus 12-bit noise, slab by slab."""
    import zarr

    plane = 1024 * 1024
    z = max(CHUNKS[0], int(gib * GIB / 2 / plane))
    shape = (z, 1024, 1024)
    if path.exists():
        return shape
    arr = zarr.open_array(store=str(path), mode="w", shape=shape, chunks=CHUNKS, dtype="u2")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1024, 0:1024]
    base = (2000 + 1000 * np.sin(yy / 40.0) * np.cos(xx / 55.0)).astype(np.float32)
    for z0 in range(0, z, CHUNKS[0]):
        n = min(CHUNKS[0], z - z0)
        noise = rng.integers(0, 512, size=(n, 1024, 1024), dtype=np.uint16)
        arr[z0 : z0 + n] = (base[None] + noise).astype(np.uint16)
    return shape


def kernel(name: str) -> np.ndarray:
    if name == "random3":
        return np.random.default_rng(1).random((3, 3, 3))
    from convcli.kernels import resolve

    return resolve(name).array


def job(kind: str, src: str, kname: str, out: str) -> None:
    """One measured run (in a child process); prints its seconds as JSON."""
    import zarr

    k = kernel(kname)
    t0 = time.perf_counter()
    if kind == "convcli":
        from convcli.chunked.run import filter_to_zarr

        res = filter_to_zarr(src, k, out, mode="conv", overwrite=True)
        extra = {"method": res.op.method, "workers": res.workers}
    elif kind == "dask_image":
        import dask
        import dask.array as da
        from dask_image.ndfilters import convolve

        x = da.from_zarr(src)
        y = convolve(x, k.astype(np.float32), mode="reflect")
        with dask.config.set(scheduler="threads"):
            da.to_zarr(y, out, overwrite=True)
        extra = {}
    else:  # in memory: the whole array read, filtered by the engine, cast and written the same way
        import convcli
        from convcli.engine.postprocess import channel_stats, to_integer

        x = zarr.open_array(store=src, mode="r")[...]
        y, _ = to_integer(convcli.convolve(x, k), np.dtype(np.uint16))  # what `convcli apply` does
        channel_stats(y, 1)
        arr = zarr.open_array(store=out, mode="w", shape=y.shape, chunks=CHUNKS, dtype=y.dtype)
        arr[...] = y
        extra = {}
    print(json.dumps({"seconds": time.perf_counter() - t0, **extra}))


def volume(path: Path, gib: float) -> list[int]:
    """make_volume in a child process (see the module docstring on inherited peaks)."""
    out = subprocess.run([sys.executable, __file__, "--make", str(path), str(gib)], check=True, stdout=subprocess.PIPE)
    return json.loads(out.stdout)


def measure(kind: str, src: Path, kname: str, out: Path) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--job", kind, str(src), kname, str(out)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    text = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"kind": kind, "kernel": kname, "error": f"exit {proc.returncode}"}
    shutil.rmtree(out, ignore_errors=True)
    return {"kind": kind, "kernel": kname, **json.loads(text), "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,4", help="volume sizes in GiB, comma-separated")
    ap.add_argument("--fits", type=float, default=0.25, help="GiB of the volume for chunked vs in-memory")
    ap.add_argument("--side", type=float, default=1.0, help="GiB of the volume for the dask-image comparison")
    ap.add_argument("--side-kernels", default="random3", help="kernels of the dask-image comparison, comma-separated")
    ap.add_argument("--keep", type=Path, default=None, help="folder for the generated volumes (kept)")
    ap.add_argument("--parts", default="memory,side,fits", help="which comparisons: memory, side, fits")
    ap.add_argument("--job", nargs=4, metavar=("KIND", "SRC", "KERNEL", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--make", nargs=2, metavar=("PATH", "GIB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        job(*args.job)
        return
    if args.make:
        print(json.dumps(make_volume(Path(args.make[0]), float(args.make[1]))))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="convcli-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        parts = set(args.parts.split(","))
        sizes = [float(s) for s in args.sizes.split(",") if s] if "memory" in parts else []
        for gib in sizes:
            src = work / f"vol{gib:g}.zarr"
            shape = volume(src, gib)
            for kname in ("gaussian3d:sigma=2", "random3"):
                r = measure("convcli", src, kname, work / "out.zarr")
                rows.append({"part": "memory", "gib": gib, "shape": shape, **r})
                print(json.dumps(rows[-1]), flush=True)
        src = work / f"vol{args.side:g}.zarr"
        shape = volume(src, args.side)
        side_kernels = args.side_kernels.split(",") if "side" in parts else []
        for kname in side_kernels:
            for kind in ("convcli", "dask_image"):
                rows.append({"part": "side", "gib": args.side, "shape": shape, **measure(kind, src, kname, work / "out.zarr")})
                print(json.dumps(rows[-1]), flush=True)
        src = work / f"vol{args.fits:g}.zarr"
        shape = volume(src, args.fits)
        for kname in ("gaussian3d:sigma=2", "random3") if "fits" in parts else ():
            for kind in ("convcli", "inmemory"):
                rows.append({"part": "fits", "gib": args.fits, "shape": shape, **measure(kind, src, kname, work / "out.zarr")})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'GiB':>5} {'kernel':<20} {'run':<11} {'seconds':>8} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['gib']:>5g} {r['kernel']:<20} {r['kind']:<11} {r.get('seconds', float('nan')):>8.1f} {r.get('peak_rss_mb', float('nan')):>12.0f}")

    def secs(part: str, kname: str, kind: str) -> float:
        """The row of that comparison (the memory part may have run the same volume and kernel)."""
        return next((r["seconds"] for r in rows if r["part"] == part and r["kernel"] == kname and r["kind"] == kind and "seconds" in r), float("nan"))

    for kname in side_kernels:
        print(f"convcli / dask-image ({kname}, {args.side:g} GiB): {secs('side', kname, 'convcli') / secs('side', kname, 'dask_image'):.2f}")
    for kname in ("gaussian3d:sigma=2", "random3"):
        print(f"chunked / in-memory ({kname}, {args.fits:g} GiB): {secs('fits', kname, 'convcli') / secs('fits', kname, 'inmemory'):.2f}")


if __name__ == "__main__":
    main()
