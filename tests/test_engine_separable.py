"""The separable kernel (``_direct.separable_yx``): y first, four output rows at a time sharing the
source rows they read, then x along an aligned line. Every tap-pass remainder, row-group remainder,
row block and column tile against scipy.ndimage and the naive reference; the same bits wherever a
row or column falls in a group or tile."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

import convcli
from convcli.engine import tuning
from convcli.engine.api import run_filter

from .naive import assert_close, naive_correlate


def _rank1(rng: np.random.Generator, kh: int, kw: int, dtype: type) -> np.ndarray:
    return np.outer(rng.uniform(0.2, 1.0, kh), rng.uniform(-1.0, 1.0, kw)).astype(dtype)


@pytest.fixture
def small_tasks(monkeypatch):
    """Blocks of 8 rows and tiles of 40 columns, so one image spans many tasks."""
    monkeypatch.setattr(tuning, "SEPARABLE_BLOCK_MAX", 8)
    monkeypatch.setattr(tuning, "SEPARABLE_COL_MIN", 40)
    monkeypatch.setattr(tuning, "separable_buffer_bytes", lambda: 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tasks", ["whole", "small"])
def test_every_tap_and_row_remainder_agrees_with_scipy(dtype, tasks, request):
    # kernel heights 1..19 cover passes of 8, 4 and 1 taps; 1..7 image rows leave 1-3 rows of
    # the last group of four unused; the border modes map padded columns inside and outside a tile
    if tasks == "small":
        request.getfixturevalue("small_tasks")
    rng = np.random.default_rng(3)
    for kh in (1, 2, 3, 5, 7, 8, 11, 12, 15, 19):
        kw = (kh % 5) + 2
        k = _rank1(rng, kh, kw, dtype)
        for rows in (1, 3, 6, 7, 29):
            x = rng.standard_normal((rows, 97)).astype(dtype)
            for border in ("reflect", "mirror", "nearest", "wrap", "constant"):
                got = run_filter(x, k, method="separable", border=border, cval=0.75)
                assert got.method == "separable" and got.array.dtype == dtype
                ref = ndi.correlate(x.astype(np.float64), k.astype(np.float64), mode=border, cval=0.75, origin=[-(kh % 2 == 0), -(kw % 2 == 0)])
                assert_close(got.array, ref, x, k, dtype)


@pytest.mark.parametrize("stride, dilation", [(1, 2), (2, 1), ((2, 1), (1, 3)), ((1, 2), (2, 1)), (3, 2)])
def test_strides_and_dilations_take_the_one_row_path(stride, dilation, small_tasks):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((45, 123)).astype(np.float32)
    for kh, kw in ((9, 4), (3, 11), (12, 1)):
        k = _rank1(rng, kh, kw, np.float32)
        for border in ("reflect", "constant"):
            got = run_filter(x, k, method="separable", border=border, stride=stride, dilation=dilation, cval=-1.0)
            ref = naive_correlate(x, k, border=border, stride=stride, dilation=dilation, cval=-1.0)
            assert got.array.shape == ref.shape
            assert_close(got.array, ref, x, k)


def test_channels_volumes_and_convolution(small_tasks):
    # tiles of 40 interleaved cells split pixels between tiles
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (21, 300, 3), dtype=np.uint8)
    k = _rank1(rng, 7, 5, np.float32)
    for fn, ref in ((convcli.correlate, ndi.correlate), (convcli.convolve, ndi.convolve)):
        got = fn(rgb, k, border="mirror", method="separable")
        for c in range(3):
            want = ref(rgb[..., c].astype(np.float64), k.astype(np.float64), mode="mirror", origin=[0, 0])
            assert_close(got[..., c], want, rgb, k)
    vol = rng.standard_normal((6, 19, 50)).astype(np.float32)
    k3 = np.einsum("i,j,k->ijk", rng.uniform(0.5, 1, 3), rng.uniform(0.5, 1, 9), rng.uniform(-1, 1, 4)).astype(np.float32)
    got = run_filter(vol, k3, method="separable", border="nearest")
    ref = ndi.correlate(vol.astype(np.float64), k3.astype(np.float64), mode="nearest", origin=[0, 0, -1])
    assert_close(got.array, ref, vol, k3)


@pytest.mark.parametrize("border", ["reflect", "wrap", "constant"])
def test_the_same_bits_wherever_a_row_or_column_falls(border, small_tasks):
    # cropping the image's top rows and left columns moves every row to another place in its group
    # of four, block and tile; rows and columns away from the borders must not change by one bit
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 150)).astype(np.float32)
    k = _rank1(rng, 11, 9, np.float32)
    full = run_filter(x, k, method="separable", border=border).array
    for dy, dx in ((1, 0), (2, 3), (3, 17), (5, 1)):
        part = run_filter(x[dy:, dx:], k, method="separable", border=border).array
        inner = full[dy + 5 : -5, dx + 4 : -4]
        assert np.array_equal(part[5:-5, 4:-4], inner)
    # a column crop gives the columns it shares with the whole, its first rows included
    crop = run_filter(x[:, 40:], k, method="separable", border=border).array
    assert np.array_equal(crop[5:, 4:-4], full[5:, 44:-4])


@pytest.mark.parametrize("border", ["wrap", "reflect", "nearest"])
def test_border_cells_do_not_depend_on_the_column_tile(border, monkeypatch):
    # wrap reads the far side of the image, outside the first and last tiles: those cells must
    # come out the same as with the whole row in one tile (the tile width follows the L2 size)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 500)).astype(np.float64)
    k = _rank1(rng, 31, 7, np.float64)
    whole = run_filter(x, k, method="separable", border=border).array
    monkeypatch.setattr(tuning, "SEPARABLE_COL_MIN", 40)
    monkeypatch.setattr(tuning, "separable_buffer_bytes", lambda: 1)
    tiled = run_filter(x, k, method="separable", border=border).array
    assert np.array_equal(tiled, whole)
    assert_close(tiled, naive_correlate(x, k, border=border), x, k, np.float64)


def test_padding_wider_than_a_tile(small_tasks):
    # 'full' padding with a kernel wider than a 40-column tile: whole tiles lie in the padding
    rng = np.random.default_rng(9)
    x = rng.standard_normal((9, 30)).astype(np.float32)
    k = _rank1(rng, 5, 57, np.float32)
    for border in ("reflect", "wrap", "constant"):
        got = run_filter(x, k, method="separable", border=border, padding="full", cval=0.25)
        ref = naive_correlate(x, k, border=border, padding="full", cval=0.25)
        assert got.array.shape == ref.shape
        assert_close(got.array, ref, x, k)


def _rank1_3d(rng: np.random.Generator, kd: int, kh: int, kw: int) -> np.ndarray:
    return np.einsum("i,j,k->ijk", rng.uniform(0.2, 1.0, kd), rng.uniform(0.2, 1.0, kh), rng.uniform(-1.0, 1.0, kw)).astype(np.float32)


@pytest.fixture
def z_paths(monkeypatch):
    """Counts the volumes whose z pass ran in place on the result (the others ran from a copy)."""
    from convcli.engine import dispatch

    calls: list[tuple[int, ...]] = []
    real = dispatch._columns_inplace

    def spy(x4, *args):
        calls.append(x4.shape)
        return real(x4, *args)

    monkeypatch.setattr(dispatch, "_columns_inplace", spy)
    return calls


@pytest.mark.parametrize("tasks", ["whole", "small"])
def test_volume_z_pass_in_place_agrees_with_scipy(tasks, z_paths, request):
    # the z pass filters the result in place through a ring of source planes: planes counts that
    # leave 1-3 planes of the last group of four, kernels longer than the volume, every border;
    # wrap reads the first planes again at the end, so it runs from a copy unless all fit the ring
    if tasks == "small":
        request.getfixturevalue("small_tasks")
    rng = np.random.default_rng(11)
    for kd in (2, 3, 4, 9, 17):
        k = _rank1_3d(rng, kd, 3, 4)
        for planes in (1, 2, 5, 10, 23):
            vol = rng.standard_normal((planes, 7, 61)).astype(np.float32)
            for border in ("reflect", "mirror", "nearest", "wrap", "constant"):
                z_paths.clear()
                got = run_filter(vol, k, method="separable", border=border, cval=0.5)
                assert_close(got.array, naive_correlate(vol, k, border=border, cval=0.5), vol, k)
                if kd <= planes:  # (scipy pads a shorter axis its own way, and wrap gives garbage)
                    ref = ndi.correlate(vol.astype(np.float64), k.astype(np.float64), mode=border, cval=0.5, origin=[-(kd % 2 == 0), 0, -1])
                    assert_close(got.array, ref, vol, k)
                in_place = border != "wrap" or planes <= kd + 4  # (a ring of kd + 4 planes)
                assert len(z_paths) == in_place, (kd, planes, border)


def test_volume_z_pass_with_strides_dilations_channels_and_out(small_tasks, z_paths):
    rng = np.random.default_rng(12)
    vol = rng.standard_normal((19, 9, 45)).astype(np.float32)
    k = _rank1_3d(rng, 5, 3, 3)
    for stride, dilation in (((2, 1, 1), 1), (1, (3, 1, 1)), ((3, 2, 1), (2, 1, 2))):
        got = run_filter(vol, k, method="separable", border="reflect", stride=stride, dilation=dilation)
        ref = naive_correlate(vol, k, border="reflect", stride=stride, dilation=dilation)
        assert got.array.shape == ref.shape
        assert_close(got.array, ref, vol, k)
    assert z_paths == []  # a z-stride or dilation changes which planes a block reads: from a copy
    # interleaved channels of a volume, in place
    rgb = rng.standard_normal((11, 8, 30, 3)).astype(np.float32)
    got = run_filter(rgb, k, method="separable", border="nearest")
    for c in range(3):
        assert_close(got.array[..., c], ndi.correlate(rgb[..., c].astype(np.float64), k.astype(np.float64), mode="nearest"), rgb, k)
    assert len(z_paths) == 1
    # out=: the result lands in the caller's array (the z pass writes into it, in place or from a
    # copy), or is copied into a non-contiguous one
    for border in ("reflect", "wrap"):
        want = run_filter(vol, k, method="separable", border=border).array
        out = np.full(vol.shape, np.nan, np.float32)
        assert run_filter(vol, k, method="separable", border=border, out=out).array is out
        np.testing.assert_array_equal(out, want)
    wide = np.full((19, 9, 90), np.nan, np.float32)
    run_filter(vol, k, method="separable", border="wrap", out=wide[:, :, ::2])
    np.testing.assert_array_equal(wide[:, :, ::2], want)
    assert np.isnan(wide[:, :, 1::2]).all()


def test_warmup_compiles_every_signature_the_separable_paths_use(monkeypatch):
    # recorded, not compiled: a signature warmup misses would compile on a user's first volume
    import numba

    from convcli.engine import cache, tasks

    names = ("separable_yx", "columns_inplace")

    def recorder(seen):
        def run(kernel, n, *args, work=0):
            if kernel.__name__ in names:
                seen.add((kernel.__name__, tuple(str(numba.typeof(a)) for a in args)))

        return run

    warmed, used = set(), set()
    monkeypatch.setattr(tasks, "run", recorder(warmed))
    cache.warmup(full=True)
    monkeypatch.setattr(tasks, "run", recorder(used))
    k = _rank1_3d(np.random.default_rng(13), 5, 3, 3)
    for dtype in (np.uint8, np.uint16, np.float32, np.float64):
        for border in ("reflect", "wrap"):  # in place; from a copy
            for precision in ("auto", "float64"):
                run_filter(np.zeros((12, 9, 20), dtype), k, method="separable", border=border, precision=precision)
                run_filter(np.zeros((30, 40, 3), dtype), k[0], method="separable", border=border, precision=precision)
    assert {name for name, _ in used} == set(names)
    assert used <= warmed, used - warmed
