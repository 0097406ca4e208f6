"""Chunked inputs and outputs: OME-Zarr metadata round trip, TIFF and .npy read lazily, Zarr
groups and formats, atomic and no-clobber output, and every bad input as a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import convcli

zarr = pytest.importorskip("zarr")
from convcli.chunked import ChunkedError  # noqa: E402
from convcli.chunked.run import filter_to_zarr  # noqa: E402
from convcli.chunked.source import open_source  # noqa: E402
from convcli.errors import UsageError  # noqa: E402

AXES = [
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def make_ome(path: Path, x: np.ndarray, version: str, chunks: tuple[int, ...]) -> Path:
    """A two-level OME-Zarr (0.4 on Zarr format 2, 0.5 on format 3) with a non-trivial scale."""
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(store=str(path), mode="w", zarr_format=fmt)
    datasets = []
    for level, data in enumerate([x, x[:, :, ::2, ::2]]):
        group.create_array(str(level), shape=data.shape, chunks=chunks, dtype=data.dtype)[...] = data
        scale = [1.0, 2.0, 0.5 * 2**level, 0.5 * 2**level]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    entry = {"name": "sample", "axes": AXES, "datasets": datasets}
    omero = {"channels": [{"label": "a"}, {"label": "b"}]}
    if version == "0.4":
        group.attrs.update({"multiscales": [{**entry, "version": "0.4"}], "omero": omero})
    else:
        group.attrs.update({"ome": {"version": "0.5", "multiscales": [entry], "omero": omero}})
    return path


def volume(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint16) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 4000).astype(dtype)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip(tmp_path: Path, version: str) -> None:
    x = volume((2, 6, 16, 18))
    src = open_source(make_ome(tmp_path / "in.zarr", x, version, (1, 3, 8, 8)))
    assert src.roles == "BZYX" and src.shape == x.shape  # level 0, c is not convolved
    k = np.random.default_rng(1).random((3, 3, 3))
    res = filter_to_zarr(src, k, tmp_path / "out.zarr", mode="conv", stride=(1, 2, 2), padding="valid",
                         method="direct", kernel_name="rand3")  # fmt: skip
    out = zarr.open_group(store=str(tmp_path / "out.zarr"), mode="r")
    attrs = dict(out.attrs)
    meta = attrs["multiscales"][0] if version == "0.4" else attrs["ome"]["multiscales"][0]
    if version == "0.5":
        assert attrs["ome"]["version"] == "0.5" and out.metadata.zarr_format == 3
    else:
        assert meta["version"] == "0.4" and out.metadata.zarr_format == 2
    assert meta["axes"] == AXES
    assert [d["path"] for d in meta["datasets"]] == ["0"]
    transforms = meta["datasets"][0]["coordinateTransformations"]
    assert transforms[0] == {"type": "scale", "scale": [1.0, 2.0, 1.0, 1.0]}  # stride 2 on y, x
    # valid padding: the first output cell sits one input cell in on each axis
    assert transforms[1] == {"type": "translation", "translation": [0.0, 2.0, 0.5, 0.5]}
    arr = out["0"]
    assert arr.attrs["convcli"]["kernel"] == "rand3" and arr.attrs["convcli"]["stride"] == [1, 2, 2]
    assert arr.attrs["convcli"]["mode"] == "conv" and arr.attrs["convcli"]["padding"] == [[0, 0]] * 3
    for c in range(2):
        ref = convcli.convolve(x[c], k, stride=(1, 2, 2), padding="valid", method="direct")
        assert np.array_equal(arr[c], np.clip(np.rint(ref), 0, 65535).astype(np.uint16))
    assert res.report()["output_shape"] == list(arr.shape)
    # and the output reads back as OME-Zarr with the same axes
    assert open_source(tmp_path / "out.zarr").roles == "BZYX"


def test_group_component_and_zarr_format_2(tmp_path: Path) -> None:
    x = volume((5, 9, 10), seed=2)
    group = zarr.open_group(store=str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("raw", shape=x.shape, chunks=(2, 4, 4), dtype=x.dtype)[...] = x
    group.create_array("other", shape=(2, 2), dtype="f4")
    with pytest.raises(ChunkedError, match="--component"):
        open_source(tmp_path / "g.zarr")
    with pytest.raises(ChunkedError, match="not in this Zarr group"):
        open_source(tmp_path / "g.zarr", "nope")
    res = filter_to_zarr(tmp_path / "g.zarr", np.ones((3, 3, 3)), tmp_path / "o.zarr", component="raw", dtype="float32")
    out = zarr.open_array(store=str(tmp_path / "o.zarr"), mode="r")
    assert out.metadata.zarr_format == 2 and res.report()["chunks"] == [2, 4, 4]
    np.testing.assert_array_equal(out[...], convcli.correlate(x, np.ones((3, 3, 3)), method=res.op.method))


def test_tiff_through_a_zarr_store_and_npy_memmap(tmp_path: Path) -> None:
    x = volume((6, 20, 24), seed=3)
    tifffile.imwrite(tmp_path / "v.tif", x, tile=(16, 16))
    np.save(tmp_path / "v.npy", x)
    k = np.random.default_rng(4).random((3, 3, 3))
    ref = convcli.correlate(x, k, border="wrap", method="direct")
    for name in ("v.tif", "v.npy"):
        out = tmp_path / f"{name}.zarr"
        filter_to_zarr(tmp_path / name, k, out, border="wrap", method="direct", dtype="float32", chunks=(2, 8, 8))
        assert np.array_equal(zarr.open_array(store=str(out), mode="r")[...], ref), name


def test_tiff_rgb_image(tmp_path: Path) -> None:
    x = volume((30, 40, 3), seed=5, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", x, photometric="rgb", tile=(16, 16))
    src = open_source(tmp_path / "rgb.tif")
    assert src.roles == "YXC"
    k = np.random.default_rng(6).random((3, 3))
    filter_to_zarr(src, k, tmp_path / "o.zarr", method="direct", dtype="float32")
    assert np.array_equal(zarr.open_array(store=str(tmp_path / "o.zarr"), mode="r")[...], convcli.correlate(x, k, method="direct"))


def test_no_clobber_overwrite_and_report(tmp_path: Path) -> None:
    x = volume((4, 8, 8), seed=7)
    np.save(tmp_path / "v.npy", x)
    out = tmp_path / "out.zarr"
    zarr.create_array(store=str(out), shape=(2, 2), dtype="u1")  # an old store (--overwrite replaces only stores)
    (out / "keep.txt").write_text("old")
    with pytest.raises(ChunkedError, match="exists"):
        filter_to_zarr(tmp_path / "v.npy", np.ones((3, 3, 3)) / 27, out)
    assert (out / "keep.txt").exists()
    res = filter_to_zarr(tmp_path / "v.npy", np.ones((3, 3, 3)) / 27, out, overwrite=True, border="nearest", method="direct")
    assert not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "v.npy"]  # no temporary left
    rep = res.report()
    ref = np.clip(np.rint(convcli.correlate(x, np.ones((3, 3, 3)) / 27, border="nearest", method="direct")), 0, 65535)
    stored = zarr.open_array(store=str(out), mode="r")[...]
    assert np.array_equal(stored, ref.astype(np.uint16))
    assert rep["stats"]["min"] == ref.min() and rep["stats"]["max"] == ref.max()
    assert rep["stats"]["mean"] == pytest.approx(ref.mean(), rel=1e-12)
    assert rep["stats"]["std"] == pytest.approx(ref.std(), rel=1e-9)
    assert rep["clipped"] == 0 and rep["scheduler"] == "threads" and rep["workers"] >= 1


def test_clipped_counts_and_per_channel_stats(tmp_path: Path) -> None:
    x = volume((3, 10, 12, 2), seed=8, dtype=np.uint8)
    x[..., 1] = 250
    np.save(tmp_path / "v.npy", x)
    k = np.full((3, 3, 3), 0.1)  # sum 2.7: channel 1 overflows uint8
    res = filter_to_zarr(tmp_path / "v.npy", k, tmp_path / "o.zarr", border="nearest", method="direct", chunks=(2, 4, 5))
    ref = convcli.correlate(x, k, border="nearest", method="direct")
    r = np.rint(ref)
    assert res.clipped == int(((r < 0) | (r > 255)).sum()) > 0
    rep = res.report()["stats"]
    assert rep["per_channel"][1] == {"min": 255.0, "max": 255.0, "mean": 255.0, "std": 0.0}
    assert rep["per_channel"][0]["max"] == np.clip(r[..., 0], 0, 255).max()


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    k = np.ones((3, 3))
    zarr.open_array(store=str(tmp_path / "c.zarr"), mode="w", shape=(4, 4), dtype="c8")
    zarr.open_array(store=str(tmp_path / "e.zarr"), mode="w", shape=(0, 4), dtype="u1")
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / "zarr.json").write_text("{not json")
    cases = {
        "c.zarr": "dtype complex64",
        "e.zarr": "empty",
        "junk.zarr": "cannot open the Zarr store",
        "missing.zarr": "no such file",
    }
    for name, words in cases.items():
        with pytest.raises(ChunkedError, match=words):
            filter_to_zarr(tmp_path / name, k, tmp_path / "out.zarr")
        assert not (tmp_path / "out.zarr").exists()


def test_corrupt_chunk_leaves_no_output(tmp_path: Path) -> None:
    x = volume((8, 8), seed=9)
    arr = zarr.open_array(store=str(tmp_path / "in.zarr"), mode="w", shape=x.shape, chunks=(4, 4), dtype=x.dtype)
    arr[...] = x
    chunk = next(p for p in (tmp_path / "in.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"garbage" * 3)
    with pytest.raises(ChunkedError, match="corrupt"):
        filter_to_zarr(tmp_path / "in.zarr", np.ones((3, 3)), tmp_path / "out.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]


def test_unreachable_scheduler(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", volume((3, 4, 4)))
    with pytest.raises(ChunkedError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        filter_to_zarr(tmp_path / "v.npy", np.ones((3, 3)), tmp_path / "out.zarr", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "out.zarr").exists()
    with pytest.raises(UsageError, match="threads, processes or tcp"):
        filter_to_zarr(tmp_path / "v.npy", np.ones((3, 3)), tmp_path / "out.zarr", scheduler="mpi")
