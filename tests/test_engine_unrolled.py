"""The whole-kernel direct path (``_direct.correlate_unrolled``): a 3x3 or 5x5 kernel at unit stride
and dilation, on float rows of the kernel's dtype or 8/16-bit rows (grey or interleaved RGB),
assigned two rows at a time (a 5x5 on 16 vector registers: four, in the pairs' order) from the
input rows read in place, the border columns gathered apart, 8-bit results rounded from float
rows in cache. Which calls take it, every border and shape
against scipy.ndimage and the naive reference, the fused cast against filtering then casting,
and the same bits for a border column as for the same cell computed inside a padded copy (what a
chunked block does)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.ndimage as ndi

import convcli
from convcli.engine import dispatch, tasks, tuning
from convcli.engine import plan as engine_plan
from convcli.engine.api import run_filter, run_filter_cast
from convcli.engine.postprocess import Cast

from .naive import NP_PAD_MODE, assert_close, naive_correlate, naive_layer

BORDERS = ("reflect", "mirror", "nearest", "wrap", "constant")


@pytest.fixture
def kernels_run(monkeypatch):
    """The names of the compiled kernels each call runs (the calls still run)."""
    seen: list[str] = []
    real = tasks.run

    def run(kernel, n, *args, **kw):  # (correlate_unrolled runs as copies: correlate_unrolled_pairs3x3_1 ...)
        name = kernel.__name__.removesuffix("_serial")
        seen.append("correlate_unrolled" if name.startswith("correlate_unrolled_") else name)
        return real(kernel, n, *args, **kw)

    monkeypatch.setattr(tasks, "run", run)
    return seen


@pytest.fixture
def short_blocks(monkeypatch):
    """Tasks of at most 3 rows: blocks end on an odd row, so their last row pairs with a spare."""
    monkeypatch.setattr(tuning, "DIRECT_BLOCK_MAX", 3)


def test_which_calls_take_the_unrolled_kernel(kernels_run):
    rng = np.random.default_rng(0)
    f32 = rng.random((20, 30), dtype=np.float32)
    k3 = rng.random((3, 3), dtype=np.float32)
    takes = [
        lambda: run_filter(f32, k3, method="direct"),
        lambda: run_filter((f32 * 255).astype(np.uint8), k3, method="direct", border="constant", cval=3.0),
        lambda: run_filter((f32 * 999).astype(np.uint16), k3, method="direct"),
        lambda: run_filter(f32.astype(np.int16), k3, method="direct"),  # converted to float32 first
        lambda: run_filter(f32.astype(np.uint8), k3, method="direct", border="constant", cval=0.5),  # ... as is this
        lambda: run_filter(rng.random((20, 30, 3), dtype=np.float32), k3, method="direct"),  # RGB, interleaved
        lambda: run_filter_cast(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), k3, Cast(np.dtype(np.uint8))),
        lambda: run_filter(f32.astype(np.float64), rng.random((5, 5)), method="direct"),
        lambda: run_filter(f32, k3, method="direct", precision="float64"),  # input converted to float64 first
        lambda: run_filter(rng.random((4, 20, 30), dtype=np.float32), k3[None], method="direct", stride=(2, 1, 1)),
        lambda: convcli.conv_layer(rng.random((20, 30, 1), dtype=np.float32), rng.random((4, 1, 3, 3), dtype=np.float32)),
    ]
    others = [
        lambda: run_filter(rng.random((20, 30, 4), dtype=np.float32), k3, method="direct"),  # four interleaved
        lambda: run_filter(f32, rng.random((3, 5), dtype=np.float32), method="direct"),
        lambda: run_filter(f32, rng.random((7, 7), dtype=np.float32), method="direct"),
        lambda: run_filter(f32, k3, method="direct", stride=2),
        lambda: run_filter(f32, k3, method="direct", dilation=2),
        lambda: run_filter(rng.random((6, 20, 30), dtype=np.float32), rng.random((3, 3, 3), dtype=np.float32), method="direct"),
        lambda: convcli.conv_layer(rng.random((20, 30, 2), dtype=np.float32), rng.random((4, 2, 3, 3), dtype=np.float32)),
    ]
    for call in takes:
        kernels_run.clear()
        call()
        assert kernels_run == ["correlate_unrolled"], call
    for call in others:
        kernels_run.clear()
        call()
        assert "correlate_unrolled" not in kernels_run and any(name.startswith("correlate_bank_") for name in kernels_run), call


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocks", ["whole", "short"])
def test_every_border_and_shape_agrees_with_scipy_and_the_reference(dtype, blocks, request, kernels_run):
    # images narrower and shorter than the kernel (no interior column), one row, odd heights
    if blocks == "short":
        request.getfixturevalue("short_blocks")
    rng = np.random.default_rng(1)
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(dtype)
        for shape in ((1, 1), (1, 9), (2, 3), (4, 7), (7, 4), (9, 10), (33, 65)):
            x = rng.standard_normal(shape).astype(dtype)
            for border in BORDERS:
                for flip in (False, True):
                    got = run_filter(x, kern, method="direct", border=border, cval=0.5, flip=flip).array
                    assert got.dtype == dtype
                    ref = (ndi.convolve if flip else ndi.correlate)(x.astype(np.float64), kern.astype(np.float64), mode=border, cval=0.5)
                    assert_close(got, ref, x, kern, dtype)
                    assert_close(got, naive_correlate(x, kern, border=border, cval=0.5, flip=flip), x, kern, dtype)
    assert set(kernels_run) == {"correlate_unrolled"}


def test_paddings_other_than_same(kernels_run):
    # valid: no border column at all; wide and uneven padding: output columns beyond the halo
    # read only padded cells, and columns j0 .. j1 start further in
    rng = np.random.default_rng(2)
    x = rng.standard_normal((11, 14)).astype(np.float32)
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        for padding in ("valid", "full", 4, ((3, 0), (0, 6)), ((0, 1), (7, 2))):
            for border in ("constant", "reflect", "wrap"):
                got = run_filter(x, kern, method="direct", padding=padding, border=border, cval=-2.0).array
                want = naive_correlate(x, kern, border=border, padding=padding, cval=-2.0)
                assert got.shape == want.shape
                assert_close(got, want, x, kern)
    assert set(kernels_run) == {"correlate_unrolled"}


def test_volumes_planes_strides_and_one_channel_layers(kernels_run):
    rng = np.random.default_rng(3)
    vol = rng.standard_normal((5, 12, 17)).astype(np.float32)
    k = rng.standard_normal((1, 5, 5)).astype(np.float32)
    for stride in (1, (2, 1, 1), (3, 1, 1)):
        for padding in ("same", ((1, 2), (2, 2), (2, 2))):  # z padding: planes of the constant
            got = run_filter(vol, k, method="direct", stride=stride, padding=padding, border="constant", cval=1.5).array
            want = naive_correlate(vol, k, stride=stride, padding=padding, border="constant", cval=1.5)
            assert_close(got, want, vol, k)
    x = rng.standard_normal((13, 21, 1)).astype(np.float32)
    weight = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)  # one input channel, four filters
    bias = rng.standard_normal(4).astype(np.float32)
    got = convcli.conv_layer(x, weight, bias, border="mirror")
    want = naive_layer(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64), border="mirror")
    assert_close(got, want, x, weight)
    assert set(kernels_run) == {"correlate_unrolled"}


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("k", [3, 5])
def test_border_columns_give_the_bits_of_the_same_cells_inside_a_padded_copy(border, k):
    # a chunked block computes a cell at the image's border from gathered padded cells, as an
    # interior cell; the whole image computes it as a border column: both must give the same bits
    rng = np.random.default_rng(4)
    x = rng.standard_normal((23, 41)).astype(np.float32)
    kern = rng.standard_normal((k, k)).astype(np.float32)
    h = k // 2
    whole = run_filter(x, kern, method="direct", border=border, cval=0.25).array
    padded = np.pad(x, h, mode=NP_PAD_MODE[border], **({"constant_values": 0.25} if border == "constant" else {}))
    inside = run_filter(padded, kern, method="direct", padding="valid").array
    np.testing.assert_array_equal(whole, inside)
    for start in (1, 2, 5):  # rows and columns falling at other places in a pair and a block
        part = run_filter(x[start:, start:], kern, method="direct", border=border, cval=0.25).array
        np.testing.assert_array_equal(part[h:-h, h:-h], whole[start + h : -h, start + h : -h])  # (wrap: last h read the first)


def test_into_out_and_channels_in_a_batch_of_equal_images():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 50)).astype(np.float32)
    kern = rng.standard_normal((5, 5)).astype(np.float32)
    want = run_filter(x, kern, method="direct", border="wrap").array
    out = np.full((30, 50), np.nan, np.float32)
    got = run_filter(x, kern, method="direct", border="wrap", out=out).array
    assert got is out
    np.testing.assert_array_equal(out, want)
    wide = np.full((30, 100), np.nan, np.float32)  # not contiguous: filtered aside, then copied
    run_filter(x, kern, method="direct", border="wrap", out=wide[:, ::2])
    np.testing.assert_array_equal(wide[:, ::2], want)
    assert np.isnan(wide[:, 1::2]).all()


def test_the_sizes_the_dispatch_sends_are_the_generated_ones():
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "tools" / "generate_passes.py"
    spec = importlib.util.spec_from_file_location("generate_passes", tool)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert tuple(mod.WHOLE) == dispatch.UNROLLED
    assert tuple(mod.SPACINGS) == dispatch.UNROLLED_SPACINGS


def test_warmup_compiles_every_signature_the_unrolled_path_uses(monkeypatch):
    # recorded, not compiled: a signature warmup misses would compile on a user's first image
    import numba

    from convcli.engine import cache

    def recorder(seen):
        def run(kernel, n, *args, work=0, ready=None):
            if kernel.__name__.startswith("correlate_unrolled"):
                seen.add(tuple(str(numba.typeof(a)) for a in args))

        return run

    warmed, used = set(), set()
    monkeypatch.setattr(tasks, "run", recorder(warmed))
    cache.warmup(full=True)
    monkeypatch.setattr(tasks, "run", recorder(used))
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        for k in (3, 5):
            run_filter(rng.random((9, 12)).astype(dtype), rng.random((k, k)), method="direct")
            run_filter(rng.random((3, 9, 12)).astype(dtype), rng.random((1, k, k)), method="direct", border="constant", cval=2.0)
    for dtype in (np.uint8, np.uint16):  # read in place, or through the ring of converted rows
        for precision in ("auto", "float64"):
            for shape in ((9, 12), (9, 12, 3)):
                x = rng.integers(0, 200, shape).astype(dtype)
                run_filter(x, rng.random((3, 3)), method="direct", precision=precision)
                run_filter_cast(x, rng.random((5, 5)), Cast(np.dtype(dtype)), method="direct", precision=precision)
    assert used and used <= warmed, used - warmed


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [0, 3])
def test_eight_and_sixteen_bit_and_rgb_rows_agree_with_scipy(dtype, channels, kernels_run):
    # 8/16-bit rows are converted as they are read; RGB rows are read interleaved, taps 3 apart
    rng = np.random.default_rng(7)
    top = 255 if dtype == np.uint8 else 60000
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        for h, w in ((1, 1), (2, 5), (6, 3), (17, 40)):
            x = rng.integers(0, top, (h, w, channels) if channels else (h, w)).astype(dtype)
            for border in BORDERS:
                got = run_filter(x, kern, method="direct", border=border, cval=9.0).array
                assert got.dtype == np.float32 and got.shape == x.shape
                for c in range(max(channels, 1)):
                    xc = x[..., c] if channels else x
                    ref = ndi.correlate(xc.astype(np.float64), kern.astype(np.float64), mode=border, cval=9.0)
                    assert_close(got[..., c] if channels else got, ref, xc, kern)
    assert set(kernels_run) == {"correlate_unrolled"}


@pytest.mark.parametrize("block_rows", [2, 3])
def test_each_call_runs_the_copy_compiled_for_its_kernel_and_spacing(block_rows, monkeypatch, direct_kernels):
    """correlate_unrolled runs as one copy per (rows at a time, k, tap spacing), its pass fixed
    (``_passes.PAIRS`` or ``QUADS[k, spacing]``), so a first call compiles only the pass it runs;
    each copy agrees with scipy and the naive reference, and its border columns (gathered apart,
    summed by the same pass) have the bits of the same cells computed inside a padded copy."""
    from convcli.engine import _direct, _passes

    monkeypatch.setattr(tuning, "block_rows", lambda registers: block_rows)  # 2: 16 vector registers (fours)
    rng = np.random.default_rng(21)
    seen = set()
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        for channels in (0, 3):
            x = rng.random((23, 41, channels) if channels else (23, 41), dtype=np.float32)
            engine_plan.forget()
            got = run_filter(x, kern, method="direct", border="mirror").array
            fours = k == 5 and block_rows == 2
            spacing = 3 if channels else 1
            copy = _direct.unrolled(fours, k, spacing)
            name = f"correlate_unrolled_{'fours' if fours else 'pairs'}{k}x{k}_{spacing}"
            assert direct_kernels.pop() == copy.__name__ == name
            passes = _passes.QUADS if fours else _passes.PAIRS
            constants = getattr(copy, "py_func", copy).__globals__  # (NUMBA_DISABLE_JIT: the function)
            assert constants["PASS"] is passes[k, spacing] and (constants["KSIZE"], constants["SPACING"]) == (k, spacing)
            seen.add(name)
            for c in range(max(channels, 1)):
                xc = (x[..., c] if channels else x).astype(np.float64)
                plane = got[..., c] if channels else got
                assert_close(plane, ndi.correlate(xc, kern.astype(np.float64), mode="mirror"), xc, kern)
                assert_close(plane, naive_correlate(xc, kern.astype(np.float64), border="mirror"), xc, kern)
            edge = run_filter(x, kern, method="direct", border="nearest").array
            h = k // 2
            padded = np.pad(x, ((h, h), (h, h)) + (((0, 0),) if channels else ()), mode="edge")
            inside = run_filter(padded, kern, method="direct", padding="valid").array
            assert direct_kernels[-2:] == [name, name]
            np.testing.assert_array_equal(edge.view(np.int32), inside.view(np.int32))
    pairs = {f"correlate_unrolled_pairs{k}x{k}_{sp}" for k in (3, 5) for sp in (1, 3)}
    expected = pairs - {"correlate_unrolled_pairs5x5_1", "correlate_unrolled_pairs5x5_3"} if block_rows == 2 else pairs
    assert seen == expected | ({"correlate_unrolled_fours5x5_1", "correlate_unrolled_fours5x5_3"} if block_rows == 2 else set())
    copies = {f"correlate_unrolled_{'fours' if f else 'pairs'}{k}x{k}_{sp}" for f, k, sp in _direct.unrolled_copies(block_rows == 2)}
    assert copies == pairs | (seen - pairs)  # warmup's list: every pairs copy, and the fours where dispatch takes them
    assert _direct.PASS is None and _direct.KSIZE == 0  # the module's own function is never compiled


@pytest.mark.parametrize("channels", [0, 3])
@pytest.mark.parametrize("absolute", [False, True])
def test_the_fused_cast_gives_the_integers_and_count_of_filtering_then_casting(channels, absolute, short_blocks, kernels_run):
    rng = np.random.default_rng(8)
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        for target in (np.uint8, np.uint16):
            x = rng.integers(0, np.iinfo(target).max, (11, 26, channels) if channels else (11, 26)).astype(target)
            cast = Cast(np.dtype(target), 0.0, 0.7, 30.0, absolute)
            for border in ("reflect", "constant"):
                (got, clipped) = run_filter_cast(x, kern, cast, method="direct", border=border)
                apart, apart_clipped = cast.apply(run_filter(x, kern, method="direct", border=border).array)
                assert got.array.dtype == target
                np.testing.assert_array_equal(got.array, apart)
                assert clipped == apart_clipped > 0  # some values below 0 or above the type's top are clipped
    assert set(kernels_run) == {"correlate_unrolled"}


def test_rgb_border_columns_give_the_bits_of_a_padded_copy():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (15, 22, 3), dtype=np.uint8)
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        h = k // 2
        for border in BORDERS:
            whole = run_filter(x, kern, method="direct", border=border, cval=4.0).array
            padded = np.pad(x, ((h, h), (h, h), (0, 0)), mode=NP_PAD_MODE[border], **({"constant_values": 4} if border == "constant" else {}))
            np.testing.assert_array_equal(whole, run_filter(padded, kern, method="direct", padding="valid").array)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("precision", ["auto", "float64"])
@pytest.mark.parametrize("blocks", ["whole", "short"])
def test_integer_rows_give_the_bits_of_the_same_values_in_float(dtype, precision, blocks, request):
    # read in place (8-bit; 16-bit under float64 weights), converted into the ring of rows (16-bit
    # under float32), or converted first (a constant border the type cannot hold): every way gives
    # the bits of the float input, and border cells those of a padded copy; short blocks start the
    # ring afresh every 3 rows
    if blocks == "short":
        request.getfixturevalue("short_blocks")
    rng = np.random.default_rng(10)
    x = rng.integers(0, np.iinfo(dtype).max, (23, 14), endpoint=True).astype(dtype)
    as_float = x.astype(np.float64 if precision == "float64" else np.float32)
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        for border, cval in (("reflect", 0.0), ("constant", 1.0), ("constant", 1.5)):
            got = run_filter(x, kern, method="direct", border=border, cval=cval, precision=precision).array
            np.testing.assert_array_equal(got, run_filter(as_float, kern, method="direct", border=border, cval=cval, precision=precision).array)
        whole = run_filter(x, kern, method="direct", border="nearest", precision=precision).array
        padded = np.pad(x, k // 2, mode="edge")
        np.testing.assert_array_equal(whole, run_filter(padded, kern, method="direct", padding="valid", precision=precision).array)


def test_sixteen_bit_rows_under_float32_weights_are_not_copied_to_float(kernels_run):
    # they go through a ring of K+1 converted rows: the call holds the result, not a float copy
    # of the input beside it (which would double a large image's footprint)
    import tracemalloc

    rng = np.random.default_rng(11)
    x = rng.integers(0, 60000, (1500, 1000), dtype=np.uint16)
    for k in (3, 5):
        kern = rng.standard_normal((k, k)).astype(np.float32)
        run_filter(x, kern, method="direct")  # (loading or compiling the kernel allocates too)
        tracemalloc.start()
        try:
            got = run_filter(x, kern, method="direct").array
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert got.dtype == np.float32
        assert peak < got.nbytes + x.nbytes // 2, peak  # a float32 copy would add 2 * x.nbytes
        assert_close(got, ndi.correlate(x.astype(np.float64), kern.astype(np.float64), mode="reflect"), x, kern)
    assert set(kernels_run) == {"correlate_unrolled"}


def test_eight_bit_rows_in_place_and_through_the_ring_give_the_same_bits(tmp_path):
    """8-bit rows are read in place on AVX-512 and converted into the ring elsewhere
    (``_direct.reads_in_place``): the other CPU kind's choice, compiled afresh in a subprocess, gives
    the bits of float input too (the choice is made when the kernel compiles); so does a constant
    border the 8-bit type cannot hold, converted first whichever way the rows are read."""
    code = textwrap.dedent(
        """
        import numpy as np
        from convcli.engine import _jit
        registers = 48 - _jit.vector_registers()  # the other kind: 16 <-> 32
        flipped = registers == 32
        _jit.vector_registers = lambda: registers  # before _direct binds it
        from convcli.engine._direct import reads_in_place
        from convcli.engine.api import run_filter, run_filter_cast
        from convcli.engine.postprocess import Cast
        assert reads_in_place("uint8", "float32") is flipped
        rng = np.random.default_rng(12)
        for shape in ((23, 14), (9, 12, 3)):
            x = rng.integers(0, 256, shape, dtype=np.uint8)
            for k in (3, 5):
                kern = rng.standard_normal((k, k)).astype(np.float32)
                for border, cval in (("reflect", 0.0), ("constant", 7.0), ("constant", -1.5), ("constant", 300.0)):
                    opts = dict(method="direct", border=border, cval=cval)
                    want = run_filter(x.astype(np.float32), kern, **opts).array
                    np.testing.assert_array_equal(run_filter(x, kern, **opts).array, want)
                    cast = run_filter_cast(x, kern, Cast(np.dtype(np.uint8)), **opts)[0].array
                    np.testing.assert_array_equal(cast, np.clip(np.rint(want), 0, 255).astype(np.uint8))
        print("ok", flipped)
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "CONVCLI_BACKEND": "numba"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "ok"


