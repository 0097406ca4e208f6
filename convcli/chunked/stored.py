"""Whole chunks of a local Zarr array, decoded straight from their files.

For the plain codec chains (Zarr 3: ``bytes`` then one of ``zstd``, ``blosc``, ``gzip``; Zarr 2:
one such compressor and no filters) a chunk is its file run through one numcodecs decoder, the
same decoder Zarr runs. Zarr gets there through its asyncio loop and thread pool and decodes into
a buffer it then copies: measured on a 1 GiB uint16 volume with a 3x3x3 kernel, reading chunks
this way made the whole run 7% faster (4.68 -> 4.33 s, mean of three interleaved). Anything else
(another store, sharding, a transpose, big-endian data, a checksum codec, a partial chunk) is
read by Zarr as before: :func:`chunk_files` returns None.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ChunkFiles:
    folder: Path  # the array's folder
    key: Callable[[tuple[int, ...]], str]  # chunk coordinates -> file name inside it
    decoder: Any  # a numcodecs codec; None: the bytes are stored as they are
    dtype: np.dtype
    chunks: tuple[int, ...]
    shape: tuple[int, ...]
    fill: Any


def chunk_files(arr: Any) -> ChunkFiles | None:
    """How to read ``arr``'s chunks from their files, or None where Zarr must."""
    try:
        from zarr.storage import LocalStore
    except ImportError:  # zarr-python 2
        return None
    store_path = getattr(arr, "store_path", None)
    meta = getattr(arr, "metadata", None)
    if store_path is None or meta is None or not isinstance(store_path.store, LocalStore):
        return None
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "iuf" or (dtype.itemsize > 1 and sys.byteorder != "little"):
        return None
    decoder = _v3_decoder(meta) if getattr(meta, "zarr_format", None) == 3 else _v2_decoder(meta)
    if decoder is False or dtype.byteorder == ">":
        return None
    return ChunkFiles(
        folder=Path(store_path.store.root) / store_path.path, key=meta.encode_chunk_key, decoder=decoder,
        dtype=dtype.newbyteorder("="), chunks=tuple(int(c) for c in arr.chunks), shape=tuple(int(n) for n in arr.shape),
        fill=arr.fill_value,
    )  # fmt: skip


def _v3_decoder(meta: Any) -> Any:
    """numcodecs' decoder for a Zarr 3 chain ``bytes`` (little-endian) + at most one compressor;
    False for any other chain."""
    import numcodecs

    codecs = tuple(meta.codecs)
    if not codecs or type(codecs[0]).__name__ != "BytesCodec" or len(codecs) > 2:
        return False
    endian = getattr(codecs[0], "endian", None)
    if endian is not None and getattr(endian, "value", endian) != "little":
        return False
    if len(codecs) == 1:
        return None
    known = {"ZstdCodec": numcodecs.Zstd, "BloscCodec": numcodecs.Blosc, "GzipCodec": numcodecs.GZip}
    make = known.get(type(codecs[1]).__name__)
    return False if make is None else make()


def _v2_decoder(meta: Any) -> Any:
    """The Zarr 2 compressor itself (a numcodecs codec) when there are no filters and the order is
    C; False otherwise."""
    import numcodecs

    if getattr(meta, "filters", None) or getattr(meta, "order", "C") != "C":
        return False
    compressor = getattr(meta, "compressor", None)
    if compressor is None:
        return None
    known = (numcodecs.Zstd, numcodecs.Blosc, numcodecs.GZip, numcodecs.Zlib, numcodecs.LZ4)
    return compressor if isinstance(compressor, known) else False


def read_whole(files: ChunkFiles, box: tuple[slice, ...]) -> np.ndarray | None:
    """The chunk ``box`` covers exactly (clipped to the array at its far edges), or None when
    ``box`` is not one whole chunk. A missing file is the fill value, as Zarr reads it."""
    coords = []
    for s, c, n in zip(box, files.chunks, files.shape, strict=True):
        if s.start % c or s.stop != min(s.start + c, n):
            return None
        coords.append(s.start // c)
    inside = tuple(slice(0, s.stop - s.start) for s in box)
    try:
        raw = (files.folder / files.key(tuple(coords))).read_bytes()
    except FileNotFoundError:
        return np.full(tuple(s.stop - s.start for s in box), files.fill, dtype=files.dtype)
    out = np.empty(files.chunks, dtype=files.dtype)
    if files.decoder is None:
        out.reshape(-1).view(np.uint8)[...] = np.frombuffer(raw, dtype=np.uint8)
    else:
        files.decoder.decode(raw, out=out)
    return out[inside]
