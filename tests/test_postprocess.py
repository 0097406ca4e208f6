"""Post-processing in numpy: statistics from per-value counts (8/16-bit) and the terminal
histogram, against plain numpy reductions."""

from __future__ import annotations

import numpy as np
import pytest

from convcli.engine import postprocess
from convcli.viz.terminal import histogram_counts


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_histogram_statistics_match_plain_reductions(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    flat = rng.integers(info.min, info.max, (5000, 3), endpoint=True).astype(dtype)
    flat[:, 2] = info.min  # a constant channel at the type's minimum
    st = postprocess.channel_stats(flat, 3)
    v = flat.astype(np.float64)
    np.testing.assert_array_equal(st.min, v.min(axis=0))
    np.testing.assert_array_equal(st.max, v.max(axis=0))
    np.testing.assert_allclose(st.mean, v.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(st.std, v.std(axis=0), rtol=1e-12, atol=1e-12)
    assert st.count_all == flat.size
    assert st.mean_all == pytest.approx(v.mean(), rel=1e-13) and st.std_all == pytest.approx(v.std(), rel=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16])
def test_compiled_integer_moments_are_exact_and_match_the_histogram_path(dtype, channels, monkeypatch):
    """Above the numpy threshold the compiled one-pass kernel sums in int64: the same integers as
    the bincount path, and moments exact against Python integers on data made to cancel badly
    (a large mean, a tiny spread)."""
    import numba  # noqa: F401  (the compiled path is taken once Numba is loaded)

    info = np.iinfo(dtype)
    rng = np.random.default_rng(4)
    n = (postprocess.NUMPY_POSTPROCESS_MAX // channels) + 12345  # several kernel chunks, a ragged last one
    flat = rng.integers(info.max - 2, info.max, (n, channels), endpoint=True).astype(dtype)
    flat[7, 0] = info.min  # one far outlier
    flat[-1, -1] = info.min
    compiled = postprocess.integer_moments(flat)
    monkeypatch.setattr(postprocess, "_in_numpy", lambda size: True)
    assert postprocess.integer_moments(flat) == compiled
    wide = flat.astype(np.int64)  # 2**23 squares of 16-bit values stay below 2**63: exact
    assert compiled.sums == tuple(wide.sum(axis=0)) and compiled.squares == tuple((wide * wide).sum(axis=0))
    assert compiled.mins == tuple(wide.min(axis=0)) and compiled.maxs == tuple(wide.max(axis=0))
    st = compiled.stats()
    v = flat.astype(np.float64)
    np.testing.assert_allclose(st.std, v.std(axis=0), rtol=1e-9)
    assert st.count_all == flat.size and st.mean_all == pytest.approx(v.mean(), rel=1e-13)


def test_statistics_of_an_empty_result_and_of_floats_with_nan():
    empty = postprocess.channel_stats(np.empty((0, 2), np.uint8), 2)
    assert (empty.count == 0).all() and np.isinf(empty.min).all() and np.isnan(empty.mean).all()
    x = np.array([[1.0, np.nan], [3.0, np.nan], [np.inf, np.nan]], np.float32)
    st = postprocess.channel_stats(x, 2)
    assert st.count.tolist() == [2, 0] and st.mean[0] == 2.0 and np.isnan(st.mean[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16])
def test_terminal_histogram_counts_match_numpy(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(2)
    a = rng.integers(max(info.min, -500), min(info.max, 3000), (70, 90)).astype(dtype)
    counts, lo, hi = histogram_counts(a)
    ref, _ = np.histogram(a.astype(np.float64), bins=24, range=(float(a.min()), float(a.max())))
    np.testing.assert_array_equal(counts, ref)
    assert (lo, hi) == (float(a.min()), float(a.max()))
    same = np.full((4, 4), 7, dtype)
    c, lo, hi = histogram_counts(same)
    assert c.sum() == 16 and lo == hi == 7.0


def test_to_integer_rounds_clips_and_counts_in_float32():
    x = np.array([-3.5, -0.5, 0.5, 1.5, 254.5, 255.5, 300.0, np.nan, np.inf], np.float32)
    out, bad = postprocess.to_integer(x, np.uint8)
    assert out.tolist() == [0, 0, 0, 2, 254, 255, 255, 0, 255] and bad == 5


@pytest.mark.parametrize("size", [9, 3 << 21])  # the numpy path and the compiled kernel
def test_to_integer_and_cast_fill_a_given_array(size):
    """``out=`` (the chunked path casts each slab straight into its block): the same values and
    count as a new array, written into the array given and returned."""
    import numba  # noqa: F401  (the large size takes the compiled kernel once Numba is loaded)

    x = (np.random.default_rng(5).standard_normal(size) * 200).astype(np.float32).reshape(-1, 3)
    x[0, 0] = np.nan
    ref, bad = postprocess.to_integer(x, np.uint8)
    out = np.full(x.shape, 7, np.uint8)
    got, got_bad = postprocess.cast(x, np.uint8, out=out)
    assert got is out and got_bad == bad and bad > 0 and np.array_equal(out, ref)
    floats = np.empty(x.shape, np.float64)
    assert postprocess.cast(x, np.float64, out=floats)[0] is floats and np.array_equal(floats, x, equal_nan=True)
