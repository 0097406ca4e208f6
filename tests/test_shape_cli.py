"""``convcli shape`` through the real CLI: PyTorch reference vectors, chains, errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from convcli.cli.app import app

runner = CliRunner()


def shape_json(*args: str) -> dict:
    res = runner.invoke(app, ["shape", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_conv2d_7x7_stride2():
    doc = shape_json("--input", "224x224", "--channels", "3", "--kernel", "7x7", "--filters", "64", "--stride", "2", "--padding", "3")
    (layer,) = doc["layers"]
    assert layer["output_size"] == [112, 112] and layer["out_channels"] == 64
    assert layer["params"] == doc["params"] == 9472
    assert layer["macs"] == doc["macs"] == 118_013_952
    assert layer["flops"] == 2 * 118_013_952
    assert layer["padding"] == [[3, 3], [3, 3]]


def test_conv2d_3x3_and_depthwise():
    layer = shape_json("-i", "56x56", "-c", "64", "-k", "3", "-f", "64", "-p", "1")["layers"][0]
    assert (layer["output_size"], layer["params"], layer["macs"]) == ([56, 56], 36_928, 115_605_504)
    layer = shape_json("-i", "112x112", "-c", "32", "-k", "3", "-f", "32", "-p", "1", "-g", "32")["layers"][0]
    assert (layer["params"], layer["macs"]) == (320, 3_612_672)


def test_conv3d_anisotropic():
    layer = shape_json("-i", "16x112x112", "-c", "3", "-k", "3x5x5", "-f", "16", "-s", "1x2x2", "-p", "1x2x2")["layers"][0]
    assert layer["output_size"] == [16, 56, 56]
    assert (layer["params"], layer["macs"]) == (3_616, 180_633_600)


def test_transposed_counts_macs_on_the_input():
    layer = shape_json("-i", "28x28", "-c", "64", "-k", "4", "-f", "32", "-s", "2", "-p", "1", "--transposed")["layers"][0]
    assert layer["output_size"] == [56, 56]
    assert (layer["params"], layer["macs"]) == (32_800, 25_690_112)


@pytest.mark.parametrize(("n", "k", "s", "p", "op", "d", "out"), [(56, 4, 2, 1, 0, 1, 112), (7, 3, 2, 1, 1, 1, 14), (5, 3, 1, 0, 0, 2, 9)])
def test_transposed_1d(n, k, s, p, op, d, out):
    args = ["-i", str(n), "-c", "1", "-k", str(k), "-f", "1", "-s", str(s), "-p", str(p), "-d", str(d), "--transposed", "--output-padding", str(op)]
    assert shape_json(*args)["layers"][0]["output_size"] == [out]


def test_max_pool_ceil_mode_last_window_must_start_inside():
    layer = shape_json("-i", "5", "-c", "1", "--layer", "pool max k=2 s=2 p=1 ceil")["layers"][0]
    assert layer["output_size"] == [3]
    assert shape_json("-i", "6", "-c", "1", "--layer", "pool max k=2 s=2 ceil")["layers"][0]["output_size"] == [3]
    assert shape_json("-i", "7", "-c", "1", "--layer", "pool max k=2 s=2 ceil")["layers"][0]["output_size"] == [4]


def test_receptive_field_vgg16_pool5(tmp_path):
    lines = []
    for convs, c in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)):
        lines += [f"conv k=3 p=1 c={c}"] * convs + ["pool max k=2 s=2  # halve"]
    spec = tmp_path / "vgg16.txt"
    spec.write_text("# VGG-16 features\n" + "\n".join(lines) + "\n")
    doc = shape_json("-i", "224x224", "-c", "3", "--spec", str(spec))
    last = doc["layers"][-1]
    assert last["receptive_field"] == [212, 212] and last["jump"] == [32, 32]
    assert last["output_size"] == [7, 7] and last["out_channels"] == 512
    assert doc["params"] == 14_714_688  # torchvision vgg16.features


def test_receptive_field_dilated_stack():
    doc = shape_json("-i", "64", "-c", "1", "--layer", "conv k=3 d=1 p=1 c=1", "--layer", "conv k=3 d=2 p=2 c=1", "--layer", "conv k=3 d=4 p=4 c=1")
    assert doc["layers"][-1]["receptive_field"] == [15]
    assert [ly["output_size"] for ly in doc["layers"]] == [[64]] * 3


def test_tf_same_with_stride():
    layer = shape_json("-i", "224", "-c", "1", "-k", "3", "-f", "1", "-s", "2", "-p", "same")["layers"][0]
    assert layer["padding"] == [[0, 1]] and layer["output_size"] == [112]
    res = runner.invoke(app, ["shape", "-i", "224", "-c", "1", "-k", "3", "-f", "1", "-s", "2", "-p", "same"])
    assert "TensorFlow" in res.stdout


def test_explain_substitutes_numbers_and_reports_dropped_cells():
    res = runner.invoke(app, ["shape", "-i", "224x224", "-c", "3", "-k", "7", "-f", "64", "-s", "2", "-p", "3", "--explain"])
    assert res.exit_code == 0
    assert "out = floor((224 + 3 + 3 - 7)/2) + 1 = floor(223/2) + 1 = 112" in res.stdout
    assert "drops 1 padding cell" in res.stdout
    res = runner.invoke(app, ["shape", "-i", "10", "-c", "1", "-k", "3", "-f", "1", "-s", "2", "--explain"])
    assert "drops 1 real input cell" in res.stdout


def test_channels_flow_and_per_side_padding():
    doc = shape_json("-i", "10x12", "-c", "3", "--layer", "conv k=3 p=0:2x1 c=8", "--layer", "conv k=1 c=4 nobias")
    first, second = doc["layers"]
    assert first["padding"] == [[0, 2], [1, 1]] and first["output_size"] == [10, 12]
    assert second["in_channels"] == 8 and second["params"] == 32


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["-i", "3", "-k", "5", "-f", "1"], "smallest input that works is 5"),
        (["-i", "8", "-c", "6", "-k", "3", "-f", "4", "-g", "4"], "valid: 1, 2"),
        (["-i", "8", "-k", "3", "-f", "1", "-s", "0"], "stride"),
        (["-i", "8", "-k", "0", "-f", "1"], "kernel"),
        (["-i", "8", "-k", "3", "-f", "1", "-p", "-1"], "negative"),
        (["-i", "8", "-k", "3", "-f", "1", "-s", "2", "--transposed", "--output-padding", "2"], "output padding 2 must be smaller"),
        (["-i", "8x8", "-k", "3x3x3", "-f", "1"], "gives 3 axes but --input has 2"),
        (["-i", "10", "-k", "3", "-f", "1", "-s", "4", "--strict"], "drops real input"),
        (["-i", "8", "-c", "2", "--layer", "conv k=3 c=4 g=3"], "groups=3"),
        (["-i", "8", "--layer", "conv k=3 zz=1 c=1"], "unknown key 'zz'"),
        (["-i", "8"], "give --kernel"),
    ],
)
def test_errors_are_one_line_with_exit_2(args, match):
    res = runner.invoke(app, ["shape", *args])
    assert res.exit_code == 2
    assert match in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_shape_never_imports_numba_or_numpy():
    code = (
        "import sys\nfrom convcli.cli.app import app\n"
        "try:\n    app(['shape', '-i', '32', '-k', '3', '-f', '1', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('numba' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stderr.split() == ["False", "False"]


def _torch_shape(torch, kind, nd, n, c, k, s, p, d, g, op):
    conv = {
        ("conv", 1): torch.nn.Conv1d, ("conv", 2): torch.nn.Conv2d, ("conv", 3): torch.nn.Conv3d,
        ("convT", 1): torch.nn.ConvTranspose1d, ("convT", 2): torch.nn.ConvTranspose2d, ("convT", 3): torch.nn.ConvTranspose3d,
    }[(kind, nd)]  # fmt: skip
    kw = {"output_padding": op} if kind == "convT" else {}
    layer = conv(c, g * 2, k, stride=s, padding=p, dilation=d, groups=g, **kw)
    out = layer(torch.zeros((1, c, *n)))
    return list(out.shape[2:]), sum(t.numel() for t in layer.parameters())


def test_matches_pytorch_on_random_configurations():
    torch = pytest.importorskip("torch")
    import random

    rng = random.Random(0)
    for _ in range(60):
        nd = rng.randint(1, 3)
        kind = rng.choice(["conv", "convT"])
        n = [rng.randint(4, 20) for _ in range(nd)]
        k = [rng.randint(1, 4) for _ in range(nd)]
        s = [rng.randint(1, 3) for _ in range(nd)]
        d = [rng.randint(1, 2) for _ in range(nd)]
        p = [rng.randint(0, 2) for _ in range(nd)]
        op = [rng.randint(0, max(si, di) - 1) for si, di in zip(s, d)]
        g = rng.choice([1, 2])
        c = 2 * g
        try:
            expected_shape, expected_params = _torch_shape(torch, kind, nd, n, c, k, s, p, d, g, op)
        except RuntimeError:
            continue
        x = lambda v: "x".join(map(str, v))  # noqa: E731
        args = ["-i", x(n), "-c", str(c), "-k", x(k), "-f", str(2 * g), "-s", x(s), "-p", x(p), "-d", x(d), "-g", str(g)]
        if kind == "convT":
            args += ["--transposed", "--output-padding", x(op)]
        layer = shape_json(*args)["layers"][0]
        assert layer["output_size"] == expected_shape, args
        assert layer["params"] == expected_params, args


def test_output_padding_without_transposed_is_a_usage_error_not_ignored():
    res = runner.invoke(app, ["shape", "--input", "32x32", "--channels", "3", "--kernel", "3x3", "--filters", "8", "--output-padding", "1"])
    assert res.exit_code == 2 and "--transposed" in res.output
    res = runner.invoke(app, ["shape", "--input", "32x32", "--channels", "3", "--kernel", "3x3", "--filters", "8", "--stride", "2",
                              "--output-padding", "1", "--transposed", "--json"])  # fmt: skip
    assert res.exit_code == 0 and json.loads(res.stdout)["layers"][0]["output_size"] == [66, 66]  # (32-1)*2 + 3 + 1
