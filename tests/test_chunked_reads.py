"""How the chunked path reads and writes Zarr: each stored chunk decoded once, a fast codec out."""

from __future__ import annotations

import collections
import math
import threading

import numpy as np
import pytest

import convcli
from convcli.chunked import source
from convcli.chunked.run import filter_to_zarr

zarr = pytest.importorskip("zarr")


def _volume(path, shape=(24, 40, 36), chunks=(8, 16, 12), zarr_format=3):
    vol = np.random.default_rng(3).integers(0, 4000, shape).astype(np.uint16)
    arr = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=vol.dtype, zarr_format=zarr_format)
    arr[...] = vol
    return vol


@pytest.fixture
def reads(monkeypatch):
    """How often each stored chunk (or group of chunks) is read, by its box."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    real = source.read_chunk

    def counted(spec, key):
        with lock:
            counts[tuple((k.start, k.stop) for k in key)] += 1
        return real(spec, key)

    monkeypatch.setattr(source, "read_chunk", counted)
    return counts


@pytest.mark.parametrize("kw", [{}, {"stride": 2, "border": "wrap"}, {"padding": "valid", "dilation": 2}])
def test_every_stored_chunk_is_decoded_once(tmp_path, reads, kw):
    vol = _volume(tmp_path / "in.zarr")
    k = np.random.default_rng(4).standard_normal((3, 3, 3))
    filter_to_zarr(str(tmp_path / "in.zarr"), k, str(tmp_path / "out.zarr"), method="direct", dtype="float32", **kw)
    n_chunks = 3 * 3 * 3  # (24, 40, 36) in (8, 16, 12) chunks
    assert len(reads) == n_chunks and set(reads.values()) == {1}
    got = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...]
    np.testing.assert_array_equal(got, convcli.correlate(vol, k, method="direct", **kw))


def test_small_chunks_are_grouped_into_multiples_holding_the_target():
    assert source.grouped((1, 1, 1), (20, 40, 50), 1000) == (1, 32, 50)  # the last axis first, doubling
    assert source.grouped((8, 16, 12), (24, 40, 36), 1 << 18) == (24, 40, 36)  # capped at the whole array
    assert source.grouped((64, 64, 64), (256, 256, 256), 1 << 18) == (64, 64, 64)  # large chunks as they are
    assert source.grouped((2, 3, 5), (100, 100, 100), 200) == (2, 3, 40)  # a multiple of the chunk
    assert source.grouped((50, 60), (20, 30), 1) == (20, 30)  # a chunk larger than the array: the array


def test_a_group_of_chunks_read_from_their_files_equals_zarrs_read(tmp_path):
    from convcli.chunked.stored import chunk_files, read_group

    arr = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=(7, 10, 11), chunks=(2, 3, 4), dtype="u2", fill_value=9)
    data = np.random.default_rng(5).integers(0, 60000, (7, 10, 11)).astype(np.uint16)
    arr[...] = data
    arr[2:4, 3:6, 4:8] = 9  # an all-fill chunk, which Zarr does not store
    files = chunk_files(arr)
    assert files is not None
    for box in [(slice(0, 7), slice(0, 10), slice(0, 11)), (slice(2, 6), slice(3, 9), slice(4, 11)), (slice(6, 7), slice(9, 10), slice(8, 11))]:
        np.testing.assert_array_equal(read_group(files, box), arr[box])
    assert read_group(files, (slice(1, 3), slice(0, 3), slice(0, 4))) is None  # not whole chunks: Zarr reads it
    assert read_group(files, (slice(0, 2), slice(0, 4), slice(0, 4))) is None


@pytest.mark.chunk_groups
@pytest.mark.parametrize("method", ["direct", "separable"])
def test_a_store_of_tiny_chunks_is_read_in_groups_and_filtered_in_few_blocks(tmp_path, monkeypatch, reads, method):
    """1x1x1 chunks (a store written cell by cell): a read task per group of chunks, each read once,
    a few blocks of whole output chunks, and the in-memory engine's values (a task per chunk,
    and each block reading its halo's chunks again, took one such volume over 11 minutes)."""
    from convcli.chunked.plan import plan_grid, plan_op

    vol = _volume(tmp_path / "in.zarr", shape=(6, 10, 12), chunks=(1, 1, 1))
    monkeypatch.setattr(source, "GROUP_VALUES", 240)  # (1, 1, 1) chunks grouped as (2, 10, 12): three groups
    k = np.outer(np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]), [1.0, 2.0, 1.0]).reshape(3, 3, 3) / 64
    res = filter_to_zarr(str(tmp_path / "in.zarr"), k, str(tmp_path / "out.zarr"), method=method, dtype="float32")
    assert set(reads) == {((0, 2), (0, 10), (0, 12)), ((2, 4), (0, 10), (0, 12)), ((4, 6), (0, 10), (0, 12))}
    assert set(reads.values()) == {1}
    grid = plan_grid(res.source, plan_op(res.source, k, method=method))
    assert grid.chunks == (1, 1, 1) and grid.block == res.grid.block
    # blocks of at least 720 // 8 values (a small array keeps about eight for the workers), in whole rows
    assert math.prod(grid.block) >= 90 and grid.block[2] == 12 and 1 < grid.count <= 12
    out = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")
    assert out.chunks == (1, 1, 1)
    np.testing.assert_array_equal(out[...], convcli.correlate(vol, k, method=method).astype(np.float32))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_output_is_blosc_lz4_compressed(tmp_path, zarr_format):
    _volume(tmp_path / "in.zarr", zarr_format=zarr_format)
    filter_to_zarr(str(tmp_path / "in.zarr"), np.ones((3, 3, 3)) / 27, str(tmp_path / "out.zarr"))
    out = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")
    (codec,) = out.compressors
    config = codec.get_config() if hasattr(codec, "get_config") else codec.to_dict()
    assert "blosc" in str(config).lower() and "lz4" in str(config).lower()
    assert out.metadata.zarr_format == zarr_format


