"""A real single-host Grid Engine for the SGE driver's tests (started by .ci/sge-setup.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SETUP = REPO / ".ci" / "sge-setup.sh"
FIXTURES = REPO / "tests" / "drivers" / "fixtures" / "sge"
#: the SGE driver's module, for daemons started before pyproject registers it
PLUGIN = "clusterd.drivers.sge"


@pytest.fixture(scope="session")
def sge() -> None:
    """A running single-host Grid Engine; installed and started by .ci/sge-setup.sh if
    need be. Skips, saying why, only where it cannot be installed (exit 3)."""
    try:
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{SETUP} took more than 10 minutes")
    output = (done.stdout + done.stderr).strip()
    if done.returncode == 3:
        pytest.skip(f"cannot install Grid Engine here, so no real-SGE tests: {output[-500:]}")
    if done.returncode != 0:
        pytest.fail(f"{SETUP} failed (exit {done.returncode}):\n{output[-2000:]}")
