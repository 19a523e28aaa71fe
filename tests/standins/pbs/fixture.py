"""A stand-in PBS server for tests: ``pbs_standin(flavor)`` and the ``pbs`` fixture.

``pbs_standin("pbspro" | "torque")`` makes a state root playing that dialect, writes the
``qsub``/``qstat``/``qdel``/``qrls`` executables into a bin dir, and yields a
``PbsStandIn``: its ``env`` (PATH with the bin dir first, ``CLUSTERD_STANDIN_DIR``) is
what a daemon or the test process needs to reach it; ``calls("qsub")`` counts what was
run. On exit every job still active is removed and its processes are waited for.

The ``pbs`` pytest fixture runs a test once per dialect, with the stand-in's ``env`` set
in the test process (so the in-process driver, and the conformance kit's command
wrappers, find the stand-in commands on PATH). Import it into a test module::

    from tests.standins.pbs.fixture import pbs  # noqa: F401  (the fixture)
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.standins.engine import StandIn
from tests.standins.pbs.site import FLAVORS, Site, write_site
from tests.standins.shims import install

__all__ = ["COMMANDS", "PLUGIN", "PbsStandIn", "pbs", "pbs_standin"]

#: the stand-in executables and the functions behind them
COMMANDS = {
    "qsub": "tests.standins.pbs.qsub:main",
    "qstat": "tests.standins.pbs.qstat:main",
    "qdel": "tests.standins.pbs.qdel:main",
    "qrls": "tests.standins.pbs.qdel:qrls",
}
#: the driver's module, for ``CLUSTERD_PLUGINS`` until an entry point registers it
PLUGIN = "clusterd.drivers.pbs"


@dataclass
class PbsStandIn:
    """One stand-in PBS server: its engine, its site, its executables."""

    root: Path
    bin: Path
    site: Site
    engine: StandIn
    env: dict[str, str]

    @property
    def flavor(self) -> str:
        return self.site.flavor

    def calls(self, command: str) -> list[list[str]]:
        """The argv of every call of ``command`` ("qsub", "qstat", ...) so far."""
        return self.engine.calls(command)

    def daemon_env(self) -> dict[str, str]:
        """What a clusterd daemon needs: the stand-in on PATH and the PBS driver loaded."""
        return {**self.env, "CLUSTERD_PLUGINS": PLUGIN}


@contextlib.contextmanager
def pbs_standin(
    flavor: str, *, max_array_size: int = 10_000, slots: int | None = None
) -> Iterator[PbsStandIn]:
    """A fresh stand-in PBS server of ``flavor`` under /tmp, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=f"cd-pbs-{flavor}-", dir="/tmp"))
    root = base / "state"
    try:
        site = write_site(root, flavor, max_array_size=max_array_size)
        engine = StandIn(root)
        if slots is not None:
            engine.set_auto(slots=slots)
        env = install(base / "bin", COMMANDS, root)
        yield PbsStandIn(root, base / "bin", site, engine, env)
    finally:
        if root.exists():
            with contextlib.suppress(Exception):  # a test's failure says more than this
                StandIn(root).shutdown()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=FLAVORS)
def pbs(request: pytest.FixtureRequest) -> Iterator[PbsStandIn]:
    """A stand-in PBS server, once per dialect, its env set in this process."""
    with pbs_standin(request.param) as server, pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        yield server
