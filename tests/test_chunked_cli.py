"""``convcli apply`` on chunked data through the real CLI: the same pixels as the in-memory path,
the JSON keys, every bad input as one line with its exit code and no store left, Ctrl-C, and the
refusal of a file too big for memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from convcli.cli.app import app

zarr = pytest.importorskip("zarr")
runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def volume(tmp: Path, shape: tuple[int, ...] = (12, 30, 34), chunks: tuple[int, ...] = (5, 16, 16)) -> np.ndarray:
    x = (np.random.default_rng(0).random(shape) * 3000).astype(np.uint16)
    np.save(tmp / "v.npy", x)
    arr = zarr.open_array(store=str(tmp / "v.zarr"), mode="w", shape=x.shape, chunks=chunks, dtype=x.dtype)
    arr[...] = x
    return x


@pytest.mark.parametrize("extra", [["--border", "wrap", "--stride", "2"], ["--border", "constant", "--cval", "700", "--dilation", "2"]])
def test_zarr_equals_in_memory_npy(tmp_path: Path, extra: list[str]) -> None:
    volume(tmp_path)
    common = ["-k", "0 1 2; 3 4 5; 6 7 8 | 1 0 0; 0 2 0; 0 0 1", "--method", "direct", "--normalize", *extra]
    ref = run("apply", tmp_path / "v.npy", "-o", tmp_path / "ref.npy", *common, "--json")
    assert ref.exit_code == 0, ref.output
    res = run("apply", tmp_path / "v.zarr", "-o", tmp_path / "out.zarr", "--chunks", "4,8,8", *common, "--json")
    assert res.exit_code == 0, res.output
    doc, ref_doc = json.loads(res.stdout), json.loads(ref.stdout)
    got = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...]
    assert np.array_equal(got, np.load(tmp_path / "ref.npy"))
    assert doc["chunks"] == [4, 8, 8] and doc["scheduler"] == "threads" and doc["workers"] >= 1
    assert doc["format"] == "ZARR" and doc["output_shape"] == ref_doc["output_shape"]
    for key in ("padding", "stride", "dilation", "formula", "params", "macs", "method", "clipped"):
        assert doc[key] == ref_doc[key], key
    for key in ("min", "max", "mean", "std"):
        assert doc["stats"][key] == pytest.approx(ref_doc["stats"][key], rel=1e-9)
    attrs = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r").attrs["convcli"]
    assert attrs["mode"] == "conv" and attrs["border"] == extra[1]


@pytest.mark.chunk_groups
def test_a_store_of_one_cell_chunks_equals_in_memory(tmp_path: Path) -> None:
    """As convcli runs it (small chunks read and filtered in groups): 1x1x1 chunks in and out."""
    volume(tmp_path, (6, 20, 24), (1, 1, 1))
    common = ["-k", "gaussian3d:sigma=1", "--method", "direct", "--json"]
    ref = run("apply", tmp_path / "v.npy", "-o", tmp_path / "ref.npy", *common)
    assert ref.exit_code == 0, ref.output
    res = run("apply", tmp_path / "v.zarr", "-o", tmp_path / "out.zarr", *common)
    assert res.exit_code == 0, res.output
    out = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")
    assert json.loads(res.stdout)["chunks"] == [1, 1, 1] and out.chunks == (1, 1, 1)
    assert np.array_equal(out[...], np.load(tmp_path / "ref.npy"))
    assert out.nchunks_initialized == 6 * 20 * 24


def test_npy_to_zarr_with_the_processes_scheduler(tmp_path: Path) -> None:
    x = volume(tmp_path)
    res = run("apply", tmp_path / "v.npy", "-o", tmp_path / "out.zarr", "-k", "box:3", "--method", "direct",
              "--scheduler", "processes", "--workers", "2", "--dtype", "float32", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["scheduler"] == "processes"
    import convcli

    ref = convcli.convolve(x, np.ones((1, 3, 3)) / 9.0, method="direct")
    assert np.array_equal(zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")[...], ref)


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    x = volume(tmp)
    zarr.open_array(store=str(tmp / "complex.zarr"), mode="w", shape=(4, 4), dtype="c8")
    zarr.open_array(store=str(tmp / "empty.zarr"), mode="w", shape=(0, 4, 4), dtype="u1")
    bad = zarr.open_array(store=str(tmp / "corrupt.zarr"), mode="w", shape=x.shape, chunks=(5, 16, 16), dtype=x.dtype)
    bad[...] = x
    next(p for p in (tmp / "corrupt.zarr").rglob("*") if p.is_file() and p.name != "zarr.json").write_bytes(b"\x00junk")
    (tmp / "unreadable.zarr").mkdir()
    (tmp / "unreadable.zarr" / "zarr.json").write_text("{")
    k = ["-k", "box:3"]
    return {
        "missing": (["apply", tmp / "nope.zarr", *k], 1, "no such file"),
        "corrupt": (["apply", tmp / "corrupt.zarr", *k], 1, "corrupt or unreadable chunk"),
        "unreadable": (["apply", tmp / "unreadable.zarr", *k], 1, "cannot open the Zarr store"),
        "complex": (["apply", tmp / "complex.zarr", *k], 1, "dtype complex64"),
        "empty": (["apply", tmp / "empty.zarr", *k], 1, "empty"),
        "scheduler": (["apply", tmp / "v.zarr", *k, "--scheduler", "tcp://127.0.0.1:9"], 1, "cannot reach the Dask scheduler"),
        "bad chunks": (["apply", tmp / "v.zarr", *k, "--chunks", "8,a"], 2, "--chunks"),
        "chunks axes": (["apply", tmp / "v.zarr", *k, "--chunks", "8,8"], 1, "2 sizes for 3 spatial axes"),
        "scheduler name": (["apply", tmp / "v.zarr", *k, "--scheduler", "mpi"], 2, "threads, processes or tcp"),
        "not zarr out": (["apply", tmp / "v.zarr", *k, "-o", tmp / "o.tif"], 1, "written as Zarr"),
    }


def test_bad_inputs_one_line_exit_code_no_store(tmp_path: Path) -> None:
    for name, (args, code, words) in _bad_inputs(tmp_path).items():
        out = tmp_path / "out.zarr"
        res = run(*args, *(["-o", out] if "-o" not in args else []))
        assert res.exit_code == code, (name, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("convcli: error: ") and words in lines[0], (name, lines)
        assert "Traceback" not in res.output
        assert not out.exists() and not list(tmp_path.glob(".*.part")), name


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    volume(tmp_path)
    (tmp_path / "out.zarr").mkdir()
    res = run("apply", tmp_path / "v.zarr", "-k", "box:3", "-o", tmp_path / "out.zarr")
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    res = run("apply", tmp_path / "v.zarr", "-k", "box:3", "-o", tmp_path / "out.zarr", "--overwrite", "-q")
    assert res.exit_code == 0, res.output
    assert zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r").shape == (12, 30, 34)


def test_too_big_for_memory_is_refused_naming_zarr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convcli.pipeline import chunked

    volume(tmp_path)
    monkeypatch.setattr(chunked, "available_memory", lambda: 1000)
    res = run("apply", tmp_path / "v.npy", "-k", "box:3", "-o", tmp_path / "out.npy")
    assert res.exit_code == 1
    assert "-o v.zarr" in res.stderr and "GB are available" in res.stderr
    assert not (tmp_path / "out.npy").exists()
    # and the chunked command it names works within that memory
    res = run("apply", tmp_path / "v.npy", "-k", "box:3", "-o", tmp_path / "out.zarr", "-q")
    assert res.exit_code == 0, res.output


def test_sigint_exit_130_and_no_store(tmp_path: Path) -> None:
    arr = zarr.open_array(store=str(tmp_path / "big.zarr"), mode="w", shape=(64, 256, 256), chunks=(4, 64, 64), dtype="u2")
    arr[...] = 7
    proc = subprocess.Popen([sys.executable, "-m", "convcli", "apply", str(tmp_path / "big.zarr"), "-k", "box:9",
                             "--method", "direct", "--workers", "1", "-o", str(tmp_path / "out.zarr")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.zarr.*.part/*")):  # blocks are being written
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.zarr"]


@pytest.mark.slow
def test_batch_of_files_on_a_cluster_matches_a_local_batch(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        np.save(src / f"f{i}.npy", (rng.random((6, 20, 22)) * 200).astype(np.uint8))
    (src / "broken.npy").write_bytes(b"not an array")
    args = ["apply", src, "-k", "sobel3d-x", "--json"]
    local = run(*args, "--out-dir", tmp_path / "local")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = run(*args, "--out-dir", tmp_path / "remote", "--scheduler", cluster.scheduler_address)
    assert local.exit_code == remote.exit_code == 3, remote.output  # partial: one input failed
    docs = {Path(d["input"]).name: d for d in map(json.loads, remote.stdout.splitlines())}
    ref = {Path(d["input"]).name: d for d in map(json.loads, local.stdout.splitlines())}
    assert docs.keys() == ref.keys() and docs["broken.npy"]["status"] == "error"
    for name in ("f0.npy", "f1.npy", "f2.npy"):
        assert docs[name]["output"] == str(tmp_path / "remote" / name.replace(".npy", "_sobel3d-x.npy"))
        assert docs[name]["stats"] == ref[name]["stats"]
        out = name.replace(".npy", "_sobel3d-x.npy")
        assert np.array_equal(np.load(tmp_path / "remote" / out), np.load(tmp_path / "local" / out))


def test_without_the_zarr_extra_the_error_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install convcli` without `[zarr]`: writing Zarr or naming a cluster is one line that
    says what to install, exit 1, no output left (not an internal error)."""
    import importlib.util

    np.save(tmp_path / "v.npy", np.ones((4, 5, 6), np.uint16))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("zarr", "distributed") else real(name, *a))
    res = run("apply", tmp_path / "v.npy", "-k", "box3d:3", "-o", tmp_path / "o.zarr")
    assert res.exit_code == 1, res.output
    assert "pip install 'convcli[zarr]'" in res.stderr and "internal error" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.zarr").exists()
    np.save(tmp_path / "w.npy", np.ones((4, 5, 6), np.uint16))
    res = run("apply", tmp_path / "v.npy", tmp_path / "w.npy", "-k", "box3d:3", "--out-dir", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:1")
    assert res.exit_code != 0 and "pip install 'convcli[zarr]'" in res.stderr and "internal error" not in res.stderr
