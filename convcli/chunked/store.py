"""The output store: a chunked, compressed Zarr written under a temporary name beside the target
and renamed into place only when complete, so a failed or interrupted run leaves no ``out.zarr``.
OME-Zarr in gives OME-Zarr out (same version, axes kept, ``scale`` and ``translation`` updated).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry
from . import ChunkedError

LIVE = ".convcli-live"  # exists inside the temporary store while blocks may be written


def _zarr_format_kw(zarr_format: int | None) -> dict[str, Any]:
    import zarr

    if zarr_format is None or int(zarr.__version__.split(".")[0]) < 3:
        return {}  # zarr-python 2 writes format 2 and takes no zarr_format
    return {"zarr_format": zarr_format}


def _compressor(zarr_format: int) -> Any:
    """Blosc LZ4 (level 5, byte shuffle), Zarr 2's default: measured on a 3x3x3-filtered uint16
    microscopy-like volume, 870 MB/s to encode at a ratio of 1.60, where Zarr 3's default Zstd
    (level 3) ran at 130 MB/s for 1.32 (on noisy output: 1230 against 420 MB/s, ratio 1.00
    against 1.03); encoding is a large part of a chunked run's time."""
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def ome_entry(ome: dict[str, Any], roles: str, geo: geometry.Geometry) -> dict[str, Any]:
    """Level 0's multiscales entry for the filtered array: the same axes; per spatial axis the
    scale grows by the stride and the translation moves to the first output cell's window centre."""
    transforms = ome["datasets"][0].get("coordinateTransformations", [])
    scale = next((list(t["scale"]) for t in transforms if t.get("type") == "scale"), [1.0] * len(roles))
    shift = next((list(t["translation"]) for t in transforms if t.get("type") == "translation"), [0.0] * len(roles))
    spatial = 0
    for i, r in enumerate(roles):
        if r in "ZYX":
            k, s, d = geo.kernel_shape[spatial], geo.stride[spatial], geo.dilation[spatial]
            shift[i] = shift[i] + scale[i] * ((d * (k - 1)) / 2 - geo.padding[spatial][0])
            scale[i] = scale[i] * s
            spatial += 1
    new: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if any(shift):
        new.append({"type": "translation", "translation": shift})
    entry = {k: v for k, v in ome.items() if k not in ("datasets", "version")}
    entry["datasets"] = [{"path": "0", "coordinateTransformations": new}]
    return entry


class OutputStore:
    """``with OutputStore(target, overwrite) as out: path = out.create(...); ...; out.commit()``"""

    def __init__(self, target: str | Path, *, overwrite: bool = False, reads: Sequence[str | Path] = ()) -> None:
        self.target = Path(target).absolute()
        self.overwrite = overwrite
        self.reads = [Path(p) for p in reads]  # the inputs: never inside what is replaced
        self.tmp = self.target.parent / f".{self.target.name}.{secrets.token_hex(4)}.part"
        self.committed = False

    @property
    def live(self) -> str:
        return str(self.tmp / LIVE)

    def __enter__(self) -> OutputStore:
        if self.target.suffix.lower() != ".zarr":
            msg = f"chunked output must be a .zarr folder, not {self.target.name}"
            raise ChunkedError(msg)
        if (self.target.exists() or self.target.is_symlink()) and not self.overwrite:
            msg = f"output {self.target} exists (add --overwrite to replace it)"
            raise ChunkedError(msg)
        if self.target.is_dir():
            for path in self.reads:
                if path.resolve().is_relative_to(self.target.resolve()):
                    msg = f"output {self.target} holds the input {path}; write to another name"
                    raise ChunkedError(msg)
            store = any((self.target / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))
            if not store and any(p.name != ".DS_Store" for p in self.target.iterdir()):  # (an empty folder holds nothing to lose)
                msg = f"output {self.target} is a folder but not a Zarr store; convcli replaces only Zarr stores (move it away or choose another name)"
                raise ChunkedError(msg)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self

    def create(
        self,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: np.dtype,
        attrs: dict[str, Any],
        *,
        zarr_format: int | None = None,
        ome: dict[str, Any] | None = None,
        group_attrs: dict[str, Any] | None = None,
    ) -> str:
        """Create the (empty) output array; returns its folder. With ``ome`` (a multiscales entry
        with ``version``) the store is an OME-Zarr group holding the array as level ``0``."""
        import zarr

        fmt = _zarr_format_kw(zarr_format)
        path = self.tmp
        if ome is not None:
            version = str(ome.get("version", "0.4"))
            entry = {k: v for k, v in ome.items() if k != "version"}
            extra = dict(group_attrs or {})
            if version.startswith("0.4"):
                meta = {**extra, "multiscales": [{**entry, "version": version}]}
                fmt = _zarr_format_kw(2)
            else:
                meta = {"ome": {**extra.pop("ome", {}), "version": version, "multiscales": [entry]}, **extra}
                fmt = _zarr_format_kw(3)
            group = zarr.open_group(store=str(path), mode="w", **fmt)
            group.attrs.update(meta)
            path = path / "0"
        if int(zarr.__version__.split(".")[0]) >= 3:
            version = fmt.get("zarr_format", 3)
            arr = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                    compressors=[_compressor(version)], zarr_format=version, overwrite=True)  # fmt: skip
        else:  # zarr-python 2: its default compressor is the same Blosc LZ4
            arr = zarr.open_array(store=str(path), mode="w", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
        arr.attrs.update(attrs)
        (self.tmp / LIVE).touch()  # after the array: zarr's mode "w" clears its folder
        return str(path)

    def commit(self) -> None:
        """Rename the complete store into place (replacing the old one only with ``overwrite``)."""
        (self.tmp / LIVE).unlink()
        trash = None
        if self.target.exists() or self.target.is_symlink():
            if not self.overwrite:
                msg = f"output {self.target} appeared while this run wrote it; the result was not kept"
                raise ChunkedError(msg)
            trash = self.target.parent / f".{self.target.name}.{secrets.token_hex(4)}.old"
            os.rename(self.target, trash)
        try:
            os.rename(self.tmp, self.target)  # fails (ENOTEMPTY) if another run got there first
        except OSError as exc:
            if trash is not None:
                os.rename(trash, self.target)
            msg = f"cannot move the finished store to {self.target} ({exc.strerror or exc})"
            raise ChunkedError(msg) from None
        self.committed = True
        if trash is not None:
            _remove(trash)

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()

    def discard(self) -> None:
        try:
            (self.tmp / LIVE).unlink()
        except FileNotFoundError:
            pass
        _remove(self.tmp)


def _remove(path: Path) -> None:
    # a block that was already writing when the run stopped may still add a chunk file: retry
    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)
