"""``convcli apply``: filter images and volumes, one file or a batch, and report what happened."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import ExitCode, err_console, error_line, fail, out_console


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


class MethodChoice(str, Enum):
    auto = "auto"
    direct = "direct"
    separable = "separable"
    fft = "fft"


@dataclass
class Job:
    input: str  # as given, or "-"
    output: Optional[Path]  # None: stdout
    fmt: str  # encoder name (PNG, TIFF, NPY, ...)


class Interrupted(Exception):
    pass


def _parse_axes_option(text: str, name: str, pairs: bool = False) -> Any:
    from ..layers import LayerError, parse_axes

    try:
        values = parse_axes(text, name, pairs=pairs)
    except LayerError as exc:
        fail("", str(exc))
    if isinstance(values, str):
        return values
    for v in values:
        low = min(v) if isinstance(v, tuple) else v
        if low < (0 if pairs else 1):
            fail("", f"--{name} {text!r}: " + ("padding cannot be negative" if pairs else "every value must be >= 1"))
    return values if len(values) > 1 else (values[0] if not pairs else values)


def _expand_inputs(inputs: list[str], recursive: bool, stack: bool) -> list[tuple[str, Path]]:
    """Folders and quoted globs become their image files, each with the subfolder it sits in below
    the folder given (mirrored under --out-dir); with ``--stack`` each item stays one input."""
    from ..io.read import list_images

    out: list[tuple[str, Path]] = []
    for item in inputs:
        p = Path(item)
        if item != "-" and not stack and (p.is_dir() or (not p.exists() and any(ch in item for ch in "*?["))):
            files = list_images(item, recursive)
            root = p if p.is_dir() else None
            out.extend((str(f), f.parent.relative_to(root) if root else Path()) for f in files)
            if not files:  # the item stays, and the reader reports it (empty folder, no such file)
                out.append((item, Path()))
        else:
            out.append((item, Path()))
    return out


def _suffix_for(kernels: list) -> str:
    import re

    name = "_".join(k.name for k in kernels)
    return "_" + re.sub(r"[^A-Za-z0-9.+-]+", "-", name).strip("-")


def _plan_jobs(inputs: list[tuple[str, Path]], output: Optional[str], out_dir: Optional[Path], name: str, fmt: Optional[str], suffix: str, stack: bool) -> list[Job]:
    from ..io.write import FORMAT_NAMES, FORMATS

    ext_override = None
    if fmt is not None:
        ext_override = FORMAT_NAMES.get(fmt.lower().lstrip("."))
        if ext_override is None:
            fail("--format", f"{fmt!r} is not one of {', '.join(sorted(FORMAT_NAMES))}")
    if output is not None and out_dir is not None:
        fail("", "give either -o/--output or --out-dir, not both")
    if output is None and out_dir is None:
        fail("", "say where results go: -o OUTPUT (one input) or --out-dir DIR")
    if output is not None and len(inputs) != 1:
        fail("-o", f"{len(inputs)} inputs but one output path; use --out-dir DIR for several inputs")
    jobs = []
    for item, subdir in inputs:
        if output == "-":
            if ext_override is None:
                fail("-o -", "writing to stdout needs --format (png, tiff, npy, ...)")
            jobs.append(Job(item, None, FORMATS[ext_override]))
            continue
        if output is not None:
            path = Path(output)
            if ext_override and FORMATS.get(path.suffix.lower()) != FORMATS[ext_override]:
                fail("-o", f"{output} and --format {fmt} disagree; drop --format or change the extension")
        else:
            assert out_dir is not None
            src = Path(item) if item != "-" else Path("stdin")
            stem = src.stem if not (stack and src.is_dir()) else src.name
            if stack and not src.is_dir() and item != "-":
                stem = Path(item).parent.name or "stack"
            ext = ext_override or (src.suffix.lower() if item != "-" and not stack else "")
            if not ext:
                ext = ".tif" if stack else ""
            if not ext:
                fail("-", "reading stdin into --out-dir needs --format to name the output")
            try:
                path = out_dir / subdir / name.format(stem=stem, suffix=suffix, ext=ext, name=src.name)
            except (KeyError, IndexError) as exc:
                fail("--name", f"{name!r} uses an unknown field {exc} (fields: stem, suffix, ext, name)")
        if path.suffix.lower() not in FORMATS:
            fail(str(path), f"unknown output extension {path.suffix!r} (use {', '.join(sorted(set(FORMATS)))})")
        jobs.append(Job(item, path, FORMATS[path.suffix.lower()]))
    writers: dict[Path, str] = {}
    for job in jobs:
        if job.output is not None:
            first = writers.setdefault(job.output.resolve(), job.input)
            if first != job.input:
                fail("--out-dir", f"{first} and {job.input} would both be written to {job.output} (rename one, change --name, or use separate calls)")
    return jobs


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def apply_command(
    inputs: Annotated[list[str], typer.Argument(help="Images, volumes (.tif stacks, .npy), folders, quoted globs, or - for stdin.", show_default=False)],
    kernel: Annotated[list[str], typer.Option("--kernel", "-k", help="A named kernel (sobel-x, gaussian:sigma=2), a file (.txt .csv .npy .npz .json .mat) or numbers ('1 2 1; 0 0 0; -1 -2 -1'). Repeat to apply in sequence.", show_default=False)],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (one input), or - for stdout with --format.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", "-O", help="Folder for the outputs of many inputs (created if missing).")] = None,
    name: Annotated[str, typer.Option("--name", help="Output name template: {stem} {suffix} {ext} {name}.")] = "{stem}{suffix}{ext}",
    suffix: Annotated[Optional[str], typer.Option("--suffix", help="The {suffix} in --name (default: _ and the kernel names).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Output format: png, jpg, tif, bmp, webp, npy (sets the extension).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", "-m", help="conv: true convolution (kernel flipped); corr: cross-correlation (deep learning's 'convolution').")] = Mode.conv,
    border: Annotated[str, typer.Option("--border", "-b", help="reflect, mirror, nearest, constant, wrap (aliases: symmetric, reflect101, replicate, edge, zero, circular, periodic).")] = "reflect",
    padding: Annotated[str, typer.Option("--padding", "-p", help="same, valid, full, N, NxM, or B:A per side.")] = "same",
    stride: Annotated[str, typer.Option("--stride", "-s", help="N or per axis NxM[xL].")] = "1",
    dilation: Annotated[str, typer.Option("--dilation", "-d", help="N or per axis NxM[xL].")] = "1",
    cval: Annotated[float, typer.Option("--cval", help="Value outside the image for --border constant.")] = 0.0,
    method: Annotated[MethodChoice, typer.Option("--method", help="auto picks by a cost model.")] = MethodChoice.auto,
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
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse larger images (decompression bombs); 0 disables.", min=0)] = 89_478_485,
    filters_dir: Annotated[Optional[list[Path]], typer.Option("--filters-dir", help="Extra folder of named kernels (also $CONVCLI_FILTERS).")] = None,
    stack: Annotated[bool, typer.Option("--stack", help="Read each folder or quoted glob as ONE volume of 2-D slices (natural order).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders of folder inputs.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed input.")] = False,
) -> None:
    """Filter images and volumes with kernels and report the shapes, parameters and cost."""
    from ..kernels import KernelError, resolve

    if overwrite and skip_existing:
        fail("", "--overwrite and --skip-existing contradict each other; pick one")
    try:
        kernels = [resolve(k, filters_dir or ()) for k in kernel]
    except KernelError as exc:
        fail("-k", str(exc))
    from ..engine._borders import canonical_border

    try:
        canonical_border(border)
    except ValueError as exc:
        fail("--border", str(exc))
    from .pipeline import Options

    opts = Options(
        kernels=kernels, mode=mode.value, border=border,
        padding=_parse_axes_option(padding, "padding", pairs=True),
        stride=_parse_axes_option(stride, "stride"), dilation=_parse_axes_option(dilation, "dilation"),
        cval=cval, method=method.value, normalize=normalize, scale=scale, offset=offset,
        absolute=absolute, dtype=dtype.value, alpha=alpha.value,
    )  # fmt: skip
    if normalize:
        from .pipeline import ProcessError, kernel_for

        for k in kernels:
            try:
                kernel_for(k, True)
            except ProcessError as exc:
                fail("-k", str(exc))

    expanded = _expand_inputs(inputs, recursive, stack)
    if sum(1 for i, _ in expanded if i == "-") > 1:
        fail("-", "stdin can be read only once")
    plan = _plan_jobs(expanded, output, out_dir, name, fmt, suffix if suffix is not None else _suffix_for(kernels), stack)
    # An input that another job of this call writes (a re-run into the same folder) is not an input.
    outputs = {j.output.resolve(): j for j in plan if j.output is not None}
    plan = [j for j in plan if j.input == "-" or outputs.get(Path(j.input).resolve(), j) is j]
    runner = BatchRunner(plan, opts, as_json=as_json, quiet=quiet, traceback=traceback, overwrite=overwrite,
                         skip_existing=skip_existing, keep_metadata=keep_metadata, max_pixels=max_pixels,
                         stack=stack, fail_fast=fail_fast, jobs=jobs)  # fmt: skip
    raise typer.Exit(int(runner.run()))


class BatchRunner:
    """Runs the jobs (serially or on a thread pool), streams NDJSON, reports, and picks the exit code."""

    def __init__(self, plan: list[Job], opts: Any, *, as_json: bool, quiet: bool, traceback: bool, overwrite: bool,
                 skip_existing: bool, keep_metadata: bool, max_pixels: int, stack: bool, fail_fast: bool, jobs: int) -> None:  # fmt: skip
        self.plan = plan
        self.opts = opts
        self.as_json = as_json
        self.quiet = quiet
        self.traceback = traceback
        self.overwrite = overwrite
        self.skip_existing = skip_existing
        self.keep_metadata = keep_metadata
        self.max_pixels = max_pixels
        self.stack = stack
        self.fail_fast = fail_fast
        cores = os.cpu_count() or 1
        self.jobs = max(1, min(jobs or cores, len(plan), cores))
        self.stdout_data = as_json or any(j.output is None for j in plan)
        self.counts = {"ok": 0, "error": 0, "skipped": 0}
        self.reports: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    # --- one input -------------------------------------------------------------------------
    def _run_one(self, job: Job) -> dict[str, Any]:
        from ..io.read import ReadError, read_input
        from ..io.write import WriteError, atomic_write, check_writable, encode
        from .pipeline import ProcessError, process

        t0 = time.perf_counter()
        base: dict[str, Any] = {"input": job.input, "output": str(job.output) if job.output else "-"}
        if job.output is not None:
            if job.input != "-" and _same_file(Path(job.input), job.output):
                return {**base, "status": "error", "error": f"the output {job.output} is this input; choose another name or folder"}
            if job.output.exists() or job.output.is_symlink():
                if self.skip_existing:
                    return {**base, "status": "skipped", "reason": "output exists"}
                if not self.overwrite:
                    return {**base, "status": "error", "error": f"output {job.output} exists (add --overwrite to replace it, or --skip-existing)"}
        try:
            image = read_input(job.input, self.max_pixels, stack=self.stack)
            result = process(image, self.opts)
            check_writable(result.array.shape, result.array.dtype, job.fmt, volume=image.is_volume)
            data = encode(result.array, job.fmt, image.info if self.keep_metadata else None)
            if self.stop.is_set():
                raise Interrupted
            if job.output is None:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                job.output.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(job.output, data)
        except (ReadError, ProcessError, WriteError, ValueError, TypeError) as exc:
            if self.traceback:
                import traceback as tb

                tb.print_exc()
            return {**base, "status": "error", "error": str(exc)}
        except MemoryError:
            return {**base, "status": "error", "error": "out of memory (try a smaller input, --method direct, or fewer --jobs)"}
        except Interrupted:
            raise
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            if self.traceback:
                import traceback as tb

                tb.print_exc()
            return {**base, "status": "error", "error": f"cannot write ({exc.strerror or exc}; check the folder's space and permissions)"}
        except Exception as exc:  # a bug: still one line per file, the batch goes on
            if self.traceback:
                import traceback as tb

                tb.print_exc()
            return {**base, "status": "error", "error": f"internal error {type(exc).__name__}: {exc} (rerun with --traceback and report it)"}
        report = {**result.report, "input": job.input, "output": base["output"], "format": job.fmt, "wall_seconds": time.perf_counter() - t0}
        return report

    # --- reporting ---------------------------------------------------------------------------
    def _emit(self, rep: dict[str, Any]) -> None:
        with self.lock:
            self.counts[rep["status"]] += 1
            self.reports.append(rep)
            if rep["status"] == "error":
                print(error_line(rep["input"], rep["error"]), file=sys.stderr, flush=True)
            if self.as_json:
                sys.stdout.write(json.dumps(_jsonable(rep)) + "\n")
                sys.stdout.flush()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only a flag: raising inside a running Numba call can surface as a SystemError. The file in
        # progress is finished but not written; a second Ctrl-C interrupts at once.
        self.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def run(self) -> ExitCode:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        progress = None
        t0 = time.perf_counter()
        try:
            progress = self._progress()
            if self.jobs > 1:
                self._configure_threads()
            from ..engine.api import warmup

            warmup(full=False)  # once per call, outside the per-input timings
            remaining = list(self.plan)
            if self.jobs == 1:
                for job in remaining:
                    if self._should_stop():
                        break
                    self._done(self._run_one(job), progress)
            else:
                self._run_pool(remaining, progress)
        except (KeyboardInterrupt, Interrupted):
            self.stop.set()
        except SystemError as exc:  # an interrupt that surfaced through a compiled call
            if not isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                raise
            self.stop.set()
        except BrokenPipeError:
            _silence_stdout()
            return ExitCode.OK if not self.counts["error"] else ExitCode.PARTIAL
        finally:
            if progress is not None:
                progress.stop()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        interrupted = self.stop.is_set()
        seconds = time.perf_counter() - t0
        try:
            self._final_report(seconds, interrupted)
        except BrokenPipeError:
            _silence_stdout()
        if interrupted:
            return ExitCode.INTERRUPTED
        if self.counts["error"] == 0:
            return ExitCode.OK
        return ExitCode.PARTIAL if self.counts["ok"] or self.counts["skipped"] else ExitCode.FAILED

    def _should_stop(self) -> bool:
        return self.stop.is_set() or (self.fail_fast and self.counts["error"] > 0)

    def _done(self, rep: dict[str, Any], progress: Any) -> None:
        self._emit(rep)
        if progress is not None:
            progress.advance(rep["input"])

    def _configure_threads(self) -> None:
        import numba

        if "NUMBA_THREADING_LAYER" not in os.environ:
            numba.config.THREADING_LAYER = "threadsafe"  # workqueue cannot run from several threads

    def _run_pool(self, remaining: list[Job], progress: Any) -> None:
        import numba

        per_worker = max(1, numba.config.NUMBA_NUM_THREADS // self.jobs)

        def work(job: Job) -> dict[str, Any]:
            numba.set_num_threads(per_worker)  # thread-local: workers x threads <= cores
            if self._should_stop():
                return {"input": job.input, "status": "skipped", "reason": "stopped"}
            return self._run_one(job)

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            pending: set[Future] = set()
            queue = list(remaining)
            try:
                while queue or pending:
                    while queue and len(pending) < 2 * self.jobs and not self._should_stop():
                        pending.add(pool.submit(work, queue.pop(0)))
                    if not pending:
                        break
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for fut in done:
                        rep = fut.result()
                        if rep.get("reason") != "stopped":
                            self._done(rep, progress)
            except BaseException:
                self.stop.set()
                for fut in pending:
                    fut.cancel()
                raise

    def _progress(self) -> Any:
        if self.quiet or len(self.plan) < 2 or not sys.stderr.isatty():
            return None
        return _Progress(len(self.plan))

    def _final_report(self, seconds: float, interrupted: bool) -> None:
        if self.quiet:
            if interrupted:
                print("convcli: interrupted", file=sys.stderr)
            return
        console = err_console() if self.stdout_data else out_console()
        from .report import render_batch, render_single

        oks = [r for r in self.reports if r["status"] == "ok"]
        if not self.as_json:
            if len(self.plan) == 1 and oks:
                render_single(console, oks[0])
            elif oks:
                render_batch(console, oks)
        if len(self.plan) > 1 or interrupted:
            n = self.counts["ok"]
            rate = n / seconds if seconds > 0 else 0.0
            console.print(
                f"{'interrupted: ' if interrupted else ''}ok {n}, failed {self.counts['error']}, "
                f"skipped {self.counts['skipped']} in {seconds:.2f} s ({rate:.1f} images/s)"
            )


class _Progress:
    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
            console=err_console(), transient=False,
        )  # fmt: skip
        self.start = time.perf_counter()
        self.task = self.p.add_task("filtering", total=total, rate="", current="")
        self.p.start()

    def advance(self, current: str) -> None:
        done = self.p.tasks[0].completed + 1
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.p.update(self.task, advance=1, rate=f"{rate:.1f}/s", current=Path(current).name)

    def stop(self) -> None:
        self.p.stop()


def _silence_stdout() -> None:
    # Python flushes stdout at exit; point it at devnull so a closed pipe ends quietly.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return obj
