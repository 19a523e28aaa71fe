"""A scheduler-neutral stand-in batch scheduler that keeps real state in files.

Debian has no HTCondor or PBS server, so their drivers are tested against stand-in CLI
tools (``tests/standins/pbs``, ``tests/standins/htcondor``) built on this engine: it
stores clusters of jobs under a state root (one JSON file per cluster, written atomically,
guarded by ``flock`` on ``root/lock``) and runs each job's script as a real detached
process group under a small wrapper (``run_task.py``). There is no daemon: every
transition happens in the process that causes it (a frontend command, a wrapper whose job
ended, the test), and ``jobs()`` notices a wrapper that died without recording anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIVE",
    "EVENTS",
    "CorruptState",
    "Job",
    "StandIn",
    "StandInError",
    "SubmitRejected",
    "Task",
    "UnknownJob",
    "WrongState",
    "group_alive",
    "kill_group",
    "record_event",
]

REPO = Path(__file__).resolve().parents[2]
ACTIVE = ("idle", "held", "running")
EVENTS = ("submit", "execute", "evicted", "held", "released", "terminated", "aborted")
DEFAULT_SLOTS = 64
EVICT_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for remove, hold and evict


class StandInError(Exception):
    """Anything the stand-in refuses; frontends print it the way their scheduler would."""


class UnknownJob(StandInError):
    """No such cluster/job in this state root."""


class WrongState(StandInError):
    """The job is not in a state the operation applies to (e.g. release of a running job)."""


class CorruptState(StandInError):
    """A state file cannot be read back: named, never silently dropped."""


class SubmitRejected(StandInError):
    """The submit was refused (bad arguments, or the ``reject_next`` knob)."""


@dataclass
class Task:
    """What a frontend submits per job; paths already absolute and substituted."""

    index: int
    env: dict[str, str]
    stdout: str
    stderr: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """One task of one cluster, as stored (env and attrs merged with the cluster's)."""

    cluster: int
    index: int
    name: str
    owner: str
    state: str
    exit_code: int | None
    term_signal: int | None
    hold_reason: str | None
    hold_code: int | None
    submit_time: float
    start_time: float | None
    end_time: float | None
    runs: int
    host: str
    pid: int | None
    attrs: dict[str, Any]
    script: str
    workdir: str
    env: dict[str, str]
    stdout: str
    stderr: str
    # additions beyond the contract
    end_reason: str | None = None  # "exit", "signal", "time limit", "lost", "start failed: .."
    time_limit: float | None = None
    limit_action: str = "kill"
    wrapper: int | None = None  # pid of the run_task wrapper of the current run


# per-job fields stored in the cluster file (the rest is cluster-level)
_JOB_KEYS = (
    "index", "env", "stdout", "stderr", "attrs", "state", "exit_code", "term_signal",
    "hold_reason", "hold_code", "start_time", "end_time", "runs", "pid", "wrapper",
    "wrapper_start", "end_reason", "host",
)  # fmt: skip
_CLUSTER_KEYS = (
    "cluster", "name", "owner", "script", "workdir", "env", "attrs", "submit_time",
    "time_limit", "limit_action", "notify", "jobs",
)  # fmt: skip

# flock is per open file: one re-entrant lock per (process, root), so that notify
# functions and nested calls in the same thread can use the engine too
_locks: dict[str, tuple[threading.RLock, int, list[int], int]] = {}
_locks_guard = threading.Lock()
_notify_cache: dict[str, Callable[[str, Job, str], object]] = {}


def _proc_stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], pgrp [2])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """A process's start time (guards against pid reuse); None if it is gone or a zombie."""
    fields = _proc_stat(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, SIGKILL what is left after ``grace`` seconds; returns once no
    live member is left (at most 5 s after the SIGKILL)."""
    sig, deadline = signal.SIGTERM, time.monotonic() + grace
    delay = 0.002
    while True:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        # the group's members are not our children to wait on: poll /proc
        while group_alive(pgid):
            if time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        else:
            return
        if sig == signal.SIGKILL:
            return
        sig, deadline = signal.SIGKILL, time.monotonic() + 5.0


def record_event(root: str, job: Job, event: str) -> None:
    """A ready-made ``notify`` ("tests.standins.engine:record_event"): appends the event
    as a JSON line to ``root/events.jsonl`` with the pid of the process that made it."""
    line = {
        "cluster": job.cluster,
        "index": job.index,
        "event": event,
        "state": job.state,
        "runs": job.runs,
        "pid": os.getpid(),
    }
    with open(Path(root) / "events.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")


def _owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return str(os.getuid())


def _write_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _resolve(spec: str) -> Callable[..., Any]:
    module, sep, func = spec.partition(":")
    if not sep or not module or not func:
        raise SubmitRejected(f"notify {spec!r}: expected 'module:function'")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise SubmitRejected(f"notify {spec!r}: cannot import: {exc}") from exc
    if not callable(fn):
        raise SubmitRejected(f"notify {spec!r}: not callable")
    return fn


class StandIn:
    """The shared state of one stand-in scheduler, rooted at a directory."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            root = os.environ.get("CLUSTERD_STANDIN_DIR")
            if not root:
                raise StandInError("no state root: pass one or set CLUSTERD_STANDIN_DIR")
        self.root = Path(root).resolve()
        (self.root / "clusters").mkdir(parents=True, exist_ok=True)
        #: the last cluster's jobs list looked up by ``_find``, and its index -> job dict
        self._by_index: tuple[list[dict[str, Any]], dict[int, dict[str, Any]]] | None = None

    # -- locking and storage ------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        key = str(self.root)
        with _locks_guard:
            if key not in _locks or _locks[key][3] != os.getpid():
                # (re)open after a fork too: a forked child must not share the parent's lock
                fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                _locks[key] = (threading.RLock(), fd, [0], os.getpid())
            rlock, fd, depth, _ = _locks[key]
        with rlock:
            if depth[0] == 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Hold the state lock across several calls (re-entrant in this thread): e.g.
        ``next_cluster()`` then ``submit()``, with no other process submitting between."""
        return self._locked()

    def next_cluster(self) -> int:
        """The id the next ``submit`` will get (exact inside ``transaction()``): a
        frontend that puts the job id in output paths or the environment needs it first."""
        with self._locked():
            seq = self.root / "seq"
            text = seq.read_text().strip() if seq.exists() else "0"
            if not text.isdigit():
                raise CorruptState(f"stand-in state file {seq} holds {text!r}, not a number")
            return int(text) + 1

    def _path(self, cluster: int) -> Path:
        return self.root / "clusters" / f"{cluster}.json"

    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptState(f"stand-in state file {path} is not valid JSON: {exc}") from exc

    def _load(self, cluster: int) -> dict[str, Any]:
        path = self._path(cluster)
        if not path.exists():
            raise UnknownJob(f"no cluster {cluster} in {self.root}")
        data = self._read_json(path)
        ok = isinstance(data, dict) and all(k in data for k in _CLUSTER_KEYS)
        ok = ok and isinstance(data["jobs"], list) and data["cluster"] == cluster
        ok = ok and all(
            isinstance(j, dict) and all(k in j for k in _JOB_KEYS) for j in data["jobs"]
        )
        if not ok:
            raise CorruptState(f"stand-in state file {path} lacks fields or is for another cluster")
        return data

    def _cluster_ids(self) -> list[int]:
        ids = []
        for p in (self.root / "clusters").glob("*.json"):
            if not p.stem.isdigit():
                raise CorruptState(f"stray file in stand-in state: {p}")
            ids.append(int(p.stem))
        return sorted(ids)

    def _load_all(self) -> list[dict[str, Any]]:
        return [self._load(c) for c in self._cluster_ids()]

    def _active_ids(self) -> list[int]:
        """Clusters with a job idle, held or running (``root/active.json``, kept by
        ``_save``): scheduling and submitting read only those, not the whole history."""
        path = self.root / "active.json"
        if not path.exists():
            ids = [c["cluster"] for c in self._load_all() if self._is_active(c)]
            _write_atomic(path, ids)
            return ids
        ids = self._read_json(path)
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise CorruptState(f"stand-in state file {path} is not a list of cluster ids")
        return ids

    def _load_active(self) -> list[dict[str, Any]]:
        ids = self._active_ids()
        for c in ids:
            if not self._path(c).exists():
                raise CorruptState(f"{self.root}/active.json names cluster {c}: no such file")
        return [self._load(c) for c in ids]

    @staticmethod
    def _is_active(c: dict[str, Any]) -> bool:
        return any(j["state"] in ACTIVE for j in c["jobs"])

    def _save(self, data: dict[str, Any]) -> None:
        _write_atomic(self._path(data["cluster"]), data)
        ids = self._active_ids()
        want = self._is_active(data)
        if want != (data["cluster"] in ids):
            ids = (
                sorted({*ids, data["cluster"]})
                if want
                else [i for i in ids if i != data["cluster"]]
            )
            _write_atomic(self.root / "active.json", ids)

    def _knobs(self) -> dict[str, Any]:
        path = self.root / "auto.json"
        if not path.exists():
            return {}
        data = self._read_json(path)
        if not isinstance(data, dict):
            raise CorruptState(f"stand-in state file {path} is not a JSON object")
        return data

    @staticmethod
    def _job(c: dict[str, Any], j: dict[str, Any]) -> Job:
        return Job(
            cluster=c["cluster"], index=j["index"], name=c["name"], owner=c["owner"],
            state=j["state"], exit_code=j["exit_code"], term_signal=j["term_signal"],
            hold_reason=j["hold_reason"], hold_code=j["hold_code"],
            submit_time=c["submit_time"], start_time=j["start_time"], end_time=j["end_time"],
            runs=j["runs"], host=j["host"], pid=j["pid"], attrs={**c["attrs"], **j["attrs"]},
            script=c["script"], workdir=c["workdir"], env={**c["env"], **j["env"]},
            stdout=j["stdout"], stderr=j["stderr"], end_reason=j["end_reason"],
            time_limit=c["time_limit"], limit_action=c["limit_action"], wrapper=j["wrapper"],
        )  # fmt: skip

    def _find(self, data: dict[str, Any], index: int) -> dict[str, Any]:
        """The job ``index`` of a loaded cluster, in O(1): jobs are stored in index order
        (the common case), else through a dict kept for the cluster last looked in."""
        jobs = data["jobs"]
        if 0 <= index < len(jobs) and jobs[index]["index"] == index:
            return jobs[index]
        cached = self._by_index
        if cached is None or cached[0] is not jobs or len(cached[1]) != len(jobs):
            cached = (jobs, {j["index"]: j for j in jobs})
            self._by_index = cached
        found = cached[1].get(index)
        if found is None:
            raise UnknownJob(f"no job {data['cluster']}.{index} in {self.root}")
        return found

    def _notify(self, c: dict[str, Any], j: dict[str, Any], event: str) -> None:
        spec = c["notify"]
        if spec:
            if spec not in _notify_cache:
                _notify_cache[spec] = _resolve(spec)
            _notify_cache[spec](str(self.root), self._job(c, j), event)

    # -- calls --------------------------------------------------------------------------

    def record_call(self, command: str, argv: list[str]) -> None:
        """Every frontend command calls this first: tests count calls per command."""
        with self._locked(), open(self.root / "calls.jsonl", "a") as fh:
            fh.write(json.dumps([command, *argv]) + "\n")

    def calls(self, command: str | None = None) -> list[list[str]]:
        """The recorded argv lists of ``command``; with None, ``[command, *argv]`` of all."""
        path = self.root / "calls.jsonl"
        with self._locked():
            lines = path.read_text().splitlines() if path.exists() else []
        out = []
        for n, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise CorruptState(f"{path} line {n} is not JSON: {exc}") from exc
            if command is None:
                out.append(entry)
            elif entry[0] == command:
                out.append(entry[1:])
        return out

    def clear_calls(self) -> None:
        """Forget the recorded calls (a benchmark counts from here)."""
        with self._locked():
            (self.root / "calls.jsonl").unlink(missing_ok=True)

    def events(self) -> list[dict[str, Any]]:
        """What :func:`record_event` wrote, oldest first."""
        path = self.root / "events.jsonl"
        with self._locked():
            text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    # -- knobs --------------------------------------------------------------------------

    def set_auto(
        self,
        *,
        slots: int | None = None,
        hold_next: str | None = None,
        reject_next: str | None = None,
        host: str | None = None,
    ) -> None:
        """Test knobs, persisted in ``root/auto.json`` so every process sees them.

        slots: jobs running at once (else $CLUSTERD_STANDIN_SLOTS, else 64); 0 keeps
        every job idle (then raise it: the queued jobs start);
        hold_next: the next submit's jobs start held with this reason (code 1);
        reject_next: the next submit raises SubmitRejected with this message;
        host: the host name jobs report (else this machine's)."""
        with self._locked():
            knobs = self._knobs()
            for key, value in (("slots", slots), ("hold_next", hold_next),
                               ("reject_next", reject_next), ("host", host)):  # fmt: skip
                if value is not None:
                    knobs[key] = value
            _write_atomic(self.root / "auto.json", knobs)
        self.schedule()

    def spool(self, text: str, name: str = "script") -> str:
        """Copy a script's text under the root (PBS spools the script at submit time)."""
        with self._locked():
            spool = self.root / "spool"
            spool.mkdir(exist_ok=True)
            n = len(list(spool.iterdir()))
            path = spool / f"{n}.{name}"
            path.write_text(text)
        return str(path)

    # -- transitions --------------------------------------------------------------------

    def submit(
        self,
        script: str,
        tasks: list[Task],
        *,
        name: str,
        workdir: str,
        env: dict[str, str],
        attrs: dict[str, Any] | None = None,
        hold: bool = False,
        time_limit: float | None = None,
        limit_action: str = "kill",
        notify: str | None = None,
    ) -> int:
        """Store a new cluster (its jobs idle, or held) and start what fits; returns its id.

        The job's environment is exactly ``env`` + the task's env: the frontend decides
        what its scheduler would pass."""
        if not tasks:
            raise SubmitRejected("no tasks to submit")
        if len({t.index for t in tasks}) != len(tasks):
            raise SubmitRejected("task indexes repeat")
        if limit_action not in ("kill", "hold"):
            raise SubmitRejected(f"limit_action {limit_action!r}: expected 'kill' or 'hold'")
        if time_limit is not None and time_limit <= 0:
            raise SubmitRejected(f"time_limit {time_limit}: must be positive")
        for where, mapping in [("env", env), *((f"task {t.index} env", t.env) for t in tasks)]:
            bad = [
                k for k, v in mapping.items() if not isinstance(k, str) or not isinstance(v, str)
            ]
            if bad:
                raise SubmitRejected(f"{where}: {bad[:3]} not a str: str mapping")
        try:
            json.dumps([attrs, [t.attrs for t in tasks], [t.index for t in tasks]])
        except (TypeError, ValueError) as exc:
            raise SubmitRejected(f"attrs cannot be stored as JSON: {exc}") from exc
        if not all(type(t.index) is int for t in tasks):
            raise SubmitRejected("task indexes must be ints")
        if notify:
            _resolve(notify)
        with self._locked():
            self._load_active()  # unreadable state is an error before anything is written
            knobs = self._knobs()
            reject = knobs.pop("reject_next", None)
            if reject is not None:
                _write_atomic(self.root / "auto.json", knobs)
                raise SubmitRejected(reject)
            hold_reason = knobs.pop("hold_next", None)
            if hold_reason is not None:
                _write_atomic(self.root / "auto.json", knobs)
            cluster = self.next_cluster()
            _write_atomic(self.root / "seq", cluster)
            held = hold or hold_reason is not None
            jobs = [
                {
                    "index": t.index, "env": dict(t.env), "stdout": t.stdout,
                    "stderr": t.stderr, "attrs": dict(t.attrs),
                    "state": "held" if held else "idle", "exit_code": None,
                    "term_signal": None,
                    "hold_reason": (hold_reason or "submitted on hold") if held else None,
                    "hold_code": 1 if held else None, "start_time": None, "end_time": None,
                    "runs": 0, "pid": None, "wrapper": None, "wrapper_start": None,
                    "end_reason": None, "host": knobs.get("host") or socket.gethostname(),
                }
                for t in tasks
            ]  # fmt: skip
            data = {
                "cluster": cluster, "name": name, "owner": _owner(),
                "script": script, "workdir": workdir, "env": dict(env),
                "attrs": dict(attrs or {}), "submit_time": time.time(),
                "time_limit": time_limit, "limit_action": limit_action, "notify": notify,
                "jobs": jobs,
            }  # fmt: skip
            self._save(data)
            for j in jobs:
                self._notify(data, j, "submit")
                if held:
                    self._notify(data, j, "held")
            self.schedule()
        return cluster

    def jobs(self, cluster: int | None = None) -> list[Job]:
        """All jobs (or one cluster's), after marking runs whose wrapper died as lost."""
        with self._locked():
            if self._reap_lost():
                self.schedule()
            clusters = [self._load(cluster)] if cluster is not None else self._load_all()
            return [self._job(c, j) for c in clusters for j in c["jobs"]]

    def job(self, cluster: int, index: int) -> Job:
        with self._locked():
            if self._reap_lost():
                self.schedule()
            c = self._load(cluster)
            return self._job(c, self._find(c, index))

    def _reap_lost(self) -> bool:
        """Running jobs whose wrapper is gone complete as killed (exit None, signal 9)."""
        lost = False
        for c in self._load_active():
            changed = False
            for j in c["jobs"]:
                if j["state"] != "running":
                    continue
                ticks = _start_ticks(j["wrapper"])
                if ticks is not None and ticks == j["wrapper_start"]:
                    continue
                if j["pid"]:
                    kill_group(j["pid"], 0)
                j.update(state="completed", exit_code=None, term_signal=9, pid=None,
                         end_time=time.time(), end_reason="lost")  # fmt: skip
                self._notify(c, j, "terminated")
                changed = lost = True
            if changed:
                self._save(c)
        return lost

    def _change(
        self,
        ids: list[tuple[int, int]],
        apply: Callable[[dict[str, Any], dict[str, Any]], bool],
        missing_ok: bool = False,
    ) -> list[tuple[int, int]]:
        """Apply a transition under the lock; kill the old runs' groups after it is
        released (their wrappers then record nothing), then schedule."""
        done, groups = [], []
        with self._locked():
            by_cluster: dict[int, dict[str, Any]] = {}
            for cluster, index in ids:
                try:
                    if cluster not in by_cluster:
                        by_cluster[cluster] = self._load(cluster)
                    c = by_cluster[cluster]
                    j = self._find(c, index)
                except UnknownJob:
                    if missing_ok:
                        continue
                    raise
                pid = j["pid"] if j["state"] == "running" else None
                if apply(c, j):
                    done.append((cluster, index))
                    if pid:
                        groups.append(pid)
            for c in by_cluster.values():
                self._save(c)
        for pgid in groups:
            kill_group(pgid, EVICT_GRACE)
        self.schedule()
        return done

    def _stop_run(self, j: dict[str, Any]) -> None:
        j.update(pid=None, wrapper=None, wrapper_start=None)

    def remove(self, ids: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Remove jobs (killing running ones); returns those that existed and were still
        active. Unknown or finished ids are skipped, not an error."""

        def apply(c: dict[str, Any], j: dict[str, Any]) -> bool:
            if j["state"] not in ACTIVE:
                return False
            self._stop_run(j)
            j.update(state="removed", end_time=time.time(), end_reason="removed")
            self._notify(c, j, "aborted")
            return True

        return self._change(ids, apply, missing_ok=True)

    def hold(self, cluster: int, index: int, reason: str, code: int = 1) -> None:
        """Idle or running -> held (a running job is killed; its run records nothing)."""

        def apply(c: dict[str, Any], j: dict[str, Any]) -> bool:
            if j["state"] not in ("idle", "running"):
                raise WrongState(f"job {cluster}.{index} is {j['state']}: cannot hold it")
            self._stop_run(j)
            j.update(state="held", hold_reason=reason, hold_code=code)
            self._notify(c, j, "held")
            return True

        self._change([(cluster, index)], apply)

    def release(self, cluster: int, index: int) -> None:
        """Held -> idle, then it starts when a slot is free."""

        def apply(c: dict[str, Any], j: dict[str, Any]) -> bool:
            if j["state"] != "held":
                raise WrongState(f"job {cluster}.{index} is {j['state']}: not held")
            j.update(state="idle", hold_reason=None, hold_code=None)
            self._notify(c, j, "released")
            return True

        self._change([(cluster, index)], apply)

    def evict(self, cluster: int, index: int, reason: str = "") -> None:
        """Running -> idle (SIGTERM the group, SIGKILL after 2 s); it restarts (runs + 1)."""

        def apply(c: dict[str, Any], j: dict[str, Any]) -> bool:
            if j["state"] != "running":
                raise WrongState(f"job {cluster}.{index} is {j['state']}: not running")
            self._stop_run(j)
            j.update(state="idle", end_reason=f"evicted: {reason}" if reason else "evicted")
            self._notify(c, j, "evicted")
            return True

        self._change([(cluster, index)], apply)

    def set_attrs(self, cluster: int, index: int | None, attrs: dict[str, Any]) -> None:
        """Update attrs of one job, or (index None) the cluster's (qalter, condor_qedit)."""
        with self._locked():
            c = self._load(cluster)
            (c if index is None else self._find(c, index))["attrs"].update(attrs)
            self._save(c)

    def schedule(self) -> None:
        """Start idle jobs, oldest first, while fewer than the slot count run."""
        with self._locked():
            knobs = self._knobs()
            env_slots = os.environ.get("CLUSTERD_STANDIN_SLOTS")
            slots = int(knobs.get("slots", env_slots or DEFAULT_SLOTS))
            clusters = self._load_active()
            running = sum(j["state"] == "running" for c in clusters for j in c["jobs"])
            for c in clusters:
                changed = False
                for j in c["jobs"]:
                    if running >= slots:
                        break
                    if j["state"] == "idle":
                        self._start(c, j)
                        running += 1
                        changed = True
                if changed:
                    self._save(c)

    def _start(self, c: dict[str, Any], j: dict[str, Any]) -> None:
        j["runs"] += 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        args = [str(self.root), str(c["cluster"]), str(j["index"]), str(j["runs"])]
        logs = self.root / "wrappers"
        logs.mkdir(exist_ok=True)
        with open(logs / f"{c['cluster']}.{j['index']}.{j['runs']}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.standins.run_task", *args],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        j.update(state="running", start_time=time.time(), end_time=None, pid=None,
                 exit_code=None, term_signal=None, end_reason=None, wrapper=proc.pid,
                 wrapper_start=_start_ticks(proc.pid))  # fmt: skip
        self._notify(c, j, "execute")

    # -- called by the wrapper (run_task) -----------------------------------------------

    def _current(self, cluster: int, index: int, run: int) -> tuple[dict, dict] | None:
        c = self._load(cluster)
        j = self._find(c, index)
        if j["state"] != "running" or j["runs"] != run or j["wrapper"] != os.getpid():
            return None
        return c, j

    def run_spec(self, cluster: int, index: int, run: int) -> Job | None:
        """The job as the wrapper must start it, or None if this run is no longer current."""
        with self._locked():
            cur = self._current(cluster, index, run)
            return self._job(*cur) if cur else None

    def started(self, cluster: int, index: int, run: int, pid: int) -> bool:
        """Record the script's process group; False if the run was stopped meanwhile."""
        with self._locked():
            cur = self._current(cluster, index, run)
            if cur is None:
                return False
            cur[1]["pid"] = pid
            self._save(cur[0])
            return True

    def finished(
        self,
        cluster: int,
        index: int,
        run: int,
        *,
        exit_code: int | None,
        term_signal: int | None,
        reason: str,
        hold: bool = False,
    ) -> None:
        """Record the end of a current run (nothing if it was stopped), then schedule."""
        with self._locked():
            cur = self._current(cluster, index, run)
            if cur is not None:
                c, j = cur
                self._stop_run(j)
                j.update(exit_code=exit_code, term_signal=term_signal, end_reason=reason)
                if hold:
                    j.update(state="held", hold_reason=reason, hold_code=1)
                    self._notify(c, j, "held")
                else:
                    j.update(state="completed", end_time=time.time())
                    self._notify(c, j, "terminated")
                self._save(c)
            self.schedule()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Remove every active job and wait for the wrappers to go (test teardown)."""
        try:
            self.remove([(j.cluster, j.index) for j in self.jobs() if j.state in ACTIVE])
        except StandInError:
            self._kill_scripts()  # unreadable state: still leave no process behind
            raise
        deadline = time.monotonic() + timeout
        while self.wrapper_pids():
            if time.monotonic() > deadline:
                raise StandInError(f"stand-in wrappers still running: {self.wrapper_pids()}")
            time.sleep(0.01)

    def _kill_scripts(self) -> None:
        """Kill the script groups of this root's wrappers (their children), from /proc."""
        wrappers = set(self.wrapper_pids())
        for entry in os.listdir("/proc"):
            fields = _proc_stat(int(entry)) if entry.isdigit() else None
            if fields and int(fields[1]) in wrappers:
                kill_group(int(entry), 0)

    def wrapper_pids(self) -> list[int]:
        """Live run_task wrappers of this root (any run, current or not), from /proc."""
        want = [b"tests.standins.run_task", str(self.root).encode()]
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if all(w in argv for w in want) and _start_ticks(int(entry)) is not None:
                pids.append(int(entry))
        return pids
