"""``convcli info``: what convcli sees in a file."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..io.limits import DEFAULT_MAX_PIXELS
from .common import ExitCode, handle_errors, out_console


@handle_errors
def info_command(
    inputs: Annotated[list[str], typer.Argument(help="Image, volume, folder (with --stack) or - for stdin.", show_default=False)],
    stack: Annotated[bool, typer.Option("--stack", help="Read a folder or quoted glob as one volume of slices.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input.")] = False,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=0, help="Refuse larger images; 0 disables.")] = DEFAULT_MAX_PIXELS,
) -> None:
    """Shape, axes, dtype, pages and mode of each input, as convcli reads it."""
    import numpy as np

    from ..errors import ReadError
    from ..io.read import read_input

    failed = 0
    for name in inputs:
        try:
            img = read_input(name, max_pixels, stack=stack)
        except (ReadError, MemoryError) as exc:  # one line for this input, the others go on
            from .common import print_error

            print_error(name, str(exc) if isinstance(exc, ReadError) else "out of memory (lower --max-pixels)")
            failed += 1
            continue
        a = img.array
        doc = {
            "input": name, "shape": list(a.shape), "axes": img.axes, "dtype": str(a.dtype),
            "format": img.format, "mode": img.mode, "pages": img.pages, "alpha": img.alpha,
            "min": float(np.nanmin(a)), "max": float(np.nanmax(a)),
        }  # fmt: skip
        if as_json:
            typer.echo(json.dumps(doc))
        else:
            out_console().print(
                f"[bold]{name}[/bold]: {'×'.join(map(str, a.shape))} ({', '.join(img.axes)}) {a.dtype}, "
                f"{img.format}{' ' + img.mode if img.mode else ''}, {img.pages} page(s)"
                f"{', alpha' if img.alpha else ''}, values {doc['min']:g}..{doc['max']:g}",
                highlight=False,
            )
    if failed:
        raise typer.Exit(int(ExitCode.PARTIAL if failed < len(inputs) else ExitCode.FAILED))
