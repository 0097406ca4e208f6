"""Issue 12: hostile and unusual inputs through the real CLI. Each test asserts the exit code,
exactly one ``convcli: error:`` line, no traceback, no file left and inputs untouched."""

from __future__ import annotations

import os
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

from .guard import assert_refused, run_cli, snapshot

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
runner = CliRunner()


def cli(*args: object, input: bytes | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("convcli: error:")]


def small_png(path: Path, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    return path


# --- 10: messages --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("apply", "x.png", "-k", "box", "--jobs", "-1", "-o", "y.png"),
        ("apply", "x.png", "-o", "y.png"),
        ("apply", "x.png", "-k", "box", "--no-such-option"),
        ("nope",),
        ("shape", "-i", "5", "--channels", "abc"),
        ("apply", "x.png", "-k", "box", "--mode", "sideways", "-o", "y.png"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, tmp_path):
    res = cli(*args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcli: error: "), res.stderr
    assert "--help" in lines[0]
    assert not any(ch in res.stderr for ch in "╭│╰")


def test_a_newline_in_a_file_name_cannot_forge_an_error_line(tmp_path):
    bad = tmp_path / "a\nconvcli: error: forged.png"
    bad.write_bytes(b"not an image at all")
    before = snapshot(tmp_path)
    res = cli("apply", bad, "-k", "box:3", "-o", tmp_path / "out.png")
    assert res.exit_code == 1
    assert len(error_lines(res.stderr)) == 1
    assert "\\nconvcli: error: forged.png" in res.stderr
    assert snapshot(tmp_path) == before


# --- 6: signals while blocked reading ------------------------------------------------------------
def _wait_for_handler(pid: int) -> None:
    """Until the process has its SIGTERM handler (bit 15 of SigCgt) installed, then a moment more."""
    for _ in range(600):
        with open(f"/proc/{pid}/status") as fh:
            caught = next(int(ln.split()[1], 16) for ln in fh if ln.startswith("SigCgt"))
        if caught & (1 << (signal.SIGTERM - 1)):
            break
        time.sleep(0.05)
    time.sleep(1.0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize("where", ["stdin", "fifo", "fifo-batch", "info-stdin", "stdin-sigint", "stdin-sighup"])
def test_sigterm_while_blocked_reading_ends_with_130(tmp_path, where):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    small_png(tmp_path / "a.png")
    r, w = os.pipe()  # a writer that never writes
    args = {
        "stdin": ["apply", "-", "-k", "box:3", "-f", "png", "-o", "out.png"],
        "fifo": ["apply", "f.png", "-k", "box:3", "-o", "out.png"],
        "fifo-batch": ["apply", "f.png", "a.png", "-k", "box:3", "-O", "outs", "-j", "2"],
        "info-stdin": ["info", "-"],
        "stdin-sigint": ["apply", "-", "-k", "box:3", "-f", "png", "-o", "out.png"],
        "stdin-sighup": ["apply", "-", "-k", "box:3", "-f", "png", "-o", "out.png"],
    }[where]
    proc = subprocess.Popen([sys.executable, "-m", "convcli", *args], cwd=tmp_path, stdin=r,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_for_handler(proc.pid)
        proc.send_signal({"sigint": signal.SIGINT, "sighup": signal.SIGHUP}.get(where.rpartition("-")[2], signal.SIGTERM))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(r)
        os.close(w)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert not (tmp_path / "out.png").exists()
    assert not list(tmp_path.glob("**/*.part"))


# --- 1: never replace an existing file without --overwrite, also under races -------------------
def test_publish_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    from convcli.io.write import OutputExists, atomic_write

    target = tmp_path / "out.png"
    target.write_bytes(b"theirs")
    with pytest.raises(OutputExists):
        atomic_write(target, b"ours")
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left
    atomic_write(target, b"ours", overwrite=True)
    assert target.read_bytes() == b"ours"


def test_two_racing_batches_never_clobber_each_others_outputs(tmp_path):
    import json

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(24):
        Image.fromarray(rng.integers(0, 100, (24, 24), dtype=np.uint8)).save(src / f"img{i:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "convcli", "apply", str(src), "-O", str(out), "--suffix", "", "--json", "-q", "-j", "1"]
    procs = [subprocess.Popen([*cmd, "-k", k], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in ("1", "2")]
    results = [p.communicate(timeout=300) for p in procs]
    owners: dict[str, list[float]] = {}
    for factor, (stdout, _) in zip((1.0, 2.0), results):
        for line in stdout.decode().splitlines():
            rep = json.loads(line)
            if rep["status"] == "ok":
                owners.setdefault(Path(rep["output"]).name, []).append(factor)
            else:
                assert "exists" in rep["error"]
    assert sorted(owners) == sorted(p.name for p in out.iterdir())  # no temporary file left either
    for name, factors in owners.items():
        assert len(factors) == 1, f"{name} reported written by both runs"
        expected = np.asarray(Image.open(src / name)).astype(float) * factors[0]
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), expected.astype(np.uint8))
    assert len(owners) == 24


# --- 2: bombs refused from the header, before decoding -------------------------------------------
def _tiff_declaring(path: Path, width: int, height: int, pages: int = 1) -> Path:
    """A small real TIFF (``pages`` pages of 16x16) whose every page then claims ``width`` x ``height``."""
    import tifffile

    tifffile.imwrite(path, np.zeros((pages, 16, 16), np.uint8), photometric="minisblack")
    patches = []
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            for name, value in (("ImageWidth", width), ("ImageLength", height)):
                tag = page.tags[name]
                patches.append((tag.valueoffset, 2 if int(tag.dtype) == 3 else 4, value))
    with open(path, "r+b") as fh:
        for offset, size, value in patches:
            fh.seek(offset)
            fh.write(int(value).to_bytes(size, "little"))
    return path


@pytest.mark.parametrize("command", ["apply", "info"])
@pytest.mark.parametrize(("side", "pages", "pixels"), [(60000, 1, "3,600,000,000"), (200000, 1, "40,000,000,000"), (1024, 2000, "2,097,152,000")])
def test_a_tiff_declaring_a_huge_size_is_refused_from_its_header(tmp_path, command, side, pages, pixels):
    bomb = _tiff_declaring(tmp_path / "bomb.tif", side, side, pages)
    assert bomb.stat().st_size < 1_000_000  # 2000 pages of 16x16: under a megabyte, declaring gigapixels
    before = snapshot(tmp_path)
    args = ["apply", bomb, "-k", "box:3", "-o", tmp_path / "out.tif"] if command == "apply" else ["info", bomb]
    res = run_cli(*args, timeout=60)  # under an address-space limit far below what decoding would take
    assert_refused(res, before, tmp_path)
    assert f"{pixels} pixels" in res.errors[0] and "--max-pixels 89,478,485" in res.errors[0]


def test_tiff_pages_count_against_the_pixel_limit(tmp_path):
    import tifffile

    stack = tmp_path / "pages.tif"
    tifffile.imwrite(stack, np.zeros((20, 64, 64), np.uint8))  # 20 pages of 4,096 pixels
    before = snapshot(tmp_path)
    res = cli("apply", stack, "-k", "box:3", "-o", tmp_path / "out.tif", "--max-pixels", "50000")
    assert res.exit_code == 1
    assert len(error_lines(res.stderr)) == 1 and "81,920 pixels" in res.stderr
    assert snapshot(tmp_path) == before
    assert cli("apply", stack, "-k", "box:3", "-o", tmp_path / "out.tif", "--max-pixels", "90000").exit_code == 0


def test_the_bomb_message_quotes_max_pixels(tmp_path):
    res = cli("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", tmp_path / "o.png", "--max-pixels", "1000")
    assert res.exit_code == 1
    [line] = error_lines(res.stderr)
    assert "262,144 pixels" in line and "--max-pixels 1,000" in line
    assert not list(tmp_path.iterdir())


def test_npy_header_is_checked_before_loading(tmp_path):
    big = tmp_path / "big.npy"
    with open(big, "wb") as fh:  # a header promising 40000x40000 float64, and 16 bytes of data
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (40000, 40000)})
        fh.write(b"\0" * 16)
    before = snapshot(tmp_path)
    res = run_cli("apply", big, "-k", "box:3", "-o", tmp_path / "o.npy")
    assert_refused(res, before, tmp_path)


@pytest.mark.parametrize("dilation", ["100000000", "10000000x3"])
def test_huge_dilation_is_refused_with_memory_bounded(tmp_path, dilation):
    src = small_png(tmp_path / "in.png", 64)
    before = snapshot(tmp_path)
    res = run_cli("apply", src, "-k", "box:3", "--dilation", dilation, "-o", tmp_path / "o.png")
    assert_refused(res, before, tmp_path)
    assert "reduce --dilation" in res.errors[0]


@pytest.mark.parametrize("option", ["--dilation", "--stride", "--padding"])
def test_values_that_overflow_are_usage_errors(tmp_path, option):
    src = small_png(tmp_path / "in.png")
    res = cli("apply", src, "-k", "box:3", option, "99999999999999999999", "-o", tmp_path / "o.png")
    assert res.exit_code == 2
    assert len(error_lines(res.stderr)) == 1 and "above 2,147,483,647" in res.stderr
    assert not (tmp_path / "o.png").exists()


# --- 3: no silent data loss ----------------------------------------------------------------------
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_png_round_trips_losslessly(tmp_path, channels):
    import imagecodecs

    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 65536, (20, 30, channels), dtype=np.uint16)
    src = tmp_path / "in.png"
    src.write_bytes(imagecodecs.png_encode(arr))
    res = cli("apply", src, "-k", "1", "-o", tmp_path / "out.png", "--alpha", "filter")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(imagecodecs.png_decode((tmp_path / "out.png").read_bytes()), arr)
    info = cli("info", src, "--json")
    assert '"dtype": "uint16"' in info.stdout and f'"shape": [20, 30, {channels}]' in info.stdout
    # and filtering really uses all 16 bits
    res = cli("apply", src, "-k", "2", "-o", tmp_path / "twice.png", "--alpha", "filter")
    twice = imagecodecs.png_decode((tmp_path / "twice.png").read_bytes())
    np.testing.assert_array_equal(twice, np.minimum(arr.astype(np.int64) * 2, 65535))


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_are_refused_not_silently_cut_to_one_frame(tmp_path, fmt):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 120, 240)]
    src = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(src, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    before = snapshot(tmp_path)
    res = cli("apply", src, "-k", "box:3", "-o", tmp_path / f"out.{fmt.lower()}")
    assert res.exit_code == 1
    [line] = error_lines(res.stderr)
    assert "animated" in line and "3 frames" in line
    assert snapshot(tmp_path) == before


def test_keep_metadata_on_an_exif_rotated_jpeg_resets_orientation(tmp_path):
    img = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (20, 1)))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    exif[0x010F] = "convcli-test"
    src = tmp_path / "rot.jpg"
    img.save(src, exif=exif.tobytes(), quality=95)
    res = cli("apply", src, "-k", "1", "-o", tmp_path / "out.jpg", "--keep-metadata")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (20, 40)  # upright pixels
        assert out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "convcli-test"


