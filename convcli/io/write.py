"""Writing results: pick an encoder by extension, refuse what a format cannot hold, and write
atomically (temporary file in the target folder, fsync, then a hard link that never replaces an
existing file, or os.replace with overwrite; the temporary file is removed on any failure)."""

from __future__ import annotations

import errno
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from ..errors import WriteError

FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".npy": "NPY", ".zarr": "ZARR",
}  # fmt: skip
FORMAT_NAMES = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "bmp": ".bmp", "webp": ".webp", "gif": ".gif",
                "tif": ".tif", "tiff": ".tif", "npy": ".npy", "zarr": ".zarr"}  # fmt: skip

PNG16 = "16-bit colour PNG"


def _pil_mode(arr: np.ndarray, fmt: str) -> str:
    """The Pillow mode for an (H, W[, C]) array, or a WriteError saying which format can hold it."""
    channels = arr.shape[2] if arr.ndim == 3 else 1
    hint = "write .tif or .npy instead"
    if arr.ndim not in (2, 3):
        raise WriteError(f"{fmt} holds 2-D images; this result has shape {arr.shape} ({hint})")
    if arr.dtype == np.uint8:
        modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
        if channels not in modes:
            raise WriteError(f"{fmt} cannot hold {channels} channels ({hint})")
        mode = modes[channels]
        if fmt == "JPEG" and mode in ("LA", "RGBA"):
            raise WriteError("JPEG cannot hold an alpha channel (write .png, .tif or .npy)")
        if fmt == "BMP" and mode == "LA":
            raise WriteError("BMP cannot hold gray + alpha (write .png, .tif or .npy)")
        return mode
    if arr.dtype == np.uint16 and channels == 1 and fmt == "PNG":
        return "I;16"
    if arr.dtype == np.uint16 and channels in (2, 3, 4) and fmt == "PNG":
        return PNG16  # Pillow has no 16-bit colour modes: imagecodecs writes these
    raise WriteError(f"{fmt} cannot hold {channels}-channel {arr.dtype} data ({hint}, or choose --dtype uint8)")


PNG_LEVEL = 3  # zlib's level where it matches repeats (16-bit PNGs, repeated 8-bit content)
PNG_SAMPLE_BYTES = 1 << 16  # the band of rows an 8-bit PNG is encoded both ways on (see _png)
CARRIED = ("exif", "icc_profile", "dpi")  # metadata a written file keeps (through Pillow)


def _carried(metadata: dict | None) -> bool:
    return any(k in CARRIED for k in metadata or {})


