"""The runner, with real processes: files, argv, environment, signals, time limits."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.node.events import CheckpointEvent, GpuEvent, parse_chunk
from clusterd.runner.command import build_argv, build_shell_line, render_value

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PRINT_ARGV = "import sys, json; print(json.dumps(sys.argv[1:]))"


# -- helpers -----------------------------------------------------------------------------------


class Attempt:
    """One attempt dir with its launch.json, and the runner started on it."""

    def __init__(self, tmp_path: Path, command: list[str], **launch: Any) -> None:
        self.trial_dir = tmp_path / "runs" / "7"
        self.dir = self.trial_dir / "attempt-1"
        self.dir.mkdir(parents=True)
        self.launch = {
            "version": 1,
            "sweep": "lr-depth",
            "trial_index": 7,
            "trial_id": "lr-depth/7",
            "attempt": 1,
            "trial_dir": str(self.trial_dir),
            "attempt_dir": str(self.dir),
            "command": command,
            "params": {},
            "cwd": str(tmp_path),
            "env": {},
            "setup": None,
            "resume": {"exit_code": 3, "signal": "USR1", "signal_lead": 120},
            "time_limit": None,
            "enforce_time_limit": True,
            "kill_grace": 10,
            "gpu_interval": 0,
        }
        self.launch.update(launch)
        self.launch_path = self.dir / "launch.json"
        self.launch_path.write_text(json.dumps(self.launch))
        self.env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            [PY, "-m", "clusterd.runner", str(self.launch_path)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return self.proc

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def run(self, timeout: float = 60) -> int:
        self.start()
        return self.wait(timeout)

    def file(self, name: str) -> str:
        return (self.dir / name).read_text()

    def has(self, name: str, text: str) -> bool:
        """Whether the file exists and holds ``text`` (for waiting on it)."""
        path = self.dir / name
        return path.exists() and text in path.read_text()

    def status(self) -> dict[str, Any]:
        return json.loads(self.file("status.json"))

    def events(self) -> list:
        result = parse_chunk((self.dir / "events.jsonl").read_bytes(), 0)
        assert result.errors == []
        return result.events


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def python(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


# -- pure functions ------------------------------------------------------------------------------


def test_build_argv_appends_params_as_flags() -> None:
    params = {"lr": 0.001, "tiny": 1e-05, "name": "a b", "layers": [64, 64], "bn": True}
    assert build_argv(["python", "train.py"], params) == [
        "python",
        "train.py",
        "--lr=0.001",
        "--tiny=1e-05",
        "--name=a b",
        "--layers=[64, 64]",
        "--bn=true",
    ]


def test_build_argv_substitutes_placeholders_and_appends_nothing() -> None:
    argv = build_argv(
        ["train", "--lr={lr}", "{name}", "{{lr}}", "{other}", "x}}"], {"lr": 0.1, "name": "n"}
    )
    assert argv == ["train", "--lr=0.1", "n", "{lr}", "{other}", "x}"]


def test_build_argv_escapes_apply_without_placeholders() -> None:
    assert build_argv(["echo", "{{x}}", "{y}"], {"lr": 1}) == ["echo", "{x}", "{y}", "--lr=1"]


def test_render_value() -> None:
    assert [render_value(v) for v in ("s", 2, 0.5, None, {"a": 1})] == [
        "s",
        "2",
        "0.5",
        "null",
        '{"a": 1}',
    ]


def test_build_shell_line_quotes_every_element() -> None:
    line = build_shell_line("source env/bin/activate  # note", ["python", "a b", "$(x)", "'"])
    assert line == "{ source env/bin/activate  # note\n} && exec python 'a b' '$(x)' ''\"'\"''"


@given(st.lists(st.text(st.characters(exclude_characters="\x00")), min_size=1, max_size=5))
def test_shell_line_round_trips_through_shlex(argv: list[str]) -> None:
    line = build_shell_line("true", argv)
    assert shlex.split(line.split("\n", 1)[1])[3:] == argv


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(st.characters(exclude_characters="\x00", codec="utf-8")), max_size=4))
def test_shell_line_round_trips_through_a_real_shell(args: list[str]) -> None:
    line = build_shell_line("true", [PY, "-c", PRINT_ARGV, *args])
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, check=True).stdout
    assert json.loads(out) == args


# -- a normal run ------------------------------------------------------------------------------


def test_success_writes_status_runner_json_and_output(tmp_path: Path) -> None:
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    attempt = Attempt(tmp_path, python(code))
    began = time.time()
    assert attempt.run() == 0
    status = attempt.status()
    assert status["exit_code"] == 0 and status["signal"] is None
    assert status["timed_out"] is False and status["error"] is None
    assert began <= status["started_at"] <= status["ended_at"] <= time.time()
    assert status["host"] == os.uname().nodename
    runner = json.loads(attempt.file("runner.json"))
    assert runner["child_pid"] == status["pid"] == runner["child_pgid"]
    assert runner["pid"] == attempt.proc.pid  # type: ignore[union-attr]
    assert attempt.file("stdout") == "to stdout\n"  # a file the runner created (O_EXCL)
    assert attempt.file("stderr") == "to stderr\n"
    assert "command started" in attempt.file("runner.log")
    assert sorted(p.name for p in attempt.dir.iterdir() if p.name.startswith(".")) == []


def test_exit_code_is_mirrored(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["sh", "-c", "exit 5"])
    assert attempt.run() == 5
    assert attempt.status()["exit_code"] == 5


def test_killed_by_a_signal_reports_its_name(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["sh", "-c", "kill -KILL $$"])
    assert attempt.run() == 128 + 9
    status = attempt.status()
    assert (status["exit_code"], status["signal"]) == (None, "KILL")


def test_environment_params_json_and_cwd(tmp_path: Path) -> None:
    code = """
        import os, json
        print(json.dumps({k: v for k, v in os.environ.items()
                          if k.startswith("CLUSTERD_") or k == "OMP_NUM_THREADS"}))
        print(os.getcwd())
    """
    work = tmp_path / "work"
    work.mkdir()
    params = {"lr": 0.01, "optimizer": "sgd"}
    attempt = Attempt(
        tmp_path,
        python(code),
        params=params,
        env={"OMP_NUM_THREADS": "4"},
        cwd=str(work),
        token="cd-lr-depth-7-1-abc",
    )
    assert attempt.run() == 0
    env_line, cwd_line = attempt.file("stdout").splitlines()
    d, t = str(attempt.dir), str(attempt.trial_dir)
    assert json.loads(env_line) == {
        "CLUSTERD_SWEEP": "lr-depth",
        "CLUSTERD_TRIAL_ID": "lr-depth/7",
        "CLUSTERD_TRIAL_INDEX": "7",
        "CLUSTERD_ATTEMPT": "1",
        "CLUSTERD_TRIAL_DIR": t,
        "CLUSTERD_ATTEMPT_DIR": d,
        "CLUSTERD_PARAMS": f"{t}/params.json",
        "CLUSTERD_EVENTS": f"{d}/events.jsonl",
        "CLUSTERD_RESUME_EXIT_CODE": "3",
        "CLUSTERD_RESUME_SIGNAL": "USR1",
        "CLUSTERD_ATTEMPT_TOKEN": "cd-lr-depth-7-1-abc",  # marks the attempt's processes
        "OMP_NUM_THREADS": "4",
    }
    assert cwd_line == str(work)
    assert json.loads((attempt.trial_dir / "params.json").read_text()) == params
    assert (attempt.trial_dir / "checkpoints").is_dir()


@pytest.mark.parametrize("setup", [None, "true"])
def test_params_reach_the_command_as_flags(tmp_path: Path, setup: str | None) -> None:
    params = {"lr": 1e-05, "name": "a b", "layers": [64, 64]}
    attempt = Attempt(tmp_path, python(PRINT_ARGV), params=params, setup=setup)
    assert attempt.run() == 0
    assert json.loads(attempt.file("stdout")) == ["--lr=1e-05", "--name=a b", "--layers=[64, 64]"]


def test_placeholders_are_substituted(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, [*python(PRINT_ARGV), "{lr}", "x{{y}}"], params={"lr": 0.5})
    assert attempt.run() == 0
    assert json.loads(attempt.file("stdout")) == ["0.5", "x{y}"]


@pytest.mark.parametrize("setup", [None, "true", "export FOO=1 # a comment"])
def test_hostile_param_values_never_execute(tmp_path: Path, setup: str | None) -> None:
    marker = tmp_path / "pwned-xyz"
    hostile = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"' && touch {marker} '",
    ]
    params = {f"p{i}": value for i, value in enumerate(hostile)}
    attempt = Attempt(tmp_path, python(PRINT_ARGV), params=params, setup=setup)
    assert attempt.run() == 0
    assert json.loads(attempt.file("stdout")) == [f"--p{i}={v}" for i, v in enumerate(hostile)]
    assert not marker.exists()


def test_setup_runs_before_the_command_in_the_same_shell(tmp_path: Path) -> None:
    setup = "export GREETING=hello\nsource /dev/null  # bash-style setup works"
    code = "import os; print(os.environ['GREETING'])"
    attempt = Attempt(tmp_path, python(code), setup=setup)
    assert attempt.run() == 0
    assert attempt.file("stdout") == "hello\n"


def test_failing_setup_skips_the_command(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, python("print('ran')"), setup="false")
    assert attempt.run() == 1
    assert attempt.file("stdout") == ""


# -- failures to start -------------------------------------------------------------------------


def test_command_not_found(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["no-such-command-xyz", "arg"])
    assert attempt.run() == 127
    status = attempt.status()
    assert status["exit_code"] == 127
    assert status["error"] == "command not found: no-such-command-xyz"
    assert "no-such-command-xyz" in attempt.file("stderr")


def test_command_not_found_behind_setup(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["no-such-command-xyz"], setup="true")
    assert attempt.run() == 127
    assert attempt.status()["exit_code"] == 127


def test_missing_working_directory(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["true"], cwd=str(tmp_path / "nope"))
    assert attempt.run() == 127
    assert "working directory" in attempt.status()["error"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda launch: launch.pop("command"), "command: missing"),
        (lambda launch: launch.update(command=[]), "command: expected a non-empty list"),
        (lambda launch: launch.update(trial_dir="relative"), "trial_dir: expected an absolute"),
        (lambda launch: launch.update(version=2), "version: expected 1"),
        (lambda launch: launch.update(kill_grace=-1), "kill_grace"),
        (lambda launch: launch.update(resume={"signal": "NOPE"}), "resume.signal"),
    ],
)
def test_bad_launch_json(tmp_path: Path, mutate: Callable[[dict], Any], expected: str) -> None:
    attempt = Attempt(tmp_path, ["true"])
    mutate(attempt.launch)
    attempt.launch_path.write_text(json.dumps(attempt.launch))
    assert attempt.run() == 2
    status = attempt.status()
    assert status["exit_code"] is None
    assert expected in status["error"]


def test_launch_json_that_is_not_json(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["true"])
    attempt.launch_path.write_text("{not json")
    assert attempt.run() == 2
    assert "not valid JSON" in attempt.status()["error"]


# -- signals -----------------------------------------------------------------------------------

STUBBORN_GROUP = """
trap '' TERM
sleep 300 & echo $! >> pids
sleep 300 & echo $! >> pids
echo $$ >> pids
wait
"""


def test_sigterm_kills_the_whole_group_after_the_grace(tmp_path: Path) -> None:
    attempt = Attempt(tmp_path, ["sh", "-c", STUBBORN_GROUP], kill_grace=1)
    attempt.start()
    pids_file = tmp_path / "pids"
    wait_until(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 3)
    pids = [int(p) for p in pids_file.read_text().split()]
    began = time.monotonic()
    attempt.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert attempt.wait() == 128 + 9
    assert 0.9 <= time.monotonic() - began < 10
    status = attempt.status()
    assert (status["exit_code"], status["signal"]) == (None, "KILL")
    assert all(gone(pid) for pid in pids)


def test_sigterm_reaches_stragglers_that_outlive_the_command(tmp_path: Path) -> None:
    """The leader dies on TERM at once; a child that ignores it is killed after the grace."""
    script = "(trap '' TERM; exec sleep 300) & echo $! > pids; exec sleep 300"
    attempt = Attempt(tmp_path, ["sh", "-c", script], kill_grace=1)
    attempt.start()
    pids_file = tmp_path / "pids"
    wait_until(lambda: pids_file.exists() and pids_file.read_text().strip() != "")
    straggler = int(pids_file.read_text())
    # the subshell must have set its trap and exec'd sleep before TERM arrives
    wait_until(lambda: Path(f"/proc/{straggler}/cmdline").read_bytes().startswith(b"sleep"))
    attempt.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert attempt.wait() == 128 + 15
    assert attempt.status()["signal"] == "TERM"
    assert gone(straggler)
    assert "outlived" in attempt.file("runner.log")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2])
def test_signals_are_forwarded_to_the_command(tmp_path: Path, signum: int) -> None:
    code = f"""
        import os, signal, sys, time
        signal.signal({int(signum)}, lambda s, f: sys.exit(40))
        # the resume signal (USR1) reaches only processes that announce a handler
        with open(os.environ["CLUSTERD_ATTEMPT_DIR"] + "/RESUME_HANDLER", "a") as fh:
            fh.write(f"{{os.getpid()}}\\n")
        print("ready", flush=True)
        time.sleep(60)
    """
    attempt = Attempt(tmp_path, python(code))
    attempt.start()
    wait_until(lambda: attempt.has("stdout", "ready\n"))
    attempt.proc.send_signal(signum)  # type: ignore[union-attr]
    assert attempt.wait() == 40


# -- time limits -------------------------------------------------------------------------------

CHECKPOINTING_TRIAL = """
    import os, sys, time
    from clusterd import trial
    deadline = time.monotonic() + 30
    step = 0
    while not trial.time_to_checkpoint():
        trial.report(step, loss=1.0 / (step + 1))
        step += 1
        time.sleep(0.02)
        if time.monotonic() > deadline:
            sys.exit("no resume signal")
    marker = os.path.join(os.environ["CLUSTERD_ATTEMPT_DIR"], "CHECKPOINT_REQUESTED")
    assert os.path.exists(marker)
    path = os.path.join(trial.checkpoint_dir(), "last.pt")
    open(path, "w").close()
    trial.checkpoint(path, step)
    trial.exit_for_resume()
