"""Trials run in the environment the sweep was submitted from (``[env] inherit``), with a
real daemon started outside that environment: the venv's ``python`` is the one that runs,
``[env] pass`` carries a named variable, and nothing else of the shell (no secret) is
carried -- not to the trial, not into the database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import venv
from pathlib import Path
from typing import Any

import pytest

from clusterd.daemon import environment
from clusterd.node.launch import launch_from
from clusterd.runner.command import child_env
from clusterd.spec.model import EnvConfig
from tests.conftest import Daemon

#: a PATH without `python` (Debian's /usr/bin has only python3): the daemon of the issue
BARE_PATH = "/usr/bin:/bin"
SECRET = "hunter2-do-not-carry"

PROBE = """
import json, os, sys
keys = ("VIRTUAL_ENV", "WANDB_PROJECT", "MY_API_TOKEN", "CUDA_HOME", "CUDA_VISIBLE_DEVICES")
out = {"prefix": sys.prefix, "executable": sys.executable, "PATH": os.environ.get("PATH")}
out.update({k: os.environ.get(k) for k in keys})
with open(os.path.join(os.environ["CLUSTERD_TRIAL_DIR"], "probe.json"), "w") as fh:
    json.dump(out, fh)
"""


# -- what is captured, and how the runner applies it (no daemon) ------------------


def test_capture_keeps_the_interpreter_variables_and_drops_everything_else() -> None:
    shell = {
        "PATH": "/venv/bin:/usr/bin",
        "VIRTUAL_ENV": "/venv",
        "CUDA_HOME": "/opt/cuda",
        "CUDA_VISIBLE_DEVICES": "3",  # the driver assigns GPUs
        "WANDB_PROJECT": "digits",
        "MY_API_TOKEN": SECRET,
        "HOME": "/home/u",
    }
    record = environment.capture(shell, "/venv/bin/python", EnvConfig(pass_vars=("WANDB_PROJECT",)))
    assert record["vars"] == {
        "CUDA_HOME": "/opt/cuda",
        "PATH": "/venv/bin:/usr/bin",
        "VIRTUAL_ENV": "/venv",
        "WANDB_PROJECT": "digits",
    }
    assert set(record["unset"]) == {
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "PYTHONPATH",
        "LD_LIBRARY_PATH",
    }
    assert SECRET not in json.dumps(record)
    daemon_mode = environment.capture(
        shell, None, EnvConfig(inherit="daemon", pass_vars=("WANDB_PROJECT", "NOPE"))
    )
    assert daemon_mode["vars"] == {"WANDB_PROJECT": "digits"} and daemon_mode["unset"] == []
    assert daemon_mode["missing"] == ["NOPE"]
    named = environment.capture(shell, None, EnvConfig(pass_vars=("CUDA_VISIBLE_DEVICES",)))
    assert named["vars"]["CUDA_VISIBLE_DEVICES"] == "3"  # only when named


def test_runner_environment_is_runners_minus_unset_plus_submit_then_vars() -> None:
    launch = launch_from(
        {
            "version": 1,
            "sweep": "s",
            "trial_index": 0,
            "trial_id": "s/0",
            "attempt": 1,
            "trial_dir": "/t/0",
            "attempt_dir": "/t/0/attempt-1",
            "command": ["python", "x.py"],
            "env": {"OMP_NUM_THREADS": "4", "VIRTUAL_ENV": "/from-vars"},
            "submit_env": {"PATH": "/venv/bin:/usr/bin", "VIRTUAL_ENV": "/venv"},
            "submit_unset": ["PYTHONPATH"],
        }
    )
    base = {
        "PATH": "/usr/bin",
        "PYTHONPATH": "/daemon/src",
        "SLURM_JOB_ID": "7",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    env = child_env(launch, base=base)
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert "PYTHONPATH" not in env
    assert env["VIRTUAL_ENV"] == "/from-vars"  # [env] vars win over the submit's
    assert env["SLURM_JOB_ID"] == "7" and env["CUDA_VISIBLE_DEVICES"] == "0"  # the driver's stay
    assert env["CLUSTERD_TRIAL_ID"] == "s/0"


def test_show_view_says_where_the_environment_came_from() -> None:
    record = environment.capture({"PATH": "/v/bin"}, "/v/bin/python", EnvConfig())
    view = environment.show_view({environment.KEY: record})
    assert view["inherit"] == "submit" and view["python"] == "/v/bin/python"
    assert view["vars"] == {"PATH": "/v/bin"} and "from the submit" in view["note"]
    assert "daemon's" in environment.show_view({"python": "/usr/bin/python3"})["note"]


# -- with a real daemon ---------------------------------------------------------


@pytest.fixture(scope="module")
def bare_daemon() -> Any:
    """A daemon started where `python` is not on PATH and no venv is active (one for the
    module: each test submits its own sweep)."""
    root = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))  # a socket path fits
    d = Daemon(root / "home")
    d.env["PATH"] = BARE_PATH
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "WANDB_PROJECT", "MY_API_TOKEN"):
        d.env.pop(name, None)
    d.start()
    yield d
    d.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def made_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("env") / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(path)
    return path


def submit_from(
    daemon: Daemon, shell: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``clusterctl`` run from a shell with environment ``shell`` (not the daemon's)."""
    env = {**shell, "CLUSTERD_HOME": str(daemon.home), "PYTHONPATH": daemon.env["PYTHONPATH"]}
    return subprocess.run(
        [sys.executable, "-m", "clusterd.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def write_sweep(tmp_path: Path, name: str, command: str, env: str) -> Path:
    (tmp_path / "probe.py").write_text(PROBE)
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = ["{command}", "probe.py"]\n'
        f'output_dir = "{tmp_path / name}"\n'
        + textwrap.dedent(
            f"""
            [params]
            seed = [1, 2]
            [env]
            {env}
            """
        )
    )
    return path


def probes(daemon: Daemon, tmp_path: Path, name: str) -> list[dict[str, Any]]:
    trials = daemon.wait_sweep_done(name, timeout=60)
    assert {t["state"] for t in trials} == {"completed"}, [
        daemon.ctl("logs", t["name"], "--stderr", check=False).stdout for t in trials
    ]
    return [
        json.loads((tmp_path / name / str(t["index"]) / "probe.json").read_text()) for t in trials
    ]


def stored_repro(daemon: Daemon, name: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{daemon.home / 'clusterd.db'}")
    with engine.connect() as conn:
        raw = conn.execute(text("select repro from sweeps where name = :n"), {"n": name}).scalar()
    engine.dispose()
    record = json.loads(raw) if isinstance(raw, str) else raw
    assert isinstance(record, dict)
    return record


def test_trials_run_with_the_venv_they_were_submitted_from(
    bare_daemon: Daemon, made_venv: Path, tmp_path: Path
) -> None:
    shell = {
        "PATH": f"{made_venv / 'bin'}:{BARE_PATH}",
        "VIRTUAL_ENV": str(made_venv),
        "WANDB_PROJECT": "digits",
        "MY_API_TOKEN": SECRET,
        "CUDA_HOME": "/opt/cuda-test",
    }
    path = write_sweep(tmp_path, "venv", "python", 'pass = ["WANDB_PROJECT"]')
    out = submit_from(bare_daemon, shell, "submit", str(path))
    assert out.returncode == 0, out.stderr
    for probe in probes(bare_daemon, tmp_path, "venv"):
        assert Path(probe["prefix"]) == made_venv  # `python` was the venv's
        assert probe["VIRTUAL_ENV"] == str(made_venv)
        assert probe["WANDB_PROJECT"] == "digits"  # named by [env] pass
        assert probe["CUDA_HOME"] == "/opt/cuda-test"
        assert probe["MY_API_TOKEN"] is None  # never carried unasked
    repro = stored_repro(bare_daemon, "venv")
    view = environment.show_view(repro)
    assert view["inherit"] == "submit" and view["python"] == sys.executable
    assert view["vars"]["VIRTUAL_ENV"] == str(made_venv)
    assert view["program"] == "python" and view["resolved"] == str(made_venv / "bin" / "python")
    shown = bare_daemon.ctl_json("show", "venv/0")["environment"]  # what `show` prints
    assert shown == view
    db = (bare_daemon.home / "clusterd.db").read_bytes()
    assert SECRET.encode() not in db


def test_inherit_daemon_keeps_the_daemons_environment(
    bare_daemon: Daemon, made_venv: Path, tmp_path: Path
) -> None:
    shell = {
        "PATH": f"{made_venv / 'bin'}:{BARE_PATH}",
        "VIRTUAL_ENV": str(made_venv),
        "WANDB_PROJECT": "digits",
        "MY_API_TOKEN": SECRET,
    }
    path = write_sweep(tmp_path, "dmn", "python3", 'inherit = "daemon"\npass = ["WANDB_PROJECT"]')
    assert submit_from(bare_daemon, shell, "submit", str(path)).returncode == 0
    for probe in probes(bare_daemon, tmp_path, "dmn"):
        assert Path(probe["prefix"]) != made_venv  # the daemon's PATH found /usr/bin/python3
        assert probe["PATH"] == BARE_PATH
        assert probe["VIRTUAL_ENV"] is None
        assert probe["WANDB_PROJECT"] == "digits"  # pass still carries what it names
        assert probe["MY_API_TOKEN"] is None


def test_without_the_venv_python_is_not_found_and_the_error_says_so(
    bare_daemon: Daemon, tmp_path: Path
) -> None:
    """The issue's failure, kept visible: a submit from a shell without `python` fails
    each trial with the reason (the fix above is what changes it)."""
    path = write_sweep(tmp_path, "none", "python", "")
    dry = submit_from(bare_daemon, {"PATH": BARE_PATH}, "submit", str(path), "--dry-run")
    assert "python is not on the PATH the trials get here" in dry.stdout, dry
    assert submit_from(bare_daemon, {"PATH": BARE_PATH}, "submit", str(path)).returncode == 0
    trials = bare_daemon.wait_sweep_done("none", timeout=60)
    assert {t["state"] for t in trials} == {"failed"}
    assert {t["reason"] for t in trials} == {"command not found: python"}