# --- 9: valid data in unusual types is converted -------------------------------------------------
@pytest.mark.parametrize("dtype", [">f4", ">u2", ">i4", "<f2", ">f8"])
def test_big_endian_and_float16_arrays_are_converted(tmp_path, dtype):
    arr = (np.arange(64).reshape(8, 8) % 50).astype(dtype)
    np.save(tmp_path / "in.npy", arr)
    res = cli("apply", tmp_path / "in.npy", "-k", "1", "-o", tmp_path / "out.npy")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy").astype(np.float64), arr.astype(np.float64))


# --- 4 and 9: name templates ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "what"),
    [
        ("../{stem}.png", "outside --out-dir"),
        ("{stem}/../../x.png", "outside --out-dir"),
        ("/tmp/convcli-escape-{stem}.png", "outside --out-dir"),
        ("{stem", "not a valid template"),
        ("{stem}}", "not a valid template"),
        ("{nope}.png", "unknown field"),
        ("{0}.png", "unknown field"),
        ("{stem.real}.png", "unknown field"),
        ("{stem:>999999999999}.png", "unknown field"),
        ("{stem!r}.png", "unknown field"),
        ("x" * 300 + "{ext}", "255 bytes"),
        ("{stem}/..", "give a file name"),
    ],
)
def test_bad_or_escaping_name_templates_are_refused(tmp_path, template, what):
    src = small_png(tmp_path / "in.png")
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    res = cli("apply", src, "-k", "box:3", "-O", tmp_path / "out", "--name", template)
    assert res.exit_code == 2, res.output
    [line] = error_lines(res.stderr)
    assert what in line
    assert snapshot(tmp_path) == before
    assert not Path("/tmp/convcli-escape-in.png").exists()