@pytest.mark.parametrize("block_rows", [3, 2])
def test_whole_and_split_five_by_five_agree_with_scipy_and_keep_edges_exact(block_rows, monkeypatch, kernels_run):
    # AVX2 (2-row blocks) splits a unit-spaced 5x5 into 2 + 2 + 1 kernel rows (``PAIRS[5, 1]``),
    # AVX-512 assigns it whole: both run here, whatever this CPU is; the border columns (gathered
    # apart, ``_edge_cells``, summed by the same pass) keep the bits of a padded copy either way
    monkeypatch.setattr(tuning, "block_rows", lambda registers: block_rows)
    rng = np.random.default_rng(13)
    kern = rng.standard_normal((5, 5)).astype(np.float32)
    for dtype in (np.float32, np.uint8):
        x = rng.integers(0, 255, (21, 37)).astype(dtype)
        for border in BORDERS:
            got = run_filter(x, kern, method="direct", border=border, cval=3.0).array
            ref = ndi.correlate(x.astype(np.float64), kern.astype(np.float64), mode=border, cval=3.0)
            assert_close(got, ref, x, kern)
        padded = np.pad(x, 2, mode="edge")
        whole = run_filter(x, kern, method="direct", border="nearest").array
        np.testing.assert_array_equal(whole, run_filter(padded, kern, method="direct", padding="valid").array)
    assert set(kernels_run) == {"correlate_unrolled"}


