"""Resolve a ``-k`` argument: a generator, a named file in a filters library, a kernel file, or an
inline matrix.

The named kernels live in the top-level ``filters/``; ``convcli/filters`` is a link to it in the
source tree, and the wheel holds the files themselves there, so there is one lookup path
(``convcli/filters``) for a checkout, an editable install and a wheel alike."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

from .generators import GENERATORS, generate
from .parse import FILE_SUFFIXES, checked, load_file, parse_inline, parse_text
from .value import Kernel, KernelError

ENV_VAR = "CONVCLI_FILTERS"


BUILTIN_DIR = Path(__file__).resolve().parent.parent / "filters"


def builtin_dir() -> Path:
    return BUILTIN_DIR


def library_dirs(extra: Iterable[Path | str] = ()) -> list[Path]:
    """User libraries first (they may override a built-in name), then the built-in one."""
    dirs = [Path(d) for d in extra]
    env = os.environ.get(ENV_VAR)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs + [builtin_dir()]


def library_files(extra: Iterable[Path | str] = ()) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for d in reversed(library_dirs(extra)):
        if d.is_dir():
            for f in sorted(d.iterdir()):
                if f.suffix.lower() in FILE_SUFFIXES and not f.name.startswith("."):
                    files[f.stem] = f
    return files


def available(extra: Iterable[Path | str] = ()) -> dict[str, str]:
    """Every name ``-k`` accepts, with where it comes from (``generator`` or a file path)."""
    names = {name: "generator" for name in GENERATORS}
    names.update({name: str(path) for name, path in library_files(extra).items()})
    return dict(sorted(names.items()))


def _looks_inline(spec: str) -> bool:
    if ";" in spec or "|" in spec:
        return True
    tokens = spec.replace(",", " ").split()
    try:
        [float(Fraction(t)) if "/" in t else float(t) for t in tokens]
    except (ValueError, ZeroDivisionError):
        return False
    return bool(tokens)


def resolve(spec: str, extra: Iterable[Path | str] = ()) -> Kernel:
    """The Kernel a ``-k`` argument names."""
    spec = spec.strip()
    if not spec:
        msg = "empty kernel argument (give a name like sobel-x, a file, or numbers like '1 2 1; 0 0 0; -1 -2 -1')"
        raise KernelError(msg)
    if _looks_inline(spec):
        return Kernel(checked(parse_inline(spec), f"inline kernel {spec!r}", max_ndim=3), "custom", "inline")
    name, _, params = spec.partition(":")
    if name in GENERATORS:
        return generate(name, params)
    files = library_files(extra)
    if name in files and not params:
        path = files[name]
        if path.suffix.lower() in (".txt", ".csv"):
            arr, desc = parse_text(path.read_text(encoding="utf-8"), str(path))
            return Kernel(checked(arr, str(path)), name, f"library {path}", description=desc)
        k = load_file(path)
        return Kernel(k.array, name, f"library {path}", k.description, k.bias, k.offset, k.bank)
    path = Path(spec)
    if path.is_file():
        return load_file(path)
    if path.suffix.lower() in FILE_SUFFIXES or os.sep in spec:
        msg = f"kernel file {spec!r} does not exist"
        raise KernelError(msg)
    close = difflib.get_close_matches(name, list(available(extra)), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see 'convcli kernels' for the names"
    msg = f"unknown kernel {spec!r} ({hint})"
    raise KernelError(msg)