def test_a_folder_link_inside_out_dir_cannot_lead_outside(tmp_path):
    src = small_png(tmp_path / "in.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    res = cli("apply", src, "-k", "box:3", "-O", tmp_path / "out", "--name", "link/{stem}.png")
    assert res.exit_code == 2 and "outside --out-dir" in res.stderr
    assert not list((tmp_path / "elsewhere").iterdir())
    ok = cli("apply", src, "-k", "box:3", "-O", tmp_path / "out", "--name", "sub/{stem}.png")
    assert ok.exit_code == 0 and (tmp_path / "out" / "sub" / "in.png").is_file()


# --- 7: image bytes and JSON never share stdout --------------------------------------------------
def test_stdout_image_with_json_is_refused(tmp_path):
    src = small_png(tmp_path / "in.png")
    res = cli("apply", src, "-k", "box:3", "-o", "-", "--format", "png", "--json")
    assert res.exit_code == 2
    assert res.stdout == ""
    [line] = error_lines(res.stderr)
    assert "--json" in line


# --- 9 and 10: kernel files that used to give tracebacks, wrong messages or long waits ----------
KERNEL_FILES = {
    "deep.json": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "inf.json": ("[[1e999, 1]]", "NaN or Inf"),
    "bigint.json": ("[[" + "9" * 400 + ", 1]]", "too large"),
    "scalar.json": ("5", "0 axes"),
    "nan.mat": ("nan 1\n1\n", "finite"),
    "inf.mat": ("inf 1\n1\n", "finite"),
    "frac.mat": ("1.5 1\n1\n", "whole number"),
    "huge.mat": ("99999999999 1\n1\n", "whole number"),
    "latin1.txt": (b"1 2 1 # caf\xe9\n", "not UTF-8"),
    "f32.txt": ("1e39 1\n", "overflows float32"),
    "wide.txt": (" ".join(["1"] * 1_100_000), "over the limit"),
    "big.csv": ("0\n" * (9 << 20), "byte limit"),
}


@pytest.mark.parametrize("name", sorted(KERNEL_FILES))
def test_hostile_kernel_files_are_one_line_usage_errors(tmp_path, name):
    text, what = KERNEL_FILES[name]
    kfile = tmp_path / name
    kfile.write_bytes(text if isinstance(text, bytes) else text.encode())
    src = small_png(tmp_path / "in.png")
    before = snapshot(tmp_path)
    res = cli("apply", src, "-k", kfile, "-o", tmp_path / "out.png")
    assert res.exit_code == 2, res.output
    [line] = error_lines(res.stderr)
    assert what in line and name in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("kind", "what"), [("folder", "is a folder"), ("fifo", "not a regular file")])
