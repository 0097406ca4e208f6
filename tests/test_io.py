"""Reading and writing, without the CLI: formats, limits, atomic writes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from convcli.errors import ReadError, WriteError
from convcli.io.read import read_bytes, read_input, read_path
from convcli.io.write import atomic_write, check_writable, encode, payload


def test_formats_and_axes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "v.tif", np.arange(2 * 3 * 5, dtype=np.uint16).reshape(2, 3, 5), photometric="minisblack")
    np.save(tmp_path / "x.npy", np.ones((4, 5), np.float32))
    png = read_path(tmp_path / "a.png")
    assert (png.axes, png.format, png.alpha) == ("HWC", "PNG", False)
    np.testing.assert_array_equal(png.array, rgb)
    vol = read_path(tmp_path / "v.tif")
    assert (vol.axes, vol.is_volume, vol.array.dtype) == ("ZHW", True, np.uint16)
    assert read_path(tmp_path / "x.npy").axes == "HW"


def test_stdin_bytes_are_sniffed():
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 3)))
    assert read_bytes(buf.getvalue()).format == "NPY"
    with pytest.raises(ReadError, match="empty"):
        read_bytes(b"")


def test_pixel_limit_is_checked_from_the_header_and_is_per_call(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ReadError, match="60,000 pixels, over the limit of --max-pixels 50,000"):
        read_path(tmp_path / "big.png", max_pixels=50_000)
    assert read_path(tmp_path / "big.png", max_pixels=60_000).array.shape == (200, 300)
    assert read_path(tmp_path / "big.png", max_pixels=0).array.shape == (200, 300)  # 0 disables


def _truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()[:200]


@pytest.mark.parametrize(("content", "match"), [(b"not an image at all", "not an image"), (_truncated_png(), "cannot decode")])
def test_garbage_is_a_read_error(tmp_path, content, match):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ReadError, match=match):
        read_path(tmp_path / "bad.png")


def test_missing_and_folder_inputs(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        read_input(str(tmp_path / "nope.png"))
    with pytest.raises(ReadError, match="--stack"):
        read_input(str(tmp_path))


def test_encode_round_trips_and_refuses_what_a_format_cannot_hold():
    a16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode(a16, "PNG")))), a16)
    vol = np.ones((2, 3, 4), np.float32)
    assert np.array_equal(tifffile.imread(io.BytesIO(encode(vol, "TIFF"))), vol)
    with pytest.raises(WriteError, match="cannot hold 5 channels"):
        check_writable((3, 4, 5), np.dtype(np.uint8), "PNG")
    with pytest.raises(WriteError, match="a volume needs .tif or .npy"):
        check_writable((2, 3, 4), np.dtype(np.uint8), "PNG", volume=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 2, 3, 4])
def test_png_of_every_mode_round_trips_with_or_without_metadata(dtype, channels):
    """PNGs are written by libpng (imagecodecs), or by Pillow when metadata is carried; both
    lossless, read back by Pillow (8-bit and 16-bit gray) and by imagecodecs (every mode)."""
    shape = (5, 7) if channels is None else (5, 7, channels)
    a = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    carried = {"dpi": (300, 300)} if dtype == np.uint8 else None  # (16-bit colour has no Pillow mode)
    for metadata in (None, carried):
        data = encode(a, "PNG", metadata)
        assert np.array_equal(imagecodecs.png_decode(data).reshape(shape), a)
        if dtype == np.uint8 or channels is None:
            with Image.open(io.BytesIO(data)) as img:
                assert np.array_equal(np.asarray(img).reshape(shape), a)
                assert (img.info.get("dpi") is not None) == (metadata is not None)


@pytest.mark.parametrize(("fmt", "read"), [("TIFF", "tif"), ("NPY", "npy")])
def test_tiff_and_npy_stream_from_the_array_into_the_file(tmp_path, fmt, read):
    # no encoded copy of the result in memory (a BytesIO grown to its size, then copied out),
    # and the same file as the encoded bytes
    import tracemalloc

    import tifffile

    a = np.random.default_rng(1).integers(0, 60000, (1000, 1500), dtype=np.uint16)
    target = tmp_path / f"out.{read}"
    tracemalloc.start()
    try:
        atomic_write(target, payload(a, fmt))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < a.nbytes // 10, peak
    assert target.read_bytes() == encode(a, fmt)
    back = tifffile.imread(target) if fmt == "TIFF" else np.load(target)
    np.testing.assert_array_equal(back, a)
    # a failure while streaming leaves nothing behind either
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "broken.tif", lambda fh: (fh.write(b"partial"), 1 / 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    # the other formats are encoded up front: what cannot be encoded fails before any write
    assert isinstance(payload(a.astype(np.uint8), "PNG"), bytes)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    atomic_write(target, b"new", overwrite=True)  # replacing is asked for explicitly
    assert target.read_bytes() == b"new"
    mask = os.umask(0o022)
    os.umask(mask)
    assert Path(target).stat().st_mode & 0o777 == 0o666 & ~mask


def test_png_encoding_keeps_repeated_patterns_small_and_photographs_fast():
    """8-bit PNGs use zlib's RLE strategy (runs of small Paeth residuals), except where an image
    compresses so well that matching repeats wins: a tiled pattern must stay near zlib's
    default size, a photograph must not grow, and both round-trip exactly."""
    rng = np.random.default_rng(3)
    tile = np.tile((rng.random((16, 16)) > 0.5).astype(np.uint8) * 255, (64, 64))
    tiled_noise = np.tile(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (16, 16, 1))  # RLE: 778 KB
    photo = np.asarray(Image.open(Path(__file__).parents[1] / "sample_images" / "chelsea.png"))
    tiny = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    for img in (tile, tiled_noise, photo, tiny):
        data = encode(img, "PNG")
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), img)
        matched = imagecodecs.png_encode(img, level=3, filter=imagecodecs.PNG.FILTER.PAETH)
        assert len(data) <= len(matched)
    assert len(encode(tile, "PNG")) < 20_000  # RLE alone: about 238 KB
    assert len(encode(tiled_noise, "PNG")) < 100_000
    # 16-bit: matched at level 3 (RLE made camera16.png 36% larger)
    gray16 = np.asarray(Image.open(Path(__file__).parents[1] / "sample_images" / "camera16.png"))
    data16 = encode(gray16, "PNG")
    np.testing.assert_array_equal(imagecodecs.png_decode(data16), gray16)
    assert len(data16) == len(imagecodecs.png_encode(gray16, level=3, filter=imagecodecs.PNG.FILTER.PAETH))

