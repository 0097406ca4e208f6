"""``convcli kernels``: list the named kernels; ``kernels show NAME``: the matrix in each mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from .common import handle_errors, out_console


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)

kernels_app = typer.Typer(
    help="List the named kernels, or show one as stored and as slid in each mode.",
    invoke_without_command=True,
    no_args_is_help=False,
)

FiltersDir = Annotated[Optional[list[Path]], typer.Option("--filters-dir", help="Extra folder of named kernels (also $CONVCLI_FILTERS).")]


@kernels_app.callback()
@handle_errors
def list_kernels(
    ctx: typer.Context,
    filters_dir: FiltersDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per kernel.")] = False,
) -> None:
    """Name, size, sum, separable yes/no and description of every named kernel."""
    if ctx.invoked_subcommand is not None:
        return
    from ..engine._factor import separable_factors
    from ..kernels import KernelError, available, resolve
    from ..kernels.registry import shadowed
    from .tables import fits, notes_below

    try:
        names = available(filters_dir or ())
        replaced = shadowed(filters_dir or ())
    except OSError as exc:
        raise UsageError(f"cannot read a filters folder ({exc.strerror or exc})", "--filters-dir") from None
    for name, path in replaced.items():  # a user folder replacing a built-in is worth a word
        print(f"convcli: note: {path} replaces the built-in kernel {name}", file=sys.stderr)
    rows: list[tuple[str, str, str, str, str]] = []
    for name, origin in names.items():
        try:
            k = resolve(name, filters_dir or ())
        except KernelError as exc:
            rows.append((name, "?", "?", "?", f"unreadable: {exc}"))
            continue
        size = "×".join(map(str, k.array.shape))
        sep = "yes" if (not k.bank and separable_factors(k.array) is not None) else "no"
        total = float(k.array.sum())
        total = 0.0 if abs(total) < 1e-12 else total
        if as_json:
            typer.echo(json.dumps({"name": name, "shape": list(k.array.shape), "sum": total, "separable": sep == "yes",
                                   "description": k.description, "source": origin,
                                   "replaces_builtin": name in replaced}))  # fmt: skip
            continue
        shown = name + (" (generator)" if origin == "generator" else "") + (" (replaces the built-in)" if name in replaced else "")
        rows.append((shown, size, f"{total:.6g}", sep, k.description))
    if not as_json:
        console = out_console()
        table = _kernel_table(rows, with_description=True)
        if fits(console, table):
            console.print(table)
        else:  # narrow: one line per kernel, the descriptions as a list below
            console.print(_kernel_table(rows, with_description=False))
            notes_below(console, "descriptions:", [(r[0].removesuffix(" (generator)"), r[4]) for r in rows])


def _kernel_table(rows: list[tuple[str, str, str, str, str]], *, with_description: bool) -> Any:
    from rich.table import Table

    table = Table(title="named kernels (-k NAME; generators take NAME:params)", title_justify="left")
    columns = ("name", "size", "sum", "separable", "description")[: 5 if with_description else 4]
    for col in columns:
        table.add_column(col, no_wrap=True)
    for row in rows:
        table.add_row(*row[: len(columns)])
    return table


def _matrix(arr: Any) -> Any:
    """The kernel's cells coloured by sign and magnitude (one scale for every plane)."""
    import numpy as np
    from rich.console import Group
    from rich.text import Text

    from ..viz.terminal import cell_width, kernel_text

    vmax = float(np.abs(arr).max())
    if arr.ndim == 3:
        parts: list[Any] = []
        for i, p in enumerate(arr):
            parts += [Text(f"plane z={i}:" if i == 0 else f"\nplane z={i}:"), kernel_text(p, vmax, cell_width(arr))]
        return Group(*parts)
    return kernel_text(arr, vmax)


