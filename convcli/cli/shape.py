"""``convcli shape``: the layer calculator. Never imports numpy or numba."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from .common import handle_errors


def _fmt_axes(values: list) -> str:
    return "×".join(str(v) for v in values)


MAX_SPEC_BYTES = 1 << 20
MAX_LAYERS = 10_000


def _spec_lines(spec: Path) -> list[str]:
    """The layer lines of a --spec file: a regular UTF-8 file of at most 1 MiB and 10,000 layers."""
    import stat

    try:
        st = spec.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UsageError("is not a regular file (a folder, FIFO or device); give a layer file", str(spec))
        if st.st_size > MAX_SPEC_BYTES:
            raise UsageError(f"{st.st_size:,} bytes, over the {MAX_SPEC_BYTES:,}-byte limit for layer files", str(spec))
        text = spec.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the layer file ({exc.strerror or exc})", str(spec)) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8", str(spec)) from None
    lines = [ln for ln in text.splitlines() if ln.split("#", 1)[0].strip()]
    if len(lines) > MAX_LAYERS:
        raise UsageError(f"{len(lines):,} layers, over the limit of {MAX_LAYERS:,}", str(spec))
    return lines


@handle_errors
def shape_command(
    input: Annotated[str, typer.Option("--input", "-i", help="Input size per axis: W, WxH or WxHxZ (axis order is yours).", show_default=False)],
    channels: Annotated[int, typer.Option("--channels", "-c", help="Input channels (Din).")] = 1,
    kernel: Annotated[Optional[str], typer.Option("--kernel", "-k", help="Kernel size: N or NxM[xL].")] = None,
    filters: Annotated[Optional[int], typer.Option("--filters", "-f", help="Number of filters K (= Dout).")] = None,
    stride: Annotated[str, typer.Option("--stride", "-s", help="N or per axis NxM.")] = "1",
    padding: Annotated[str, typer.Option("--padding", "-p", help="N, NxM, B:A per side, or same|valid|full.")] = "0",
    dilation: Annotated[str, typer.Option("--dilation", "-d", help="N or per axis NxM.")] = "1",
    groups: Annotated[int, typer.Option("--groups", "-g", help="Groups (C and K must be multiples).")] = 1,
    no_bias: Annotated[bool, typer.Option("--no-bias", help="Layer without bias terms.")] = False,
    transposed: Annotated[bool, typer.Option("--transposed", help="Transposed convolution (PyTorch ConvTranspose).")] = False,
    output_padding: Annotated[str, typer.Option("--output-padding", help="Transposed only: extra cells at the end.")] = "0",
    layer: Annotated[Optional[list[str]], typer.Option("--layer", "-l", help="A chain layer, repeatable: \"conv k=3 s=1 p=1 c=64\", \"pool max k=2\", \"dw k=3\", \"convT k=4 s=2 p=1 c=32 op=0\".")] = None,
    spec: Annotated[Optional[Path], typer.Option("--spec", help="File with one layer per line (# comments).")] = None,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="Show every formula with the numbers substituted.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Error when a floor drops real input cells.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """Output sizes, padding splits, parameters, MACs and receptive fields of convolution layers."""
    from ..errors import ArgumentError
    from ..layers import LayerSpec, parse_axes, parse_layer, run_chain

    try:
        in_size = parse_axes(input, "input")
        if len(in_size) > 3:
            raise UsageError(f"{input!r} has {len(in_size)} axes; give 1 to 3", "--input")
        specs: list[LayerSpec] = []
        if output_padding.strip() not in ("", "0") and not transposed:
            raise UsageError("--output-padding applies to transposed layers only (add --transposed)", "--output-padding")
        if kernel is not None:
            kind = "convT" if transposed else "conv"
            specs.append(
                LayerSpec(kind=kind, kernel=kernel, filters=filters, stride=stride, padding=padding,
                          dilation=dilation, groups=groups, bias=not no_bias, output_padding=output_padding,
                          label=""),
            )  # fmt: skip
        lines: list[str] = list(layer or [])
        if spec is not None:
            lines.extend(_spec_lines(spec))
        for i, line in enumerate(lines, len(specs) + 1):
            specs.append(parse_layer(line, i))
        if not specs:
            raise UsageError("give --kernel K (with --filters) for one layer, or --layer/--spec for a chain")
        results = run_chain(specs, in_size, channels, strict=strict)
    except UsageError:
        raise
    except ArgumentError as exc:
        raise UsageError(str(exc), "shape") from None

    total_params = sum(r.params for r in results)
    total_macs = sum(r.macs for r in results)
    if as_json:
        doc = {"layers": [r.as_json() for r in results], "params": total_params, "macs": total_macs,
               "flops": 2 * total_macs}  # fmt: skip
        typer.echo(json.dumps(doc))
        return
    _print_table(results, in_size, channels, explain)


COLUMNS = ("#", "layer", "output", "pad b:a", "k_eff", "params", "MACs", "RF (jump)")


def _layer_table(results: list, in_size: list[int], channels: int, what: list[str], wrap: bool = False) -> Any:
    from rich import box
    from rich.table import Table

    from .common import fmt_number as _num

    rows = []
    for r, w in zip(results, what):
        keff = [d * (k - 1) + 1 for k, d in zip(r.kernel, r.dilation)]
        rows.append((
            str(r.index), w, f"{_fmt_axes(r.output_size)} × {r.out_channels}",
            " ".join(f"{b}:{a}" for b, a in r.padding), _fmt_axes(keff), f"{r.params:,}", f"{r.macs:,}",
            f"{_fmt_axes([_num(v) for v in r.receptive_field])} ({_fmt_axes([_num(v) for v in r.jump])})",
        ))  # fmt: skip
    # no vertical rules or edges: eight columns need every character at 80 columns
    table = Table(title=f"input {_fmt_axes(in_size)} × {channels} channels", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)  # fmt: skip
    columns = list(COLUMNS)
    if wrap and all(max(r.dilation) == 1 for r in results):
        columns.remove("k_eff")  # equal to the kernel size, which the spec below shows
    for col in columns:
        # when even the narrow table is too wide (3-D chains) the multi-part cells wrap at their
        # spaces and fold rather than end in "…"; an output size never breaks
        folds = wrap and col in ("output", "pad b:a", "RF (jump)")
        i = COLUMNS.index(col)
        longest = max(len(row[i].split()[0]) for row in rows) if col == "output" else None
        table.add_column(col, justify="right" if col in ("params", "MACs", "#") else "left", no_wrap=not folds,
                         overflow="fold", min_width=longest)  # fmt: skip
    for row in rows:
        table.add_row(*(row[COLUMNS.index(c)] for c in columns))
    return table


def _print_table(results: list, in_size: list[int], channels: int, explain: bool) -> None:
    from ..layers import explain as explain_lines
    from .common import out_console
    from .tables import fits, notes_below

    console = out_console()
    specs = [r.spec.label or (f"{r.spec.kind} k={_fmt_axes(r.kernel)} s={_fmt_axes(r.stride)}" + (f" d={_fmt_axes(r.dilation)}" if max(r.dilation) > 1 else ""))
             for r in results]  # fmt: skip
    table = _layer_table(results, in_size, channels, specs)
    if not fits(console, table):
        # narrow (a pipe, 80 columns): the layer's kind in the table, its full spec on one line below
        table = _layer_table(results, in_size, channels, [r.spec.kind for r in results], wrap=True)
        console.print(table)
        notes_below(console, "layers:", [(str(r.index), spec) for r, spec in zip(results, specs)])
    else:
        console.print(table)
    total_params = sum(r.params for r in results)
    total_macs = sum(r.macs for r in results)
    if len(results) == 1:
        r = results[0]
        console.print(
            f"weights {r.weights:,} + bias {r.bias:,} = params {r.params:,} ({4 * r.params:,} bytes at float32)\n"
            f"MACs {r.macs:,}  FLOPs {2 * r.macs:,}  (+{r.bias and r.activations:,} bias adds)\n"
            f"output activations {r.activations:,} ({4 * r.activations:,} bytes at float32)"
        )
    else:
        console.print(f"total params {total_params:,} ({4 * total_params:,} bytes at float32)\nMACs {total_macs:,}  FLOPs {2 * total_macs:,}")
    if explain:
        for r in results:
            console.print(f"\n[bold]layer {r.index}[/bold] {r.spec.label}".rstrip())
            for line in explain_lines(r):
                console.print("  " + line, markup=False)
    else:
        for r in results:
            for real, _ in r.dropped:
                if real:
                    console.print(f"note: layer {r.index}: the floor drops real input cells (see --explain)")
                    break
            for note in r.notes:
                console.print(f"note: layer {r.index}: {note}")