@pytest.mark.parametrize("rows", [4, 5, 6, 7, 9])
def test_a_5x5_in_fours_gives_the_bits_of_pairs_and_matches_scipy(monkeypatch, rows):
    """On 16 vector registers a 5x5 goes four rows at a time where its lines spread over L1
    (``tuning.rows_spread``), through a stage of longer rows where rows read in place crowd one
    set, else in pairs: the same bits every way, whatever the rows left at a block's end (blocks
    of ``rows``), for float, grey 8-bit and RGB rows, to float and to uint8."""
    monkeypatch.setattr(tuning, "DIRECT_BLOCK_MAX", rows)
    monkeypatch.setattr(tuning, "block_rows", lambda registers: 2)  # (the AVX2 choice, on any CPU)
    seen: list[int] = []
    real_job = dispatch.direct_job

    def job(*args, **kw):
        made = real_job(*args, **kw)
        if made.kernel.__name__.startswith("correlate_unrolled_"):
            seen.append(made.middle[-1])
        return made

    monkeypatch.setattr(dispatch, "direct_job", job)
    rng = np.random.default_rng(9)
    kern = rng.standard_normal((5, 5)).astype(np.float32)
    inputs = [rng.standard_normal((29, 37)).astype(np.float32), rng.integers(0, 256, (29, 37), dtype=np.uint8),
              rng.integers(0, 256, (29, 37, 3), dtype=np.uint8)]  # fmt: skip
    spreads = {
        "spread": lambda stride, n: True,
        "crowded": lambda stride, n: False,
        "padded rows spread": lambda stride, n: stride not in (37 * 4, 37 * 3 * 4),  # (float32 rows of the inputs)
    }
    for x in inputs:
        got = {}
        for name, spread in spreads.items():
            monkeypatch.setattr(tuning, "rows_spread", spread)
            engine_plan.forget()  # (a remembered plan keeps its job)
            got[name] = (run_filter(x, kern, method="direct", border="reflect").array,
                         run_filter_cast(x, kern / 8, Cast(np.dtype(np.uint8)), method="direct", border="reflect"))  # fmt: skip
        for name in spreads:
            np.testing.assert_array_equal(got[name][0], got["crowded"][0])
            np.testing.assert_array_equal(got[name][1][0].array, got["crowded"][1][0].array)
            assert got[name][1][1] == got["crowded"][1][1]
        planes = [x[..., c] for c in range(3)] if x.ndim == 3 else [x]
        ref = np.stack([ndi.correlate(p.astype(np.float64), kern.astype(np.float64), mode="reflect") for p in planes], -1)
        assert_close(got["spread"][0], ref.reshape(x.shape), x, kern)
    assert {-1, 0, 16} <= set(seen)  # pairs, fours in place, fours through a stage 16 cells longer


