"""The FFT path's tiling: edge tiles gathered from the border maps, a shorter last tile per axis,
and the cost model's view of the installed FFT library."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convcli
from convcli import geometry
from convcli.engine import _fft, tuning

from .naive import assert_close
from .test_engine import _valid_or_skip, cases


@given(cases(), st.integers(2, 12))
def test_many_small_tiles_match_the_reference(case, target):
    # tiles of a few points: every tile is an edge tile on some border, and most axes end on a
    # shorter last tile with its own kernel spectrum
    x, k, kw = case
    ref = _valid_or_skip(x, k, kw)
    if ref is None:
        return
    saved = _fft.TILE_FFT_2D, _fft.TILE_FFT_3D
    _fft.TILE_FFT_2D = _fft.TILE_FFT_3D = target
    try:
        got = convcli.correlate(x, k, method="fft", **kw)
    finally:
        _fft.TILE_FFT_2D, _fft.TILE_FFT_3D = saved
    acc = np.float64 if x.dtype == np.float64 else np.float32
    assert got.shape == ref.shape
    assert_close(got, ref, x, k, acc)


@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=3).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.tuples(*[st.lists(st.integers(-1, n - 1), min_size=1, max_size=12) for n in shape]),
        )
    )
)
def test_gather_reads_the_outer_product_of_the_indices(args):
    shape, idxs = args
    arr = np.arange(1, np.prod(shape) + 1, dtype=np.float32).reshape(shape)
    maps = [np.array(i, np.int64) for i in idxs]
    want = np.zeros([len(i) for i in maps], np.float32)
    for cell in np.ndindex(*want.shape):
        src = tuple(int(m[c]) for m, c in zip(maps, cell))
        want[cell] = 0 if min(src) < 0 else arr[src]
    got = _fft._gather(arr, maps)
    np.testing.assert_array_equal(got, want)
    assert arr[(0,) * len(shape)] == 1  # the input is untouched


def test_the_last_tile_is_no_longer_than_it_needs():
    # 4096 outputs of a 31-point kernel: eight 512-point tiles of 482 cells, then 240 cells on 270
    assert _fft._axis_tiles(31, 1, 4096, 512) == _fft.AxisTiles(482, 512, 270)
    # one tile holds the whole axis: its length is what that axis needs, not the target
    assert _fft._axis_tiles(31, 1, 300, 512) == _fft.AxisTiles(300, 360, 360)  # 330 points, 360 = 2^3 3^2 5
    # stride 2: 241 cells read 511 points
    assert _fft._axis_tiles(31, 2, 2048, 512)[:2] == (241, 512)
    # an axis the kernel does not span is not transformed
    assert _fft._axis_tiles(1, 1, 1, 512) == _fft.AxisTiles(1, 1, 1)


def test_every_tile_shape_gets_its_own_kernel_spectrum(monkeypatch):
    # 70 x 45 outputs in tiles of 32 points with a 5x3 kernel: 28 x 30 cells per tile, last tiles of
    # 14 and 15 cells on shorter transforms; every tile must use the spectrum of its own size
    import scipy.ndimage as ndi

    rng = np.random.default_rng(3)
    x = rng.standard_normal((70, 45)).astype(np.float32)
    k = rng.standard_normal((5, 3)).astype(np.float32)
    monkeypatch.setattr(_fft, "TILE_FFT_2D", 32)
    geo3 = geometry.plan_geometry((1, 70, 45), (1, 5, 3))
    plan = _fft.tile_plan(geo3)
    assert [p.length != p.last_length for p in plan[1:]] == [True, True]

    got = convcli.correlate(x, k, method="fft", border="wrap")
    np.testing.assert_allclose(got, ndi.correlate(x.astype(np.float64), k.astype(np.float64), mode="wrap"), rtol=0, atol=1e-4)


def test_installed_backend_names_the_library_the_tiles_use():
    assert _fft.installed_backend() == _fft.backend().name
    assert set(tuning.FFT_BACKEND_COST) == set(_fft.BACKENDS)  # a cost for every library the tiles may use


def test_the_cost_model_looks_the_fft_library_up_once(monkeypatch):
    # every auto call asks which library the tiles would use: a search of sys.path each time
    # doubled a 64x64 call's cost
    import importlib.util

    real = importlib.util.find_spec
    asked: list[str] = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (asked.append(name), real(name, *a))[1])
    _fft.backend.cache_clear()
    _fft._first_installed.cache_clear()
    try:
        x = np.ones((64, 64), np.float32)
        for _ in range(10):
            convcli.correlate(x, np.ones((3, 3), np.float32))
        assert 1 <= len([name for name in asked if name in _fft.BACKENDS]) <= len(_fft.BACKENDS)
    finally:
        _fft._first_installed.cache_clear()


def test_a_large_constant_border_costs_no_precision_where_it_is_not_read(monkeypatch):
    # the constant cells are gathered as cval (no shift of the whole input by it): with valid
    # padding no tile reads one, so the result has the bits of cval 0; with same padding only the
    # tiles that read the border see it (64-point tiles: 40 output cells each)
    monkeypatch.setattr(_fft, "TILE_FFT_2D", 64)
    rng = np.random.default_rng(5)
    x = rng.random((300, 280), dtype=np.float32)
    k = rng.standard_normal((25, 25)).astype(np.float32)
    valid = convcli.correlate(x, k, padding="valid", method="fft")
    np.testing.assert_array_equal(convcli.correlate(x, k, padding="valid", border="constant", cval=7e4, method="fft"), valid)
    got = convcli.correlate(x, k, border="constant", cval=7e4, method="fft")
    ref = convcli.correlate(x.astype(np.float64), k, border="constant", cval=7e4, method="direct")
    assert np.abs(got - ref).max() <= 2e-6 * 7e4 * np.abs(k).sum()
    assert [p.cells for p in _fft.tile_plan(geometry.plan_geometry((1, 300, 280), (1, 25, 25)))[1:]] == [40, 40]
    # tiles 2 .. n-1 read no border (output cell i of "same" is cell i - 12 of "valid")
    np.testing.assert_allclose(got[40:280, 40:240], valid[28:268, 28:228], rtol=0, atol=1e-4)


def test_the_cost_model_counts_a_slower_fft_library():
    # a 25x25 kernel on a 4096^2 image: FFT tiles through ducc0 beat direct, through numpy.fft they do not
    geo = geometry.plan_geometry((4096, 4096), (25, 25))
    assert tuning.cheapest(tuning.method_costs(geo, 0, fft_backend="ducc0")) == "fft"
    assert tuning.cheapest(tuning.method_costs(geo, 0, fft_backend="numpy")) == "direct"
    # small kernels never go to the FFT, large ones always do (whatever the library)
    for backend in tuning.FFT_BACKEND_COST:
        assert tuning.cheapest(tuning.method_costs(geometry.plan_geometry((4096, 4096), (9, 9)), 0, fft_backend=backend)) == "direct"
        assert tuning.cheapest(tuning.method_costs(geometry.plan_geometry((4096, 4096), (61, 61)), 0, fft_backend=backend)) == "fft"
        assert tuning.cheapest(tuning.method_costs(geometry.plan_geometry((192, 192, 192), (7, 7, 7)), 0, fft_backend=backend)) == "direct"
        assert tuning.cheapest(tuning.method_costs(geometry.plan_geometry((192, 192, 192), (13, 13, 13)), 0, fft_backend=backend)) == "fft"