"""


def test_resume_signal_and_marker_before_the_time_limit(tmp_path: Path) -> None:
    resume = {"exit_code": 3, "signal": "USR1", "signal_lead": 29}
    attempt = Attempt(tmp_path, python(CHECKPOINTING_TRIAL), time_limit=30, resume=resume)
    began = time.monotonic()
    assert attempt.run() == 3
    assert 0.9 <= time.monotonic() - began < 20
    status = attempt.status()
    assert (status["exit_code"], status["timed_out"]) == (3, False)
    assert (attempt.dir / "CHECKPOINT_REQUESTED").exists()
    assert isinstance(attempt.events()[-1], CheckpointEvent)


def test_resume_signal_reaches_a_plain_signal_handler(tmp_path: Path) -> None:
    code = """
        import os, signal, sys, time
        def on_usr2(signum, frame):
            open("checkpoint.pt", "w").close()
            sys.exit(3)
        signal.signal(signal.SIGUSR2, on_usr2)
        with open(os.environ["CLUSTERD_ATTEMPT_DIR"] + "/RESUME_HANDLER", "a") as fh:
            fh.write(f"{os.getpid()}\\n")  # announced: only then does the signal come
        time.sleep(60)
    """
    resume = {"exit_code": 3, "signal": "SIGUSR2", "signal_lead": 9}
    attempt = Attempt(tmp_path, python(code), time_limit=10, resume=resume)
    assert attempt.run() == 3
    assert (tmp_path / "checkpoint.pt").exists()


def test_resume_signal_none_leaves_the_marker_only(tmp_path: Path) -> None:
    """``[resume] signal = "none"``: no signal at the lead, the marker still appears (the
    runner refused such a launch.json as an unknown signal before)."""
    resume = {"exit_code": 3, "signal": "none", "signal_lead": 29}
    attempt = Attempt(tmp_path, python(CHECKPOINTING_TRIAL), time_limit=30, resume=resume)
    assert attempt.run() == 3
    assert (attempt.dir / "CHECKPOINT_REQUESTED").exists()
    assert "the sweep sends no resume signal" in attempt.file("runner.log")
    assert isinstance(attempt.events()[-1], CheckpointEvent)


def test_enforced_time_limit_terms_then_kills(tmp_path: Path) -> None:
    code = """
        import signal, time
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    resume = {"exit_code": 3, "signal": "USR1", "signal_lead": 1}
    attempt = Attempt(tmp_path, python(code), time_limit=2, kill_grace=1, resume=resume)
    began = time.monotonic()
    assert attempt.run() == 128 + 9
    assert 2.9 <= time.monotonic() - began < 15
    status = attempt.status()
    assert (status["exit_code"], status["signal"], status["timed_out"]) == (None, "KILL", True)
    log = attempt.file("runner.log")
    assert "time limit reached" in log and "sending KILL" in log


