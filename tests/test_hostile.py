"""Adversarial suite (issue 12): Hypothesis *generates* hostile inputs — real image files of every
reader truncated, bit-flipped or with lying headers, fuzzed kernel texts, JSON, ``.mat`` and
``.npy`` headers, name templates and layer specs — and checks convcli's contract for each: a
documented exit code, exactly one ``convcli: error:`` line per refused input, no traceback, no
file left behind, inputs untouched, bounded time and memory.

Whole files go through the real CLI in a subprocess with an address-space limit and a timeout
(:mod:`tests.guard`), many files per process so that CI stays cheap; pure parsers are also
fuzzed in-process, where each example costs microseconds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convcli.errors import ConvcliError

from .guard import run_cli, snapshot

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
# Each subprocess example starts Python (and for apply, the compiled engine) and reads ~20 files.
SUBPROCESS = settings(max_examples=4 if PROFILE == "default" else 8, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
IN_PROCESS = settings(max_examples=100 if PROFILE == "default" else 300, deadline=None)
MUTANTS = 16  # hostile files per subprocess example
LIMIT = "4000000"  # --max-pixels: a header lying within the default limit would still cost CI seconds


# --- seed files: one small real file per reader and pixel layout ---------------------------------
def _seeds() -> dict[str, bytes]:
    import imagecodecs
    import tifffile

    rng = np.random.default_rng(12)
    gray = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out: dict[str, bytes] = {}

    def pil(name: str, arr: np.ndarray, fmt: str, **kw: object) -> None:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **kw)
        out[name] = buf.getvalue()

    pil("gray.png", gray, "PNG")
    pil("rgb.png", rgb, "PNG")
    pil("rgb.jpg", rgb, "JPEG")
    pil("rgb.bmp", rgb, "BMP")
    pil("rgb.webp", rgb, "WEBP", lossless=True)
    pil("gray.gif", gray, "GIF")
    buf = io.BytesIO()
    Image.fromarray(gray.astype(np.uint16) * 257).save(buf, format="PNG")
    out["gray16.png"] = buf.getvalue()
    out["rgb16.png"] = bytes(imagecodecs.png_encode(rgb.astype(np.uint16) * 257))
    for name, arr, kw in (("gray.tif", gray, {}), ("stack.tif", np.stack([gray] * 3), {"photometric": "minisblack"}),
                          ("zlib.tif", rgb, {"compression": "zlib"})):  # fmt: skip
        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, **kw)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, gray.astype(np.float32))
    out["float.npy"] = buf.getvalue()
    return out


SEEDS = _seeds()


def _tiff_fields(data: bytes) -> list[tuple[int, int, str]]:
    """Offsets of the single-valued SHORT/LONG tags of the first page (sizes, strips, samples...),
    and of the first IFD pointer."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        tags = [t for t in tif.pages[0].tags.values() if t.count == 1 and int(t.dtype) in (3, 4)]
        return [(4, 4, "<")] + [(t.valueoffset, 2 if int(t.dtype) == 3 else 4, "<") for t in tags]


def _jpeg_fields(data: bytes) -> list[tuple[int, int, str]]:
    sof = data.index(b"\xff\xc0")
    return [(sof + 5, 2, ">"), (sof + 7, 2, ">"), (sof + 9, 1, ">")]  # height, width, components


# Header fields worth lying about: (offset, width in bytes, byte order) per seed.
HEADER_FIELDS = {
    "gray.png": [(16, 4, ">"), (20, 4, ">"), (24, 1, ">"), (25, 1, ">")],
    "rgb16.png": [(16, 4, ">"), (20, 4, ">"), (24, 1, ">"), (25, 1, ">")],
    "rgb.bmp": [(18, 4, "<"), (22, 4, "<"), (28, 2, "<"), (10, 4, "<")],
    "gray.gif": [(6, 2, "<"), (8, 2, "<")],
    "rgb.jpg": _jpeg_fields(SEEDS["rgb.jpg"]),
    "gray.tif": _tiff_fields(SEEDS["gray.tif"]),
    "stack.tif": _tiff_fields(SEEDS["stack.tif"]),
    "zlib.tif": _tiff_fields(SEEDS["zlib.tif"]),
}


