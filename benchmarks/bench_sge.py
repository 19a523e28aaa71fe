"""Grid Engine: qsub and qstat calls and daemon CPU per poll, clusterd's SGE driver vs one
qsub per job, against the real single-host SGE of ``.ci/sge-setup.sh``.

Submission: ``SgeDriver.submit`` of N attempts as the daemon hands them over (one call),
held (``[drivers.sge] extra = ["-h"]``, so that they do not run: only submission is
compared), then ``SgeDriver.cancel`` of all of them; beside it, one ``qsub -h`` per job
(cluster_utils' and Clustrix's pattern) for the same N, then one ``qdel`` by name. Every
scheduler command goes through a counting ``CommandRunner`` (ours) or is counted as it
is run (the baseline).

Poll cost: N = 1,000 and 10,000 held array tasks really in the queue, polled by
``SgeDriver.poll`` with a ref per task: scheduler calls per poll, the daemon's CPU per
poll (``time.process_time``: this process only) and qstat's own (the children's CPU),
median of 5 polls; beside it, one ``qstat -j <id>`` per job (how per-job tools poll),
timed over ``PER_JOB_SAMPLE`` jobs and scaled to N (labelled so).

    python benchmarks/bench_sge.py [--quick] [-n 1000] [--part all|submit|poll]

Needs the Grid Engine of ``.ci/sge-setup.sh`` (run as root; the script starts it).
Without it, it prints the table with no figures and says why.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import _common as C

N_FULL = 1000
N_QUICK = 20
POLL_SIZES_FULL = (1_000, 10_000)
POLL_SIZES_QUICK = (20, 100)
POLLS = 5
PER_JOB_SAMPLE = 100  # qstat -j calls timed for the per-job poll baseline
SETUP = C.REPO / ".ci" / "sge-setup.sh"


class Counting:
    """A ``CommandRunner`` that runs the real command and counts calls by name."""

    def __init__(self) -> None:
        from clusterd.drivers.batch.commands import run_command

        self.run = run_command
        self.calls: list[str] = []

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv[0])
        return self.run(argv, timeout, stdin)

    def count(self, since: int = 0) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in self.calls[since:]:
            counts[name] = counts.get(name, 0) + 1
        return counts


@dataclass
class Submitted:
    wall: float
    calls: dict[str, int]


def requests(root: Path, n: int) -> list:  # list[JobRequest]
    """N attempts as the daemon submits them (held through ``extra``)."""
    from clusterd.drivers.base import JobRequest
    from clusterd.spec.model import Resources

    jobs = []
    for i in range(n):
        adir = root / "runs" / f"{i}" / "attempt-1"
        adir.mkdir(parents=True)
        jobs.append(
            JobRequest(
                token=f"cd-bench-{i}-1-{os.getpid():x}",
                sweep="bench",
                trial_index=i,
                attempt=1,
                attempt_dir=str(adir),
                argv=("true",),
                resources=Resources(cpus=1),
                options={"extra": ["-h"]},
            )
        )
    return jobs


def submit_ours(root: Path, n: int) -> tuple[Submitted, list, object, Counting]:
    from clusterd.drivers.base import JobRef
    from clusterd.drivers.sge import SgeDriver

    counting = Counting()
    driver = SgeDriver({"command_timeout": 120}, run=counting)
    jobs = requests(root, n)
    t0 = time.perf_counter()
    ids = driver.submit(jobs)
    wall = time.perf_counter() - t0
    if len(ids) != n:
        raise RuntimeError(f"{len(ids)} of {n} attempts submitted")
    refs = [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]
    return Submitted(wall, counting.count()), refs, driver, counting


def submit_per_job(root: Path, n: int) -> Submitted:
    """One held ``qsub`` per job, then one ``qdel`` of them all by name."""
    from clusterd.drivers.batch.commands import run_command

    name = f"cdb-perjob-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        for _ in range(n):
            argv = ["qsub", "-terse", "-h", "-N", name, "-b", "y", "-o", "/dev/null", "-j", "y"]
            done = run_command([*argv, "true"], 60)
            if done.returncode != 0:
                raise RuntimeError(f"qsub failed: {done.stderr.strip()}")
        wall = time.perf_counter() - t0
    finally:
        run_command(["qdel", name], 120)
    return Submitted(wall, {"qsub": n})


def poll_cost(root: Path, n: int) -> dict[str, float]:
    """CPU and calls of ``SgeDriver.poll`` over ``n`` held tasks, and the per-job baseline."""
    from clusterd.drivers.batch.commands import run_command

    submitted, refs, driver, counting = submit_ours(root / f"poll-{n}", n)
    try:
        cpu, child, wall, calls = [], [], [], []
        for _ in range(POLLS):
            before = len(counting.calls)
            c0, w0 = time.process_time(), time.perf_counter()
            k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            statuses = driver.poll(refs)  # type: ignore[attr-defined]
            k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            child.append((k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime))
            calls.append(len(counting.calls) - before)
            queued = sum(s.phase == "queued" for s in statuses.values())
            if queued != n:
                raise RuntimeError(f"{queued} of {n} held tasks polled as queued")
        sample = [ref.job_id.split(".")[0] for ref in refs[: min(n, PER_JOB_SAMPLE)]]
        k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        for job in sample:
            run_command(["qstat", "-j", job], 60)
        per_wall = (time.perf_counter() - w0) / len(sample) * n
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_cpu = ((k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)) / len(sample) * n
    finally:
        driver.cancel(refs)  # type: ignore[attr-defined]
    return {
        "cpu": C.median(cpu),
        "qstat_cpu": C.median(child),
        "wall": C.median(wall),
        "calls": max(calls),
        "submit_calls": submitted.calls.get("qsub", 0),
        "per_job_wall": per_wall,
        "per_job_cpu": per_cpu,
    }


def sge_problem() -> str | None:
    """Why the local Grid Engine cannot be used, or None once it is up."""
    try:
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{SETUP} took over 10 minutes"
    if done.returncode != 0:
        return f"{SETUP} exited {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}"
    return None


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help=f"attempts (default {N_FULL})")
    p.add_argument("--part", choices=("all", "submit", "poll"), default="all")
    args = p.parse_args(argv)
    n = args.n or (N_QUICK if args.quick else N_FULL)
    C.header(f"bench_sge: {n} attempts, SGE driver vs one qsub per job; CPU per poll", args.quick)
    table = C.Table(f"Grid Engine: the local single-host SGE ({n} attempts submitted)")
    problem = sge_problem()
    if problem is not None:
        table.add(f"qsub calls for {n} attempts", "-", "-")
        table.note(f"not measured: {problem}")
        table.print()
        return 0
    with C.workdir("cdb-sge-") as root:
        if args.part in ("all", "submit"):
            ours, refs, driver, _ = submit_ours(root / "ours", n)
            driver.cancel(refs)  # type: ignore[attr-defined]
            theirs = submit_per_job(root / "per-job", n)
            print(f"clusterd: {C.fmt_s(ours.wall)}; per job: {C.fmt_s(theirs.wall)}", flush=True)
            qsubs = ours.calls.get("qsub", 0)
            table.add(
                f"qsub calls for {n:,} attempts",
                f"{qsubs}",
                f"{theirs.calls['qsub']:,}",
                C.fmt_ratio(theirs.calls["qsub"] / qsubs if qsubs else None),
                "1 array",
                qsubs == 1,
            )
            table.add(
                f"submission wall, {n:,} attempts",
                C.fmt_s(ours.wall),
                C.fmt_s(theirs.wall),
                C.fmt_ratio(theirs.wall / ours.wall if ours.wall else None),
            )
            table.note(f"clusterd's submit ran {ours.calls} (qconf -sconf: max_aj_tasks, once)")
        if args.part in ("all", "poll"):
            for size in POLL_SIZES_QUICK if args.quick else POLL_SIZES_FULL:
                cost = poll_cost(root, size)
                print(f"poll of {size} tasks: {C.fmt_s(cost['cpu'])} CPU", flush=True)
                table.add(
                    f"status calls per poll, {size:,} held tasks",
                    f"{cost['calls']:.0f}",
                    f"{size:,} (qstat -j each)",
                    "-",
                    "1",
                    cost["calls"] == 1,
                )
                table.add(
                    f"daemon CPU per poll, {size:,} tasks (+ qstat's own)",
                    f"{C.fmt_s(cost['cpu'])} (+{C.fmt_s(cost['qstat_cpu'])})",
                    f"{C.fmt_s(cost['per_job_cpu'])} qstat CPU*",
                    "-",
                    "< 1 s" if size >= 10_000 else "-",
                    cost["cpu"] < 1.0 if size >= 10_000 else None,
                )
                table.add(
                    f"poll wall, {size:,} tasks",
                    C.fmt_s(cost["wall"]),
                    f"{C.fmt_s(cost['per_job_wall'])}*",
                    C.fmt_ratio(cost["per_job_wall"] / cost["wall"] if cost["wall"] else None),
                )
                table.note(
                    f"{size:,} held tasks were {cost['submit_calls']:.0f} qsub call(s) of ours"
                )
            table.note(
                f"* one qstat -j per job: timed over {PER_JOB_SAMPLE} jobs, scaled to the size"
            )
    table.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
