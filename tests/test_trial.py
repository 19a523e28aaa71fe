"""The trial API, mostly in subprocesses: it reads its environment once, at import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clusterd import trial
from clusterd.node.events import CheckpointEvent, MetricEvent, parse_chunk

REPO = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------


def attempt_env(tmp_path: Path, number: int = 1, params: dict | None = None) -> dict[str, str]:
    """The environment the runner would give attempt ``number`` of one trial."""
    trial_dir = tmp_path / "runs" / "3"
    attempt_dir = trial_dir / f"attempt-{number}"
    attempt_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "params.json").write_text(json.dumps(params or {"lr": 0.1}))
    env = clean_env()
    env.update(
        CLUSTERD_SWEEP="s",
        CLUSTERD_TRIAL_ID="s/3",
        CLUSTERD_TRIAL_INDEX="3",
        CLUSTERD_ATTEMPT=str(number),
        CLUSTERD_TRIAL_DIR=str(trial_dir),
        CLUSTERD_ATTEMPT_DIR=str(attempt_dir),
        CLUSTERD_PARAMS=str(trial_dir / "params.json"),
        CLUSTERD_EVENTS=str(attempt_dir / "events.jsonl"),
        CLUSTERD_RESUME_EXIT_CODE="3",
        CLUSTERD_RESUME_SIGNAL="USR1",
    )
    return env


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_py(code: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_py(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def events_of(env: dict[str, str]) -> list:
    data = Path(env["CLUSTERD_EVENTS"]).read_bytes()
    result = parse_chunk(data, 0)
    assert result.errors == [] and result.consumed == len(data)
    return result.events


# -- report ------------------------------------------------------------------------------------


def test_report_writes_one_metric_line_per_call(tmp_path: Path) -> None:
    env = attempt_env(tmp_path)
    done = run_py(
        """
        from clusterd import trial
        trial.report(0, val_loss=0.25, acc=1)
        trial.report(1, **{"val/loss": 1e-05, "λ": -0.0})
        trial.report(2, step=3.5)
        trial.report(3)
        """,
        env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = Path(env["CLUSTERD_EVENTS"]).read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert first["type"] == "metric" and first["step"] == 0
    assert first["values"] == {"val_loss": 0.25, "acc": 1}
    assert abs(first["t"] - time.time()) < 60
    assert [e.step for e in events_of(env)] == [0, 1, 2, 3]
    assert events_of(env)[1].values == {"val/loss": 1e-05, "λ": -0.0}
    assert events_of(env)[2].values == {"step": 3.5}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-float("inf"), "-inf"),
        ("0.5", "'0.5'"),
        (True, "True"),
        (None, "None"),
        (10**400, "1000"),
        ([1.0], "[1.0]"),
    ],
)
def test_report_rejects_what_is_not_a_finite_number(value: object, shown: str) -> None:
    with pytest.raises(ValueError, match="metric 'loss'") as info:
        trial.report(1, loss=value)  # type: ignore[arg-type]
    assert shown in str(info.value)


@pytest.mark.parametrize("step", [-1, 1.0, True, "2", None])
def test_report_rejects_bad_steps(step: object) -> None:
    with pytest.raises(ValueError, match="step"):
        trial.report(step, loss=1.0)  # type: ignore[arg-type]


def test_report_accepts_numpy_like_scalars() -> None:
    class Scalar:  # what numpy.float32 / a 0-d torch tensor look like to us
        def __float__(self) -> float:
            return 0.5

    class Index:
        def __index__(self) -> int:
            return 4

    trial.report(Index(), loss=Scalar())  # type: ignore[arg-type]


# -- params, identity ----------------------------------------------------------------------------


def test_params_identity_and_copy(tmp_path: Path) -> None:
    env = attempt_env(tmp_path, number=2, params={"lr": 0.01, "layers": [64, 64]})
    done = run_py(
        """
        from clusterd import trial
        p = trial.params()
        p["lr"] = 99
        print(trial.params(), trial.trial_id(), trial.attempt())
        """,
        env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'lr': 0.01, 'layers': [64, 64]} s/3 2"


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_survives_into_the_next_attempt(tmp_path: Path) -> None:
    first = attempt_env(tmp_path, number=1)
    done = run_py(
        """
        import os
        from clusterd import trial
        assert trial.last_checkpoint() is None
        d = trial.checkpoint_dir()
        assert d == os.path.join(os.environ["CLUSTERD_TRIAL_DIR"], "checkpoints"), d
        os.chdir(d)
        open("step5.pt", "w").close()
        trial.checkpoint("step5.pt", 5)
        print(trial.last_checkpoint())
        """,
        first,
    )
    assert done.returncode == 0, done.stderr
    ckpt_path = str(Path(first["CLUSTERD_TRIAL_DIR"]) / "checkpoints" / "step5.pt")
    (event,) = events_of(first)
    assert isinstance(event, CheckpointEvent)
    assert (event.step, event.path) == (5, ckpt_path)
    latest = json.loads((Path(first["CLUSTERD_TRIAL_DIR"]) / "checkpoints/LATEST.json").read_text())
    assert latest["path"] == ckpt_path and latest["step"] == 5 and latest["attempt"] == 1

    second = attempt_env(tmp_path, number=2)
    done = run_py(
        """
        from clusterd import trial
        c = trial.last_checkpoint()
        print(c.path, c.step, c.attempt)
        """,
        second,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [ckpt_path, "5", "1"]


# -- stopping and resuming -----------------------------------------------------------------------

WAIT_FOR = """
import sys, time
from clusterd import trial
print("ready", flush=True)
deadline = time.monotonic() + 20
while not trial.{fn}():
    if time.monotonic() > deadline:
        sys.exit("timed out")
    time.sleep(0.001)