@st.composite
def mutant(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file truncated, with bytes flipped, or with a header field set to a hostile value."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    how = draw(st.sampled_from(["truncate", "flip", "lie"] if name in HEADER_FIELDS else ["truncate", "flip"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
    else:
        offset, width, order = draw(st.sampled_from(HEADER_FIELDS[name]))
        value = draw(st.sampled_from([0, 1, 2**8 - 1, 2**15, 2**16 - 1, 60000, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2 ** (8 * width) - 1))
        value %= 2 ** (8 * width)
        data[offset : offset + width] = value.to_bytes(width, "big" if order == ">" else "little")
    return name, bytes(data)


@st.composite
def npy_file(draw: st.DrawFn) -> bytes:
    """A .npy whose header may lie: odd dtypes, byte orders, huge or negative-looking shapes, data
    shorter or longer than promised, a garbled header dictionary."""
    dtype = draw(st.sampled_from(["<f4", ">f4", "<f2", "<f8", ">u2", "|u1", "<i8", "<c8", "|b1", "<U3", "|O", "<V4"]))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 64, 2**20, 2**31, 2**40]) | st.integers(0, 50), max_size=5)))
    header = {"descr": dtype, "fortran_order": draw(st.booleans()), "shape": shape}
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:
        return b"\x93NUMPY" + draw(st.binary(max_size=64))
    head = buf.getvalue()
    if draw(st.booleans()):  # garble the header text itself
        pos = draw(st.integers(10, len(head) - 1))
        head = head[:pos] + draw(st.binary(min_size=1, max_size=4)) + head[pos + 1 :]
    return head + draw(st.binary(max_size=512))


def _write_all(folder: Path, files: list[tuple[str, bytes]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, data) in enumerate(files):
        p = folder / f"m{i:02d}_{name}"
        p.write_bytes(data)
        paths.append(p)
    return paths


def _check_info(tmp: Path, paths: list[Path]) -> None:
    before = snapshot(tmp)
    res = run_cli("info", "--json", "--max-pixels", LIMIT, *paths)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    docs = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert len(docs) + len(res.errors) == len(paths), res.stderr  # one line per input, either way
    assert all(line.startswith("convcli: error: ") for line in res.stderr.splitlines()), res.stderr
    expected = 0 if not res.errors else (1 if not docs else 3)
    assert res.code == expected, (res.code, res.stderr)
    assert snapshot(tmp) == before


# --- corrupted images through every reader ------------------------------------------------------
@SUBPROCESS
@given(files=st.lists(mutant(), min_size=MUTANTS, max_size=MUTANTS))
def test_info_on_corrupted_images_keeps_the_contract(tmp_path_factory, files):
    tmp = tmp_path_factory.mktemp("info")
    _check_info(tmp, _write_all(tmp / "in", files))


@SUBPROCESS
@given(files=st.lists(npy_file(), min_size=MUTANTS, max_size=MUTANTS))
def test_info_on_lying_npy_headers_keeps_the_contract(tmp_path_factory, files):
    tmp = tmp_path_factory.mktemp("npy")
    _check_info(tmp, _write_all(tmp / "in", [("x.npy", f) for f in files]))


@SUBPROCESS
@given(files=st.lists(mutant(), min_size=MUTANTS, max_size=MUTANTS))
def test_apply_on_corrupted_images_writes_only_what_it_reports(tmp_path_factory, files):
    """A batch over hostile files: every input either ok with its output, or one error line and
    no output; no temporary file; exit 0, 1 or 3 as the counts say; inputs untouched."""
    tmp = tmp_path_factory.mktemp("apply")
    _write_all(tmp / "in", files)
    before = snapshot(tmp / "in")
    res = run_cli("apply", tmp / "in", "-k", "box:3", "-O", tmp / "out", "--json", "-q", "-j", "1", "--max-pixels", LIMIT)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    reports = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert len(reports) == len(files)
    failed = [r for r in reports if r["status"] == "error"]
    ok = [r for r in reports if r["status"] == "ok"]
    assert len(res.errors) == len(failed) and len(ok) + len(failed) == len(files), res.stderr
    assert res.code == (0 if not failed else (1 if not ok else 3)), (res.code, res.stderr)
    written = {p.name for p in (tmp / "out").iterdir()} if (tmp / "out").exists() else set()
    assert written == {Path(r["output"]).name for r in ok}  # nothing else: no partial or temporary file
    assert snapshot(tmp / "in") == before
    shutil.rmtree(tmp)


# --- kernels: texts, JSON, .mat and .npy --------------------------------------------------------
NUMBER = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e39", "-1e400", "1/0", "3/4", "nan", "inf", "0x10", "1_000", "٣", "9" * 500, "", "-", "e5"]),
)
KERNEL_TEXT = st.lists(st.lists(NUMBER, max_size=6).map(" ".join) | st.text(max_size=20), max_size=8).map("\n".join)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["kernel", "weight", "x"]), inner, max_size=2),
    max_leaves=30,
)
MAT_TEXT = st.tuples(st.lists(NUMBER, min_size=0, max_size=5).map(" ".join), KERNEL_TEXT).map("\n".join)


