"""The per-file pipeline, batch planning and the runner, without Typer (streams injected)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convcli.errors import ExitCode, ProcessError, UsageError, error_line
from convcli.io.read import ImageData
from convcli.kernels import resolve
from convcli.pipeline import process as process_mod
from convcli.pipeline.jobs import Job, default_suffix, expand_inputs, plan_jobs
from convcli.pipeline.options import BatchOptions, FilterOptions, parse_axis_option, parse_padding_option
from convcli.pipeline.process import process
from convcli.pipeline.runner import BatchRunner

from .naive import naive_correlate


def image(arr: np.ndarray, axes: str = "HW") -> ImageData:
    return ImageData(arr, axes, "mem", "NPY")


def test_option_parsing():
    assert parse_axis_option("2", "stride") == 2 and parse_axis_option("2x3", "stride") == (2, 3)
    assert parse_padding_option("valid") == "valid" and parse_padding_option("1:2x0") == ((1, 2), (0, 0))
    with pytest.raises(UsageError, match=">= 1"):
        parse_axis_option("0", "dilation")


def test_process_matches_the_reference_and_reports_the_seed_formula():
    x = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    k = resolve("sobel-x")
    res = process(image(x), FilterOptions(kernels=(k,), mode="corr", padding="valid", stride=2, dtype="float32"))
    ref = naive_correlate(x.astype(float), k.array, padding="valid", stride=2)
    np.testing.assert_allclose(res.array, ref, atol=1e-4)
    doc = res.report.to_json()
    assert doc["output_shape"] == [9, 14] and doc["params"] == 9 and doc["macs"] == 9 * 14 * 9
    assert doc["formula"] == ["H_out = (20 + 0 + 0 - 3)/2 + 1 = floor(17/2) + 1 = 9", "W_out = (30 + 0 + 0 - 3)/2 + 1 = floor(27/2) + 1 = 14"]
    assert doc["stats"]["min"] == pytest.approx(float(ref.min()))


def test_process_lifts_a_2d_kernel_on_a_volume_and_refuses_3d_on_2d():
    vol = np.zeros((4, 6, 6), np.float32)
    res = process(image(vol, "ZHW"), FilterOptions(kernels=(resolve("box:3"),), stride=(2, 2)))
    assert res.report.steps[0].stride == [1, 2, 2]
    with pytest.raises(ProcessError, match="is 3-D but the input is a 2-D image"):
        process(image(np.zeros((5, 5))), FilterOptions(kernels=(resolve("box3d:3"),)))


def test_normalize_refuses_zero_sum():
    with pytest.raises(ProcessError, match="sums to zero"):
        process_mod.kernel_for(resolve("laplacian"), True)


def test_planning(tmp_path):
    for i in range(3):
        Image.new("L", (4, 4)).save(tmp_path / f"i{i}.png")
    inputs = expand_inputs([str(tmp_path)], recursive=False, stack=False)
    assert [Path(i).name for i, _ in inputs] == ["i0.png", "i1.png", "i2.png"]
    jobs = plan_jobs(inputs, output=None, out_dir=tmp_path / "o", name="{stem}{suffix}{ext}", fmt="tif", suffix="_b", stack=False)
    assert [j.output.name for j in jobs if j.output] == ["i0_b.tif", "i1_b.tif", "i2_b.tif"] and jobs[0].fmt == "TIFF"
    assert default_suffix([resolve("gaussian:sigma=2")]) == "_gaussian-sigma-2"
    with pytest.raises(UsageError, match="would both be written"):
        plan_jobs(inputs, output=None, out_dir=tmp_path, name="same.png", fmt=None, suffix="", stack=False)
    with pytest.raises(UsageError, match="needs --format"):
        plan_jobs([("-", Path())], output="-", out_dir=None, name="", fmt=None, suffix="", stack=False)
    with pytest.raises(UsageError, match="unknown field"):
        plan_jobs(inputs, output=None, out_dir=tmp_path, name="{nope}", fmt=None, suffix="", stack=False)


def run_batch(jobs: list[Job], **opts) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    runner = BatchRunner(jobs, FilterOptions(kernels=(resolve("box:3"),)), BatchOptions(as_json=True, jobs=1, **opts),
                         out=out, out_bytes=io.BytesIO(), err=err)  # fmt: skip
    return runner.run(), out.getvalue(), err.getvalue()


def test_runner_streams_ndjson_and_picks_exit_codes(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"junk")
    jobs = [Job(str(tmp_path / "a.png"), tmp_path / "a_out.png", "PNG"), Job(str(tmp_path / "b.png"), tmp_path / "b_out.png", "PNG")]
    outcome, out, err = run_batch(jobs)
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["status"] for d in docs] == ["ok", "error"]
    assert outcome.exit_code == ExitCode.PARTIAL
    assert err.count("\n") == 1 and err.startswith("convcli: error: ") and "b.png" in err
    assert np.asarray(Image.open(tmp_path / "a_out.png")).tolist() == np.full((8, 8), 100).tolist()
    assert not (tmp_path / "b_out.png").exists()
    again, out2, _ = run_batch(jobs[:1])  # the output exists now
    assert again.exit_code == ExitCode.FAILED and "--overwrite" in json.loads(out2)["error"]
    skipped, _, _ = run_batch(jobs[:1], skip_existing=True)
    assert skipped.exit_code == ExitCode.OK and skipped.reports[0].status == "skipped"


def test_an_engine_bug_is_an_internal_error_not_a_user_error(tmp_path, monkeypatch):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "b.png")

    def broken(*args, **kwargs):
        raise IndexError("index 9 is out of bounds")

    monkeypatch.setattr(process_mod, "stats_of", broken)  # a bug after filtering, before writing
    jobs = [Job(str(tmp_path / n), tmp_path / f"out_{n}", "PNG") for n in ("a.png", "b.png")]
    outcome, _, err = run_batch(jobs)
    assert outcome.exit_code == ExitCode.FAILED and len(outcome.reports) == 1  # the batch stops
    assert "internal error IndexError" in err and "--traceback" in err


def test_error_line_escapes_control_characters():
    assert error_line("a\nb.png", "bad") == "convcli: error: a\\nb.png: bad"
    assert error_line("", "x") == "convcli: error: x"


def test_the_memory_check_leaves_an_unreadable_header_to_the_reader(tmp_path, monkeypatch):
    """Found by the hostile-input suite: a TIFF whose header made tifffile raise struct.error in
    the memory estimate became an internal error; the reader's one-line error is the answer."""
    import struct

    from convcli.chunked import source
    from convcli.pipeline import chunked

    def broken(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 2 bytes")

    monkeypatch.setattr(source, "open_source", broken)
    monkeypatch.setattr(chunked, "available_memory", lambda: 1)
    (tmp_path / "x.tif").write_bytes(b"II*\x00" + b"\x00" * 12)
    assert chunked.check_fits(Job(str(tmp_path / "x.tif"), tmp_path / "o.tif", "TIFF"), 0) is None


def test_quiet_runs_skip_the_unread_statistics_but_json_keeps_them(tmp_path, monkeypatch):
    """-q without --json prints nothing about a file: its statistics and histogram are not
    computed; with --json (or without -q) they are."""
    from typer.testing import CliRunner

    from convcli.cli.app import app

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    calls = []
    real = process_mod.stats_of
    monkeypatch.setattr(process_mod, "stats_of", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    quiet = CliRunner().invoke(app, ["apply", str(tmp_path / "a.png"), "-k", "box:3", "-o", str(tmp_path / "q.png"), "-q"])
    assert quiet.exit_code == 0 and quiet.output == "" and calls == []
    res = CliRunner().invoke(app, ["apply", str(tmp_path / "a.png"), "-k", "box:3", "-o", str(tmp_path / "j.png"), "-q", "--json"])
    assert res.exit_code == 0 and calls == [1]
    assert json.loads(res.stdout.splitlines()[0])["stats"]["max"] > 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "q.png")), np.asarray(Image.open(tmp_path / "j.png")))


