"""The measured direct/FFT scale behind method="auto": when it is asked for, how it moves the
choice, and how it is stored beside the compiled kernels."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from convcli import geometry
from convcli.engine import calibration, tuning
from convcli.engine.api import run_filter


def geo(n: int, k: int) -> geometry.Geometry:
    return geometry.plan_geometry((n, n), (k, k))


def choose(g: geometry.Geometry, separable: int, scale: float = 1.0) -> str:
    return tuning.cheapest(tuning.method_costs(g, separable, fft_backend="ducc0", direct_scale=scale))


def matters(g: geometry.Geometry, separable: int = 0) -> bool:
    return tuning.calibration_matters(tuning.method_costs(g, separable, fft_backend="ducc0"), g)


def test_calibration_is_asked_only_where_the_scale_could_change_the_choice():
    for k in (3, 5):  # direct at any scale within the clamp
        assert not matters(geo(4096, k))
    assert matters(geo(4096, 15))
    assert not matters(geo(64, 15))  # too small to pay for it
    assert not matters(geo(4096, 31), 1)  # separable wins at any scale
    assert not matters(geo(4096, 31))  # the FFT at any scale: nothing to compile
    assert not matters(geometry.plan_geometry((128, 128, 128), (9, 9, 9)))  # volumes keep the fit
    # exactly where the choice at the clamp's two ends differs, over kernel sizes and image sizes
    lo, hi = tuning.CALIBRATE_SCALE
    for n in (256, 1024, 4096):
        for k in range(3, 40, 2):
            for sep in (0, 1, 2):
                g = geo(n, k)
                ends = {choose(g, sep, s) for s in (lo, hi)}
                big = tuning.method_costs(g, sep, fft_backend="ducc0")["direct"] >= tuning.CALIBRATE_MIN_NS
                assert matters(g, sep) == (len(ends) > 1 and big), (n, k, sep)


def test_the_scale_moves_the_crossing():
    assert choose(geo(4096, 15), 0) == "direct"
    assert choose(geo(4096, 15), 0, 3.3) == "fft"
    assert choose(geo(4096, 9), 0, 3.3) == "direct"
    costs = tuning.method_costs(geo(4096, 9), 0, fft_backend="ducc0", direct_scale=2.0)
    assert costs["direct"] == pytest.approx(2 * tuning.method_costs(geo(4096, 9), 0, fft_backend="ducc0")["direct"])


@pytest.fixture
def calibrated(monkeypatch, tmp_path):
    """Calibration on, its file in tmp_path, and a measurement that returns a scale of 3.3."""
    monkeypatch.setenv("CONVCLI_CALIBRATION", "on")
    monkeypatch.setattr(calibration, "_path", lambda: tmp_path / calibration.FILE)
    calls: list[int] = []
    scale = {"value": 3.3}

    def fake_measure() -> dict[str, object]:
        calls.append(1)
        time.sleep(0.05)  # long enough for a second thread to arrive while it runs
        return dict(zip(calibration.KEYS, (scale["value"], 40.0, 50.0, "ducc0", calibration.SIDE), strict=True))

    monkeypatch.setattr(calibration, "measure", fake_measure)
    calibration._stored_scale.cache_clear()
    yield tmp_path, calls, scale
    calibration._stored_scale.cache_clear()


def test_measured_once_then_read_from_the_cache_folder(calibrated):
    folder, calls, _ = calibrated
    assert calibration.direct_scale() == 3.3
    assert calibration.direct_scale() == 3.3
    assert len(calls) == 1
    stored = json.loads((folder / calibration.FILE).read_text())
    assert stored[calibration.machine_key()]["direct_scale"] == 3.3
    calibration._stored_scale.cache_clear()  # as a new process
    assert calibration.direct_scale() == 3.3
    assert len(calls) == 1  # read, not measured again
    # method="auto" follows it: on such a machine a 15x15 at 4096^2 goes to the FFT, a 5x5 stays direct
    assert calibration.auto_method(geo(4096, 15), 0) == "fft"
    assert calibration.auto_method(geo(4096, 5), 0) == "direct"
    # `convcli warmup --calibrate` measures again and replaces the entry
    assert calibration.calibrate(again=True)["direct_scale"] == 3.3
    assert len(calls) == 2


def test_off_keeps_the_fitted_model(calibrated, monkeypatch):
    folder, calls, _ = calibrated
    monkeypatch.setenv("CONVCLI_CALIBRATION", "off")
    assert calibration.direct_scale() == 1.0
    assert calibration.auto_method(geo(4096, 15), 0) == "direct"
    assert calls == []
    assert not (folder / calibration.FILE).exists()


def test_threads_wait_for_one_measurement(calibrated):
    _, calls, _ = calibrated
    seen: list[float] = []
    threads = [threading.Thread(target=lambda: seen.append(calibration.direct_scale())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [3.3] * 4
    assert len(calls) == 1


def test_a_broken_file_is_measured_again_and_other_machines_are_kept(calibrated):
    folder, calls, _ = calibrated
    path = folder / calibration.FILE
    path.write_text("{not json")
    assert calibration.direct_scale() == 3.3
    assert len(calls) == 1
    other = {"direct_scale": 1.0, "direct_9x9_ms": 1.0, "fft_31x31_ms": 4.0, "fft": "ducc0", "side": 1928}
    path.write_text(json.dumps({"another CPU / znver4 / ducc0": other, calibration.machine_key(): {"direct_scale": "x"}}))
    calibration._stored_scale.cache_clear()
    assert calibration.direct_scale() == 3.3  # this machine's entry was invalid: measured again
    assert len(calls) == 2
    stored = json.loads(path.read_text())
    assert stored["another CPU / znver4 / ducc0"] == other


def test_a_wild_measurement_is_clamped(calibrated):
    _, _, scale = calibrated
    scale["value"] = 1000.0
    assert calibration.direct_scale() == tuning.CALIBRATE_SCALE[1]
    scale["value"] = 0.7  # direct faster than on the fit's Xeon: the fit stands (FFT runs never measure)
    calibration.calibrate(again=True)
    assert calibration.direct_scale() == 1.0


@pytest.mark.parametrize("env", [{"CONVCLI_BACKEND": "numpy"}, {"NUMBA_DISABLE_JIT": "1"}, {"CONVCLI_CALIBRATION": "0"}])
def test_no_measurement_on_the_numpy_back_end_without_the_jit_or_when_off(calibrated, monkeypatch, env):
    folder, calls, _ = calibrated
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not calibration.enabled()
    assert calibration.direct_scale() == 1.0
    assert calls == []


def test_another_process_measured_while_this_one_waited_for_the_lock(calibrated, monkeypatch):
    folder, calls, _ = calibrated
    path = folder / calibration.FILE
    theirs = dict(zip(calibration.KEYS, (2.5, 30.0, 50.0, "ducc0", calibration.SIDE), strict=True))
    real_lock = calibration._file_lock

    @contextlib.contextmanager
    def lock_after_them(p):
        path.write_text(json.dumps({calibration.machine_key(): theirs}))  # they finish first
        with real_lock(p):
            yield

    monkeypatch.setattr(calibration, "_file_lock", lock_after_them)
    assert calibration.direct_scale() == 2.5
    assert calls == []


def test_the_file_lives_in_numbas_cache_folder_and_reading_it_loads_no_numba(tmp_path):
    stored = dict(zip(calibration.KEYS, (3.3, 40.0, 50.0, "ducc0", calibration.SIDE), strict=True))
    code = textwrap.dedent(
        f"""
        import json, os, sys
        from pathlib import Path
        from convcli.engine import calibration
        assert calibration._path() == Path(os.environ["NUMBA_CACHE_DIR"]) / "calibration.json"
        calibration._path().write_text(json.dumps({{calibration.machine_key(): {stored!r}}}))
        print(calibration.direct_scale(), "numba" in sys.modules, "llvmlite" in sys.modules)
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "CONVCLI_CALIBRATION": "on"}
    env.pop("CONVCLI_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3.3", "False", "False"]