@kernels_app.command("show")
@handle_errors
def show_kernel(
    name: Annotated[str, typer.Argument(help="A kernel name, generator call, file or inline matrix.")],
    filters_dir: FiltersDir = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="Also draw it: the kernel in each mode, its frequency response and profiles (a bank: its Cout × Cin grid).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --png file.")] = False,
) -> None:
    """The matrix as stored, and the matrix actually slid over the image in each mode."""
    from ..engine._factor import separable_factors
    from ..kernels import KernelError, resolve
    from ..pipeline.pictures import check_png, refuse_existing, write_png

    try:
        k = resolve(name, filters_dir or ())
    except KernelError as exc:
        raise UsageError(str(exc), "kernels show") from None
    if png is not None:  # refuse before drawing: a usage mistake should not cost the picture
        check_png(png, "--png")
        refuse_existing(png, overwrite)
    console = out_console()
    console.print(f"[bold]{escape(k.name)}[/bold]  {'×'.join(map(str, k.array.shape))}  source: {escape(k.source)}", highlight=False)
    if k.description:
        console.print(k.description, highlight=False, markup=False)
    if k.bank:
        console.print(f"filter bank: {k.array.shape[0]} filters of {k.array.shape[1]} kernels each", highlight=False)
        _show_bank(console, k)
    else:
        _show_matrices(console, k, separable_factors(k.array))
    if png is not None:
        from ..viz import kernel_figure

        figure = kernel_figure(k.array, name=k.name, bank=k.bank, bias=k.bias, description=k.description)
        write_png(figure.png(), png, overwrite=overwrite)
        typer.echo(f"picture: {png} ({figure.caption})")


def _show_bank(console: Any, k: Any) -> None:
    """A filter per row, its input channels' kernels side by side (as stored = as slid in corr),
    when that fits the console; otherwise a pointer to the picture."""
    import numpy as np
    from rich.table import Table

    from ..viz.terminal import cell_width, kernel_text
    from .tables import fits

    w = k.array
    if w.ndim != 4:
        console.print("(3-D kernels in a bank: `--png` draws their central planes)", highlight=False)
        return
    vmax, width = float(np.abs(w).max()), cell_width(w, 3)  # 3 digits: a row of kernels must fit
    grid = Table(box=None, show_header=True, title="as stored (= as slid in --mode corr; conv flips each kernel)", title_justify="left")
    grid.add_column("filter", no_wrap=True)
    for c in range(w.shape[1]):
        grid.add_column(f"in {c}", no_wrap=True)
    for j in range(w.shape[0]):
        bias = "" if k.bias is None else f"\nbias {float(k.bias[j]):.4g}"
        grid.add_row(f"{j}{bias}", *(kernel_text(w[j, c], vmax, width, 3) for c in range(w.shape[1])))
    if fits(console, grid):
        console.print(grid)
    else:
        console.print("(too wide to print here: `--png FILE` draws the Cout × Cin grid)", highlight=False)


def _show_matrices(console: Any, k: Any, factors: Any) -> None:
    import numpy as np

    console.print(f"sum {float(k.array.sum()):.6g}; separable: "
                  + ("yes, " + " ⊗ ".join("[" + " ".join(f"{v:.4g}" for v in f) + "]" for f in factors) if factors else "no"),
                  highlight=False, markup=False)  # fmt: skip
    # soft_wrap: a matrix row stays one line (a narrow terminal may fold it, a pipe keeps it)
    console.print("\n[bold]as stored[/bold] (the file or generator's matrix):", highlight=False)
    console.print(_matrix(k.array), soft_wrap=True)
    console.print("\n[bold]slid in --mode conv[/bold] (true convolution: the kernel flipped on every axis):", highlight=False)
    console.print(_matrix(k.flipped()), soft_wrap=True)
    console.print("\n[bold]slid in --mode corr[/bold] (cross-correlation: as stored, not flipped):", highlight=False)
    console.print(_matrix(k.array), soft_wrap=True)
    if np.array_equal(k.array, k.flipped()):
        console.print("\nThis kernel is symmetric under the flip: conv and corr give the same result.", highlight=False)
    elif np.array_equal(k.array, -k.flipped()):
        console.print(
            "\nThe flip only changes the sign: --mode corr gives the negated result of --mode conv"
            + (" (derivative kernels here are stored so that conv responds positively to intensity rising along +x/+y/+z)" if "deriv" in k.description.lower() else "")
            + ".",
            highlight=False,
        )  # fmt: skip
    else:
        console.print("\nAsymmetric: conv and corr give different results (not just a sign change).", highlight=False)
