"""The daemon and clusterctl as a user runs them: real processes, real socket."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_for

SWEEP = textwrap.dedent(
    """
    name = "grid"
    command = "python3 -c pass"
    max_concurrent = 1

    [metric]
    name = "loss"
    mode = "min"

    [params]
    lr = [0.1, 0.01]
    depth = [1, 2, 3]
    """
)

SLEEP_CMD = "\"python3 -c 'import time; time.sleep(30)'\""
SLEEPY = SWEEP.replace('"python3 -c pass"', SLEEP_CMD)


def write_sweep(tmp_path: Path, text: str = SWEEP, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_start_status_stop(stopped_daemon: Daemon) -> None:
    d = stopped_daemon
    d.start()
    pid = d.pid
    status = d.clusterd("status").stdout
    assert f"pid {pid}" in status
    assert "sqlite:///" in status and "sweeps    0" in status
    second = d.clusterd("start", check=False)
    assert second.returncode == 1
    assert f"already running (pid {pid}" in second.stderr
    assert oct((d.home / "clusterd.sock").stat().st_mode & 0o777) == "0o600"
    assert oct(d.home.stat().st_mode & 0o777) == "0o700"
    d.clusterd("stop")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the daemon to exit")
    assert not (d.home / "clusterd.sock").exists()
    assert not (d.home / "clusterd.pid").exists()
    gone = d.ctl("sweeps", check=False)
    assert gone.returncode == 2
    assert "clusterd start" in gone.stderr


def test_stale_pid_and_socket_after_kill_are_cleaned(stopped_daemon: Daemon) -> None:
    d = stopped_daemon
    d.start()
    pid = d.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the daemon to die")
    assert (d.home / "clusterd.sock").exists()  # left behind by the kill
    d.start()
    assert d.pid != pid
    assert d.ctl("sweeps").returncode == 0


def test_dry_run_persists_nothing(daemon: Daemon, tmp_path: Path) -> None:
    path = write_sweep(tmp_path)
    out = daemon.ctl("submit", str(path), "--dry-run").stdout
    assert "6 trial(s)" in out
    assert "lr=0.1 depth=1" in out
    assert daemon.ctl_json("sweeps") == []


def test_submit_list_show_and_refuse_duplicate(daemon: Daemon, tmp_path: Path) -> None:
    path = write_sweep(tmp_path, SLEEPY)
    out = daemon.ctl("submit", str(path)).stdout
    assert "grid: 6 trial(s) submitted" in out
    sweeps = daemon.ctl_json("sweeps")
    assert [s["name"] for s in sweeps] == ["grid"]
    assert sweeps[0]["trials"] == 6
    trials = daemon.trials("grid")
    assert [t["index"] for t in trials] == list(range(6))
    assert trials[5]["params"] == {"lr": 0.01, "depth": 3}
    show = daemon.ctl_json("show", "grid/5")
    assert show["params"] == {"lr": 0.01, "depth": 3}
    assert show["transitions"][0]["to"] == "pending"
    again = daemon.ctl("submit", str(path), check=False)
    assert again.returncode == 1
    assert "exists; use `clusterctl submit --extend`" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    daemon.ctl("cancel", "grid")


def test_extend_adds_only_new_trials(daemon: Daemon, tmp_path: Path) -> None:
    path = write_sweep(tmp_path, SLEEPY)
    daemon.ctl("submit", str(path))
    daemon.ctl("cancel", "grid")
    wider = SWEEP.replace("lr = [0.1, 0.01]", "lr = [0.1, 0.01, 0.001]")
    path.write_text(wider.replace('"python3 -c pass"', SLEEP_CMD))
    out = daemon.ctl("submit", str(path), "--extend").stdout
    assert "added 3 new trial(s); 6 already present" in out
    trials = daemon.trials("grid")
    assert len(trials) == 9
    assert {t["params"]["lr"] for t in trials[6:]} == {0.001}
    # live ones end "cancelled" once their driver reports them gone, even one that was
    # still being submitted when the cancel came
    wait_for(
        lambda: all(t["state"] == "cancelled" for t in daemon.trials("grid")[:6]),
        30,
        "the first six trials to be cancelled",
    )
    daemon.ctl("cancel", "grid")


def test_bad_sweep_file_is_one_clear_line_and_persists_nothing(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = write_sweep(tmp_path, SWEEP.replace("lr = [0.1, 0.01]", "lr = { a = 1 }"))
    proc = daemon.ctl("submit", str(path), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"clusterctl: {path}: params.lr: expected a list or a scalar, got table"
    ]
    assert daemon.ctl_json("sweeps") == []


def test_unknown_trial_and_sweep_are_user_errors(daemon: Daemon) -> None:
    proc = daemon.ctl("show", "nope/1", check=False)
    assert proc.returncode == 1
    assert "no sweep named 'nope'" in proc.stderr
    proc = daemon.ctl("show", "nope", check=False)
    assert proc.returncode == 1
    assert "expected SWEEP/INDEX" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_export_best_rm(daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "report.py"
    script.write_text(
        "from clusterd import trial\n"
        "p = trial.params()\n"
        "for s in range(3):\n"
        "    trial.report(s, loss=p['lr'] * p['depth'] + 1.0 / (s + 1))\n"
    )
    text = SWEEP.replace('"python3 -c pass"', f'["{sys.executable}", "report.py"]')
    text = text.replace("max_concurrent = 1", "max_concurrent = 3")
    path = write_sweep(tmp_path, text)
    daemon.ctl("submit", str(path))
    trials = daemon.wait_sweep_done("grid")
    assert {t["state"] for t in trials} == {"completed"}
    best = daemon.ctl_json("best", "grid", "-n", "2")
    assert [t["params"] for t in best["trials"]] == [
        {"lr": 0.01, "depth": 1},
        {"lr": 0.01, "depth": 2},
    ]
    assert best["trials"][0]["best"] == pytest.approx(0.01 + 1 / 3)
    out = tmp_path / "results.csv"
    daemon.ctl("export", "grid", "-o", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 6
    assert rows[0]["lr"] == "0.1" and rows[0]["state"] == "completed"
    assert "stopped_at_step" in rows[0]
    data = json.loads(daemon.ctl("export", "grid", "--format", "json").stdout)
    assert data[5]["loss_best"] == pytest.approx(0.03 + 1 / 3)
    daemon.ctl("rm", "grid", "--trash")
    assert daemon.ctl_json("sweeps") == []
    assert not (tmp_path / "runs" / "grid").exists()
    assert list((daemon.home / "trash").iterdir())


def test_foreign_uid_is_refused(daemon: Daemon) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to switch to another uid")
    sock_path = str(daemon.home / "clusterd.sock")
    # let 'nobody' reach the socket file, so that only the uid check can refuse it
    os.chmod(daemon.home.parent, 0o711)
    os.chmod(daemon.home, 0o711)
    os.chmod(sock_path, 0o666)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody and try to talk to the daemon
        os.close(reader)
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock_path)
            s.sendall(b'{"id": 1, "op": "sweeps"}\n')
            data = s.makefile("rb").readline()
            os.write(writer, data)
        except BaseException as exc:  # shown by the parent's assertion
            os.write(writer, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    raw_reply = os.read(reader, 65536)
    assert raw_reply.startswith(b"{"), raw_reply
    reply = json.loads(raw_reply)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "forbidden"


def test_db_upgrade_command(stopped_daemon: Daemon) -> None:
    out = stopped_daemon.clusterd("db", "upgrade").stdout
    assert "upgraded from empty to" in out
    again = stopped_daemon.clusterd("db", "upgrade").stdout
    assert "up to date" in again


def test_cli_imports_no_heavy_modules() -> None:
    code = (
        "import sys, clusterd.cli, clusterd.cli.sweeps, clusterd.cli.trials, clusterd.cli.system; "
        "bad = [m for m in ('sqlalchemy', 'textual', 'pynvml', 'alembic') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