print("yes", flush=True)
"""


def test_should_stop_sees_the_stop_marker(tmp_path: Path) -> None:
    env = attempt_env(tmp_path)
    proc = start_py(WAIT_FOR.format(fn="should_stop"), env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    (Path(env["CLUSTERD_ATTEMPT_DIR"]) / "STOP").touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "yes\n"


@pytest.mark.parametrize("name", ["USR1", "SIGUSR2"])
def test_time_to_checkpoint_on_the_resume_signal(tmp_path: Path, name: str) -> None:
    env = attempt_env(tmp_path)
    env["CLUSTERD_RESUME_SIGNAL"] = name
    proc = start_py(WAIT_FOR.format(fn="time_to_checkpoint"), env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.Signals["SIG" + name.removeprefix("SIG")])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "yes\n"


def test_time_to_checkpoint_on_the_marker_even_without_the_handler(tmp_path: Path) -> None:
    """Imported from a thread, the module cannot catch the signal: the marker still works."""
    env = attempt_env(tmp_path)
    code = """
        import threading
        t = threading.Thread(target=lambda: __import__("clusterd.trial"))
        t.start(); t.join()
        from clusterd import trial
        print(trial.time_to_checkpoint())
        open(trial._MARKER_PATH, "w").close()
        """ + WAIT_FOR.format(fn="time_to_checkpoint").replace("\n", "\n        ")
    done = run_py(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "ready", "yes"]


def test_handler_set_before_import_is_chained(tmp_path: Path) -> None:
    env = attempt_env(tmp_path)
    done = run_py(
        """
        import os, signal
        seen = []
        signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
        from clusterd import trial
        os.kill(os.getpid(), signal.SIGUSR1)
        print(trial.time_to_checkpoint(), seen == [signal.SIGUSR1])
        """,
        env,
    )
    assert done.stdout.split() == ["True", "True"], done.stderr


def test_exit_for_resume_uses_the_resume_exit_code(tmp_path: Path) -> None:
    env = attempt_env(tmp_path)
    env["CLUSTERD_RESUME_EXIT_CODE"] = "7"
    done = run_py("from clusterd import trial; print('bye'); trial.exit_for_resume()", env)
    assert done.returncode == 7
    assert done.stdout == "bye\n"


# -- @trial.main ---------------------------------------------------------------------------------


def test_main_reports_the_result_at_the_next_step(tmp_path: Path) -> None:
    env = attempt_env(tmp_path, params={"lr": 0.5})
    done = run_py(
        """
        from clusterd import trial

        @trial.main
        def train(params):
            trial.report(0, loss=2.0)
            trial.report(1, loss=1.0)
            return {"loss": params["lr"], "name": "x", "acc": 1}

        print(train.__name__, train())
        """,
        env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "train {'loss': 0.5, 'name': 'x', 'acc': 1}"
    assert "not reporting metric 'name'" in done.stderr
    assert events_of(env)[-1] == MetricEvent(2, {"loss": 0.5, "acc": 1.0}, events_of(env)[-1].t)


def test_main_without_earlier_reports_uses_step_zero(tmp_path: Path) -> None:
    env = attempt_env(tmp_path)
    done = run_py(
        "from clusterd import trial\ntrial.main(lambda p: {'score': 3})()",
        env,
    )
    assert done.returncode == 0, done.stderr
    (event,) = events_of(env)
    assert (event.step, event.values) == (0, {"score": 3.0})


# -- outside clusterd --------------------------------------------------------------------------


def test_local_mode_is_a_quiet_no_op(tmp_path: Path) -> None:
    done = run_py(
        """
        import os
        from clusterd import trial
        os.chdir(os.environ["WORK"])
        trial.report(0, loss=1.0)
        trial.report(1, loss=0.5)
        trial.checkpoint("x.pt", 1)
        print(trial.params(), trial.last_checkpoint(), trial.should_stop(),
              trial.time_to_checkpoint(), trial.trial_id(), trial.attempt())
        try:
            trial.report(2, loss=float("nan"))
        except ValueError as exc:
            print("rejected")
        """,
        {**clean_env(), "WORK": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{} None False False None 1", "rejected"]
    assert done.stderr.count("not running under clusterd") == 1
    assert done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_local_mode_still_reads_params_when_given(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"lr": 3}')
    done = run_py(
        "from clusterd import trial; print(trial.params())",
        {**clean_env(), "CLUSTERD_PARAMS": str(tmp_path / "p.json")},
    )
    assert done.stdout.strip() == "{'lr': 3}"


# -- cold path ----------------------------------------------------------------------------------


def test_import_loads_only_cheap_stdlib_modules(tmp_path: Path) -> None:
    """Principle 3: no third-party module, and none of the costly stdlib ones either."""
    done = run_py(
        """
        import sys
        before = set(sys.modules)
        from clusterd import trial
        print(" ".join(sorted(set(sys.modules) - before)))
        """,
        attempt_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    new = set(done.stdout.split())
    assert {"clusterd", "clusterd.trial"} <= new
    outside = {m for m in new if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == {"clusterd", "clusterd.trial"}
    costly = {"json", "re", "enum", "signal", "pathlib", "typing", "dataclasses", "threading"}
    assert not new & costly
