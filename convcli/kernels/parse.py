"""Parsers for user kernels: inline matrices, .txt/.csv, .npy/.npz, .json and libvips .mat."""

from __future__ import annotations

import json
import math
import stat
import struct
import tokenize
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.validate import check_kernel
from ..errors import ArgumentError, ArgumentTypeError
from .value import FLOAT32_MAX, MAX_FILE_BYTES, MAX_TAPS, Kernel, KernelError

TEXT_SUFFIXES = (".txt", ".csv", ".kernel", ".k")
FILE_SUFFIXES = TEXT_SUFFIXES + (".npy", ".npz", ".json", ".mat")


def _number(token: str, where: str) -> float:
    try:
        return float(Fraction(token)) if "/" in token else float(token)
    except (ValueError, ZeroDivisionError):
        msg = f"{where}: token {token!r} is not a number"
        raise KernelError(msg) from None


def _split(line: str) -> list[str]:
    return line.replace(",", " ").split()


def _stack(planes: list[list[list[float]]], where: str) -> np.ndarray:
    if not planes or not planes[0]:
        msg = f"{where}: the kernel is empty (no numbers found)"
        raise KernelError(msg)
    rows = {len(p) for p in planes}
    cols = {len(r) for p in planes for r in p}
    if len(rows) > 1 or len(cols) > 1:
        msg = f"{where}: planes and rows must all have the same size (rows per plane {sorted(rows)}, values per row {sorted(cols)})"
        raise KernelError(msg)
    arr = np.array(planes, dtype=np.float64)
    return arr[0] if len(planes) == 1 else arr  # one plane: a 2-D kernel (a single row is 1xN)


def parse_inline(text: str) -> np.ndarray:
    """``"1 2 1; 0 0 0; -1 -2 -1"``; 3-D planes split by ``|``."""
    planes = []
    for p, plane in enumerate(text.split("|"), 1):
        rows = []
        for r, row in enumerate(plane.split(";"), 1):
            tokens = _split(row)
            if not tokens:
                continue
            where = f"inline kernel {text!r}, plane {p} row {r}" if "|" in text else f"inline kernel {text!r}, row {r}"
            rows.append([_number(t, where) for t in tokens])
        planes.append(rows)
    return _stack(planes, f"inline kernel {text!r}")


def parse_text(text: str, name: str) -> tuple[np.ndarray, str]:
    """Rows of numbers (spaces or commas), ``#`` comments, a blank line between 3-D planes.

    Returns the array and the description from the leading comment block.
    """
    planes: list[list[list[float]]] = [[]]
    description: list[str] = []
    seen_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        body, _, comment = raw.partition("#")
        if not seen_data and not body.strip() and comment.strip():
            description.append(comment.strip())
        tokens = _split(body)
        if not tokens:
            if not body.strip() and not comment and seen_data and planes[-1]:
                planes.append([])  # a blank line ends a plane
            continue
        seen_data = True
        where = f"{name}:{lineno}"
        row = [_number(t, where) for t in tokens]
        if planes[-1] and len(row) != len(planes[-1][0]):
            msg = f"{where}: row has {len(row)} values, the rows above have {len(planes[-1][0])}"
            raise KernelError(msg)
        planes[-1].append(row)
    if not planes[-1]:
        planes.pop()
    desc = " ".join(d for d in description if not d.lower().startswith("source:"))
    return _stack(planes, name), desc