def test_all_zero_output_chunks_are_still_written(tmp_path):
    """Every output chunk is written (Zarr 3 would compare each with the fill value first and
    skip the equal ones: a third of a run's write time)."""
    arr = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=(16, 16, 16), chunks=(8, 8, 8), dtype="u2")
    arr[...] = 0
    filter_to_zarr(str(tmp_path / "in.zarr"), np.ones((3, 3, 3)), str(tmp_path / "out.zarr"))
    out = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")
    assert out.nchunks_initialized == 8
    assert (out[...] == 0).all()


def test_a_wrapped_edge_block_reads_only_the_chunks_it_needs(tmp_path):
    """A wrapped halo selects the last rows of the volume for the first block: the block depends on
    those chunks only, and assembles a compact array (not the whole axis in between)."""
    from convcli.chunked.source import ChunkReads, open_source

    _volume(tmp_path / "in.zarr", shape=(64, 32, 32), chunks=(8, 16, 16))
    reads = ChunkReads(open_source(str(tmp_path / "in.zarr")))
    rows = np.array([63, *range(9)])  # rows -1 .. 8 with wrap
    gather, needed = reads.gather((rows, slice(0, 17), 5))
    assert len(needed) == 3 * 2 * 1  # z chunks 7, 0, 1; y chunks 0, 1; x chunk 0
    assert gather.shape == (10, 17, 1)
    import dask

    got = gather.assemble(dask.compute(*needed))
    vol = zarr.open_array(store=str(tmp_path / "in.zarr"), mode="r")[...]
    np.testing.assert_array_equal(got, vol[rows][:, 0:17, 5])


@pytest.mark.parametrize("mode", ["corr", "conv"])
def test_origin_and_precision_on_the_chunked_path_equal_the_engine(tmp_path, mode):
    vol = _volume(tmp_path / "in.zarr")
    k = np.random.default_rng(6).standard_normal((2, 4, 3))  # even axes: the origin matters
    for origin, precision in ((0, "auto"), ((-1, 1, 0), "float64"), (None, "float64")):
        out = tmp_path / f"out_{origin}_{precision}.zarr"
        filter_to_zarr(str(tmp_path / "in.zarr"), k, str(out), mode=mode, method="direct", dtype="float64",
                       origin=origin, precision=precision)  # fmt: skip
        got = zarr.open_array(store=str(out), mode="r")[...]
        run = convcli.convolve if mode == "conv" else convcli.correlate
        ref = run(vol, k, method="direct", origin=origin, precision=precision)
        np.testing.assert_array_equal(got, ref.astype(np.float64))


