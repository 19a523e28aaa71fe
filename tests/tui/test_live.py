"""The TUI against a real daemon process and real trials on the local driver, by keystrokes."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from clusterd.tui.app import ClusterApp
from clusterd.tui.client import SocketBackend
from clusterd.tui.screens.detail import DetailScreen
from clusterd.tui.screens.dialogs import ConfirmScreen
from clusterd.tui.screens.sweeps import SweepsScreen
from clusterd.tui.screens.trials import TrialsScreen
from tests.conftest import Daemon, wait_for
from tests.tui.conftest import loaded, run_async, settle

SLEEPER = 'import time; print("sleeping", flush=True); time.sleep(60)'


def submit(daemon: Daemon, tmp_path: Path, name: str, command: list[str], body: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = {json.dumps(command)}\ndriver = "local"\n'
        + textwrap.dedent(body)
    )
    daemon.ctl("submit", str(path))


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone: it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def session_alive(sid: int) -> bool:
    """Any live process in session ``sid`` (the runner leads one; the trial runs in it)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                return True
    return False


def app_for(daemon: Daemon, **kwargs: Any) -> ClusterApp:
    return ClusterApp(SocketBackend(daemon.home / "clusterd.sock"), retry_max=0.3, **kwargs)


@run_async
async def test_navigate_filter_cancel(daemon: Daemon, tmp_path: Path) -> None:
    """sweeps -> trials -> filter running -> detail -> back -> cancel a trial, then the sweep."""
    submit(
        daemon,
        tmp_path,
        "tui",
        [sys.executable, "-c", SLEEPER],
        "max_concurrent = 3\n[params]\na = [1, 2, 3]\n",
    )
    wait_for(
        lambda: sum(t["state"] == "running" for t in daemon.trials("tui")) >= 2,
        what="two running trials",
    )
    app = app_for(daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, loaded(app, SweepsScreen), what="the sweeps list")
        assert [s.name for s in app.screen.sweeps] == ["tui"]

        await pilot.press("enter")
        await settle(pilot, loaded(app, TrialsScreen), what="the trials table")
        trials = app.screen
        assert isinstance(trials, TrialsScreen)
        assert len(trials.table.rows) == 3

        await pilot.press("f", "3")  # filter: running
        await settle(pilot)
        running = [r.index for r in trials.table.rows]
        assert len(running) >= 2 and {r.state for r in trials.table.rows} == {"running"}

        await pilot.press("enter")
        await settle(pilot, loaded(app, DetailScreen), what="the trial detail")
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.index == running[0]
        job_id = detail.show["attempt_list"][-1]["job_id"]
        pid = int(job_id.partition(":")[0])
        await pilot.press("3")  # the log tab tails the attempt's stdout
        tail = detail.log_tail
        await settle(pilot, lambda: tail.path is not None, what="the log tail")
        assert tail.path.endswith("/stdout") and tail.live
        await settle(pilot, lambda: "sleeping" in tail.text, what="the trial's output")

        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is trials)
        assert trials.table.current is not None and trials.table.current.index == running[0]

        await pilot.press("c")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        name = f"tui/{running[0]}"
        deadline = time.monotonic() + 30
        while {t["name"]: t for t in daemon.trials("tui")}[name]["state"] != "cancelled":
            assert time.monotonic() < deadline, "the daemon did not cancel the trial"
            await pilot.pause(0.1)
        wait_for(lambda: not alive(pid) and not session_alive(pid), what="the trial's processes")
        # the TUI heard it from the event stream: the row left the "running" filter
        await settle(pilot, lambda: trials.trials.rows[running[0]].state == "cancelled")
        assert running[0] not in [r.index for r in trials.table.rows]

        await pilot.press("C")  # cancel the whole sweep (and leave no sleepers behind)
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await settle(pilot, lambda: not trials.table.rows, what="no running trial left")
    wait_for(lambda: all(t["state"] == "cancelled" for t in daemon.trials("tui")), what="cancel")


REPORTER = """
import sys, time
from clusterd import trial
lr = trial.params()["lr"]
for step in range(20):
    trial.report(step, loss=1.0 / (1 + step * lr))
    print("step", step, flush=True)
    time.sleep(0.05)
print("oops", file=sys.stderr)
"""


@run_async
async def test_live_progress_plot_and_logs(daemon: Daemon, tmp_path: Path) -> None:
    """Progress arrives by events (one ``trials`` read only); the plot and logs read back."""
    script = tmp_path / "train.py"
    script.write_text(REPORTER)
    submit(
        daemon,
        tmp_path,
        "rep",
        [sys.executable, str(script)],
        '[metric]\nname = "loss"\nmode = "min"\n[params]\nlr = [0.5, 1.0]\n',
    )
    backend = SocketBackend(daemon.home / "clusterd.sock")
    calls: list[str] = []
    call = backend.call
    backend.call = lambda op, **a: (calls.append(op), call(op, **a))[1]  # type: ignore[method-assign]
    app = ClusterApp(backend, sweep="rep")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, loaded(app, TrialsScreen), what="the trials table")
        trials = app.screen
        assert isinstance(trials, TrialsScreen)
        await settle(
            pilot,
            lambda: all(
                r.last_step == 19 and r.state == "completed" for r in trials.trials.rows.values()
            ),
            timeout=60,
            what="both trials to report 20 steps and complete",
        )
        # everything after the first read was pushed (plus one ``show`` per ended attempt)
        assert calls.count("trials") == 1, calls
        assert app.events_seen > 0

        await pilot.press("s", "s", "s", "s", "s")  # sort key: index -> ... -> best
        await settle(pilot)
        assert trials.trials.sort_key == "best"
        assert [r.index for r in trials.table.rows] == [1, 0]  # lr=1.0 reaches the lower loss

        await pilot.press("enter", "2")
        await settle(
            pilot, lambda: isinstance(app.screen, DetailScreen) and not app.screen._plot_stale
        )
        metrics = backend.call("metrics", trial="rep/1")
        assert metrics["name"] == "loss" and len(metrics["points"]) == 20
        assert metrics["best"]["trial"] == "rep/1" and metrics["median_over"] == 2
        assert metrics["median"][0] == [0, 1.0]

        assert isinstance(app.screen, DetailScreen)
        tail = app.screen.log_tail
        await pilot.press("3")
        await settle(pilot, lambda: tail.path is not None, what="the log tail")
        assert "step 19" in tail.text and not tail.live
        await pilot.press("o")
        await settle(pilot, lambda: tail.stream == "stderr" and "oops" in tail.text)
        await pilot.press("left_square_bracket")  # attempt 1 is the only one: stays
        await settle(pilot)
        assert tail.shown_attempt == 1