def _png(data: np.ndarray) -> bytes:
    """libpng through imagecodecs, every row Paeth-filtered (Pillow's adaptive filter choice
    encoded 2-4x slower, and encoding is most of a batch's time).

    8-bit images: zlib's RLE strategy (OpenCV's default) or its default matching at PNG_LEVEL,
    chosen on a band of rows from the middle encoded both ways. Paeth residuals of photographs
    and filtered noise are mostly short runs of small values: RLE made them 2-8% smaller and 2x
    faster to encode. But RLE finds no repeats, and repeated content (tiled textures, test
    patterns, an image pasted twice) compresses many times better matched: a 512x512 tiling of
    a 32x32 noise tile, 778 KB with RLE against 58 KB. The band (PNG_SAMPLE_BYTES, twice zlib's
    32 KiB window, so it holds every repeat zlib can reach) shows which; small images are
    simply encoded both ways. 16-bit images: matched (their residuals interleave high and low
    bytes; RLE made camera16 36% larger)."""
    import imagecodecs

    png = imagecodecs.PNG

    def matched(a: np.ndarray) -> bytes:
        return bytes(imagecodecs.png_encode(a, level=PNG_LEVEL, filter=png.FILTER.PAETH))

    def rle(a: np.ndarray) -> bytes:
        return bytes(imagecodecs.png_encode(a, level=1, strategy=png.STRATEGY.RLE, filter=png.FILTER.PAETH))

    if data.dtype.itemsize > 1:
        return matched(data)
    rows = max(1, PNG_SAMPLE_BYTES // max(1, data.nbytes // max(1, data.shape[0])))
    if rows >= data.shape[0]:
        both = rle(data), matched(data)
        return min(both, key=len)
    mid = (data.shape[0] - rows) // 2
    band = data[mid : mid + rows]
    return matched(data) if len(matched(band)) < 0.8 * len(rle(band)) else rle(data)


# what atomic_write writes: the bytes, or a function writing them to the open file
Payload = Union[bytes, Callable[[BinaryIO], object]]


def _tiff(fh: BinaryIO, arr: np.ndarray, volume: bool = False, alpha: bool = False) -> None:
    """(H, W), (Z, H, W) as pages, and channels last ((H, W, C), (Z, H, W, C)) as samples of each
    page, whatever their number: tifffile would take a 3-D array for pages of 2-D planes."""
    import tifffile

    samples = arr.ndim == (4 if volume else 3)
    n = arr.shape[-1] if samples else 1
    rgb = samples and n - alpha == 3 and arr.dtype in (np.uint8, np.uint16)
    kwargs: dict[str, Any] = {"photometric": "rgb" if rgb else "minisblack"}
    if samples:
        extra = ["unspecified"] * (n - (3 if rgb else 1) - alpha) + ["unassalpha"] * alpha
        kwargs.update(planarconfig="contig", extrasamples=extra or None)
    # (named: tifffile splits a stream's name as a path, and a file opened from a descriptor has an int)
    tifffile.imwrite(tifffile.FileHandle(fh, name="output.tif"), arr, **kwargs)


def _streamed(arr: np.ndarray, fmt: str, volume: bool = False, alpha: bool = False) -> Callable[[BinaryIO], object] | None:
    """A function writing ``arr`` to a file as it is, for the formats that can (TIFF, NPY)."""
    if fmt == "NPY":
        return lambda fh: np.save(fh, arr, allow_pickle=False)
    if fmt == "TIFF":
        return lambda fh: _tiff(fh, arr, volume, alpha)
    return None


def payload(arr: np.ndarray, fmt: str, metadata: dict | None = None, *, volume: bool = False, alpha: bool = False) -> Payload:
    """``arr`` in ``fmt``, for :func:`atomic_write`: TIFF and NPY as a function that streams the
    array into the file (an encoded copy of a 200 MB result, grown in a BytesIO and copied out,
    held 2-2.5x the result's bytes more at the peak), the other formats encoded now, so that what
    cannot be encoded fails before anything is written. ``volume``: the first axis is Z (else a
    3-D ``arr`` is (H, W, C)); ``alpha``: the last channel is alpha."""
    return _streamed(arr, fmt, volume, alpha) or encode(arr, fmt, metadata, volume=volume, alpha=alpha)


def encode(arr: np.ndarray, fmt: str, metadata: dict | None = None, *, volume: bool = False, alpha: bool = False) -> bytes:
    """The encoded bytes of ``arr`` in ``fmt`` (PNG, JPEG, TIFF, NPY, ...)."""
    buf = io.BytesIO()
    stream = _streamed(arr, fmt, volume, alpha)
    if stream is not None:
        stream(buf)
    elif fmt == "PNG" and (_pil_mode(arr, fmt) == PNG16 or not _carried(metadata)):
        return _png(np.ascontiguousarray(arr))
    else:
        from PIL import Image

        mode = _pil_mode(arr, fmt)
        img = Image.fromarray(arr, mode=mode) if mode != "I;16" else Image.fromarray(arr)
        kwargs = {k: v for k, v in (metadata or {}).items() if k in CARRIED}
        if fmt == "JPEG":
            kwargs.setdefault("quality", 95)
        img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def check_writable(shape: tuple[int, ...], dtype: np.dtype, fmt: str, volume: bool = False) -> None:
    """Refuse early what the chosen format cannot hold (``shape`` is the array to be written)."""
    if fmt in ("NPY", "TIFF"):
        return
    if fmt == "ZARR":
        raise WriteError("Zarr is written block by block from a .zarr, .tif or .npy file (not from --stack or stdin)")
    if volume:
        raise WriteError(f"{fmt} holds 2-D images; a volume needs .tif or .npy")
    if len(shape) not in (2, 3):
        raise WriteError(f"{fmt} holds 2-D images; this result has shape {shape} (write .tif or .npy instead)")
    _pil_mode(np.empty((1, 1) + tuple(shape[2:]), dtype=dtype), fmt)


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's default is 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


class OutputExists(WriteError):
    """The output appeared (another run, another user) and ``overwrite`` was not given."""


def _publish(tmp: str, path: Path) -> None:
    """Give the finished temporary file its final name without ever replacing a file: a hard link
    fails if the name exists, also when another process creates it a moment earlier."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExists(f"output {path} exists (add --overwrite to replace it, or --skip-existing)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        # No hard links here (some network and FAT file systems): claim the name with O_EXCL,
        # then move the finished file onto our own empty claim.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
        except FileExistsError:
            raise OutputExists(f"output {path} exists (add --overwrite to replace it, or --skip-existing)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write(path: Path, data: Payload, overwrite: bool = False) -> None:
    """Write ``data`` (bytes, or a function writing to the file) to ``path`` through a temporary
    file in the same folder. With ``overwrite``
    the file is renamed over ``path``; without, an existing ``path`` is never replaced (even one
    that appears while writing) and :class:`OutputExists` is raised."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish(tmp, path)
    except BaseException:  # Ctrl-C included: never leave the temporary file behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