def test_origin_through_the_cli_on_zarr_and_refused_for_banks(tmp_path):
    import scipy.ndimage as ndi
    from typer.testing import CliRunner

    from convcli.cli.app import app

    vol = _volume(tmp_path / "in.zarr")
    res = CliRunner().invoke(app, ["apply", str(tmp_path / "in.zarr"), "-k", "1 2; 3 4", "--mode", "corr", "--origin", "0",
                                   "--dtype", "float32", "-o", str(tmp_path / "o.zarr"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    got = zarr.open_array(store=str(tmp_path / "o.zarr"), mode="r")[...]
    ref = ndi.correlate(vol.astype(np.float64), np.array([[[1, 2], [3, 4]]], float), mode="reflect")
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    np.save(tmp_path / "bank.npy", np.ones((2, 1, 3, 3)))
    res = CliRunner().invoke(app, ["apply", str(tmp_path / "in.zarr"), "-k", str(tmp_path / "bank.npy"), "--precision", "float64",
                                   "-o", str(tmp_path / "b.zarr")])  # fmt: skip
    assert res.exit_code != 0 and "filter bank" in res.output and not (tmp_path / "b.zarr").exists()


@pytest.mark.parametrize("method", ["direct", "auto"])
def test_several_kernels_on_the_chunked_path_equal_the_in_memory_chain(tmp_path, method):
    """-k A -k B on Zarr: float steps between, as the in-memory chain; every step's report; no
    intermediate store left behind."""
    import json

    from typer.testing import CliRunner

    from convcli.cli.app import app

    vol = _volume(tmp_path / "in.zarr")
    np.save(tmp_path / "in.npy", vol)
    common = ["-k", "gaussian3d:sigma=1", "-k", "sobel3d-x", "--method", method, "--dtype", "float32", "--json", "-s", "1x2x1"]
    chunked = CliRunner().invoke(app, ["apply", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "out.zarr"), *common])
    assert chunked.exit_code == 0, chunked.output
    memory = CliRunner().invoke(app, ["apply", str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy"), *common])
    assert memory.exit_code == 0, memory.output
    got = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...]
    ref = np.load(tmp_path / "out.npy")
    if method == "direct":
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    a, b = json.loads(chunked.stdout.splitlines()[0]), json.loads(memory.stdout.splitlines()[0])
    assert [s["kernel"] for s in a["steps"]] == ["gaussian3d:sigma=1", "sobel3d-x"]
    assert [s["output_spatial"] for s in a["steps"]] == [s["output_spatial"] for s in b["steps"]]
    assert a["output_shape"] == b["output_shape"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "in.zarr", "out.npy", "out.zarr"]


def test_a_failing_later_step_leaves_no_store_and_no_intermediate(tmp_path):
    from typer.testing import CliRunner

    from convcli.cli.app import app

    _volume(tmp_path / "in.zarr")
    res = CliRunner().invoke(app, ["apply", str(tmp_path / "in.zarr"), "-k", "box3d:3", "-k", "box3d:31", "-p", "valid",
                                   "-o", str(tmp_path / "out.zarr")])  # fmt: skip
    assert res.exit_code != 0 and "below 1" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]


def _stored_layouts():
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    numcodecs = pytest.importorskip("numcodecs")
    return {
        "v3 zstd": dict(zarr_format=3, compressors=[ZstdCodec(level=1)]),
        "v3 blosc": dict(zarr_format=3, compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]),
        "v3 gzip": dict(zarr_format=3, compressors=[GzipCodec()]),
        "v3 raw": dict(zarr_format=3, compressors=None),
        "v2 blosc": dict(zarr_format=2, compressors=numcodecs.Blosc()),
        "v2 zstd": dict(zarr_format=2, compressors=numcodecs.Zstd()),
        "v2 zlib": dict(zarr_format=2, compressors=numcodecs.Zlib()),
        "v2 raw": dict(zarr_format=2, compressors=None),
    }


@pytest.mark.parametrize("layout", ["v3 zstd", "v3 blosc", "v3 gzip", "v3 raw", "v2 blosc", "v2 zstd", "v2 zlib", "v2 raw"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int8])
def test_plain_codec_chunks_are_read_from_their_files_exactly_as_zarr_reads_them(tmp_path, layout, dtype):
    """Every chunk (edge chunks clipped; a chunk never written is the fill value) read straight
    from its file equals Zarr's own read; a box that is not one whole chunk goes to Zarr."""
    from convcli.chunked.stored import chunk_files, read_whole

    rng = np.random.default_rng(5)
    data = (rng.standard_normal((37, 50)) * 40).astype(dtype)
    arr = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=data.shape, chunks=(16, 16), dtype=dtype, fill_value=7,
                            **_stored_layouts()[layout])  # fmt: skip
    arr[:, :40] = data[:, :40]  # the last column of chunks is never written: fill value
    files = chunk_files(zarr.open_array(store=str(tmp_path / "a.zarr"), mode="r"))
    assert files is not None
    expected = zarr.open_array(store=str(tmp_path / "a.zarr"), mode="r")[...]
    for y in range(0, 37, 16):
        for x in range(0, 50, 16):
            box = (slice(y, min(y + 16, 37)), slice(x, min(x + 16, 50)))
            got = read_whole(files, box)
            assert got is not None and got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected[box])
    assert read_whole(files, (slice(0, 8), slice(0, 16))) is None  # half a chunk: Zarr reads it