STOPPABLE = """
import sys, time
from clusterd import trial
polite = trial.params()["polite"]
for step in range(100000):
    trial.report(step, loss=1.0 / (1 + step))
    if polite and trial.should_stop():
        print("asked to stop at step", step, flush=True)
        break
    time.sleep(0.1)
"""


@run_async
async def test_stop_trials_early_by_hand(daemon: Daemon, tmp_path: Path) -> None:
    """x stops a trial that checks ``should_stop()`` and one that ignores it (the daemon
    terminates it after the grace period): both end ``stopped``, with their processes gone."""
    script = tmp_path / "stoppable.py"
    script.write_text(STOPPABLE)
    submit(
        daemon,
        tmp_path,
        "halt",
        [sys.executable, str(script)],
        '[metric]\nname = "loss"\nmode = "min"\n[early_stopping]\ngrace_period = 1\n'
        "[params]\npolite = [true, false]\n",
    )
    wait_for(
        lambda: all(t["state"] == "running" for t in daemon.trials("halt")),
        what="the trials running",
    )
    app = app_for(daemon, sweep="halt")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, loaded(app, TrialsScreen), what="the trials table")
        trials = app.screen
        assert isinstance(trials, TrialsScreen)
        pids = {}
        for index in (0, 1):  # from the trial's detail screen, then from the table
            await pilot.press("home", *["down"] * index, "enter")
            await settle(pilot, loaded(app, DetailScreen), what="the trial detail")
            detail = app.screen
            assert isinstance(detail, DetailScreen) and detail.index == index
            pids[index] = int(detail.show["attempt_list"][-1]["job_id"].partition(":")[0])
            if index == 0:
                await pilot.press("x")
                await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.press("y")
                await settle(
                    pilot,
                    lambda: detail.show.get("state") == "stopped",  # noqa: B023
                    timeout=30,
                    what="the detail screen to show the end",
                )
                assert detail.show["stop_decision"]["reason"] == "stopped by hand"
                assert daemon.ctl_json("show", "halt/1")["state"] == "running"  # only that one
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is trials)
        await pilot.press("x")  # the table's cursor is on trial 1, the stubborn one
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")

        for index, pid in pids.items():
            name = f"halt/{index}"
            deadline = time.monotonic() + 60
            while (view := daemon.ctl_json("show", name))["state"] != "stopped":
                assert time.monotonic() < deadline, f"{name} did not stop: {view['state']}"
                await pilot.pause(0.1)
            assert view["stop_decision"]["rule"] == "manual"
            wait_for(lambda: not alive(pid) and not session_alive(pid), what=f"{name}'s processes")  # noqa: B023
        stdout = daemon.ctl("logs", "halt/0").stdout
        assert "asked to stop" in stdout  # the polite one stopped itself
        # the TUI heard it from the event stream
        await settle(
            pilot,
            lambda: [r.shown_state for r in trials.trials.rows.values()] == ["stopped"] * 2,
        )
        assert daemon.wait_sweep_done("halt", timeout=30)


@run_async
async def test_reconnects_when_the_daemon_restarts(daemon: Daemon, tmp_path: Path) -> None:
    app = app_for(daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, loaded(app, SweepsScreen))
        assert app.connection.connected
        daemon.stop()
        await settle(pilot, lambda: not app.connection.connected, what="the header to say so")
        header = app.screen.query_one("StatusHeader")
        assert "reconnecting" in str(header.render()) and header.has_class("-offline")
        submit_later = tmp_path / "later.toml"
        submit_later.write_text('name = "later"\ncommand = "true"\ndriver = "local"\n')
        daemon.start()
        daemon.ctl("submit", str(submit_later))
        await settle(
            pilot,
            lambda: app.connection.connected and [s.name for s in app.screen.sweeps] == ["later"],
            what="reconnect and re-read",
        )


def test_cli_does_not_import_textual(daemon: Daemon) -> None:
    """Principle 3: clusterctl's other verbs never pay for Textual."""
    code = (
        "import sys, clusterd.cli, clusterd.cli.sweeps, clusterd.cli.submit, clusterd.cli.trials, "
        "clusterd.cli.system; "
        "assert 'textual' not in sys.modules, 'textual imported'"
    )
    daemon.run("-c", code)


@pytest.mark.parametrize("op", ["metrics", "gpu_samples"])
def test_plot_ops_check_their_arguments(daemon: Daemon, op: str) -> None:
    from clusterd.errors import InvalidRequest, NotFound

    backend = SocketBackend(daemon.home / "clusterd.sock")
    with pytest.raises(InvalidRequest):
        backend.call(op, trial="no-index")
    with pytest.raises(NotFound):
        backend.call(op, trial="nosweep/0")
