"""``convcli apply --origin/--precision`` end to end: the engine's scipy-style anchor and float64 sums."""

from __future__ import annotations

import json

import numpy as np
import scipy.ndimage as ndi
from typer.testing import CliRunner

from convcli.cli.app import app

runner = CliRunner()


def apply(tmp_path, x, *args):
    src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, x)
    res = runner.invoke(app, ["apply", str(src), "-o", str(dst), "--json", "--overwrite", *map(str, args)])
    return res, (np.load(dst) if res.exit_code == 0 else None)


def test_origin_anchors_an_even_kernel_as_scipy_does(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((12, 10)).astype(np.float32)
    kernel = "1 2 4 8; 16 32 64 128"  # 2x4: any shift is an exact mismatch
    k = np.array([[1, 2, 4, 8], [16, 32, 64, 128]], float)
    for origin, per_axis in (("0", (0, 0)), ("-1x1", (-1, 1))):
        res, out = apply(tmp_path, x, "-k", kernel, "--mode", "corr", "--dtype", "float32", "--origin", origin)
        assert res.exit_code == 0, res.output
        np.testing.assert_allclose(out, ndi.correlate(x.astype(np.float64), k, mode="reflect", origin=per_axis), rtol=1e-6)
    res, default = apply(tmp_path, x, "-k", kernel, "--mode", "corr", "--dtype", "float32")
    np.testing.assert_allclose(default, ndi.correlate(x.astype(np.float64), k, mode="reflect", origin=(-1, -1)), rtol=1e-6)


def test_bad_origin_fails_with_a_one_line_error(tmp_path):
    res, _ = apply(tmp_path, np.ones((6, 6), np.float32), "-k", "box:3", "--origin", "2")
    assert res.exit_code != 0
    assert "origin=2" in res.output and "Traceback" not in res.output
    res, _ = apply(tmp_path, np.ones((6, 6), np.float32), "-k", "box:3", "--origin", "a")
    assert res.exit_code == 2 and "--origin" in res.output


def test_precision_float64_on_the_cli(tmp_path):
    x = np.full((5, 5), 2**24 + 1, np.float64).astype(np.int64)
    res, out = apply(tmp_path, x, "-k", "1", "--precision", "float64", "--dtype", "keep")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["status"] == "ok"
    assert (out == 2**24 + 1).all()


def test_report_names_the_anchor_cell(tmp_path):
    """The tap of the kernel as stored over each output's pixel: scipy's k//2 + origin in corr,
    and in conv (the kernel flipped) the mirrored tap; an impulse image shows where it lands and
    scipy.ndimage.convolve agrees."""
    x = np.zeros((9, 9), np.float32)
    x[4, 4] = 1.0
    k = "1 2 4 8; 16 32 64 128"
    kk = np.array([[1, 2, 4, 8], [16, 32, 64, 128]], float)
    for args, expected in (
        (("--mode", "corr"), [0, 1]),  # the TensorFlow split: one cell before, two after along x
        (("--mode", "corr", "--origin", "0"), [1, 2]),
        (("--mode", "conv"), [1, 2]),
        (("--mode", "conv", "--origin", "0"), [1, 2]),  # scipy.ndimage.convolve's even-kernel rule
    ):
        res, out = apply(tmp_path, x, "-k", k, "--dtype", "float32", "--border", "constant", *args)
        assert res.exit_code == 0, res.output
        anchor = json.loads(res.stdout.splitlines()[0])["steps"][0]["anchor"]
        assert anchor == expected, args
        # output pixel (4, 4) sits over input (4, 4): it reads the impulse through the anchor tap
        assert out[4, 4] == kk[tuple(anchor)]
        if "--origin" in args:
            ref = (ndi.convolve if "conv" in args else ndi.correlate)(x.astype(np.float64), kk, mode="constant")
            np.testing.assert_array_equal(out, ref)
    text = runner.invoke(app, ["apply", str(tmp_path / "in.npy"), "-o", str(tmp_path / "o2.npy"), "-k", k, "--mode", "corr", "--origin", "0"])
    assert "kernel tap (1, 2) as stored" in text.output
