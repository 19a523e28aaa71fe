"""PBS (PBS Pro and Torque): scheduler calls and daemon CPU per poll, vs one qsub per job.

No PBS server runs here, so both sides talk to the stand-in ``qsub``/``qstat``/``qdel`` of
``tests/standins/pbs`` (real processes printing the recorded real formats; they count
every call they get). Per dialect:

clusterd: ``PbsDriver.submit`` of N attempts (held, so that nothing runs and the figures
are the scheduler traffic alone), ``PbsDriver.poll`` of all of them ``POLLS`` times,
``PbsDriver.cancel``. Counted: qsub, qstat and qdel calls; timed: the submission, and
each poll's CPU in this process (``time.process_time``: the daemon's share; the stand-in
``qstat`` is a child) and wall, median of ``POLLS``. Poll cost at 1,000 and 10,000 jobs.
Baseline, same stand-in: one ``qsub -h`` per job and one ``qstat -f <id>`` per job per
poll (what cluster_utils and Clustrix do). It costs a process per job, so it is measured
on ``--per-job`` jobs (default 100) and its per-job cost is scaled to N (marked
"scaled").

    python benchmarks/bench_pbs.py [--quick] [-n 1000] [--sizes 1000,10000] [--per-job 100]
                                   [--flavor pbspro|torque|both]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common as C

sys.path.insert(0, str(C.REPO))  # the stand-in lives under tests/

N_FULL, N_QUICK = 1000, 20
SIZES_FULL, SIZES_QUICK = (1_000, 10_000), (100, 500)
PER_JOB_FULL, PER_JOB_QUICK = 100, 10
POLLS = 5


@dataclass
class Side:
    """One dialect's figures."""

    flavor: str
    n: int
    qsub: int = 0
    submit_wall: float = 0.0
    qstat_per_poll: list[int] = field(default_factory=list)
    qdel: int = 0
    poll_cpu: dict[int, float] = field(default_factory=dict)  # jobs -> median CPU s
    poll_wall: dict[int, float] = field(default_factory=dict)
    per_job_n: int = 0
    per_job_qsub_wall: float = 0.0
    per_job_poll_cpu: float = 0.0  # CPU of one per-job poll of per_job_n jobs
    per_job_poll_wall: float = 0.0
    per_job_qstat: int = 0


def requests(root: Path, n: int, tag: str) -> list:
    """N attempts as the daemon hands them to ``submit`` (argv: ``true``; held anyway)."""
    from clusterd.drivers.base import JobRequest
    from clusterd.spec.model import Resources

    jobs = []
    for i in range(n):
        adir = root / f"runs-{tag}" / str(i) / "attempt-1"
        adir.mkdir(parents=True)
        jobs.append(
            JobRequest(
                token=f"cd-bench-{i}-1-{tag}",
                sweep=f"bench{tag}",
                trial_index=i,
                attempt=1,
                attempt_dir=str(adir),
                argv=("true",),
                resources=Resources(cpus=1, memory_mb=100),
            )
        )
    return jobs


def through_driver(server, root: Path, n: int, tag: str) -> tuple:
    """Submit N held attempts, poll them ``POLLS`` times, cancel: the driver's figures."""
    from clusterd.drivers.base import JobRef
    from clusterd.drivers.pbs import PbsDriver

    jobs = requests(root, n, tag)
    driver = PbsDriver({"poll_interval": 1})
    driver.flavor()  # qstat --version, once per daemon: not part of the figures
    server.engine.set_auto(hold_next="bench: held so that nothing runs")
    server.engine.clear_calls()
    t0 = time.perf_counter()
    ids = driver.submit(jobs)
    submit_wall = time.perf_counter() - t0
    if len(ids) != n:
        raise RuntimeError(f"only {len(ids)} of {n} attempts were submitted")
    qsubs = len(server.calls("qsub"))
    refs = [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]
    cpu, wall, per_poll = [], [], []
    for _ in range(POLLS):
        before = len(server.calls("qstat"))
        c0, w0 = time.process_time(), time.perf_counter()
        statuses = driver.poll(refs)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        per_poll.append(len(server.calls("qstat")) - before)
        queued = sum(s.phase == "queued" for s in statuses.values())
        if queued != n:
            raise RuntimeError(f"{queued} of {n} held jobs polled as queued")
    before = len(server.calls("qdel"))
    driver.cancel(refs)
    qdels = len(server.calls("qdel")) - before
    driver.close()
    return qsubs, submit_wall, per_poll, statuses_cost(cpu, wall), qdels


