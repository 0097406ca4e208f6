"""Round 2 of the engine API (SPEC §5, issue 14): ``origin=``, ``out=``, ``precision=``, exact
integer factors, against scipy.ndimage and the naive reference."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.ndimage as ndi

import convcli
from convcli.engine.api import run_filter

from .naive import assert_close, naive_correlate

BORDERS = ["reflect", "mirror", "nearest", "constant", "wrap"]


def _pow2_kernel(rng, shape):
    # power-of-two weights: any flip or off-by-one is an exact mismatch
    return 2.0 ** rng.integers(-3, 4, shape) * rng.choice([-1, 1], shape)


def _origins(kshape):
    """Every valid origin per axis (scipy: -(k//2) .. (k-1)//2), as a few combinations."""
    ranges = [list(range(-(k // 2), (k - 1) // 2 + 1)) for k in kshape]
    combos = {tuple(r[0] for r in ranges), tuple(r[-1] for r in ranges), tuple(0 for _ in ranges)}
    combos.add(tuple(r[len(r) // 2] for r in ranges))
    return sorted(combos)


@pytest.mark.parametrize("kshape", [(4,), (3, 3), (4, 2), (2, 5), (4, 4), (2, 3, 4)])
@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
def test_origin_agrees_with_scipy_ndimage(kshape, method):
    rng = np.random.default_rng(sum(kshape))
    x = rng.integers(0, 256, (11, 13, 9)[: len(kshape)]).astype(np.float64)
    k = _pow2_kernel(rng, kshape)
    for origin in _origins(kshape):
        for border in BORDERS:
            for fn, ref in ((convcli.correlate, ndi.correlate), (convcli.convolve, ndi.convolve)):
                got = fn(x, k, border=border, cval=3.0, method=method, origin=origin)
                np.testing.assert_allclose(got, ref(x, k, mode=border, cval=3.0, origin=origin), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kshape", [(3, 4), (4, 2, 2)])
def test_origin_on_the_separable_path_agrees_with_scipy(kshape):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (12, 11, 10)[: len(kshape)]).astype(np.float64)
    f = [2.0 ** rng.integers(-2, 3, n) for n in kshape]
    k = f[0]
    for g in f[1:]:
        k = np.multiply.outer(k, g)
    for origin in _origins(kshape):
        for fn, ref in ((convcli.correlate, ndi.correlate), (convcli.convolve, ndi.convolve)):
            got = fn(x, k, border="mirror", method="separable", origin=origin)
            np.testing.assert_allclose(got, ref(x, k, mode="mirror", origin=origin), rtol=1e-12, atol=1e-9)


def test_origin_none_keeps_the_tensorflow_split_which_is_origin_minus_one_for_even_kernels():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 10))
    even, odd = rng.standard_normal((4, 2)), rng.standard_normal((3, 5))
    np.testing.assert_array_equal(convcli.correlate(x, even), convcli.correlate(x, even, origin=-1))
    np.testing.assert_array_equal(convcli.correlate(x, odd), convcli.correlate(x, odd, origin=0))
    np.testing.assert_array_equal(convcli.convolve(x, odd), convcli.convolve(x, odd, origin=0))
    assert not np.allclose(convcli.correlate(x, even), convcli.correlate(x, even, origin=0))
    np.testing.assert_array_equal(convcli.correlate(x, even, origin=np.array([1, -1])), convcli.correlate(x, even, origin=(1, -1)))


def test_origin_with_stride_and_dilation_is_scipy_on_the_dilated_kernel_then_subsampled():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 100, (17, 15)).astype(np.float64)
    k = _pow2_kernel(rng, (2, 3))
    dil = np.zeros((3, 7))  # (2, 3) taps spaced (2, 3) apart
    dil[::2, ::3] = k
    for origin in [(0, 0), (-1, 2), (1, -3)]:
        for fn, ref in ((convcli.correlate, ndi.correlate), (convcli.convolve, ndi.convolve)):
            full = ref(x, dil, mode="reflect", origin=origin)
            got = fn(x, k, dilation=(2, 3), stride=(2, 3), origin=origin)
            np.testing.assert_allclose(got, full[::2, ::3], atol=1e-9)
            assert got.shape == convcli.output_shape(x.shape, k.shape, stride=(2, 3))


def test_anchor_cell_is_reported_in_the_kernel_as_given():
    x = np.zeros((8, 8))
    assert run_filter(x, np.ones((3, 5))).anchor == (1, 2)
    assert run_filter(x, np.ones((4, 4))).anchor == (1, 1)  # TF/PyTorch "same"
    assert run_filter(x, np.ones((4, 4)), flip=True).anchor == (2, 2)
    assert run_filter(x, np.ones((4, 4)), origin=0).anchor == (2, 2)  # scipy: k//2 + origin
    assert run_filter(x, np.ones((4, 4)), origin=(0, -2), flip=True).anchor == (2, 0)
    assert run_filter(x, np.ones((3, 3)), padding="valid").anchor == (0, 0)
    # the anchor tap really is the one over the input cell: an impulse kernel at the anchor is identity
    rng = np.random.default_rng(0)
    xr = rng.standard_normal((6, 7))
    for origin, flip in [((0, 0), False), ((-1, 1), False), ((0, 1), True), (None, True)]:
        res = run_filter(xr, np.ones((4, 3)), origin=origin, flip=flip)
        delta = np.zeros((4, 3))
        delta[tuple(int(a) for a in res.anchor)] = 1.0
        np.testing.assert_allclose(run_filter(xr, delta, origin=origin, flip=flip).array, xr, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"origin": 2}, r"origin=2 on axis 0 is outside the kernel: a kernel of extent 4 takes origins -2 to 1"),
        ({"origin": (0, -2)}, "origin=-2 on axis 1"),
        ({"origin": (0, 0, 0)}, "3 values for 2 spatial axes"),
        ({"origin": 0, "padding": "valid"}, "needs padding='same'"),
        ({"origin": 1.5}, "origin must be an integer"),
    ],
)
def test_bad_origins_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        convcli.correlate(np.ones((6, 6)), np.ones((4, 3)), **kwargs)


@pytest.mark.parametrize(
    ("shape", "kshape", "method", "stride"),
    [
        ((40, 50), (3, 3), "direct", 1),
        ((40, 50, 3), (5, 4), "direct", 1),  # interleaved channels
        ((40, 50, 3), (5, 4), "direct", 2),  # planar channels (x stride 2)
        ((40, 50, 1), (3, 3), "separable", 1),
        ((9, 10, 11), (3, 3, 3), "separable", 1),  # a z pass after the y-x pass
        ((9, 10, 11), (3, 1, 1), "separable", (2, 1, 1)),
        ((30, 31, 2), (7, 7), "fft", 1),
        ((30, 31), (2, 3), "separable", 1),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_is_filled_and_returned(shape, kshape, method, stride, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    k = rng.standard_normal(kshape[0])
    for n in kshape[1:]:
        k = np.multiply.outer(k, rng.standard_normal(n))
    ref = convcli.correlate(x, k, method=method, stride=stride)
    out = np.full(ref.shape, np.nan, dtype)
    got = convcli.correlate(x, k, method=method, stride=stride, out=out)
    assert got is out
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_out_for_integer_images_on_the_banded_path(monkeypatch):
    from convcli.engine import tuning

    monkeypatch.setattr(tuning, "BAND_MIN_BYTES", 1)
    monkeypatch.setattr(tuning, "BAND_ROWS", 16)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (70, 30, 3)).astype(np.uint8)
    k = rng.standard_normal((3, 5))
    out = np.empty((70, 30, 3), np.float32)
    assert convcli.correlate(x, k, out=out) is out
    assert_close(out, naive_correlate(x, k), x, k)


def test_out_may_be_the_input_itself():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((33, 35)).astype(np.float32)
    for method in ("direct", "separable", "fft"):
        y = x.copy()
        ref = convcli.correlate(y, np.ones((3, 3)), method=method)
        assert convcli.correlate(y, np.ones((3, 3)), method=method, out=y) is y
        np.testing.assert_allclose(y, ref, atol=1e-5)


def _peak_bytes(x, k, **kw):
    convcli.correlate(x, k, **kw)  # compile, caches
    tracemalloc.start()
    convcli.correlate(x, k, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_out_allocates_no_result_on_repeated_calls():
    """Per-task scratch (strips, row buffers) remains; the result-sized allocation goes. (One
    thread, so the scratch in flight is the same in both runs.)"""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _check_no_result_allocation()
    finally:
        numba.set_num_threads(threads)


def _check_no_result_allocation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1024, 1024)).astype(np.float32)
    out = np.empty_like(x)
    for k, method in ((rng.standard_normal((5, 5)), "direct"), (np.outer([1.0, 2, 1], [1.0, 0, -1]), "separable")):
        without = _peak_bytes(x, k, method=method)
        with_out = _peak_bytes(x, k, method=method, out=out)
        assert without >= x.nbytes
        assert with_out <= without - 0.95 * x.nbytes, (method, with_out, without)


@pytest.mark.parametrize(
    ("out", "exc", "match"),
    [
        (np.empty((6, 5), np.float32), ValueError, r"out has shape \(6, 5\) but the result has shape \(6, 6\)"),
        (np.empty((6, 6), np.uint8), TypeError, "out has dtype uint8"),
        ([[0.0] * 6] * 6, TypeError, "out must be a numpy array"),
    ],
)
def test_bad_out_raises(out, exc, match):
    with pytest.raises(exc, match=match):
        convcli.correlate(np.ones((6, 6)), np.ones((3, 3)), out=out)


def test_read_only_out_raises():
    out = np.empty((6, 6))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        convcli.correlate(np.ones((6, 6)), np.ones((3, 3)), out=out)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.int64, np.float32])
@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_precision_float64_accumulates_in_float64_for_every_input(dtype, method):
    rng = np.random.default_rng(6)
    hi = 200 if dtype == np.uint8 else 2**28
    x = rng.integers(0, hi, (21, 19, 2)).astype(dtype)
    k = np.outer(rng.standard_normal(3), rng.standard_normal(5))
    got = convcli.correlate(x, k, precision="float64", method=method)
    assert got.dtype == np.float64
    ref = ndi.correlate(x.astype(np.float64), k[..., None], mode="reflect")
    scale = np.abs(k).sum() * float(x.max())
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * scale)
    assert convcli.correlate(x, k).dtype == np.float32  # auto keeps float32 sums


def test_precision_float64_keeps_long_integer_sums_exact():
    # 2**24 + 1 is not a float32: float32 sums lose the 1, float64 sums keep it
    x = np.full((5, 5), 2**24 + 1, np.uint32)
    got = convcli.correlate(x, np.array([[1.0]]), precision="float64")
    assert (got == 2**24 + 1).all()


def test_bad_precision_raises():
    with pytest.raises(ValueError, match="precision='float128' is not one of auto, float64"):
        convcli.correlate(np.ones((5, 5)), np.ones((3, 3)), precision="float128")  # type: ignore[arg-type]


SOBEL_X = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])


