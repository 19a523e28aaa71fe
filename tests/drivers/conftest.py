"""A real one-node Slurm for the driver and daemon tests (started by .ci/slurm-setup.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / ".ci" / "slurm-setup.sh"


@pytest.fixture(scope="session")
def slurm() -> None:
    """A running one-node Slurm; installed and started by .ci/slurm-setup.sh if need be."""
    try:
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{SETUP} took more than 10 minutes")
    output = (done.stdout + done.stderr).strip()
    if done.returncode == 3:
        pytest.skip(f"cannot install Slurm here, so no real-Slurm tests: {output[-500:]}")
    if done.returncode != 0:
        pytest.fail(f"{SETUP} failed (exit {done.returncode}):\n{output[-2000:]}")
