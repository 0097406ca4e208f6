"""``convcli apply``: parse the options into typed values, plan the batch, run it, render it.
Everything else lives in :mod:`convcli.pipeline`."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..engine.names import METHODS, PRECISIONS, border_help
from ..io.limits import DEFAULT_MAX_PIXELS
from .common import handle_errors


class Mode(str, Enum):
    conv = "conv"
    corr = "corr"


class DType(str, Enum):
    keep = "keep"
    uint8 = "uint8"
    uint16 = "uint16"
    float32 = "float32"


class AlphaMode(str, Enum):
    keep = "keep"
    filter = "filter"


MethodChoice = Enum("MethodChoice", {m: m for m in METHODS}, type=str)  # type: ignore[misc]  # one list: METHODS
PrecisionChoice = Enum("PrecisionChoice", {p: p for p in PRECISIONS}, type=str)  # type: ignore[misc]


@handle_errors
def apply_command(
    inputs: Annotated[list[str], typer.Argument(help="Images, volumes (.tif stacks, .npy, .zarr stores), folders, quoted globs, or - for stdin.", show_default=False)],
    kernel: Annotated[list[str], typer.Option("--kernel", "-k", help="A named kernel (sobel-x, gaussian:sigma=2), a file (.txt .csv .npy .npz .json .mat) or numbers ('1 2 1; 0 0 0; -1 -2 -1'). Repeat to apply in sequence.", show_default=False)],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (one input; NAME.zarr runs block by block), or - for stdout with --format.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", "-O", help="Folder for the outputs of many inputs (created if missing).")] = None,
    name: Annotated[str, typer.Option("--name", help="Output name template: {stem} {suffix} {ext} {name}.")] = "{stem}{suffix}{ext}",
    suffix: Annotated[Optional[str], typer.Option("--suffix", help="The {suffix} in --name (default: _ and the kernel names).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Output format: png, jpg, tif, bmp, webp, npy (sets the extension).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", "-m", help="conv: true convolution (kernel flipped); corr: cross-correlation (deep learning's 'convolution').")] = Mode.conv,
    border: Annotated[str, typer.Option("--border", "-b", help=border_help())] = "reflect",
    padding: Annotated[str, typer.Option("--padding", "-p", help="same, valid, full, N, NxM, or B:A per side.")] = "same",
    stride: Annotated[str, typer.Option("--stride", "-s", help="N or per axis NxM[xL].")] = "1",
    dilation: Annotated[str, typer.Option("--dilation", "-d", help="N or per axis NxM[xL].")] = "1",
    cval: Annotated[float, typer.Option("--cval", help="Value outside the image for --border constant.")] = 0.0,
    method: Annotated[MethodChoice, typer.Option("--method", help="auto picks by a cost model.")] = MethodChoice("auto"),
    origin: Annotated[Optional[str], typer.Option("--origin", help="Anchor as scipy.ndimage's origin, N or per axis NxM[xL]: tap k//2+N lies over each pixel (default: the TensorFlow/PyTorch split, -1 for even kernels).")] = None,
    precision: Annotated[PrecisionChoice, typer.Option("--precision", help="auto: float32 sums (float64 for float64 input); float64: float64 sums for every input.")] = PrecisionChoice("auto"),
    normalize: Annotated[bool, typer.Option("--normalize", help="Divide each kernel by its sum (error for a zero-sum kernel).")] = False,
    scale: Annotated[float, typer.Option("--scale", help="Multiply the result.")] = 1.0,
    offset: Annotated[float, typer.Option("--offset", help="Add to the result (after --scale).")] = 0.0,
    absolute: Annotated[bool, typer.Option("--abs", help="Absolute value of the result (edge magnitudes).")] = False,
    dtype: Annotated[DType, typer.Option("--dtype", help="Output type: keep the input's, or uint8, uint16, float32. Integers are rounded and clipped.")] = DType.keep,
    alpha: Annotated[AlphaMode, typer.Option("--alpha", help="keep: alpha passes through unfiltered; filter: filter it like a colour.")] = AlphaMode.keep,
    keep_metadata: Annotated[bool, typer.Option("--keep-metadata", help="Copy EXIF/ICC/DPI to the output where the format allows.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resumable batches).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input on stdout (NDJSON).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No report, no progress; errors only.")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show Python tracebacks for errors.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Files processed at once (0: one per core).", min=0)] = 0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse larger images (decompression bombs); 0 disables.", min=0)] = DEFAULT_MAX_PIXELS,
    filters_dir: Annotated[Optional[list[Path]], typer.Option("--filters-dir", help="Extra folder of named kernels (also $CONVCLI_FILTERS).")] = None,
    stack: Annotated[bool, typer.Option("--stack", help="Read each folder or quoted glob as ONE volume of 2-D slices (natural order).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders of folder inputs.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed input.")] = False,
    compare: Annotated[Optional[str], typer.Option("--compare", help="Also draw input, output and difference side by side with their histograms: a .png (one input), a folder (ending in /) or a template such as '{stem}_cmp.png' (next to each output).", show_default=False)] = None,
    chunks: Annotated[Optional[str], typer.Option("--chunks", help="Zarr output chunks per spatial axis, e.g. 64,256,256 (default: the input's).", show_default=False)] = None,
    component: Annotated[str, typer.Option("--component", help="The array inside a Zarr group (default: the only array, or OME-Zarr level 0).")] = "",
    scheduler: Annotated[str, typer.Option("--scheduler", help="Where Zarr blocks run: threads, processes, or a dask.distributed scheduler tcp://HOST:PORT (which also takes a batch of files, one task per file).")] = "threads",
    workers: Annotated[int, typer.Option("--workers", help="Dask threads or processes for Zarr blocks (0: one per core).", min=0)] = 0,
) -> None:
    """Filter images and volumes with kernels and report the shapes, parameters and cost."""
    from ..engine.names import canonical_border
    from ..errors import ArgumentError, UsageError
    from ..kernels import KernelError, resolve
    from ..kernels.value import FLOAT32_MAX
    from ..pipeline.jobs import default_suffix, expand_inputs, plan_jobs
    from ..pipeline.options import BatchOptions, ChunkedOptions, FilterOptions, parse_axis_option, parse_chunks_option, parse_padding_option
    from ..pipeline.process import kernel_for
    from ..pipeline.runner import BatchRunner, silence_stdout
    from .common import err_console, out_console
    from .render import BlockProgress, CompileNotice, ProgressBar, render_outcome

    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other; pick one")
    for option, value in (("--scale", scale), ("--offset", offset)):
        if not abs(value) <= FLOAT32_MAX:  # NaN and Inf included: results are float32 for most inputs
            raise UsageError(f"{value!r} must be a finite number within float32's range (|x| <= 3.4e38)", option)
    if output == "-" and as_json:  # image bytes and NDJSON cannot share one stream
        raise UsageError("-o - writes the image to stdout, where --json would write too (drop --json, or write -o FILE)", "--json")
    from ..chunked.schedule import parse_scheduler

    parse_scheduler(scheduler, workers)  # a bad --scheduler is a usage error before anything runs
    from ..engine import tasks

    tasks.compiled(0)  # ... and so is a bad CONVCLI_BACKEND (it would otherwise fail every input)
    try:
        kernels = tuple(resolve(k, filters_dir or ()) for k in kernel)
        if normalize:
            for k in kernels:
                kernel_for(k, True)
    except KernelError as exc:
        raise UsageError(str(exc), "-k") from None
    try:
        canonical_border(border)
    except ArgumentError as exc:
        raise UsageError(str(exc), "--border") from None
    filter_opts = FilterOptions(
        kernels=kernels, mode=mode.value, border=border, padding=parse_padding_option(padding),
        stride=parse_axis_option(stride, "stride"), dilation=parse_axis_option(dilation, "dilation"),
        cval=cval, method=method.value, precision=precision.value, normalize=normalize,
        origin=None if origin is None else parse_axis_option(origin, "origin", minimum=None), scale=scale, offset=offset,
        absolute=absolute, dtype=dtype.value, alpha=alpha.value, summaries=as_json or not quiet,
    )  # fmt: skip
    batch_opts = BatchOptions(
        as_json=as_json, quiet=quiet, traceback=traceback, overwrite=overwrite, skip_existing=skip_existing,
        keep_metadata=keep_metadata, max_pixels=max_pixels, stack=stack, fail_fast=fail_fast, jobs=jobs,
        chunked=ChunkedOptions(parse_chunks_option(chunks), component, scheduler, workers),
    )  # fmt: skip
    expanded = expand_inputs(inputs, recursive=recursive, stack=stack)
    planned = plan_jobs(
        expanded, output=output, out_dir=out_dir, name=name, fmt=fmt, stack=stack,
        suffix=suffix if suffix is not None else default_suffix(kernels),
    )  # fmt: skip
    if compare is not None:
        from dataclasses import replace

        from ..pipeline.pictures import compare_paths

        paths = compare_paths(compare, [j.input for j in planned], [j.output for j in planned])
        planned = [replace(j, compare=p) for j, p in zip(planned, paths)]
    stdout_data = as_json or any(j.output is None for j in planned)
    console = err_console() if stdout_data else out_console()
    show_progress = not quiet and len(planned) > 1 and sys.stderr.isatty()
    from ..engine import tasks

    tasks.set_compile_notice(CompileNotice(err_console(), quiet=quiet))
    blocks = BlockProgress(err_console()) if not quiet and len(planned) == 1 and sys.stderr.isatty() else None
    runner = BatchRunner(
        planned, filter_opts, batch_opts, out=sys.stdout, out_bytes=sys.stdout.buffer, err=sys.stderr,
        progress=ProgressBar(len(planned), err_console()) if show_progress else None,
        block_progress=blocks,
    )  # fmt: skip
    outcome = runner.run()
    if blocks is not None:
        blocks.stop()
    if quiet:
        if outcome.interrupted:
            print("convcli: interrupted", file=sys.stderr)
    else:
        try:
            render_outcome(console, outcome, planned=len(planned), as_json=as_json)
        except BrokenPipeError:
            silence_stdout(sys.stdout)
    if runner.exit_now:  # a worker is blocked on stdin or a FIFO and would never join
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(outcome.exit_code))
    raise typer.Exit(int(outcome.exit_code))
