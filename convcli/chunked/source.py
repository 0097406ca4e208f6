"""Lazy inputs: a Zarr array or group (format 2 or 3, OME-Zarr level 0), a TIFF read through
tifffile as a Zarr store, or a ``.npy`` memory map.

A :class:`SourceSpec` is small and picklable: every worker (thread, process or cluster node)
re-opens the input from its path, so nothing unpicklable (a TIFF store, a file handle) travels.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import ChunkedError, is_zarr_path
from .stored import ChunkFiles, chunk_files, read_group

# Axis roles, one letter per array axis: spatial axes are convolved, "C" is the engine's
# channels-last axis (kept whole in every block), "B" is a batch axis (t, c of OME-Zarr, or a
# size-1 TIFF axis): filtered one index at a time.
SPATIAL = "ZYX"

# Stored chunks smaller than this many values are read, and output blocks computed, in groups of
# whole chunks at least this large: a task per tiny chunk (a store of 1x1x1 chunks) cost Dask more
# than the reads, and every block read its halo's chunks again (a 20x40x50 volume: over 11 minutes)
GROUP_VALUES = 1 << 18


def grouped(chunks: Sequence[int], shape: Sequence[int], target: int | None = None) -> tuple[int, ...]:
    """``chunks`` doubled along the last axis, then the one before..., until they hold ``target``
    values (default ``GROUP_VALUES``) or the whole array: whole multiples of the chunks, or an
    axis' whole length."""
    goal = GROUP_VALUES if target is None else target
    group = [min(c, n) for c, n in zip(chunks, shape, strict=True)]
    for i in reversed(range(len(group))):
        while math.prod(group) < goal and group[i] < shape[i]:
            group[i] = min(shape[i], 2 * group[i])
    return tuple(group)


@dataclass(frozen=True)
class SourceSpec:
    """Where the data lives; enough for any worker to open it again."""

    kind: str  # "zarr", "tiff" or "npy"
    path: str  # absolute
    component: str = ""  # array path inside a Zarr group ("" for the root array)
    stamp: int = 0  # modification times when opened: a rewritten input is not served from a worker's cache


@dataclass(frozen=True)
class Source:
    """An opened lazy input: shape, dtype, chunking and what each axis means."""

    spec: SourceSpec
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    roles: str  # one of "ZYXCB" per axis
    zarr_format: int | None = None
    ome: dict[str, Any] | None = None  # the multiscales entry, with "version"
    attrs: dict[str, Any] = field(default_factory=dict)  # the group's other attributes (omero, ...)
    alpha: bool = False  # the last channel is alpha (a TIFF that tags it)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(n for n, r in zip(self.shape, self.roles, strict=True) if r in SPATIAL)

    @property
    def channels(self) -> int:
        return self.shape[self.roles.index("C")] if "C" in self.roles else 1

    @property
    def batch(self) -> int:
        """Arrays filtered one after the other (the product of the ``B`` axes, e.g. OME's ``t``)."""
        return math.prod(n for n, r in zip(self.shape, self.roles, strict=True) if r == "B")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _plain_roles(ndim: int) -> str:
    # the in-memory reader's rule for arrays without axis names: (H, W), (Z, H, W), (Z, H, W, C)
    roles = {2: "YX", 3: "ZYX", 4: "ZYXC"}.get(ndim)
    if roles is None:
        msg = f"an array with {ndim} axes has no axis names; give (Y, X), (Z, Y, X) or (Z, Y, X, C), or OME-Zarr axes"
        raise ChunkedError(msg)
    return roles