def test_a_folder_or_fifo_given_as_kernel_file(tmp_path, kind, what):
    k = tmp_path / "k.txt"
    k.mkdir() if kind == "folder" else os.mkfifo(k)
    src = small_png(tmp_path / "in.png")
    res = run_cli("apply", src, "-k", k, "-o", tmp_path / "out.png", timeout=60)  # a FIFO must not block
    assert res.code == 2 and len(res.errors) == 1 and what in res.errors[0]


def test_a_big_npy_kernel_is_refused_from_its_header(tmp_path):
    k = tmp_path / "k.npy"
    with open(k, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (50000, 50000)})
    src = small_png(tmp_path / "in.png")
    res = cli("apply", src, "-k", k, "-o", tmp_path / "out.png")
    assert res.exit_code == 2 and "over the limit" in res.stderr


@pytest.mark.parametrize(("spec", "token"), [("1 2 x", "'x'"), ("1 2; 3 x", "'x'"), ("1/0 1", "'1/0'"), ("1/2/3", "'1/2/3'")])
def test_an_inline_kernel_that_fails_to_parse_is_reported_as_such(tmp_path, spec, token):
    res = cli("apply", small_png(tmp_path / "in.png"), "-k", spec, "-o", tmp_path / "out.png")
    assert res.exit_code == 2
    [line] = error_lines(res.stderr)
    assert "inline kernel" in line and f"token {token}" in line and "does not exist" not in line


@pytest.mark.parametrize("spec", ["box:1e9", "box3d:200", "gaussian:sigma=1e9", "gaussian:inf", "unsharp:amount=1e300", "motion:length=1e9"])
def test_generator_parameters_that_would_explode_are_refused(spec):
    res = cli("kernels", "show", spec)
    assert res.exit_code == 2
    assert len(error_lines(res.stderr)) == 1


