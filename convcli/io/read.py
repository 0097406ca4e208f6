"""Reading images and volumes: Pillow for 2-D formats, tifffile for TIFF stacks, numpy for .npy,
folders/globs of slices in natural order, and stdin sniffed by its first bytes."""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import math
import re
import struct
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import ReadError
from .limits import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_MAX_PIXELS", "ImageData", "ReadError", "list_images", "read_bytes", "read_input", "read_path", "read_stack"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".npy")
logging.getLogger("tifffile").addHandler(logging.NullHandler())  # its notes on odd files are not our stderr lines


@dataclass
class ImageData:
    """What convcli sees in an input: the array and how to write it back."""

    array: np.ndarray  # (H, W[, C]) or (Z, H, W[, C])
    axes: str  # "HW", "HWC", "ZHW", "ZHWC"
    source: str
    format: str  # "PNG", "JPEG", "TIFF", "NPY", ...
    mode: str = ""  # Pillow mode after conversion, or "" for arrays
    alpha: bool = False  # last channel is alpha
    pages: int = 1
    info: dict = field(default_factory=dict)  # metadata for --keep-metadata (exif, icc_profile, dpi)

    @property
    def is_volume(self) -> bool:
        return self.axes.startswith("Z")


def natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _axes_for(shape: tuple[int, ...], volume: bool) -> str:
    if volume:
        return "ZHW" if len(shape) == 3 else "ZHWC"
    return "HW" if len(shape) == 2 else "HWC"


def _check_not_empty(shape: tuple[int, ...]) -> None:
    """Refuse an array with a zero-length axis (the pixel limit is checked from the header)."""
    if 0 in shape:
        raise ReadError(f"the image is empty (shape {shape})")


def check_pixels(pixels: int, what: str, max_pixels: int, nbytes: int | None = None) -> None:
    """Refuse, from the header and before decoding, more pixels (× planes × pages) than the limit."""
    if max_pixels and pixels > max_pixels:
        size = f", {nbytes / 2**20:,.0f} MiB decoded" if nbytes else ""
        raise ReadError(
            f"{what} is {pixels:,} pixels{size}, over the limit of --max-pixels {max_pixels:,} "
            f"(a possible decompression bomb; raise --max-pixels if you trust this file)"
        )


def _native(arr: np.ndarray) -> np.ndarray:
    """Big-endian data in native byte order, float16 as float32 (the engine computes in both)."""
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


ORIENTATION = 0x0112  # the EXIF tag
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ANIMATED = ("GIF", "PNG", "WEBP")  # formats whose extra frames are an animation, not a second picture


def _png16_colour(head: bytes) -> bool:
    """A 16-bit PNG with colour or alpha (IHDR bit depth 16, colour type 2, 4 or 6): Pillow would
    read it as 8-bit."""
    return head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) >= 26 and head[24] == 16 and head[25] in (2, 4, 6)


