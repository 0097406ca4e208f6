"""``convcli apply``, ``info`` and ``kernels`` end to end on real files: pixels and JSON."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from convcli.cli.app import app

from .naive import naive_correlate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
BAD = Path(__file__).resolve().parent / "data" / "bad"
runner = CliRunner()


def run(*args: str, input: bytes | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def apply_json(*args: str) -> dict:
    res = run("apply", *args, "--json")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def load(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix in (".tif", ".tiff"):
        return tifffile.imread(path)
    return np.asarray(Image.open(path))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def to_uint(ref: np.ndarray, dtype=np.uint8) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(ref), info.min, info.max).astype(dtype)


SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], float)


# --- results equal the reference ---------------------------------------------------------------
def test_quick_start_filters_a_sample_image(tmp_path):
    out = tmp_path / "chelsea_sobel.png"
    doc = apply_json(SAMPLES / "chelsea.png", "-k", "sobel-x", "-o", out)
    src = np.asarray(Image.open(SAMPLES / "chelsea.png"))
    got = load(out)
    ref = naive_correlate(src.astype(float), SOBEL_X, flip=True)  # conv: kernel flipped
    np.testing.assert_array_equal(got, to_uint(ref))
    assert doc["output_shape"] == list(got.shape) == [300, 451, 3]
    assert doc["mode"] == "conv" and doc["flipped"] is True
    assert doc["padding"] == [[1, 1], [1, 1]] and doc["stride"] == [1, 1] and doc["dilation"] == [1, 1]
    assert doc["params"] == 9 and doc["macs"] == 300 * 451 * 9 * 3
    assert doc["clipped"] == int(np.count_nonzero((np.rint(ref) < 0) | (np.rint(ref) > 255)))
    assert doc["stats"]["max"] == got.max() and doc["stats"]["min"] == got.min()
    assert doc["stats"]["mean"] == pytest.approx(got.mean())
    assert len(doc["stats"]["per_channel"]) == 3
    assert doc["formula"] == ["H_out = (300 + 1 + 1 - 3)/1 + 1 = 300", "W_out = (451 + 1 + 1 - 3)/1 + 1 = 451"]
    assert doc["method"] in ("direct", "separable")


def test_conv_and_corr_differ_on_an_asymmetric_kernel(tmp_path):
    src = np.asarray(Image.open(SAMPLES / "camera.png")).astype(float)
    conv = apply_json(SAMPLES / "camera.png", "-k", "emboss", "--dtype", "float32", "-o", tmp_path / "conv.npy")
    corr = apply_json(SAMPLES / "camera.png", "-k", "emboss", "--mode", "corr", "--dtype", "float32", "-o", tmp_path / "corr.npy")
    assert conv["flipped"] and not corr["flipped"]
    a, b = np.load(tmp_path / "conv.npy"), np.load(tmp_path / "corr.npy")
    np.testing.assert_allclose(a, naive_correlate(src, EMBOSS, flip=True), atol=1e-3)
    np.testing.assert_allclose(b, naive_correlate(src, EMBOSS), atol=1e-3)
    assert np.abs(a - b).max() > 50


@pytest.mark.parametrize("name", ["sobel-x", "scharr-x", "prewitt-x", "sobel-y", "scharr-y", "prewitt-y"])
def test_derivative_kernels_respond_positively_in_conv_mode(tmp_path, name):
    axis = 1 if name.endswith("-x") else 0
    ramp = np.add.outer(np.zeros(16), np.arange(16.0)) if axis == 1 else np.add.outer(np.arange(16.0), np.zeros(16))
    np.save(tmp_path / "ramp.npy", ramp.astype(np.float32))
    apply_json(tmp_path / "ramp.npy", "-k", name, "-o", tmp_path / "conv.npy")
    apply_json(tmp_path / "ramp.npy", "-k", name, "--mode", "corr", "-o", tmp_path / "corr.npy")
    inner = (slice(2, -2), slice(2, -2))
    assert (np.load(tmp_path / "conv.npy")[inner] > 0).all()
    assert (np.load(tmp_path / "corr.npy")[inner] < 0).all()


@pytest.mark.parametrize(("name", "axis"), [("sobel3d-x", 2), ("sobel3d-y", 1), ("sobel3d-z", 0)])
def test_3d_derivatives_sign(tmp_path, name, axis):
    vol = np.indices((8, 8, 8))[axis].astype(np.float32)
    np.save(tmp_path / "v.npy", vol)
    apply_json(tmp_path / "v.npy", "-k", name, "-o", tmp_path / "o.npy")
    assert (np.load(tmp_path / "o.npy")[2:-2, 2:-2, 2:-2] > 0).all()


def test_volume_3d_kernel_and_2d_kernel_per_slice(tmp_path):
    vol = tifffile.imread(SAMPLES / "phantom3d.tif").astype(float)
    doc = apply_json(SAMPLES / "phantom3d.tif", "-k", "box3d:3", "--dtype", "float32", "-o", tmp_path / "b.tif")
    got = tifffile.imread(tmp_path / "b.tif")
    assert doc["output_shape"] == [64, 64, 64] and doc["axes"] == "ZHW"
    np.testing.assert_allclose(got, naive_correlate(vol, np.ones((3, 3, 3)) / 27), atol=1e-3)
    apply_json(SAMPLES / "phantom3d.tif", "-k", "laplacian", "--dtype", "float32", "-o", tmp_path / "l.npy")
    per_slice = np.load(tmp_path / "l.npy")
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float)
    for z in (0, 31, 63):
        np.testing.assert_allclose(per_slice[z], naive_correlate(vol[z], lap), atol=1e-3)


def test_sixteen_bit_is_kept(tmp_path):
    apply_json(SAMPLES / "camera16.png", "-k", "gaussian:sigma=1", "-o", tmp_path / "g.png")
    got = load(tmp_path / "g.png")
    assert got.dtype == np.uint16
    src = np.asarray(Image.open(SAMPLES / "camera16.png")).astype(float)
    from convcli.kernels import resolve

    k = resolve("gaussian:sigma=1").array
    np.testing.assert_allclose(got.astype(float), naive_correlate(src, k, flip=True), atol=1.01)


def test_alpha_passes_through_unless_filtered(tmp_path):
    src = np.asarray(Image.open(SAMPLES / "chelsea_rgba.png"))
    doc = apply_json(SAMPLES / "chelsea_rgba.png", "-k", "box:5", "-o", tmp_path / "a.png")
    got = load(tmp_path / "a.png")
    assert got.shape == src.shape and doc["alpha"] == "kept"
    np.testing.assert_array_equal(got[..., 3], src[..., 3])
    ref = naive_correlate(src[..., :3].astype(float), np.ones((5, 5)) / 25)
    np.testing.assert_array_equal(got[..., :3], to_uint(ref))
    apply_json(SAMPLES / "chelsea_rgba.png", "-k", "box:5", "--alpha", "filter", "-o", tmp_path / "f.png")
    assert not np.array_equal(load(tmp_path / "f.png")[..., 3], src[..., 3])


def test_stride_and_valid_padding_change_the_shape(tmp_path):
    doc = apply_json(SAMPLES / "camera.png", "-k", "box:4", "--padding", "valid", "--stride", "2", "-o", tmp_path / "s.png")
    assert doc["output_shape"] == [255, 255] == list(load(tmp_path / "s.png").shape)
    assert doc["formula"][0] == "H_out = (512 + 0 + 0 - 4)/2 + 1 = 255"


# --- kernel sources ----------------------------------------------------------------------------
def _kernel_files(tmp_path: Path) -> dict[str, Path]:
    k = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    files = {}
    (tmp_path / "k.txt").write_text("# my kernel\n1 2 0   # row one\n0, -1, 3\n")
    (tmp_path / "k.csv").write_text("1,2,0\n0,-1,3\n")
    (tmp_path / "k.json").write_text(json.dumps(k.tolist()))
    np.save(tmp_path / "k.npy", k)
    (tmp_path / "k.mat").write_text("3 2 2 0\n2 4 0\n0 -2 6\n")  # libvips: divided by scale 2
    for ext in ("txt", "csv", "json", "npy", "mat"):
        files[ext] = tmp_path / f"k.{ext}"
    files["inline"] = "1 2 0; 0 -1 3"
    return files


def test_every_kernel_source_gives_the_same_result(tmp_path):
    src = np.asarray(Image.open(SAMPLES / "camera.png")).astype(float)
    ref = naive_correlate(src, np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]), flip=True)
    for name, spec in _kernel_files(tmp_path).items():
        out = tmp_path / f"out_{name}.npy"
        doc = apply_json(SAMPLES / "camera.png", "-k", spec, "--dtype", "float32", "-o", out)
        assert doc["kernel_shape"] == [2, 3], name
        np.testing.assert_allclose(np.load(out), ref, atol=1e-3, err_msg=name)


def test_mat_offset_and_3d_text_planes(tmp_path):
    (tmp_path / "o.mat").write_text("1 1 1 10\n1\n")
    np.save(tmp_path / "x.npy", np.full((4, 5), 3.0, np.float32))
    apply_json(tmp_path / "x.npy", "-k", tmp_path / "o.mat", "-o", tmp_path / "o.npy")
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), 13.0)
    (tmp_path / "k3.txt").write_text("1 0\n0 0\n\n0 0\n0 2\n")
    np.save(tmp_path / "v.npy", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    doc = apply_json(tmp_path / "v.npy", "-k", tmp_path / "k3.txt", "--mode", "corr", "-o", tmp_path / "v3.npy")
    assert doc["kernel_shape"] == [2, 2, 2]
    k = np.zeros((2, 2, 2))
    k[0, 0, 0], k[1, 1, 1] = 1, 2
    np.testing.assert_allclose(np.load(tmp_path / "v3.npy"), naive_correlate(np.load(tmp_path / "v.npy"), k), atol=1e-4)
    inline3 = apply_json(tmp_path / "v.npy", "-k", "1 0; 0 0 | 0 0; 0 2", "--mode", "corr", "-o", tmp_path / "i3.npy")
    assert inline3["kernel_shape"] == [2, 2, 2]
    np.testing.assert_array_equal(np.load(tmp_path / "i3.npy"), np.load(tmp_path / "v3.npy"))


def test_filter_bank_npz_and_4d_npy(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((5, 3, 3, 3))
    bias = rng.standard_normal(5)
    np.savez(tmp_path / "bank.npz", weight=weight, bias=bias)
    np.save(tmp_path / "bank.npy", weight)
    src = np.asarray(Image.open(SAMPLES / "chelsea.png"))[:40, :50]
    Image.fromarray(src).save(tmp_path / "small.png")
    doc = apply_json(tmp_path / "small.png", "-k", tmp_path / "bank.npz", "--mode", "corr", "--dtype", "float32", "-o", tmp_path / "o.npy")
    got = np.load(tmp_path / "o.npy")
    assert got.shape == (40, 50, 5) and doc["output_shape"] == [40, 50, 5]
    assert doc["params"] == (3 * 3 * 3 + 1) * 5  # the seed's (w*h*Din + 1)*k
    ref = np.stack([sum(naive_correlate(src[..., c].astype(float), weight[j, c]) for c in range(3)) + bias[j] for j in range(5)], -1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-2)
    doc = apply_json(tmp_path / "small.png", "-k", tmp_path / "bank.npy", "--mode", "corr", "--dtype", "float32", "-o", tmp_path / "n.npy")
    assert doc["params"] == 3 * 3 * 3 * 5
    np.testing.assert_allclose(np.load(tmp_path / "n.npy") + bias, ref, rtol=1e-4, atol=1e-2)
    # five channels do not fit in a PNG: a clear error, nothing written
    res = run("apply", tmp_path / "small.png", "-k", tmp_path / "bank.npz", "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "cannot hold 5 channels" in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_kernels_in_sequence(tmp_path):
    doc = apply_json(SAMPLES / "camera.png", "-k", "box:3", "-k", "laplacian", "--dtype", "float32", "-o", tmp_path / "s.npy")
    assert doc["kernel"] == "box:3 > laplacian" and len(doc["steps"]) == 2
    src = np.asarray(Image.open(SAMPLES / "camera.png")).astype(float)
    lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float)
    ref = naive_correlate(naive_correlate(src, np.ones((3, 3)) / 9), lap)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), ref, atol=1e-3)


def test_normalize_scale_offset_abs(tmp_path):
    np.save(tmp_path / "x.npy", np.full((6, 6), 2.0, np.float32))
    apply_json(tmp_path / "x.npy", "-k", "1 1; 1 1", "--normalize", "--scale", "3", "--offset", "-10", "--abs", "-o", tmp_path / "o.npy")
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), 4.0)


# --- named kernels -----------------------------------------------------------------------------
ISSUE_NAMES = [
    "identity", "box", "gaussian", "sharpen", "unsharp", "laplacian", "laplacian8", "log", "dog", "sobel-x",
    "sobel-y", "scharr-x", "scharr-y", "prewitt-x", "prewitt-y", "roberts-pos", "roberts-neg", "emboss",
    "outline", "motion", "box3d", "gaussian3d", "sobel3d-x", "sobel3d-y", "sobel3d-z", "laplacian3d",
    "laplacian3d-26", *[f"kirsch-{d}" for d in ("n", "ne", "e", "se", "s", "sw", "w", "nw")],
]  # fmt: skip


def test_kernels_lists_every_name():
    res = run("kernels", "--json")
    assert res.exit_code == 0
    docs = {d["name"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert set(ISSUE_NAMES) <= set(docs)
    assert docs["sobel-x"]["separable"] and not docs["emboss"]["separable"]
    assert docs["laplacian3d-26"]["shape"] == [3, 3, 3] and docs["laplacian3d-26"]["sum"] == 0
    assert docs["sharpen"]["description"]


def test_generators():
    from convcli.kernels import resolve

    g = resolve("gaussian:sigma=2").array
    assert g.shape == (17, 17) and g.sum() == pytest.approx(1)
    assert resolve("gaussian:sigma=2,size=5").array.shape == (5, 5)
    assert abs(resolve("log:sigma=1.4").array.sum()) < 1e-15
    m = resolve("motion:length=9,angle=0").array
    assert m.sum() == pytest.approx(1) and np.count_nonzero(m.sum(axis=1) > 1e-9) == 1
    assert resolve("dog:1,2").array.sum() == pytest.approx(0, abs=1e-12)
    assert resolve("unsharp:amount=2,sigma=1").array.sum() == pytest.approx(1)
    assert resolve("box3d:3").array.shape == (3, 3, 3)


def test_kernels_show_prints_stored_and_slid_matrices():
    res = run("kernels", "show", "sobel-x")
    assert res.exit_code == 0
    assert "as stored" in res.stdout and "--mode conv" in res.stdout and "--mode corr" in res.stdout
    assert "negated" in res.stdout
    assert res.stdout.index("-1") < res.stdout.index("slid in --mode conv")
    res = run("kernels", "show", "emboss")
    assert "Asymmetric" in res.stdout


def test_user_filters_dir_and_env(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mine.txt").write_text("# my own kernel\n0 0 0\n0 2 0\n0 0 0\n")
    np.save(tmp_path / "x.npy", np.ones((4, 4), np.float32))
    apply_json(tmp_path / "x.npy", "-k", "mine", "--filters-dir", lib, "-o", tmp_path / "o.npy")
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), 2.0)
    monkeypatch.setenv("CONVCLI_FILTERS", str(lib))
    assert "mine" in run("kernels").stdout


# --- info, stdin/stdout ------------------------------------------------------------------------
def test_info(tmp_path):
    res = run("info", SAMPLES / "phantom3d.tif", SAMPLES / "chelsea_rgba.png", SAMPLES / "camera16.png", "--json")
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["axes"] for d in docs] == ["ZHW", "HWC", "HW"]
    assert docs[0]["pages"] == 64 and docs[0]["shape"] == [64, 64, 64]
    assert docs[1]["alpha"] and docs[2]["dtype"] == "uint16"


def test_stdin_to_stdout():
    data = (SAMPLES / "camera.png").read_bytes()
    res = runner.invoke(app, ["apply", "-", "-k", "box:3", "-o", "-", "--format", "npy", "-q"], input=data)
    assert res.exit_code == 0, res.stderr
    import io

    got = np.load(io.BytesIO(res.stdout_bytes))
    src = np.asarray(Image.open(SAMPLES / "camera.png")).astype(float)
    np.testing.assert_array_equal(got, to_uint(naive_correlate(src, np.ones((3, 3)) / 9)))


def test_stack_reads_a_folder_of_slices_in_natural_order(tmp_path):
    vol = tifffile.imread(SAMPLES / "phantom3d.tif")[:12]
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(12):
        Image.fromarray(vol[z]).save(folder / f"slice{z}.png")  # slice10 sorts after slice9
    doc = apply_json(folder, "--stack", "-k", "box3d:3", "--dtype", "float32", "-o", tmp_path / "v.tif")
    assert doc["input_shape"] == [12, 64, 64]
    np.testing.assert_allclose(tifffile.imread(tmp_path / "v.tif"), naive_correlate(vol.astype(float), np.ones((3, 3, 3)) / 27), atol=1e-3)


# --- bad input: one line, documented exit code, nothing written, inputs untouched --------------
def _assert_clean_failure(res, code: int, match: str, folder: Path):
    assert res.exit_code == code, (res.exit_code, res.stderr)
    assert match in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("convcli: error: "), res.stderr
    assert not [p for p in folder.iterdir() if p.name.endswith(".part") or p.name.startswith("out")]


@pytest.mark.parametrize(
    ("make_input", "extra", "code", "match"),
    [
        (lambda d: d / "missing.png", [], 1, "no such file"),
        (lambda d: d, [], 1, "is a folder"),
        (lambda d: BAD / "empty.png", [], 1, "empty (0 bytes)"),
        (lambda d: BAD / "text_renamed.png", [], 1, "not an image"),
        (lambda d: BAD / "truncated.png", [], 1, "cannot decode"),
        (lambda d: BAD / "bomb.png", [], 1, "decompression bomb"),
        (lambda d: SAMPLES / "camera.png", ["--max-pixels", "1000"], 1, "--max-pixels"),
        (lambda d: BAD / "zero_size.npy", [], 1, "empty"),
        (lambda d: SAMPLES / "camera.png", ["-k", "sobelx"], 2, "did you mean sobel-x"),
        (lambda d: SAMPLES / "camera.png", ["-k", str(BAD / "kernel_malformed.txt")], 2, "kernel_malformed.txt:3: token 'O' is not a number"),
        (lambda d: SAMPLES / "camera.png", ["-k", str(BAD / "kernel_ragged.txt")], 2, "kernel_ragged.txt:2: row has 2 values"),
        (lambda d: SAMPLES / "camera.png", ["-k", str(BAD / "kernel_nan.txt")], 2, "NaN or Inf"),
        (lambda d: SAMPLES / "camera.png", ["-k", str(BAD / "kernel_empty.txt")], 2, "empty"),
        (lambda d: SAMPLES / "camera.png", ["-k", "1 nan; 1 1"], 2, "NaN or Inf"),
        (lambda d: SAMPLES / "camera.png", ["-k", "gaussian:sigma=100", "--padding", "valid"], 1, "output size below 1"),
        (lambda d: SAMPLES / "camera.png", ["--stride", "0"], 2, "--stride"),
        (lambda d: SAMPLES / "camera.png", ["-k", "box3d:3"], 1, "is 3-D but the input is a 2-D image"),
        (lambda d: SAMPLES / "camera.png", ["-k", "laplacian", "--normalize"], 2, "sums to zero"),
        (lambda d: SAMPLES / "phantom3d.tif", ["-O", "{d}", "--format", "png"], 1, "a volume needs .tif or .npy"),
        (lambda d: SAMPLES / "chelsea_rgba.png", ["-O", "{d}", "--format", "jpg"], 1, "JPEG cannot hold an alpha channel"),
        (lambda d: SAMPLES / "camera.png", ["--border", "sideways"], 2, "border='sideways'"),
    ],
)
def test_bad_input(tmp_path, make_input, extra, code, match):
    work = tmp_path / "work"
    work.mkdir()
    src = make_input(work)
    before = digest(src) if src.is_file() else None
    extra = [e.replace("{d}", str(work)) for e in extra]
    args = ["apply", str(src), *extra]
    if "-k" not in extra:
        args += ["-k", "box:3"]
    if "-O" not in extra:
        args += ["-o", str(work / "out.png")]
    res = run(*args)
    _assert_clean_failure(res, code, match, work)
    if before is not None:
        assert digest(src) == before


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", out)
    assert res.exit_code == 1 and "--overwrite" in res.stderr and out.read_bytes() == b"keep me"
    res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", out, "--overwrite", "-q")
    assert res.exit_code == 0 and load(out).shape == (512, 512)


def test_output_equal_to_input_is_refused_also_through_a_link(tmp_path):
    src = tmp_path / "in.png"
    shutil.copy(SAMPLES / "camera.png", src)
    link = tmp_path / "link.png"
    link.symlink_to(src)
    before = digest(src)
    for target in (src, link):
        res = run("apply", src, "-k", "box:3", "-o", target, "--overwrite")
        assert res.exit_code == 1 and "is this input" in res.stderr
    assert digest(src) == before


def test_traceback_flag_shows_the_traceback(tmp_path):
    res = run("apply", BAD / "text_renamed.png", "-k", "box:3", "-o", tmp_path / "o.png", "--traceback")
    assert res.exit_code == 1
    assert "Traceback" in res.stderr and "not an image" in res.stderr


def _rgb() -> np.ndarray:
    return np.asarray(Image.open(SAMPLES / "chelsea.png"))[:48, :64]


@pytest.mark.parametrize(
    ("name", "make", "expected_mode", "expected_dtype"),
    [
        ("jpeg.jpg", lambda p: Image.fromarray(_rgb()).save(p, quality=95), "RGB", np.uint8),
        ("bmp.bmp", lambda p: Image.fromarray(_rgb()).save(p), "RGB", np.uint8),
        ("webp.webp", lambda p: Image.fromarray(_rgb()).save(p, lossless=True), "RGB", np.uint8),
        ("gif.gif", lambda p: Image.fromarray(_rgb()).convert("P").save(p), "RGB", np.uint8),
        ("palette.png", lambda p: Image.fromarray(_rgb()).convert("P").save(p), "RGB", np.uint8),
        ("cmyk.jpg", lambda p: Image.fromarray(_rgb()).convert("CMYK").save(p), "RGB", np.uint8),
        ("la.png", lambda p: Image.fromarray(_rgb()).convert("LA").save(p), "LA", np.uint8),
        ("i32.tif", lambda p: Image.fromarray(_rgb()[..., 0].astype(np.int32) * 1000).save(p), "", np.int32),
        ("float.tif", lambda p: Image.fromarray(_rgb()[..., 0].astype(np.float32) / 7).save(p), "", np.float32),
    ],
)
def test_every_input_kind_matches_the_engine(tmp_path, name, make, expected_mode, expected_dtype):
    from convcli.io.read import read_input

    src = tmp_path / name
    make(src)
    image = read_input(str(src))
    assert image.array.dtype == expected_dtype
    if expected_mode:
        assert image.mode == expected_mode
    out = tmp_path / "out.tif"
    doc = apply_json(src, "-k", "1 2; 3 -4", "-o", out)
    got = tifffile.imread(out)
    assert got.dtype == expected_dtype and list(got.shape) == doc["output_shape"] == list(image.array.shape)
    x = image.array[..., :-1] if image.alpha else image.array
    ref = naive_correlate(x.astype(float), np.array([[1.0, 2.0], [3.0, -4.0]]), flip=True)
    if np.dtype(expected_dtype).kind == "f":
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(got[..., :-1] if image.alpha else got, to_uint(ref, expected_dtype))
    if image.alpha:
        np.testing.assert_array_equal(got[..., -1], image.array[..., -1])


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    res = run("info", tmp_path / "o.jpg", "--json")
    assert json.loads(res.stdout)["shape"] == [4, 6]


def test_outputs_get_normal_file_permissions(tmp_path):
    out = tmp_path / "o.png"
    apply_json(SAMPLES / "camera.png", "-k", "box:3", "-o", out)
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_stats_match_numpy_with_nan_and_channels():
    from convcli.pipeline.process import stats_of

    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 700, 3)).astype(np.float32) * 50 + 10
    a[5, 5, 1] = np.nan
    got = stats_of(a, True).to_json()
    finite = a[np.isfinite(a)].astype(np.float64)
    assert got["mean"] == pytest.approx(finite.mean()) and got["std"] == pytest.approx(finite.std())
    assert got["min"] == finite.min() and got["max"] == finite.max()
    for c in range(3):
        v = a[..., c][np.isfinite(a[..., c])].astype(np.float64)
        st = got["per_channel"][c]
        assert (st["min"], st["max"]) == (v.min(), v.max())
        assert st["mean"] == pytest.approx(v.mean()) and st["std"] == pytest.approx(v.std())


def test_metadata_is_dropped_unless_keep_metadata(tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "a test description"  # ImageDescription
    Image.fromarray(np.asarray(Image.open(SAMPLES / "chelsea.png"))).save(tmp_path / "in.jpg", exif=exif, quality=95)
    apply_json(tmp_path / "in.jpg", "-k", "box:3", "-o", tmp_path / "plain.jpg")
    apply_json(tmp_path / "in.jpg", "-k", "box:3", "-o", tmp_path / "kept.jpg", "--keep-metadata")
    with Image.open(tmp_path / "plain.jpg") as plain, Image.open(tmp_path / "kept.jpg") as kept:
        assert plain.getexif().get(0x010E) is None
        assert kept.getexif().get(0x010E) == "a test description"


def test_output_extension_and_format_must_agree(tmp_path):
    res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", tmp_path / "o.png", "--format", "tif")
    assert res.exit_code == 2 and "disagree" in res.stderr and not list(tmp_path.iterdir())
    apply_json(SAMPLES / "camera.png", "-k", "box:3", "-o", tmp_path / "o.tiff", "--format", "tif")
    assert tifffile.imread(tmp_path / "o.tiff").shape == (512, 512)


def test_internal_errors_are_one_line_with_exit_1_and_a_traceback_on_request(tmp_path, monkeypatch):
    from convcli.pipeline import process as process_mod

    def broken(*args, **kwargs):
        raise IndexError("a bug")

    monkeypatch.setattr(process_mod, "stats_of", broken)
    res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "internal error IndexError: a bug" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("convcli: error:") == 1
    assert not list(tmp_path.iterdir())
    res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", tmp_path / "o.png", "--traceback")
    assert res.exit_code == 1 and "Traceback" in res.stderr and "IndexError" in res.stderr