# --- 5: filters folders --------------------------------------------------------------------------
def test_filters_folder_skips_fifos_and_links_elsewhere_and_names_what_it_shadows(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    os.mkfifo(lib / "fifo.txt")
    secret = tmp_path / "secret.txt"
    secret.write_text("31415926 is the secret\n")
    (lib / "leak.txt").symlink_to(secret)
    (lib / "sobel-x.txt").write_text("0 0 0\n0 1 0\n0 0 0\n")
    (lib / "mine.txt").write_text("1 1\n")
    (lib / "alias.txt").symlink_to(lib / "mine.txt")  # a link inside the folder is fine
    res = run_cli("kernels", "--json", "--filters-dir", lib, timeout=60)  # a FIFO must not hang it
    assert res.code == 0, res.stderr
    names = {d["name"]: d for d in map(__import__("json").loads, res.stdout.decode().splitlines())}
    assert "fifo" not in names and "leak" not in names and "31415926" not in res.stdout.decode()
    assert names["alias"]["shape"] == [1, 2] and names["mine"]["replaces_builtin"] is False
    assert names["sobel-x"]["replaces_builtin"] is True
    assert f"{lib / 'sobel-x.txt'} replaces the built-in kernel sobel-x" in res.stderr
    res = cli("apply", small_png(tmp_path / "in.png"), "-k", "leak", "--filters-dir", lib, "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and "unknown kernel 'leak'" in res.stderr


def test_a_world_writable_filters_folder_is_refused(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mine.txt").write_text("1 1\n")
    lib.chmod(0o777)
    res = cli("apply", small_png(tmp_path / "in.png"), "-k", "mine", "--filters-dir", lib, "-o", tmp_path / "o.png")
    assert res.exit_code == 2
    [line] = error_lines(res.stderr)
    assert "writable by every user" in line and "chmod o-w" in line
    assert cli("kernels", "--filters-dir", lib).exit_code == 2
    assert cli("apply", tmp_path / "in.png", "-k", "box:3", "--filters-dir", lib, "-o", tmp_path / "o.png").exit_code == 0


# --- 8: convcli shape ----------------------------------------------------------------------------
def shape_json(*args: str) -> dict:
    import json

    res = cli("shape", *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_groups_with_a_huge_prime_channel_count_answers_at_once():
    res = run_cli("shape", "-i", "32", "-c", "2147483629", "-k", "3", "-f", "2147483629", "-g", "2", timeout=30)
    assert res.code == 2 and len(res.errors) == 1
    assert "(valid: 1, 2147483629)" in res.errors[0]


def test_groups_hint_lists_common_divisors():
    res = cli("shape", "-i", "32", "-c", "12", "-k", "3", "-f", "18", "-g", "4")
    assert res.exit_code == 2 and "(valid: 1, 2, 3, 6)" in res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("-i", "9" * 400, "-c", "3", "-k", "3", "-f", "8"),
        ("-i", "32", "-c", "3", "-k", "3", "-f", "8", "-d", "9" * 300, "-p", "same"),
        ("-i", "32", "-c", "3", "-k", "3", "-f", "8", "-s", "9" * 40),
        ("-i", "32", "--layer", "conv k=3 c=" + "9" * 40),
        ("-i", "32x32x32x32", "-k", "3", "-f", "1"),
        ("-i", "x".join(["3"] * 5000), "-k", "3", "-f", "1"),
    ],
)
def test_huge_numbers_are_one_line_errors(args):
    res = cli("shape", *args)
    assert res.exit_code == 2, res.output
    assert len(error_lines(res.stderr)) == 1 and "Traceback" not in res.output


def test_long_or_binary_or_special_spec_files(tmp_path):
    long = tmp_path / "long.spec"
    long.write_text("conv k=3 p=1 c=8\n" * 20_000)
    latin = tmp_path / "latin.spec"
    latin.write_bytes(b"conv k=3 c=8 # caf\xe9\n")
    fifo = tmp_path / "fifo.spec"
    os.mkfifo(fifo)
    for spec, what in ((long, "over the limit"), (latin, "not UTF-8"), (fifo, "not a regular file"), (tmp_path, "not a regular file")):
        res = run_cli("shape", "-i", "32", "--spec", spec, timeout=60)
        assert res.code == 2 and len(res.errors) == 1 and what in res.errors[0], res.stderr


@pytest.mark.parametrize(
    ("size", "layer", "expected"),
    [
        ("5", "pool max k=6 s=4 ceil", [1]),  # the window starts in the input and ends past the edge
        ("1", "pool max k=100 ceil", [1]),
        ("20", "maxpool k=3 s=2 ceil", [10]),  # torchvision GoogLeNet's pools: PyTorch's sizes
        ("10", "maxpool k=3 s=2 ceil", [5]),
        ("5", "maxpool k=3 s=2 ceil", [2]),
        ("6", "pool max k=2 s=2 p=1 ceil", [4]),
        ("5", "pool max k=2 s=2 p=1 ceil", [3]),
    ],
)
def test_ceil_mode_pooling_follows_pytorch(size, layer, expected):
    assert shape_json("-i", size, "--layer", layer)["layers"][0]["output_size"] == expected


def test_ceil_mode_pooling_still_refuses_an_empty_output():
    res = cli("shape", "-i", "5", "--layer", "pool max k=6 s=4")
    assert res.exit_code == 2 and len(error_lines(res.stderr)) == 1


def test_depthwise_groups_in_json_are_the_channels():
    layer = shape_json("-i", "8x8", "-c", "32", "--layer", "dw k=3 p=1")["layers"][0]
    assert layer["groups"] == 32 and layer["params"] == 32 * 9 + 32


# --- 9: info on files whose headers lie ----------------------------------------------------------
def _png(width: int, height: int, depth: int, colour: int, payload: bytes) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (_png(9000, 9000, 8, 0, b"\0" * 100), "truncated"),
        (_png(9000, 9000, 16, 2, b"\0" * 100), "16-bit PNG"),
        (_png(60000, 60000, 8, 0, b"\0" * 100), "--max-pixels 89,478,485"),
        (_png(60000, 60000, 16, 6, b"\0" * 100), "--max-pixels 89,478,485"),
    ],
)
def test_info_on_lying_headers_is_one_line(tmp_path, data, what):
    src = tmp_path / "lie.png"
    src.write_bytes(data)
    before = snapshot(tmp_path)
    res = run_cli("info", src, timeout=60)
    assert_refused(res, before, tmp_path)
    assert what in res.errors[0]