def _from_pillow(data: IO[bytes] | Path, source: str, max_pixels: int) -> ImageData:
    from PIL import Image, ImageOps

    # Each call checks its own limit (--max-pixels) from the header, before decoding. Pillow's
    # process-wide limit would have to change per call, which is not thread-safe: always off.
    Image.MAX_IMAGE_PIXELS = None
    try:
        img: Image.Image = Image.open(data)  # reads the header only
        fmt = img.format or "?"
        check_pixels(img.width * img.height, f"the {img.width}x{img.height} image", max_pixels)
        frames = getattr(img, "n_frames", 1) if fmt in ANIMATED else 1
        if frames > 1:
            raise ReadError(
                f"animated {fmt} with {frames} frames: convcli filters single images and would drop "
                f"all frames but the first (extract the frames, e.g. to a folder of PNGs, and use --stack)"
            )
        info = {k: img.info[k] for k in ("exif", "icc_profile", "dpi") if k in img.info}
        if fmt == "PNG" and isinstance(data, io.BytesIO) and _png16_colour(data.getvalue()[:32]):
            return _from_png16(data.getvalue(), source, fmt, info)
        oriented = "exif" in info and img.getexif().get(ORIENTATION) is not None
        img = ImageOps.exif_transpose(img)
        img.load()
        if oriented:  # the pixels are upright now: a copied EXIF must not rotate them again
            exif = img.getexif()
            exif[ORIENTATION] = 1
            info["exif"] = exif.tobytes()
    except ReadError:
        raise
    except Image.UnidentifiedImageError:
        raise ReadError("not an image convcli can read (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise ReadError(f"cannot decode the image ({exc})") from None
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.array(img, dtype=np.uint16)
        return ImageData(arr, "HW", source, fmt, "I;16", info=info)
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    arr = np.array(img)  # a writable copy
    if mode == "I":
        arr = arr.astype(np.int32)
    return ImageData(_native(arr), _axes_for(arr.shape, False), source, fmt, img.mode, alpha=img.mode in ("LA", "RGBA"), info=info)


def _from_png16(data: bytes, source: str, fmt: str, info: dict) -> ImageData:
    """16-bit RGB, RGBA and gray + alpha PNGs, losslessly (Pillow has no 16-bit colour modes)."""
    import imagecodecs

    try:
        arr = np.array(imagecodecs.png_decode(data), dtype=np.uint16)
    except (imagecodecs.PngError, ValueError) as exc:
        raise ReadError(f"cannot decode the 16-bit PNG ({exc})") from None
    mode = {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[arr.shape[-1]]
    info = {k: v for k, v in info.items() if k != "exif"}  # pixels are not re-oriented here: no stale Orientation
    return ImageData(arr, "HWC", source, fmt, mode, alpha=arr.shape[-1] in (2, 4), info=info)


def has_alpha(series: Any) -> bool:
    """Whether a TIFF series' last sample is alpha as the file tags it (ExtraSamples associated or
    unassociated alpha), not by the channel count: a CMYK or two-band TIFF has no alpha."""
    extra = tuple(int(e) for e in (getattr(series.keyframe, "extrasamples", None) or ()))
    return bool(extra) and extra[-1] in (1, 2)


def further_images(tif: Any) -> list[Any]:
    """The TIFF's series after the first that are images of their own: not reduced-resolution
    levels, transparency masks (NewSubfileType bits 1 and 4), thumbnails, labels or macros."""
    return [
        s for s in tif.series[1:]
        if not (int(getattr(s.keyframe, "subfiletype", 0)) & 0b101 or str(getattr(s, "name", "")).lower() in ("thumbnail", "label", "macro"))
    ]  # fmt: skip


def _from_tiff(data: IO[bytes] | Path, source: str, max_pixels: int) -> ImageData:
    import tifffile

    try:
        with tifffile.TiffFile(data) as tif:
            series = tif.series[0]
            axes = series.axes
            pages = len(tif.pages)
            # From the header, before decoding: every plane and page counts, samples do not.
            pixels = math.prod(n for n, a in zip(series.shape, axes) if a not in "SC")
            nbytes = math.prod(series.shape) * series.dtype.itemsize
            check_pixels(pixels, f"the TIFF ({'x'.join(map(str, series.shape))} {axes}, {pages} page(s))", max_pixels, nbytes)
            others = further_images(tif)
            if others:
                shapes = ", ".join(f"{'x'.join(map(str, s.shape))} {s.dtype}" for s in (series, *others))
                raise ReadError(f"the TIFF holds {1 + len(others)} images ({shapes}); convcli would filter only "
                                "the first: save each as its own file (or as pages of one stack)")  # fmt: skip
            arr = series.asarray()
            tagged_alpha = has_alpha(series)
    except ReadError:
        raise
    except MemoryError:
        raise ReadError("the TIFF does not fit in memory (lower --max-pixels or give a smaller file)") from None
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, TypeError, struct.error, ZeroDivisionError,
            OverflowError, NotImplementedError, RuntimeError, AttributeError, AssertionError) as exc:  # fmt: skip  (tifffile asserts on some malformed files)
        raise ReadError(f"cannot decode the TIFF ({type(exc).__name__}: {exc})") from None
    # Map tifffile's axes (e.g. "ZYX", "YXS", "QYX", "IYXS") onto ours.
    arr = np.asarray(arr)
    squeeze = [i for i, a in enumerate(axes) if arr.shape[i] == 1 and a not in "YX"]
    arr = np.squeeze(arr, axis=tuple(squeeze)) if squeeze else arr
    axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
    if "S" in axes[:-1]:  # samples stored as planes (planar configuration 2): channels last, as ours
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8) * 255
    if arr.dtype.kind not in "iuf":
        raise ReadError(f"TIFF sample type {arr.dtype} is not supported (give integer or float samples)")
    if axes.endswith("S") or (axes.endswith("C") and arr.shape[-1] <= 4):
        volume = arr.ndim == 4
        if arr.ndim not in (3, 4):
            raise ReadError(f"TIFF with axes {axes} and shape {arr.shape} is not a 2-D image or a 3-D stack")
    else:
        volume = arr.ndim == 3
        if arr.ndim not in (2, 3):
            raise ReadError(f"TIFF with axes {axes} and shape {arr.shape} is not a 2-D image or a 3-D stack")
    _check_not_empty(arr.shape)
    ours = _axes_for(arr.shape, volume)
    alpha = ours.endswith("C") and tagged_alpha
    return ImageData(np.ascontiguousarray(_native(arr)), ours, source, "TIFF", "", alpha=alpha, pages=pages)


