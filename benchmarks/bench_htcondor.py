"""The HTCondor driver's submit and poll costs vs cluster_utils' pattern, on the stand-ins.

Debian has no HTCondor, so both sides run against the same stand-in commands
(``tests/standins/htcondor``: real ``htcondor2.Submit`` parsing, real ClassAd
constraints, the recorded event-log format), which count every call they answer.

clusterd: ``HTCondorDriver.submit`` of N attempts (each the real clusterd runner with a
launch.json, as the daemon submits them), then ``poll`` of all N refs, 6 times: the
first poll reads the event log from the start, the next 5 are the steady state. The jobs
stay idle for the whole run (``[drivers.htcondor] requirements`` that no machine meets:
the stand-in matches them with the ClassAd library), so the queue does not change while
it is polled. Per poll: ``condor_q``/``condor_history`` calls (counted by the stand-ins),
event-log opens (counted by an audit hook in this process, which is the daemon's side)
and the CPU of this process (``time.process_time``). Then ``cancel``: its ``condor_rm``
calls.

Baseline, cluster_utils' pattern: one ``condor_submit`` per job, each job with its own
log, and every job's log read again (``htcondor2.JobEventLog``, from the start) on every
loop. Its submit is measured on ``--per-job`` jobs (default 50) and its wall time
scaled to N (said so in the table); its logs for the poll figures are N files holding
the records the stand-in writes for a submitted job.

    python benchmarks/bench_htcondor.py [--quick] [-n 1000] [--sizes 1000,10000]
                                         [--per-job 50]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _common as C

sys.path.insert(0, str(C.REPO))  # tests.standins

N_FULL, N_QUICK = 1000, 20
SIZES_FULL, SIZES_QUICK = (1_000, 10_000), (100, 1_000)
PER_JOB_FULL, PER_JOB_QUICK = 50, 5
STEADY_POLLS = 5
NOWHERE = 'TARGET.Machine == "nowhere.invalid"'  # no slot matches: the jobs stay idle


class LogOpens:
    """Counts ``open`` calls of this process on files named ``suffix`` (an audit hook:
    it sees builtins.open, io.open and os.open alike)."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.count = 0
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and str(args[0]).endswith(self.suffix):
            self.count += 1


@dataclass
class Polls:
    n: int
    submit_calls: int = 0
    submit_wall: float = 0.0
    first_cpu: float = 0.0
    cpu: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)  # condor_q + condor_history per poll
    opens: list[int] = field(default_factory=list)  # event-log opens per poll
    rm_calls: int = 0


@contextmanager
def standins(root: Path) -> Iterator[Any]:
    from tests.standins.htcondor.fixture import condor_standins

    with condor_standins(root, slots=1) as condor:
        saved = {k: os.environ.get(k) for k in condor.env}
        os.environ.update(condor.env)
        try:
            yield condor
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def queries(condor: Any) -> int:
    return len(condor.calls("condor_q")) + len(condor.calls("condor_history"))


def write_launch(adir: Path, index: int) -> None:
    """The launch.json the daemon writes (docs/runtime.md) for a trial running ``true``."""
    adir.mkdir(parents=True)
    launch = {
        "version": 1, "sweep": "bench", "trial_index": index, "trial_id": f"bench/{index}",
        "attempt": 1, "trial_dir": str(adir.parent), "attempt_dir": str(adir),
        "command": ["true"], "params": {}, "cwd": str(adir),
        "resume": {"exit_code": 3, "signal": "USR1", "signal_lead": 120},
        "time_limit": None, "enforce_time_limit": False, "kill_grace": 10, "gpu_interval": 10,
    }  # fmt: skip
    (adir / "launch.json").write_text(json.dumps(launch))


def driver_class() -> Any:
    from clusterd.testing.harness import load_driver_class

    return load_driver_class("htcondor", ["clusterd.drivers.htcondor"])