def test_a_layer_with_an_unbalanced_quote_is_one_usage_error():  # found by tests/test_hostile.py
    res = cli("shape", "-i", "32", "--layer", "conv k=3 c=8 '")
    assert res.exit_code == 2
    [line] = error_lines(res.stderr)
    assert "no closing quotation" in line


@pytest.mark.parametrize("where", ["input", "kernel"])
def test_a_garbled_npy_header_is_one_line(tmp_path, where):  # found by tests/test_hostile.py
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": ()})
    head = bytearray(buf.getvalue())
    head[20] = ord("(")  # an unclosed bracket: numpy's tokenizer raises TokenError
    bad = tmp_path / "bad.npy"
    bad.write_bytes(bytes(head))
    src = small_png(tmp_path / "in.png")
    args = ["apply", bad, "-k", "box:3", "-o", tmp_path / "o.npy"] if where == "input" else ["apply", src, "-k", bad, "-o", tmp_path / "o.png"]
    res = cli(*args)
    assert res.exit_code == (1 if where == "input" else 2), res.output
    [line] = error_lines(res.stderr)
    assert "internal error" not in line


def test_a_tiff_that_trips_tifffiles_own_assertion_is_a_read_error(tmp_path):  # found by tests/test_hostile.py
    bad = ROOT / "tests" / "data" / "bad" / "tifffile_assert.tif"  # BitsPerSample 0 in a 3-page stack
    res = cli("apply", bad, "-k", "box:3", "-o", tmp_path / "o.tif")
    assert res.exit_code == 1
    [line] = error_lines(res.stderr)
    assert "cannot decode the TIFF" in line and "internal error" not in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("spec", [",", " , ,", ";", "|"])
def test_separators_alone_as_kernel_are_one_usage_error(spec):  # found by tests/test_hostile.py
    res = cli("kernels", "show", spec)
    assert res.exit_code == 2
    assert len(error_lines(res.stderr)) == 1 and "internal error" not in res.stderr


@pytest.mark.parametrize(("option", "value"), [("--scale", "inf"), ("--scale", "nan"), ("--offset", "1e308"), ("--offset", "-inf")])
def test_scale_and_offset_must_be_finite_float32_numbers(tmp_path, option, value):
    res = cli("apply", small_png(tmp_path / "in.png"), "-k", "box:3", option, value, "-o", tmp_path / "o.png")
    assert res.exit_code == 2
    [line] = error_lines(res.stderr)
    assert option in line and "Warning" not in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_a_bad_slice_in_a_stack_is_named(tmp_path):
    (tmp_path / "s").mkdir()
    for i in range(3):
        small_png(tmp_path / "s" / f"s{i}.png")
    (tmp_path / "s" / "s1.png").write_bytes((tmp_path / "s" / "s1.png").read_bytes()[:60])
    res = cli("apply", tmp_path / "s", "--stack", "-k", "box:3", "-o", tmp_path / "o.tif")
    assert res.exit_code == 1
    [line] = error_lines(res.stderr)
    assert "slice s1.png:" in line
    assert not (tmp_path / "o.tif").exists()


def test_overwrite_replaces_a_link_not_the_file_it_points_to(tmp_path):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.png"
    out.symlink_to(victim)
    src = small_png(tmp_path / "in.png")
    res = cli("apply", src, "-k", "box:3", "-o", out)
    assert res.exit_code == 1 and "exists" in res.stderr  # not replaced without --overwrite
    assert cli("apply", src, "-k", "box:3", "-o", out, "--overwrite").exit_code == 0
    assert victim.read_bytes() == b"precious"
    assert not out.is_symlink()
    with Image.open(out) as img:
        assert img.size == (16, 16)


