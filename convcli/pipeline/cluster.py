"""A batch of files on a ``dask.distributed`` cluster: one task per file, run by the same
:meth:`BatchRunner.run_one` as a local batch, so outputs, reports and errors are the same."""

from __future__ import annotations

import io
import sys

from .jobs import Job
from .options import BatchOptions, FilterOptions
from .report import FileReport


def remote_run_one(job: Job, filter_opts: FilterOptions, opts: BatchOptions) -> tuple[FileReport, bool]:
    """On a worker: one file as a local batch would run it; returns its report and whether it
    was an internal error (a bug), which ends the batch with exit 1."""
    from ..chunked.schedule import threadsafe_layer
    from .runner import BatchRunner

    threadsafe_layer()  # a worker may run several files at once

    err = io.StringIO()
    runner = BatchRunner([job], filter_opts, opts, out=io.StringIO(), out_bytes=sys.stdout.buffer, err=err)
    rep = runner.run_one(job)
    return rep, runner.internal_error
