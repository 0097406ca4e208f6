"""The cast to integers inside the direct kernel (``api.run_filter_cast``), and its planar strips.

``convcli apply`` ends each file with the last kernel's offset, ``--scale``, ``--offset``,
``--abs``, rint, clip and a count of clipped values. The direct kernel does that to each block of
rows while they are in cache (no float result); it must give the same integers and count as
filtering and casting apart, and stay within one step of scipy.ndimage (float64) rounded by numpy.
Interleaved channels on wide rows go through planar strips (each channel's row apart) so the paired
tap blocks run on them; ``tuning.FLAT_MAX_WIDTH`` is lowered here to reach that path on small images.
"""

from __future__ import annotations

import inspect
import json

import numba
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from convcli.cli.app import app
from convcli.engine import api, cache, dispatch, tasks, tuning
from convcli.engine.postprocess import Cast

from .naive import assert_close, naive_correlate

BORDERS = ("reflect", "mirror", "nearest", "wrap", "constant")


def reference(x, k, cast, **kw):
    """naive_correlate in float64, then the cast's steps in numpy (rint, clip)."""
    v = (naive_correlate(x, k, **kw) + cast.pre) * cast.scale + cast.offset
    v = np.abs(v) if cast.absolute else v
    info = np.iinfo(cast.dtype)
    return np.clip(np.rint(v), info.min, info.max)


def fused_and_apart(x, k, cast, **kw):
    """(the fused result, its count), (filter then cast), and whether the kernel did the cast."""
    calls = []
    real = dispatch._run_job

    def spy(job, xc, out, iout, post, **o):  # a direct kernel call with an integer result
        calls.append(iout is not None)
        return real(job, xc, out, iout, post, **o)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dispatch, "_run_job", spy)
        got, clipped = api.run_filter_cast(x, k, cast, **kw)
    apart, apart_clipped = cast.apply(api.run_filter(x, k, **kw).array)
    return (got.array, clipped), (apart, apart_clipped), any(calls)


@given(
    h=st.integers(1, 11), w=st.integers(1, 40), channels=st.sampled_from([0, 1, 2, 3, 4]),
    kh=st.integers(1, 6), kw=st.integers(1, 7), border=st.sampled_from(BORDERS), planar=st.booleans(),
    stride=st.sampled_from([1, 1, 1, 2]), dilation=st.sampled_from([1, 1, 1, 2]), pre=st.sampled_from([0.0, 128.0]),
    scale=st.sampled_from([1.0, 0.5, 3.0]), offset=st.sampled_from([0.0, -20.0, 100.5]), absolute=st.booleans(),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_the_fused_cast_gives_the_integers_and_count_of_filtering_then_casting(
    h, w, channels, kh, kw, border, planar, stride, dilation, pre, scale, offset, absolute, seed
):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (h, w, channels) if channels else (h, w), dtype=np.uint8)
    k = rng.standard_normal((kh, kw)).astype(np.float32)
    cast = Cast(np.dtype(np.uint8), pre, scale, offset, absolute)
    kw_ = dict(border=border, cval=7.0, stride=stride, dilation=dilation, method="direct")
    with pytest.MonkeyPatch.context() as mp:
        if planar:  # every row is "wide": interleaved channels go planar
            mp.setattr(tuning, "FLAT_MAX_WIDTH", 1)
        (got, clipped), (apart, apart_clipped), inside = fused_and_apart(x, k, cast, **kw_)
    assert inside == (channels <= 1 or stride == 1)  # strided channels run planar (C, H, W): cast after
    assert got.dtype == np.uint8 and got.shape == apart.shape
    np.testing.assert_array_equal(got, apart)
    assert clipped == apart_clipped
    want = reference(x, k, cast, border=border, cval=7.0, stride=stride, dilation=dilation)
    assert np.abs(got.astype(np.int64) - want).max(initial=0) <= 1  # float32 against float64 at .5 ties


def test_nan_and_infinity_become_zero_and_are_counted():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 1100, 3)).astype(np.float32) * 200
    x[4, 500, 1] = np.nan
    x[2, 10, 0] = np.inf
    k = np.ones((3, 3), np.float32)
    (got, clipped), (apart, apart_clipped), inside = fused_and_apart(x, k, Cast(np.dtype(np.uint8)), method="direct")
    assert inside
    np.testing.assert_array_equal(got, apart)
    assert clipped == apart_clipped
    assert (got[3:6, 499:502, 1] == 0).all()  # every output that reads the NaN: 0
    assert (got[1:4, 9:12, 0] == 255).all()  # ... and the +inf: the top of the range
    with np.errstate(invalid="ignore"):
        v = naive_correlate(x, k)  # float64: NaN and inf spread as they do in float32
        outside = int(np.count_nonzero(~((np.rint(v) >= 0) & (np.rint(v) <= 255))))
        near = int(np.count_nonzero((np.abs(v + 0.5) < 1e-3) | (np.abs(v - 255.5) < 1e-3)))  # float32 may round these apart
    assert abs(clipped - outside) <= near and np.isnan(v).sum() == 9


