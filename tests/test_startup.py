"""Start-up: what compiles when, where the cache lives, the compile notice, thread splitting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from convcli.engine import postprocess, tasks

ROOT = Path(__file__).resolve().parent.parent


def test_task_ranges_cover_every_task_once_on_any_thread_count():
    @njit(nogil=True)
    def mark(hits, t0, t1):
        for t in range(t0, t1):
            hits[t] += 1

    for n in (1, 2, 3, 7):
        hits = np.zeros(101, np.int64)
        with tasks.using_threads(n):
            tasks.run(mark, 101, hits, work=1e12)
        assert hits.tolist() == [1] * 101


def test_a_slow_first_compile_is_announced_and_a_loaded_kernel_is_not(monkeypatch):
    events: list[str] = []

    class Notice:
        def start(self, what: str) -> None:
            events.append("start " + what)

        def stop(self) -> None:
            events.append("stop")

    @njit(nogil=True)
    def fresh(a, t0, t1):  # never compiled before in this process
        for t in range(t0, t1):
            a[t] = np.sin(a[t]) + np.cos(a[t])

    monkeypatch.setattr(tasks.tuning, "COMPILE_NOTICE_SECONDS", 0.0)
    tasks.set_compile_notice(Notice())
    try:
        a = np.ones(4)
        tasks.run(fresh, 4, a)
        time.sleep(0.05)
        assert events[:1] == ["start fresh (float64)"] and events[-1] == "stop"
        events.clear()
        tasks.run(fresh, 4, a)
        assert events == []
    finally:
        tasks.set_compile_notice(None)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_small_and_large_postprocessing_agree(monkeypatch, dtype):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((300, 400, 3)) * 40000).astype(np.float32)
    a[0, 0, 0], a[1, 1, 1], a[2, 2, 2] = np.nan, np.inf, -np.inf
    monkeypatch.setattr(postprocess, "NUMPY_POSTPROCESS_MAX", 0)
    monkeypatch.setattr(postprocess, "NUMPY_POSTPROCESS_MIN_COMPILED", 0)
    big, big_clipped = postprocess.to_integer(a, np.dtype(dtype))
    big_stats = postprocess.channel_stats(a, 3)
    monkeypatch.setattr(postprocess, "NUMPY_POSTPROCESS_MAX", 1 << 40)
    monkeypatch.setattr(postprocess, "NUMPY_POSTPROCESS_MIN_COMPILED", 1 << 40)
    small, small_clipped = postprocess.to_integer(a, np.dtype(dtype))
    small_stats = postprocess.channel_stats(a, 3)
    np.testing.assert_array_equal(big, small)
    assert big_clipped == small_clipped > 0
    for field in ("count", "min", "max"):
        np.testing.assert_array_equal(getattr(big_stats, field), getattr(small_stats, field))
    np.testing.assert_allclose(big_stats.mean, small_stats.mean, rtol=1e-12)
    np.testing.assert_allclose(big_stats.std, small_stats.std, rtol=1e-12)


@pytest.mark.slow
def test_the_cli_caches_in_the_user_folder_and_two_cold_compiles_at_once_are_safe(tmp_path):
    """Two processes compile into one empty user cache at the same time; both succeed, the cache
    is in $XDG_CACHE_HOME/convcli/numba, and a later apply loads it."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    cmd = [sys.executable, "-m", "convcli", "warmup", "--quick"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=1800) for p in procs]  # two cold compiles sharing 2 cores: 10-20 minutes (a hang guard)
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = tmp_path / "cache" / "convcli" / "numba"
    assert all(str(folder) in out for out, _ in outs)
    assert list(folder.rglob("*.nbi")) and list(folder.rglob("*.nbc"))
    res = subprocess.run([sys.executable, "-m", "convcli", "apply", str(ROOT / "sample_images" / "camera.png"), "-k", "box:3",
                          "-o", str(tmp_path / "o.png")], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0 and "compiling" not in res.stderr, res.stderr
    # with calibration on (the suite turns it off), warmup also measures the direct/FFT scale and
    # stores it beside the kernels; a second warmup reads it
    env["CONVCLI_CALIBRATION"] = "on"
    for _ in range(2):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        assert "direct kernel" in res.stdout and "the fitted cost against the FFT" in res.stdout, res.stdout
    stored = json.loads((folder / "calibration.json").read_text())
    (entry,) = stored.values()
    assert entry["direct_scale"] > 0 and entry["direct_9x9_ms"] > 0 and entry["fft_31x31_ms"] > 0


def test_a_small_float32_call_loads_only_the_kernel_it_uses(tmp_path):
    """A 3x3 float32 correlation and an 8-bit cast load one compiled kernel: not the float64,
    separable, FFT, conversion or statistics ones."""
    code = (
        "import numpy as np, convcli\n"
        "from convcli.engine import _direct, _convert, _passes, _stats, _jit, postprocess\n"
        "k = np.array([[1., 2, 0], [0, 1, 3], [2, 0, 1]])\n"
        "y = convcli.correlate(np.random.rand(64, 64).astype(np.float32), k)\n"
        "postprocess.to_integer(y, np.dtype(np.uint8)); postprocess.channel_stats(y, 1)\n"
        "kernels = [f for m in (_direct, _convert, _passes, _stats) for n, f in vars(m).items() if hasattr(f, 'signatures') and not n.startswith('_')]\n"
        "kernels += list(_jit._twins.values()) + list(_jit._specialised.values())\n"
        "print(sorted({f'{f.py_func.__name__}:{s[0].dtype}' for f in kernels for s in f.signatures}))\n"
    )
    # an empty cache: the call compiles, so the passes it compiles show too (a copy loaded from the
    # cache compiles none of its callees)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    # small: the serial twin of the grey 3x3 pairs' copy, on this thread, and the one pass it calls
    assert out.strip() == "['correlate_unrolled_pairs3x3_1_serial:float32', 'pair3x3_1:float32']"


def test_the_engine_runs_with_numba_jit_disabled():
    """STYLE's coverage mode (NUMBA_DISABLE_JIT=1): every kernel call goes through tasks.run,
    which must not ask a plain Python function to compile; results match the compiled ones."""
    code = (
        "import numpy as np, convcli\n"
        "x = np.random.default_rng(0).random((24, 20)).astype(np.float32)\n"
        "import sys; np.save(sys.stdout.buffer, convcli.correlate(x, np.arange(9.0).reshape(3, 3)))\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout
    import io

    x = np.random.default_rng(0).random((24, 20)).astype(np.float32)
    import convcli

    np.testing.assert_allclose(np.load(io.BytesIO(plain)), convcli.correlate(x, np.arange(9.0).reshape(3, 3)), rtol=1e-6)


def test_avx512_machines_compile_with_full_width_vectors_unless_the_user_chose():
    """The kernels' first Numba import reads this machine's CPU features: with AVX-512, LLVM's
    preference for 256-bit vectors is turned off; a user's NUMBA_CPU_FEATURES is left alone."""
    code = (
        "import os, llvmlite.binding as ll\n"
        "import convcli.engine._direct\n"
        "import numba\n"
        "host = ll.get_host_cpu_features().flatten().split(',')\n"
        "print('+avx512f' in host, numba.config.CPU_FEATURES)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    avx512, features = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    if avx512 == "True":
        assert features.endswith(",-prefer-256-bit") and "+avx512f" in features.split(",")
    else:
        assert features == "None"
    mine = {**env, "NUMBA_CPU_FEATURES": "+sse2"}
    assert subprocess.run([sys.executable, "-c", code], env=mine, capture_output=True, text=True, check=True).stdout.split()[1] == "+sse2"
    no_avx = {**env, "NUMBA_ENABLE_AVX": "0"}  # Numba's own AVX switch is respected
    assert subprocess.run([sys.executable, "-c", code], env=no_avx, capture_output=True, text=True, check=True).stdout.split()[1] == "None"
    cache = "from convcli.engine.cache import cache_dir; cache_dir(); import numba; print(numba.config.CPU_FEATURES is None)"
    first = subprocess.run([sys.executable, "-c", cache], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert first == str(avx512 != "True")  # asking for the cache folder first loads Numba the same way
