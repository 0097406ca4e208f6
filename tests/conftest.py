from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=60)
settings.register_profile("ci", deadline=None, max_examples=150)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backend_auto: run with the engine's own backend choice (numpy for small calls)")
    config.addinivalue_line("markers", "chunk_groups: read and compute small chunks in groups, as convcli does (source.GROUP_VALUES)")


@pytest.fixture(autouse=True)
def _compiled_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run the Numba kernels even on their small arrays (which the engine would hand to
    numpy), so every compiled path keeps its coverage; ``backend_auto`` tests see the real choice."""
    from convcli.engine import plan

    plan.forget()  # tests change tuning and the environment between calls
    monkeypatch.setenv("CONVCLI_CALIBRATION", "off")  # the fitted cost model: the same methods on every CPU
    if request.node.get_closest_marker("backend_auto") is None:
        monkeypatch.setenv("CONVCLI_BACKEND", "numba")
    else:
        monkeypatch.delenv("CONVCLI_BACKEND", raising=False)


@pytest.fixture(autouse=True)
def _chunk_by_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked tests read and compute their small chunks one by one, as convcli does with large
    ones, so their small volumes still cross many block and chunk edges; ``chunk_groups`` tests
    see the grouping of small chunks convcli really does."""
    if request.node.get_closest_marker("chunk_groups") is None:
        from convcli.chunked import source

        monkeypatch.setattr(source, "GROUP_VALUES", 1)


@pytest.fixture
def direct_kernels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the direct kernel copies dispatch picks, call by call (the calls still run)."""
    from convcli.engine import dispatch

    made: list[str] = []
    real = dispatch.direct_job

    def job(*args: Any, **kw: Any) -> Any:
        j = real(*args, **kw)
        made.append(j.kernel.__name__)
        return j

    monkeypatch.setattr(dispatch, "direct_job", job)
    return made
