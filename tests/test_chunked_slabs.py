"""Big 8/16-bit volumes in memory are filtered slab by slab (no float copy of the whole volume):
the same pixels, statistics and clipped counts as the whole-array engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import convcli
from convcli.cli.app import app
from convcli.engine import tuning
from convcli.engine.postprocess import to_integer
from convcli.pipeline.process import stats_of

runner = CliRunner()


@pytest.mark.parametrize(
    ("extra", "kw"),
    [
        (["--border", "constant", "--cval", "5000", "--stride", "2"], {"border": "constant", "cval": 5000.0, "stride": 2}),
        (["--border", "wrap", "--dilation", "1x2x1", "--mode", "corr"], {"border": "wrap", "dilation": (1, 2, 1)}),
        (["--padding", "valid", "--scale", "3", "--offset", "-100", "--abs"], {"padding": "valid"}),
        (["--padding", "full", "--border", "nearest"], {"padding": "full", "border": "nearest"}),  # a result larger than the input
    ],
)
def test_slabs_equal_the_whole_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], kw: dict) -> None:
    monkeypatch.setattr(tuning, "BAND_MIN_BYTES", 1)  # every volume goes by slabs
    x = (np.random.default_rng(0).random((23, 40, 36, 2)) * 60000).astype(np.uint16)
    k = np.random.default_rng(1).random((3, 4, 3))
    np.save(tmp_path / "v.npy", x)
    np.save(tmp_path / "k.npy", k)
    res = runner.invoke(app, ["apply", str(tmp_path / "v.npy"), "-k", str(tmp_path / "k.npy"), "--method", "direct",
                              "-o", str(tmp_path / "o.npy"), "--json", *extra])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = convcli.correlate if "corr" in extra else convcli.convolve
    y = run(x, k, method="direct", **kw)
    if "--scale" in extra:
        y = np.abs(y * np.float32(3) + np.float32(-100))
    ref, clipped = to_integer(y, np.dtype(np.uint16))
    assert np.array_equal(np.load(tmp_path / "o.npy"), ref)
    doc = json.loads(res.stdout)
    assert doc["clipped"] == clipped
    st = stats_of(ref, True)
    assert doc["stats"]["mean"] == pytest.approx(st.mean, rel=1e-12)
    assert doc["stats"]["std"] == pytest.approx(st.std, rel=1e-9)
    assert doc["stats"]["per_channel"][1]["max"] == st.per_channel[1].max  # type: ignore[index]
