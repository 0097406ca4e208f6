"""Start-up: how long the first and every later ``convcli apply`` take, and where the time goes.

    python benchmarks/bench_startup.py            # cold and warm apply, --help, shape, phases
    python benchmarks/bench_startup.py --loop 50  # also 50 single-file calls beside `vips conv`

"Cold" is a fresh, empty Numba cache (``NUMBA_CACHE_DIR``), as after ``pip install``; "warm" loads
the kernels compiled by the runs before it. A 512x512 image with a 3x3 kernel is small enough for
the engine's numpy path (no Numba at all); the "big" rows filter a 2048x2048 image, which runs
the compiled kernels: compiled on the cold run, loaded from the cache on the warm ones. Medians of ``--repeat`` runs; then one JSON line.
The phase breakdown runs the same steps as ``convcli apply`` in one process, timing each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "convcli"]

PHASES = r"""
import sys, time, json
t = [time.perf_counter()]
import convcli.cli.app                      # Typer, rich, the command modules
t.append(time.perf_counter())
import numpy                                # the numeric stack (small images never import numba)
from convcli.engine import api, tasks
from convcli.io.read import read_input
from convcli.io.write import atomic_write, encode
from convcli.kernels import resolve
t.append(time.perf_counter())
image = read_input(sys.argv[1])
k = resolve("sobel-x")
t.append(time.perf_counter())
api.run_filter(image.array[:8, :8], k.array, flip=True)  # big images: loads (or compiles) a kernel
t.append(time.perf_counter())
res = api.run_filter(image.array, k.array, flip=True)
t.append(time.perf_counter())
from convcli.engine.postprocess import to_integer
from pathlib import Path
atomic_write(Path(sys.argv[2]), encode(to_integer(res.array, image.array.dtype)[0], "PNG"), overwrite=True)
t.append(time.perf_counter())
names = ["imports (CLI)", "imports (numpy, engine)", "read + kernel", "first filter call", "filter", "cast + write"]
print(json.dumps(dict(zip(names, [b - a for a, b in zip(t, t[1:])]))))
"""


def timed(cmd: list[str], env: dict[str, str], shell: bool = False) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd if not shell else " ".join(cmd), shell=shell, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loop", type=int, default=0, help="files in the shell-loop comparison (0: skip)")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        img = root / "img.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)).save(img)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(root / "numba")}
        apply = [*CLI, "apply", str(img), "-k", "sobel-x", "-o", str(root / "out.png"), "--overwrite", "-q"]

        results["cold apply (empty cache)"] = timed(apply, env)
        results["warm apply"] = statistics.median(timed(apply, env) for _ in range(args.repeat))
        big = root / "big.png"
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (2048, 2048), dtype=np.uint8)).save(big)
        apply_big = [*CLI, "apply", str(big), "-k", "sobel-x", "-o", str(root / "big_out.png"), "--overwrite", "-q"]
        results["cold apply, big image (compiles)"] = timed(apply_big, env)
        results["warm apply, big image"] = statistics.median(timed(apply_big, env) for _ in range(args.repeat))
        results["--help"] = statistics.median(timed([*CLI, "--help"], env) for _ in range(args.repeat))
        shape = [*CLI, "shape", "-i", "224x224", "-c", "3", "-k", "7", "-f", "64", "-s", "2", "-p", "3"]
        results["shape"] = statistics.median(timed(shape, env) for _ in range(args.repeat))
        phases = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", PHASES, str(img), str(root / "p.png")], env=env, check=True,
                                 capture_output=True, text=True).stdout  # fmt: skip
            phases.append(json.loads(out))
        results["phases (warm, median s)"] = {k: statistics.median(p[k] for p in phases) for k in phases[0]}

        if args.loop:
            files = root / "many"
            files.mkdir()
            rng = np.random.default_rng(1)
            for i in range(args.loop):
                Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)).save(files / f"f{i:03d}.png")
            (root / "o1").mkdir()
            loop = f"for f in {files}/*.png; do {' '.join(CLI)} apply \"$f\" -k sobel-x -o {root}/o1/$(basename \"$f\") -q; done"
            results[f"shell loop, {args.loop} x convcli apply"] = timed([loop], env, shell=True)
            if shutil.which("vips"):
                (root / "sobel.mat").write_text("3 3 1 0\n-1 0 1\n-2 0 2\n-1 0 1\n")
                (root / "o2").mkdir()
                loop = f"for f in {files}/*.png; do vips conv \"$f\" {root}/o2/$(basename \"$f\") {root}/sobel.mat --precision integer; done"
                results[f"shell loop, {args.loop} x vips conv"] = timed([loop], env, shell=True)

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores")
    for name, value in results.items():
        if isinstance(value, dict):
            print(name + ":")
            for k, v in value.items():
                print(f"  {k:32s} {v * 1000:8.1f} ms")
        else:
            print(f"{name:40s} {value:8.2f} s")
    print(json.dumps({"cpu": cpu, **results}))


if __name__ == "__main__":
    main()
