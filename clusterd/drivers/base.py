"""What a scheduler driver is: a short list of batch-shaped methods.

The daemon never calls a driver per job in a loop: it hands over every pending
attempt of a sweep in one ``submit`` call, asks about every live job in one
``poll`` call, and cancels many at once. Drivers never import the daemon.

An attempt is identified by its ``token`` (unique, stored in the database before
``submit`` is called). A driver must be able to find a job again from its token
after a daemon restart (``find``) -- that is what makes "submitted at most once
per attempt" possible.

The exit status of an attempt is *not* the driver's business: the runner writes
``status.json`` in the attempt directory and the daemon reads it. A driver only
says where a job is (queued, running, gone) and, for jobs that never ran or were
killed by the scheduler, why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from clusterd.drivers.options import Option, option_problem
from clusterd.errors import SpecError
from clusterd.spec.model import Resources, SweepSpec

__all__ = [
    "ClusterInfo",
    "Driver",
    "JobPhase",
    "JobRef",
    "JobRequest",
    "JobStatus",
]

JobPhase = Literal["queued", "running", "gone", "unknown"]
"""queued: waiting in the scheduler; running: started; gone: no longer known to the
scheduler (finished, cancelled, failed to start -- the daemon reads status.json);
unknown: the query failed this time, ask again later."""


@dataclass(frozen=True)
class JobRequest:
    """One attempt to submit."""

    token: str  # unique per attempt, e.g. "cd-lr-depth-7-2-9f3a"
    sweep: str
    trial_index: int
    attempt: int
    attempt_dir: str  # absolute; exists; the runner writes its files here
    argv: tuple[str, ...]  # the runner command line; the driver runs exactly this
    resources: Resources
    options: Mapping[str, Any] = field(default_factory=dict)  # [drivers.<name>] table
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the runner
    #: hosts where this sweep's trials keep failing; schedulers with a host choice avoid them
    exclude_hosts: tuple[str, ...] = ()
    #: the sweep's ``[resume] signal`` ("none": no signal), sent ``resume_lead`` seconds
    #: before ``resources.time`` (by the scheduler where it can, e.g. sbatch --signal);
    #: drivers never read it back from launch.json
    resume_signal: str = "none"
    resume_lead: int = 0


@dataclass(frozen=True)
class JobRef:
    """A submitted attempt as the daemon remembers it."""

    token: str
    job_id: str | None  # None while the daemon does not know it yet (crash mid-submit)
    attempt_dir: str


@dataclass(frozen=True)
class JobStatus:
    phase: JobPhase
    job_id: str | None = None
    reason: str | None = None  # pending reason, or why a job is gone (e.g. "NODE_FAIL")
    host: str | None = None
    scheduler_state: str | None = None  # raw state as the scheduler spelled it


@dataclass
class ClusterInfo:
    """What ``clusterctl cluster`` shows: free-form but with these common keys."""

    driver: str
    partitions: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Driver(ABC):
    """Base class of every driver. Subclasses are named ``<Backend>Driver``.

    Drivers are constructed once per daemon with their global options and are
    called from a worker thread, one call at a time.
    """

    name: ClassVar[str]
    #: seconds between polls when nothing happens; shared schedulers use >= 30
    poll_interval: ClassVar[float] = 30.0
    #: True only where the scheduler itself enforces ``resources.time`` (Slurm); the safe
    #: default is False: the runner then sends TERM at the limit (and KILL after the grace)
    enforces_time_limit: ClassVar[bool] = False
    #: seconds a job may be gone without the runner's status.json appearing before the
    #: attempt is declared lost (shared filesystems can lag behind the scheduler)
    status_grace: ClassVar[float] = 60.0
    #: every option the driver takes (clusterd.drivers.options): checked by ``validate``
    #: (a sweep's table) and by the constructor (driver-wide options), listed by
    #: ``clusterctl drivers --options``
    option_specs: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self._wakeup: Callable[[], None] = lambda: None
        self._may_launch: Callable[[], bool] = lambda: True

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        """Register a thread-safe callback to call when a job may have changed state.

        Drivers that learn about exits by notification (the local driver) call it
        so that the daemon polls at once instead of waiting ``poll_interval``.
        """
        self._wakeup = callback

    def set_launch_guard(self, may_launch: Callable[[], bool]) -> None:
        """Register a thread-safe check to ask before starting a job on the driver's own.

        A driver that starts jobs outside ``submit`` (the local driver starts queued jobs
        as slots free up, on its watcher thread) asks it first and starts nothing while it
        is False: the daemon lost its lease, and the jobs are another daemon's now.
        """
        self._may_launch = may_launch

    def validate(self, spec: SweepSpec) -> None:
        """Raise ``UnsupportedResource``/``SpecError`` if this driver cannot run the sweep.

        Called at submit time, before anything is persisted. The default checks the
        sweep's ``[drivers.<name>]`` table against ``option_specs`` (unknown keys are
        refused, listing the valid ones); overrides call it first.
        """
        table = spec.driver_options.get(self.name, {})
        problem = option_problem(self.option_specs, table, sweep=True)
        if problem is not None:
            raise SpecError(spec.source, f"drivers.{self.name}", problem)

    @abstractmethod
    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """Submit all ``jobs``; return ``{token: job_id}`` for those accepted.

        Raise ``DriverError`` if nothing could be submitted. A token missing from
        the result was not submitted and will be offered again.
        """

    @abstractmethod
    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """Return the status of every job in ``jobs`` (by token), in one scheduler query."""

    @abstractmethod
    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """Ask the scheduler to stop these jobs (the runner gets SIGTERM first)."""

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """Find jobs whose id the daemon lost (crash between submit and commit).

        Return ``{token: job_id}`` for the ones the scheduler (or the attempt
        directory) still knows. The default looks nowhere.
        """
        return {}

    def describe_cluster(self) -> ClusterInfo:
        return ClusterInfo(driver=self.name)

    def eligible_hosts(self, resources: Resources, options: Mapping[str, Any]) -> set[str] | None:
        """The hosts a job with these resources and ``[drivers.<name>]`` options may run on
        (e.g. its partition's nodes), so that the daemon never excludes the last of them;
        None where the driver cannot tell (the default). Called only when some host is
        about to be excluded; drivers should cache the answer."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; running jobs keep running."""
