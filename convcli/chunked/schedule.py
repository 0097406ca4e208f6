"""Running independent tasks on Dask: the local threaded scheduler (default), local processes, or
an existing ``dask.distributed`` cluster (``tcp://HOST:PORT``). No scheduler of our own: Dask
orders and runs the tasks; this module only picks the pool sizes and reports progress.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import Interrupted, UsageError
from . import ChunkedError

Progress = Callable[[int, int], None]  # (tasks done, total)


@dataclass(frozen=True)
class Scheduler:
    kind: str  # "threads", "processes" or "distributed"
    address: str = ""
    workers: int = 1  # Dask threads or processes (for a cluster: filled in when connected)
    engine_threads: int = 0  # per Dask worker thread; 0: decided on the worker

    @property
    def name(self) -> str:
        return self.address or self.kind


def parse_scheduler(text: str = "threads", workers: int = 0) -> Scheduler:
    """``threads`` | ``processes`` | ``tcp://HOST:PORT`` (also ``tls://``); engine threads x Dask
    workers stay within the cores this process may use."""
    from ..engine.tasks import cores

    n = cores()
    if workers < 0:
        msg = f"--workers {workers}: give 0 (one per core) or more"
        raise UsageError(msg, "--workers")
    if text in ("threads", "processes"):
        w = workers or n
        return Scheduler(text, "", w, max(1, n // w))
    if "://" in text:
        host = text.split("://", 1)[1]
        if not host or ":" not in host:
            msg = f"--scheduler {text!r}: give the address as tcp://HOST:PORT"
            raise UsageError(msg, "--scheduler")
        return Scheduler("distributed", text, workers, 0)
    msg = f"--scheduler {text!r} is not threads, processes or tcp://HOST:PORT"
    raise UsageError(msg, "--scheduler")


def threadsafe_layer() -> None:
    """Dask threads call kernels concurrently: see :func:`convcli.engine.tasks.threadsafe_layer`."""
    from ..engine.tasks import threadsafe_layer as engine_threadsafe_layer

    engine_threadsafe_layer()


def run_tasks(
    func: Callable[..., Any],
    shared: Any,
    items: Sequence[Any],
    sched: Scheduler,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[Any], int]:
    """``[func(shared, *item) for item in items]`` on Dask (an item may hold Dask arrays: they
    arrive computed); returns the results and the number of Dask workers (threads or processes;
    for a cluster, its total threads)."""
    import dask

    total = len(items)
    common = dask.delayed(shared, traverse=False)  # one graph key, not one copy per task
    tasks = [dask.delayed(func, pure=False, traverse=False)(common, *item) for item in items]
    if sched.kind == "distributed":
        return _distributed(tasks, sched, progress, total, should_stop)
    pool: Executor
    get: Callable[..., Any]
    if sched.kind == "threads":
        import dask.threaded

        get = dask.threaded.get
        pool = ThreadPoolExecutor(sched.workers)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor  # (its import costs every apply 11 ms)

        import dask.multiprocessing

        get = dask.multiprocessing.get
        pool = ProcessPoolExecutor(sched.workers, mp_context=multiprocessing.get_context("spawn"))
    keys = {t.key for t in tasks}
    try:
        with _callback(keys, total, progress, should_stop):
            # the scheduler's function, not its name: a name makes Dask import distributed to look
            # for a client first (0.25 s per local run)
            results = dask.compute(*tasks, scheduler=get, pool=pool, num_workers=sched.workers)
    finally:
        # wait for blocks already running, so the caller can remove the store behind them
        pool.shutdown(wait=True, cancel_futures=True)
    return list(results), sched.workers


def _callback(keys: set[Any], total: int, progress: Progress | None, should_stop: Callable[[], bool] | None) -> Any:
    """A Dask callback that counts finished blocks and stops the run between tasks on request
    (it runs in the scheduler's own loop, so raising there ends ``dask.compute``)."""
    from dask.callbacks import Callback

    done = [0]

    def pretask(key: Any, dsk: Any, state: Any) -> None:
        if should_stop is not None and should_stop():
            raise Interrupted("interrupted")

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in keys:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

    return Callback(pretask=pretask, posttask=posttask)


def connect(address: str) -> Any:
    """A ``dask.distributed`` client of the scheduler at ``address`` (not made the default)."""
    from . import require_extras

    require_extras(("distributed",))
    from distributed import Client

    try:
        return Client(address, timeout="5s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        msg = f"cannot reach the Dask scheduler at {address} ({exc}); start one with `dask scheduler` or check the address"
        raise ChunkedError(msg) from None


def _distributed(tasks: list[Any], sched: Scheduler, progress: Progress | None, total: int, should_stop: Callable[[], bool] | None) -> tuple[list[Any], int]:
    from distributed import as_completed

    client = connect(sched.address)
    try:
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        if threads == 0:
            msg = f"the Dask scheduler at {sched.address} has no workers (start some with `dask worker {sched.address}`)"
            raise ChunkedError(msg)
        futures = client.compute(tasks)
        try:
            for done, _ in enumerate(as_completed(futures, loop=client.loop), start=1):
                if should_stop is not None and should_stop():
                    raise Interrupted("interrupted")
                if progress:
                    progress(done, total)
            results = client.gather(futures)
        except BaseException:
            client.cancel(futures)
            raise
        return list(results), threads
    finally:
        client.close()