def test_other_layouts_and_broken_chunks_go_through_zarr_or_fail_clearly(tmp_path):
    from zarr.codecs import Crc32cCodec, ZstdCodec

    from convcli.chunked import ChunkedError
    from convcli.chunked.stored import chunk_files

    data = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    sharded = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=(32, 32), chunks=(8, 8), shards=(16, 16), dtype=np.uint16)
    big = zarr.create_array(store=str(tmp_path / "b.zarr"), shape=(32, 32), chunks=(8, 8), dtype=">u2", zarr_format=2)
    crc = zarr.create_array(store=str(tmp_path / "c.zarr"), shape=(32, 32), chunks=(8, 8), dtype=np.uint16,
                            compressors=[ZstdCodec(), Crc32cCodec()])  # fmt: skip
    for arr in (sharded, big, crc):
        arr[...] = data
        assert chunk_files(arr) is None
    # the fast path and Zarr agree through a whole run on the sharded array (Zarr reads it)
    spec = source.open_source(str(tmp_path / "s.zarr")).spec
    np.testing.assert_array_equal(source.read_chunk(spec, (slice(8, 16), slice(0, 8))), data[8:16, 0:8])
    # a corrupt chunk file: one clear error naming the chunk
    plain = zarr.create_array(store=str(tmp_path / "p.zarr"), shape=(32, 32), chunks=(8, 8), dtype=np.uint16)
    plain[...] = data
    (tmp_path / "p.zarr" / "c" / "1" / "2").write_bytes(b"not zstd")
    spec = source.open_source(str(tmp_path / "p.zarr")).spec
    with pytest.raises(ChunkedError, match=r"cannot read \[8:16, 16:24\]"):
        source.read_chunk(spec, (slice(8, 16), slice(16, 24)))