def parse_mat(text: str, name: str) -> tuple[np.ndarray, float]:
    """libvips matrix: ``width height [scale [offset]]`` then the rows; values are divided by scale."""
    lines = [ln for ln in text.splitlines() if ln.split("#", 1)[0].strip()]
    if not lines:
        msg = f"{name}: empty .mat file"
        raise KernelError(msg)
    header = _split(lines[0].split("#", 1)[0])
    if len(header) not in (2, 3, 4):
        msg = f"{name}:1: header must be 'width height [scale [offset]]', got {lines[0]!r}"
        raise KernelError(msg)
    nums = [_number(t, f"{name}:1") for t in header]
    for value, what in zip(nums, ("width", "height", "scale", "offset")):
        if not math.isfinite(value):
            msg = f"{name}:1: {what} {value} in the header must be a finite number"
            raise KernelError(msg)
    for value, what in zip(nums[:2], ("width", "height")):
        if value != int(value) or not 1 <= value <= MAX_TAPS:
            msg = f"{name}:1: {what} {value:g} in the header must be a whole number from 1 to {MAX_TAPS:,}"
            raise KernelError(msg)
    width, height = int(nums[0]), int(nums[1])
    scale = nums[2] if len(nums) > 2 else 1.0
    offset = nums[3] if len(nums) > 3 else 0.0
    if scale == 0:
        msg = f"{name}:1: scale must not be 0"
        raise KernelError(msg)
    arr, _ = parse_text("\n".join(lines[1:]), name)
    arr = np.atleast_2d(arr)
    if arr.shape != (height, width):
        msg = f"{name}: header says {width}x{height} but the rows give {arr.shape[1]}x{arr.shape[0]}"
        raise KernelError(msg)
    return arr / scale, offset


def checked(arr: np.ndarray, where: str, max_ndim: int = 5) -> np.ndarray:
    """The engine's kernel check (numeric, non-empty, finite), reported as a KernelError, and the
    size cap and float32 range (kernels are applied in float32 for most inputs)."""
    if np.size(arr) > MAX_TAPS:
        msg = f"{where}: {np.size(arr):,} values (shape {np.shape(arr)}), over the limit of {MAX_TAPS:,}"
        raise KernelError(msg)
    try:
        arr = check_kernel(arr, max_ndim=max_ndim, name=where)
    except (ArgumentError, ArgumentTypeError) as exc:
        raise KernelError(str(exc)) from None
    big = float(np.abs(arr).max())
    if big > FLOAT32_MAX:
        msg = f"{where}: the value {big:g} overflows float32, in which kernels are applied (scale the kernel down)"
        raise KernelError(msg)
    return arr


def _check_file(path: Path, where: str) -> None:
    """Refuse folders, special files (a FIFO would block) and files over the size cap, before reading."""
    try:
        st = path.stat()
    except OSError as exc:
        msg = f"{where}: cannot read the kernel file ({exc.strerror or exc})"
        raise KernelError(msg) from None
    if stat.S_ISDIR(st.st_mode):
        msg = f"{where}: is a folder, not a kernel file"
        raise KernelError(msg)
    if not stat.S_ISREG(st.st_mode):
        msg = f"{where}: is not a regular file (a FIFO or device); give a kernel file"
        raise KernelError(msg)
    if st.st_size > MAX_FILE_BYTES and path.suffix.lower() not in (".npy", ".npz"):
        msg = f"{where}: {st.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for kernel files (give a .npy for big kernels)"
        raise KernelError(msg)


def _check_npy_header(fh: Any, where: str) -> None:
    """Refuse an array whose .npy header promises more values than the cap, before numpy
    allocates for it (it allocates from the header when reading from a zip member)."""
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape = reader(fh, max_header_size=10_000)[0]
    if math.prod(shape) > MAX_TAPS:
        msg = f"{where}: {math.prod(shape):,} values (shape {shape}), over the limit of {MAX_TAPS:,}"
        raise KernelError(msg)


def _npy_kernel(path: Path, where: str) -> np.ndarray:
    """A .npy kernel, its size checked from the header before the data is read."""
    with open(path, "rb") as fh:
        _check_npy_header(fh, where)
    return checked(np.load(path, allow_pickle=False), where)