@pytest.mark.parametrize(
    "k",
    [
        SOBEL_X,
        SOBEL_X.T,
        np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]),  # binomial
        np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]) / 256.0,  # normalised: taps k/256 are exact
        np.ones((5, 7)),  # box sum
        np.outer([1.0, 2, 1], [-1.0, 0, 1]) * 3,
        np.multiply.outer(np.multiply.outer([1.0, 2, 1], [1.0, 0, -1]), [1.0, 2, 1]),  # 3-D Sobel
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_rank1_kernels_are_factorised_exactly(k, dtype):
    from convcli.engine._factor import separable_terms

    (factors,) = separable_terms(k)
    outer = factors[0]
    for f in factors[1:]:
        outer = np.multiply.outer(outer, f)
    np.testing.assert_array_equal(outer, k)  # bit for bit, not within a tolerance
    assert all(np.array_equal(f.astype(np.float32), f) for f in factors)
    rng = np.random.default_rng(8)
    x = rng.integers(0, np.iinfo(dtype).max // 4, (23, 17, 9)[: k.ndim]).astype(dtype)
    ref = naive_correlate(x, k)  # float64: exact here
    for border in ("reflect", "constant"):
        ref = naive_correlate(x, k, border=border, cval=2.0)
        for method in ("separable", "direct"):
            got = convcli.correlate(x, k, method=method, border=border, cval=2.0)
            np.testing.assert_array_equal(got, ref.astype(np.float32))


def test_exact_factors_only_for_exact_rank1_integer_kernels():
    from convcli.engine._factor import exact_factors

    assert exact_factors(np.ones((3, 3)) / 9) is None  # 1/9 is no dyadic number: SVD factors
    assert exact_factors(np.array([[1.0, 2], [3, 5]])) is None  # rank 2
    assert [f.tolist() for f in exact_factors(np.array([[0.0, 0], [3, 6]]))] == [[0, 3], [1, 2]]
    assert [f.tolist() for f in exact_factors(np.array([[6.0, 4], [9, 6]]))] == [[2, 3], [3, 2]]


def test_separability_is_cached_per_kernel_and_read_only():
    from convcli.engine import _factor

    k = np.outer([1.0, 3, 1], [2.0, 1, 2])
    _factor.separable_terms(k)
    before = _factor._terms_cached.cache_info().hits
    (factors,) = _factor.separable_terms(k.copy())
    assert _factor._terms_cached.cache_info().hits == before + 1
    assert not factors[0].flags.writeable


def test_cache_sized_buffers_follow_the_machines_l2(monkeypatch):
    from convcli.engine import tuning

    assert 0 < tuning.l2_bytes() < 1 << 30  # read from this machine

    def block_rows(ring: int = 1) -> int:  # 2048 float32 columns + 2 border cells: 8200 bytes per strip row, 3x3 kernel
        return tuning.direct_tasks(1, 2048, 2050, 4, ring, 3, 1, 1, channels=1, n=1)[0]

    monkeypatch.setattr(tuning, "l2_bytes", lambda: 2 << 20)  # this project's CI machines: today's sizes
    assert (tuning.direct_strip_bytes(), tuning.separable_buffer_bytes()) == (256 << 10, 768 << 10)
    assert block_rows() == 31 - 2  # strip rows minus the kernel's halo
    assert block_rows(ring=3) == 31 - 2  # a 3x3x3's three strips: 768 KiB, within half of L2
    assert block_rows(ring=7) == 127 // 7 - 2  # a 7x7x7's seven: capped at half of L2
    # a 15x15 on 4096 columns: a block as short as the kernel gets DIRECT_BLOCK_MIN rows while
    # the strips fit L2
    assert tuning.direct_tasks(1, 4096, 4110, 4, 1, 15, 1, 1, channels=1, n=1)[0] == tuning.DIRECT_BLOCK_MIN
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 512 << 10)  # AMD Zen 1: strips of half of L2
    assert tuning.direct_strip_bytes() == 256 << 10
    # 15x15: 256 KiB holds 15 rows of 16,440 bytes, one output row; the whole L2 holds 31, 17 rows
    assert tuning.direct_tasks(1, 4096, 4110, 4, 1, 15, 1, 1, channels=1, n=1)[0] == tuning.DIRECT_BLOCK_MIN
    assert tuning.direct_tasks(1, 4096, 4110, 4, 1, 21, 1, 1, channels=1, n=1)[0] == 31 - 20  # 21x21
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 256 << 10)  # a small L2: smaller buffers
    assert (tuning.direct_strip_bytes(), tuning.separable_buffer_bytes()) == (128 << 10, 192 << 10)
    assert block_rows() == 15 - 2
    assert block_rows(ring=3) == 15 // 3 - 2  # half of L2 for three strips
    # a 3x3x3 dilated (40, 40, 1): a ring of 81 strips of at least 81 rows would not fit any
    # budget; runs of one plane keep three strips instead
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 2 << 20)
    block, zrun = tuning.direct_tasks(10, 4096, 4098, 4, 81, 3, 40, 1, channels=1, n=2, kd=3)
    assert zrun == 1 and block >= 1


