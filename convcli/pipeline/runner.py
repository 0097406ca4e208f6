"""Running a planned batch: one input after another or on a thread pool, NDJSON and error lines
streamed as each input finishes, Ctrl-C/SIGTERM/SIGHUP as a stop flag, and the exit code.

Streams and the progress display are injected, so the runner works (and is tested) without Typer.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from ..errors import ConvcliError, ExitCode, Interrupted, ProcessError, error_line
from .jobs import Job, same_file
from .options import BatchOptions, FilterOptions
from .report import FileReport

if TYPE_CHECKING:
    from ..io.read import ImageData
    from .process import Result


# Ctrl-C, kill, and a closed terminal: each stops the batch cleanly (no temporary file left), exit 130.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Progress(Protocol):
    def advance(self, current: str) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class BatchOutcome:
    reports: list[FileReport]  # in the order inputs finished
    seconds: float
    interrupted: bool
    exit_code: ExitCode

    def count(self, status: str) -> int:
        return sum(1 for r in self.reports if r.status == status)


NOT_RUN = "not run: --fail-fast stopped at the first failure"


class BatchRunner:
    """Runs the jobs, streams NDJSON and error lines, and picks the exit code."""

    def __init__(
        self,
        jobs: Sequence[Job],
        filter_opts: FilterOptions,
        opts: BatchOptions,
        *,
        out: IO[str],
        out_bytes: IO[bytes],
        err: IO[str],
        progress: Progress | None = None,
        block_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.filter_opts = filter_opts
        self.opts = opts
        self.out, self.out_bytes, self.err = out, out_bytes, err
        self.progress = progress
        self.block_progress = block_progress  # blocks done / total of a chunked input
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = max(1, min(opts.jobs or cores, len(self.jobs), cores))
        self.reports: list[FileReport] = []
        self.internal_error = False
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.readers: set[int] = set()  # threads blocked in a read (a signal must not wait for them)
        self.exit_now = False  # the caller should end the process without joining those threads

    # --- one input -----------------------------------------------------------------------------
    def run_one(self, job: Job) -> FileReport:
        from ..io.write import OutputExists, atomic_write, check_writable, encode, payload
        from .chunked import check_fits, is_chunked
        from .pictures import refuse_existing, write_png
        from .process import process

        t0 = time.perf_counter()
        output = str(job.output) if job.output else "-"
        if job.output is not None:
            if job.input != "-" and same_file(Path(job.input), job.output):
                return FileReport(job.input, output, "error", error=f"the output {job.output} is this input; choose another name or folder")
            if job.output.exists() or job.output.is_symlink():
                if self.opts.skip_existing:
                    return FileReport(job.input, output, "skipped", reason="output exists")
                if not self.opts.overwrite:
                    return FileReport(job.input, output, "error", error=f"output {job.output} exists (add --overwrite to replace it, or --skip-existing)")
        try:
            if is_chunked(job) and not self.opts.stack:
                return self._run_chunked(job, output, t0)
            if job.compare is not None:
                refuse_existing(job.compare, self.opts.overwrite)  # before the work, not after it
            if not self.opts.stack:
                check_fits(job, self.opts.max_pixels)
            image = self._read(job)
            result = process(image, self.filter_opts, self.opts.max_pixels)
            check_writable(result.array.shape, result.array.dtype, job.fmt, volume=image.is_volume)
            # stdout takes bytes; a file is written from the array as it is where the format allows
            # (TIFF: channels as samples, not pages; alpha tagged while the last channel still is one)
            banked = any(k.bank for k in self.filter_opts.kernels)  # (a bank's last output channel mixes all inputs)
            alpha = result.report.alpha == "kept" or (result.report.alpha == "filtered" and not banked)
            data = (encode if job.output is None else payload)(
                result.array, job.fmt, image.info if self.opts.keep_metadata else None, volume=image.is_volume, alpha=alpha
            )
            # drawn before anything is written: a picture that cannot be drawn leaves no output
            picture = self._compare_png(job, image, result) if job.compare is not None else None
            if self.stop.is_set():
                raise Interrupted("interrupted")
            if picture is not None and job.compare is not None:
                # the picture first: if it cannot be written, neither is the output
                write_png(picture, job.compare, overwrite=self.opts.overwrite)
            try:
                if job.output is None:
                    assert isinstance(data, bytes)  # (encode's)
                    self.out_bytes.write(data)
                    self.out_bytes.flush()
                else:
                    job.output.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(job.output, data, overwrite=self.opts.overwrite)
            except BaseException:
                if picture is not None and job.compare is not None:
                    job.compare.unlink(missing_ok=True)  # no picture of an output that was not written
                raise
        except Interrupted:
            raise
        except OutputExists as exc:  # another run published this name while we were working
            if self.opts.skip_existing:
                return FileReport(job.input, output, "skipped", reason="output exists")
            return FileReport(job.input, output, "error", error=str(exc))
        except ConvcliError as exc:
            self._traceback()
            return FileReport(job.input, output, "error", error=str(exc))
        except MemoryError:
            return FileReport(job.input, output, "error", error="out of memory (try a smaller input, --method direct, or fewer --jobs)")
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._traceback()
            return FileReport(job.input, output, "error", error=f"cannot write ({exc.strerror or exc}; check the folder's space and permissions)")
        except Exception as exc:  # a bug: one line, and the batch stops with exit 1
            self._traceback()
            self.internal_error = True
            return FileReport(job.input, output, "error", error=f"internal error {type(exc).__name__}: {exc} (rerun with --traceback and report it)")
        return FileReport(job.input, output, "ok", filtered=result.report, format=job.fmt, wall_seconds=time.perf_counter() - t0,
                          compare=str(job.compare) if job.compare is not None else None)  # fmt: skip

    def _run_chunked(self, job: Job, output: str, t0: float) -> FileReport:
        """A Zarr input or output, block by block on Dask (errors go to run_one's handlers)."""
        from .chunked import process_chunked

        if job.compare is not None:
            raise ProcessError("--compare draws in-memory results; a chunked (Zarr) run has none to draw")
        filtered = process_chunked(job, self.filter_opts, self.opts.chunked, overwrite=self.opts.overwrite,
                                   progress=self.block_progress, should_stop=self.stop.is_set)  # fmt: skip
        return FileReport(job.input, output, "ok", filtered=filtered, format=job.fmt, wall_seconds=time.perf_counter() - t0)

    def _compare_png(self, job: Job, image: ImageData, result: Result) -> bytes:
        """Input, output and difference side by side (``--compare``), as PNG bytes."""
        from ..viz.compare import compare_figure
        from .pictures import compare_caption

        doc = FileReport(job.input, str(job.output) if job.output else "-", "ok", filtered=result.report, format=job.fmt).to_json()
        figure = compare_figure(image.array, result.array, spatial_ndim=3 if image.is_volume else 2, caption=compare_caption(doc))
        return figure.png()

    def _read(self, job: Job) -> ImageData:
        """Read one input, marked as a blocking read: a signal ends it (stdin, a FIFO) instead of
        waiting for data that may never come."""
        from ..io.read import read_input

        me = threading.get_ident()
        with self.lock:
            if self.stop.is_set():
                raise Interrupted("interrupted")
            self.readers.add(me)
        try:
            return read_input(job.input, self.opts.max_pixels, stack=self.opts.stack)
        finally:
            with self.lock:
                self.readers.discard(me)

    def _traceback(self) -> None:
        if self.opts.traceback:
            import traceback

            traceback.print_exc(file=self.err)

    # --- the batch -----------------------------------------------------------------------------
    def run(self) -> BatchOutcome:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                handlers[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        t0 = time.perf_counter()
        try:
            if "://" in self.opts.chunked.scheduler and any(j.output is not None for j in self.jobs):
                self._run_cluster()
            elif self.workers == 1:
                for job in self.jobs:
                    if self._should_stop():
                        break
                    self._done(self.run_one(job))
            else:
                self._run_pool()
            if self.opts.fail_fast and self._count("error") and not self.stop.is_set():
                # every input the stop left unstarted gets its line too, so a pipeline sees it
                started = {r.input for r in self.reports}
                for job in self.jobs:
                    if job.input not in started:
                        self._done(FileReport(job.input, str(job.output) if job.output else "-", "skipped", reason=NOT_RUN))
        except (KeyboardInterrupt, Interrupted):
            self.stop.set()
        except SystemError as exc:  # an interrupt that surfaced through a compiled call
            if not isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                raise
            self.stop.set()
        except BrokenPipeError:  # the reader of stdout stopped (| head): end quietly
            silence_stdout(self.out)
            code = ExitCode.OK if not self._count("error") else ExitCode.PARTIAL
            return BatchOutcome(self.reports, time.perf_counter() - t0, False, code)
        finally:
            if self.progress is not None:
                self.progress.stop()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        interrupted = self.stop.is_set()
        if interrupted and self.readers:
            self.exit_now = True  # a worker blocked on stdin or a FIFO (it holds no output) would never join
        return BatchOutcome(self.reports, time.perf_counter() - t0, interrupted, self._exit_code(interrupted))

    def _exit_code(self, interrupted: bool) -> ExitCode:
        if interrupted:
            return ExitCode.INTERRUPTED
        if self.internal_error:
            return ExitCode.FAILED
        if self._count("error") == 0:
            return ExitCode.OK
        skipped = sum(1 for r in self.reports if r.status == "skipped" and r.reason != NOT_RUN)
        return ExitCode.PARTIAL if self._count("ok") or skipped else ExitCode.FAILED

    def _count(self, status: str) -> int:
        return sum(1 for r in self.reports if r.status == status)

    def _should_stop(self) -> bool:
        return self.stop.is_set() or self.internal_error or (self.opts.fail_fast and self._count("error") > 0)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only a flag: raising inside a running Numba call can surface as a SystemError. The file in
        # progress is finished but not written; a second Ctrl-C (or TERM, HUP) interrupts at once.
        self.stop.set()
        for sig in STOP_SIGNALS:  # (any of them, whichever came first)
            signal.signal(sig, signal.default_int_handler)
        if threading.main_thread().ident in self.readers:
            raise Interrupted("interrupted")  # the main thread is blocked reading (stdin, a FIFO): end that read

    def _done(self, rep: FileReport) -> None:
        with self.lock:
            self.reports.append(rep)
            if rep.status == "error":
                print(error_line(rep.input, rep.error or ""), file=self.err, flush=True)
            if self.opts.as_json:
                self.out.write(json.dumps(rep.to_json()) + "\n")
                self.out.flush()
        if self.progress is not None:
            self.progress.advance(rep.input)

    def _run_pool(self) -> None:
        from ..engine import tasks

        tasks.threadsafe_layer()  # workers run kernels at once

        per_worker = max(1, tasks.cores() // self.workers)

        def work(job: Job) -> FileReport | None:
            if self._should_stop():
                return None
            with tasks.using_threads(per_worker):  # workers x threads <= cores
                return self.run_one(job)

        pool = ThreadPoolExecutor(max_workers=self.workers)
        pending: set[Future[FileReport | None]] = set()
        queue = list(self.jobs)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * self.workers and not self._should_stop():
                    pending.add(pool.submit(work, queue.pop(0)))
                if not pending or (self.stop.is_set() and self.readers):
                    break  # workers blocked reading would never finish: do not wait for them
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    rep = fut.result()
                    if rep is not None:
                        self._done(rep)
        except BaseException:
            self.stop.set()
            raise
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=not self.readers, cancel_futures=True)


    def _run_cluster(self) -> None:
        """One task per file on a ``dask.distributed`` cluster; chunked inputs (and stdout
        outputs) run from here, their blocks on the same cluster. Paths go out absolute: the
        workers' folders may differ, so inputs and outputs must be paths every worker can reach."""
        from ..chunked.schedule import connect
        from .chunked import is_chunked
        from .cluster import remote_run_one

        here = [j for j in self.jobs if j.output is None or is_chunked(j)]
        remote = [j for j in self.jobs if j not in here]
        client = connect(self.opts.chunked.scheduler)
        try:
            from distributed import as_completed

            futures = {client.submit(remote_run_one, _absolute(job), self.filter_opts, self.opts, pure=False): job for job in remote}
            try:
                for fut in as_completed(list(futures), loop=client.loop):
                    if self._should_stop():
                        break
                    rep, internal = fut.result()
                    self.internal_error |= internal
                    job = futures[fut]
                    self._done(replace(rep, input=job.input, output=str(job.output)))
            finally:
                client.cancel(list(futures))
        finally:
            client.close()
        for job in here:
            if self._should_stop():
                break
            self._done(self.run_one(job))


def _absolute(job: Job) -> Job:
    return Job(str(Path(job.input).absolute()) if job.input != "-" else "-", job.output.absolute() if job.output else None, job.fmt)


def silence_stdout(out: IO[str]) -> None:
    # Python flushes stdout at exit; point it at devnull so a closed pipe ends quietly.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError, AttributeError):
        pass
