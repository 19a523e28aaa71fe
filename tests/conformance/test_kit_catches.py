"""The kit fails drivers that break the contract: a check that cannot fail proves nothing.

Each mutant (``mutants.py``) is the example driver with one flaw; the check aimed at
that flaw must fail on it (and passes on the example itself: test_example_driver.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterd.testing import DriverConformance, Kit, SchedulerSetup

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-driver"


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example driver importable here and in the daemon."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", f"{EXAMPLE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    yield


@pytest.mark.parametrize(
    ("driver", "check", "why"),
    [
        ("chatty", "test_one_status_call_per_poll", "more than 1 status command"),
        (
            "forgetful",
            "test_recovery_by_token_after_crash_between_submit_and_commit",
            r"did find\(\) find them",
        ),
        ("credulous", "test_garbage_status_output_is_a_driver_error", "DID NOT RAISE"),
    ],
)
def test_the_kit_fails_a_driver_that_breaks_the_contract(
    driver: str,
    check: str,
    why: str,
    example_on_path: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Suite(DriverConformance):
        driver_name = driver
        status_commands = ("ps",)
        plugins = ("tests.conformance.mutants",)
        sweep_timeout = 60.0

    kit = Kit(driver, SchedulerSetup(), Suite.status_commands, Suite.plugins, tmp_path / "work")
    for key, value in kit.process_env.items():
        monkeypatch.setenv(key, value)
    method = getattr(Suite(), check)
    args = (kit, tmp_path) if "garbage" in check else (kit,)
    try:
        with pytest.raises((AssertionError, pytest.fail.Exception), match=why):
            method(*args)
    finally:
        kit.close()