def run_clusterd(root: Path, n: int, opens: LogOpens) -> Polls:
    from clusterd.daemon.scheduler import RUNNER_ARGV
    from clusterd.drivers.base import JobRef, JobRequest
    from clusterd.spec.model import Resources

    result = Polls(n)
    with standins(root / "condor") as condor:
        options = {"poll_interval": 1, "requirements": NOWHERE}
        jobs = []
        for i in range(n):
            adir = root / "runs" / str(i) / "attempt-1"
            write_launch(adir, i)
            jobs.append(
                JobRequest(
                    token=f"cd-bench-{i}-1-{os.getpid():x}",
                    sweep="bench",
                    trial_index=i,
                    attempt=1,
                    attempt_dir=str(adir),
                    argv=(*RUNNER_ARGV, str(adir / "launch.json")),
                    resources=Resources(cpus=1, memory_mb=100),
                    options=options,
                )
            )
        # the stand-in's condor_rm of 10,000 ids takes longer than the default 30 s
        driver = driver_class()({"command_timeout": 600})
        try:
            t0 = time.perf_counter()
            ids = driver.submit(jobs)
            result.submit_wall = time.perf_counter() - t0
            result.submit_calls = len(condor.calls("condor_submit"))
            if len(ids) != n:
                raise RuntimeError(f"only {len(ids)} of {n} attempts were submitted")
            refs = [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]
            for poll in range(STEADY_POLLS + 1):
                q0, o0, c0 = queries(condor), opens.count, time.process_time()
                statuses = driver.poll(refs)
                cpu = time.process_time() - c0
                queued = sum(s.phase == "queued" for s in statuses.values())
                if queued != n:
                    raise RuntimeError(f"{queued} of {n} idle jobs polled as queued")
                if poll == 0:
                    result.first_cpu = cpu
                    continue
                result.cpu.append(cpu)
                result.queries.append(queries(condor) - q0)
                result.opens.append(opens.count - o0)
            before = len(condor.calls("condor_rm"))
            driver.cancel(refs)
            result.rm_calls = len(condor.calls("condor_rm")) - before
        finally:
            driver.close()
    return result


def per_job_submit(root: Path, count: int) -> tuple[float, int]:
    """cluster_utils' submit: ``count`` condor_submit calls, one job and one log each
    (idle: requirements no slot meets). Returns (wall seconds, condor_submit calls)."""
    from clusterd.drivers.batch.commands import run_command

    with standins(root / "condor") as condor:
        jobs = root / "jobs"
        jobs.mkdir(parents=True)
        t0 = time.perf_counter()
        for i in range(count):
            sub = jobs / f"{i}.sub"
            sub.write_text(
                f"executable = /bin/true\nlog = {jobs}/{i}.log\noutput = {jobs}/{i}.out\n"
                f"error = {jobs}/{i}.err\nrequest_cpus = 1\nrequest_memory = 100\n"
                f"requirements = {NOWHERE}\nqueue\n"
            )
            done = run_command(["condor_submit", str(sub)], 60)
            if done.returncode != 0:
                raise RuntimeError(f"condor_submit failed: {done.stderr.strip()}")
        wall = time.perf_counter() - t0
        calls = len(condor.calls("condor_submit"))
    return wall, calls


def per_job_logs(root: Path, n: int) -> list[Path]:
    """N per-job logs as the stand-in writes them for a submitted, idle job."""
    from tests.standins.htcondor.events import records

    root.mkdir(parents=True)
    paths = []
    for i in range(n):
        job = SimpleNamespace(cluster=i + 1, index=0, owner="bench", attrs={}, runs=0)
        path = root / f"{i}.log"
        path.write_text("".join(records(job, "submit")))
        paths.append(path)
    return paths


def per_job_poll_cpu(paths: list[Path]) -> float:
    """Median CPU of one loop of cluster_utils' pattern: every log parsed from the start."""
    import htcondor2

    cpu = []
    for _ in range(STEADY_POLLS):
        c0 = time.process_time()
        for path in paths:
            for _event in htcondor2.JobEventLog(str(path)).events(0):
                pass
        cpu.append(time.process_time() - c0)
    return C.median(cpu)