def load_file(path: Path) -> Kernel:
    """Read a kernel file by its suffix."""
    where = str(path)
    suffix = path.suffix.lower()
    stem = path.stem
    _check_file(path, where)
    try:
        if suffix == ".npy":
            arr = _npy_kernel(path, where)
            if arr.ndim in (4, 5):
                return Kernel(arr, stem, f"file {where}", bank=True)
            if arr.ndim > 3:
                msg = f"{where}: {arr.ndim}-D array; give 1-3 axes, or 4/5 for a (Cout, Cin, k...) filter bank"
                raise KernelError(msg)
            return Kernel(arr, stem, f"file {where}")
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                unpacked = sum(info.file_size for info in z.zip.infolist())
                if unpacked > MAX_TAPS * 16:
                    msg = f"{where}: {unpacked:,} bytes unpacked, over the {MAX_TAPS * 16:,}-byte limit for a filter bank"
                    raise KernelError(msg)
                for key in ("weight", "bias"):
                    if key in z.files:
                        with z.zip.open(f"{key}.npy") as member:
                            _check_npy_header(member, f"{where}[{key}]")
                if "weight" not in z:
                    msg = f"{where}: an .npz filter bank needs a 'weight' array (found {', '.join(z.files) or 'nothing'})"
                    raise KernelError(msg)
                weight = checked(z["weight"], f"{where}[weight]")
                bias = checked(z["bias"], f"{where}[bias]") if "bias" in z else None
            if weight.ndim not in (3, 4, 5):
                msg = f"{where}: weight has shape {weight.shape}; give (Cout, Cin, k...)"
                raise KernelError(msg)
            if bias is not None and bias.shape != (weight.shape[0],):
                msg = f"{where}: bias has shape {bias.shape}; weight {weight.shape} needs ({weight.shape[0]},)"
                raise KernelError(msg)
            return Kernel(weight, stem, f"file {where}", bias=bias, bank=True)
        text = path.read_text(encoding="utf-8")
    except KernelError:
        raise
    except MemoryError:
        msg = f"{where}: the kernel does not fit in memory (give a smaller file)"
        raise KernelError(msg) from None
    except UnicodeDecodeError as exc:
        msg = f"{where}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the kernel as UTF-8"
        raise KernelError(msg) from None
    except (OSError, ValueError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile, struct.error, OverflowError,
            tokenize.TokenError) as exc:  # fmt: skip  (a garbled .npy header fails in numpy's tokenizer)
        msg = f"{where}: cannot read the kernel file ({getattr(exc, 'strerror', None) or exc})"
        raise KernelError(msg) from None
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{where}:{exc.lineno}: invalid JSON ({exc.msg})"
            raise KernelError(msg) from None
        except (RecursionError, ValueError) as exc:  # nesting beyond the parser's depth, over-long integers
            msg = f"{where}: invalid JSON kernel ({'nested too deeply' if isinstance(exc, RecursionError) else exc})"
            raise KernelError(msg) from None
        if isinstance(data, dict):
            if "kernel" not in data and "weight" not in data:
                msg = f"{where}: a JSON object needs a \"kernel\" key holding the nested lists (found {', '.join(map(repr, data)) or 'no keys'})"
                raise KernelError(msg)
            data = data.get("kernel", data.get("weight"))
        try:
            raw = np.array(data)
            if raw.dtype.kind not in "iufO":  # (strings such as "2", true/false; O: integers over 64 bits, null)
                raise TypeError
            arr = raw.astype(np.float64)
        except OverflowError:
            msg = f"{where}: a number is too large for float64 (and kernels are applied in float32)"
            raise KernelError(msg) from None
        except (ValueError, TypeError, RecursionError):
            msg = f"{where}: give nested lists of numbers of equal length (or {{\"kernel\": [...]}})"
            raise KernelError(msg) from None
        return Kernel(checked(arr, where, max_ndim=3), stem, f"file {where}")
    if suffix == ".mat":
        arr, offset = parse_mat(text, where)
        return Kernel(checked(arr, where), stem, f"file {where}", offset=offset)
    arr, desc = parse_text(text, where)
    return Kernel(checked(arr, where), stem, f"file {where}", description=desc)
