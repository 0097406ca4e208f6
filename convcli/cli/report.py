"""Human reports for ``convcli apply``: a rich table per input, or one row per input for batches."""

from __future__ import annotations

from typing import Any


def _fmt_shape(shape: list[int], axes: str = "") -> str:
    dims = "×".join(map(str, shape))
    return f"{dims} ({', '.join(axes)})" if axes and len(axes) == len(shape) else dims


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_single(console: Any, rep: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"convcli apply: {rep['input']} → {rep['output']}"), show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("input", f"{_fmt_shape(rep['input_shape'], rep['axes'])}, {rep['dtype']}")
    for i, step in enumerate(rep["steps"], 1):
        tag = f" {i}" if len(rep["steps"]) > 1 else ""
        shape = "×".join(map(str, step["kernel_shape"]))
        kind = "filter bank (Cout, Cin, k...)" if step["bank"] else f"sum {_num(step['kernel_sum'])}"
        rank = "" if step["separable_rank"] is None else (
            ", separable (rank 1)" if step["separable_rank"] == 1 else f", rank {step['separable_rank']} (not separable)"
        )
        table.add_row(f"kernel{tag}", escape(f"{step['kernel']} ({step['kernel_source']}), {shape}, {kind}{rank}"))
        table.add_row(
            f"mode{tag}",
            "conv: true convolution (kernel flipped)" if step["flipped"] else "corr: cross-correlation (kernel not flipped)",
        )
        table.add_row(f"padding{tag}", ", ".join(f"{b} before / {a} after" for b, a in step["padding"]) + f"   border {rep['border']}")
        table.add_row(f"stride / dilation{tag}", f"{'×'.join(map(str, step['stride']))} / {'×'.join(map(str, step['dilation']))}")
        table.add_row(f"output size{tag}", "\n".join(step["formula"]))
        table.add_row(f"parameters{tag}", step["params_formula"])
        table.add_row(f"MACs{tag}", f"{step['macs']:,}")
        table.add_row(f"method{tag}", f"{step['method']} ({step['seconds'] * 1000:.1f} ms)")
    table.add_row("output", f"{_fmt_shape(rep['output_shape'])}, {rep['output_dtype']} ({rep['format']})")
    mp = rep.get("mpixels_per_s")
    table.add_row("time", f"{rep['seconds'] * 1000:.1f} ms filtering" + (f", {mp:.1f} Mpixel/s" if mp else ""))
    stats = rep["stats"]
    lines = [f"all: min {_num(stats['min'])}  max {_num(stats['max'])}  mean {_num(stats['mean'])}  std {_num(stats['std'])}"]
    for c, st in enumerate(stats.get("per_channel", [])):
        lines.append(f"ch {c}: min {_num(st['min'])}  max {_num(st['max'])}  mean {_num(st['mean'])}  std {_num(st['std'])}")
    table.add_row("output stats", "\n".join(lines))
    table.add_row("clipped", f"{rep['clipped']:,} values" + (" (use --dtype float32 to keep them)" if rep["clipped"] else ""))
    if rep.get("alpha"):
        table.add_row("alpha", f"{rep['alpha']}")
    console.print(table)


def render_batch(console: Any, reps: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"convcli apply: {len(reps)} outputs", title_justify="left")
    for col in ("input", "output", "shape", "method", "ms", "clipped"):
        table.add_column(col, justify="right" if col in ("ms", "clipped") else "left", overflow="fold")
    for r in reps:
        table.add_row(escape(r["input"]), escape(r["output"]), "×".join(map(str, r["output_shape"])), r["method"], f"{r['seconds'] * 1000:.1f}", f"{r['clipped']:,}")
    console.print(table)