def report(calls: Polls, per_job: tuple[float, int], per_job_n: int, table: C.Table) -> None:
    n = calls.n
    table.add(
        f"condor_submit calls, {n} attempts",
        f"{calls.submit_calls}",
        f"{n} (one per job)",
        f"1/{n // max(1, calls.submit_calls)}",
        "1",
        calls.submit_calls == 1,
    )
    wall, counted = per_job
    scaled = wall / max(1, per_job_n) * n
    table.add(
        f"submit wall, {n} attempts",
        C.fmt_s(calls.submit_wall),
        f"{C.fmt_s(scaled)} (scaled from {counted} submits in {C.fmt_s(wall)})",
        C.fmt_ratio(scaled / calls.submit_wall) if calls.submit_wall else "-",
    )
    table.add(
        "condor_rm calls to cancel them",
        f"{calls.rm_calls}",
        "-",
        "-",
        "1",
        calls.rm_calls == 1,
    )


def report_polls(results: dict[int, tuple[Polls, float]], table: C.Table) -> None:
    for n in sorted(results):
        ours, base = results[n]
        cpu = C.median(ours.cpu)
        q = max(ours.queries)
        opens = max(ours.opens)
        table.add(
            f"condor_q + condor_history calls per steady poll, {n:,} jobs (max)",
            f"{q}",
            "-",
            "-",
            "0",
            q == 0,
        )
        table.add(
            f"event-log opens per steady poll, {n:,} jobs (max)",
            f"{opens}",
            f"{n:,} (every job's log)",
            "-",
            "≤ 1",
            opens <= 1,
        )
        table.add(
            f"daemon CPU per steady poll, {n:,} idle jobs (median of {STEADY_POLLS})",
            C.fmt_s(cpu),
            f"{C.fmt_s(base)} (every log re-read)",
            C.fmt_ratio(base / cpu) if cpu else "-",
            "< 1 s at 10,000" if n >= 10_000 else "-",
            cpu < 1.0 if n >= 10_000 else None,
        )
        table.note(
            f"{n:,} jobs: first poll (the whole log read once) {C.fmt_s(ours.first_cpu)} CPU"
        )


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help=f"attempts (default {N_FULL})")
    p.add_argument("--sizes", default=None, help="poll sizes, comma separated")
    p.add_argument("--per-job", type=int, default=None, help="baseline submits to time")
    args = p.parse_args(argv)
    n = args.n or (N_QUICK if args.quick else N_FULL)
    sizes = (
        tuple(int(s) for s in args.sizes.split(","))
        if args.sizes
        else (SIZES_QUICK if args.quick else SIZES_FULL)
    )
    per_job_n = args.per_job or (PER_JOB_QUICK if args.quick else PER_JOB_FULL)
    C.header(
        f"bench_htcondor: {n} attempts, one condor_submit vs one per job; poll CPU at "
        f"{', '.join(f'{s:,}' for s in sizes)} jobs (stand-in HTCondor)",
        args.quick,
    )
    table = C.Table("HTCondor driver on the stand-in HTCondor (tests/standins/htcondor)")
    try:
        driver_class()
    except AssertionError as exc:
        table.add(f"condor_submit calls, {n} attempts", "-", "-")
        table.note(f"not measured: {exc}")
        table.print()
        return 0
    opens = LogOpens("events.log")
    with C.workdir("cdb-htc-") as root:
        calls = run_clusterd(root / "calls", n, opens)
        print(f"clusterd: {n} attempts in {calls.submit_calls} condor_submit", flush=True)
        per_job = per_job_submit(root / "per-job", per_job_n)
        print(f"per job: {per_job[1]} condor_submit in {C.fmt_s(per_job[0])}", flush=True)
        results: dict[int, tuple[Polls, float]] = {}
        for size in sizes:
            ours = calls if size == n else run_clusterd(root / f"poll-{size}", size, opens)
            base = per_job_poll_cpu(per_job_logs(root / f"logs-{size}", size))
            results[size] = (ours, base)
            print(f"poll of {size:,}: {C.fmt_s(C.median(ours.cpu))} CPU", flush=True)
    report(calls, per_job, per_job_n, table)
    report_polls(results, table)
    table.note(
        "the baseline's logs are parsed by htcondor2.JobEventLog (HTCondor's C++ reader), "
        "each holding one submit record: the cheapest case for re-reading"
    )
    table.note(
        "both sides use the same stand-in commands; the stand-in's own work (its Python "
        "start, the engine's state files) is in the wall times, not in the CPU per poll"
    )
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
