"""The numpy backend (small calls: no Numba to load) against the same oracles as the compiled
kernels, against the kernels themselves, and the engine's choice between the two."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import convcli
from convcli.engine import _small, plan, tasks, tuning
from convcli.engine.api import run_filter
from convcli.engine.plan import make_plan

from . import test_engine as base
from .naive import naive_correlate

NUMPY_REPLAYS = [
    base.test_engine_matches_naive_reference,
    base.test_separable_path_matches_naive_reference,
    base.test_conv_layer_matches_channel_loop,
    base.test_low_rank_kernels_as_sums_of_separable_passes,
    base.test_padding_wider_than_image_repeats_the_rule_like_scipy,
    base.test_convolve_is_correlate_of_flipped_kernel_for_even_and_odd_kernels,
    base.test_linearity_and_constant_image,
    base.test_channels_are_filtered_independently,
    base.test_never_clips_and_propagates_nan,
    base.test_conv_layer_seed_example_three_channels_to_one,
]


@pytest.mark.parametrize("test", NUMPY_REPLAYS, ids=lambda t: t.__name__)
def test_numpy_backend_passes_the_engine_tests(test, monkeypatch):
    """The engine's own property and algebra tests, replayed on the numpy backend."""
    monkeypatch.setenv("CONVCLI_BACKEND", "numpy")
    test()


@pytest.mark.parametrize("test", NUMPY_REPLAYS[:5], ids=lambda t: t.__name__)
def test_numpy_backend_in_blocks_and_padding_by_edges(test, monkeypatch):
    """The numpy path's forms for larger inputs, forced on the tests' small ones: taps added one
    by one in blocks of 1024 cells (a partial last block), and padding that copies the interior
    and fills the edges from it."""
    monkeypatch.setenv("CONVCLI_BACKEND", "numpy")
    monkeypatch.setattr(tuning, "numpy_block_bytes", lambda: 1)
    monkeypatch.setattr(tuning, "numpy_products_bytes", lambda: 1)
    monkeypatch.setattr(_small, "PAD_TAKE_MAX", 0)
    test()


@pytest.mark.parametrize("border", base.BORDERS)
def test_the_numpy_forms_give_the_same_bits(border, monkeypatch):
    """Two numpy calls for a small input, tap by tap in blocks for a larger one, and strided views
    (any stride): each sums every cell's products in the same order, so all give the same bits,
    and the same as the naive reference within float32 rounding."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((37, 53, 3)).astype(np.float32)
    k = rng.standard_normal((4, 5))
    kw = dict(border=border, cval=1.5, dilation=(2, 1))
    with tasks.backend("numpy"):
        small = convcli.correlate(x, k, **kw)
        geo = make_plan(x, True, k, flip=False, padding="same", stride=1, method="direct", **kw).geometry
        xp = _small.pad(x, geo, border, 1.5)
        strided = _small._direct_strided(xp, k.astype(np.float32), geo)
        monkeypatch.setattr(tuning, "numpy_block_bytes", lambda: 1)
        monkeypatch.setattr(tuning, "numpy_products_bytes", lambda: 1)
        monkeypatch.setattr(_small, "PAD_TAKE_MAX", 0)
        plan.forget()  # the first call's plan holds its form
        blocked = convcli.correlate(x, k, **kw)
    np.testing.assert_array_equal(small, blocked)
    np.testing.assert_array_equal(small, strided)
    np.testing.assert_allclose(small, naive_correlate(x, k, **kw), rtol=0, atol=1e-5 * np.abs(k).sum() * 4)


def test_kernels_far_wider_than_the_output_skip_the_flat_form():
    """The flat form computes the padded grid's cells; with a kernel far wider than the output
    that is many times the output's work, so the numpy path adds strided views instead (and
    the cost model counts it so): the same values as the reference."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    k = rng.standard_normal((1, 41))
    geo = make_plan(x, False, k, flip=False, border="wrap", padding="same", stride=1, dilation=1, cval=0.0, method="direct").geometry
    assert tuning.numpy_span(geo) is None  # 300 x 46 padded cells for 300 x 6 outputs
    with tasks.backend("numpy"):
        got = convcli.correlate(x, k, border="wrap")
    np.testing.assert_allclose(got, naive_correlate(x, k, border="wrap"), rtol=0, atol=1e-4)
    ordinary = make_plan(x, False, np.ones((3, 3)), flip=False, border="wrap", padding="same", stride=1, dilation=1, cval=0.0, method="direct")
    assert tuning.numpy_span(ordinary.geometry) == 300 * 8


