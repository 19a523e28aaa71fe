"""status.json: the runner's result, written once, read back with errors as data."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from clusterd.node.status import read_status, status_record, write_new_status, write_status


def test_a_killed_command_reports_the_signal_not_an_exit_code() -> None:
    status = status_record(-signal.SIGKILL, 1.0, 2.0, 42, True, None)
    assert (status["exit_code"], status["signal"], status["timed_out"]) == (None, "KILL", True)
    assert status_record(3, 1.0, 2.0, 42, False, None)["exit_code"] == 3


def test_written_then_read_back(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_status(fd, status_record(0, 1.0, 2.0, 42, False, None))
        write_new_status(fd, status_record(None, 3.0, 3.0, None, False, "second runner"))
    finally:
        os.close(fd)
    status = read_status(str(tmp_path))
    assert status is not None and status["exit_code"] == 0 and status["error"] is None


def test_absent_is_none_and_garbage_is_an_error_as_data(tmp_path: Path) -> None:
    assert read_status(str(tmp_path)) is None
    (tmp_path / "status.json").write_text('{"exit_code": ')
    assert read_status(str(tmp_path)) == {
        "exit_code": None,
        "error": "status.json is not valid JSON",
    }
    (tmp_path / "status.json").write_text(json.dumps([0]))
    assert read_status(str(tmp_path)) == {
        "exit_code": None,
        "error": "status.json is not a JSON object",
    }