def test_an_npz_bank_whose_member_header_lies_is_refused_before_allocation(tmp_path):
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (2**33,)})
    with zipfile.ZipFile(tmp_path / "bank.npz", "w") as z:
        z.writestr("weight.npy", head.getvalue() + b"\0" * 64)  # numpy would allocate 64 GiB from this header
    res = run_cli("apply", small_png(tmp_path / "in.png"), "-k", tmp_path / "bank.npz", "-o", tmp_path / "o.png")
    assert res.code == 2 and len(res.errors) == 1 and "over the limit" in res.errors[0], res.stderr
    assert not (tmp_path / "o.png").exists()


# --- round 18: TIFF layouts, constant images, replacing stores -----------------------------------
@pytest.mark.parametrize("channels", [2, 3, 5])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_tiff_results_keep_channels_as_samples_of_one_page(tmp_path, channels, dtype):
    """(H, W, C) results are written as C samples of one page (tifffile alone would write H pages of
    W x C), and read back as that image, whatever C and the type; volumes stay pages."""
    import tifffile

    rng = np.random.default_rng(2)
    x = rng.integers(0, 200, (12, 14, channels)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", x, photometric="minisblack", planarconfig="contig")
    res = cli("apply", tmp_path / "in.tif", "-k", "box:3", "--dtype", dtype, "-o", tmp_path / "out.tif")
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert len(tif.pages) == 1 and tif.series[0].shape == (12, 14, channels)
        got = tif.asarray()
    from scipy import ndimage as ndi

    ref = np.stack([ndi.correlate(x[..., c].astype(np.float64), np.ones((3, 3)) / 9, mode="reflect") for c in range(channels)], -1)
    np.testing.assert_allclose(got, np.rint(ref) if dtype == "uint8" else ref, rtol=1e-5, atol=1e-4)
    info = cli("info", tmp_path / "out.tif", "--json")
    assert info.exit_code == 0 and "(H, W, C)" in cli("info", tmp_path / "out.tif").stdout
    vol = rng.integers(0, 200, (4, 12, 14)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "vol.tif", vol, photometric="minisblack")
    assert cli("apply", tmp_path / "vol.tif", "-k", "box:3", "-o", tmp_path / "vol_out.tif").exit_code == 0
    with tifffile.TiffFile(tmp_path / "vol_out.tif") as tif:
        assert len(tif.pages) == 4 and tif.series[0].shape == (4, 12, 14)


def test_tiff_alpha_is_what_the_file_tags_not_the_channel_count(tmp_path):
    """A CMYK or two-band TIFF has no alpha: every band is filtered; a tagged alpha is kept apart
    and tagged again in the output."""
    import tifffile

    x = np.random.default_rng(3).integers(0, 256, (10, 12, 4)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "cmyk.tif", x, photometric="separated")
    tifffile.imwrite(tmp_path / "rgba.tif", x, photometric="rgb", extrasamples=["unassalpha"])
    for name, alpha in (("cmyk", False), ("rgba", True)):
        res = cli("apply", tmp_path / f"{name}.tif", "-k", "box:3", "-o", tmp_path / f"{name}_out.tif")
        assert res.exit_code == 0, res.output
        with tifffile.TiffFile(tmp_path / f"{name}_out.tif") as tif:
            got = tif.asarray()
            assert (2 in tuple(int(e) for e in tif.pages[0].extrasamples)) == alpha
        assert np.array_equal(got[..., 3], x[..., 3]) == alpha  # alpha kept as it was; K filtered


def test_a_tiff_of_differently_shaped_images_is_refused_not_cut_to_the_first(tmp_path):
    import tifffile

    with tifffile.TiffWriter(tmp_path / "two.tif") as w:
        w.write(np.zeros((8, 9), np.uint8))
        w.write(np.zeros((6, 7), np.uint8))
    before = snapshot(tmp_path)
    res = cli("apply", tmp_path / "two.tif", "-k", "box:3", "-o", tmp_path / "out.tif")
    assert res.exit_code == 1
    [line] = error_lines(res.stderr)
    assert "2 images" in line and "8x9" in line and "6x7" in line and "only the first" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value", [1e17, 3e38, -2.5e30])
def test_a_constant_float_image_of_any_magnitude_is_filtered_and_reported(tmp_path, value):
    import tifffile

    tifffile.imwrite(tmp_path / "c.tif", np.full((20, 20), value, np.float32))
    for extra in ([], ["--json"]):
        res = cli("apply", tmp_path / "c.tif", "-k", "box:3", "-o", tmp_path / "o.tif", "--overwrite", *extra)
        assert res.exit_code == 0, res.output
        assert "Traceback" not in res.output and not error_lines(res.stderr)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "o.tif"), value, rtol=1e-6)