@pytest.mark.parametrize("kshape", [(3, 3), (5, 3), (1, 7), (3, 3, 3)])
def test_numpy_backend_agrees_with_scipy_ndimage(monkeypatch, kshape):
    monkeypatch.setenv("CONVCLI_BACKEND", "numpy")
    for border in base.BORDERS:
        for method in ("direct", "separable", "auto"):
            base.test_agrees_with_scipy_ndimage(border, method, kshape)


@pytest.mark.parametrize("method", ["direct", "separable"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_numpy_and_compiled_backends_agree(method, dtype):
    rng = np.random.default_rng(11)
    x = (rng.random((61, 47, 3)) * 200).astype(dtype)
    k = np.outer(rng.standard_normal(5), rng.standard_normal(4))
    results = {}
    for name in ("numpy", "numba"):
        with tasks.backend(name):
            results[name] = convcli.convolve(x, k, method=method, border="constant", cval=9.0, stride=(2, 1), dilation=(1, 2))
    assert results["numpy"].dtype == results["numba"].dtype == (np.float64 if dtype == np.float64 else np.float32)
    scale = np.abs(k).sum() * 200
    np.testing.assert_allclose(results["numpy"], results["numba"], rtol=0, atol=scale * (1e-12 if dtype == np.float64 else 1e-6))
    ref = naive_correlate(x, k, flip=True, border="constant", cval=9.0, stride=(2, 1), dilation=(1, 2))
    np.testing.assert_allclose(results["numpy"], ref, rtol=0, atol=scale * (1e-12 if dtype == np.float64 else 1e-6))


def test_integer_kernels_give_identical_integers_on_both_backends():
    """Sobel on 8-bit data: every partial sum is an integer, exact in float32 on either backend."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (40, 33, 3)).astype(np.uint8)
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    got = {}
    for name in ("numpy", "numba"):
        with tasks.backend(name):
            got[name] = [convcli.correlate(x, sobel, method=m) for m in ("direct", "separable")]
    for a, b in zip(got["numpy"], got["numba"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_out_origin_and_precision_on_the_numpy_backend():
    import scipy.ndimage as ndi

    rng = np.random.default_rng(4)
    x = rng.integers(0, 1000, (20, 18)).astype(np.uint16)
    k = rng.standard_normal((4, 3))
    out = np.empty((20, 18), np.float64)
    with tasks.backend("numpy"):
        res = convcli.correlate(x, k, origin=(1, -1), precision="float64", out=out)
    assert res is out
    np.testing.assert_allclose(out, ndi.correlate(x.astype(np.float64), k, origin=(1, -1), mode="reflect"), rtol=1e-12)


def _plan(shape, kshape):
    x = np.zeros(shape, np.float32)
    return make_plan(x, False, np.ones(kshape), flip=False, border="reflect", padding="same", stride=1, dilation=1, cval=0.0, method="direct")


@pytest.mark.backend_auto
def test_auto_uses_numpy_below_the_threshold_and_numba_above():
    assert not _plan((64, 64), (3, 3)).compiled  # 37k multiply-adds
    side = int(np.sqrt(tuning.NUMPY_MAX_MACS / 9)) + 2
    assert _plan((side, side), (3, 3)).compiled
    with tasks.backend("numba"):
        assert _plan((64, 64), (3, 3)).compiled
    with tasks.backend("numpy"):
        assert not _plan((side, side), (3, 3)).compiled


def test_auto_on_numpy_runs_separable_kernels_as_one_dimensional_passes(tmp_path):
    """numpy pays per pass over the image, so ``auto`` weighs passes against taps with numpy's
    own costs: a separable 5x5 runs as two 5-tap passes (the same integers for a binomial
    kernel, the same choice on the chunked path), a 3x3 stays direct (9 taps cost less than two
    passes), a non-separable kernel stays direct, and a rank-2 7x7 that the compiled cost model
    keeps direct runs as four passes."""
    x = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    binomial = np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1]) / 256
    rank2 = np.outer(np.arange(1.0, 8), np.ones(7)) + np.outer(np.ones(7), np.arange(7.0) % 3)
    with tasks.backend("numba"):
        assert run_filter(x, rank2).method == "direct"
    with tasks.backend("numpy"):
        assert run_filter(x, rank2).method == "separable"
        res = run_filter(x, binomial)
        assert res.method == "separable"
        assert np.array_equal(res.array, convcli.correlate(x, binomial, method="direct"))
        assert run_filter(x, np.outer([1.0, 2, 1], [1.0, 2, 1]) / 16).method == "direct"
        assert run_filter(x, np.arange(25.0).reshape(5, 5) % 4).method == "direct"
    zarr = pytest.importorskip("zarr")
    from convcli.chunked.run import filter_to_zarr

    arr = zarr.open_array(store=str(tmp_path / "in.zarr"), mode="w", shape=x.shape[:2], chunks=(16, 16), dtype=x.dtype)
    arr[...] = x[..., 0]
    with tasks.backend("numpy"):
        op = filter_to_zarr(tmp_path / "in.zarr", binomial, tmp_path / "out.zarr").op
    assert (op.method, op.compiled) == ("separable", False)


@pytest.mark.backend_auto
def test_a_bad_backend_name_is_a_usage_error(monkeypatch):
    from convcli.errors import UsageError

    monkeypatch.setenv("CONVCLI_BACKEND", "gpu")
    with pytest.raises(UsageError, match="CONVCLI_BACKEND='gpu'"):
        convcli.correlate(np.ones((5, 5)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="backend must be one of"), tasks.backend("gpu"):
        pass


@pytest.mark.backend_auto
def test_a_bad_backend_name_stops_the_cli_before_any_input(tmp_path, monkeypatch):
    """A usage error (exit 2, one line naming the variable), not a failure of every input (exit 1)."""
    from typer.testing import CliRunner

    from convcli.cli.app import app

    np.save(tmp_path / "in.npy", np.ones((8, 8), np.uint8))
    monkeypatch.setenv("CONVCLI_BACKEND", "gpu")
    res = CliRunner().invoke(app, ["apply", str(tmp_path / "in.npy"), "-k", "box:3", "-o", str(tmp_path / "out.npy")])
    assert res.exit_code == 2, res.output
    assert "CONVCLI_BACKEND='gpu'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.backend_auto
def test_chunked_run_rounds_as_the_whole_array_would(tmp_path):
    """A volume big enough for the compiled kernels, cut into blocks small enough for numpy: every
    block must still run compiled, so the chunked result is bit for bit the in-memory one."""
    zarr = pytest.importorskip("zarr")
    from convcli.chunked.run import filter_to_zarr

    rng = np.random.default_rng(5)
    vol = rng.random((72, 96, 96)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3))
    assert 72 * 96 * 96 * 27 >= tuning.NUMPY_MAX_MACS and 16 * 32 * 32 * 27 * 2 < tuning.NUMPY_MAX_MACS
    src_path = tmp_path / "in.zarr"
    zarr.open_array(store=str(src_path), mode="w", shape=vol.shape, chunks=(16, 32, 32), dtype=vol.dtype)[...] = vol
    out_path = tmp_path / "out.zarr"
    filter_to_zarr(str(src_path), k, str(out_path), method="direct")
    got = zarr.open_array(store=str(out_path), mode="r")[...]
    np.testing.assert_array_equal(got, convcli.correlate(vol, k, method="direct"))


@pytest.mark.backend_auto
def test_chunked_float64_plans_the_backend_as_the_engine_does(tmp_path):
    """float64 accumulates in 8 bytes: the numpy cost model sees bigger blocks, and the chunked
    plan must count them as the engine does, or a volume near the threshold runs on the other
    back end in blocks (found by review: 1112^2 float64, 3x3, last bits apart)."""
    zarr = pytest.importorskip("zarr")
    from convcli.chunked.plan import plan_op
    from convcli.chunked.run import filter_to_zarr
    from convcli.chunked.source import open_source

    rng = np.random.default_rng(14)
    x = rng.random((1112, 1112))
    k = rng.standard_normal((3, 3))
    assert make_plan(x, False, k, flip=False, border="reflect", padding="same", stride=1, dilation=1, cval=0.0, method="direct").compiled
    zarr.open_array(store=str(tmp_path / "in.zarr"), mode="w", shape=x.shape, chunks=(256, 256), dtype=x.dtype)[...] = x
    assert plan_op(open_source(str(tmp_path / "in.zarr")), k, method="direct").compiled
    filter_to_zarr(str(tmp_path / "in.zarr"), k, str(tmp_path / "out.zarr"), method="direct")
    got = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...]
    np.testing.assert_array_equal(got, convcli.correlate(x, k, method="direct"))


@pytest.mark.backend_auto
def test_a_small_apply_never_imports_numba_and_matches_the_compiled_pixels(tmp_path):
    rng = np.random.default_rng(8)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(src)
    probe = (
        "import sys, runpy; sys.argv = ['convcli', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('convcli', run_name='__main__')\n"
        "finally:\n    print('numba' in sys.modules, file=sys.stderr)\n"
    )
    outputs = {}
    for name in ("auto", "numba"):
        env = {**os.environ, "CONVCLI_BACKEND": name, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
        out = tmp_path / f"{name}.png"
        proc = subprocess.run(
            [sys.executable, "-c", probe, "apply", str(src), "-k", "gaussian:sigma=1", "-o", str(out), "--json"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == str(name == "numba")
        outputs[name] = (np.asarray(Image.open(out)), json.loads(proc.stdout))
    (a, ja), (b, jb) = outputs["auto"], outputs["numba"]
    # float32 sums in another order: a rounding tie may land one level apart, nothing more
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert (a != b).mean() < 1e-3
    assert ja["output_shape"] == jb["output_shape"] and ja["steps"][0]["method"] == jb["steps"][0]["method"]


def _imports_numba(tmp_path, *args):
    probe = (
        "import sys, runpy; sys.argv = ['convcli', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('convcli', run_name='__main__')\n"
        "finally:\n    print('numba' in sys.modules, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CONVCLI_BACKEND"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip().splitlines()[-1] == "True"


@pytest.mark.backend_auto
def test_small_batches_and_their_post_processing_never_import_numba(tmp_path):
    rng = np.random.default_rng(9)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert not _imports_numba(tmp_path, "apply", folder, "-k", "box:3", "-O", tmp_path / "out", "--jobs", "2", "-q")
    # 2.25 million values with a 1x3 kernel: the filter and the cast/statistics all stay in numpy
    Image.fromarray(rng.integers(0, 256, (1500, 1500), dtype=np.uint8)).save(tmp_path / "big.png")
    assert not _imports_numba(tmp_path, "apply", tmp_path / "big.png", "-k", "1 0 -1", "-o", tmp_path / "big_out.png", "-q")


@pytest.mark.backend_auto
def test_numpy_path_is_only_for_small_inputs_and_few_taps():
    big_input = make_plan(np.zeros((4096, 4096), np.uint8), False, np.ones((3, 3)), flip=False, border="reflect",
                          padding=1, stride=16, dilation=1, cval=0.0, method="direct")  # fmt: skip
    assert big_input.compiled  # few multiply-adds, but a whole float copy of a 16M-pixel input
    many_taps = make_plan(np.zeros((48, 48, 48), np.float32), False, np.ones((45, 45, 45)), flip=False, border="reflect",
                          padding="valid", stride=1, dilation=1, cval=0.0, method="direct")  # fmt: skip
    assert many_taps.compiled  # 91k taps: numpy's per-tap overhead alone is 0.2 s


def test_inf_input_is_silent_on_the_numpy_path():
    import warnings

    x = np.ones((8, 8), np.float32)
    x[3, 3] = np.inf
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
    results = {}
    for name in ("numpy", "numba"):
        with warnings.catch_warnings(), tasks.backend(name):
            warnings.simplefilter("error")
            results[name] = convcli.correlate(x, sobel, method="direct")
    np.testing.assert_array_equal(np.isnan(results["numpy"]), np.isnan(results["numba"]))
    assert np.isnan(results["numpy"][3, 3]) and np.isinf(results["numpy"][3, 2])


def test_thread_counts_never_import_numba_and_reach_compiled_calls():
    code = (
        "import sys\nfrom convcli.engine import tasks\n"
        "with tasks.using_threads(1):\n    assert tasks.threads() == 1\n"
        "tasks.threadsafe_layer()\nprint('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    import numba

    before = numba.get_num_threads()
    x = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    with tasks.using_threads(1):
        assert tasks.threads() == 1
        one = convcli.correlate(x, np.ones((5, 5)), method="direct")
    assert numba.get_num_threads() == before  # restored after the compiled call
    np.testing.assert_allclose(one, convcli.correlate(x, np.ones((5, 5)), method="direct"), rtol=1e-6)