def _ome_multiscales(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The first multiscales entry of OME-Zarr 0.4 (``multiscales``) or 0.5 (``ome.multiscales``)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        entry = dict(ome["multiscales"][0])
        entry.setdefault("version", ome.get("version", "0.5"))
        return entry
    if attrs.get("multiscales"):
        entry = dict(attrs["multiscales"][0])
        entry.setdefault("version", "0.4")
        return entry
    return None


def _ome_roles(axes: list[Any]) -> str:
    roles = ""
    for ax in axes:
        name = (ax.get("name", "") if isinstance(ax, dict) else str(ax)).lower()
        kind = ax.get("type", "") if isinstance(ax, dict) else ""
        roles += name.upper() if name in ("z", "y", "x") or (kind == "space" and name.upper() in SPATIAL) else "B"
    if "Y" not in roles or "X" not in roles:
        msg = f"OME-Zarr axes {[a.get('name') if isinstance(a, dict) else a for a in axes]} have no y and x"
        raise ChunkedError(msg)
    return roles


def _check_array(shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "iuf":
        msg = f"{where} has dtype {dtype}; give integer or real floating-point data"
        raise ChunkedError(msg)
    if 0 in shape:
        msg = f"{where} is empty (shape {shape})"
        raise ChunkedError(msg)


def _open_zarr(path: Path, component: str) -> Source:
    import zarr

    try:
        node: Any = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises many types for a folder that is not a store
        msg = f"cannot open the Zarr store ({type(exc).__name__}: {exc})"
        raise ChunkedError(msg) from None
    ome = None
    attrs: dict[str, Any] = {}
    if not hasattr(node, "shape"):  # a group
        attrs = dict(node.attrs)
        ome = _ome_multiscales(attrs)
        if not component:
            if ome is not None:
                component = str(ome["datasets"][0]["path"])  # the full-resolution level
            else:
                arrays = sorted(name for name, _ in node.arrays())
                if len(arrays) != 1:
                    listed = ", ".join(arrays) or "none"
                    msg = f"this Zarr group holds several arrays or none ({listed}); choose one with --component"
                    raise ChunkedError(msg)
                component = arrays[0]
        try:
            node = node[component]
        except (KeyError, ValueError):  # (ValueError: a path Zarr refuses, such as ../x)
            msg = f"--component {component!r} is not in this Zarr group"
            raise ChunkedError(msg) from None
        if not hasattr(node, "shape"):
            msg = f"--component {component!r} is a group, not an array"
            raise ChunkedError(msg)
    elif component:
        msg = f"--component {component!r} given, but the store is a single array"
        raise ChunkedError(msg)
    shape, dtype = tuple(node.shape), np.dtype(node.dtype)
    _check_array(shape, dtype, "the Zarr array")
    roles = _ome_roles(ome["axes"]) if ome is not None and "axes" in ome else _plain_roles(len(shape))
    if len(roles) != len(shape):
        msg = f"OME-Zarr axes name {len(roles)} axes but the array has shape {shape}"
        raise ChunkedError(msg)
    fmt = getattr(getattr(node, "metadata", None), "zarr_format", 2)
    return Source(SourceSpec("zarr", str(path), component), shape, dtype, tuple(node.chunks), roles, fmt, ome, attrs)


def _tiff_roles(axes: str, shape: tuple[int, ...]) -> str:
    roles = ""
    for ax, n in zip(axes, shape, strict=True):
        if ax in "YX":
            roles += ax
        elif ax == "S" or (ax == "C" and ax == axes[-1] and n <= 4):
            roles += "C"
        elif ax in "ZQI" and "Z" not in roles and n > 1:
            roles += "Z"
        else:
            roles += "B"
    if roles.count("C") > 1 or ("C" in roles and not roles.endswith("C")):
        msg = f"TIFF axes {axes} (shape {shape}) are not (Z,) Y, X (, samples)"
        raise ChunkedError(msg)
    return roles


def _open_tiff(path: Path) -> Source:
    import tifffile
    import zarr

    from ..io.read import further_images, has_alpha

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
            others, alpha = len(further_images(tif)), has_alpha(series)
            with series.aszarr(level=0) as store:
                opened: Any = zarr.open(store, mode="r")
                chunks = tuple(opened.chunks)
    except Exception as exc:  # tifffile raises many types (assertions included) for a bad file
        msg = f"cannot read the TIFF ({type(exc).__name__}: {exc})"
        raise ChunkedError(msg) from None
    if others:  # as the in-memory reader: no image silently left out
        msg = f"the TIFF holds {1 + others} images; convcli would filter only the first: save each as its own file"
        raise ChunkedError(msg)
    _check_array(shape, dtype, "the TIFF")
    return Source(SourceSpec("tiff", str(path)), shape, dtype, chunks, _tiff_roles(axes, shape), alpha=alpha)


def _open_npy(path: Path) -> Source:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises many types (TokenError included)
        msg = f"cannot read the .npy array ({type(exc).__name__}: {exc})"
        raise ChunkedError(msg) from None
    shape, dtype = tuple(arr.shape), np.dtype(arr.dtype)
    _check_array(shape, dtype, "the .npy array")
    roles = _plain_roles(len(shape))
    # a memory map has no chunks: blocks of whole planes, about 64 MiB each
    plane = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    chunks = (max(1, min(shape[0], (64 << 20) // max(1, plane))), *shape[1:])
    return Source(SourceSpec("npy", str(path)), shape, dtype, chunks, roles)


def open_source(path: str | Path, component: str = "", roles: str | None = None) -> Source:
    """Open ``path`` lazily: Zarr (array, group, OME-Zarr), TIFF or ``.npy``.

    ``roles`` overrides what each axis means (e.g. ``"YXC"`` for a 2-D colour image, which the
    in-memory reader's rule for unnamed arrays would take as a (Z, Y, X) volume).
    """
    p = Path(path).absolute()  # workers on other hosts or folders get an absolute path
    if not p.exists():
        msg = "no such file or folder"
        raise ChunkedError(msg)
    suffix = p.suffix.lower()
    if is_zarr_path(p):
        src = _open_zarr(p, component)
    elif component:
        msg = "--component applies to Zarr groups only"
        raise ChunkedError(msg)
    elif suffix in (".tif", ".tiff"):
        src = _open_tiff(p)
    elif suffix == ".npy":
        src = _open_npy(p)
    else:
        msg = f"chunked input must be .zarr, .tif/.tiff or .npy, not {suffix or 'a name without suffix'}"
        raise ChunkedError(msg)
    src = replace(src, spec=replace(src.spec, stamp=_stamp(p, src.spec.component)))
    if roles is None:
        return src
    roles = roles.upper()
    if len(roles) != len(src.shape) or set(roles) - set("ZYXCB") or "X" not in roles or "Y" not in roles or (
        "C" in roles and not roles.endswith("C")
    ):
        msg = f"axes {roles!r} do not fit shape {src.shape}: one of Z, Y, X, C (last), B per axis, Y and X required"
        raise ChunkedError(msg)
    return replace(src, roles=roles)


def _stamp(path: Path, component: str) -> int:
    names = [path] + [path / component / m for m in ("zarr.json", ".zarray")] + [path / m for m in ("zarr.json", ".zattrs")]
    return sum(p.stat().st_mtime_ns for p in names if p.exists())


_TIFF_STORES: list[Any] = []  # open file handles behind cached TIFF readers


def release_readers() -> None:
    """Close this process's cached readers (TIFF stores hold their file open)."""
    _reader.cache_clear()
    _chunk_files.cache_clear()
    while _TIFF_STORES:
        _TIFF_STORES.pop().close()


@functools.lru_cache(maxsize=16)
def _reader(spec: SourceSpec) -> Any:
    """The opened array, once per process (a worker reads many blocks of the same input)."""
    if spec.kind == "npy":
        return np.load(spec.path, mmap_mode="r", allow_pickle=False)
    import zarr

    if spec.kind == "tiff":
        import tifffile

        store = tifffile.imread(spec.path, aszarr=True, level=0)
        _TIFF_STORES.append(store)
        return zarr.open(store, mode="r")
    node: Any = zarr.open(store=spec.path, mode="r")
    return node[spec.component] if spec.component else node


@functools.lru_cache(maxsize=16)
def _chunk_files(spec: SourceSpec) -> ChunkFiles | None:
    return chunk_files(_reader(spec))


def read(spec: SourceSpec, selection: tuple[int | slice | np.ndarray, ...]) -> np.ndarray:
    """Orthogonal selection (ints, slices, sorted int arrays per axis) as an in-memory array."""
    try:
        arr = _reader(spec)
    except OSError as exc:
        host = os.uname().nodename
        msg = f"{spec.path} cannot be opened on {host} ({exc}); on a cluster, inputs and outputs must be paths every worker can reach"
        raise ChunkedError(msg) from None
    if spec.kind != "npy":
        try:
            return np.asarray(arr.oindex[selection])
        except Exception as exc:  # codecs and stores raise many types; the block is what failed
            where = ", ".join(
                f"{s.start}:{s.stop}" if isinstance(s, slice) else f"{s[0]}..{s[-1]}" if isinstance(s, np.ndarray) else str(s)
                for s in selection
            )
            msg = f"cannot read [{where}] of {spec.path} ({type(exc).__name__}: {exc}); a corrupt or unreadable chunk?"
            raise ChunkedError(msg) from None
    return select(arr, selection)


def select(arr: np.ndarray, selection: tuple[int | slice | np.ndarray, ...]) -> np.ndarray:
    """:func:`read`'s orthogonal selection on a NumPy array or memory map: one bounding box read
    (a view where the selection is all slices), then the gathers in memory."""
    box = tuple(slice(int(s[0]), int(s[-1]) + 1) if isinstance(s, np.ndarray) else s for s in selection)
    out = np.asarray(arr[box])
    axis = 0
    for s, b in zip(selection, box, strict=True):
        if isinstance(s, np.ndarray) and isinstance(b, slice):
            out = np.take(out, s - b.start, axis=axis)
        if not isinstance(s, int):
            axis += 1
    return out


class ChunkReads:
    """One Dask task per stored chunk (per group of small ones, ``grouped``), each decoding its
    chunks once; a block's selection becomes its pieces of those chunks (see :meth:`gather`), so
    halos cost no second decode.

    (A Dask array sliced per block and handed to ``delayed`` decoded every chunk about five
    times: each block's copy of the graph read its chunks again. Measured on a 256 MiB uint16
    volume with (64, 256, 256) chunks: 160 chunk reads for 32 chunks.)
    """

    def __init__(self, source: Source) -> None:
        arr = _reader(source.spec)
        self.spec = source.spec
        self.shape = tuple(int(n) for n in arr.shape)
        self.chunks = grouped(tuple(int(c) for c in arr.chunks), self.shape)  # a task reads a group of small chunks
        self.name = f"convcli-read-{secrets.token_hex(8)}"
        self._tasks: dict[tuple[int, ...], Any] = {}

    def gather(self, selection: tuple[Any, ...]) -> tuple[Gather, list[Any]]:
        """How to assemble ``selection`` (as :func:`read` takes it) and the chunk tasks it needs:
        only chunks holding selected cells (a wrapped or strided index array skips the rest)."""
        import dask

        axes = [_axis_pieces(s, n, c) for s, n, c in zip(selection, self.shape, self.chunks, strict=True)]
        pieces, needed = [], []
        for combo in itertools.product(*(a[0] for a in axes)):
            idx = tuple(cid for cid, _, _ in combo)
            if idx not in self._tasks:
                box = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, self.chunks, self.shape, strict=True))
                key = f"{self.name}-{'.'.join(map(str, idx))}"
                self._tasks[idx] = dask.delayed(read_chunk, pure=False, traverse=False)(self.spec, box, dask_key_name=key)
            pieces.append((tuple(src for _, src, _ in combo), tuple(dst for _, _, dst in combo)))
            needed.append(self._tasks[idx])
        drop = tuple(i for i, s in enumerate(selection) if isinstance(s, (int, np.integer)))
        return Gather(tuple(a[1] for a in axes), tuple(pieces), drop), needed


Index = slice | np.ndarray


def _axis_pieces(s: Any, n: int, c: int) -> tuple[list[tuple[int, Index, Index]], int]:
    """One axis of a selection: ``(chunk, index in the chunk, index in the result)`` per chunk it
    touches, and the result's length along the axis."""
    if isinstance(s, (int, np.integer)):
        s = np.array([int(s)])
    if isinstance(s, slice):
        lo, hi, _ = s.indices(n)
        return [
            (cid, slice(max(lo, cid * c) - cid * c, min(hi, (cid + 1) * c) - cid * c), slice(max(lo, cid * c) - lo, min(hi, (cid + 1) * c) - lo))
            for cid in range(lo // c, -(-hi // c))
        ], hi - lo
    s = np.asarray(s)
    ids = s // c
    out: list[tuple[int, Index, Index]] = []
    for cid in np.unique(ids):
        where = np.flatnonzero(ids == cid)
        src = s[where] - cid * c
        contiguous = src[-1] - src[0] + 1 == src.size and where[-1] - where[0] + 1 == where.size
        out.append((int(cid), slice(int(src[0]), int(src[-1]) + 1) if contiguous else src, slice(int(where[0]), int(where[-1]) + 1) if contiguous else where))
    return out, int(s.size)


@dataclass(frozen=True)
class Gather:
    """A block's selection assembled from pieces of decoded chunks, compactly (index-array axes
    hold only the selected cells), integer axes dropped at the end, as :func:`select` returns."""

    shape: tuple[int, ...]
    pieces: tuple[tuple[tuple[Index, ...], tuple[Index, ...]], ...]  # (in the chunk, in the result)
    drop: tuple[int, ...]  # axes selected by one integer

    def assemble(self, chunks: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """Into ``out`` (of :attr:`shape` and the chunks' type) when given."""
        out = np.empty(self.shape, dtype=chunks[0].dtype) if out is None else out
        for (src, dst), chunk in zip(self.pieces, chunks, strict=True):
            if all(isinstance(i, slice) for i in src + dst):
                out[dst] = chunk[src]
            else:  # (only at wrapped edges and sparse strides)
                out[np.ix_(*_as_arrays(dst, self.shape))] = chunk[np.ix_(*_as_arrays(src, chunk.shape))]
        return out[tuple(0 if i in self.drop else slice(None) for i in range(out.ndim))]


def _as_arrays(index: tuple[Index, ...], shape: tuple[int, ...]) -> list[np.ndarray]:
    return [np.arange(*i.indices(n)) if isinstance(i, slice) else i for i, n in zip(index, shape, strict=True)]


def chunk_reads(source: Source, threads: bool) -> ChunkReads | None:
    """Chunk-by-chunk reading through Dask, or ``None`` where blocks read by path instead: a
    ``.npy`` map has nothing to decode, and a TIFF store cannot be pickled to another process."""
    if source.spec.kind == "zarr" or (source.spec.kind == "tiff" and threads):
        return ChunkReads(source)
    return None


def read_chunk(spec: SourceSpec, key: tuple[slice, ...]) -> np.ndarray:
    """One stored chunk or group of whole chunks (``ChunkReads``), or a :class:`ChunkedError`
    naming it (codecs and stores raise many types). A local Zarr array with a plain codec chain is
    read straight from the chunks' files (see ``stored``); anything else through Zarr."""
    try:
        files = _chunk_files(spec) if spec.kind == "zarr" else None
        whole = None if files is None else read_group(files, key)  # (one chunk or a group)
        return whole if whole is not None else np.asarray(_reader(spec)[key])
    except Exception as exc:
        where = ", ".join(f"{k.start}:{k.stop}" for k in key)
        msg = f"cannot read [{where}] of {spec.path} ({type(exc).__name__}: {exc}); a corrupt or unreadable chunk?"
        raise ChunkedError(msg) from None
