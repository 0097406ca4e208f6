"""Batches and pipelines through the real CLI: many inputs, NDJSON, exit codes, stdin/stdout,
Ctrl-C, a closed pipe, and results independent of --jobs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convcli.cli.app import app

from .naive import naive_correlate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
BAD = Path(__file__).resolve().parent / "data" / "bad"
runner = CliRunner()
CLI = [sys.executable, "-m", "convcli"]


def make_batch(folder: Path, n: int, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_folder_to_out_dir_with_default_names(tmp_path):
    paths = make_batch(tmp_path / "in", 5)
    res = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "sobel-x", "--out-dir", str(tmp_path / "out" / "deep"), "--json"])
    assert res.exit_code == 0, res.stderr
    docs = ndjson(res.stdout)
    assert sorted(d["status"] for d in docs) == ["ok"] * 5
    for p in paths:
        out = tmp_path / "out" / "deep" / f"{p.stem}_sobel-x.png"
        src = np.asarray(Image.open(p)).astype(float)
        ref = naive_correlate(src, np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float), flip=True)
        np.testing.assert_array_equal(np.asarray(Image.open(out)), np.clip(np.rint(ref), 0, 255).astype(np.uint8))


def test_name_template_format_and_glob(tmp_path):
    make_batch(tmp_path / "in", 3)
    res = runner.invoke(app, ["apply", str(tmp_path / "in" / "img*.png"), "-k", "box:3", "-O", str(tmp_path / "o"),
                              "--name", "{stem}-blur{ext}", "--format", "tif", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["img0-blur.tif", "img1-blur.tif", "img2-blur.tif"]


def test_outputs_of_the_same_call_are_not_inputs(tmp_path):
    make_batch(tmp_path / "in", 2)
    args = ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(tmp_path / "in"), "--json"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, [*args, "--skip-existing"])
    docs = ndjson(res.stdout)
    assert [d["status"] for d in docs] == ["skipped", "skipped"]
    assert len(list((tmp_path / "in").iterdir())) == 4


def test_one_bad_file_among_good_ones_gives_exit_3(tmp_path):
    paths = make_batch(tmp_path / "in", 3)
    for bad in ("truncated.png", "bomb.png", "empty.png"):
        shutil.copy(BAD / bad, tmp_path / "in" / bad)
    res = runner.invoke(app, ["apply", str(tmp_path / "in"), str(tmp_path / "missing.png"), "-k", "box:3",
                              "-O", str(tmp_path / "out"), "--json"])  # fmt: skip
    assert res.exit_code == 3
    docs = {Path(d["input"]).name: d for d in ndjson(res.stdout)}
    assert {n for n, d in docs.items() if d["status"] == "ok"} == {p.name for p in paths}
    assert {n for n, d in docs.items() if d["status"] == "error"} == {"truncated.png", "bomb.png", "empty.png", "missing.png"}
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("convcli: error:")]
    assert len(errors) == 4 and all("Traceback" not in ln for ln in res.stderr.splitlines())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{p.stem}_box-3.png" for p in paths)


def test_all_failed_is_exit_1_and_fail_fast_stops(tmp_path):
    res = runner.invoke(app, ["apply", str(BAD / "empty.png"), "-k", "box:3", "-O", str(tmp_path)])
    assert res.exit_code == 1
    make_batch(tmp_path / "in", 3)
    shutil.copy(BAD / "empty.png", tmp_path / "in" / "a_empty.png")
    res = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(tmp_path / "o"), "--fail-fast", "--jobs", "1", "--json"])
    assert res.exit_code == 1  # (the inputs --fail-fast left unstarted do not make it partial)
    docs = ndjson(res.stdout)
    assert [d["status"] for d in docs] == ["error", "skipped", "skipped", "skipped"]  # a line for every input
    assert all("--fail-fast" in d["reason"] for d in docs[1:]) and not (tmp_path / "o").exists()


def test_existing_outputs_error_skip_or_overwrite(tmp_path):
    make_batch(tmp_path / "in", 2)
    out = tmp_path / "o"
    out.mkdir()
    (out / "img0_box-3.png").write_bytes(b"old")
    res = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(out), "--json"])
    assert res.exit_code == 3 and (out / "img0_box-3.png").read_bytes() == b"old"
    assert "--overwrite" in res.stderr
    res = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(out), "--overwrite", "-q"])
    assert res.exit_code == 0 and (out / "img0_box-3.png").read_bytes()[:4] == b"\x89PNG"


def test_jobs_do_not_change_results(tmp_path):
    make_batch(tmp_path / "in", 6, size=96)
    for jobs in ("1", "2"):
        res = subprocess.run([*CLI, "apply", str(tmp_path / "in"), "-k", "gaussian:sigma=2", "-k", "emboss", "-O",
                              str(tmp_path / f"j{jobs}"), "--jobs", jobs, "--format", "npy", "-q"], capture_output=True)  # fmt: skip
        assert res.returncode == 0, res.stderr
    for f in (tmp_path / "j1").iterdir():
        np.testing.assert_array_equal(np.load(f), np.load(tmp_path / "j2" / f.name))


def test_stdin_to_stdout_chain(tmp_path):
    first = subprocess.run([*CLI, "apply", "-", "-k", "box:3", "-o", "-", "--format", "png"],
                           input=(SAMPLES / "camera.png").read_bytes(), capture_output=True)  # fmt: skip
    assert first.returncode == 0 and first.stdout[:4] == b"\x89PNG"
    assert b"convcli apply" in first.stderr  # the report goes to stderr when stdout carries data
    second = subprocess.run([*CLI, "apply", "-", "-k", "laplacian", "--dtype", "float32", "-o", "-", "--format", "npy", "-q"],
                            input=first.stdout, capture_output=True)  # fmt: skip
    assert second.returncode == 0
    import io

    got = np.load(io.BytesIO(second.stdout))
    src = np.asarray(Image.open(SAMPLES / "camera.png")).astype(float)
    blurred = np.clip(np.rint(naive_correlate(src, np.ones((3, 3)) / 9)), 0, 255)
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float)
    np.testing.assert_allclose(got, naive_correlate(blurred, lap), atol=1e-3)


def test_stdout_needs_format():
    res = runner.invoke(app, ["apply", "-", "-k", "box:3", "-o", "-"], input=b"")
    assert res.exit_code == 2 and "--format" in res.stderr


def test_pipe_into_head_ends_quietly(tmp_path):
    make_batch(tmp_path / "in", 30)
    cmd = f"{sys.executable} -m convcli apply {tmp_path / 'in'} -k box:3 -O {tmp_path / 'o'} --json --jobs 1 | head -n 1"
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert len(res.stdout.splitlines()) == 1 and json.loads(res.stdout)["status"] == "ok"
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
    assert not list((tmp_path / "o").glob("*.part"))


def _start_slow_batch(tmp_path: Path, jobs: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    """A 200-file batch, returned once it has written two outputs."""
    make_batch(tmp_path / "in", 200, size=256)
    out = tmp_path / "o"
    proc = subprocess.Popen([*CLI, "apply", str(tmp_path / "in"), "-k", "gaussian:sigma=4", "--method", "direct",
                             "-O", str(out), "--jobs", jobs, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(list(out.glob("*.png"))) < 2):
        time.sleep(0.05)
    return proc, out


def test_ctrl_c_keeps_finished_outputs_and_leaves_no_partial_file(tmp_path):
    proc, out = _start_slow_batch(tmp_path, "1")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr and b"interrupted" in stdout + stderr
    written = list(out.iterdir())
    assert 2 <= len(written) < 200
    assert not [p for p in written if p.name.endswith(".part") or p.name.startswith(".")]
    for p in written:
        assert np.asarray(Image.open(p)).shape == (256, 256, 3)


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    proc, out = _start_slow_batch(tmp_path, "2", "-q")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    written = list(out.iterdir())
    assert 2 <= len(written) < 200
    assert not [p for p in written if p.name.endswith(".part")]


def test_permission_denied_on_one_output_folder(tmp_path):
    if os.geteuid() == 0:
        # root ignores folder permissions; a file standing where a folder must be fails for everyone
        blocker = tmp_path / "blocked"
        blocker.write_text("a file, not a folder")
        target = blocker / "sub"
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    make_batch(tmp_path / "in", 2)
    res = runner.invoke(app, ["apply", str(tmp_path / "in" / "img0.png"), "-k", "box:3", "-o", str(target / "x.png")])
    assert res.exit_code == 1 and "cannot write" in res.stderr and "Traceback" not in res.stderr


def test_one_output_that_cannot_be_written_gives_exit_3(tmp_path):
    """A write failure on one output (here a folder standing at its path, as a full disk or a
    permission error would) fails that input only; the rest are written."""
    make_batch(tmp_path / "in", 3)
    out = tmp_path / "o"
    (out / "img1_box-3.png").mkdir(parents=True)
    res = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(out), "--overwrite", "--json"])
    assert res.exit_code == 3, res.stderr
    docs = {Path(d["input"]).name: d for d in ndjson(res.stdout)}
    assert docs["img1.png"]["status"] == "error" and "cannot write" in docs["img1.png"]["error"]
    assert docs["img0.png"]["status"] == docs["img2.png"]["status"] == "ok"
    assert (out / "img1_box-3.png").is_dir()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_progress_bar_on_a_terminal_and_summary(tmp_path):
    """stderr on a pseudo-terminal shows a progress bar; piped stderr does not."""
    import pty

    make_batch(tmp_path / "in", 4)
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, "apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(tmp_path / "o"), "--json"],
                            stdout=subprocess.DEVNULL, stderr=slave, env={**os.environ, "COLUMNS": "120"})  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    tty_err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "filtering" in tty_err and "4/4" in tty_err and "/s" in tty_err
    assert "ok 4, failed 0, skipped 0" in tty_err
    piped = subprocess.run([*CLI, "apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(tmp_path / "p"), "--json"],
                           capture_output=True, text=True)  # fmt: skip
    assert "filtering" not in piped.stderr and "ok 4, failed 0" in piped.stderr


def test_recursive_descends_into_subfolders_and_skips_hidden_files(tmp_path):
    make_batch(tmp_path / "in", 1)
    make_batch(tmp_path / "in" / "sub" / "deeper", 2)
    shutil.copy(tmp_path / "in" / "img0.png", tmp_path / "in" / ".hidden.png")
    flat = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(tmp_path / "flat"), "--json"])
    assert flat.exit_code == 0 and len(ndjson(flat.stdout)) == 1
    deep = runner.invoke(app, ["apply", str(tmp_path / "in"), "-k", "box:3", "-O", str(tmp_path / "deep"), "--json", "--recursive"])
    assert deep.exit_code == 0
    inputs = sorted(Path(d["input"]).relative_to(tmp_path / "in").as_posix() for d in ndjson(deep.stdout))
    assert inputs == ["img0.png", "sub/deeper/img0.png", "sub/deeper/img1.png"]
    # the subfolders are mirrored, so the two img0.png do not collide
    written = sorted(p.relative_to(tmp_path / "deep").as_posix() for p in (tmp_path / "deep").rglob("*.png"))
    assert written == ["img0_box-3.png", "sub/deeper/img0_box-3.png", "sub/deeper/img1_box-3.png"]


def test_two_inputs_that_would_write_one_output_are_refused(tmp_path):
    make_batch(tmp_path / "a", 1)
    make_batch(tmp_path / "b", 1)
    res = runner.invoke(app, ["apply", str(tmp_path / "a" / "img0.png"), str(tmp_path / "b" / "img0.png"), "-k", "box:3", "-O", str(tmp_path / "o")])
    assert res.exit_code == 2 and "would both be written to" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_second_stop_signal_interrupts_at_once(name):
    """The first TERM/HUP/INT only asks the batch to stop between files (or blocks); the second
    raises at once, as a second Ctrl-C does, so `timeout` and service managers are not ignored."""
    import threading
    from types import SimpleNamespace

    from convcli.pipeline.runner import STOP_SIGNALS, BatchRunner

    sig = getattr(signal, name)
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    fake = SimpleNamespace(stop=threading.Event(), readers=set())
    try:
        signal.signal(sig, lambda *a: None)
        BatchRunner._on_signal(fake, sig, None)  # type: ignore[arg-type]
        assert fake.stop.is_set()
        assert signal.getsignal(sig) is signal.default_int_handler
        assert all(signal.getsignal(s) is signal.default_int_handler for s in STOP_SIGNALS)  # HUP then TERM too
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(sig)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