def _npy_header(data: IO[bytes] | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, without reading the data."""
    fmt = np.lib.format
    with open(data, "rb") if isinstance(data, Path) else contextlib.nullcontext(data) as fh:
        start = fh.tell()
        version = fmt.read_magic(fh)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = reader(fh, max_header_size=10_000)
        offset = fh.tell()
        fh.seek(0, io.SEEK_END)
        available = fh.tell() - offset
        fh.seek(start)
    if dtype.hasobject:
        raise ReadError(".npy holds Python objects; convcli never unpickles (save a numeric array)")
    expected = math.prod(shape) * dtype.itemsize
    if expected > available:
        raise ReadError(f".npy header promises shape {shape} {dtype} ({expected:,} bytes) but the file holds {available:,}")
    return shape, dtype


def _from_npy(data: IO[bytes] | Path, source: str, max_pixels: int) -> ImageData:
    try:
        shape, dtype = _npy_header(data)
        if dtype.kind not in "iuf":
            raise ReadError(f".npy dtype {dtype} is not supported (give integer or float data)")
        if len(shape) not in (2, 3, 4):
            raise ReadError(f".npy has shape {shape}; give (H, W), (Z, H, W) or (Z, H, W, C)")
        pixels = math.prod(shape[:3])
        check_pixels(pixels, f"the .npy array {shape}", max_pixels, math.prod(shape) * dtype.itemsize)
        arr = np.load(data, allow_pickle=False)
    except ReadError:
        raise
    except MemoryError:
        raise ReadError("the .npy array does not fit in memory (lower --max-pixels or give a smaller file)") from None
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, struct.error, OverflowError, tokenize.TokenError) as exc:
        raise ReadError(f"cannot read the .npy array ({exc})") from None
    _check_not_empty(arr.shape)
    return ImageData(_native(np.array(arr)), _axes_for(arr.shape, arr.ndim >= 3), source, "NPY")


def _sniff(head: bytes) -> str:
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return "pillow"


def read_bytes(data: bytes, source: str = "-", max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    if not data:
        raise ReadError("the input is empty (0 bytes)")
    kind = _sniff(data[:8])
    reader = {"npy": _from_npy, "tiff": _from_tiff, "pillow": _from_pillow}[kind]
    return reader(io.BytesIO(data), source, max_pixels)


def _read_slices(paths: list[Path], source: str, max_pixels: int) -> ImageData:
    slices, total = [], 0
    for p in paths:
        try:
            slices.append(read_path(p, max_pixels))
        except ReadError as exc:  # the error names the stack; say which slice
            raise ReadError(f"slice {p.name}: {exc}") from None
        total += math.prod(slices[-1].array.shape[:2])
        check_pixels(total, f"the stack of {len(paths)} slices (so far)", max_pixels)
    first = slices[0]
    for p, s in zip(paths, slices):
        if s.is_volume:
            raise ReadError(f"{p} is itself a volume; a folder of slices needs 2-D images")
        if s.array.shape != first.array.shape or s.array.dtype != first.array.dtype:
            raise ReadError(
                f"slice {p.name} has shape {s.array.shape} {s.array.dtype}, the first slice "
                f"{paths[0].name} has {first.array.shape} {first.array.dtype}; all slices must match"
            )
    arr = np.stack([s.array for s in slices])
    return ImageData(arr, "Z" + first.axes, source, first.format, first.mode, first.alpha, pages=len(paths))


def list_images(pattern: str, recursive: bool = False) -> list[Path]:
    """A folder's image files (hidden ones skipped; ``recursive`` descends) or a glob's files, in
    natural sort order: the inputs of a batch, or the slices of a ``--stack`` volume."""
    p = Path(pattern)
    if p.is_dir():
        found = p.rglob("*") if recursive else p.iterdir()
        files = [f for f in found if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
    else:
        files = [Path(f) for f in glob.glob(pattern, recursive=recursive) if Path(f).is_file()]
    return sorted(files, key=lambda f: natural_key(str(f)))


def read_path(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    source = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except FileNotFoundError:
        raise ReadError("no such file") from None
    except IsADirectoryError:
        raise ReadError("is a folder") from None
    except OSError as exc:
        raise ReadError(f"cannot open ({exc.strerror or exc})") from None
    if not head:
        raise ReadError("the file is empty (0 bytes)")
    kind = _sniff(head)
    if kind == "npy":
        return _from_npy(path, source, max_pixels)
    if kind == "tiff":
        return _from_tiff(path, source, max_pixels)
    if _png16_colour(head):  # decoded from bytes by imagecodecs
        return _from_pillow(io.BytesIO(path.read_bytes()), source, max_pixels)
    with open(path, "rb") as fh:  # closed even when Pillow fails half-way
        return _from_pillow(fh, source, max_pixels)


def read_stack(pattern: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """A folder's 2-D slices, or a glob's, stacked in natural order into a (Z, H, W[, C]) volume."""
    files = list_images(pattern)
    if not files:
        raise ReadError("no image slices found (give a folder or a quoted glob of 2-D images)")
    return _read_slices(files, pattern, max_pixels)


def read_input(name: str, max_pixels: int = DEFAULT_MAX_PIXELS, stack: bool = False) -> ImageData:
    """A path, ``-`` for stdin, or with ``stack`` a folder/glob of slices as one volume."""
    if name == "-":
        return read_bytes(sys.stdin.buffer.read(), "-", max_pixels)
    if stack:
        return read_stack(name, max_pixels)
    path = Path(name)
    if path.is_dir():
        if path.suffix.lower() == ".zarr":
            raise ReadError("is a Zarr store, which convcli filters block by block into another (-o NAME.zarr), not in memory")
        raise ReadError("is a folder with no image files convcli reads (add --stack to read slices as one volume)")
    return read_path(path, max_pixels)
