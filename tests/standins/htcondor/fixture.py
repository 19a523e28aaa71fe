"""The stand-in HTCondor for a test: its commands on PATH, its state, its knobs.

``with condor_standins(tmp_path) as condor:`` (or the ``htcondor_standins`` pytest
fixture) writes the shims into ``<dir>/bin`` and yields a ``CondorStandIns``: ``env``
is what a daemon needs (``PATH`` with the shims first, ``CLUSTERD_STANDIN_DIR``),
``engine`` the shared state (hold, evict, release jobs from the test), ``calls(name)``
the recorded calls of one command. On exit every job still queued is removed and its
processes are gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.standins.engine import Job, StandIn
from tests.standins.htcondor import COMMANDS
from tests.standins.htcondor.events import shadow_exception_reason
from tests.standins.shims import install

__all__ = ["CondorStandIns", "condor_standins", "htcondor_standins"]


@dataclass
class CondorStandIns:
    """One stand-in HTCondor: ``bin`` (the commands), ``root`` (state), ``env``."""

    bin: Path
    root: Path
    env: dict[str, str]
    engine: StandIn

    def calls(self, command: str) -> list[list[str]]:
        """The argv of every call of ``command`` so far."""
        return self.engine.calls(command)

    def jobs(self) -> list[Job]:
        return self.engine.jobs()

    def by_token(self) -> dict[str, list[Job]]:
        """Every job, grouped by its ``ClusterdToken`` attribute."""
        out: dict[str, list[Job]] = {}
        for job in self.engine.jobs():
            token = job.attrs.get("ClusterdToken")
            if isinstance(token, str):
                out.setdefault(token, []).append(job)
        return out

    def evict(self, job: Job, message: str | None = None) -> None:
        """Evict a running job (event 004), or with ``message`` end its run in a shadow
        exception (event 007); either way it goes back to idle and runs again."""
        reason = shadow_exception_reason(message) if message is not None else ""
        self.engine.evict(job.cluster, job.index, reason)


@contextmanager
def condor_standins(directory: Path, slots: int | None = None) -> Iterator[CondorStandIns]:
    """Stand-in HTCondor commands under ``directory`` (see the module docstring)."""
    root = directory / "condor-state"
    bin_dir = directory / "condor-bin"
    engine = StandIn(root)
    env = install(bin_dir, COMMANDS, root)
    if slots is not None:
        engine.set_auto(slots=slots)
    try:
        yield CondorStandIns(bin_dir, engine.root, env, engine)
    finally:
        engine.shutdown()


@pytest.fixture
def htcondor_standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CondorStandIns]:
    """The stand-ins, with this process's PATH and CLUSTERD_STANDIN_DIR pointing at them."""
    with condor_standins(tmp_path) as condor:
        for key, value in condor.env.items():
            monkeypatch.setenv(key, value)
        yield condor
    os.environ.get("PATH")  # monkeypatch restores it