def test_rows_spread_reads_the_l1_geometry(monkeypatch):
    # 4096-byte ways (64 sets of 64 bytes): rows 16 KiB apart all fall in one set, 4000 floats apart spread
    monkeypatch.setattr(tuning, "l1_way_bytes", lambda: 4096)
    assert not tuning.rows_spread(4096 * 4, 8)
    assert not tuning.rows_spread(2048 * 4, 8)
    assert tuning.rows_spread(4000 * 4, 8)
    assert tuning.rows_spread(12000 * 4, 8)
    assert tuning.rows_spread(4104 * 4, 8)  # a padded row: each line one set further
    monkeypatch.setattr(tuning, "l1_way_bytes", lambda: 128)  # two sets: eight lines cannot spread
    assert not tuning.rows_spread(4000 * 4, 8)


def test_quads_sum_in_the_pairs_order_by_the_source():
    """Four rows at a time give the pairs' bits without relying on LLVM's reassociation: in plain
    Python (NUMBA_DISABLE_JIT), where every + is its own rounding, a QUADS pass matches two
    calls of the PAIRS pass (AVX2's split blocks at unit spacing, the row sums at spacing 3)."""
    code = textwrap.dedent("""
        import numpy as np
        from convcli.engine._passes import PAIRS, QUADS
        rng = np.random.default_rng(12)
        wk = rng.standard_normal((5, 5)).astype(np.float32)
        for spacing in (1, 3):
            lines = [rng.standard_normal(40).astype(np.float32) for _ in range(8)]
            n = 40 - 4 * spacing
            quad = [np.empty(n, np.float32) for _ in range(4)]
            pair = [np.empty(n, np.float32) for _ in range(4)]
            QUADS[5, spacing](*quad, *lines, wk)
            PAIRS[5, spacing](pair[0], pair[1], *lines[:6], wk, 2)
            PAIRS[5, spacing](pair[2], pair[3], *lines[2:8], wk, 2)
            assert all(np.array_equal(q.view(np.int32), p.view(np.int32)) for q, p in zip(quad, pair)), spacing
            changed = [np.empty(n, np.float32) for _ in range(4)]  # (the check can fail: another order differs)
            QUADS[5, spacing](*changed, *lines, wk[::-1].copy())
            assert not all(np.array_equal(c, p) for c, p in zip(changed, pair))
        print("ok")
    """)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_which_rows_go_in_fours(monkeypatch):
    """dispatch._quads on an L1 with 4 KiB ways: 5x5 on 16 registers only; rows that crowd one set
    through a stage 16 cells longer when read in place, in pairs when converted into the ring."""
    monkeypatch.setattr(tuning, "l1_way_bytes", lambda: 4096)
    f32, f64, u8 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8)
    assert dispatch._quads(5, 2, 4000, f32, f32) == 0  # spread: in place
    assert dispatch._quads(5, 2, 4096, f32, f32) == 16  # 16 KiB apart: through the stage
    assert dispatch._quads(5, 2, 3 * 4096, f32, f32) == 16  # RGB rows, interleaved
    assert dispatch._quads(5, 2, 2048, f64, f64) == 16
    assert dispatch._quads(5, 2, 4000, None, f32) == 0  # 8-bit rows converted into the ring
    assert dispatch._quads(5, 2, 4096, None, f32) == -1  # ... whose rows crowd: pairs
    assert dispatch._quads(5, 3, 4000, f32, f32) == -1  # 32 registers: the whole 5x5 in pairs
    assert dispatch._quads(3, 2, 4000, f32, f32) == -1
    assert dispatch._quads(5, 2, 4096, u8, f32) == 32  # 8-bit rows read in place, 4 KiB apart: 32 bytes more each
