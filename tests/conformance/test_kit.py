"""The kit's own parts: the events log, the status-command wrappers, the /proc scan and
the sweep files. The checks themselves run in the other modules of this folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.testing.commands import GARBAGE, StatusCommands
from clusterd.testing.instrument import read_events
from clusterd.testing.procs import processes_with
from clusterd.testing.sweeps import sweep_file, toml_value
from clusterd.testing.waiting import wait_for

REAL_OUTPUT = "101_0|RUNNING|node1\n101_1|PENDING|(Priority)\n"


def test_commands_belong_to_the_poll_that_ran_them(tmp_path: Path) -> None:
    log = tmp_path / "events"
    log.write_text(
        "submit cd-a cd-b\nsubmitted cd-a cd-b\ncmd squeue\n"  # a budget query, no poll
        "poll 2\ncmd squeue\ncmd sacct\npoll-end ok\n"
        "poll 2\ncmd squeue\npoll-end error\n"
        "submit cd-b\npoll 1\n"  # the last poll still runs
    )
    events = read_events(log)
    assert [(p.jobs, p.commands, p.outcome) for p in events.polls] == [
        (2, ["squeue", "sacct"], "ok"),
        (2, ["squeue"], "error"),
        (1, [], None),
    ]
    assert events.commands == ["squeue", "squeue", "sacct", "squeue"]
    assert events.submits == [["cd-a", "cd-b"], ["cd-b"]]
    assert events.submitted_twice() == ["cd-b"]
    assert read_events(tmp_path / "missing").polls == []


@pytest.fixture
def fakeq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StatusCommands:
    """A "scheduler" command ``fakeq`` printing REAL_OUTPUT, wrapped by the kit."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "output").write_text(REAL_OUTPUT)
    script = real / "fakeq"
    script.write_text(f"#!/bin/sh\nexec cat {real / 'output'}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{real}{os.pathsep}{os.environ['PATH']}")
    return StatusCommands(tmp_path / "kit", ["fakeq"], tmp_path / "events")


def run_wrapped(commands: StatusCommands) -> str:
    env = {**os.environ, "PATH": commands.path(os.environ["PATH"])}
    done = subprocess.run(["fakeq", "-h"], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def test_a_wrapper_counts_calls_and_answers_as_told(fakeq: StatusCommands, tmp_path: Path) -> None:
    assert run_wrapped(fakeq) == REAL_OUTPUT
    fakeq.answer("garbage")
    assert run_wrapped(fakeq) == GARBAGE
    fakeq.answer("truncated")
    cut = run_wrapped(fakeq)
    assert REAL_OUTPUT.startswith(cut) and not cut.endswith("\n")
    assert cut.count("\n") == 1  # the first line whole, the last one cut in the middle
    fakeq.answer("")
    assert run_wrapped(fakeq) == REAL_OUTPUT
    assert (tmp_path / "events").read_text() == "cmd fakeq\n" * 4


def test_truncation_cuts_even_a_one_byte_last_line(fakeq: StatusCommands, tmp_path: Path) -> None:
    """PBS Pro's JSON ends in a lone ``}``: a cut that kept it whole would cut nothing."""
    (tmp_path / "real" / "output").write_text('{\n    "Jobs":{}\n}\n')
    fakeq.answer("truncated")
    assert run_wrapped(fakeq) == '{\n    "Jobs":{}'


def test_a_missing_status_command_is_named(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="no-such-squeue"):
        StatusCommands(tmp_path, ["no-such-squeue"], tmp_path / "events")


def test_processes_are_found_by_their_token() -> None:
    token = f"cd-kit-test-{os.getpid()}"
    env = {**os.environ, "CLUSTERD_JOB_TOKEN": token}
    code = "import sys; sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE)
    try:
        assert processes_with([token, "cd-kit-other"]) == {proc.pid: token}
    finally:
        proc.communicate(b"")
    wait_for(lambda: not processes_with([token]), 10, "the process to be gone")


toml_scalars = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
)


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        toml_scalars | st.lists(toml_scalars, max_size=3),
    )
)
def test_option_values_survive_the_sweep_file(options: dict[str, Any]) -> None:
    text = "".join(f"{key} = {toml_value(value)}\n" for key, value in options.items())
    assert tomllib.loads(text) == options


def test_a_sweep_file_runs_the_kit_trial_on_the_driver(tmp_path: Path) -> None:
    path = sweep_file(
        tmp_path,
        "kit",
        "mydriver",
        "ok",
        3,
        driver_options={"poll_interval": 1, "extra": ["--x=1"]},
        resources={"cpus": 1, "time": "00:00:03"},
        tables={"retry": {"max_failures": 1}},
    )
    sweep = tomllib.loads(path.read_text())
    assert sweep["driver"] == "mydriver" and sweep["max_concurrent"] == 3
    assert sweep["command"] == [sys.executable, "kit_trial.py"]
    assert sweep["params"]["x"] == [1, 2, 3] and sweep["params"]["mode"] == "ok"
    assert sweep["drivers"]["mydriver"] == {"poll_interval": 1, "extra": ["--x=1"]}
    assert sweep["retry"] == {"max_failures": 1}
    assert (tmp_path / "kit_trial.py").exists()
