"""launch.json: the daemon's builder and the runner's reader share one schema."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from clusterd.node.launch import (
    FIELDS,
    VERSION,
    LaunchError,
    launch_from,
    launch_record,
    load_launch,
)


def _fields(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "token": "t0k",
        "sweep": "lr-depth",
        "trial_index": 7,
        "trial_id": "lr-depth/7",
        "attempt": 1,
        "trial_dir": str(tmp_path / "7"),
        "attempt_dir": str(tmp_path / "7" / "attempt-1"),
        "command": ["python", "train.py"],
        "params": {"lr": 0.1},
        "cwd": str(tmp_path),
        "env": {"KEY": "v"},
        "setup": "source env.sh",
        "resume_exit_code": 3,
        "resume_signal": "USR2",
        "signal_lead": 60,
        "time_limit": 3600,
        "enforce_time_limit": False,
        "kill_grace": 10,
        "gpu_interval": 5,
    }
    fields.update(extra)
    return fields


def test_what_the_daemon_builds_the_runner_reads_back(tmp_path: Path) -> None:
    record = launch_record(**_fields(tmp_path))
    assert record["version"] == VERSION
    assert record["resume"] == {"exit_code": 3, "signal": "USR2", "signal_lead": 60}
    launch = launch_from(json.loads(json.dumps(record)))
    assert launch.resume_signal is signal.SIGUSR2
    assert (launch.signal_lead, launch.time_limit, launch.gpu_interval) == (60.0, 3600.0, 5.0)
    assert launch.command == ["python", "train.py"] and launch.env == {"KEY": "v"}
    assert launch.enforce_time_limit is False and launch.setup == "source env.sh"


def test_the_builder_refuses_unknown_and_missing_fields(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown \\['colour'\\]"):
        launch_record(**_fields(tmp_path, colour="red"))
    fields = _fields(tmp_path)
    del fields["command"]
    with pytest.raises(TypeError, match="missing \\['command'\\]"):
        launch_record(**fields)


def test_optional_fields_take_their_defaults(tmp_path: Path) -> None:
    required = {"sweep", "trial_index", "trial_id", "attempt", "trial_dir", "attempt_dir"}
    required.add("command")
    fields = {k: v for k, v in _fields(tmp_path).items() if k in required}
    launch = launch_from(launch_record(**fields))
    assert launch.token is None and launch.params == {} and launch.env == {}
    assert launch.resume_signal is signal.SIGUSR1 and launch.signal_lead == 120.0
    assert (launch.resume_exit_code, launch.kill_grace, launch.gpu_interval) == (3, 10.0, 0.0)
    assert launch.time_limit is None and launch.enforce_time_limit is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version: expected 1, got 2"),
        ({"sweep": None}, "sweep: missing"),
        ({"trial_index": "7"}, "trial_index: expected int, got '7'"),
        ({"attempt": True}, "attempt: expected int, got True"),
        ({"trial_dir": "runs/7"}, "trial_dir: expected an absolute path"),
        ({"command": []}, "command: expected a non-empty list of strings"),
        ({"command": ["python", 3]}, "command: expected a non-empty list of strings"),
        ({"env": {"A": [1]}}, "env.A: expected a string value"),
        ({"resume": {"exit_code": "3"}}, "resume.exit_code: expected int"),
        ({"resume": {"signal": "WAKE"}}, "resume.signal: unknown signal 'WAKE'"),
        ({"resume": []}, "resume: expected dict"),
        ({"time_limit": -1}, "time_limit: expected a number of seconds >= 0"),
        ({"enforce_time_limit": "yes"}, "enforce_time_limit: expected bool"),
    ],
)
def test_a_missing_or_mistyped_field_is_named(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    record = {**launch_record(**_fields(tmp_path)), **change}
    with pytest.raises(LaunchError, match=re.escape(message)):
        launch_from(record)


def test_load_launch_names_the_file_and_refuses_a_symlink(tmp_path: Path) -> None:
    path = tmp_path / "launch.json"
    path.write_text(json.dumps({**launch_record(**_fields(tmp_path)), "attempt": None}))
    with pytest.raises(LaunchError, match=re.escape(f"{path}: attempt: missing")):
        load_launch(str(path))
    os.rename(path, tmp_path / "real.json")
    path.symlink_to(tmp_path / "real.json")
    with pytest.raises(LaunchError, match=r"refused: .*symlink"):
        load_launch(str(path))


def test_every_field_is_documented() -> None:
    """docs/runtime.md describes launch.json for driver authors: no field is left out."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "runtime.md").read_text()
    missing = [key for _attr, key, _check, _default in FIELDS if key.split(".")[-1] not in docs]
    assert missing == []


def test_resume_signal_none_means_no_signal(tmp_path: Path) -> None:
    launch = launch_from(launch_record(**_fields(tmp_path, resume_signal="none")))
    assert launch.resume_signal is None