@pytest.mark.parametrize("layout", ["v3 zstd", "v3 blosc", "v3 gzip", "v3 raw", "v2 blosc", "v2 zstd", "v2 zlib", "v2 raw"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_chunks_written_to_their_files_read_back_through_zarr(tmp_path, layout, dtype):
    """Every chunk written straight to its file (edge chunks padded with the fill value, as Zarr
    stores them) reads back through Zarr exactly; a box that is not one whole chunk is refused."""
    from convcli.chunked.stored import chunk_files, write_whole

    data = (np.random.default_rng(6).standard_normal((37, 50)) * 40).astype(dtype)
    arr = zarr.create_array(store=str(tmp_path / "w.zarr"), shape=data.shape, chunks=(16, 16), dtype=dtype, fill_value=3,
                            **_stored_layouts()[layout])  # fmt: skip
    files = chunk_files(arr)
    assert files is not None
    for y in range(0, 37, 16):
        for x in range(0, 50, 16):
            box = (slice(y, min(y + 16, 37)), slice(x, min(x + 16, 50)))
            assert write_whole(files, box, data[box])
    assert not write_whole(files, (slice(0, 8), slice(0, 16)), data[:8, :16])
    np.testing.assert_array_equal(zarr.open_array(store=str(tmp_path / "w.zarr"), mode="r")[...], data)


def test_convcli_outputs_are_written_as_chunk_files(tmp_path, monkeypatch):
    """Both output formats convcli creates (Zarr 3, and Zarr 2 from a Zarr 2 input) take the
    direct write for every chunk, and the result is the in-memory engine's."""
    from convcli.chunked import block

    written = collections.Counter()
    real = block.write_whole

    def counted(files, box, piece):
        done = real(files, box, piece)
        written[done] += 1
        return done

    monkeypatch.setattr(block, "write_whole", counted)
    k = np.random.default_rng(7).standard_normal((3, 3, 3))
    for fmt in (3, 2):
        vol = _volume(tmp_path / f"in{fmt}.zarr", zarr_format=fmt)
        out = tmp_path / f"out{fmt}.zarr"
        filter_to_zarr(str(tmp_path / f"in{fmt}.zarr"), k, str(out), method="direct", dtype="float32")
        assert zarr.open_array(store=str(out), mode="r").metadata.zarr_format == fmt
        np.testing.assert_array_equal(zarr.open_array(store=str(out), mode="r")[...], convcli.correlate(vol, k, method="direct"))
    assert written == {True: 2 * 27}  # (24, 40, 36) in (8, 16, 12) chunks, both runs


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_a_null_fill_value_reads_as_zeros_as_zarr_reads_it(tmp_path, dtype):
    """Zarr 2 allows ``fill_value: null``; a chunk never written then reads as zeros (found by
    review: the direct read gave NaN for floats and failed for integers)."""
    data = (np.random.default_rng(8).random((10, 12)) * 100).astype(dtype)
    arr = zarr.create_array(store=str(tmp_path / "n.zarr"), shape=data.shape, chunks=(5, 6), dtype=dtype, fill_value=None, zarr_format=2)
    arr[:5, :] = data[:5, :]
    spec = source.open_source(str(tmp_path / "n.zarr")).spec
    np.testing.assert_array_equal(source.read_chunk(spec, (slice(5, 10), slice(6, 12))), np.zeros((5, 6), dtype))
    np.testing.assert_array_equal(source.read_chunk(spec, (slice(0, 5), slice(6, 12))), data[:5, 6:])


@pytest.mark.parametrize("layout", ["v2 zstd", "v3 gzip", "v3 raw"])
def test_a_chunk_file_that_decodes_short_is_an_error(tmp_path, layout):
    """A payload that decodes to fewer bytes than a chunk must not leave the rest of the chunk
    uninitialised: one clear error, as Zarr gives (found by review)."""
    from convcli.chunked import ChunkedError

    opts = _stored_layouts()[layout]
    arr = zarr.create_array(store=str(tmp_path / "t.zarr"), shape=(8, 12), chunks=(4, 6), dtype=np.uint16, **opts)
    arr[...] = np.arange(96, dtype=np.uint16).reshape(8, 12)
    from convcli.chunked.stored import chunk_files

    short = np.arange(5, dtype=np.uint16)
    files = chunk_files(arr)
    assert files is not None
    chunk_codec = files.codec
    payload = short.tobytes() if chunk_codec is None else chunk_codec.encode(short)
    name = arr.metadata.encode_chunk_key((1, 1))
    (tmp_path / "t.zarr" / name).write_bytes(payload)
    spec = source.open_source(str(tmp_path / "t.zarr")).spec
    with pytest.raises(ChunkedError, match=r"cannot read \[4:8, 6:12\]"):
        source.read_chunk(spec, (slice(4, 8), slice(6, 12)))