@pytest.mark.parametrize("target", [np.uint16, np.int16])
def test_sixteen_bit_targets(target):
    # uint16 from uint16: the 16-bit PNG path on wide RGB rows (planar, threads), in the kernel;
    # int16 (--abs, a signed range): cast after filtering, as every target but those two
    rng = np.random.default_rng(4)
    shape = (40, 1100, 3) if target == np.uint16 else (5, 30)
    x = rng.integers(0, 65536, shape, dtype=np.uint16)
    k = rng.standard_normal((5, 4)).astype(np.float32)
    cast = Cast(np.dtype(target), 0.0, 0.25, -100.0, target == np.int16)
    (got, clipped), (apart, apart_clipped), inside = fused_and_apart(x, k, cast, method="direct", border="mirror")
    assert inside == (target == np.uint16) and got.dtype == target
    np.testing.assert_array_equal(got, apart)
    assert clipped == apart_clipped > 0
    assert np.abs(got.astype(np.int64) - reference(x, k, cast, border="mirror")).max() <= 1


@pytest.mark.parametrize("kshape", [(3, 3, 3), (2, 3, 4)])
def test_volumes_cast_inside_the_kernel_too(kshape):
    # 3x3x3 takes the kernel's fused 27-tap path; (2, 3, 4) the general one
    rng = np.random.default_rng(6)
    vol = rng.integers(0, 256, (5, 9, 12), dtype=np.uint8)
    k = rng.standard_normal(kshape).astype(np.float32)
    cast = Cast(np.dtype(np.uint8), 1.0, 0.7, 60.0, False)
    (got, clipped), (apart, apart_clipped), inside = fused_and_apart(vol, k, cast, method="direct", border="nearest")
    assert inside
    np.testing.assert_array_equal(got, apart)
    assert clipped == apart_clipped
    assert np.abs(got.astype(np.int64) - reference(vol, k, cast, border="nearest")).max() <= 1


def test_other_methods_and_targets_cast_after_filtering():
    x = np.random.default_rng(5).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    k = np.outer([1, 2, 1], [1, 0, -1]).astype(np.float32)  # rank 1: separable
    for cast, method in ((Cast(np.dtype(np.uint8), scale=0.5), "separable"), (Cast(np.dtype(np.int32), offset=-3.0), "direct")):
        (got, clipped), (apart, apart_clipped), inside = fused_and_apart(x, k, cast, method=method)
        assert not inside
        np.testing.assert_array_equal(got, apart)
        assert clipped == apart_clipped


def test_warmup_compiles_every_signature_the_fused_cast_uses(monkeypatch):
    # the kernels are typed on their integer output too: a fused target that warmup misses would
    # compile on a user's first run after `convcli warmup` (recorded here, nothing is compiled)
    from convcli.engine import _direct

    def positions(kernel):  # of x, w, out, iout in the kernel's arguments
        names = list(inspect.signature(kernel).parameters)
        return tuple(names.index(name) for name in ("x", "w", "out", "iout"))

    where = {"correlate_bank": positions(_direct.correlate_bank), "correlate_unrolled": positions(_direct.correlate_unrolled)}

    def kind(name):  # correlate_bank runs as one copy per path: correlate_bank_flat ...
        return next((k for k in where if name.startswith(k)), None)

    def recorder(seen):
        def run(kernel, n, *args, work=0, ready=None):
            if kind(kernel.__name__):
                seen.add((kernel.__name__, *(str(numba.typeof(args[i])) for i in where[kind(kernel.__name__)])))

        return run

    warmed, used = set(), set()
    monkeypatch.setattr(tasks, "run", recorder(warmed))
    cache.warmup(full=True)
    monkeypatch.setattr(tasks, "run", recorder(used))
    for source in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        for target in (np.uint8, np.uint16, np.int16, np.int32):
            for precision in ("auto", "float64"):
                for size in (5, 7):  # a whole 5x5 (correlate_unrolled), a 7x7 (correlate_bank)
                    with np.errstate(invalid="ignore"):  # no kernel runs: the unfused casts see empty arrays
                        api.run_filter_cast(np.zeros((40, 40, 3), source), np.ones((size, size)), Cast(target), method="direct", precision=precision)
    assert {kind(name) for name, *_ in used} == set(where)
    assert used <= warmed, used - warmed


