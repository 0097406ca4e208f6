"""Where the pictures of ``kernels show --png`` and ``apply --compare`` go, their captions, and
writing them.

Typer-free and numpy-free at import: the drawing (``convcli.viz``) is imported only when a picture
is drawn. PNGs are written like every output: a temporary file in the target folder, renamed into
place, never replacing an existing file without ``--overwrite``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError, WriteError


def check_png(path: Path, option: str) -> None:
    """A UsageError unless ``path`` names a PNG (the only picture format)."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"{path}: pictures are written as PNG; give a name ending in .png", option)


def compare_paths(value: str, inputs: Sequence[str], outputs: Sequence[Path | None]) -> list[Path]:
    """One ``--compare`` path per input.

    ``value`` is a PNG file (one input), a folder (an existing one, or any path ending in ``/``:
    ``FOLDER/{stem}_compare.png``), or a name template with ``{stem}`` / ``{name}`` (the input's
    file stem / name); a template without a folder puts each picture next to its output.
    """
    templated = "{" in value
    folder = not templated and (value.endswith(("/", os.sep)) or Path(value).is_dir())
    if not templated and not folder and len(inputs) > 1:
        raise UsageError(f"{len(inputs)} inputs but one picture name; give a folder (ending in /) "
                         "or a template such as '{stem}_cmp.png'", "--compare")  # fmt: skip
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
                raise UsageError(f"{value!r} uses an unknown field {exc} (fields: stem, name)", "--compare") from None
            path = (out.parent if out is not None and rel.parent == Path() else Path()) / rel
        else:
            path = Path(value)
        check_png(path, "--compare")
        paths.append(path)
    seen: dict[Path, str] = {}
    taken = {o.resolve(): i for i, o in zip(inputs, outputs) if o is not None}
    for item, path in zip(inputs, paths):
        key = path.resolve()
        if key in taken or (item != "-" and key == Path(item).resolve()):
            raise UsageError(f"{path} is also an input or output of this call; choose another name", "--compare")
        first = seen.setdefault(key, item)
        if first != item:
            raise UsageError(f"{first} and {item} would both draw {path} (use a template with {{stem}} or {{name}})", "--compare")
    return paths


def compare_caption(doc: Mapping[str, Any]) -> str:
    """The caption of a comparison, from a file's report (the documented NDJSON keys)."""

    def shape(v: Sequence[int]) -> str:
        return "×".join(map(str, v))

    return (f"{Path(doc['input']).name}: kernel {doc['kernel']} ({shape(doc['kernel_shape'])}), mode {doc['mode']}, "
            f"border {doc['border']}, stride {shape(doc['stride'])}, output shape {shape(doc['output_shape'])} "
            f"{doc['output_dtype']}")  # fmt: skip


def refuse_existing(path: Path, overwrite: bool) -> None:
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise WriteError(f"picture {path} exists (add --overwrite to replace it)")


def write_png(data: bytes, path: Path, *, overwrite: bool) -> None:
    """Write encoded PNG bytes atomically (creating its folder, as for every output); refuse to
    replace a file unless asked. Every failure is a WriteError (exit 1) and leaves nothing behind."""
    from ..io.write import atomic_write

    refuse_existing(path, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # like every output's folder
        atomic_write(path, data, overwrite=overwrite)  # never replaces a file that appeared meanwhile
    except OSError as exc:
        raise WriteError(f"cannot write picture {path} ({exc.strerror or exc}; check the folder's permissions and space)") from None
