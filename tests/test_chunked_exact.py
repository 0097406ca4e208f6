"""Chunked vs in-memory: bit for bit with ``direct``, rtol 1e-5 with ``fft``/``separable``.

Every border (constant with a non-zero cval), conv and corr, odd and even kernels, dilation,
stride, 2-D and 3-D, channels, irregular last chunks, chunks smaller than the halo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convcli

zarr = pytest.importorskip("zarr")
from convcli.chunked.run import filter_to_zarr  # noqa: E402
from convcli.chunked.source import open_source  # noqa: E402

BORDERS = ("reflect", "mirror", "nearest", "constant", "wrap")


def make_zarr(path: Path, x: np.ndarray, chunks: tuple[int, ...]) -> Path:
    arr = zarr.open_array(store=str(path), mode="w", shape=x.shape, chunks=chunks, dtype=x.dtype)
    arr[...] = x
    return path


def in_memory(x: np.ndarray, k: np.ndarray, mode: str, **kw: object) -> np.ndarray:
    run = convcli.convolve if mode == "conv" else convcli.correlate
    return run(x, k, **kw)  # type: ignore[arg-type]


def chunked(tmp_path: Path, x: np.ndarray, k: np.ndarray, chunks: tuple[int, ...], mode: str,
            roles: str | None = None, out_chunks: tuple[int, ...] | None = None, **kw: object) -> np.ndarray:  # fmt: skip
    src = open_source(make_zarr(tmp_path / "in.zarr", x, chunks), roles=roles)
    out = tmp_path / "out.zarr"
    filter_to_zarr(src, k, out, mode=mode, dtype="float64" if x.dtype == np.float64 else "float32",
                   chunks=out_chunks, overwrite=True, **kw)  # type: ignore[arg-type]  # fmt: skip
    return zarr.open_array(store=str(out), mode="r")[...]


def volume(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 4000).astype(dtype)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("mode", ["conv", "corr"])
def test_3d_every_border_even_kernel_dilation(tmp_path: Path, border: str, mode: str) -> None:
    x = volume((11, 19, 23))
    k = np.random.default_rng(1).random((2, 4, 3))  # even along two axes: before != after
    kw = dict(border=border, cval=7.25, dilation=(1, 2, 1), method="direct")
    ref = in_memory(x, k, mode, **kw)
    got = chunked(tmp_path, x, k, (4, 5, 6), mode, **kw)  # irregular last chunks on every axis
    assert got.dtype == ref.dtype and np.array_equal(got, ref)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("stride", [2, (3, 1, 2)])
def test_3d_stride(tmp_path: Path, border: str, stride: object) -> None:
    x = volume((13, 17, 21), seed=2)
    k = np.random.default_rng(3).random((3, 3, 3))
    kw = dict(border=border, cval=-3.0, stride=stride, padding="same", method="direct")
    ref = in_memory(x, k, "corr", **kw)
    got = chunked(tmp_path, x, k, (5, 4, 7), "corr", **kw)
    assert np.array_equal(got, ref)


def test_chunks_smaller_than_the_halo(tmp_path: Path) -> None:
    x = volume((9, 12, 14), seed=4)
    k = np.random.default_rng(5).random((5, 5, 4))  # halo up to 8 cells with dilation 2
    kw = dict(border="reflect", dilation=2, padding="full", method="direct")
    ref = in_memory(x, k, "conv", **kw)
    got = chunked(tmp_path, x, k, (2, 3, 2), "conv", out_chunks=(2, 2, 3), **kw)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("border", BORDERS)
def test_padding_wider_than_the_array(tmp_path: Path, border: str) -> None:
    x = volume((4, 5, 6), seed=6)
    k = np.random.default_rng(7).random((3, 3, 3))
    kw = dict(border=border, cval=1.5, padding=((9, 2), (7, 7), (0, 11)), method="direct")
    ref = in_memory(x, k, "corr", **kw)
    got = chunked(tmp_path, x, k, (2, 2, 2), "corr", out_chunks=(3, 4, 5), **kw)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("border", BORDERS)
def test_2d_with_channels(tmp_path: Path, border: str) -> None:
    x = volume((37, 41, 3), seed=8, dtype=np.uint8)
    k = np.random.default_rng(9).random((4, 5))
    kw = dict(border=border, cval=9.0, stride=(2, 1), method="direct")
    ref = in_memory(x, k, "conv", **kw)
    got = chunked(tmp_path, x, k, (10, 16, 3), "conv", roles="YXC", **kw)
    assert np.array_equal(got, ref)


def test_volume_with_channels_and_a_2d_kernel(tmp_path: Path) -> None:
    x = volume((5, 14, 15, 2), seed=10)
    k = np.random.default_rng(11).random((3, 3))
    ref = in_memory(x, np.asarray(k)[None], "corr", border="mirror", method="direct")  # lifted as the CLI does
    got = chunked(tmp_path, x, k, (2, 4, 8, 2), "corr", border="mirror", method="direct")
    assert np.array_equal(got, ref)


def test_wide_rows_stay_exact(tmp_path: Path) -> None:
    # rows of 1024+ cells take another tap order in the engine than narrow ones: blocks keep rows whole
    x = volume((3, 6, 1100), seed=12)
    k = np.random.default_rng(13).random((3, 3, 3))
    ref = in_memory(x, k, "corr", border="wrap", method="direct")
    got = chunked(tmp_path, x, k, (2, 4, 256), "corr", border="wrap", method="direct")
    assert np.array_equal(got, ref)


def test_float64_input_accumulates_in_float64(tmp_path: Path) -> None:
    x = np.random.default_rng(14).standard_normal((6, 7, 8))
    k = np.random.default_rng(15).random((3, 2, 3))
    ref = in_memory(x, k, "conv", border="nearest", method="direct")
    got = chunked(tmp_path, x, k, (4, 3, 5), "conv", border="nearest", method="direct")
    assert got.dtype == np.float64 and np.array_equal(got, ref)


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    # FFT rounding is relative to the data's scale, not to each value: atol from the largest value
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("method", ["fft", "separable"])
def test_fft_and_separable_close(tmp_path: Path, border: str, method: str) -> None:
    x = volume((12, 30, 33), seed=16)
    g = np.exp(-0.5 * (np.arange(-2, 3) / 1.2) ** 2)
    k = g[:, None, None] * g[None, :, None] * g[None, None, :]  # separable
    kw = dict(border=border, cval=100.0, method=method)
    ref = in_memory(x, k, "conv", **kw)
    got = chunked(tmp_path, x, k, (5, 8, 9), "conv", **kw)
    _close(got, ref)


def test_auto_method_is_chosen_once_for_the_whole_array(tmp_path: Path) -> None:
    x = volume((10, 40, 40), seed=17)
    k = np.ones((5, 5, 5))
    src = open_source(make_zarr(tmp_path / "in.zarr", x, (3, 7, 7)))
    res = filter_to_zarr(src, k, tmp_path / "out.zarr", dtype="float32")
    expected = convcli.correlate(x, k, method=res.op.method)
    _close(zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...], expected)
    assert res.op.method != "auto"


def test_filter_bank_layer(tmp_path: Path) -> None:
    x = volume((4, 9, 10, 2), seed=18)
    w = np.random.default_rng(19).standard_normal((3, 2, 3, 3, 2))
    b = np.array([1.0, -2.0, 0.5])
    ref = convcli.conv_layer(x, w, b, mode="conv", border="constant", cval=2.0, stride=(1, 2, 1))
    src = open_source(make_zarr(tmp_path / "in.zarr", x, (3, 4, 4, 2)))
    filter_to_zarr(src, w, tmp_path / "out.zarr", bias=b, bank=True, mode="conv", border="constant", cval=2.0,
                   stride=(1, 2, 1), dtype="float32")  # fmt: skip
    assert np.array_equal(zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...], ref)


@settings(deadline=None, max_examples=25)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 12), st.integers(1, 12)),
    kshape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
    chunks=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
    border=st.sampled_from(BORDERS),
    mode=st.sampled_from(["conv", "corr"]),
    padding=st.sampled_from(["same", "full", 1]),
)
def test_random_geometry_is_exact(tmp_path_factory: pytest.TempPathFactory, shape: tuple[int, ...],
                                  kshape: tuple[int, ...], chunks: tuple[int, ...], stride: tuple[int, ...],
                                  dilation: tuple[int, ...], border: str, mode: str, padding: object) -> None:  # fmt: skip
    x = volume(shape, seed=sum(shape))
    k = np.random.default_rng(sum(kshape)).random(kshape)
    kw = dict(border=border, cval=2.5, stride=stride, dilation=dilation, padding=padding, method="direct")
    try:
        ref = in_memory(x, k, mode, **kw)
    except ValueError:  # output size below 1: the chunked path must refuse the same way
        with pytest.raises(ValueError):
            chunked(tmp_path_factory.mktemp("c"), x, k, chunks, mode, **kw)
        return
    got = chunked(tmp_path_factory.mktemp("c"), x, k, chunks, mode, **kw)
    assert np.array_equal(got, ref)


@pytest.mark.chunk_groups
@pytest.mark.parametrize("group", [20, 50, 300])  # (2, 3, 2) chunks grouped as (2, 3, 4), (2, 3, 16), (2, 12, 23)
@pytest.mark.parametrize(
    "kw",
    [
        dict(border="wrap", stride=(3, 1, 2), method="direct"),
        dict(border="constant", cval=7.25, dilation=(1, 2, 1), padding="full", method="direct"),
        dict(border="mirror", stride=2, method="separable"),
    ],
)
def test_groups_of_small_chunks_cross_block_and_group_edges_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: int, kw: dict) -> None:
    """Small chunks read and computed in groups (source.GROUP_VALUES, small here so a small volume
    has many groups and blocks): the in-memory engine's values."""
    from convcli.chunked import source

    monkeypatch.setattr(source, "GROUP_VALUES", group)
    x = volume((11, 19, 23), seed=12)
    k = np.outer(np.outer([1.0, 2.0, 1.0], [1.0, 3.0, 1.0]), [2.0, 1.0, 1.0]).reshape(3, 3, 3) / 50 if kw["method"] == "separable" else np.random.default_rng(13).random((3, 4, 3))
    ref = in_memory(x, k, "corr", **kw)
    got = chunked(tmp_path, x, k, (2, 3, 2), "corr", **kw)
    if kw["method"] == "separable":
        np.testing.assert_allclose(got, ref.astype(np.float32), rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    else:
        assert np.array_equal(got, ref)
