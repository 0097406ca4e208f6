"""``kernels show --png``, ``apply --compare``, coloured kernels, the report's histogram, and the
80/120-column tables, end to end through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convcli.cli.app import app
from convcli.kernels import resolve
from convcli.viz import kernel_figure
from convcli.viz.colors import DIVERGING

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
runner = CliRunner()


def run(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def one_line_error(res, code: int) -> str:
    assert res.exit_code == code, (res.exit_code, res.output)
    assert res.stderr.startswith("convcli: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr
    return res.stderr


# --- kernels show --png --------------------------------------------------------------------------


def test_kernels_show_png_is_the_kernel_figure(tmp_path):
    out = tmp_path / "emboss.png"
    res = run("kernels", "show", "emboss", "--png", out)
    assert res.exit_code == 0, res.output
    k = resolve("emboss")
    expected = kernel_figure(k.array, name=k.name, description=k.description).image
    assert np.array_equal(png(out), np.asarray(expected))
    assert str(out) in res.stdout


@pytest.mark.parametrize("source", ["box:5", "1 2 1; 0 0 0; -1 -2 -1", "file.txt", "vol.npy", "bank.npz", "laplacian3d"])
def test_kernels_show_png_takes_every_kernel_source(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    Path("file.txt").write_text("# mine\n0 -1 0\n-1 4 -1\n0 -1 0\n")
    np.save("vol.npy", np.arange(27, dtype=float).reshape(3, 3, 3) - 13)
    np.savez("bank.npz", weight=np.random.default_rng(0).standard_normal((4, 2, 3, 3)), bias=np.zeros(4))
    res = run("kernels", "show", source, "--png", "k.png")
    assert res.exit_code == 0, res.output
    h, w = png(Path("k.png")).shape[:2]
    assert 400 <= w <= 1400 and 400 <= h <= 1400


def test_kernels_show_png_refuses_to_replace_and_overwrite_replaces(tmp_path):
    out = tmp_path / "k.png"
    out.write_bytes(b"mine")
    err = one_line_error(run("kernels", "show", "sobel-x", "--png", out), 1)
    assert "exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"mine"
    assert run("kernels", "show", "sobel-x", "--png", out, "--overwrite").exit_code == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_kernels_show_png_unwritable_path_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    one_line_error(run("kernels", "show", "sobel-x", "--png", tmp_path / "file" / "k.png"), 1)
    if Path("/proc/self").is_dir():  # refuses new files even for root
        one_line_error(run("kernels", "show", "sobel-x", "--png", "/proc/k.png"), 1)
    one_line_error(run("kernels", "show", "sobel-x", "--png", tmp_path / "k.jpg"), 2)
    one_line_error(run("kernels", "show", "no-such-kernel", "--png", tmp_path / "k.png"), 2)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_kernels_show_colours_cells_in_a_terminal():
    res = run("kernels", "show", "emboss", env={"FORCE_COLOR": "1", "COLUMNS": "100"})
    assert res.exit_code == 0
    assert "\x1b[" in res.stdout  # cells carry colours
    plain = run("kernels", "show", "emboss", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout
    assert re.search(r"-2\s+-1\s+0\s*\n\s*-1\s+1\s+1\s*\n\s*0\s+1\s+2", plain.stdout)  # as stored
    assert re.search(r"2\s+1\s+0\s*\n\s*1\s+1\s+-1\s*\n\s*0\s+-1\s+-2", plain.stdout)  # conv: rotated


# --- apply --compare -----------------------------------------------------------------------------


def test_apply_compare_identity_difference_is_uniform(tmp_path):
    out, cmp = tmp_path / "out.png", tmp_path / "cmp.png"
    res = run("apply", SAMPLES / "camera.png", "-k", "identity", "-o", out, "--compare", cmp)
    assert res.exit_code == 0, res.output
    img = png(cmp)
    # the difference panel (300 x 300 px, in the right-hand third) is one colour: the map's zero
    right = img[:, 2 * img.shape[1] // 3 :]
    greys = np.all(right == DIVERGING[128], axis=-1)
    rows = np.nonzero(greys.sum(axis=1) >= 300)[0]
    assert len(rows) == 300 and np.all(np.diff(rows) == 1)
    cols = np.nonzero(greys[rows].all(axis=0))[0]
    assert len(cols) == 300
    block = right[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert len(np.unique(block.reshape(-1, 3), axis=0)) == 1
    assert out.exists()


def test_apply_compare_matches_the_api_figure(tmp_path):
    import tifffile

    from convcli.pipeline.pictures import compare_caption
    from convcli.viz.compare import compare_figure

    out, cmp = tmp_path / "out.tif", tmp_path / "cmp.png"
    res = run("apply", SAMPLES / "phantom3d.tif", "-k", "gaussian3d:sigma=1", "-o", out, "--compare", cmp,
              "--dtype", "float32", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    caption = compare_caption(rep)
    assert "gaussian3d:sigma=1" in caption and "conv" in caption and "reflect" in caption and "64×64×64" in caption
    fig = compare_figure(tifffile.imread(SAMPLES / "phantom3d.tif"), tifffile.imread(out), spatial_ndim=3, caption=caption)
    assert np.array_equal(png(cmp), np.asarray(fig.image))
    assert rep["compare"] == str(cmp)


def test_apply_compare_in_batches_folder_and_template(tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.random.default_rng(len(name)).integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    ins = [tmp_path / "a.png", tmp_path / "b.png"]
    res = run("apply", *ins, "-k", "box:3", "--out-dir", tmp_path / "out", "--compare", str(tmp_path / "cmp") + "/")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["a_compare.png", "b_compare.png"]
    res = run("apply", *ins, "-k", "box:3", "--out-dir", tmp_path / "out2", "--compare", "{stem}_cmp.png")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["a_box-3.png", "a_cmp.png", "b_box-3.png", "b_cmp.png"]


def test_apply_compare_errors(tmp_path):
    ins = [SAMPLES / "camera.png", SAMPLES / "chelsea.png"]
    err = one_line_error(run("apply", *ins, "-k", "box:3", "--out-dir", tmp_path, "--compare", tmp_path / "one.png"), 2)
    assert "template" in err
    one_line_error(run("apply", ins[0], "-k", "box:3", "-o", tmp_path / "o.png", "--compare", tmp_path / "c.jpg"), 2)
    existing = tmp_path / "c.png"
    existing.write_bytes(b"mine")
    res = run("apply", ins[0], "-k", "box:3", "-o", tmp_path / "o.png", "--compare", existing)
    assert res.exit_code == 1 and "exists" in res.stderr
    assert existing.read_bytes() == b"mine" and not (tmp_path / "o.png").exists()


# --- the report's histogram ----------------------------------------------------------------------


def test_apply_report_shows_a_histogram_but_json_does_not(tmp_path):
    res = run("apply", SAMPLES / "camera.png", "-k", "gaussian:sigma=1", "-o", tmp_path / "o.png", env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert re.search(r"histogram.*[▁▂▃▄▅▆▇█]{5,}", res.stdout)
    res = run("apply", SAMPLES / "camera.png", "-k", "gaussian:sigma=1", "-o", tmp_path / "p.png", "--json")
    assert not re.search("[▁▂▃▄▅▆▇█]", res.stdout) and "histogram" not in json.loads(res.stdout)


# --- tables at 80 and 120 columns ----------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_shape_table_keeps_the_layer_spec_on_one_line(width):
    res = run("shape", "--input", "224x224", "--channels", "3", "--layer", "conv k=7 s=2 p=3 c=64",
              "--layer", "pool max k=3 s=2 p=1", "--layer", "conv k=3 p=1 c=128 d=2", env={"COLUMNS": str(width)})  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    for spec in ("conv k=7 s=2 p=3 c=64", "pool max k=3 s=2 p=1", "conv k=3 p=1 c=128 d=2"):
        assert any(spec in line for line in lines), (spec, res.stdout)
    assert "lay…" not in res.stdout and "…" not in res.stdout


@pytest.mark.parametrize("width", [80, 120])
def test_kernels_table_has_one_line_per_kernel(width):
    res = run("kernels", env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    rows = [line for line in lines if line.startswith("│")]
    assert rows and all(line.split("│")[1].strip() for line in rows)  # no continuation lines
    text = " ".join(res.stdout.split())
    assert "Emboss: relief lit from the top left; asymmetric, so conv and corr differ (sum 1)." in text


def test_help_never_imports_numpy_or_the_drawing():
    code = ("import contextlib, sys\nfrom convcli.cli.app import app\nwith contextlib.suppress(SystemExit):\n    app(['--help'])\n"
            "print([m for m in ('numba', 'numpy', 'PIL', 'convcli.viz') if m in sys.modules], file=sys.stderr)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr.strip() == "[]"


def test_kernels_show_bank_prints_its_grid_when_it_fits(tmp_path):
    bank = tmp_path / "bank.npz"
    np.savez(bank, weight=np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2) - 6, bias=np.array([0.5, -1.0]))
    res = run("kernels", "show", bank, env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "in 0" in res.stdout and "in 2" in res.stdout and "bias -1" in res.stdout
    assert re.search(r"-6\s+-5\s+-2\s+-1\s+2\s+3", res.stdout)  # filter 0's first rows of in 0, 1, 2
    wide = np.random.default_rng(0).standard_normal((4, 16, 3, 3))
    np.save(tmp_path / "wide.npy", wide)
    res = run("kernels", "show", tmp_path / "wide.npy", env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "--png FILE" in res.stdout


def test_apply_compare_unwritable_picture_writes_nothing(tmp_path):
    out = tmp_path / "o.png"
    (tmp_path / "file").write_text("not a folder")
    err = one_line_error(run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", out, "--compare", tmp_path / "file" / "c.png", "--quiet"), 1)
    assert "cannot write picture" in err
    if Path("/proc/self").is_dir():  # refuses new files even for root
        err = one_line_error(run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", out, "--compare", "/proc/c.png"), 1)
        assert "cannot write picture /proc/c.png" in err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # neither the output nor a temporary file


def test_apply_compare_failed_output_leaves_no_picture(tmp_path):
    cmp = tmp_path / "c.png"
    # the output cannot be encoded (3 channels of float32 in a PNG): refused before drawing
    res = run("apply", SAMPLES / "chelsea.png", "-k", "box:3", "--dtype", "float32", "-o", tmp_path / "o.png", "--compare", cmp)
    assert res.exit_code == 1 and not cmp.exists()
    if Path("/proc/self").is_dir():  # the output's write fails after the picture's: the picture goes too
        res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", "/proc/o.png", "--compare", cmp)
        assert res.exit_code == 1 and "cannot write" in res.stderr
        assert list(tmp_path.iterdir()) == []


def test_apply_compare_with_skip_existing_skips(tmp_path):
    out, cmp = tmp_path / "o.png", tmp_path / "c.png"
    assert run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", out, "--compare", cmp).exit_code == 0
    res = run("apply", SAMPLES / "camera.png", "-k", "box:3", "-o", out, "--compare", cmp, "--skip-existing", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "skipped"
    before = cmp.read_bytes()
    res = run("apply", SAMPLES / "camera.png", "-k", "box:5", "-o", out, "--compare", cmp, "--overwrite")
    assert res.exit_code == 0 and cmp.read_bytes() != before  # --overwrite replaces the picture too


@pytest.mark.parametrize(("spec", "picture"), [("emboss", "emboss.png"), ("gaussian:sigma=1", "gaussian.png")])
def test_readme_pictures_are_what_the_documented_commands_draw(tmp_path, spec, picture):
    # README: convcli kernels show emboss --png docs/emboss.png (and gaussian:sigma=1)
    assert run("kernels", "show", spec, "--png", tmp_path / picture).exit_code == 0
    drawn, committed = png(tmp_path / picture), png(ROOT / "docs" / picture)
    assert drawn.shape == committed.shape
    # equal but for font antialiasing (another FreeType may round glyph edges differently)
    assert np.mean(np.any(drawn != committed, axis=-1)) < 0.01


def test_apply_compare_on_several_threads(tmp_path):
    rng = np.random.default_rng(7)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / f"in{i}.png")
    res = run("apply", *sorted(tmp_path.glob("in*.png")), "-k", "sobel-x", "--out-dir", tmp_path / "out", "--jobs", "2",
              "--compare", str(tmp_path / "cmp") + "/", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    reps = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(Path(r["compare"]).name for r in reps) == [f"in{i}_compare.png" for i in range(4)]
    sizes = {png(Path(r["compare"])).shape for r in reps}
    assert len(sizes) == 1  # four complete pictures of one layout