def test_cast_takes_numpy_types_and_checks_out():
    x = np.arange(64, dtype=np.uint8).reshape(8, 8)
    res, clipped = api.run_filter_cast(x, np.ones((3, 3)), Cast(np.uint8), method="direct")
    assert res.array.dtype == np.uint8 and clipped == np.count_nonzero(naive_correlate(x, np.ones((3, 3))) > 255)
    with pytest.raises(ValueError, match="out"):
        api.run_filter_cast(x, np.ones((3, 3)), Cast(np.uint8), method="direct", out=np.empty(3, np.float32))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_planar_strips_give_scipy_results_for_float_output(channels, monkeypatch):
    monkeypatch.setattr(tuning, "FLAT_MAX_WIDTH", 8)
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((23, 37, channels)).astype(np.float32)
    k = rng.standard_normal((5, 6)).astype(np.float32)
    for border in BORDERS:
        got = api.run_filter(x, k, border=border, cval=0.5, method="direct").array
        for c in range(channels):
            want = ndi.correlate(x[..., c].astype(np.float64), k.astype(np.float64), mode=border, cval=0.5, origin=[0, -1])
            assert_close(got[..., c], want, x, k)


def test_planar_strips_on_volumes_sum_every_kernel_plane(monkeypatch):
    monkeypatch.setattr(tuning, "FLAT_MAX_WIDTH", 8)
    rng = np.random.default_rng(9)
    vol = rng.standard_normal((6, 11, 20, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3)).astype(np.float32)
    got = api.run_filter(vol, k, method="direct").array
    for c in range(3):
        assert_close(got[..., c], ndi.correlate(vol[..., c].astype(np.float64), k.astype(np.float64), mode="reflect"), vol, k)


def test_apply_writes_the_fused_pixels_and_reports_their_clipped_count(tmp_path):
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (30, 1050, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    k = rng.integers(-3, 4, (5, 5))
    (tmp_path / "k.txt").write_text("\n".join(" ".join(str(v) for v in row) for row in k))
    res = CliRunner().invoke(app, ["apply", str(tmp_path / "in.png"), "-k", str(tmp_path / "k.txt"), "-o", str(tmp_path / "out.png"),
                                   "--scale", "0.5", "--offset", "20", "--abs", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    # an integer kernel on 8-bit pixels: every sum, halved, is exact in float32, so the pixels and
    # the count equal the float64 reference exactly (ties at .5 included: both round half to even)
    v = np.rint(np.abs(naive_correlate(img, k, flip=True) * 0.5 + 20))  # apply's default mode: true convolution
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.clip(v, 0, 255))
    assert doc["clipped"] == int(np.count_nonzero(v > 255)) > 0
    assert doc["steps"][0]["method"] == "direct"


@pytest.mark.parametrize(("size", "fused"), [(5, "direct"), (7, "direct"), (15, "separable")])
def test_auto_counts_the_cast_the_direct_kernel_saves(size, fused):
    # a separable Gaussian to 8 bits: the direct kernel casts inside, the separable pass needs a
    # float result and a second pass, so auto prefers direct for small kernels (not for float output)
    k = np.outer(*(2 * [np.exp(-np.linspace(-2, 2, size) ** 2)]))
    x = np.zeros((600, 800, 3), np.uint8)
    assert api.run_filter(x, k).method == "separable"
    assert api.run_filter_cast(x, k, Cast(np.dtype(np.uint8)))[0].method == fused
    assert api.run_filter_cast(x, k, Cast(np.dtype(np.int16)))[0].method == "separable"  # cast apart either way


def test_auto_charges_no_cast_where_the_direct_kernel_would_not_cast_inside():
    # channels with an x stride run planar, and planar direct results are cast apart too
    k = np.outer(*(2 * [np.exp(-np.linspace(-2, 2, 5) ** 2)]))
    x = np.zeros((600, 800, 3), np.uint8)
    assert api.run_filter_cast(x, k, Cast(np.dtype(np.uint8)), stride=(1, 2))[0].method == "separable"
    assert api.run_filter_cast(x[..., 0], k, Cast(np.dtype(np.uint8)), stride=(1, 2))[0].method == "direct"