def test_cache_sizes_are_read_per_core_from_sysfs(tmp_path, monkeypatch):
    """L2 as CPU 0 sees it, whole when its hyperthread shares it (the sizes were measured so); L3
    divided among the CPUs sharing it; the instruction cache is not a data cache."""
    from convcli.engine import tuning

    for i, (level, kind, size, cpus) in enumerate(
        [("1", "Data", "32K", "0,2"), ("2", "Instruction", "64K", "0,2"), ("2", "Unified", "512K", "0,2"), ("3", "Unified", "8192K", "0-1,4-5")]
    ):
        d = tmp_path / f"index{i}"
        d.mkdir()
        for name, text in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", cpus)):
            (d / name).write_text(text + "\n")
    (tmp_path / "index0" / "number_of_sets").write_text("128\n")
    (tmp_path / "index0" / "coherency_line_size").write_text("64\n")
    monkeypatch.setattr(tuning, "CPU0_CACHES", str(tmp_path))
    tuning.l1_way_bytes.cache_clear()
    try:
        assert tuning.l1_way_bytes() == 8192  # L1's sets times its line: addresses this far apart share a set
    finally:
        tuning.l1_way_bytes.cache_clear()
    assert tuning._cache_bytes(1) == 32 << 10
    assert tuning._cache_bytes(2) == 512 << 10
    assert tuning._cache_bytes(3) == (8 << 20) // 4
    monkeypatch.setattr(tuning, "l3_share_bytes", lambda: 2 << 20)
    assert tuning.numpy_products_bytes() == 2 << 20  # numpy's taps at once up to the L3 share ...
    monkeypatch.setattr(tuning, "l3_share_bytes", lambda: 1 << 10)
    monkeypatch.setattr(tuning, "l2_bytes", lambda: 512 << 10)
    assert tuning.numpy_products_bytes() == tuning.numpy_block_bytes() == 128 << 10  # ... and never below a block