def test_enforced_time_limit_with_a_command_that_obeys_term(tmp_path: Path) -> None:
    attempt = Attempt(
        tmp_path,
        ["sh", "-c", "trap '' USR1; sleep 60"],
        time_limit=1.5,
        resume={"signal": "USR1", "signal_lead": 1},
    )
    assert attempt.run() == 128 + 15
    status = attempt.status()
    assert (status["signal"], status["timed_out"]) == ("TERM", True)


def test_time_limit_not_enforced_when_the_scheduler_does_it(tmp_path: Path) -> None:
    attempt = Attempt(
        tmp_path,
        ["sh", "-c", "trap '' USR1; sleep 1.5"],
        time_limit=1,
        enforce_time_limit=False,
        resume={"signal": "USR1", "signal_lead": 0.5},
    )
    assert attempt.run() == 0
    status = attempt.status()
    assert (status["exit_code"], status["timed_out"]) == (0, False)
    assert (attempt.dir / "CHECKPOINT_REQUESTED").exists()


# -- GPU sampling ------------------------------------------------------------------------------

FAKE_PYNVML = """
class _Util:
    gpu = 42

class _Mem:
    used = 3 << 20
    total = 80 << 20

def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 2
def nvmlDeviceGetHandleByIndex(i): return ("handle", i)
def nvmlDeviceGetUtilizationRates(h): return _Util()
def nvmlDeviceGetMemoryInfo(h): return _Mem()
"""


