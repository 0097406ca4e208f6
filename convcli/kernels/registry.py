"""Resolve a ``-k`` argument: a generator, a named file in a filters library, a kernel file, or an
inline matrix.

The named kernels live in the top-level ``filters/``; ``convcli/filters`` is a link to it in the
source tree, and the wheel holds the files themselves there, so there is one lookup path
(``convcli/filters``) for a checkout, an editable install and a wheel alike."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

from .generators import GENERATORS, generate
from .parse import FILE_SUFFIXES, checked, load_file, parse_inline
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


def _check_folder(d: Path) -> None:
    """A filters folder every user may write could replace a named kernel under your feet."""
    st = d.stat()
    if st.st_mode & stat.S_IWOTH and d.resolve() != builtin_dir().resolve():
        msg = f"filters folder {d} is writable by every user, so anyone could replace a named kernel (chmod o-w {d})"
        raise KernelError(msg)


def _kernel_files(d: Path) -> list[Path]:
    """The folder's kernel files: regular files only (a FIFO would block, a device is no kernel),
    and links only to regular files in the same folder (never to a file elsewhere)."""
    out = []
    real_dir = d.resolve()
    for f in sorted(d.iterdir()):
        if f.suffix.lower() not in FILE_SUFFIXES or f.name.startswith("."):
            continue
        try:
            target = f.resolve(strict=True)
            if not stat.S_ISREG(target.stat().st_mode) or (f.is_symlink() and target.parent != real_dir):
                continue
        except (OSError, RuntimeError):  # a dangling or looping link
            continue
        out.append(f)
    return out


def library_files(extra: Iterable[Path | str] = ()) -> dict[str, Path]:
    for d in map(Path, extra):
        if not d.is_dir():  # (a typo would otherwise fall back to the built-in kernels of that name)
            msg = f"--filters-dir {d} is not a folder"
            raise KernelError(msg)
    files: dict[str, Path] = {}
    for d in reversed(library_dirs(extra)):
        if d.is_dir():
            _check_folder(d)
            for f in _kernel_files(d):
                files[f.stem] = f
    return files


def shadowed(extra: Iterable[Path | str] = ()) -> dict[str, str]:
    """Built-in names (generators and shipped files) that a user folder replaces: name -> user file."""
    builtin = set(GENERATORS) | {f.stem for f in _kernel_files(builtin_dir())} if builtin_dir().is_dir() else set(GENERATORS)
    return {name: str(path) for name, path in library_files(extra).items() if name in builtin and path.parent.resolve() != builtin_dir().resolve()}


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
        k = load_file(path)
        return Kernel(k.array, name, f"library {path}", k.description, k.bias, k.offset, k.bank)
    path = Path(spec)
    if path.exists():
        return load_file(path)  # says so if it is a folder or a FIFO
    first = (spec.replace(",", " ").split() or [""])[0]
    numeric = any(c.isdigit() for c in first) and set(first) <= set("0123456789.+-eE/")
    if numeric and path.suffix.lower() not in FILE_SUFFIXES:
        parse_inline(spec)  # numbers with a bad token: report the token, not a missing file
    if path.suffix.lower() in FILE_SUFFIXES or os.sep in spec:
        msg = f"kernel file {spec!r} does not exist"
        raise KernelError(msg)
    close = difflib.get_close_matches(name, list(available(extra)), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see 'convcli kernels' for the names"
    msg = f"unknown kernel {spec!r} ({hint})"
    raise KernelError(msg)