@pytest.mark.parametrize("method", ["direct", "separable"])
def test_serial_and_parallel_kernels_agree(monkeypatch, method):
    """Small calls run the serial twins (no parallel launch); both give identical results."""
    from convcli.engine import tuning

    rng = np.random.default_rng(9)
    x = rng.standard_normal((37, 41, 3)).astype(np.float32)
    k = np.outer(rng.standard_normal(5), rng.standard_normal(3))
    results = []
    for limit in (0, 1 << 62):  # everything parallel, everything serial
        monkeypatch.setattr(tuning, "SERIAL_MAX_MACS", limit)
        results.append(convcli.correlate(x, k, method=method, stride=(1, 2), border="wrap"))
    np.testing.assert_array_equal(results[0], results[1])
    assert_close(results[1], naive_correlate(x, k, stride=(1, 2), border="wrap"), x, k)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_results_and_scratch_buffers_are_64_byte_aligned(method):
    # numpy's large arrays start 16 bytes into a page; the engine allocates its own so that
    # 64-byte vector loads and stores of a row do not straddle cache lines
    from convcli.engine import buffers

    for shape, dtype in (((300, 55), np.float32), ((0, 7), np.float64), ((1 << 20,), np.uint8), ((3, 5), np.float32)):
        a = buffers.empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        if a.nbytes >= buffers.ALIGN_MIN_BYTES:  # (smaller ones are numpy's own: a small call saves the address lookup)
            assert a.ctypes.data % 64 == 0
    s = buffers.scratch("alignment-test", (330, 170), np.float32)
    assert s.shape == (330, 170) and s.ctypes.data % 64 == 0
    x = np.random.default_rng(0).integers(0, 255, (300, 1100), dtype=np.uint8)
    k = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0]) if method != "fft" else np.ones((3, 3))
    got = run_filter(x, k, method=method)
    assert got.method == method and got.array.ctypes.data % 64 == 0
    assert np.array_equal(got.array, run_filter(x.astype(np.float32), k, method=method).array)
