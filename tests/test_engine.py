"""The engine against the naive reference, scipy.ndimage, and the algebra of convolution."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given
from hypothesis import strategies as st

import convcli
from convcli.engine.api import run_filter

from .naive import assert_close, naive_correlate, naive_layer

BORDERS = ["reflect", "mirror", "nearest", "constant", "wrap"]
METHODS = ["direct", "separable", "fft", "auto"]


@st.composite
def cases(draw, separable=False):
    nd = draw(st.integers(1, 3))
    max_n = {1: 40, 2: 14, 3: 7}[nd]
    shape = tuple(draw(st.integers(1, max_n)) for _ in range(nd))
    kshape = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if separable:
        factors = [rng.standard_normal(k) for k in kshape]
        k = factors[0]
        for f in factors[1:]:
            k = np.multiply.outer(k, f)
    else:
        k = rng.standard_normal(kshape)
    channels = draw(st.sampled_from([None, 1, 3]))
    xshape = shape + ((channels,) if channels else ())
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int16]))
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(xshape).astype(dtype)
    else:
        x = rng.integers(0, 100, xshape).astype(dtype)
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    padding = draw(
        st.one_of(
            st.sampled_from(["same", "valid", "full"]),
            st.integers(0, 6),
            st.tuples(*[st.tuples(st.integers(0, 9), st.integers(0, 9)) for _ in range(nd)]),
        )
    )
    border = draw(st.sampled_from(BORDERS))
    cval = draw(st.sampled_from([0.0, 1.5]))
    return x, k, dict(border=border, padding=padding, stride=stride, dilation=dilation, cval=cval)


def _valid_or_skip(x, k, kw):
    try:
        ref = naive_correlate(x, k, **kw)
    except ValueError:
        return None
    if min(ref.shape[: k.ndim]) < 1:
        return None
    return ref


@given(cases(), st.sampled_from(["direct", "fft", "auto"]), st.booleans())
def test_engine_matches_naive_reference(case, method, flip):
    x, k, kw = case
    ref = _valid_or_skip(x, k, {**kw, "flip": flip})
    fn = convcli.convolve if flip else convcli.correlate
    if ref is None:
        with pytest.raises(ValueError, match="output size below 1"):
            fn(x, k, method=method, **kw)
        return
    got = fn(x, k, method=method, **kw)
    acc = np.float64 if x.dtype == np.float64 else np.float32
    assert got.dtype == acc
    assert got.shape == ref.shape
    assert got.shape[: k.ndim] == convcli.output_shape(x.shape[: k.ndim], k.shape, **{n: kw[n] for n in ("padding", "stride", "dilation")})
    assert_close(got, ref, x, k, acc)


@given(cases())
def test_fft_transforms_from_every_library_agree_with_the_reference(case):
    # ducc0, then scipy.fft, then numpy.fft, whichever is installed first: all must be right (the
    # test extra installs all three, and the first one is the one users get)
    from convcli.engine import _fft

    x, k, kw = case
    ref = _valid_or_skip(x, k, kw)
    if ref is None:
        return
    acc = np.float64 if x.dtype == np.float64 else np.float32
    assert _fft.backend().name == "ducc0"
    got = {}
    chosen = _fft.backend
    try:
        for name, make in _fft.BACKENDS.items():
            _fft.backend = make  # type: ignore[assignment]
            got[name] = convcli.correlate(x, k, method="fft", **kw)
    finally:
        _fft.backend = chosen
    assert set(got) == {"ducc0", "scipy", "numpy"}
    for name, arr in got.items():
        assert arr.dtype == acc and arr.shape == ref.shape, name
        assert_close(arr, ref, x, k, acc)


@given(cases(separable=True), st.sampled_from(["separable", "auto"]))
def test_separable_path_matches_naive_reference(case, method):
    x, k, kw = case
    ref = _valid_or_skip(x, k, kw)
    if ref is None:
        return
    got = convcli.correlate(x, k, method=method, **kw)
    assert_close(got, ref, x, k, np.float64 if x.dtype == np.float64 else np.float32)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kshape", [(3, 3), (5, 3), (1, 7), (3, 3, 3)])
def test_agrees_with_scipy_ndimage(border, method, kshape):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (11, 13, 9)[: len(kshape)]).astype(np.float64)
    # power-of-two weights: any flip or off-by-one is an exact mismatch
    k = 2.0 ** rng.integers(-3, 4, kshape) * rng.choice([-1, 1], kshape)
    if method == "separable":
        f = [2.0 ** rng.integers(-2, 3, n) for n in kshape]
        k = f[0]
        for g in f[1:]:
            k = np.multiply.outer(k, g)
    for fn, ref in ((convcli.correlate, ndi.correlate), (convcli.convolve, ndi.convolve)):
        got = fn(x, k, border=border, cval=3.0, method=method)
        np.testing.assert_allclose(got, ref(x, k, mode=border, cval=3.0), rtol=1e-12, atol=1e-9)


def test_padding_wider_than_image_repeats_the_rule_like_scipy():
    x = np.arange(4.0)
    k = np.ones(15)
    for border in BORDERS:
        np.testing.assert_allclose(convcli.correlate(x, k, border=border), ndi.correlate(x, k, mode=border), atol=1e-12)


@pytest.mark.parametrize("kshape", [(3,), (4,), (3, 3), (4, 2), (2, 2, 2), (3, 4, 5)])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_impulse_response(kshape, method):
    k = np.arange(1.0, np.prod(kshape) + 1).reshape(kshape)
    x = np.zeros((9,) * len(kshape))
    centre = (4,) * len(kshape)
    x[centre] = 1.0
    conv = convcli.convolve(x, k, border="constant", padding="same", method=method)
    corr = convcli.correlate(x, k, border="constant", padding="same", method=method)
    # same padding puts after = k//2 cells at the end, so both responses start at 4 - k//2
    starts = tuple(4 - n // 2 for n in kshape)
    sl = tuple(slice(s, s + n) for s, n in zip(starts, kshape))
    np.testing.assert_allclose(conv[sl], k, atol=1e-5)
    assert np.isclose(conv.sum(), k.sum())
    # correlation returns the kernel flipped
    np.testing.assert_allclose(corr[sl], k[(slice(None, None, -1),) * len(kshape)], atol=1e-5)


def test_convolve_is_correlate_of_flipped_kernel_for_even_and_odd_kernels():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 17))
    for kshape in [(2, 2), (3, 4), (5, 5), (4, 1)]:
        k = rng.standard_normal(kshape)
        for padding in ["same", "valid", "full", ((1, 2), (0, 3))]:
            a = convcli.convolve(x, k, padding=padding, stride=(2, 1))
            b = convcli.correlate(x, k[::-1, ::-1], padding=padding, stride=(2, 1))
            np.testing.assert_array_equal(a, b)


def test_linearity_and_constant_image():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 16, 16))
    k = rng.standard_normal((3, 5))
    lhs = convcli.correlate(2.0 * x + 3.0 * y, k)
    rhs = 2.0 * convcli.correlate(x, k) + 3.0 * convcli.correlate(y, k)
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)
    g = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    for border in ["reflect", "mirror", "nearest", "wrap"]:
        out = convcli.correlate(np.full((10, 12), 7.0, np.float32), g, border=border)
        np.testing.assert_allclose(out, 7.0, rtol=1e-6)


def test_channels_are_filtered_independently():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (12, 10, 3)).astype(np.uint8)
    k = rng.standard_normal((3, 3))
    out = convcli.correlate(x, k)
    assert out.shape == (12, 10, 3) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[..., c], convcli.correlate(x[..., c], k), rtol=1e-6)


def test_never_clips_and_propagates_nan():
    x = np.full((5, 5), 250, np.uint8)
    out = convcli.correlate(x, np.ones((3, 3)))
    assert out.max() == pytest.approx(2250)
    xf = np.ones((7, 7), np.float32)
    xf[3, 3] = np.nan
    out = convcli.correlate(xf, np.ones((3, 3)) / 9, method="direct")
    assert np.isnan(out[2:5, 2:5]).all() and np.isfinite(out[0]).all()


@given(
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(1, 4),
    st.sampled_from(["same", "valid", 1]),
    st.sampled_from(["corr", "conv"]),
    st.booleans(),
    st.integers(0, 1000),
)
def test_conv_layer_matches_channel_loop(nd, cin, cout, padding, mode, use_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((9, 8, 7)[:nd] + (cin,))
    weight = rng.standard_normal((cout, cin) + (3, 2, 3)[:nd])
    bias = rng.standard_normal(cout) if use_bias else None
    got = convcli.conv_layer(x, weight, bias, mode=mode, padding=padding, stride=2)
    ref = naive_layer(x, weight, bias, mode=mode, padding=padding, stride=2, border="reflect")
    assert got.shape == ref.shape and got.shape[-1] == cout
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_conv_layer_seed_example_three_channels_to_one():
    # The seed: a 3-channel input and one filter of three 3x3 kernels give one output channel
    x = np.stack([np.full((5, 5), v) for v in (1.0, 2.0, 3.0)], axis=-1)
    w = np.ones((1, 3, 3, 3))
    out = convcli.conv_layer(x, w, np.array([0.5]), padding="valid")
    assert out.shape == (3, 3, 1)
    np.testing.assert_allclose(out, 9 * (1 + 2 + 3) + 0.5)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((np.ones((5, 5)), np.array([[np.nan]])), {}, ValueError, "NaN or Inf"),
        ((np.ones((5, 5)), np.full((1, 2), np.inf)), {}, ValueError, "NaN or Inf"),
        ((np.ones((5, 5)), np.ones((0, 3))), {}, ValueError, "empty"),
        ((np.ones((5, 5, 5, 5)), np.ones((1, 1, 1, 1))), {}, ValueError, "4 axes"),
        ((np.ones((5,)), np.ones((3, 3))), {}, ValueError, r"x has shape \(5,\)"),
        ((np.ones((5, 5)), np.ones((3, 3))), {"stride": 0}, ValueError, "stride"),
        ((np.ones((5, 5)), np.ones((3, 3))), {"dilation": 0}, ValueError, "dilation"),
        ((np.ones((5, 5)), np.ones((3, 3))), {"padding": -2}, ValueError, "negative"),
        ((np.ones((2, 2)), np.ones((3, 3))), {"padding": "valid"}, ValueError, "output size below 1"),
        ((np.ones((5, 5), complex), np.ones((3, 3))), {}, TypeError, "complex"),
        ((np.ones((5, 5), bool), np.ones((3, 3))), {}, TypeError, "boolean"),
        ((np.ones((5, 5)), np.ones((3, 3), object)), {}, TypeError, "object"),
        ((np.ones((5, 5)), np.ones((3, 3))), {"border": "sideways"}, ValueError, "border='sideways'"),
        ((np.ones((5, 5)), np.ones((3, 3))), {"method": "magic"}, ValueError, "method='magic'"),
        ((np.ones((5, 5)), np.diag([1.0, 2.0, 3.0, 4.0])), {"method": "separable"}, ValueError, "at most 3 separable terms"),
        ((np.ones((5, 5, 5)), np.arange(8.0).reshape(2, 2, 2) ** 2), {"method": "separable"}, ValueError, "rank-1 for 3-D"),
    ],
)
def test_bad_arguments_raise_before_any_kernel_runs(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        convcli.correlate(*args, **kwargs)


def test_conv_layer_channel_mismatch():
    with pytest.raises(ValueError, match="Cin = 2"):
        convcli.conv_layer(np.ones((5, 5, 3)), np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        convcli.conv_layer(np.ones((5, 5, 2)), np.ones((4, 2, 3, 3)), np.ones(3))


def test_border_aliases():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 8))
    k = rng.standard_normal((3, 3))
    pairs = {"symmetric": "reflect", "reflect101": "mirror", "reflect_101": "mirror", "replicate": "nearest",
             "edge": "nearest", "circular": "wrap", "periodic": "wrap"}
    for alias, name in pairs.items():
        np.testing.assert_array_equal(convcli.correlate(x, k, border=alias), convcli.correlate(x, k, border=name))
    np.testing.assert_array_equal(
        convcli.correlate(x, k, border="zeros", cval=5.0), convcli.correlate(x, k, border="constant", cval=0.0)
    )


def test_auto_reports_a_method_and_read_only_input_works():
    x = np.ones((16, 16), np.float32)
    x.flags.writeable = False
    res = run_filter(x, np.ones((3, 3)))
    assert res.method in ("direct", "separable") and res.array.shape == (16, 16)


def test_import_does_not_load_numba():
    code = "import sys, convcli; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_boundscheck_run_reads_nothing_out_of_bounds(tmp_path):
    """NUMBA_BOUNDSCHECK=1 turns any out-of-bounds read into an IndexError."""
    code = (
        "import numpy as np, convcli\n"
        "rng = np.random.default_rng(0)\n"
        "for border in ['reflect', 'mirror', 'nearest', 'constant', 'wrap']:\n"
        "    for pad in ['same', 'full', ((7, 0), (0, 9)), 'valid']:\n"
        "        for method in ['direct', 'separable']:\n"
        "            x = rng.standard_normal((5, 6, 2)).astype(np.float32)\n"
        "            convcli.correlate(x, np.ones((4, 3)), border=border, padding=pad, stride=(2, 3), dilation=(1, 2), method=method)\n"
        "            p3 = ((1, 2),) + pad if isinstance(pad, tuple) else pad\n"
        "            convcli.correlate(np.moveaxis(x, -1, 0), np.ones((2, 3, 3)), border=border, padding=p3, method=method)\n"
        "    for method in ['direct', 'separable']:\n"
        "        out = np.empty((5, 3, 2), np.float32)\n"
        "        convcli.correlate(x, np.ones((3, 3)), border=border, origin=(1, -1), dilation=(2, 1), stride=(1, 2), method=method, out=out)\n"
        "    convcli.conv_layer(x, np.ones((3, 2, 3, 3)), border=border, stride=2)\n"
        "    v = rng.standard_normal((6, 7, 9)).astype(np.float32)\n"
        "    for kshape, st, dil in [((3, 3, 3), (2, 1, 1), (2, 2, 1)), ((3, 3, 3), 1, 1), ((2, 3, 4), (1, 2, 2), (3, 1, 2))]:\n"
        "        convcli.correlate(v, np.ones(kshape), border=border, stride=st, dilation=dil, method='direct')\n"
        "from convcli.engine import plan, tuning\n"
        "tuning.DIRECT_BLOCK_MAX = 3\n"  # blocks that end on odd rows
        "for rows in (2, 3):\n"  # whole 3x3/5x5 copies: pairs, and fours (a 5x5 on 16 vector registers)
        "    tuning.block_rows = lambda registers, rows=rows: rows\n"
        "    plan.forget()\n"
        "    for shape in [(4, 1), (5, 2), (7, 5), (9, 13), (6, 5, 3), (5, 13, 3)]:\n"
        "        for k in (3, 5):\n"
        "            for border in ['reflect', 'constant', 'wrap']:\n"
        "                convcli.correlate(rng.standard_normal(shape).astype(np.float32), np.ones((k, k)), border=border, method='direct')\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize(("kshape", "kw"), [
    ((3, 3, 3), {}),  # one fused 27-tap pass per row
    ((3, 3, 3), {"stride": (2, 2, 1), "dilation": (1, 2, 1), "border": "constant", "cval": 2.5}),
    ((3, 3, 3), {"dilation": (3, 1, 1), "border": "wrap"}),  # a ring of seven strips
    ((3, 3, 3), {"dilation": (1, 1, 2), "border": "mirror"}),  # x-dilated: the general path
    ((2, 3, 4), {"padding": "full", "border": "nearest"}),
    ((5, 1, 3), {"stride": (3, 1, 2)}),
])  # fmt: skip
def test_volumes_through_the_ring_of_strips_match_the_reference(monkeypatch, kshape, kw, split):
    """A direct task filters a run of output planes, converting each input plane once into a ring
    of strips; split into one-plane runs and small row blocks (many tasks) or run whole, the
    result matches the reference, for float and 16-bit input (read as it is)."""
    from convcli.engine import tuning

    if split:
        monkeypatch.setattr(tuning, "TASKS_PER_THREAD", 1 << 20)
        monkeypatch.setattr(tuning, "SERIAL_MAX_MACS", 0)
    rng = np.random.default_rng(11)
    k = rng.standard_normal(kshape)
    for x in (rng.standard_normal((13, 17, 70)).astype(np.float32), rng.integers(0, 4000, (13, 17, 70)).astype(np.uint16)):
        ref = naive_correlate(x, k, **kw)
        got = convcli.correlate(x, k, method="direct", **kw)
        assert_close(got, ref, x, k, np.float32)
        if x.dtype == np.uint16:
            assert np.array_equal(got, convcli.correlate(x.astype(np.float32), k, method="direct", **kw))


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("shape", [(700, 90), (700, 90, 3)])
def test_banded_path_for_large_integer_images_matches_the_reference(monkeypatch, border, shape):
    """Integer images above the band threshold are converted band by band on the separable path
    (the direct kernel reads 8/16-bit rows as they are); results must not change."""
    from convcli.engine import api, dispatch, tuning

    monkeypatch.setattr(tuning, "BAND_MIN_BYTES", 1)
    monkeypatch.setattr(tuning, "BAND_ROWS", 64)
    bands = []
    monkeypatch.setattr(dispatch, "_banded", lambda plan, a, out=None, real=dispatch._banded: bands.append(1) or real(plan, a, out))
    rng = np.random.default_rng(11)
    x = rng.integers(0, 255, shape).astype(np.uint8)
    rank2 = np.outer(rng.standard_normal(5), rng.standard_normal(4)) + np.outer(rng.standard_normal(5), rng.standard_normal(4))
    for k, method in ((rng.standard_normal((5, 4)), "direct"), (np.outer(rng.standard_normal(5), rng.standard_normal(4)), "separable"), (rank2, "separable")):
        for kw in ({}, {"stride": (3, 1), "dilation": (2, 1), "padding": ((9, 1), (2, 2))}):
            res = api.run_filter(x, k, border=border, cval=2.0, method=method, **kw)
            ref = naive_correlate(x, k, border=border, cval=2.0, **kw)
            assert res.array.shape == ref.shape
            assert_close(res.array, ref, x, k)
    assert len(bands) == 4  # every separable call above took the banded path


@given(cases(), st.integers(2, 3), st.sampled_from(["separable", "auto"]))
def test_low_rank_kernels_as_sums_of_separable_passes(case, rank, method):
    x, k, kw = case
    if k.ndim != 2 or min(k.shape) < rank:
        return
    rng = np.random.default_rng(rank)
    k = sum(np.outer(rng.standard_normal(k.shape[0]), rng.standard_normal(k.shape[1])) for _ in range(rank))
    ref = _valid_or_skip(x, k, kw)
    if ref is None:
        return
    res = run_filter(x, k, method=method, **kw)
    assert_close(res.array, ref, x, k, np.float64 if x.dtype == np.float64 else np.float32)


def test_low_rank_named_kernels_run_as_separable_passes():
    from convcli.kernels import resolve

    x = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
    dog = resolve("dog:1,2").array  # 17x17, rank 2: auto prefers two separable passes
    res = run_filter(x, dog)
    assert res.method == "separable"
    np.testing.assert_allclose(res.array, naive_correlate(x, dog), atol=1e-5)
    log = resolve("log:sigma=3").array  # 25x25, rank 3 (the zero-sum shift adds a constant term)
    np.testing.assert_allclose(run_filter(x, log, method="separable").array, naive_correlate(x, log), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize(("shape", "kshape", "kw"), [
    ((40, 37), (3, 4), {}),
    ((30, 29, 3), (5, 5), {"border": "constant", "cval": 300.5}),
    ((30, 29, 3), (3, 3), {"stride": (1, 2)}),  # planar channels (x stride: not interleaved)
    ((9, 12, 11), (3, 3, 3), {"dilation": 2, "border": "wrap"}),
])  # fmt: skip
def test_direct_reads_8_and_16_bit_input_as_is_bit_for_bit(dtype, shape, kshape, kw):
    """No float copy of the input: the direct kernel converts each row into its strip, with the
    same result as converting the whole image first."""
    rng = np.random.default_rng(12)
    x = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    k = rng.standard_normal(kshape)
    got = convcli.correlate(x, k, method="direct", **kw)
    ref = convcli.correlate(x.astype(np.float32), k, method="direct", **kw)
    np.testing.assert_array_equal(got, ref)
    assert_close(got, naive_correlate(x, k, **kw), x, k)
    x.setflags(write=False)  # read-only input (np.asarray of a PIL image) works too
    np.testing.assert_array_equal(convcli.correlate(x, k, method="direct", **kw), ref)
    if len(kshape) == len(shape) - 1:  # a layer reads them as they are too
        w = rng.standard_normal((2, shape[-1], *kshape))
        np.testing.assert_allclose(convcli.conv_layer(x, w, **kw), convcli.conv_layer(x.astype(np.float32), w, **kw), rtol=1e-6)