def test_an_unwritable_cache_folder_keeps_the_measurement_for_this_process(calibrated, monkeypatch):
    folder, calls, _ = calibrated
    blocker = folder / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(calibration, "_path", lambda: blocker / calibration.FILE)
    assert calibration.direct_scale() == 3.3
    assert len(calls) == 1
    assert blocker.read_text() == ""


def test_measure_times_both_methods_and_derives_the_scale_from_them(monkeypatch):
    monkeypatch.setattr(calibration, "SIDE", 160)
    entry = calibration.measure()
    assert set(entry) == set(calibration.KEYS)
    assert entry["side"] == 160
    assert entry["direct_9x9_ms"] > 0 and entry["fft_31x31_ms"] > 0
    model = {k: tuning.method_costs(calibration._geometry(k), 0, fft_backend=entry["fft"]) for k in (9, 31)}
    expected = (entry["direct_9x9_ms"] / entry["fft_31x31_ms"]) / (model[9]["direct"] / model[31]["fft"])
    assert math.isclose(entry["direct_scale"], expected, rel_tol=1e-12)


def test_run_filter_auto_takes_the_calibrated_method(calibrated, monkeypatch):
    x = np.random.default_rng(3).random((1300, 1300), dtype=np.float32)
    k = np.random.default_rng(4).random((15, 15), dtype=np.float32)
    calibrated_run = run_filter(x, k)
    assert calibrated_run.method == "fft"
    monkeypatch.setenv("CONVCLI_CALIBRATION", "off")
    fitted_run = run_filter(x, k)
    assert fitted_run.method == "direct"
    np.testing.assert_allclose(calibrated_run.array, fitted_run.array, rtol=1e-4, atol=1e-2)
