"""The direct kernel's paired tap blocks (``engine/_passes.py``): rows of 1024 output cells or more
at unit stride and dilation take them, every block shape against scipy.ndimage and the naive
reference, odd row counts included (the last row of a block pairs with a spare one). On 16 vector
registers, kernels 7 or 9 rows high go four rows at a time, one kernel column per pass
(``add_column``), and the fused 3x3x3 one kernel plane per pass (``add_plane``): against pairs,
scipy and the reference, whatever the rows left at a block's end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

import convcli
from convcli.engine.api import run_filter

from .naive import assert_close, naive_correlate, naive_layer

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


@pytest.mark.parametrize("kh", [1, 2, 3, 4, 5, 7, 9])
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
    # (or of four, for a 7- or 9-row kernel on 16 vector registers)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, WIDE)).astype(np.float32)
    for shape in ((5, 5), (7, 7), (9, 9), (9, 4)):
        k = rng.standard_normal(shape).astype(np.float32)
        whole = run_filter(x, k, method="direct").array
        h = shape[0] // 2
        for start in (1, 2, 3, 5, 7):
            part = run_filter(x[start:], k, method="direct").array
            np.testing.assert_array_equal(part[h:], whole[start + h :])  # rows clear of the new top border


def _column_jobs(monkeypatch) -> list[int]:
    """Record how every correlate_bank job made goes (the calls still run): 1 four rows per kernel
    column (the copy compiled for COLUMNS), 2 per plane (PLANES), 0 another path."""
    from convcli.engine import dispatch

    seen: list[int] = []
    real = dispatch.direct_job

    def job(*args, **kw):
        made = real(*args, **kw)
        if made.kernel.__name__.startswith("correlate_bank_"):
            seen.append({"correlate_bank_columns": 1, "correlate_bank_planes": 2}.get(made.kernel.__name__, 0))
        return made

    monkeypatch.setattr(dispatch, "direct_job", job)
    return seen


@pytest.mark.parametrize("rows", [4, 5, 6, 7, 9])
def test_kernel_columns_in_fours_agree_with_pairs_scipy_and_the_reference(monkeypatch, rows):
    """Fours (``dispatch.COLUMNS`` on 16 registers) against pairs (no COLUMNS) with blocks of
    ``rows`` rows: grey float, 8-bit RGB (planar strips) to float and to uint8, a volume whose
    kernel planes add into the same rows, and a layer whose input channels do."""
    from convcli.engine import dispatch, tuning
    from convcli.engine import plan as engine_plan
    from convcli.engine.api import run_filter_cast
    from convcli.engine.postprocess import Cast

    monkeypatch.setattr(tuning, "DIRECT_BLOCK_MAX", rows)
    monkeypatch.setattr(tuning, "block_rows", lambda registers: 2)  # (the AVX2 choice, on any CPU)
    seen = _column_jobs(monkeypatch)
    rng = np.random.default_rng(rows)
    grey = rng.standard_normal((23, WIDE)).astype(np.float32)
    rgb = rng.integers(0, 256, (14, WIDE, 3), dtype=np.uint8)
    vol = rng.standard_normal((3, 11, WIDE)).astype(np.float32)
    layer_x = rng.standard_normal((13, WIDE, 2)).astype(np.float32)
    k9, k7x5 = rng.standard_normal((9, 9)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
    k3d = rng.standard_normal((2, 7, 3)).astype(np.float32)
    weight = rng.standard_normal((2, 2, 9, 3)).astype(np.float32)

    def calls():
        return [
            run_filter(grey, k9, method="direct", border="reflect").array,
            run_filter(grey, k7x5, method="direct", border="constant", cval=0.5).array,
            run_filter(rgb, k9, method="direct", border="mirror").array,
            run_filter_cast(rgb, np.abs(k9) / 81, Cast(np.dtype(np.uint8)), method="direct", border="nearest")[0].array,
            run_filter(vol, k3d, method="direct", border="wrap").array,
            convcli.conv_layer(layer_x, weight, border="reflect"),
        ]

    engine_plan.forget()
    fours = calls()
    assert set(seen) == {1}
    seen.clear()
    monkeypatch.setattr(dispatch, "COLUMNS", ())
    engine_plan.forget()
    pairs = calls()
    assert set(seen) == {0}
    for a, b in zip(fours, pairs):
        assert a.dtype == b.dtype and a.shape == b.shape
    # float32 sums in another order: a .5 tie may round either way
    assert np.abs(fours[3].astype(int) - pairs[3].astype(int)).max() <= 1
    f64 = np.float64
    for got in (fours, pairs):
        assert_close(got[0], ndi.correlate(grey.astype(f64), k9.astype(f64), mode="reflect"), grey, k9)
        assert_close(got[1], ndi.correlate(grey.astype(f64), k7x5.astype(f64), mode="constant", cval=0.5), grey, k7x5)
        for c in range(3):
            assert_close(got[2][..., c], ndi.correlate(rgb[..., c].astype(f64), k9.astype(f64), mode="mirror"), rgb, k9)
            want = np.clip(np.rint(ndi.correlate(rgb[..., c].astype(f64), np.abs(k9).astype(f64) / 81, mode="nearest")), 0, 255)
            assert np.abs(got[3][..., c].astype(int) - want).max() <= 1
        assert_close(got[4], ndi.correlate(vol.astype(f64), k3d.astype(f64), mode="wrap", origin=[-1, 0, 0]), vol, k3d)
        assert_close(got[5], naive_layer(layer_x.astype(f64), weight.astype(f64), None, border="reflect"), layer_x, weight)


def test_each_call_runs_the_copy_compiled_for_its_path(monkeypatch, direct_kernels):
    """correlate_bank runs as one compiled copy per path (its MODE fixed, the other paths pruned
    before typing, so a first call compiles only its own); the path dispatch names is the one the
    call needs, and each copy agrees with scipy."""
    from convcli.engine import _direct, tuning
    from convcli.engine import plan as engine_plan

    monkeypatch.setattr(tuning, "block_rows", lambda r: 2)  # (16 vector registers, on any CPU)
    rng = np.random.default_rng(3)
    cases = [  # (input, kernel, stride, the path)
        (rng.random((20, 40), dtype=np.float32), rng.random((7, 7), dtype=np.float32), 1, "flat"),
        (rng.random((20, WIDE), dtype=np.float32), rng.random((7, 4), dtype=np.float32), 2, "taps"),
        (rng.random((20, WIDE), dtype=np.float32), rng.random((11, 6), dtype=np.float32), 1, "blocks"),
        (rng.random((20, WIDE), dtype=np.float32), rng.random((9, 5), dtype=np.float32), 1, "columns"),
        (rng.random((7, 12, 30), dtype=np.float32), rng.random((3, 3, 3), dtype=np.float32), (1, 2, 1), "fused"),
        (rng.random((7, 12, 30), dtype=np.float32), rng.random((3, 3, 3), dtype=np.float32), 1, "planes"),
    ]
    mode_of = {name: mode for mode, name in _direct.MODE_NAMES.items()}
    for x, k, stride, path in cases:
        engine_plan.forget()
        got = run_filter(x, k, method="direct", border="reflect", stride=stride).array
        kernel = _direct.bank(mode_of[path])
        assert direct_kernels.pop() == kernel.__name__ == f"correlate_bank_{path}"
        assert getattr(kernel, "py_func", kernel).__globals__["MODE"] == mode_of[path]  # (NUMBA_DISABLE_JIT: the function)
        assert_close(got, naive_correlate(x.astype(np.float64), k.astype(np.float64), border="reflect", stride=stride), x, k)
        if stride == 1 and all(n % 2 for n in k.shape):
            assert_close(got, ndi.correlate(x.astype(np.float64), k.astype(np.float64), mode="reflect"), x, k)
    assert _direct.MODE == 0  # the module's own function is never compiled


def test_which_kernels_go_in_fours(monkeypatch):
    """Fours need 16 vector registers (2-row blocks) and a kernel height of COLUMNS, the heights
    tools/generate_passes.py writes; blocks of more than four rows are cut to a multiple of four."""
    from convcli.engine import _jit, dispatch, tuning
    from convcli.engine import plan as engine_plan

    spec = __import__("importlib.util").util.spec_from_file_location("gen", Path(__file__).resolve().parent.parent / "tools" / "generate_passes.py")
    gen = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert tuple(gen.COLUMNS) == dispatch.COLUMNS
    seen = _column_jobs(monkeypatch)
    x = np.zeros((12, WIDE), np.float32)
    for registers in (16, 32):
        monkeypatch.setattr(tuning, "block_rows", lambda r, registers=registers: 2 if registers == 16 else 3)
        for kh in (5, 6, 7, 8, 9, 11):
            engine_plan.forget()
            run_filter(x, np.ones((kh, 3), np.float32), method="direct")
            assert seen.pop() == int(registers == 16 and kh in (7, 9)), (registers, kh)
    for kh in (7, 9):
        for n in (1, 2):
            block, _ = tuning.direct_tasks(1, 4096, 4104, 4, 1, kh, 1, 1, channels=1, n=n, fours=True)
            plain, _ = tuning.direct_tasks(1, 4096, 4104, 4, 1, kh, 1, 1, channels=1, n=n)
            assert block % 4 == 0 and plain - 3 <= block <= plain
    assert tuning.direct_tasks(1, 3, 4104, 4, 1, 9, 1, 1, channels=1, n=1, fours=True)[0] == 3  # (fewer rows than four)
    assert tuning.direct_tasks(1, 24, 4104, 4, 1, 9, 1, 1, channels=1, n=2, fours=True)[0] == 4  # threads split to four
    for out_rows in range(4, 200, 3):
        for n in (1, 2, 4):
            assert tuning.direct_tasks(1, out_rows, 4104, 4, 1, 9, 1, 1, channels=1, n=n, fours=True)[0] % 4 == 0
    # ... and the fused 3x3x3 (one input channel per output), whatever the row width
    vol = np.zeros((5, 6, 40), np.float32)
    for registers in (16, 32):
        monkeypatch.setattr(tuning, "block_rows", lambda r, registers=registers: 2 if registers == 16 else 3)
        for shape in ((3, 3, 3), (3, 3, 5), (2, 3, 3)):
            engine_plan.forget()
            run_filter(vol, np.ones(shape, np.float32), method="direct")
            assert seen.pop() == 2 * int(registers == 16 and shape == (3, 3, 3)), (registers, shape)
    # ... but not on planar RGB strips (which take the general path), nor 7/9-high kernels on
    # narrow rows (the flat path) or at other strides
    monkeypatch.setattr(tuning, "block_rows", lambda r: 2)
    for xin, kern, kw in ((np.zeros((3, 4, WIDE, 3), np.float32), np.ones((3, 3, 3), np.float32), {}),
                          (np.zeros((12, 40), np.float32), np.ones((9, 3), np.float32), {}),
                          (x, np.ones((7, 3), np.float32), {"stride": (2, 1)})):  # fmt: skip
        engine_plan.forget()
        run_filter(xin, kern, method="direct", **kw)
        assert seen.pop() == 0, (xin.shape, kern.shape, kw)
    # the column and plane blocks keep the source's order of sums (what lets a line serve four rows)
    from convcli.engine import _passes

    for name in [f"_column{m}_add" for m in dispatch.COLUMNS] + ["_plane3_set", "_plane3_add"]:
        flags = getattr(_passes, name).targetoptions["fastmath"]
        assert "reassoc" not in flags and "contract" in flags and flags == _jit.ORDERED_FLAGS, name


@pytest.mark.parametrize("rows", [4, 5, 6, 7, 9])
def test_the_3x3x3_by_planes_in_fours_agrees_with_pairs_and_scipy(monkeypatch, rows):
    """The fused 3x3x3 four rows at a time, one kernel plane per pass (16 registers), against its
    pairs of rows (32), with blocks of ``rows`` rows, at unit and at other z strides; and a row
    gets the same bits wherever a block starts (what chunked volumes rely on)."""
    from convcli.engine import plan as engine_plan
    from convcli.engine import tuning

    monkeypatch.setattr(tuning, "DIRECT_BLOCK_MAX", rows)
    seen = _column_jobs(monkeypatch)
    rng = np.random.default_rng(rows)
    vol = rng.standard_normal((6, 23, 37)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3)).astype(np.float32)
    got = {}
    for registers in (16, 32):
        monkeypatch.setattr(tuning, "block_rows", lambda r, registers=registers: 2 if registers == 16 else 3)
        engine_plan.forget()
        got[registers] = [run_filter(vol, k, method="direct", border=border, cval=0.25).array for border in ("reflect", "constant")]
        got[registers].append(run_filter(vol, k, method="direct", border="nearest", stride=(2, 1, 1)).array)
        got[registers].append(run_filter(vol[:, 3:], k, method="direct", border="reflect").array)
    assert set(seen) == {0, 2}
    f64 = np.float64
    for reflect, constant, strided, shifted in got.values():
        assert_close(reflect, ndi.correlate(vol.astype(f64), k.astype(f64), mode="reflect"), vol, k)
        assert_close(constant, ndi.correlate(vol.astype(f64), k.astype(f64), mode="constant", cval=0.25), vol, k)
        assert_close(strided, ndi.correlate(vol.astype(f64), k.astype(f64), mode="nearest")[1::2], vol, k)  # ("same": padding (0, 1) in z)
        np.testing.assert_array_equal(shifted[:, 1:], reflect[:, 4:])  # rows clear of the new top border
    # an RGB volume (planar strips, not fused) stays on the general path, also on 16 registers
    rgb = rng.standard_normal((4, 5, WIDE, 3)).astype(np.float32)
    monkeypatch.setattr(tuning, "block_rows", lambda r: 2)
    engine_plan.forget()
    got_rgb = run_filter(rgb, k, method="direct", border="reflect").array
    for c in range(3):
        assert_close(got_rgb[..., c], ndi.correlate(rgb[..., c].astype(f64), k.astype(f64), mode="reflect"), rgb, k)