def test_equally_sized_images_reuse_the_float_buffers_and_keep_their_own_results():
    """Integer output: each step's float result lands in this thread's reused buffers (two, for a
    chain), so a batch allocates them once; every result is still the image's own, as if alone."""
    from convcli.engine import buffers

    rng = np.random.default_rng(3)
    opts = FilterOptions(kernels=(resolve("box:3"), resolve("sobel-x")), mode="corr", dtype="uint8", offset=128.0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    results = [process(image(x, "HWC"), opts).array for x in images]
    pool = buffers._local.pool
    held = {name: buf.__array_interface__["data"][0] for name, buf in pool.items()}
    assert {"step0", "step1"} <= held.keys()
    again = process(image(images[0], "HWC"), opts).array
    assert {name: buf.__array_interface__["data"][0] for name, buf in pool.items()} == held  # no new buffers
    for x, got in zip(images, results, strict=True):
        box = naive_correlate(x.astype(float), resolve("box:3").array)
        ref = np.clip(np.rint(naive_correlate(box, resolve("sobel-x").array) + 128), 0, 255)
        assert np.abs(got.astype(float) - ref).max() <= 1  # float32 rounding at .5 boundaries
        assert not np.shares_memory(got, pool["step0"]) and not np.shares_memory(got, pool["step1"])
    assert np.array_equal(again, results[0])
