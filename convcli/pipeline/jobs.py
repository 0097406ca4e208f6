"""Planning a batch: which inputs, which output each gets, in which format. Every mistake is a
UsageError raised before anything runs."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..chunked import is_zarr_path
from ..errors import UsageError

if TYPE_CHECKING:
    from ..kernels import Kernel


@dataclass(frozen=True)
class Job:
    input: str  # as given, or "-"
    output: Path | None  # None: stdout
    fmt: str  # encoder name (PNG, TIFF, NPY, ...)
    compare: Path | None = None  # the before/after picture (--compare), if asked for


def expand_inputs(inputs: Sequence[str], *, recursive: bool, stack: bool) -> list[tuple[str, Path]]:
    """Folders and quoted globs become their image files, each with the subfolder it sits in below
    the folder given (mirrored under --out-dir); with ``stack`` each item stays one input."""
    from ..io.read import list_images

    out: list[tuple[str, Path]] = []
    for item in inputs:
        p = Path(item)
        if item != "-" and not stack and not is_zarr_path(p) and (p.is_dir() or (not p.exists() and any(ch in item for ch in "*?["))):
            files = list_images(item, recursive)
            root = p if p.is_dir() else None
            out.extend((str(f), f.parent.relative_to(root) if root else Path()) for f in files)
            if not files:  # the item stays, and the reader reports it (empty folder, no such file)
                out.append((item, Path()))
        else:
            out.append((item, Path()))
    if sum(1 for i, _ in out if i == "-") > 1:
        raise UsageError("stdin can be read only once", "-")
    return out


def default_suffix(kernels: Sequence[Kernel]) -> str:
    """``_`` and the kernel names, made safe for a file name."""
    name = "_".join(k.name for k in kernels)
    return "_" + re.sub(r"[^A-Za-z0-9.+-]+", "-", name).strip("-")


def plan_jobs(
    inputs: Sequence[tuple[str, Path]],
    *,
    output: str | None,
    out_dir: Path | None,
    name: str,
    fmt: str | None,
    suffix: str,
    stack: bool,
) -> list[Job]:
    """One job per input, with its output path (or stdout) and encoder; this call's own outputs
    are dropped from the inputs (a re-run into the same folder)."""
    from ..io.write import FORMAT_NAMES, FORMATS

    ext_override = None
    if fmt is not None:
        ext_override = FORMAT_NAMES.get(fmt.lower().lstrip("."))
        if ext_override is None:
            raise UsageError(f"{fmt!r} is not one of {', '.join(sorted(FORMAT_NAMES))}", "--format")
    if output is not None and out_dir is not None:
        raise UsageError("give either -o/--output or --out-dir, not both")
    if output is None and out_dir is None:
        raise UsageError("say where results go: -o OUTPUT (one input) or --out-dir DIR")
    if output is not None and len(inputs) != 1:
        raise UsageError(f"{len(inputs)} inputs but one output path; use --out-dir DIR for several inputs", "-o")
    jobs = []
    for item, subdir in inputs:
        if output == "-":
            if ext_override is None:
                raise UsageError("writing to stdout needs --format (png, tiff, npy, ...)", "-o -")
            if ext_override == ".zarr":
                raise UsageError("a Zarr store is a folder and cannot go to stdout; give -o NAME.zarr", "-o -")
            jobs.append(Job(item, None, FORMATS[ext_override]))
            continue
        if output is not None:
            path = Path(output)
            if ext_override and FORMATS.get(path.suffix.lower()) != FORMATS[ext_override]:
                raise UsageError(f"{output} and --format {fmt} disagree; drop --format or change the extension", "-o")
        else:
            assert out_dir is not None
            path = out_dir / subdir / _output_name(item, name, suffix=suffix, ext_override=ext_override, stack=stack)
            check_inside(path, out_dir, name)
        if path.suffix.lower() not in FORMATS:
            raise UsageError(f"unknown output extension {path.suffix!r} (use {', '.join(sorted(set(FORMATS)))})", str(path))
        jobs.append(Job(item, path, FORMATS[path.suffix.lower()]))
    _refuse_collisions(jobs)
    outputs = {j.output.resolve(): j for j in jobs if j.output is not None}
    return [j for j in jobs if j.input == "-" or outputs.get(Path(j.input).resolve(), j) is j]


def _output_name(item: str, template: str, *, suffix: str, ext_override: str | None, stack: bool) -> str:
    src = Path(item) if item != "-" else Path("stdin")
    stem = src.stem if not (stack and src.is_dir()) else src.name
    if stack and not src.is_dir() and item != "-":
        stem = Path(item).parent.name or "stack"
    ext = ext_override or (src.suffix.lower() if item != "-" and not stack else "")
    if not ext:
        ext = ".tif" if stack else ""
    if not ext:
        what = "reading stdin" if item == "-" else "an input without an extension"
        raise UsageError(f"{what} into --out-dir needs --format to name the output", item)
    return fill_template(template, stem=stem, suffix=suffix, ext=ext, name=src.name)


def fill_template(template: str, **fields: str) -> str:
    """``--name`` filled in: only the plain fields (no attributes, indexes, widths or conversions:
    ``{stem:>999999999}`` would be a memory bomb), every path part at most 255 bytes."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"{template!r} is not a valid template ({exc}; write {{{{ and }}}} for literal braces)", "--name") from None
    for _, field_name, spec, conversion in parsed:
        if field_name is not None and (field_name not in fields or spec or conversion):
            shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise UsageError(f"{template!r} uses an unknown field {shown} (fields: {', '.join(fields)})", "--name")
    text = template.format(**fields)
    if "\0" in text or Path(text).name in ("", ".", "..") or text.rstrip("/").endswith(("/..", "/.")):
        raise UsageError(f"{template!r} gives the output name {text!r}; give a file name", "--name")
    longest = max(len(os.fsencode(part)) for part in Path(text).parts)
    if longest > 255:
        raise UsageError(f"{template!r} gives a {longest}-byte file name; names hold at most 255 bytes", "--name")
    return text


def check_inside(path: Path, out_dir: Path, template: str) -> None:
    """Refuse an output that would land outside --out-dir (``../``, an absolute name, a link to a
    folder elsewhere): the folder it is written into must resolve inside --out-dir."""
    root = os.path.realpath(out_dir)
    if os.path.commonpath([root, os.path.realpath(path.parent)]) != root:
        raise UsageError(f"{template!r} would write {path}, outside --out-dir {out_dir}; give a plain file name", "--name")


def _refuse_collisions(jobs: Sequence[Job]) -> None:
    writers: dict[Path, str] = {}
    for job in jobs:
        if job.output is not None:
            target = job.output.resolve()
            if writers.get(target) == job.input:
                raise UsageError(f"{job.input} is given twice (give each input once)", "INPUTS")
            first = writers.setdefault(target, job.input)
            if first != job.input:
                raise UsageError(
                    f"{first} and {job.input} would both be written to {job.output} (rename one, change --name, or use separate calls)",
                    "--out-dir",
                )


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
