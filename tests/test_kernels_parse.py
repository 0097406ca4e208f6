"""Kernel parsing and the named registry, without the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convcli.errors import ConvcliError, ExitCode, KernelError
from convcli.kernels import resolve
from convcli.kernels.parse import load_file, parse_inline, parse_mat, parse_text
from convcli.kernels.registry import available, builtin_dir


def test_inline_rows_planes_and_fractions():
    np.testing.assert_array_equal(parse_inline("1 2 1; 0 0 0; -1,-2,-1"), [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    np.testing.assert_array_equal(parse_inline("1/4 1/2 1/4"), [[0.25, 0.5, 0.25]])
    vol = parse_inline("1 2; 3 4 | 5 6; 7 8")
    assert vol.shape == (2, 2, 2) and vol[1, 1, 0] == 7


def test_text_planes_comments_and_description():
    arr, desc = parse_text("# A blur\n# source: somewhere\n1 1\n1 1\n\n2 2\n2 2  # trailing\n", "k.txt")
    assert arr.shape == (2, 2, 2) and arr[1].sum() == 8
    assert desc == "A blur"


@pytest.mark.parametrize(
    ("text", "match"),
    [("1 2\n3\n", "k.txt:2: row has 1 values"), ("1 x\n", "k.txt:1: token 'x' is not a number"), ("# only\n", "empty")],
)
def test_text_errors_name_file_line_and_token(text, match):
    with pytest.raises(KernelError, match=match):
        parse_text(text, "k.txt")


def test_mat_scale_offset_and_size_check():
    arr, offset = parse_mat("3 1 4 128\n1 2 1\n", "m.mat")
    np.testing.assert_array_equal(arr, [[0.25, 0.5, 0.25]])
    assert offset == 128
    with pytest.raises(KernelError, match="header says 2x1"):
        parse_mat("2 1\n1 2 1\n", "m.mat")
    with pytest.raises(KernelError, match="scale must not be 0"):
        parse_mat("1 1 0\n1\n", "m.mat")


def test_files_by_suffix(tmp_path):
    np.save(tmp_path / "k.npy", np.arange(9.0).reshape(3, 3))
    np.savez(tmp_path / "bank.npz", weight=np.ones((4, 3, 3, 3)), bias=np.arange(4.0))
    (tmp_path / "k.json").write_text(json.dumps({"kernel": [[0, 1], [2, 3]]}))
    assert load_file(tmp_path / "k.npy").array[2, 2] == 8
    bank = load_file(tmp_path / "bank.npz")
    assert bank.bank and bank.spatial_shape == (3, 3) and bank.bias is not None and bank.bias[3] == 3
    assert load_file(tmp_path / "k.json").array.tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: np.save(p / "k.npy", np.array([[1.0, np.nan]])), "NaN or Inf"),
        (lambda p: np.save(p / "k.npy", np.ones((2, 2), dtype=complex)), "complex"),
        (lambda p: np.save(p / "k.npy", np.ones((0, 3))), "empty"),
        (lambda p: np.savez(p / "k.npz", w=np.ones((1, 1, 3, 3))), "needs a 'weight' array"),
        (lambda p: (p / "k.json").write_text("[[1, 2], [3]]"), "nested lists"),
    ],
)
def test_file_errors_are_kernel_errors(tmp_path, make, match):
    make(tmp_path)
    (path,) = list(tmp_path.iterdir())
    with pytest.raises(KernelError, match=match) as info:
        load_file(path)
    assert isinstance(info.value, ConvcliError) and info.value.exit_code == ExitCode.USAGE


def test_resolve_every_source(tmp_path):
    assert resolve("sobel-x").source.startswith("library")
    g = resolve("gaussian:sigma=1")
    assert g.source == "generator" and abs(g.array.sum() - 1) < 1e-12
    assert resolve("1 2 1").source == "inline"
    np.save(tmp_path / "mine.npy", np.eye(3))
    assert resolve(str(tmp_path / "mine.npy")).name == "mine"
    with pytest.raises(KernelError, match="did you mean sobel-x"):
        resolve("sobel-xx")
    with pytest.raises(KernelError, match="NaN or Inf"):
        resolve("1 nan 1")


def test_user_folder_overrides_and_one_builtin_path(tmp_path):
    assert (builtin_dir() / "sobel-x.txt").is_file()
    (tmp_path / "sobel-x.txt").write_text("5 5\n")
    assert resolve("sobel-x", [tmp_path]).array.tolist() == [[5, 5]]
    assert available([tmp_path])["sobel-x"] == str(tmp_path / "sobel-x.txt")


@pytest.mark.parametrize("spec", ["gaussian:sigma=1,sigma=2", "gaussian:1,sigma=2", "box:3,size=5"])
def test_a_generator_parameter_given_twice_is_refused(spec):
    with pytest.raises(KernelError, match="given twice"):
        resolve(spec)


def test_a_filters_dir_that_is_not_a_folder_is_refused_not_ignored(tmp_path):
    with pytest.raises(KernelError, match="not a folder"):
        resolve("sobel-x", [tmp_path / "no-such"])
    (tmp_path / "lib").mkdir()
    np.savetxt(tmp_path / "lib" / "sobel-x.txt", np.eye(3))
    np.testing.assert_array_equal(resolve("sobel-x", [tmp_path / "lib"]).array, np.eye(3))  # a user folder wins
