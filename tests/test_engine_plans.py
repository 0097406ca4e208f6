"""Remembered plans: a repeated call skips validation and planning, and nothing it depends on is
forgotten (the kernel's values, the options with their types, the back end, the calibration)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import scipy.ndimage as ndi

import convcli
from convcli.engine import api, calibration, plan, tasks
from convcli.errors import ArgumentError, ArgumentTypeError


def planned(x: np.ndarray, k: object, **kw: object) -> plan.Plan:
    options = dict(flip=False, border="reflect", padding="same", stride=1, dilation=1, cval=0.0, method="auto", origin=None, precision="auto")
    options.update(kw)
    return api._plan(x, k, tuple(options.values()))[0]  # type: ignore[arg-type]


@pytest.mark.backend_auto
def test_a_repeated_call_reuses_its_plan_and_gives_the_same_values():
    rng = np.random.default_rng(0)
    x = rng.random((64, 64), dtype=np.float32)
    k = rng.random((3, 3))
    first = planned(x, k)
    assert planned(x.copy(), k.copy()) is first  # equal shapes, dtypes, values: one plan
    assert planned(x, k, stride=2) is not first
    assert planned(x[:, :63], k) is not first
    assert planned(x.astype(np.float64), k) is not first
    assert planned(x, k, flip=True) is not first
    for _ in range(2):
        np.testing.assert_allclose(convcli.correlate(x, k), ndi.correlate(x, k, mode="reflect"), rtol=0, atol=1e-5)
    assert not first.kernel3.flags.writeable  # shared by every call that finds it


@pytest.mark.backend_auto
def test_a_kernel_changed_in_place_is_planned_again():
    x = np.random.default_rng(1).random((40, 50), dtype=np.float32)
    k = np.ones((3, 3))
    before = convcli.correlate(x, k)
    k[1, 1] = -8.0  # the same array object, new values
    after = convcli.correlate(x, k)
    np.testing.assert_allclose(before, ndi.correlate(x, np.ones((3, 3)), mode="reflect"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(after, ndi.correlate(x, k, mode="reflect"), rtol=0, atol=1e-5)


def test_invalid_calls_are_refused_every_time_after_a_valid_one():
    x = np.random.default_rng(2).random((20, 20), dtype=np.float32)
    k = np.ones((3, 3))
    convcli.correlate(x, k, stride=1)
    for _ in range(2):
        with pytest.raises(ArgumentTypeError):  # equal to 1 and hashed alike, but not an int
            convcli.correlate(x, k, stride=1.0)  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            convcli.correlate(x, k, stride=(1, 1.0))  # type: ignore[arg-type]
        with pytest.raises(ArgumentError):
            convcli.correlate(x, np.full((3, 3), np.nan))
        with pytest.raises(ArgumentError):
            convcli.correlate(x, k, padding="sideways")  # type: ignore[arg-type]
    # options given as lists are not remembered, and work as tuples do
    np.testing.assert_array_equal(convcli.correlate(x, k, stride=[1, 2]), convcli.correlate(x, k, stride=(1, 2)))
    pair = collections.namedtuple("pair", "y x")
    convcli.correlate(x, k, stride=pair(1, 2))
    with pytest.raises(ArgumentTypeError):  # a tuple's subclass is keyed by its items' types too
        convcli.correlate(x, k, stride=pair(1.0, 2))  # type: ignore[arg-type]


def test_big_kernels_and_what_is_derived_for_a_plan_are_not_kept(monkeypatch):
    """A remembered plan holds its kernel twice: kernels over PLAN_KERNEL_MAX values (never a
    small call) are planned every time; a plan that is not remembered (options given as a list)
    takes what dispatch derived for it along when it goes."""
    x = np.random.default_rng(5).random((48, 48), dtype=np.float32)
    big = np.ones((33, 33))
    assert big.size > plan.PLAN_KERNEL_MAX
    assert planned(x, big, method="fft") is not planned(x, big, method="fft")
    with tasks.backend("numba"):
        convcli.correlate(x, np.ones((3, 3)))
        kept = planned(x, np.ones((3, 3)))
        assert kept.derived  # its direct job
        for _ in range(5):
            convcli.correlate(x, np.ones((3, 3)), padding=[(1, 1), (1, 1)])
    assert len(plan._plans) == 1 and planned(x, np.ones((3, 3))) is kept


def test_each_back_end_has_its_own_plan():
    x = np.random.default_rng(3).random((32, 32), dtype=np.float32)
    k = np.arange(9.0).reshape(3, 3)
    with tasks.backend("numpy"):
        small = planned(x, k)
    with tasks.backend("numba"):
        compiled = planned(x, k)
    assert not small.compiled and compiled.compiled
    with tasks.backend("numpy"):
        assert planned(x, k) is small


def test_a_calibrated_choice_is_never_remembered(monkeypatch, tmp_path):
    """auto's choice where the measurement matters follows CONVCLI_CALIBRATION, as before."""
    monkeypatch.setenv("CONVCLI_CALIBRATION", "on")
    monkeypatch.setattr(calibration, "_path", lambda: tmp_path / calibration.FILE)
    monkeypatch.setattr(calibration, "measure", lambda: dict(zip(calibration.KEYS, (3.3, 40.0, 50.0, "ducc0", calibration.SIDE), strict=True)))
    calibration._stored_scale.cache_clear()
    try:
        x = np.zeros((1300, 1300), np.float32)
        k = np.random.default_rng(4).random((15, 15))
        on = planned(x, k)
        assert on.calibrated and on.method == "fft"
        monkeypatch.setenv("CONVCLI_CALIBRATION", "off")
        off = planned(x, k)
        assert off.method == "direct"
        assert not planned(x, np.ones((3, 3))).calibrated  # a choice the scale cannot change
    finally:
        calibration._stored_scale.cache_clear()


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(plan, "PLANS_KEPT", 4)
    x = np.zeros((16, 16), np.float32)
    kept = [planned(x, np.full((3, 3), float(i))) for i in range(6)]
    assert len(plan._plans) == 4
    assert planned(x, np.full((3, 3), 5.0)) is kept[5]  # the newest stay
    assert planned(x, np.full((3, 3), 0.0)) is not kept[0]  # the oldest went
