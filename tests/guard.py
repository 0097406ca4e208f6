"""Run convcli in a subprocess with an address-space limit and a timeout, and check the error
contract: a documented exit code, exactly one ``convcli: error:`` line, no traceback, no file
left behind, inputs untouched. A regression then fails the test instead of taking the machine down."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MEMORY_LIMIT = 3 << 30  # bytes of address space (Numba/LLVM map a few hundred MB of it)
TIMEOUT = 120.0  # seconds: a hang fails, it never blocks CI


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("convcli: error:")]


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(*args: str | Path, cwd: Path | None = None, stdin: bytes | None = None, timeout: float = TIMEOUT,
            env: dict[str, str] | None = None) -> Run:  # fmt: skip
    proc = subprocess.run(  # noqa: PLW1510 (the caller checks the code)
        [sys.executable, "-m", "convcli", *map(str, args)], cwd=cwd, input=stdin if stdin is not None else b"",
        capture_output=True, timeout=timeout, preexec_fn=_limit, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (names and content hashes; links as their target)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


def assert_refused(run: Run, before: dict[str, str], folder: Path, codes: tuple[int, ...] = (1, 2)) -> None:
    """The contract for a refused input: exit code, one error line, no traceback, nothing written."""
    assert run.code in codes, (run.code, run.stderr)
    assert len(run.errors) == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "internal error" not in run.stderr, run.stderr
    assert snapshot(folder) == before, "files were written, removed or changed"