def test_gpu_samples_are_appended_when_pynvml_is_there(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML)
    events = tmp_path / "runs/7/attempt-1/events.jsonl"
    code = f"""
        import time
        deadline = time.monotonic() + 20
        while b'"gpu"' not in open({str(events)!r}, "rb").read() and time.monotonic() < deadline:
            time.sleep(0.01)
    """
    attempt = Attempt(tmp_path, python(code), gpu_interval=0.05)
    attempt.env["PYTHONPATH"] = f"{REPO}{os.pathsep}{fake}"
    attempt.env["CUDA_VISIBLE_DEVICES"] = "1"
    assert attempt.run() == 0
    samples = [e for e in attempt.events() if isinstance(e, GpuEvent)]
    assert samples
    assert samples[0].gpus == [
        {"index": 1, "util": 42, "mem_used": 3, "mem_total": 80}
        | {"power_w": None, "temp_c": None, "own_procs": None, "own_mem": None}
    ]


@pytest.mark.parametrize(
    "module",
    [
        "raise ImportError('no pynvml here')",
        "def nvmlInit():\n    raise RuntimeError('NVML Shared Library Not Found')",
    ],
)
def test_gpu_sampling_without_pynvml_or_gpu_is_silent(tmp_path: Path, module: str) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text(module)
    attempt = Attempt(tmp_path, ["sh", "-c", "sleep 0.3"], gpu_interval=0.05)
    attempt.env["PYTHONPATH"] = f"{REPO}{os.pathsep}{fake}"
    assert attempt.run() == 0
    assert attempt.events() == []
    assert attempt.file("stderr") == ""
    assert attempt.status()["exit_code"] == 0
    assert "GPU sampling off" in attempt.file("runner.log")