def statuses_cost(cpu: list[float], wall: list[float]) -> tuple[float, float]:
    return statistics.median(cpu), statistics.median(wall)


def per_job(server, root: Path, n: int) -> tuple[float, float, float, int]:
    """One ``qsub -h`` per job, then one poll as ``qstat -f <id>`` per job; ``(qsub wall,
    poll CPU here, poll wall, qstat calls)``."""
    script = root / "per-job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    env = {**os.environ, **server.env}
    t0 = time.perf_counter()
    ids = []
    for i in range(n):
        done = subprocess.run(
            ["qsub", "-h", "-N", f"perjob{i}", str(script)],
            env=env, cwd=root, capture_output=True, text=True, check=True,
        )  # fmt: skip
        ids.append(done.stdout.strip())
    qsub_wall = time.perf_counter() - t0
    before = len(server.calls("qstat"))
    c0, w0 = time.process_time(), time.perf_counter()
    for job_id in ids:
        argv = ["qstat", "-f", "-F", "json", job_id] if server.site.pro else ["qstat", "-x", job_id]
        subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    calls = len(server.calls("qstat")) - before
    subprocess.run(["qdel", *ids], env=env, capture_output=True, check=False)
    return qsub_wall, cpu, wall, calls


def measure(flavor: str, n: int, sizes: tuple[int, ...], per_job_n: int) -> Side:
    from tests.standins.pbs.fixture import pbs_standin

    side = Side(flavor, n)
    with C.workdir(f"cdb-pbs-{flavor}-") as root, pbs_standin(flavor) as server:
        saved = dict(os.environ)
        os.environ.update(server.env)
        try:
            qsubs, wall, per_poll, _, qdels = through_driver(server, root, n, "calls")
            side.qsub, side.submit_wall, side.qstat_per_poll, side.qdel = (
                qsubs, wall, per_poll, qdels
            )  # fmt: skip
            print(f"{flavor}: {n} attempts, {qsubs} qsub, {C.fmt_s(wall)}", flush=True)
            for size in sizes:
                _, _, per_poll, (cpu, pwall), _ = through_driver(server, root, size, f"p{size}")
                side.poll_cpu[size], side.poll_wall[size] = cpu, pwall
                side.qstat_per_poll += per_poll
                print(f"{flavor}: poll of {size:,} jobs: {C.fmt_s(cpu)} CPU", flush=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    # the baseline on a fresh server of its own: the same stand-in cost per command
    with C.workdir(f"cdb-pbs-{flavor}-") as root, pbs_standin(flavor) as server:
        side.per_job_n = per_job_n
        (side.per_job_qsub_wall, side.per_job_poll_cpu, side.per_job_poll_wall,
         side.per_job_qstat) = per_job(server, root, per_job_n)  # fmt: skip
        print(f"{flavor}: one qsub per job x{per_job_n}: "
              f"{C.fmt_s(side.per_job_qsub_wall)}", flush=True)  # fmt: skip
    return side


def report(side: Side, table: C.Table) -> None:
    n, k = side.n, side.per_job_n
    scale = n / k if k else 0.0
    label = "PBS Pro" if side.flavor == "pbspro" else "Torque"
    table.add(
        f"{label}: qsub calls, {n:,} attempts",
        f"{side.qsub}",
        f"{n:,} (one per job)",
        f"1/{n // max(1, side.qsub)}",
        "1 (= ceil(N / max_array_size))",
        side.qsub == 1,
    )
    table.add(
        f"{label}: submission wall, {n:,} attempts",
        C.fmt_s(side.submit_wall),
        f"{C.fmt_s(side.per_job_qsub_wall * scale)} (scaled from {k})",
        C.fmt_ratio(side.per_job_qsub_wall * scale / side.submit_wall) if side.submit_wall else "-",
    )
    most = max(side.qstat_per_poll, default=0)
    table.add(
        f"{label}: qstat calls per poll (max, any size)",
        f"{most}",
        f"{n:,} (one per job; {side.per_job_qstat} for {k})",
        "-",
        "1",
        most == 1,
    )
    table.add(
        f"{label}: qdel calls to cancel {n:,}",
        f"{side.qdel}",
        f"{n:,} (one per job)",
        "-",
        "1",
        side.qdel == 1,
    )
    for size in sorted(side.poll_cpu):
        base_cpu = side.per_job_poll_cpu * size / k if k else 0.0
        base_wall = side.per_job_poll_wall * size / k if k else 0.0
        table.add(
            f"{label}: daemon CPU per poll, {size:,} held jobs (wall)",
            f"{C.fmt_s(side.poll_cpu[size])} ({C.fmt_s(side.poll_wall[size])})",
            f"{C.fmt_s(base_cpu)} ({C.fmt_s(base_wall)}) scaled",
            C.fmt_ratio(base_cpu / side.poll_cpu[size]) if side.poll_cpu[size] else "-",
            "< 1 s" if size >= 10_000 else "-",
            side.poll_cpu[size] < 1.0 if size >= 10_000 else None,
        )
    sizes = sorted(side.poll_cpu)
    if len(sizes) >= 2 and side.poll_cpu[sizes[0]]:
        small, big = sizes[0], sizes[-1]
        growth = side.poll_cpu[big] / side.poll_cpu[small]
        table.add(
            f"{label}: CPU growth, {small:,} -> {big:,} jobs",
            f"{growth:.1f}x",
            f"{big / small:g}x (linear)",
            "-",
            "≤ linear",
            growth <= big / small * 1.2,
        )


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help=f"attempts (default {N_FULL})")
    p.add_argument("--sizes", default=None, help="jobs per poll-cost run, comma-separated")
    p.add_argument("--per-job", type=int, default=None, help="jobs of the one-qsub-per-job side")
    p.add_argument("--flavor", choices=("pbspro", "torque", "both"), default="both")
    args = p.parse_args(argv)
    n = args.n or (N_QUICK if args.quick else N_FULL)
    sizes = (
        tuple(int(x) for x in args.sizes.split(","))
        if args.sizes
        else (SIZES_QUICK if args.quick else SIZES_FULL)
    )
    per_job_n = args.per_job or (PER_JOB_QUICK if args.quick else PER_JOB_FULL)
    C.header(
        f"bench_pbs: {n} attempts and polls of {', '.join(f'{s:,}' for s in sizes)} jobs on "
        "the stand-in PBS, clusterd's driver vs one qsub/qstat per job",
        args.quick,
    )
    flavors = ("pbspro", "torque") if args.flavor == "both" else (args.flavor,)
    table = C.Table("PBS (stand-in server, recorded real formats)")
    for flavor in flavors:
        report(measure(flavor, n, sizes, per_job_n), table)
    table.note(
        "the daemon's CPU is this process's (the driver); the stand-in qstat's own CPU "
        "(rendering JSON/XML in Python) is not counted, as a real pbs_server's would not be"
    )
    table.note(
        f"one-qsub-per-job figures are measured on {per_job_n} jobs and scaled linearly "
        "(each job costs a qsub process, each poll a qstat process per job)"
    )
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