@st.composite
def kernel_file(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["txt", "csv", "json", "mat", "npy", "bytes"]))
    if kind in ("txt", "csv"):
        return f"k.{kind}", draw(KERNEL_TEXT).encode()
    if kind == "json":
        nested = draw(st.integers(0, 3))
        text = json.dumps(draw(JSON_VALUE)) if nested else "[" * 5000 + "]" * 5000
        return "k.json", text.encode()
    if kind == "mat":
        return "k.mat", draw(MAT_TEXT).encode()
    if kind == "npy":
        return "k.npy", draw(npy_file())
    return draw(st.sampled_from(["k.txt", "k.json", "k.mat", "k.npz"])), draw(st.binary(max_size=200))


@IN_PROCESS
@given(kfile=kernel_file())
def test_kernel_files_give_a_kernel_or_one_kernel_error(tmp_path_factory, kfile):
    from convcli.kernels import Kernel, resolve

    name, data = kfile
    path = tmp_path_factory.mktemp("k") / name
    path.write_bytes(data)
    try:
        k = resolve(str(path))
    except ConvcliError as exc:
        assert exc.exit_code == 2 and "\n" not in str(exc)
        return
    assert isinstance(k, Kernel) and np.all(np.isfinite(k.array)) and 1 <= k.array.size <= 1 << 20


@IN_PROCESS
@given(spec=st.text(max_size=40) | KERNEL_TEXT.map(lambda t: t.replace("\n", ";")))
def test_kernel_arguments_give_a_kernel_or_one_usage_error(spec):
    from convcli.kernels import resolve

    try:
        k = resolve(spec)
    except ConvcliError as exc:
        assert exc.exit_code == 2
        return
    except OSError:  # a spec naming a path that the OS cannot even look up (a NUL byte, too long)
        assert "\0" in spec or len(spec.encode()) > 255
        return
    assert np.all(np.isfinite(k.array))


@SUBPROCESS
@given(kfiles=st.lists(kernel_file(), min_size=MUTANTS, max_size=MUTANTS))
def test_kernels_listing_survives_a_folder_of_hostile_kernels(tmp_path_factory, kfiles):
    tmp = tmp_path_factory.mktemp("lib")
    lib = tmp / "lib"
    lib.mkdir()
    for i, (name, data) in enumerate(kfiles):
        (lib / f"h{i:02d}{Path(name).suffix}").write_bytes(data)
    before = snapshot(tmp)
    res = run_cli("kernels", "--json", "--filters-dir", lib)
    assert res.code == 0 and "Traceback" not in res.stderr, res.stderr
    names = {json.loads(line)["name"] for line in res.stdout.decode().splitlines()}
    assert "sobel-x" in names
    assert snapshot(tmp) == before


# --- name templates -----------------------------------------------------------------------------
TEMPLATE = st.lists(
    st.sampled_from(["{stem}", "{suffix}", "{ext}", "{name}", "{", "}", "{{", "}}", "../", "/", "..", ".", "\0", "\n",
                     "{stem:>9999999}", "{0}", "{stem!r}", "{stem.x}", "{stem[0]}", "a", "x" * 200]),  # fmt: skip
    max_size=6,
).map("".join)


@IN_PROCESS
@given(template=TEMPLATE)
def test_name_templates_stay_inside_the_output_folder_or_are_refused(tmp_path_factory, template):
    from convcli.errors import UsageError, error_line
    from convcli.pipeline.jobs import check_inside, fill_template

    out_dir = tmp_path_factory.mktemp("out")
    try:
        name = fill_template(template, stem="in", suffix="_box", ext=".png", name="in.png")
        path = out_dir / name
        check_inside(path, out_dir, template)
    except UsageError as exc:
        assert "\n" not in error_line(exc.where, str(exc))  # printed as one line, control characters escaped
        return
    assert os.path.realpath(path).startswith(os.path.realpath(out_dir) + os.sep)
    assert len(name) < 4096 and "\0" not in name