def test_overwrite_never_replaces_a_folder_holding_the_input_or_a_folder_that_is_not_a_store(tmp_path):
    pytest.importorskip("zarr")
    import zarr

    outer = tmp_path / "outer.zarr"
    outer.mkdir()
    arr = zarr.create_array(store=str(outer / "vol.zarr"), shape=(6, 8, 8), chunks=(3, 8, 8), dtype="u2")
    arr[...] = 7
    notes = tmp_path / "notes.zarr"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    for target, words, chain in ((outer, "holds the input", []), (outer, "holds the input", ["-k", "box3d:3"]), (notes, "not a Zarr store", [])):
        res = cli("apply", outer / "vol.zarr", "-k", "box3d:3", *chain, "-o", target, "--overwrite")
        assert res.exit_code == 1, res.output
        [line] = error_lines(res.stderr)
        assert words in line
        assert snapshot(tmp_path) == before and not list(tmp_path.glob("**/*.part"))


def test_a_planar_rgb_tiff_is_an_rgb_image_not_three_planes(tmp_path):
    import tifffile

    rgb = np.random.default_rng(4).integers(0, 65535, (16, 20, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", rgb.transpose(2, 0, 1), planarconfig="separate", photometric="rgb")
    res = cli("apply", tmp_path / "planar.tif", "-k", "identity", "-o", tmp_path / "out.tif")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), rgb)


def test_the_same_input_twice_is_refused_before_anything_is_written(tmp_path):
    small_png(tmp_path / "a.png")
    before = snapshot(tmp_path)
    res = cli("apply", tmp_path / "a.png", tmp_path / "a.png", "-k", "box:3", "--out-dir", tmp_path / "out")
    assert res.exit_code == 2
    [line] = error_lines(res.stderr)
    assert "given twice" in line
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_component_path_zarr_refuses_is_a_one_line_error(tmp_path):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("raw", shape=(4, 8, 8), chunks=(4, 8, 8), dtype="u2")[...] = 1
    before = snapshot(tmp_path)
    res = cli("apply", tmp_path / "g.zarr", "--component", "../raw", "-k", "box3d:3", "-o", tmp_path / "o.zarr")
    assert res.exit_code == 1
    [line] = error_lines(res.stderr)
    assert "not in this Zarr group" in line and "internal error" not in res.stderr
    assert snapshot(tmp_path) == before


def test_a_damaged_exif_block_reads_the_pixels_without_pillows_warning_on_stderr(tmp_path):
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06"  # cut short
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "a.jpg", exif=exif)
    run = run_cli("apply", "a.jpg", "-k", "box:3", "-o", "b.png", "-q", cwd=tmp_path)
    assert run.code == 0 and run.stderr == "", run.stderr
    assert np.abs(np.asarray(Image.open(tmp_path / "b.png")).astype(int) - 90).max() <= 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"foo": [[1]]}', 'needs a "kernel" key'),
        ('[["2", "1"]]', "nested lists of numbers"),
        ("[[true, false]]", "nested lists of numbers"),
        ("[[null]]", "finite number"),
        ("[[[[1]]]]", "give 1 to 3 axes"),
    ],
)
def test_json_kernels_hold_numbers_only_and_name_what_is_wrong(tmp_path, text, words):
    small_png(tmp_path / "a.png")
    (tmp_path / "k.json").write_text(text)
    before = snapshot(tmp_path)
    res = cli("apply", tmp_path / "a.png", "-k", tmp_path / "k.json", "-o", tmp_path / "b.png")
    assert res.exit_code == 2
    [line] = error_lines(res.stderr)
    assert words in line and "k.json" in line
    assert snapshot(tmp_path) == before



def test_the_chunked_path_refuses_what_it_cannot_keep_apart_or_would_leave_out(tmp_path):
    pytest.importorskip("zarr")
    import tifffile

    x = np.random.default_rng(6).integers(0, 256, (10, 12, 4)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", x, photometric="rgb", extrasamples=["unassalpha"])
    with tifffile.TiffWriter(tmp_path / "two.tif") as w:
        w.write(x[..., 0])
        w.write(x[:5, :6, 0])
    before = snapshot(tmp_path)
    for name, words in (("rgba", "--alpha filter"), ("two", "2 images")):
        res = cli("apply", tmp_path / f"{name}.tif", "-k", "box:3", "-o", tmp_path / "o.zarr")
        assert res.exit_code == 1
        [line] = error_lines(res.stderr)
        assert words in line and snapshot(tmp_path) == before
    res = cli("apply", tmp_path / "rgba.tif", "-k", "box:3", "-o", tmp_path / "o.zarr", "--alpha", "filter", "-q")
    assert res.exit_code == 0, res.output
