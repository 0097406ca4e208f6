import math
import subprocess
import sys

import pytest

from convcli import geometry


@pytest.mark.parametrize(
    ("n", "k", "s", "d", "expected"),
    [(224, 3, 2, 1, (0, 1)), (5, 4, 1, 1, (1, 2)), (5, 3, 1, 2, (2, 2)), (7, 1, 3, 1, (0, 0)), (4, 8, 1, 1, (3, 4))],
)
def test_same_padding_puts_the_odd_cell_at_the_end(n, k, s, d, expected):
    assert geometry.same_padding(n, k, s, d) == expected
    b, a = expected
    assert geometry.output_size(n, k, s, d, b, a) == math.ceil(n / s)


def test_seed_formula():
    # Wout = (Win + 2p - w)/s + 1
    assert geometry.output_size(32, 5, 1, 1, 0, 0) == 28
    assert geometry.output_size(224, 7, 2, 1, 3, 3) == 112
    assert geometry.output_shape((640, 480), (3, 3), padding=1) == (640, 480)
    assert geometry.output_shape((10,), (3,), padding="full") == (12,)
    assert geometry.output_shape((10, 10, 10), (3, 3, 3), padding="valid", stride=(1, 2, 3)) == (8, 4, 3)


def test_output_size_below_one_shows_the_numbers():
    with pytest.raises(ValueError, match=r"3 \+ 0 \+ 0 - 1\*\(5-1\) - 1 = -2"):
        geometry.output_shape((3, 3), (5, 5), padding="valid")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "stride"),
        ({"dilation": 0}, "dilation"),
        ({"padding": -1}, "negative"),
        ({"padding": ((1, -1), 0)}, "negative"),
        ({"padding": "sideways"}, "padding='sideways'"),
        ({"stride": (1, 2, 3)}, "stride"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        geometry.output_shape((8, 8), (3, 3), **kwargs)


def test_params_and_macs_follow_the_seed():
    # (w*h*Din + 1)*k
    assert geometry.conv_params(3, 64, (7, 7)) == (7 * 7 * 3 + 1) * 64 == 9472
    assert geometry.conv_params(3, 64, (7, 7), bias=False) == 9408
    assert geometry.conv_macs(3, 64, (7, 7), (112, 112)) == 118_013_952


def test_geometry_module_needs_no_numpy():
    """geometry, layers and errors are the pure layer: importing and using them loads no numpy."""
    code = (
        "import sys, convcli.geometry as g, convcli.layers, convcli.errors\n"
        "print(g.output_shape((9,), (3,)), 'numpy' in sys.modules, 'numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(9,)", "False", "False"]
