"""Terminal pictures (histogram blocks, coloured kernel cells) and picture paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from convcli.errors import UsageError, WriteError
from convcli.pipeline.pictures import compare_caption, compare_paths, write_png
from convcli.viz.colors import DIVERGING
from convcli.viz.terminal import BLOCKS, histogram_blocks, histogram_counts, kernel_text


def test_histogram_blocks_shape_and_empty_bins():
    v = np.r_[np.zeros(1000), np.full(10, 23.0)]
    s = histogram_blocks(v, bins=24)
    assert len(s) == 24
    assert s[0] == "█" and s[-1] != " " and set(s[1:-1]) == {" "}  # empty bins blank, small ones visible
    counts, lo, hi = histogram_counts(v, 24)
    assert (counts[0], counts[-1], lo, hi) == (1000, 10, 0.0, 23.0)


def test_histogram_blocks_of_a_normal_is_peaked_in_the_middle():
    s = histogram_blocks(np.random.default_rng(0).normal(size=20000), bins=21)
    heights = [BLOCKS.index(c) for c in s]
    assert heights[10] == 8 and heights[0] < 4 and heights[-1] < 4


def test_histogram_blocks_ignores_nan_and_handles_constant_and_empty():
    assert histogram_blocks(np.array([np.nan, 5.0, 5.0]), bins=4) == "█   "
    assert histogram_blocks(np.array([np.nan]), bins=3) == "   "


def test_kernel_text_colours_cells_by_sign_and_magnitude():
    k = np.array([[-2.0, 0.0, 2.0]])
    text = kernel_text(k)
    assert text.plain == " -2   0   2 "
    styles = [str(span.style) for span in text.spans]
    neg, pos = DIVERGING[0], DIVERGING[255]
    assert styles[0].endswith("on #" + "".join(f"{c:02x}" for c in neg))
    assert styles[2].endswith("on #" + "".join(f"{c:02x}" for c in pos))
    assert "#ffffff on" in styles[0] and "#000000 on" in styles[2]  # readable text on each
    plain = Console(no_color=True, width=80, record=True)
    plain.print(kernel_text(np.array([[1.0, -1.0], [0.5, 0.25]])))
    assert plain.export_text() == "    1    -1 \n  0.5  0.25 \n"


def test_compare_paths_file_folder_template(tmp_path):
    out = [tmp_path / "o" / "a_x.png", tmp_path / "o" / "b_x.png"]
    assert compare_paths(str(tmp_path / "c.png"), ["a.png"], out[:1]) == [tmp_path / "c.png"]
    folder = compare_paths(str(tmp_path / "cmp") + "/", ["in/a.png", "in/b.tif"], out)
    assert folder == [tmp_path / "cmp" / "a_compare.png", tmp_path / "cmp" / "b_compare.png"]
    # a template without a folder sits next to each output; with one, where it says
    assert compare_paths("{stem}_cmp.png", ["in/a.png", "in/b.png"], out) == [tmp_path / "o" / "a_cmp.png", tmp_path / "o" / "b_cmp.png"]
    assert compare_paths(str(tmp_path / "{name}.png"), ["a.png"], out[:1]) == [tmp_path / "a.png.png"]


@pytest.mark.parametrize(
    ("value", "inputs", "match"),
    [
        ("one.png", ["a.png", "b.png"], "2 inputs but one picture"),
        ("cmp.jpg", ["a.png"], "ending in .png"),
        ("{nope}.png", ["a.png"], "unknown field"),
        ("same.png", ["a.png", "b.png"], "one picture name"),
        ("{stem}.png", ["x/a.png", "y/a.png"], "would both draw"),
    ],
)
def test_compare_paths_refused(tmp_path, value, inputs, match):
    with pytest.raises(UsageError, match=match):
        compare_paths(value, inputs, [None] * len(inputs))


def test_compare_path_cannot_be_an_output(tmp_path):
    out = tmp_path / "a_blur.png"
    with pytest.raises(UsageError, match="also an input or output"):
        compare_paths(str(out), ["a.png"], [out])
    with pytest.raises(UsageError, match="also an input or output"):
        compare_paths(str(tmp_path / "a.png"), [str(tmp_path / "a.png")], [tmp_path / "b.png"])


PNG = b"\x89PNG fake"


def test_write_png_atomic_and_no_overwrite(tmp_path):
    path = tmp_path / "k.png"
    write_png(PNG, path, overwrite=False)
    assert path.read_bytes() == PNG
    path.write_bytes(b"keep")
    with pytest.raises(WriteError, match="exists"):
        write_png(PNG, path, overwrite=False)
    assert path.read_bytes() == b"keep"
    write_png(PNG, path, overwrite=True)
    assert path.read_bytes() == PNG
    write_png(PNG, tmp_path / "new" / "k.png", overwrite=False)  # the folder is made, as for outputs
    with pytest.raises(WriteError, match="cannot write picture"):
        write_png(PNG, tmp_path / "k.png" / "x.png", overwrite=False)  # under a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.png", "new"]  # no temporary files left


def test_write_png_unwritable_folder_is_a_write_error():
    # /proc refuses new files even for root (a chmod'ed folder would not stop root)
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(WriteError, match="cannot write picture"):
        write_png(PNG, Path("/proc/k.png"), overwrite=False)


def test_compare_caption_names_kernel_mode_border_and_shape():
    doc = {"input": "in/cat.png", "kernel": "box:3 > sobel-x", "kernel_shape": [3, 3], "mode": "corr", "border": "wrap",
           "stride": [2, 2], "output_shape": [150, 226, 3], "output_dtype": "uint8"}  # fmt: skip
    assert compare_caption(doc) == ("cat.png: kernel box:3 > sobel-x (3×3), mode corr, border wrap, stride 2×2, "
                                    "output shape 150×226×3 uint8")  # fmt: skip


@pytest.mark.parametrize("values", [[1e17] * 9, [3e38] * 4, [1e17, 1e17 + 16], [-1e308, 1e308], [np.finfo(np.float64).max] * 3, [7.0] * 5])
def test_histograms_of_constant_or_extreme_values_count_every_value(values):
    import warnings

    from convcli.viz.terminal import histogram_counts

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts, lo, hi = histogram_counts(np.array(values, dtype=np.float64))
    assert counts.sum() == len(values) and (lo, hi) == (min(values), max(values))
