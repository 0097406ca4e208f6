"""``convcli kernels``: list the named kernels; ``kernels show NAME``: the matrix in each mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from .common import handle_errors, out_console

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
    from rich.table import Table

    from ..engine._factor import separable_factors
    from ..kernels import KernelError, available, resolve

    table = Table(title="named kernels (-k NAME; generators take NAME:params)", title_justify="left")
    for col in ("name", "size", "sum", "separable", "description"):
        table.add_column(col, overflow="fold")
    for name, origin in available(filters_dir or ()).items():
        try:
            k = resolve(name, filters_dir or ())
        except KernelError as exc:
            table.add_row(name, "?", "?", "?", f"unreadable: {exc}")
            continue
        size = "×".join(map(str, k.array.shape))
        sep = "yes" if (not k.bank and separable_factors(k.array) is not None) else "no"
        total = float(k.array.sum())
        total = 0.0 if abs(total) < 1e-12 else total
        if as_json:
            typer.echo(json.dumps({"name": name, "shape": list(k.array.shape), "sum": total, "separable": sep == "yes",
                                   "description": k.description, "source": origin}))  # fmt: skip
            continue
        shown = name + (" (generator)" if origin == "generator" else "")
        table.add_row(shown, size, f"{total:.6g}", sep, k.description)
    if not as_json:
        out_console().print(table)


def _matrix(arr: Any) -> str:
    import numpy as np

    def plane(p: np.ndarray) -> str:
        p = np.atleast_2d(p)
        cells = [[f"{v:.6g}" for v in row] for row in p]
        width = max(len(c) for row in cells for c in row)
        return "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)

    if arr.ndim == 3:
        return "\n\n".join(f"plane z={i}:\n{plane(p)}" for i, p in enumerate(arr))
    return plane(arr)


@kernels_app.command("show")
@handle_errors
def show_kernel(
    name: Annotated[str, typer.Argument(help="A kernel name, generator call, file or inline matrix.")],
    filters_dir: FiltersDir = None,
) -> None:
    """The matrix as stored, and the matrix actually slid over the image in each mode."""
    from ..engine._factor import separable_factors
    from ..kernels import KernelError, resolve

    try:
        k = resolve(name, filters_dir or ())
    except KernelError as exc:
        raise UsageError(str(exc), "kernels show") from None
    console = out_console()
    console.print(f"[bold]{k.name}[/bold]  {'×'.join(map(str, k.array.shape))}  source: {k.source}", highlight=False)
    if k.description:
        console.print(k.description, highlight=False)
    if k.bank:
        console.print(f"filter bank: {k.array.shape[0]} filters of {k.array.shape[1]} kernels each", highlight=False)
        return
    factors = separable_factors(k.array)
    console.print(f"sum {float(k.array.sum()):.6g}; separable: "
                  + ("yes, " + " ⊗ ".join("[" + " ".join(f"{v:.4g}" for v in f) + "]" for f in factors) if factors else "no"),
                  highlight=False)  # fmt: skip
    console.print("\n[bold]as stored[/bold] (the file or generator's matrix):", highlight=False)
    console.print(_matrix(k.array), markup=False, highlight=False)
    console.print("\n[bold]slid in --mode conv[/bold] (true convolution: the kernel flipped on every axis):", highlight=False)
    console.print(_matrix(k.flipped()), markup=False, highlight=False)
    console.print("\n[bold]slid in --mode corr[/bold] (cross-correlation: as stored, not flipped):", highlight=False)
    console.print(_matrix(k.array), markup=False, highlight=False)
    import numpy as np

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
