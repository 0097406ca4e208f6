"""Batch throughput: one ``convcli apply`` call over many files, against one call per file and a
shell loop over libvips' ``vips conv`` (Debian: ``apt-get install libvips-tools``).

    python benchmarks/bench_batch.py                 # 200 PNGs, 512x512 RGB, a 3x3 kernel
    python benchmarks/bench_batch.py --files 50

Prints seconds, images/s and ratios, then one JSON line.
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
from PIL import Image

KERNEL = "1 2 1; 2 4 2; 1 2 1"  # /16 with --normalize; the same matrix as a libvips .mat below


def timed(cmd: list[str] | str, shell: bool = False) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    convcli = [sys.executable, "-m", "convcli"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "in"
        src.mkdir()
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        for i in range(args.files):
            Image.fromarray(np.roll(base, i, axis=1)).save(src / f"img{i:04d}.png", compress_level=1)
        subprocess.run([*convcli, "warmup"], check=True, stdout=subprocess.DEVNULL)
        common = ["-k", KERNEL, "--normalize", "-q"]
        results: dict[str, float] = {}

        results["convcli one call"] = timed([*convcli, "apply", str(src), "-O", str(root / "one"), *common])
        (root / "each").mkdir()
        t0 = time.perf_counter()
        for f in sorted(src.iterdir()):
            subprocess.run([*convcli, "apply", str(f), "-o", str(root / "each" / f.name), *common], check=True)
        results["convcli per file"] = time.perf_counter() - t0
        if shutil.which("vips"):
            (root / "mask.mat").write_text("3 3 16 0\n1 2 1\n2 4 2\n1 2 1\n")
            (root / "vips").mkdir()
            loop = f'for f in "{src}"/*.png; do vips conv "$f" "{root}/vips/$(basename "$f")" "{root}/mask.mat"; done'
            results["vips conv shell loop"] = timed(["bash", "-c", loop])
        one = results["convcli one call"]
        for name, seconds in results.items():
            print(f"{name:<24} {seconds:8.2f} s  {args.files / seconds:7.1f} images/s  one call is {seconds / one:5.2f}x faster")
        print(json.dumps({"files": args.files, "size": args.size, "cores": os.cpu_count(), "seconds": results}))


if __name__ == "__main__":
    main()
