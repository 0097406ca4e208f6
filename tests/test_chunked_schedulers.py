"""The same chunked result on Dask's process scheduler, on a ``dask.distributed`` cluster of two
worker processes, and an interrupted run (SIGINT) that leaves no output store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import convcli

zarr = pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")
from convcli.chunked.run import filter_to_zarr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    x = (np.random.default_rng(0).random((9, 20, 22)) * 1000).astype(np.uint16)
    arr = zarr.open_array(store=str(tmp_path / "in.zarr"), mode="w", shape=x.shape, chunks=(4, 8, 8), dtype=x.dtype)
    arr[...] = x
    k = np.random.default_rng(1).random((3, 2, 3))
    ref = convcli.convolve(x, k, border="mirror", stride=(1, 2, 1), method="direct")
    return tmp_path, x, k, ref


def test_processes_scheduler(data: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    tmp, _, k, ref = data
    res = filter_to_zarr(tmp / "in.zarr", k, tmp / "out.zarr", mode="conv", border="mirror", stride=(1, 2, 1),
                         method="direct", dtype="float32", scheduler="processes", workers=2)  # fmt: skip
    assert res.report()["scheduler"] == "processes" and res.report()["workers"] == 2
    assert np.array_equal(zarr.open_array(store=str(tmp / "out.zarr"), mode="r")[...], ref)


def test_a_local_threaded_run_does_not_import_distributed(data: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Dask imports ``distributed`` (0.25 s) to look for a client when given a scheduler's name."""
    tmp = data[0]
    code = (
        "import sys, numpy as np\nfrom convcli.chunked.run import filter_to_zarr\n"
        f"filter_to_zarr({str(tmp / 'in.zarr')!r}, np.ones((3, 3, 3)), {str(tmp / 'out.zarr')!r})\n"
        "print('distributed' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
    assert zarr.open_array(store=str(tmp / "out.zarr"), mode="r").shape == (9, 20, 22)


@pytest.mark.slow
def test_local_cluster_two_worker_processes(data: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> None:
    tmp, _, k, ref = data
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        seen: list[tuple[int, int]] = []
        res = filter_to_zarr(tmp / "in.zarr", k, tmp / "out.zarr", mode="conv", border="mirror", stride=(1, 2, 1),
                             method="direct", dtype="float32", scheduler=cluster.scheduler_address,
                             progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert res.report()["scheduler"].startswith("tcp://") and res.report()["workers"] == 2
    assert seen[-1][0] == seen[-1][1] == res.grid.count
    assert np.array_equal(zarr.open_array(store=str(tmp / "out.zarr"), mode="r")[...], ref)


SLOW_RUN = """
import signal, sys, numpy as np, zarr
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background job of a
# non-interactive shell (`pytest &` in a script) starts with SIGINT ignored, and so would this child
from convcli.chunked.run import filter_to_zarr
x = zarr.open_array(store=sys.argv[1], mode="w", shape=(64, 256, 256), chunks=(4, 64, 64), dtype="u2")
x[...] = 1
print("ready", flush=True)
filter_to_zarr(sys.argv[1], np.ones((9, 9, 9)), sys.argv[2], method="direct", workers=1)
"""


def test_sigint_leaves_no_store(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".part") for p in tmp_path.iterdir()):  # the run has started writing
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]