@SUBPROCESS
@given(templates=st.lists(TEMPLATE.filter(lambda t: "\0" not in t), min_size=3, max_size=3))  # argv holds no NUL
def test_name_templates_through_the_cli(tmp_path_factory, templates):
    tmp = tmp_path_factory.mktemp("names")
    src = tmp / "in.png"
    src.write_bytes(SEEDS["gray.png"])
    (tmp / "out").mkdir()
    for template in templates:
        before = snapshot(tmp)
        res = run_cli("apply", src, "-k", "box:3", "-O", tmp / "out", "--name", template, "-q")
        assert "Traceback" not in res.stderr, res.stderr
        if res.code == 0:
            outside = set(snapshot(tmp)) - set(before)
            assert outside and all(p.startswith("out" + os.sep) for p in outside), outside
            shutil.rmtree(tmp / "out")
            (tmp / "out").mkdir()
        else:
            assert res.code in (1, 2) and len(res.errors) == 1, res.stderr
            assert snapshot(tmp) == before


# --- layer specs --------------------------------------------------------------------------------
LAYER_WORD = st.sampled_from(["conv", "conv3d", "convT", "pool", "dw", "maxpool", "avgpool", "deconv", "max", "avg", "ceil",
                              "nobias", "bias=0", "k=", "s=", "p=", "d=", "c=", "g=", "op=", "=", "x", "'", '"', "#"])  # fmt: skip
LAYER_VALUE = st.one_of(st.integers(-3, 70).map(str), st.sampled_from(["same", "valid", "full", "1:2", "3x3", "2x2x2", "9" * 30, "1e3", "-0"]))
LAYER = st.lists(st.tuples(LAYER_WORD, LAYER_VALUE | st.just("")).map("".join), min_size=1, max_size=7).map(" ".join)


@IN_PROCESS
@given(layers=st.lists(LAYER, min_size=1, max_size=4), size=st.sampled_from(["1", "5", "32", "7x9", "4x4x4", "224x224"]),
       channels=st.sampled_from([1, 3, 64, 2**31 - 1]))  # fmt: skip
def test_layer_specs_give_a_chain_or_one_usage_error(layers, size, channels):
    from convcli.layers import parse_axes, parse_layer, run_chain

    try:
        specs = [parse_layer(text, i) for i, text in enumerate(layers, 1)]
        results = run_chain(specs, parse_axes(size, "input"), channels)
    except ConvcliError as exc:
        assert exc.exit_code == 2
        return
    for r in results:
        assert min(r.output_size) >= 1 and r.params >= 0 and r.macs >= 0
        json.dumps(r.as_json())  # finite, serialisable numbers


@SUBPROCESS
@given(lines=st.lists(LAYER, min_size=1, max_size=30), junk=st.binary(max_size=64))
def test_spec_files_through_the_cli(tmp_path_factory, lines, junk):
    tmp = tmp_path_factory.mktemp("spec")
    spec = tmp / "net.spec"
    spec.write_bytes("\n".join(lines).encode() + b"\n# " + junk)
    res = run_cli("shape", "-i", "64x64", "-c", "3", "--spec", spec, "--json", timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    if res.code == 0:
        doc = json.loads(res.stdout)
        assert len(doc["layers"]) == len([ln for ln in lines if ln.split("#", 1)[0].strip()])
    else:
        assert res.code == 2 and len(res.errors) == 1, res.stderr


# --- the lying header classics, each once, through apply ----------------------------------------
@pytest.mark.parametrize("value", [60000, 65535])
def test_bmp_and_gif_lying_about_their_size_are_refused_from_the_header(tmp_path, value):
    for name, (offset, width, order) in (("rgb.bmp", (18, 4, "<")), ("gray.gif", (6, 2, "<"))):
        data = bytearray(SEEDS[name])
        fmt = {2: "H", 4: "I"}[width]
        struct.pack_into(order + fmt, data, offset, value)
        struct.pack_into(order + fmt, data, offset + width, value)  # the height follows the width
        src = tmp_path / name
        src.write_bytes(data)
        before = snapshot(tmp_path)
        res = run_cli("apply", src, "-k", "box:3", "-o", tmp_path / f"out{Path(name).suffix}")
        assert res.code == 1 and len(res.errors) == 1 and "--max-pixels" in res.errors[0], res.stderr
        assert snapshot(tmp_path) == before
