"""Sweeps run to the end on the local driver: resume, retry, cancel, ingestion."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO, Daemon, wait_for

PY = sys.executable


def sweep_file(tmp_path: Path, body: str, name: str = "s") -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f'name = "{name}"\n' + textwrap.dedent(body))
    return path


def metric_rows(daemon: Daemon, trial: str) -> dict[str, dict]:
    return daemon.ctl_json("show", trial)["metrics"]


def test_quickstart_completes_with_one_resume_each(daemon: Daemon, tmp_path: Path) -> None:
    example = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", example)
    daemon.ctl("submit", str(example / "sweep.toml"))
    trials = daemon.wait_sweep_done("quickstart", timeout=180)
    assert len(trials) == 6
    assert {t["state"] for t in trials} == {"completed"}, trials
    for t in trials:
        assert t["attempts"] == 2 and t["resumes"] == 1
        assert t["last_step"] == 19
        show = daemon.ctl_json("show", t["name"])
        outcomes = [a["outcome"] for a in show["attempt_list"]]
        assert outcomes == ["resume", "completed"]
        assert show["checkpoints"][0]["step"] == 10
    export = json.loads(daemon.ctl("export", "quickstart", "--format", "json").stdout)
    assert all(row["last_step"] == 19 for row in export)
    # every reported step is in the DB exactly once: 10 on attempt 1 + 10 on attempt 2
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{daemon.home / 'clusterd.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text("select trial_id, step, count(*) from metrics group by trial_id, step")
        ).all()
    engine.dispose()
    assert len(rows) == 6 * 20
    assert {n for _, _, n in rows} == {1}


def test_retry_then_success_and_always_failing(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "flaky.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            from clusterd import trial
            mode = trial.params()["mode"]
            if mode == "always" or (mode == "once" and trial.attempt() == 1):
                print("boom", file=sys.stderr)
                sys.exit(7)
            """
        )
    )
    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "flaky.py"]
        max_concurrent = 2
        [params]
        mode = ["once", "always"]
        [retry]
        max_failures = 2
        """,
    )
    daemon.ctl("submit", str(path))
    trials = daemon.wait_sweep_done("s")
    once, always = trials
    assert once["state"] == "completed" and once["attempts"] == 2 and once["failures"] == 1
    assert always["state"] == "failed" and always["attempts"] == 3
    assert always["reason"] == "exit code 7"
    show = daemon.ctl_json("show", "s/1")
    assert [a["exit_code"] for a in show["attempt_list"]] == [7, 7, 7]
    stderr = daemon.ctl("logs", "s/1", "--stderr").stdout
    assert stderr.strip() == "boom"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cancel_mid_run_leaves_no_process(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "spawn.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, subprocess, time
            from clusterd import trial
            child = subprocess.Popen(["sleep", "300"])
            with open(os.path.join(os.environ["CLUSTERD_ATTEMPT_DIR"], "pids"), "w") as fh:
                fh.write(f"{os.getpid()} {child.pid}")
            trial.report(0, loss=1.0)
            time.sleep(300)
            """
        )
    )
    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "spawn.py"]
        max_concurrent = 2
        [params]
        x = [1, 2, 3]
        """,
    )
    daemon.ctl("submit", str(path))
    pid_files = [tmp_path / "runs" / "s" / str(i) / "attempt-1" / "pids" for i in (0, 1)]
    wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), 60, "trials to start")
    pids = [int(x) for p in pid_files for x in p.read_text().split()]
    assert all(_alive(p) for p in pids)
    wait_for(lambda: daemon.trials("s")[0]["last_step"] == 0, 30, "the metric to arrive")
    out = daemon.ctl("cancel", "s").stdout
    assert "1 pending trial(s) cancelled, 2 running trial(s) being stopped" in out
    wait_for(lambda: not any(_alive(p) for p in pids), 30, "every trial process to exit")
    trials = daemon.wait_sweep_done("s")
    assert [t["state"] for t in trials] == ["cancelled"] * 3
    show = daemon.ctl_json("show", "s/0")
    assert show["attempt_list"][0]["outcome"] == "cancelled"


def test_time_limit_signal_reaches_the_trial(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "long.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, time
            from clusterd import trial
            ckpt = trial.last_checkpoint()
            if ckpt is not None:
                trial.report(100, loss=0.0)
                raise SystemExit(0)
            for step in range(10_000):
                trial.report(step, loss=1.0 / (step + 1))
                if trial.time_to_checkpoint():
                    path = os.path.join(trial.checkpoint_dir(), "c.json")
                    with open(path, "w") as fh:
                        json.dump({"step": step}, fh)
                    trial.checkpoint(path, step)
                    trial.exit_for_resume()
                time.sleep(0.05)
            """
        )
    )
    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "long.py"]
        [params]
        x = 1
        [resources]
        time = "00:00:03"
        [resume]
        signal_lead = 2
        """,
    )
    daemon.ctl("submit", str(path))
    (trial,) = daemon.wait_sweep_done("s", timeout=60)
    assert trial["state"] == "completed"
    show = daemon.ctl_json("show", "s/0")
    assert [a["outcome"] for a in show["attempt_list"]] == ["resume", "completed"]
    assert show["checkpoints"] and show["checkpoints"][0]["attempt"] == 1
    assert (Path(show["attempt_list"][0]["dir"]) / "CHECKPOINT_REQUESTED").exists()


def test_garbage_events_lines_are_skipped_not_lost(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "garbage.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            path = os.environ["CLUSTERD_EVENTS"]
            good = '{"type": "metric", "step": %d, "values": {"loss": %d}}\\n'
            with open(path, "ab") as fh:
                fh.write((good % (0, 10)).encode())
                fh.write(b"this is not json\\n")
                fh.write((good % (1, 11)).encode())
                fh.write(b'\\xff\\xfe{"type": "metric"}\\n')
                fh.write(b'{"type": "metric", "step": 2, "values": {"loss": NaN}}\\n')
                fh.write((good % (3, 13)).encode())
                fh.write(b'{"type": "metric", "step": 4, "val')
            """
        )
    )
    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "garbage.py"]
        [metric]
        name = "loss"
        [params]
        x = 1
        """,
    )
    daemon.ctl("submit", str(path))
    (trial,) = daemon.wait_sweep_done("s")
    assert trial["state"] == "completed"
    assert trial["last_step"] == 3 and trial["best_value"] == 10
    show = daemon.ctl_json("show", "s/0")
    assert len(show["errors"]) == 4, show["errors"]
    assert any("truncated" in e["message"] for e in show["errors"])


def test_shell_example_takes_part_through_events(daemon: Daemon, tmp_path: Path) -> None:
    example = tmp_path / "shell"
    shutil.copytree(REPO / "examples" / "shell", example)
    daemon.ctl("submit", str(example / "sweep.toml"))
    trials = daemon.wait_sweep_done("shell")
    assert [t["state"] for t in trials] == ["completed"] * 3
    assert [t["best_value"] for t in trials] == [0.2, 0.4, 0.6]
    assert os.path.exists(example / "runs" / "shell" / "0" / "params.json")


def test_relaunch_failed_runs_them_again(daemon: Daemon, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    script = tmp_path / "fix.py"
    script.write_text(f"import os, sys\nsys.exit(0 if os.path.exists({str(flag)!r}) else 1)\n")
    path = sweep_file(tmp_path, f'command = ["{PY}", "fix.py"]\n[params]\nx = [1, 2]\n')
    daemon.ctl("submit", str(path))
    assert [t["state"] for t in daemon.wait_sweep_done("s")] == ["failed", "failed"]
    flag.touch()  # the researcher fixes the bug...
    assert "2 trial(s) relaunched" in daemon.ctl("relaunch", "s", "--failed").stdout
    trials = daemon.wait_sweep_done("s")
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 2)] * 2


def test_follow_shows_progress_until_done(daemon: Daemon, tmp_path: Path) -> None:
    path = sweep_file(tmp_path, f'command = ["{PY}", "-c", "pass"]\n[params]\nx = [1, 2, 3]\n')
    out = daemon.ctl("submit", str(path), "--follow", timeout=120).stdout
    assert "3/3" in out and "completed 3" in out


def test_logs_follow_streams_until_the_trial_ends(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "talk.py"
    script.write_text(
        "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"
    )
    path = sweep_file(tmp_path, f'command = ["{PY}", "talk.py"]\n[params]\nx = 1\n')
    daemon.ctl("submit", str(path))
    wait_for(lambda: daemon.trials("s")[0]["attempts"] == 1, 30, "the trial to start")
    out = daemon.ctl("logs", "s/0", "-f", timeout=60).stdout
    assert out.splitlines() == [f"line {i}" for i in range(5)]


def test_gpu_sweep_refused_where_no_gpu_is_visible(daemon: Daemon, tmp_path: Path) -> None:
    daemon_env_gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if daemon_env_gpus or shutil.which("nvidia-smi"):
        import pytest

        pytest.skip("this machine has GPUs")
    path = sweep_file(
        tmp_path, f'command = ["{PY}", "-c", "pass"]\n[params]\nx = 1\n[resources]\ngpus = 1\n'
    )
    proc = daemon.ctl("submit", str(path), check=False)
    assert proc.returncode == 1
    assert "GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert daemon.ctl_json("sweeps") == []


def test_code_snapshot_runs_trials_from_a_clone(daemon: Daemon, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "train.py").write_text("from clusterd import trial\ntrial.report(0, v=1.0)\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (repo / "train.py").write_text("from clusterd import trial\ntrial.report(0, v=2.0)\n")  # dirty
    (repo / "sweep.toml").write_text(
        f'name = "snap"\ncommand = ["{PY}", "train.py"]\n[metric]\nname = "v"\n'
        '[params]\nx = 1\n[code]\nsnapshot = "git"\n'
    )
    daemon.ctl("submit", str(repo / "sweep.toml"))
    (repo / "train.py").write_text("raise SystemExit(1)\n")  # edited while queued: no effect
    (trial,) = daemon.wait_sweep_done("snap")
    assert trial["state"] == "completed" and trial["best_value"] == 2.0
    show = daemon.ctl_json("show", "snap/0")
    assert show["code"]["git_dirty"] is True and len(show["code"]["git"]) == 40
    (clone,) = (repo / "runs" / "snap" / ".clusterd").glob("code-*")  # the sweep's own dir
    assert (clone / "train.py").exists()
    assert (repo / "runs" / "snap" / "repro" / "git.diff").read_text()
    freeze = wait_for(
        lambda: daemon.ctl_json("show", "snap/0")["code"].get("pip_freeze"),
        60,
        "pip freeze to be recorded",
    )
    assert "clusterd" in Path(freeze).read_text()


def test_a_host_where_trials_keep_failing_is_excluded_and_reported(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Killed by SIGKILL (as by the OOM killer or a node's own trouble) counts against the
    host; a script's exit code does not (tests/daemon/test_host_exclusion.py)."""
    import socket

    path = sweep_file(
        tmp_path,
        f"""
        command = ["{PY}", "-c", "import os; os.kill(os.getpid(), 9)"]
        max_concurrent = 1
        [params]
        x = [1, 2, 3]
        [retry]
        exclude_host_after = 2
        """,
    )
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("s")
    (sweep,) = daemon.ctl_json("sweeps")
    host = socket.gethostname()
    assert sweep["excluded_hosts"] == {host: 3}
    assert f"note: s avoids host {host} (3 failed attempts there)" in daemon.ctl("sweeps").stdout
    assert f"sweep s: excluding host {host} after 2 failed attempts there" in daemon.log()
