"""Pixel- and value-level checks of the kernel and comparison pictures (convcli.viz)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convcli.kernels import resolve
from convcli.viz import frequency_response, kernel_figure, views
from convcli.viz.colors import DIVERGING, SEQUENTIAL, luminance
from convcli.viz.compare import compare_figure
from convcli.viz.kernel import MAX_CELLS


def pixels(fig, name: str) -> np.ndarray:
    x0, y0, x1, y1 = fig.panels[name].box
    return np.asarray(fig.image)[y0:y1, x0:x1]


def lut_position(rgb: np.ndarray, lut: np.ndarray) -> int:
    """Which entry of a colour map a drawn colour is (nearest)."""
    return int(np.argmin(((lut.astype(int) - np.asarray(rgb, dtype=int)) ** 2).sum(axis=1)))


def freq_pixel(fig, name: str, fy: float, fx: float) -> np.ndarray:
    """The drawn colour at frequency (fy, fx): bin j holds -0.5 + j/n."""
    panel = fig.panels[name]
    n = panel.data.shape[0]
    i, j = (round((f + 0.5) * n) for f in (fy, fx))
    x0, y0, x1, y1 = panel.cell_box(i, j)
    return np.asarray(fig.image)[(y0 + y1) // 2, (x0 + x1) // 2]


def to_db(rgb: np.ndarray, fig, name: str) -> float:
    panel = fig.panels[name]
    return panel.lo + lut_position(rgb, SEQUENTIAL) / 255 * (panel.hi - panel.lo)


# --- colour maps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lut", [DIVERGING, SEQUENTIAL], ids=["diverging", "sequential"])
def test_colour_maps_read_in_greyscale(lut):
    # lightness rises strictly (64 levels), so a greyscale print keeps the order of values
    y = luminance(lut)
    assert np.all(np.diff(y[::4]) > 0)
    assert y[-1] - y[0] > 0.8


def test_diverging_map_is_neutral_at_zero_and_dark_for_negatives():
    centre = DIVERGING[127:129].astype(int)
    assert np.all(centre.max(axis=1) - centre.min(axis=1) <= 3)  # grey: no hue at 0
    neg, pos = DIVERGING[0].astype(int), DIVERGING[-1].astype(int)
    assert neg[2] > neg[0]  # blue side
    assert pos[0] > pos[2]  # yellow side (blue-yellow: the axis red-green colour-blind readers keep)


# Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB
CVD = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]),
}


@pytest.mark.parametrize("kind", sorted(CVD))
def test_diverging_map_keeps_sign_and_order_for_colour_blind_readers(kind):
    c = DIVERGING / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    seen = np.clip(lin @ CVD[kind].T, 0, 1)
    y = seen @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(y[::4]) > 0)  # still ordered from negative to positive
    blue_minus_red = seen[:, 2] - seen[:, 0]
    assert np.all(blue_minus_red[:96] > 0.02) and np.all(blue_minus_red[160:] < -0.02)  # the two signs keep their hues


# --- frequency response --------------------------------------------------------------------------


def test_identity_response_is_flat():
    fr = frequency_response(resolve("identity").array)
    assert np.allclose(fr.db, 0.0, atol=1e-9)
    fig = kernel_figure(resolve("identity").array, name="identity")
    drawn = pixels(fig, "freq").reshape(-1, 3)
    assert len(np.unique(drawn, axis=0)) == 1  # one colour: a flat picture
    assert lut_position(drawn[0], SEQUENTIAL) == 255  # at the top of the scale (0 dB)


def test_box5_zeros_where_the_sinc_has_them():
    box = resolve("box:5").array
    # with 100 points the zeros of sin(5*pi*f)/(5*sin(pi*f)), f = ±0.2, ±0.4, fall on bins exactly
    fr = frequency_response(box, size=100)
    c = fr.dc_index
    for f in (-0.4, -0.2, 0.2, 0.4):
        j = c + round(f * 100)
        assert fr.freqs[j] == pytest.approx(f)
        assert fr.db[c, j] == fr.floor and fr.db[j, c] == fr.floor
    assert fr.db[c, c] == pytest.approx(0.0, abs=1e-9)
    # the rendered picture: dark at the zeros, bright at DC and on the sidelobes between them
    fig = kernel_figure(box, name="box:5")
    for f in (0.2, 0.4, -0.2):
        assert to_db(freq_pixel(fig, "freq", 0.0, f), fig, "freq") < -30
        assert to_db(freq_pixel(fig, "freq", f, 0.0), fig, "freq") < -30
    assert to_db(freq_pixel(fig, "freq", 0.0, 0.3), fig, "freq") > -20  # first sidelobe, -13 dB
    assert to_db(freq_pixel(fig, "freq", 0.0, 0.0), fig, "freq") > -1
    # the profile through DC has its minima there too
    prof = fig.panels["profile_x"].data[0]
    n = len(prof)
    for f in (0.2, 0.4):
        j = n // 2 + round(f * n)
        assert prof[j] == min(prof[j - 3 : j + 4])


def test_laplacian_response_is_zero_at_dc():
    lap = resolve("laplacian").array
    fr = frequency_response(lap)
    c = fr.dc_index
    assert fr.db[c, c] == fr.floor  # |H(0)| = sum = 0: -inf dB, clipped to the floor
    assert fr.peak_db == pytest.approx(20 * np.log10(8.0))  # 4-neighbour Laplacian peaks at 8 at (±0.5, ±0.5)
    fig = kernel_figure(lap, name="laplacian")
    assert lut_position(freq_pixel(fig, "freq", 0.0, 0.0), SEQUENTIAL) == 0


@settings(deadline=None, max_examples=40)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(-4, 4, width=32)))
def test_response_at_dc_is_the_kernel_sum(k):
    fr = frequency_response(k)
    c = fr.dc_index
    total = abs(k.sum())
    expected = max(20 * np.log10(total), fr.floor) if total > 0 else fr.floor
    assert fr.db[c, c] == pytest.approx(expected, abs=1e-6)
    assert fr.db.max() <= fr.top + 1e-9 and fr.db.min() >= fr.floor


# --- heatmaps ------------------------------------------------------------------------------------


def test_emboss_conv_heatmap_is_the_corr_one_rotated():
    emboss = resolve("emboss").array
    v = views(emboss)
    assert np.array_equal(v["conv"], np.rot90(v["corr"], 2))
    assert np.array_equal(v["corr"], emboss) and np.array_equal(v["stored"], emboss)
    fig = kernel_figure(emboss, name="emboss")
    img = np.asarray(fig.image)
    conv, corr = fig.panels["conv"], fig.panels["corr"]
    assert np.array_equal(conv.data, np.rot90(corr.data, 2))
    for i in range(3):
        for j in range(3):
            # a cell's corner holds its colour (the value is written in the middle)
            x0, y0, _, _ = conv.cell_box(i, j)
            u0, v0, _, _ = corr.cell_box(2 - i, 2 - j)
            assert np.array_equal(img[y0 + 3, x0 + 3], img[v0 + 3, u0 + 3])
    # not symmetric, so the two pictures really differ
    assert not np.array_equal(pixels(fig, "conv"), pixels(fig, "corr"))


def test_heatmap_colours_are_signed_and_centred():
    fig = kernel_figure(np.array([[-1.0, 0.0, 1.0]]), name="d")
    img = np.asarray(fig.image)
    p = fig.panels["stored"]
    corner = [img[p.cell_box(0, j)[1] + 2, p.cell_box(0, j)[0] + 2] for j in range(3)]
    assert [lut_position(c, DIVERGING) for c in corner] == [0, 128, 255] or [
        lut_position(c, DIVERGING) for c in corner
    ] == [0, 127, 255]


def test_large_kernel_is_downsampled_and_says_so():
    k = resolve("gaussian:sigma=25")  # 201 x 201
    fig = kernel_figure(k.array, name=k.name)
    assert max(fig.panels["stored"].data.shape) <= MAX_CELLS
    assert "downsampled 5×" in fig.caption
    assert len(frequency_response(k.array).freqs) >= 201  # the response uses every tap


def test_values_are_written_only_when_they_fit():
    small = kernel_figure(resolve("sobel-x").array)
    big = kernel_figure(resolve("gaussian:sigma=3").array)  # 25 x 25: cells of 8 px
    assert small.panels["stored"].note == ""
    assert big.panels["stored"].note == "no values"


# --- sizes and captions --------------------------------------------------------------------------


def test_2d_figure_panels_and_caption():
    fig = kernel_figure(resolve("sobel-x").array, name="sobel-x")
    assert {"stored", "conv", "corr", "freq", "profile_x", "profile_y"} <= set(fig.panels)
    assert fig.caption == "sobel-x 3×3"
    assert fig.panels["stored"].data.shape == (3, 3)
    assert fig.panels["freq"].data.shape == (128, 128)
    w, h = fig.image.size
    for p in fig.panels.values():  # nothing drawn outside the picture
        x0, y0, x1, y1 = p.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert fig.png().startswith(b"\x89PNG")


def test_3d_figure_shows_central_planes():
    k = resolve("sobel3d-z").array
    fig = kernel_figure(k, name="sobel3d-z")
    for mode in ("stored", "conv", "corr"):
        for ax in "zyx":
            assert fig.panels[f"{mode}_{ax}"].data.shape == (3, 3)
    assert np.array_equal(fig.panels["stored_z"].data, k[1])
    assert np.array_equal(fig.panels["stored_y"].data, k[:, 1])
    assert np.array_equal(fig.panels["stored_x"].data, k[:, :, 1])
    assert np.array_equal(fig.panels["conv_y"].data, k[::-1, 1, ::-1])
    assert {"freq_z", "freq_y", "freq_x", "profile_z"} <= set(fig.panels)
    assert fig.caption == "sobel3d-z 3×3×3"


def test_bank_figure_is_a_cout_by_cin_grid():
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3))
    fig = kernel_figure(w, name="bank.npz", bank=True, bias=np.zeros(8))
    cells = [k for k in fig.panels if k.startswith("k")]
    assert len(cells) == 24
    assert np.array_equal(fig.panels["k5_2"].data, w[5, 2])
    assert "8 filters × 3 input channels of 3×3 kernels" in fig.caption
    big = kernel_figure(np.ones((64, 3, 5, 5)), name="big", bank=True)
    assert "the first 12 of 64 filters" in big.caption
    assert len([k for k in big.panels if k.startswith("k")]) == 36


def test_1d_kernel_is_drawn_as_a_row():
    fig = kernel_figure(np.array([1.0, 2.0, 1.0]), name="row")
    assert fig.panels["conv"].data.shape == (1, 3)


@pytest.mark.parametrize("bad", [np.array([[np.nan, 1.0]]), np.zeros((0, 3)), np.ones((2, 2, 2, 2))])
def test_bad_kernels_are_refused(bad):
    with pytest.raises(ValueError, match="kernel"):
        kernel_figure(bad)


# --- comparison ----------------------------------------------------------------------------------


def test_identity_difference_panel_is_uniform():
    x = (np.arange(64 * 48).reshape(48, 64) % 251).astype(np.uint8)
    fig = compare_figure(x, x.astype(np.float32), caption="kernel identity, mode conv, border reflect, output 48×64")
    diff = pixels(fig, "difference").reshape(-1, 3)
    assert len(np.unique(diff, axis=0)) == 1
    assert lut_position(diff[0], DIVERGING) in (127, 128)  # grey: zero
    # input and output at the same zoom and on the same grey scale: identical pictures
    assert np.array_equal(pixels(fig, "input"), pixels(fig, "output"))
    assert fig.caption.startswith("kernel identity")


def test_compare_signed_output_is_symmetric_around_zero():
    x = np.tile(np.arange(32, dtype=np.float64), (16, 1))
    y = np.zeros_like(x)
    y[:, :16], y[:, 16:] = -3.0, 1.0
    fig = compare_figure(x, y)
    p = fig.panels["output"]
    assert (p.lo, p.hi) == (-3.0, 3.0)
    img = pixels(fig, "output")
    assert lut_position(img[5, 2], DIVERGING) == 0
    assert lut_position(img[5, -3], DIVERGING) in (170, 171)  # 1/3 of the way above grey


def test_compare_rgb_and_stride_shapes():
    rgb = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    half = rgb[::2, ::2].astype(np.float32)
    fig = compare_figure(rgb, half)
    assert "difference" not in fig.panels  # shapes differ: the panel says why instead
    (ix0, iy0, ix1, iy1), (ox0, oy0, ox1, oy1) = fig.panels["input"].box, fig.panels["output"].box
    assert (ix1 - ix0, iy1 - iy0) == (300, 200)  # the same zoom: half the pixels, half the size
    assert (ox1 - ox0, oy1 - oy0) == (150, 100)
    assert fig.panels["hist_input"].data.sum() == rgb.size


def test_compare_volume_shows_central_slices():
    vol = np.random.default_rng(2).random((10, 20, 30))
    fig = compare_figure(vol, vol * 2, spatial_ndim=3, caption="vol")
    for name in ("input", "output", "difference"):
        assert fig.panels[f"{name}_z"].data.shape == (20, 30)
        assert fig.panels[f"{name}_y"].data.shape == (10, 30)
        assert fig.panels[f"{name}_x"].data.shape == (10, 20)
    assert np.array_equal(fig.panels["input_y"].data, vol[:, 10])
    assert fig.panels["hist_output"].data.sum() == vol.size


def test_compare_filter_bank_output_shows_its_first_feature_map():
    x = np.random.default_rng(3).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    feats = np.random.default_rng(4).standard_normal((12, 16, 8))
    fig = compare_figure(x, feats)
    assert np.array_equal(fig.panels["output"].data, feats[..., 0])  # not a mean of unrelated maps
    assert fig.panels["hist_output"].data.sum() == feats.size  # the histogram counts every channel
    rgb_sobel = np.random.default_rng(5).standard_normal((12, 16, 3))
    assert np.allclose(compare_figure(x, rgb_sobel).panels["output"].data, rgb_sobel.mean(axis=-1))
