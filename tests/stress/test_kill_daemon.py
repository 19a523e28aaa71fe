"""Principle 1 under fire: SIGKILL the daemon (and trials) at random moments, then audit.

A seeded loop runs the real daemon with the local driver. Sweeps are fed in while it
runs; their trials report metrics every few milliseconds, checkpoint and exit for
resume once, and some are SIGKILLed (the user command, by the pid in runner.json).
The daemon itself is SIGKILLed after a random delay -- sometimes while it is still
starting up, sometimes while a ``clusterctl submit`` is in flight -- and started again
with ``clusterd start``. Once the kills are done the daemon drains the work and stops,
and the test audits the database (opened read-only) against the files on disk:

* every trial is in exactly one final state and every attempt ended;
* no attempt ran twice: attempt numbers are 1..n, each attempt dir holds the job.json
  of its own token and exactly one runner "starting" line, and no attempt dir exists
  without its attempt row;
* every line each trial wrote to its events file is in the metrics (and checkpoints)
  table exactly once, and each trial's progress columns agree with those rows;
* the transition log chains (each ``from`` is the previous ``to``), enters a final
  state once, at the end, which is ``trials.state``; attempt outcomes match the
  runner's status.json.

Each attempt also writes ``CLUSTERD_STRESS_EVENTS_MB`` MB of "bulk" metric lines at
its start (default 0.25; 100 or more exercises ingestion in bounded chunks across kills:
an ended attempt with a backlog is read to the end, each chunk committed on its own);
they are audited by count and distinct values (each exactly once), and "best" is
checked against the attempt lineage (docs/runtime.md).

``CLUSTERD_STRESS_KILLS`` (default 100) sets the number of daemon kills and
``CLUSTERD_STRESS_SEED`` the seed (random by default; printed, and named in any
failure). See docs/reliability.md.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, wait_for

KILLS = int(os.environ.get("CLUSTERD_STRESS_KILLS") or 100)
SEED = int(os.environ.get("CLUSTERD_STRESS_SEED") or random.SystemRandom().randrange(1 << 32))
EVENTS_MB = float(os.environ.get("CLUSTERD_STRESS_EVENTS_MB") or 0.25)
#: a bulk line is 54-60 bytes: ``{"type":"metric","step":S,"values":{"bulk":I}}``
BULK_LINES = int(EVENTS_MB * 1_000_000 / 57)

TRIALS_PER_SWEEP = 6
STEPS = 40  # metric lines per trial over all its attempts (more when a kill forces a redo)
RESUME_AT = 15  # the step at which each trial checkpoints and exits for resume, once
MAX_FAILURES = 2  # retries after a killed attempt
RESUME_CODE = 3
FINAL = {"completed", "failed", "cancelled", "stopped"}
#: keep at least this many unfinished trials in the system while kills remain
LOW_WATER = 4

TRIAL = textwrap.dedent(
    """
    import os
    import time

    from clusterd import trial

    p = trial.params()
    ckpt = trial.last_checkpoint()
    start = ckpt.step + 1 if ckpt else 0
    # bulk lines: many MB per attempt, in 1 MB writes of whole lines (O_APPEND)
    fd = os.open(os.environ["CLUSTERD_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    i = 0
    while i < p["bulk"]:
        n = min(p["bulk"] - i, 17_000)
        os.write(fd, "".join(
            '{"type":"metric","step":%d,"values":{"bulk":%d}}\\n' % (start, j)
            for j in range(i, i + n)).encode())
        i += n
    os.close(fd)
    for step in range(start, p["steps"]):
        trial.report(step, loss=1.0 / (step + p["x"]), acc=step / p["steps"])
        if step == p["resume_at"] and (ckpt is None or ckpt.step < step):
            path = os.path.join(trial.checkpoint_dir(), f"step-{step}")
            with open(path, "w") as fh:
                fh.write(str(step))
            trial.checkpoint(path, step)
            trial.exit_for_resume()
        time.sleep(0.004)
    """
)


@dataclass
class Figures:
    daemon_kills: int = 0
    startup_kills: int = 0
    submit_kills: int = 0  # kills while a `clusterctl submit` was in flight
    trial_kills: int = 0
    submits: int = 0
    trials: int = 0
    attempts: int = 0
    metric_lines: int = 0
    metric_rows: int = 0
    checkpoint_lines: int = 0
    duplicate_runs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0


class Chaos:
    """The daemon, the sweeps fed to it, and the kills."""

    def __init__(self, daemon: Daemon, work: Path, rng: random.Random) -> None:
        self.d = daemon
        self.work = work
        self.rng = rng
        self.db = daemon.home / "clusterd.db"
        self.sweeps: list[str] = []  # every sweep we mean to exist
        self.fig = Figures()
        (work / "trial.py").write_text(TRIAL)

    # -- the database, read-only -----------------------------------------------------

    def ro(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)

    def query(self, sql: str, *args: Any) -> list[Any]:
        if not self.db.exists():
            return []
        try:
            db = self.ro()
        except sqlite3.Error:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # no schema yet (killed before the upgrade)
            return []
        finally:
            db.close()

    def persisted(self) -> set[str]:
        return {name for (name,) in self.query("select name from sweeps")}

    def unfinished(self) -> int:
        rows = self.query(
            "select count(*) from trials where state not in "
            "('completed', 'failed', 'cancelled', 'stopped')"
        )
        return int(rows[0][0]) if rows else 0

    # -- sweeps ----------------------------------------------------------------------

    def sweep_file(self, name: str) -> Path:
        path = self.work / f"{name}.toml"
        xs = ", ".join(str(x) for x in range(1, TRIALS_PER_SWEEP + 1))
        path.write_text(
            f'name = "{name}"\n'
            f'command = ["{sys.executable}", "trial.py"]\n'
            'driver = "local"\n'
            "max_concurrent = 3\n"
            '[metric]\nname = "loss"\nmode = "min"\n'
            f"[params]\nx = [{xs}]\nsteps = {STEPS}\nresume_at = {RESUME_AT}\n"
            f"bulk = {BULK_LINES}\n"
            f"[resume]\nexit_code = {RESUME_CODE}\n"
            f"[retry]\nmax_failures = {MAX_FAILURES}\n"
        )
        return path

    def submit_async(self) -> subprocess.Popen[bytes] | None:
        """Start `clusterctl submit` for a sweep that should exist and does not (or a new
        one when the work runs low); the daemon may be killed while it runs."""
        missing = [s for s in self.sweeps if s not in self.persisted()]
        low = self.fig.daemon_kills < KILLS - 5 and self.unfinished() < LOW_WATER
        if not missing and (len(self.sweeps) < 2 or low):
            missing = [f"st{len(self.sweeps)}"]
            self.sweeps.append(missing[0])
        if not missing:
            return None
        self.fig.submits += 1
        return subprocess.Popen(
            [sys.executable, "-m", "clusterd.cli", "submit", str(self.sweep_file(missing[0]))],
            env=self.d.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # -- kills -----------------------------------------------------------------------

    def kill_daemon(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            raise AssertionError(
                f"daemon {pid} died before its kill:\n{self.d.log()[-2000:]}"
            ) from None
        wait_for(lambda: _dead(pid), 10, f"daemon {pid} to die")
        self.fig.daemon_kills += 1

    def kill_a_trial(self) -> None:
        """SIGKILL the user command of one running attempt (never a recycled pid)."""
        running = []
        for adir in sorted(self.work.glob("runs/*/*/attempt-*")):
            if (adir / "status.json").exists() or not (adir / "runner.json").exists():
                continue
            try:
                pid = json.loads((adir / "runner.json").read_text())["child_pid"]
            except (OSError, ValueError, KeyError):
                continue
            if _runs_in(pid, adir):
                running.append((adir, pid))
        if not running:
            return
        adir, pid = self.rng.choice(running)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.fig.trial_kills += 1

    def one_round(self) -> None:
        """Start the daemon, let it work for a random while, SIGKILL it."""
        if self.rng.random() < 0.1:
            self.kill_during_startup()
            return
        self.d.start()
        pid = self.d.pid
        submits = [p for p in (self.submit_async(),) if p is not None]
        if self.rng.random() < 0.35:
            self.kill_a_trial()
        roll = self.rng.random()
        delay = self.rng.uniform(0.0, 0.05) if roll < 0.15 else self.rng.uniform(0.05, 1.2)
        time.sleep(delay)  # the deliberate random kill delay
        if any(p.poll() is None for p in submits):
            self.fig.submit_kills += 1
        self.kill_daemon(pid)
        for p in submits:
            p.wait(60)

    def kill_during_startup(self) -> None:
        """Kill the daemon before (or just after) its socket accepts: upgrade, lease, drivers."""
        old = _read_pid(self.d.home)
        starter = subprocess.Popen(
            [sys.executable, "-m", "clusterd.daemon.main", "start"],
            env=self.d.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pid = wait_for(
            lambda: (p := _read_pid(self.d.home)) not in (None, old) and p,
            20,
            "the daemon's pid file",
        )
        time.sleep(self.rng.uniform(0.0, 0.6))  # the deliberate random kill delay
        self.fig.startup_kills += 1
        self.kill_daemon(pid)
        starter.wait(60)

    def drain(self, timeout: float) -> None:
        """Start for good, make sure every sweep exists, wait for all of them to finish."""
        self.d.start()
        for name in self.sweeps:
            if name not in self.persisted():
                self.d.ctl("submit", str(self.sweep_file(name)))
        wait_for(
            lambda: self.query("select count(*) from sweeps where state = 'active'") == [(0,)],
            timeout,
            "every sweep to finish after the last kill",
        )
        self.d.stop()


def _read_pid(home: Path) -> int | None:
    try:
        return int((home / "clusterd.pid").read_text())
    except (OSError, ValueError):
        return None


def _dead(pid: int) -> bool:
    """Gone, or a zombie (nothing reaps the daemon's orphans in some containers)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _runs_in(pid: int, adir: Path) -> bool:
    """Whether ``pid`` is a live process of the attempt in ``adir`` (its env says so)."""
    if _dead(pid):
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"CLUSTERD_ATTEMPT_DIR={adir}".encode() in environ


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        return f"<{exc.strerror}>"


def _attempt_procs(root: Path) -> Iterator[int]:
    """Live processes started for any attempt under ``root``."""
    needle = f"CLUSTERD_ATTEMPT_DIR={root}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or _dead(int(entry.name)):
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ:
            yield int(entry.name)


# --------------------------------------------------------------------------- the audit


def audit(chaos: Chaos) -> None:
    fig = chaos.fig
    db = chaos.ro()
    db.row_factory = sqlite3.Row
    try:
        sweeps = {r["id"]: r for r in db.execute("select * from sweeps")}
        assert sorted(r["name"] for r in sweeps.values()) == sorted(chaos.sweeps)
        assert {r["state"] for r in sweeps.values()} == {"done"}
        for trial in db.execute('select * from trials order by sweep_id, "index"'):
            sweep = sweeps[trial["sweep_id"]]
            audit_trial(db, fig, trial, Path(sweep["output_dir"]))
        per_sweep = Counter(r[0] for r in db.execute("select sweep_id from trials"))
        assert set(per_sweep.values()) == {TRIALS_PER_SWEEP}, "a submit was half-persisted"
        live = db.execute("select count(*) from attempts where state != 'ended'").fetchone()[0]
        assert live == 0, f"{live} attempts never ended"
    finally:
        db.close()
    leftovers = list(_attempt_procs(chaos.work))
    assert not leftovers, f"attempt processes still running: {leftovers}"


def audit_trial(db: sqlite3.Connection, fig: Figures, trial: sqlite3.Row, out: Path) -> None:
    name = f"trial {trial['sweep_id']}/{trial['index']}"
    fig.trials += 1
    fig.states[trial["state"]] += 1
    assert trial["state"] in FINAL, f"{name} ended in {trial['state']}"
    attempts = db.execute(
        "select * from attempts where trial_id = ? order by number", (trial["id"],)
    ).fetchall()
    numbers = [a["number"] for a in attempts]
    assert numbers == list(range(1, trial["attempts"] + 1)), f"{name}: attempts {numbers}"
    tdir = out / str(trial["index"])
    on_disk = sorted(int(p.name.split("-")[1]) for p in tdir.glob("attempt-*"))
    assert on_disk == numbers, f"{name}: attempt dirs {on_disk} but attempt rows {numbers}"
    outcomes: Counter[str] = Counter()
    losses: dict[int, list[tuple[int, float]]] = {}
    for a in attempts:
        fig.attempts += 1
        adir = tdir / f"attempt-{a['number']}"
        losses[a["number"]] = []
        audit_attempt(db, fig, trial, a, adir, losses[a["number"]])
        outcomes[a["outcome"]] += 1
    assert trial["resumes"] == outcomes["resume"] <= 1, f"{name}: {dict(outcomes)}"
    assert trial["failures"] == outcomes["failed"] + outcomes["lost"], f"{name}: {outcomes}"
    last = attempts[-1]["outcome"]
    expected = {"completed": ("completed",), "failed": ("failed", "lost")}[trial["state"]]
    assert last in expected, f"{name}: {trial['state']} after an attempt that ended {last}"
    if trial["state"] == "completed":
        assert trial["last_step"] == STEPS - 1, f"{name}: last_step {trial['last_step']}"
    counted = lineage_losses(db, trial["id"], losses)
    if counted:
        assert trial["best_value"] == min(counted), f"{name}: best_value"
    audit_transitions(db, trial, len(attempts))


def lineage_losses(
    db: sqlite3.Connection, trial_id: int, losses: dict[int, list[tuple[int, float]]]
) -> list[float]:
    """The losses that count for "best": the last attempt's, then those of the attempt
    whose checkpoint it resumed from up to that step, and so on (docs/runtime.md)."""
    last_ckpt = dict(
        db.execute(
            "select attempt, step from checkpoints where id in (select max(id) from "
            "checkpoints where trial_id = ? group by attempt)",
            (trial_id,),
        ).fetchall()
    )
    number = max(losses, default=0)
    limit = float("inf")
    counted: list[float] = []
    while number:
        counted += [v for s, v in losses[number] if s <= limit]
        base = max((b for b in last_ckpt if b < number), default=0)
        if base:
            limit = min(limit, last_ckpt[base])
        number = base
    return counted


def audit_attempt(
    db: sqlite3.Connection,
    fig: Figures,
    trial: sqlite3.Row,
    a: sqlite3.Row,
    adir: Path,
    losses: list[tuple[int, float]],
) -> None:
    where = f"{adir} (attempt row {dict(a)}; job.json {_read(adir / 'job.json')})"
    job = json.loads((adir / "job.json").read_text())
    assert job["token"] == a["token"], f"{where}: job.json of another token"
    assert (adir / "runner.log").exists(), f"{where}: the attempt never ran"
    starts = (adir / "runner.log").read_text().count(": starting [")
    fig.duplicate_runs += max(0, starts - 1)
    assert starts == 1, f"{where}: the runner started {starts} times"
    status = json.loads((adir / "status.json").read_text())
    expected = (
        "completed"
        if status["exit_code"] == 0
        else "resume"
        if status["exit_code"] == RESUME_CODE
        else "failed"
    )
    if status["exit_code"] not in (0, RESUME_CODE):
        assert status["signal"] == "KILL", f"{where}: {status}"
    assert a["outcome"] == expected, f"{where}: outcome {a['outcome']}, status {status}"
    # every events line is in the database exactly once
    from_file: Counter[tuple[int, str, float]] = Counter()
    checkpoints: Counter[tuple[int, str]] = Counter()
    bulk, lines = 0, []
    with open(adir / "events.jsonl", "rb") as fh:  # streamed: it may hold 100s of MB
        for line in fh:
            if b'"bulk"' not in line:
                lines.append(line)
            elif line.endswith(b"\n"):  # not a last line cut by a SIGKILL mid-write
                bulk += 1
    for line in lines:
        event = json.loads(line)
        if event["type"] == "metric":
            fig.metric_lines += 1
            for key, value in event["values"].items():
                from_file[(event["step"], key, float(value))] += 1
        elif event["type"] == "checkpoint":
            fig.checkpoint_lines += 1
            checkpoints[(event["step"], event["path"])] += 1
    in_db = Counter(
        (r[0], r[1], r[2])
        for r in db.execute(
            "select step, name, value from metrics where trial_id = ? and attempt = ? "
            "and name != 'bulk'",
            (trial["id"], a["number"]),
        )
    )
    fig.metric_rows += sum(in_db.values())
    assert in_db == from_file, (
        f"{where}: missing {sorted((from_file - in_db).elements())[:5]}, "
        f"duplicated {sorted((in_db - from_file).elements())[:5]}"
    )
    ck_db = Counter(
        (r[0], r[1])
        for r in db.execute(
            "select step, path from checkpoints where trial_id = ? and attempt = ?",
            (trial["id"], a["number"]),
        )
    )
    assert ck_db == checkpoints, f"{where}: checkpoints {ck_db} vs events {checkpoints}"
    losses.extend((s, v) for (s, k, v) in from_file if k == "loss")
    # the bulk lines, each exactly once: as many rows as lines, all values distinct
    rows, distinct, low, high = db.execute(
        "select count(*), count(distinct value), min(value), max(value) from metrics "
        "where trial_id = ? and attempt = ? and name = 'bulk'",
        (trial["id"], a["number"]),
    ).fetchone()
    fig.metric_lines += bulk
    fig.metric_rows += rows
    assert rows == distinct == bulk, f"{where}: {bulk} bulk lines, {rows} rows ({distinct})"
    assert not bulk or (low, high) == (0, bulk - 1), f"{where}: bulk values {low}..{high}"


def audit_transitions(db: sqlite3.Connection, trial: sqlite3.Row, attempts: int) -> None:
    name = f"trial {trial['sweep_id']}/{trial['index']}"
    rows = db.execute(
        "select from_state, to_state, attempt from transitions where trial_id = ? order by id",
        (trial["id"],),
    ).fetchall()
    assert rows[0][0] is None and rows[0][1] == "pending", f"{name}: starts with {rows[0]}"
    for prev, cur in itertools.pairwise(rows):
        assert cur[0] == prev[1], f"{name}: {prev[1]} -> then from {cur[0]}: {rows}"
    finals = [i for i, r in enumerate(rows) if r[1] in FINAL]
    assert finals == [len(rows) - 1], f"{name}: final states at {finals} of {rows}"
    assert rows[-1][1] == trial["state"], f"{name}: log ends {rows[-1][1]}, row {trial['state']}"
    queued = [r[2] for r in rows if r[1] == "queued"]
    assert queued == list(range(1, attempts + 1)), f"{name}: submitted as attempts {queued}"


# --------------------------------------------------------------------------- the test


def _no_socket(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n.endswith(".sock")]


#: draining after the last kill: ingestion reads ~3.5 MB/s of bulk lines on 2 cores, and
#: the backlog can be every attempt's bulk (100 MB each at CLUSTERD_STRESS_EVENTS_MB=100)
DRAIN_TIMEOUT = 120 + 20 * EVENTS_MB


@pytest.mark.timeout(120 + 4 * KILLS + 20 * EVENTS_MB)
def test_daemon_killed_at_random_loses_nothing_and_runs_nothing_twice(
    stopped_daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    with capsys.disabled():
        print(f"\nstress: seed {SEED}, {KILLS} daemon kills (CLUSTERD_STRESS_SEED={SEED})")
    chaos = Chaos(stopped_daemon, tmp_path, random.Random(SEED))
    try:
        while chaos.fig.daemon_kills < KILLS:
            chaos.one_round()
        chaos.drain(timeout=DRAIN_TIMEOUT)
        audit(chaos)
    except BaseException as exc:
        keep = Path(tempfile.mkdtemp(prefix=f"clusterd-stress-{SEED}-"))
        shutil.copytree(tmp_path, keep / "work", symlinks=True)
        shutil.copytree(stopped_daemon.home, keep / "home", ignore=_no_socket)
        raise AssertionError(
            f"stress failed with CLUSTERD_STRESS_SEED={SEED} "
            f"after {chaos.fig.daemon_kills} daemon kills (files kept in {keep}): {exc}"
        ) from exc
    fig = chaos.fig
    fig.wall = time.monotonic() - t0
    log = stopped_daemon.log().splitlines()
    errors = [i for i, line in enumerate(log) if " ERROR " in line]
    with capsys.disabled():
        print(
            f"stress: seed {SEED}: survived {fig.daemon_kills} daemon kills "
            f"({fig.startup_kills} during start-up, {fig.submit_kills} during a submit) and "
            f"{fig.trial_kills} trial kills; {len(chaos.sweeps)} sweeps ({fig.submits} submit "
            f"calls), {fig.trials} trials {dict(fig.states)}, {fig.attempts} attempts; "
            f"{fig.metric_lines} metric lines = {fig.metric_rows} rows checked, "
            f"{fig.checkpoint_lines} checkpoints; duplicate runs {fig.duplicate_runs}; "
            f"{len(errors)} error lines in the log; wall {fig.wall:.0f} s"
        )
        for i in errors[:3]:
            print("stress: log: " + "\n    ".join(log[i : i + 30]))
    assert fig.trials >= 2 * TRIALS_PER_SWEEP
