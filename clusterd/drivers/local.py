"""``LocalDriver``: run attempts as processes on this machine, with its own queue.

The machine is the scheduler: a job starts when its CPUs (``resources.cpus``,
default 1) fit in the free CPUs and its GPUs in the free GPUs; otherwise it
waits in a FIFO queue. A job that does not fit blocks the ones behind it (no
backfill), so a 4-GPU trial is never starved by a stream of 1-GPU ones.

Exits are noticed, not polled for: a watcher thread blocks on the pidfds of
running jobs (plus a self-pipe to add new ones and to wake it for kill
deadlines). On an exit it reaps, frees capacity, starts what now fits and calls
the daemon's wakeup callback -- typically within a millisecond.

Nothing is lost across a daemon restart, and nothing runs twice:

* a job id is ``"<pid>:<starttime>"`` (field 22 of ``/proc/<pid>/stat``), so a
  recycled pid never passes for our job; a queued job's id is ``"queued:<token>"``;
* every job runs in its own session (``start_new_session``), so it survives the
  daemon, and ``close()`` never kills it;
* ``<attempt_dir>/job.json`` records the job's state (queued -> starting ->
  running, or cancelled/failed) with the request itself, written by
  temp-file-and-rename before each transition. A restarted daemon's driver adopts
  running jobs (pidfds work for processes that are not our children), puts queued
  ones back in its queue, and for a job caught "starting" looks for the process
  (the fork server's ``forked.pid``, or the session leader carrying
  ``CLUSTERD_JOB_TOKEN=<token>`` in ``/proc``). Found: adopted. Not found: the
  driver claims the spawn id recorded with "starting" (``forkserver.claim_spawn``,
  the same ``O_EXCL`` file the spawner creates before forking). If the claim is
  ours, the job never started and now never will from the old request: it is
  queued again. If the spawner's, it did start, and ended without a trace.

A launch is "could not start" only when it certainly did not start. Once the
fork may have happened (the fork server got the request, or Popen returned), any
failure -- typically EMFILE from ``pidfd_open`` or ``/proc/<pid>/stat`` when the
daemon is out of descriptors -- leaves job.json "starting" and the job *unsettled*:
each poll reports it queued ("state unknown") and tries the recovery above again,
until it is adopted or known gone. Likewise, a recovery that cannot look (out of
descriptors or memory) says "unknown" and looks again; it never concludes "gone".

Linux only (pidfd_open needs kernel >= 5.3).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import selectors
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterd.drivers.base import ClusterInfo, Driver, JobRef, JobRequest, JobStatus
from clusterd.drivers.forkserver import FORKED_FILE, ForkServerClient, SpawnNotSent, claim_spawn
from clusterd.drivers.hookspecs import hookimpl
from clusterd.drivers.jobfile import JOB_FILE, read_job_file, write_json_atomic
from clusterd.errors import DriverError, SpecError, UnsupportedResource
from clusterd.spec.model import Resources, SweepSpec

if TYPE_CHECKING:
    from clusterd.drivers.registry import DriverRegistry

__all__ = [
    "GpuInfo",
    "GpuSlots",
    "LocalDriver",
    "clusterd_register_drivers",
    "discover_gpus",
    "parse_nvidia_smi",
    "read_proc_stat",
]

log = logging.getLogger(__name__)

LOG_FILE = "driver.log"
TOKEN_ENV = "CLUSTERD_JOB_TOKEN"
NVIDIA_SMI = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
)
NVIDIA_SMI_TIMEOUT = 10.0
DEFAULT_KILL_TIMEOUT = 30.0
#: errors that say "not now" (out of descriptors or memory), not "no such thing"
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN})


class _Unsure(Exception):
    """The job may have started and the driver cannot tell now: never "not started"."""


def _short_of_resources(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS


#: keys of the driver's own options (daemon configuration) and of a sweep's [drivers.local]
DRIVER_OPTIONS = ("cpus", "gpus", "kill_timeout")
SWEEP_OPTIONS = ("kill_timeout",)


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the driver needs."""

    state: str  # "R", "S", "Z" (zombie: exited, not reaped yet), ...
    session: int
    starttime: int  # clock ticks after boot; with the pid, names a process uniquely

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def parse_proc_stat(text: str) -> ProcStat:
    """Parse a ``/proc/<pid>/stat`` line; the command name may hold spaces and parens."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 of stat(5): state; session is field 6; starttime field 22
    return ProcStat(state=fields[0], session=int(fields[3]), starttime=int(fields[19]))


def read_proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_proc_stat(f.read())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def _is_alive(pid: int, starttime: int) -> bool:
    stat = read_proc_stat(pid)
    return stat is not None and stat.alive and stat.starttime == starttime


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _session_members(session: int) -> list[int]:
    """Every live process in ``session`` (the runner and whatever it started)."""
    return [
        pid
        for pid in _all_pids()
        if (stat := read_proc_stat(pid)) is not None and stat.session == session and stat.alive
    ]


def _forked_leader(attempt_dir: str) -> tuple[int, int] | None:
    """``(pid, starttime)`` from the marker a fork-server child writes first thing (its
    /proc environ is the server's, so the token search below cannot find it)."""
    try:
        pid, starttime = (int(x) for x in (Path(attempt_dir) / FORKED_FILE).read_text().split())
    except OSError as exc:
        if _short_of_resources(exc):
            raise  # cannot look now: not the same as "no marker"
        return None
    except ValueError:
        return None
    stat = read_proc_stat(pid)
    if stat is None or not stat.alive or stat.starttime != starttime or stat.session != pid:
        return None
    return pid, starttime


def _leader_from_hint(hint: _Unsettled | None) -> tuple[int, int] | None:
    """``(pid, starttime)`` of the pid a fork returned before the driver could track it:
    a live session leader started within 2 s of that fork (else the pid was recycled)."""
    if hint is None or not hint.pid:
        return None
    stat = read_proc_stat(hint.pid)
    if stat is None or not stat.alive or stat.session != hint.pid:
        return None
    if abs(stat.starttime - hint.forked_near) > 2 * os.sysconf("SC_CLK_TCK"):
        return None
    return hint.pid, stat.starttime


def _find_session_leader(token: str) -> tuple[int, int] | None:
    """``(pid, starttime)`` of the session leader started for ``token``, if one is alive.

    Used only for a job caught between "starting" and "running" by a daemon crash.
    """
    needle = f"{TOKEN_ENV}={token}".encode()
    for pid in _all_pids():
        stat = read_proc_stat(pid)
        if stat is None or stat.session != pid or not stat.alive:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError as exc:  # another user's process, or it just exited
            if _short_of_resources(exc):
                raise  # cannot look now: not the same as "not there"
            continue
        if needle in environ:
            return pid, stat.starttime
    return None


def format_job_id(pid: int, starttime: int) -> str:
    return f"{pid}:{starttime}"


def parse_job_id(job_id: str | None) -> tuple[int, int] | None:
    """``(pid, starttime)`` from a ``"pid:starttime"`` job id; None for any other shape."""
    pid, sep, start = (job_id or "").partition(":")
    if sep and pid.isdigit() and start.isdigit():
        return int(pid), int(start)
    return None


def _queued_job_id(token: str) -> str:
    return f"queued:{token}"


def _read_job(attempt_dir: str, token: str) -> dict[str, Any] | None:
    """``job.json`` of ``token`` like ``read_job_file``, except that being out of
    descriptors raises: "cannot read it now" must never pass for "there is none"."""
    try:
        data = json.loads((Path(attempt_dir) / JOB_FILE).read_bytes())
    except OSError as exc:
        if _short_of_resources(exc):
            raise
        return None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("token") != token:
        return None
    return data


def _boot_ticks() -> int:
    """Now, in /proc/<pid>/stat starttime units (clock ticks since boot; needs no fd)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


@dataclass
class _Unsettled:
    """A job that may have started, whose process the driver could not confirm yet."""

    attempt_dir: str
    cpus: int
    gpu_ids: tuple[str, ...]
    pid: int | None  # what the fork returned, if it got that far
    forked_near: int  # _boot_ticks() at the fork: a recycled pid started elsewhen
    why: str


# --------------------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi --query-gpu=index,uuid,name,memory.total`` reports it."""

    index: int
    uuid: str
    name: str
    memory_mb: int | None  # None when nvidia-smi prints "[N/A]"


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Parse ``--format=csv,noheader,nounits`` output; a malformed line is a DriverError."""
    gpus = []
    for line in text.splitlines():
        if line.strip():
            gpus.append(_parse_gpu_line(line))
    return gpus


def _parse_gpu_line(line: str) -> GpuInfo:
    parts = [part.strip() for part in line.split(",")]
    try:
        if len(parts) < 4:
            raise ValueError("expected 4 fields")
        memory = None if parts[-1].startswith("[") else int(parts[-1])
        return GpuInfo(int(parts[0]), parts[1], ", ".join(parts[2:-1]), memory)
    except ValueError as exc:
        raise DriverError(
            f"cannot read nvidia-smi output line {line!r} ({exc}); expected "
            f"'index, uuid, name, memory.total'"
        ) from None


@dataclass(frozen=True)
class GpuSlots:
    """The GPUs this driver hands out, and where that list came from (for messages)."""

    ids: tuple[str, ...]  # what goes into CUDA_VISIBLE_DEVICES
    source: str  # e.g. "nvidia-smi found 2 GPUs", "CUDA_VISIBLE_DEVICES=0,1"
    info: tuple[GpuInfo, ...] = ()
    pci_order: bool = False  # ids are nvidia-smi indices: children need CUDA_DEVICE_ORDER


def query_nvidia_smi(timeout: float = NVIDIA_SMI_TIMEOUT) -> tuple[str | None, str]:
    """Run nvidia-smi; ``(output, "")`` or ``(None, why there is no output)``."""
    try:
        done = subprocess.run(
            NVIDIA_SMI, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        return None, "nvidia-smi not found"
    except subprocess.TimeoutExpired:
        return None, f"nvidia-smi did not answer within {timeout:g} s"
    except OSError as exc:
        return None, f"nvidia-smi could not run: {exc}"
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        return None, f"nvidia-smi failed: {first[0] if first else f'exit {done.returncode}'}"
    return done.stdout, ""


def discover_gpus(
    option: Sequence[int | str] | None,
    environ: Mapping[str, str],
    query: Callable[[], tuple[str | None, str]] = query_nvidia_smi,
) -> GpuSlots:
    """The GPUs to hand out: the ``gpus`` option, else the daemon's CUDA_VISIBLE_DEVICES,
    else whatever nvidia-smi lists (a missing nvidia-smi means no GPUs)."""
    if option is not None:
        ids = tuple(str(gpu) for gpu in option)
        return GpuSlots(ids, f"driver option gpus = {list(option)!r}")
    if "CUDA_VISIBLE_DEVICES" in environ:
        raw = environ["CUDA_VISIBLE_DEVICES"]
        ids = tuple(part.strip() for part in raw.split(",") if part.strip())
        return GpuSlots(ids, f"CUDA_VISIBLE_DEVICES={raw!r} in the daemon's environment")
    output, why = query()
    if output is None:
        return GpuSlots((), why)
    info = tuple(parse_nvidia_smi(output))
    found = f"{len(info)} GPU{_plural(len(info))}" if info else "no GPU"
    return GpuSlots(tuple(str(g.index) for g in info), f"nvidia-smi found {found}", info, True)


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


# --------------------------------------------------------------------------- capacity


class _Capacity:
    """CPUs and GPUs held by each job token. Adopted jobs may over-subscribe."""

    def __init__(self, cpus: int, gpus: GpuSlots) -> None:
        self.cpus_total = cpus
        self.gpus = gpus
        self._cpus: dict[str, int] = {}
        self._gpus: dict[str, tuple[str, ...]] = {}

    @property
    def cpus_used(self) -> int:
        return sum(self._cpus.values())

    def gpu_users(self) -> dict[str, list[str]]:
        """GPU id -> tokens using it."""
        users: dict[str, list[str]] = {gpu: [] for gpu in self.gpus.ids}
        for token, ids in self._gpus.items():
            for gpu in ids:
                users.setdefault(gpu, []).append(token)
        return users

    def free_gpus(self) -> list[str]:
        return [gpu for gpu, tokens in self.gpu_users().items() if not tokens]

    def can_ever_fit(self, cpus: int, gpus: int) -> bool:
        return cpus <= self.cpus_total and gpus <= len(self.gpus.ids)

    def fits(self, cpus: int, gpus: int) -> bool:
        return self.cpus_used + cpus <= self.cpus_total and len(self.free_gpus()) >= gpus

    def take(self, token: str, cpus: int, gpus: int) -> tuple[str, ...]:
        """Hold ``cpus`` and the first ``gpus`` free GPUs for ``token``; returns the GPU ids."""
        ids = tuple(self.free_gpus()[:gpus])
        self.hold(token, cpus, ids)
        return ids

    def hold(self, token: str, cpus: int, gpu_ids: Iterable[str]) -> None:
        self._cpus[token] = cpus
        self._gpus[token] = tuple(gpu_ids)

    def release(self, token: str) -> None:
        self._cpus.pop(token, None)
        self._gpus.pop(token, None)


# --------------------------------------------------------------------------- job.json


def _request_to_json(job: JobRequest) -> dict[str, Any]:
    return {
        "sweep": job.sweep,
        "trial_index": job.trial_index,
        "attempt": job.attempt,
        "argv": list(job.argv),
        "env": dict(job.env),
        "cpus": _cpus_of(job.resources),
        "gpus": job.resources.gpus,
        "options": dict(job.options),
    }


def _request_from_json(token: str, attempt_dir: str, data: Mapping[str, Any]) -> JobRequest:
    return JobRequest(
        token=token,
        sweep=data["sweep"],
        trial_index=data["trial_index"],
        attempt=data["attempt"],
        attempt_dir=attempt_dir,
        argv=tuple(data["argv"]),
        resources=Resources(cpus=data["cpus"], gpus=data["gpus"]),
        options=data.get("options") or {},
        env=data.get("env") or {},
    )


def _cpus_of(resources: Resources) -> int:
    return resources.cpus if resources.cpus is not None else 1


# --------------------------------------------------------------------------- records


@dataclass
class _Queued:
    request: JobRequest
    submitted_at: float

    @property
    def cpus(self) -> int:
        return _cpus_of(self.request.resources)

    @property
    def gpus(self) -> int:
        return self.request.resources.gpus


@dataclass
class _Running:
    token: str
    pid: int
    starttime: int
    attempt_dir: str
    cpus: int
    gpu_ids: tuple[str, ...]
    kill_timeout: float
    started_at: float
    popen: subprocess.Popen[bytes] | None = None  # None for a job adopted after a restart
    kill_at: float | None = None  # monotonic time of the SIGKILL escalation, once cancelled

    @property
    def job_id(self) -> str:
        return format_job_id(self.pid, self.starttime)


# --------------------------------------------------------------------------- watcher


class _ExitWatcher:
    """A thread blocked on pidfds; reports exits and wakes for deadlines.

    Only this thread touches its selector; other threads hand it pidfds through
    ``watch`` (a list + one byte on the self-pipe). It owns the pidfds it is given
    and closes them once the process has exited or when it stops.
    """

    def __init__(
        self,
        on_exit: Callable[[list[str]], None],
        on_wake: Callable[[], float | None],
    ) -> None:
        self._on_exit = on_exit
        self._on_wake = on_wake  # runs due deadlines; returns seconds to the next one
        self._lock = threading.Lock()
        self._new: list[tuple[str, int]] = []
        self._stopping = False
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # made here, not in the thread: out of descriptors, epoll_create fails in the
            # caller (who keeps the job unsettled), never in a thread that would then die
            # silently and leave every watched job "running" for good
            self._selector = selectors.DefaultSelector()
        except BaseException:
            os.close(self._read_fd)
            os.close(self._write_fd)
            raise
        self._thread = threading.Thread(target=self._run, name="clusterd-local-exits", daemon=True)
        self._thread.start()

    def watch(self, token: str, pidfd: int) -> None:
        with self._lock:
            self._new.append((token, pidfd))
        self.poke()

    def poke(self) -> None:
        """Make the thread look at new pidfds and deadlines now."""
        with contextlib.suppress(BlockingIOError):  # pipe full: a wake-up is pending anyway
            os.write(self._write_fd, b"\0")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self.poke()
        self._thread.join()
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _run(self) -> None:
        with self._selector as selector:
            selector.register(self._read_fd, selectors.EVENT_READ, None)
            try:
                self._loop(selector)
            finally:
                self._close_watched(selector)

    def _loop(self, selector: selectors.BaseSelector) -> None:
        timeout: float | None = None
        while True:
            ready = selector.select(timeout)
            exited = [key.data for key, _ in ready if key.data is not None]
            for key, _ in ready:
                if key.data is not None:
                    selector.unregister(key.fd)
                    os.close(key.fd)
            if not self._take_new(selector):
                return
            timeout = self._deliver(exited)

    def _take_new(self, selector: selectors.BaseSelector) -> bool:
        """Drain the pipe and register new pidfds; False once asked to stop."""
        while True:
            try:
                if not os.read(self._read_fd, 4096):
                    break
            except BlockingIOError:
                break
        with self._lock:
            new, self._new = self._new, []
            stopping = self._stopping
        for token, pidfd in new:
            selector.register(pidfd, selectors.EVENT_READ, token)
        return not stopping

    def _deliver(self, exited: list[str]) -> float | None:
        """Run the callbacks; a failing one is logged, never fatal to the thread."""
        try:
            if exited:
                self._on_exit(exited)
            return self._on_wake()
        except Exception:
            log.exception("local driver: exit handling failed")
            return 1.0

    def _close_watched(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            new, self._new = self._new, []
        for key in list(selector.get_map().values()):
            if key.data is not None:
                os.close(key.fd)
        for _, pidfd in new:
            os.close(pidfd)


# --------------------------------------------------------------------------- driver


class LocalDriver(Driver):
    """Runs each attempt as a process on this machine; see the module docstring.

    Options (daemon configuration): ``cpus`` (default: the CPUs this process may
    run on), ``gpus`` (list of ids; default: CUDA_VISIBLE_DEVICES, else nvidia-smi),
    ``kill_timeout`` (seconds from a cancel's SIGTERM to SIGKILL of the job's
    session; default 30; a sweep's ``[drivers.local]`` may set it too).
    """

    name = "local"
    poll_interval = 1.0

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        _check_options(self.options, DRIVER_OPTIONS, "driver 'local' options")
        self._lock = threading.RLock()
        self._host = socket.gethostname()
        self._queue: dict[str, _Queued] = {}  # FIFO: dicts keep insertion order
        self._running: dict[str, _Running] = {}
        self._ended: dict[str, str] = {}  # token -> why, for jobs that ended without running
        self._unsettled: dict[str, _Unsettled] = {}  # may have started; looked for each poll
        self._cancel_later: set[str] = set()  # cancelled while unsettled: sent once found
        self._capacity: _Capacity | None = None  # built on first use (nvidia-smi is slow)
        self._watcher: _ExitWatcher | None = None
        self._forkserver: ForkServerClient | None = None  # started on the first job

    # -- the Driver interface ------------------------------------------------------------

    def validate(self, spec: SweepSpec) -> None:
        """Refuse sweeps this machine cannot run: too many GPUs or CPUs, unknown options."""
        options = spec.driver_options.get(self.name, {})
        try:
            _check_options(options, SWEEP_OPTIONS, "[drivers.local]")
        except DriverError as exc:
            raise SpecError(spec.source, "driver.local", exc.message) from exc
        with self._lock:
            problem = self._misfit(spec.resources, "sweep")
        if problem:
            raise UnsupportedResource(f"{spec.source}: {problem}")

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """Queue every job, then start those that fit; returns ``{token: job_id}``.

        A job that can never fit this machine fails the whole call before anything
        is queued. A token the driver already knows is not started again.
        """
        with self._lock:
            for job in jobs:
                problem = self._misfit(job.resources, f"job {job.token}")
                if problem:
                    raise UnsupportedResource(problem)
            result = {job.token: self._enqueue_once(job) for job in jobs}
            failed = self._start_queued(retryable=set(result))
            for token in failed:
                del result[token]
            if failed and not result:
                first = next(iter(failed.values()))
                raise DriverError(f"local driver: could not start any job: {first}")
            return {token: self._job_id(token) or job_id for token, job_id in result.items()}

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """Where each job is; jobs a previous daemon started are adopted or re-queued here."""
        with self._lock:
            gone = {ref.token: self._reconcile(ref) for ref in jobs if not self._knows(ref.token)}
            self._notice_missed_exits()
            self._start_queued()
            return {
                ref.token: self._known_status(ref.token)
                or gone.get(ref.token)
                or JobStatus("gone", ref.job_id)
                for ref in jobs
            }

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """Drop queued jobs; SIGTERM running ones' process groups, SIGKILL their sessions
        ``kill_timeout`` seconds later if the runner is still there."""
        with self._lock:
            for ref in jobs:
                if not self._knows(ref.token):
                    self._reconcile(ref)
                if ref.token in self._unsettled:
                    self._cancel_later.add(ref.token)  # sent once the job is found
                self._cancel_one(ref.token)
            if self._watcher is not None:
                self._watcher.poke()  # arm the kill deadlines

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """Job ids from the attempts' job.json (written before the job could start)."""
        found = {}
        for ref in jobs:  # out of descriptors, this raises: "not found" would resubmit
            data = _read_job(ref.attempt_dir, ref.token)
            if data is not None and isinstance(data.get("job_id"), str):
                found[ref.token] = data["job_id"]
        return found

    def describe_cluster(self) -> ClusterInfo:
        with self._lock:
            return self._describe()

    def close(self) -> None:
        """Stop the watcher thread. Running jobs keep running (a new driver adopts them);
        queued ones stay in their job.json and are re-queued by the next driver's poll."""
        with self._lock:
            watcher, self._watcher = self._watcher, None
            children = [r.popen for r in self._running.values() if r.popen is not None]
            self._running.clear()
            self._queue.clear()
            self._unsettled.clear()
            self._cancel_later.clear()
            self._capacity = None
        if watcher is not None:
            watcher.stop()
        _detach(children)
        if self._forkserver is not None:
            self._forkserver.close()
            self._forkserver = None

    # -- capacity and queue --------------------------------------------------------------

    def _cap(self) -> _Capacity:
        if self._capacity is None:
            cpus = self.options.get("cpus") or len(os.sched_getaffinity(0))
            gpus = discover_gpus(self.options.get("gpus"), os.environ)
            self._capacity = _Capacity(int(cpus), gpus)
        return self._capacity

    def _misfit(self, resources: Resources, what: str) -> str | None:
        """Why ``resources`` can never fit this machine, or None."""
        cap = self._cap()
        want_gpus, have_gpus = resources.gpus, len(cap.gpus.ids)
        if want_gpus > have_gpus:
            have = "none visible" if not have_gpus else f"only {have_gpus} visible"
            return (
                f"{what} asks for {want_gpus} GPU{_plural(want_gpus)} per trial but this "
                f"machine has {have} ({cap.gpus.source}); use a scheduler driver or set "
                f"resources.gpus = {have_gpus}"
            )
        want_cpus = _cpus_of(resources)
        if want_cpus > cap.cpus_total:
            return (
                f"{what} asks for {want_cpus} CPUs per trial but the local driver may use "
                f"{cap.cpus_total}; lower resources.cpus or raise the driver's 'cpus' option"
            )
        return None

    def _enqueue_once(self, job: JobRequest) -> str:
        """Queue ``job`` unless its token is known here or in its job.json; returns its id."""
        current = self._job_id(job.token)
        if current is not None:
            return current
        if job.token in self._unsettled or _read_job(job.attempt_dir, job.token) is not None:
            ref = JobRef(job.token, None, job.attempt_dir)
            gone = self._reconcile(ref)
            return self._job_id(job.token) or (gone and gone.job_id) or _queued_job_id(job.token)
        self._enqueue(job, time.time())
        return _queued_job_id(job.token)

    def _enqueue(self, job: JobRequest, submitted_at: float) -> None:
        self._queue[job.token] = _Queued(job, submitted_at)
        try:
            self._write_state(job.token, job.attempt_dir, "queued", submitted_at=submitted_at)
        except OSError as exc:
            del self._queue[job.token]
            where = Path(job.attempt_dir) / JOB_FILE
            raise DriverError(f"local driver: cannot write {where}: {exc}") from exc

    def _start_queued(self, retryable: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
        """Start queued jobs, in order, while the head fits; returns ``{token: error}``
        for ``retryable`` tokens that failed to start (they are forgotten, to be offered
        again); other failures are recorded as failed jobs."""
        failures: dict[str, str] = {}
        if self._queue and not self._may_launch():
            return failures  # the daemon lost its lease: these jobs are not ours to start
        cap = self._cap()
        while self._queue:
            token, queued = next(iter(self._queue.items()))
            if not cap.can_ever_fit(queued.cpus, queued.gpus):
                self._fail(queued, self._misfit(queued.request.resources, "job") or "too big")
                continue
            if not cap.fits(queued.cpus, queued.gpus):
                break
            del self._queue[token]
            try:
                self._spawn(queued)
            except OSError as exc:
                error = f"could not start {queued.request.argv[:1]}: {exc}"
                if _short_of_resources(exc) and token not in retryable:
                    # certainly not started, and no fault of the job's: first in line again
                    self._queue = {token: queued, **self._queue}
                    log.warning("local driver: cannot start jobs now (%s); retrying", exc)
                    break
                if token in retryable:
                    failures[token] = error
                    (Path(queued.request.attempt_dir) / JOB_FILE).unlink(missing_ok=True)
                else:
                    self._fail(queued, error)
        return failures

    def _fail(self, queued: _Queued, error: str) -> None:
        token = queued.request.token
        self._queue.pop(token, None)
        self._ended[token] = f"failed to start: {error}"
        self._record(token, queued.request.attempt_dir, "failed", error=error)
        log.warning("local driver: job %s failed to start: %s", token, error)

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, queued: _Queued) -> None:
        """Start one job in its own session; its GPUs go into CUDA_VISIBLE_DEVICES."""
        job, cap = queued.request, self._cap()
        gpu_ids = cap.take(job.token, queued.cpus, queued.gpus)
        spawn = secrets.token_hex(6)  # claimed by whoever forks it (see _recover_from_state)
        forked_near = _boot_ticks()
        try:
            self._write_state(
                job.token, job.attempt_dir, "starting", gpu_ids=list(gpu_ids), spawn=spawn
            )
            pid, popen = self._fork(job, gpu_ids, spawn)
        except _Unsure as exc:
            self._unsure(
                job.token, _Unsettled(job.attempt_dir, queued.cpus, gpu_ids, None, 0, ""), exc
            )
            return
        except OSError:  # certainly not started (see _fork)
            cap.release(job.token)
            raise
        try:
            self._started(queued, gpu_ids, pid, popen)
        except Exception as exc:  # after the fork, nothing means "not started"
            entry = _Unsettled(job.attempt_dir, queued.cpus, gpu_ids, pid, forked_near, "")
            self._unsure(job.token, entry, exc)

    def _started(
        self,
        queued: _Queued,
        gpu_ids: tuple[str, ...],
        pid: int,
        popen: subprocess.Popen[bytes] | None,
    ) -> None:
        """Track a job just forked; raises (EMFILE...) if its pidfd or stat cannot be had."""
        job = queued.request
        pidfd = _pidfd_or_exited(pid)
        try:
            stat = read_proc_stat(pid)
            self._ensure_watcher()
        except BaseException:
            os.close(pidfd)
            raise
        running = _Running(
            token=job.token,
            pid=pid,
            starttime=stat.starttime if stat else 0,
            attempt_dir=job.attempt_dir,
            cpus=queued.cpus,
            gpu_ids=gpu_ids,
            kill_timeout=self._kill_timeout(job.options),
            started_at=time.time(),
            popen=popen,
        )
        self._track(running, pidfd)

    def _unsure(self, token: str, entry: _Unsettled, exc: BaseException) -> None:
        """The job may be running: keep job.json "starting" and its capacity, and look for
        it at each poll (``_reconcile``); never report it as not started."""
        entry.why = str(exc) or type(exc).__name__
        self._unsettled[token] = entry
        self._cap().hold(token, entry.cpus, entry.gpu_ids)
        where = f"pid {entry.pid}" if entry.pid else "no pid yet"
        log.warning(
            "local driver: job %s may have started (%s) but cannot be tracked now: %s; "
            "looking for it again at the next poll",
            token,
            where,
            entry.why,
        )

    def _fork(
        self, job: JobRequest, gpu_ids: tuple[str, ...], spawn: str
    ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Start a job through the fork server (~1 ms), or with Popen if it is unavailable.

        Either way the spawn id is claimed first, so it is started at most once.
        """
        env = dict(os.environ) | dict(job.env) | self._gpu_env(gpu_ids) | {TOKEN_ENV: job.token}
        log_path = str(Path(job.attempt_dir) / LOG_FILE)
        if self._forkserver is None:
            self._forkserver = ForkServerClient()
        sent = True
        try:
            pid = self._forkserver.spawn(list(job.argv), env, job.attempt_dir, log_path, spawn)
            return pid, None
        except SpawnNotSent as exc:
            sent = False
            log.warning("local driver: no fork server (%s); starting with Popen", exc)
        except OSError as exc:
            log.warning("local driver: fork server failed (%s); starting with Popen", exc)
        # The spawn claim decides: ours means nothing forked it (nor ever will).
        try:
            claimed = claim_spawn(job.attempt_dir, spawn)
        except OSError as exc:
            if not sent:
                raise  # no server got the request: certainly not started
            raise _Unsure(f"the fork server may have started it; cannot check ({exc})") from exc
        if not claimed:
            raise _Unsure("the fork server may have started it; not starting it again")
        popen = self._popen(job, gpu_ids)  # raises only if the job did not start
        return popen.pid, popen

    def _popen(self, job: JobRequest, gpu_ids: tuple[str, ...]) -> subprocess.Popen[bytes]:
        env = dict(os.environ) | dict(job.env) | self._gpu_env(gpu_ids) | {TOKEN_ENV: job.token}
        with open(Path(job.attempt_dir) / LOG_FILE, "ab") as log_file:
            return subprocess.Popen(
                list(job.argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                cwd=job.attempt_dir,
                close_fds=True,
                start_new_session=True,
            )

    def _gpu_env(self, gpu_ids: tuple[str, ...]) -> dict[str, str]:
        """Always set: a job that asked for no GPU sees none, instead of everyone's GPU 0."""
        env = {"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)}
        if self._cap().gpus.pci_order and "CUDA_DEVICE_ORDER" not in os.environ:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # so indices mean what nvidia-smi says
        return env

    def _track(self, running: _Running, pidfd: int) -> None:
        """Account a started or adopted job and hand its pidfd to the watcher."""
        watcher = self._ensure_watcher()  # before anything: it may fail (EMFILE)
        self._running[running.token] = running
        # If this write fails the job runs anyway: "starting" + its token in /proc find it.
        self._record(
            running.token,
            running.attempt_dir,
            "running",
            job_id=running.job_id,
            pid=running.pid,
            starttime=running.starttime,
            gpu_ids=list(running.gpu_ids),
            started_at=running.started_at,
        )
        watcher.watch(running.token, pidfd)

    def _ensure_watcher(self) -> _ExitWatcher:
        if self._watcher is None:
            self._watcher = _ExitWatcher(self._on_exits, self._on_wake)
        return self._watcher

    def _adopt(self, ref: JobRef, pid: int, starttime: int, data: Mapping[str, Any] | None) -> bool:
        """Take over a job a previous daemon started; False if it is not running any more."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:  # ProcessLookupError included
            if _short_of_resources(exc):
                raise  # cannot look now: not the same as "not running"
            return False
        # Checked after opening: if the pid was recycled in between, starttime differs.
        try:
            alive = _is_alive(pid, starttime)
            if alive:
                self._ensure_watcher()
        except BaseException:
            os.close(pidfd)
            raise
        if not alive:
            os.close(pidfd)
            return False
        data = data or {}
        request = data.get("request") or {}
        gpu_ids = tuple(str(gpu) for gpu in data.get("gpu_ids") or ())
        running = _Running(
            token=ref.token,
            pid=pid,
            starttime=starttime,
            attempt_dir=ref.attempt_dir,
            cpus=int(request.get("cpus") or 1),
            gpu_ids=gpu_ids,
            kill_timeout=self._kill_timeout(request.get("options") or {}),
            started_at=float(data.get("started_at") or time.time()),
        )
        self._cap().hold(ref.token, running.cpus, gpu_ids)
        self._track(running, pidfd)
        log.info("local driver: adopted job %s (pid %d)", ref.token, pid)
        return True

    def _notice_missed_exits(self) -> None:
        """Jobs whose exit the watcher did not report (it could not watch them: out of
        descriptors) are ended here, at the poll, from /proc; unknown counts as alive."""
        ended = []
        for token, running in self._running.items():
            try:
                if not _is_alive(running.pid, running.starttime):
                    ended.append(token)
            except OSError:
                continue
        if ended:
            log.warning("local driver: exits noticed at the poll, not by the watcher: %s", ended)
            self._on_exits(ended)

    def _on_exits(self, tokens: list[str]) -> None:
        """Watcher thread: reap, free capacity, start what fits, then wake the daemon."""
        with self._lock:
            for token in tokens:
                running = self._running.pop(token, None)
                if running is not None:
                    _reap(running)
                    self._cap().release(token)
            self._start_queued()
        self._wakeup()

    def _on_wake(self) -> float | None:
        """Watcher thread: SIGKILL cancelled jobs past their deadline; seconds to the next."""
        with self._lock:
            now = time.monotonic()
            for running in self._running.values():
                if running.kill_at is not None and running.kill_at <= now:
                    running.kill_at = None
                    _kill_session(running)
            deadlines = [r.kill_at for r in self._running.values() if r.kill_at is not None]
            return max(0.0, min(deadlines) - now) if deadlines else None

    def _cancel_one(self, token: str) -> None:
        queued = self._queue.pop(token, None)
        if queued is not None:
            self._ended[token] = "cancelled before it started"
            self._record(token, queued.request.attempt_dir, "cancelled")
            return
        running = self._running.get(token)
        if running is None:
            return
        try:
            os.killpg(running.pid, signal.SIGTERM)  # the runner forwards it and escalates
        except ProcessLookupError:
            return
        if running.kill_at is None:
            running.kill_at = time.monotonic() + running.kill_timeout

    def _kill_timeout(self, job_options: Mapping[str, Any]) -> float:
        value = job_options.get("kill_timeout", self.options.get("kill_timeout"))
        return float(value) if value is not None else DEFAULT_KILL_TIMEOUT

    # -- state and recovery --------------------------------------------------------------

    def _knows(self, token: str) -> bool:
        return token in self._queue or token in self._running or token in self._ended

    def _job_id(self, token: str) -> str | None:
        if token in self._running:
            return self._running[token].job_id
        if token in self._queue:
            return _queued_job_id(token)
        return None

    def _known_status(self, token: str) -> JobStatus | None:
        if token in self._running:
            job_id = self._running[token].job_id
            return JobStatus("running", job_id, host=self._host, scheduler_state="running")
        if token in self._queue:
            reason = self._queue_reason(token)
            return JobStatus("queued", _queued_job_id(token), reason, scheduler_state="queued")
        if token in self._ended:
            reason = self._ended[token]
            return JobStatus("gone", _queued_job_id(token), reason=reason, scheduler_state="ended")
        return None

    def _queue_reason(self, token: str) -> str:
        position = list(self._queue).index(token)
        queued = self._queue[token]
        need = f"{queued.cpus} CPU{_plural(queued.cpus)}"
        if queued.gpus:
            need += f" and {queued.gpus} GPU{_plural(queued.gpus)}"
        return f"waiting for {need}; {position} job{_plural(position)} ahead in the local queue"

    def _reconcile(self, ref: JobRef) -> JobStatus | None:
        """``_recover`` a job this driver does not track; while that cannot tell (out of
        descriptors...), the job stays unsettled and is reported queued, state unknown."""
        held = self._unsettled.pop(ref.token, None)
        if held is not None:
            self._cap().release(ref.token)  # _adopt holds it again if the job runs
        try:
            status = self._recover(ref, held)
        except (_Unsure, OSError) as exc:
            entry = held or _Unsettled(ref.attempt_dir, 0, (), None, 0, "")
            entry.why = str(exc) or type(exc).__name__
            self._unsettled[ref.token] = entry
            self._cap().hold(ref.token, entry.cpus, entry.gpu_ids)
            reason = f"may be running; state unknown for now ({entry.why}); looking again"
            return JobStatus("queued", ref.job_id, reason, scheduler_state="unknown")
        if held is not None:
            log.info("local driver: job %s settled after: %s", ref.token, held.why)
        if ref.token in self._cancel_later and self._knows(ref.token):
            self._cancel_later.discard(ref.token)
            self._cancel_one(ref.token)
        return status

    def _recover(self, ref: JobRef, hint: _Unsettled | None = None) -> JobStatus | None:
        """Make sense of a job this driver instance never saw (a restarted daemon), or
        one it could not track when it started it (``hint``).

        Adopts it if it still runs, re-queues it if it never started; otherwise
        returns the "gone" status to report. Raises OSError if it cannot look.
        """
        data = _read_job(ref.attempt_dir, ref.token)
        ids = parse_job_id(ref.job_id) or parse_job_id(data.get("job_id") if data else None)
        if ids is not None:
            adopted = self._adopt(ref, *ids, data)
            return None if adopted else JobStatus("gone", format_job_id(*ids))
        if data is None:
            return JobStatus("gone", ref.job_id, reason="the local driver has no job.json for it")
        return self._recover_from_state(ref, data, hint)

    def _recover_from_state(
        self, ref: JobRef, data: dict[str, Any], hint: _Unsettled | None = None
    ) -> JobStatus | None:
        state = data.get("state")
        if state == "queued":
            try:
                request = _request_from_json(ref.token, ref.attempt_dir, data["request"])
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"its job.json cannot be read back ({exc!r}); it never started"
                return JobStatus("gone", ref.job_id, reason=reason)
            # job.json already says "queued" with this request: nothing to write
            self._queue[ref.token] = _Queued(request, float(data.get("submitted_at") or 0))
            return None
        if state == "starting":
            found = (
                _forked_leader(ref.attempt_dir)
                or _find_session_leader(ref.token)
                or _leader_from_hint(hint)
            )
            if found is not None and self._adopt(ref, *found, data):
                return None
            if self._never_spawned(ref, data):
                return self._requeue(ref, data)
            reason = "it was starting when the previous daemon stopped and is not running now"
            return JobStatus("gone", ref.job_id, reason=reason)
        if state == "cancelled":
            return JobStatus("gone", ref.job_id, reason="cancelled before it started")
        return JobStatus("gone", ref.job_id, reason=f"failed to start: {data.get('error')}")

    @staticmethod
    def _never_spawned(ref: JobRef, data: Mapping[str, Any]) -> bool:
        """Claim the spawn job.json recorded with "starting": True if we won, i.e. nothing
        forked it before and nothing will (job.json of an older clusterd has no spawn id)."""
        spawn = data.get("spawn")
        if not isinstance(spawn, str):
            return False
        try:
            return claim_spawn(ref.attempt_dir, spawn)
        except OSError as exc:
            if _short_of_resources(exc):
                raise  # cannot claim now: not the same as "claimed by the spawner"
            log.warning("local driver: cannot claim spawn %s of %s: %s", spawn, ref.token, exc)
            return False
        except ValueError as exc:
            log.warning("local driver: cannot claim spawn %s of %s: %s", spawn, ref.token, exc)
            return False

    def _requeue(self, ref: JobRef, data: Mapping[str, Any]) -> JobStatus | None:
        """Queue again a job caught "starting" that never ran (see _never_spawned)."""
        try:
            request = _request_from_json(ref.token, ref.attempt_dir, data["request"])
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"its job.json cannot be read back ({exc!r}); it never started"
            return JobStatus("gone", ref.job_id, reason=reason)
        self._queue[ref.token] = _Queued(request, float(data.get("submitted_at") or time.time()))
        self._record(ref.token, ref.attempt_dir, "queued")
        log.info(
            "local driver: job %s never started before the last daemon stopped; queued", ref.token
        )
        return None

    def _write_state(self, token: str, attempt_dir: str, state: str, **fields: Any) -> None:
        """Record a transition in job.json, keeping what earlier transitions wrote."""
        path = Path(attempt_dir) / JOB_FILE
        data = read_job_file(attempt_dir, token) or {"version": 1, "driver": self.name}
        if "request" not in data and token in self._queue:
            data["request"] = _request_to_json(self._queue[token].request)
        data.update(fields, token=token, state=state, host=self._host)
        data.setdefault("job_id", _queued_job_id(token))
        write_json_atomic(path, data)

    def _record(self, token: str, attempt_dir: str, state: str, **fields: Any) -> None:
        """``_write_state`` where the transition has happened anyway: a failed write is
        logged (the daemon log says which attempt dir is unwritable), never raised."""
        try:
            self._write_state(token, attempt_dir, state, **fields)
        except OSError as exc:
            log.error("local driver: cannot record job %s as %s: %s", token, state, exc)

    def _describe(self) -> ClusterInfo:
        cap = self._cap()
        users = cap.gpu_users()
        info = {str(g.index): g for g in cap.gpus.info}
        gpus = [_describe_gpu(gpu, tokens, info.get(gpu)) for gpu, tokens in users.items()]
        queue = [_describe_running(r) for r in self._running.values()]
        queue += [_describe_queued(q) for q in self._queue.values()]
        queue += [
            {"token": token, "state": "unknown", "pid": u.pid, "reason": u.why}
            for token, u in self._unsettled.items()
        ]
        node = {
            "host": self._host,
            "cpus": cap.cpus_total,
            "cpus_free": max(0, cap.cpus_total - cap.cpus_used),
            "gpus": len(cap.gpus.ids),
            "gpus_free": len(cap.free_gpus()),
            "running": len(self._running),
            "queued": len(self._queue),
        }
        return ClusterInfo(
            driver=self.name, nodes=[node], gpus=gpus, queue=queue, notes=[cap.gpus.source]
        )


def _describe_running(running: _Running) -> dict[str, Any]:
    return {
        "token": running.token,
        "job_id": running.job_id,
        "state": "running",
        "pid": running.pid,
        "cpus": running.cpus,
        "gpus": list(running.gpu_ids),
        "started_at": running.started_at,
    }


def _describe_queued(queued: _Queued) -> dict[str, Any]:
    return {
        "token": queued.request.token,
        "job_id": _queued_job_id(queued.request.token),
        "state": "queued",
        "cpus": queued.cpus,
        "gpus": queued.gpus,
        "submitted_at": queued.submitted_at,
    }


def _describe_gpu(gpu: str, tokens: list[str], info: GpuInfo | None) -> dict[str, Any]:
    described: dict[str, Any] = {"id": gpu, "busy": bool(tokens), "jobs": tokens}
    if info is not None:
        described.update(index=info.index, uuid=info.uuid, name=info.name)
        described["memory_mb"] = info.memory_mb
    return described


def _pidfd_or_exited(pid: int) -> int:
    """A pidfd for ``pid``; if the job already ended (and was reaped by the fork server),
    an fd that is readable at once, so the watcher reports the exit all the same."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.write(write_fd, b"x")
        os.close(write_fd)
        return read_fd


def _reap(running: _Running) -> None:
    """Collect the exit status of our own child; an adopted job may not be our child."""
    if running.popen is not None:
        running.popen.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(running.pid, os.WNOHANG)


def _detach(children: list[subprocess.Popen[bytes]]) -> None:
    """Drop our children without reaping them: they must outlive this driver. Popen
    warns when dropped while its process runs; here that is the point (and subprocess
    still reaps them later through its ``_active`` list)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        children.clear()


def _kill_child(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


def _kill_session(running: _Running) -> None:
    """SIGKILL the runner and everything in its session (the user's command runs in a
    process group of its own, so killing the runner's group alone would miss it)."""
    if not _is_alive(running.pid, running.starttime):
        return  # exited meanwhile: its pid, hence its session id, may be reused
    log.warning("local driver: job %s ignored SIGTERM; killing its session", running.token)
    for pid in [running.pid, *_session_members(running.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _check_options(options: Mapping[str, Any], valid: Sequence[str], where: str) -> None:
    """Reject unknown keys (listing the valid ones) and values of the wrong type."""
    for key, value in options.items():
        if key not in valid:
            raise DriverError(f"{where}: unknown option {key!r}; valid options: {', '.join(valid)}")
        if key == "cpus" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise DriverError(f"{where}: 'cpus' must be a positive integer, got {value!r}")
        if key == "cpus" and value < 1:
            raise DriverError(f"{where}: 'cpus' must be a positive integer, got {value!r}")
        if key == "gpus" and not isinstance(value, list | tuple):
            raise DriverError(f"{where}: 'gpus' must be a list of GPU ids, got {value!r}")
        if key == "kill_timeout" and not (isinstance(value, int | float) and value >= 0):
            raise DriverError(f"{where}: 'kill_timeout' must be seconds >= 0, got {value!r}")


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``LocalDriver`` (listed in pyproject's ``clusterd`` entry points)."""
    registry.add(LocalDriver)
