"""The direct kernel's paired tap blocks (``engine/_passes.py``): rows of 1024 output cells or more
at unit stride and dilation take them, every block shape against scipy.ndimage and the naive
reference, odd row counts included (the last row of a block pairs with a spare one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

import convcli
from convcli.engine.api import run_filter

from .naive import assert_close, naive_layer

WIDE = 1030  # above tuning.FLAT_MAX_WIDTH: the flat path takes narrower rows


def test_block_rows_follow_the_vector_registers_numba_compiles_for(monkeypatch):
    # the features Numba targets (its cache index holds them): NUMBA_CPU_FEATURES (config), else
    # the host's with NUMBA_ENABLE_AVX applied; a named CPU without features keeps the host's
    from numba.core import config

    from convcli.engine import _jit, tuning

    assert (tuning.block_rows(32), tuning.block_rows(16)) == (3, 2)
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,+avx512f,+avx512bw")
    assert _jit.vector_registers() == 32
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert _jit.vector_registers() == 16
    monkeypatch.setattr(config, "CPU_FEATURES", "")  # NUMBA_CPU_NAME=generic
    assert _jit.vector_registers() == 16
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(config, "ENABLE_AVX", False)  # (numba turns every avx* feature off)
    assert _jit.vector_registers() == 16


def test_generated_blocks_are_up_to_date():
    tool = Path(__file__).resolve().parent.parent / "tools" / "generate_passes.py"
    done = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kh", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_rows", [3, 2])  # 32 vector registers (AVX-512) and 16 (AVX2)
def test_every_block_shape_agrees_with_scipy(kh, dtype, block_rows, monkeypatch):
    # kernel widths 1..11 cover blocks of 1..5 columns and every remainder; rows 1..7 cover
    # blocks of 1..3 rows; 21 and 2 image rows leave the last row of a block unpaired
    from convcli.engine import tuning

    monkeypatch.setattr(tuning, "block_rows", lambda registers: block_rows)
    rng = np.random.default_rng(kh)
    for rows in (21, 2):
        x = rng.standard_normal((rows, WIDE)).astype(dtype)
        for kw in range(1, 12):
            k = rng.standard_normal((kh, kw)).astype(dtype)
            for border in ("reflect", "constant"):
                got = run_filter(x, k, method="direct", border=border, cval=0.5)
                ref = ndi.correlate(x.astype(np.float64), k.astype(np.float64), mode=border, cval=0.5, origin=[-(kh % 2 == 0), -(kw % 2 == 0)])
                assert got.array.dtype == dtype
                assert_close(got.array, ref, x, k, dtype)


def test_channels_and_convolution_on_wide_rows():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (13, WIDE, 3), dtype=np.uint8)
    k = rng.standard_normal((5, 9)).astype(np.float32)
    for fn, ref in ((convcli.correlate, ndi.correlate), (convcli.convolve, ndi.convolve)):
        got = fn(x, k, border="mirror", method="direct")
        for c in range(3):
            want = ref(x[..., c].astype(np.float64), k.astype(np.float64), mode="mirror")
            assert_close(got[..., c], want, x, k)


def test_volumes_and_layers_on_wide_rows_sum_every_plane_and_channel():
    # kernel planes and input channels add into the same rows: only the very first block assigns
    rng = np.random.default_rng(2)
    vol = rng.standard_normal((4, 7, WIDE)).astype(np.float32)
    k3 = rng.standard_normal((2, 3, 6)).astype(np.float32)
    got = run_filter(vol, k3, method="direct", border="nearest").array
    assert_close(got, ndi.correlate(vol.astype(np.float64), k3.astype(np.float64), mode="nearest", origin=[-1, 0, -1]), vol, k3)
    x = rng.standard_normal((9, WIDE, 2)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    got = convcli.conv_layer(x, weight, bias, border="wrap")
    assert_close(got, naive_layer(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64), border="wrap"), x, weight)


def test_odd_and_even_rows_give_the_same_bits_wherever_a_block_starts():
    # a row is filtered as the first or the second of a pair depending on where its block starts
    # (threads, chunks): both must give the same bits, as the chunked path promises
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, WIDE)).astype(np.float32)
    k = rng.standard_normal((5, 5)).astype(np.float32)
    whole = run_filter(x, k, method="direct").array
    for start in (1, 2, 3, 7):
        part = run_filter(x[start:], k, method="direct").array
        np.testing.assert_array_equal(part[2:], whole[start + 2 :])  # rows clear of the new top border
