"""Where the pictures of ``kernels show --png`` and ``apply --compare`` go, and writing them.

Typer-free and numpy-free at import: the drawing (``convcli.viz``) is imported only when a picture
is drawn. PNGs are written like every output: a temporary file in the target folder, renamed into
place, never replacing an existing file without ``--overwrite``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class PictureError(Exception):
    """A picture path that cannot be used; the message says what to change."""


def _check_png(path: Path, option: str) -> None:
    if path.suffix.lower() != ".png":
        msg = f"{option} {path}: pictures are written as PNG; give a name ending in .png"
        raise PictureError(msg)


def compare_paths(value: str, inputs: list[str], outputs: list[Path | None]) -> list[Path]:
    """One ``--compare`` path per input.

    ``value`` is a PNG file (one input), a folder (an existing one, or any path ending in ``/``:
    ``FOLDER/{stem}_compare.png``), or a name template with ``{stem}`` / ``{name}`` (the input's
    file stem / name); a template without a folder puts each picture next to its output.
    """
    templated = "{" in value
    folder = not templated and (value.endswith(("/", os.sep)) or Path(value).is_dir())
    if not templated and not folder and len(inputs) > 1:
        msg = (f"--compare {value}: {len(inputs)} inputs but one picture name; give a folder "
               "(ending in /) or a template such as '{stem}_cmp.png'")  # fmt: skip
        raise PictureError(msg)
    paths: list[Path] = []
    for item, out in zip(inputs, outputs):
        src = Path(item) if item != "-" else Path("stdin")
        fields = {"stem": src.stem or src.name, "name": src.name}
        if folder:
            path = Path(value) / f"{fields['stem']}_compare.png"
        elif templated:
            try:
                rel = Path(value.format(**fields))
            except (KeyError, IndexError, ValueError) as exc:
                msg = f"--compare {value!r} uses an unknown field {exc} (fields: stem, name)"
                raise PictureError(msg) from None
            base = out.parent if out is not None and rel.parent == Path() else Path()
            path = base / rel
        else:
            path = Path(value)
        _check_png(path, "--compare")
        paths.append(path)
    seen: dict[Path, str] = {}
    taken = {o.resolve(): i for i, o in zip(inputs, outputs) if o is not None}
    for item, path in zip(inputs, paths):
        key = path.resolve()
        if key in taken:
            msg = f"--compare {path} is also the output of {taken[key]}; choose another name"
            raise PictureError(msg)
        first = seen.setdefault(key, item)
        if first != item:
            msg = f"--compare: {first} and {item} would both draw {path} (use a template with {{stem}} or {{name}})"
            raise PictureError(msg)
    return paths


def write_png(figure: Any, path: Path, *, overwrite: bool) -> None:
    """Write a :class:`convcli.viz.Figure` atomically; refuse to replace a file unless asked.

    Raises PictureError (existing file, missing folder) or OSError (permissions, space)."""
    from ..io.write import atomic_write

    _check_png(path, "picture")
    if (path.exists() or path.is_symlink()) and not overwrite:
        msg = f"{path} exists (add --overwrite to replace it)"
        raise PictureError(msg)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        msg = f"cannot write {path}: the folder {folder} does not exist"
        raise PictureError(msg)
    atomic_write(path, figure.png())
