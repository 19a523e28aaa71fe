"""1,000 trivial attempts through the Slurm driver vs submitit and one-sbatch-per-job; poll CPU.

clusterd: ``SlurmDriver.submit`` of N attempts -- each the real clusterd runner with a
launch.json whose command is ``true``, as the daemon submits them -- then
``SlurmDriver.poll`` every ``--poll`` seconds until every attempt is gone (the daemon's
loop without the daemon). Timed from the submit call to the poll that sees the last one
gone.
Baseline, same cluster, same N, one CPU and 100 MB per task: submitit's
``AutoExecutor(cluster="slurm")`` running ``executor.map_array(trivial, range(N))`` and
``job.result()`` for every job (its own polling: result files every second, ``sacct``
at growing intervals).
Scheduler calls are counted by shims: a temp dir first on PATH whose ``sbatch``,
``squeue``, ``sacct``, ``scontrol``, ``scancel``, ``sacctmgr``, ``sinfo`` and ``srun``
log their name and ``exec`` the real one. Jobs inherit PATH, so ``srun`` calls made
inside jobs (submitit starts every task with one: a job step for slurmctld) are counted
too, apart. Runs alternate (ours, submitit, ours, ...) so that both see the same cluster.
The one-node cluster runs 2 tasks at a time (2 CPUs): wall time is mostly Slurm's.
Second baseline: one ``sbatch`` per job (what cluster_utils does), N jobs submitted
``--hold`` (so they do not compete with the runs above) and cancelled: its submission
calls and submission wall time.

Poll cost (``--part cpu``): N = 1,000 and 10,000 held array tasks really in the queue
(``sbatch --hold --array``, chunks of MaxArraySize - 1), polled by ``SlurmDriver.poll``
with a ref per task; the daemon's CPU per poll (``time.process_time``: this process
only, ``squeue`` itself is a child and slurmctld's work) and the wall time, median of 5
polls, then ``scancel``. Target: < 1 s CPU at 10,000, growing no faster than linearly.

    python benchmarks/bench_slurm.py [--quick] [--runs 1] [--poll 30] [-n 1000]
                                      [--part all|calls|cpu]

Needs the local Slurm of ``.ci/slurm-setup.sh`` (run as root; the script starts it) and
submitit (the ``bench`` extra). Without them it prints the table with no figures and says
why.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common as C

N_FULL = 1000
N_QUICK = 10
POLL_SIZES_FULL = (1_000, 10_000)
POLL_SIZES_QUICK = (100, 1_000)
POLLS = 5
COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sacctmgr", "sinfo", "srun")
LOGIN_NODE = COMMANDS[:-1]  # what the submitting side runs; srun runs inside the jobs
SETUP = C.REPO / ".ci" / "slurm-setup.sh"
TIMEOUT = 600.0


def trivial(i: int) -> int:
    """submitit's task: as little work as ``true``."""
    return i


@dataclass
class Result:
    wall: float
    calls: collections.Counter[str]
    polls: int = 0
    squeue_per_poll: list[int] = field(default_factory=list)
    submit_wall: float = 0.0
    poll_cpu: list[float] = field(default_factory=list)  # process_time of each poll

    def scheduler_calls(self) -> int:
        return sum(self.calls[c] for c in LOGIN_NODE)


# --------------------------------------------------------------------------- shims


class Shims:
    """A dir of counting wrappers, first on this process's PATH (and so its jobs')."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "shims"
        self.log = root / "calls.log"
        self.dir.mkdir()
        self.log.touch()
        for name in COMMANDS:
            real = shutil.which(name)
            if real is None:
                continue
            shim = self.dir / name
            shim.write_text(f'#!/bin/sh\necho {name} >>"{self.log}"\nexec {real} "$@"\n')
            shim.chmod(0o755)
        os.environ["PATH"] = f"{self.dir}{os.pathsep}{os.environ['PATH']}"

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(self.log.read_text().split())

    def since(self, before: collections.Counter[str]) -> collections.Counter[str]:
        return self.counts() - before


# --------------------------------------------------------------------------- runs


def write_launch(adir: Path, index: int) -> None:
    """The launch.json the daemon writes (docs/runtime.md) for a trial running ``true``."""
    adir.mkdir(parents=True)
    launch = {
        "version": 1,
        "sweep": "bench",
        "trial_index": index,
        "trial_id": f"bench/{index}",
        "attempt": 1,
        "trial_dir": str(adir.parent),
        "attempt_dir": str(adir),
        "command": ["true"],
        "params": {},
        "cwd": str(adir),
        "resume": {"exit_code": 3, "signal": "USR1", "signal_lead": 120},
        "time_limit": None,
        "enforce_time_limit": False,
        "kill_grace": 10,
        "gpu_interval": 10,
    }
    (adir / "launch.json").write_text(json.dumps(launch))


def run_clusterd(root: Path, n: int, poll: float, shims: Shims) -> Result:
    from clusterd.daemon.scheduler import RUNNER_ARGV
    from clusterd.drivers.base import JobRef, JobRequest
    from clusterd.drivers.slurm import SlurmDriver
    from clusterd.spec.model import Resources

    out = root / "runs-bench"
    jobs = []
    for i in range(n):
        adir = out / str(i) / "attempt-1"
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
            )
        )
    driver = SlurmDriver({"poll_interval": poll})
    before = shims.counts()
    t0 = time.perf_counter()
    ids = driver.submit(jobs)
    if len(ids) != n:
        raise RuntimeError(f"only {len(ids)} of {n} attempts were submitted")
    refs = [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]
    result = Result(0.0, collections.Counter(), submit_wall=time.perf_counter() - t0)
    while True:
        squeues = shims.counts()["squeue"]
        cpu = time.process_time()
        statuses = driver.poll(refs)
        result.poll_cpu.append(time.process_time() - cpu)
        result.polls += 1
        result.squeue_per_poll.append(shims.counts()["squeue"] - squeues)
        if all(s.phase == "gone" for s in statuses.values()):
            break
        if time.perf_counter() - t0 > TIMEOUT:
            driver.cancel(refs)
            raise RuntimeError(f"not done after {TIMEOUT:.0f} s")
        time.sleep(poll)
    result.wall = time.perf_counter() - t0
    result.calls = shims.since(before)
    for job in jobs:
        status = json.loads((Path(job.attempt_dir) / "status.json").read_text())
        if status["exit_code"] != 0:
            raise RuntimeError(f"{job.attempt_dir}: {status}")
    return result


def run_submitit(root: Path, n: int, shims: Shims) -> Result:
    import submitit

    executor = submitit.AutoExecutor(folder=str(root / "submitit"), cluster="slurm")
    executor.update_parameters(
        timeout_min=10, cpus_per_task=1, slurm_mem="100M", slurm_array_parallelism=n
    )
    before = shims.counts()
    t0 = time.perf_counter()
    jobs = executor.map_array(trivial, range(n))
    results = [job.result() for job in jobs]
    wall = time.perf_counter() - t0
    if results != list(range(n)):
        raise RuntimeError("submitit returned wrong results")
    return Result(wall, shims.since(before))


def run_per_job(root: Path, n: int, shims: Shims) -> Result:
    """One ``sbatch`` per job, as cluster_utils submits: held, then cancelled (only the
    submission is compared; running them would take as long as the arrays above)."""
    from clusterd.drivers.batch.commands import run_command

    name = f"cdb-perjob-{os.getpid()}"
    root.mkdir(parents=True)
    before = shims.counts()
    t0 = time.perf_counter()
    try:
        for _ in range(n):
            argv = ["sbatch", "--parsable", "--hold", f"--job-name={name}", "--cpus-per-task=1"]
            argv += ["--mem=100M", f"--output={root}/%j.out", "--wrap=true"]
            done = run_command(argv, 60)
            if done.returncode != 0:
                raise RuntimeError(f"sbatch failed: {done.stderr.strip()}")
        wall = time.perf_counter() - t0
        calls = shims.since(before)
    finally:
        run_command(["scancel", f"--name={name}"], 60)
    return Result(wall, calls)


def poll_cost(root: Path, n: int, chunk: int) -> tuple[float, float, int]:
    """``(median CPU s, median wall s, squeue lines)`` of ``SlurmDriver.poll`` over ``n``
    held array tasks in the real queue."""
    from clusterd.drivers.base import JobRef
    from clusterd.drivers.batch.commands import run_command
    from clusterd.drivers.slurm import SlurmDriver

    name = f"cd.bench-poll.{os.getpid():x}{n}"
    adirs = root / f"poll-{n}"
    adirs.mkdir(parents=True)
    refs: list[JobRef] = []
    try:
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            argv = ["sbatch", "--parsable", "--hold", f"--array=0-{size - 1}"]
            argv += [f"--job-name={name}", "--output=/dev/null", "--wrap=true"]
            done = run_command(argv, 60)
            if done.returncode != 0:
                raise RuntimeError(f"sbatch failed: {done.stderr.strip()}")
            array_id = done.stdout.strip().split(";")[0]
            for task in range(size):
                adir = adirs / f"{start + task}"
                adir.mkdir()
                refs.append(JobRef(f"t{start + task}", f"{array_id}_{task}", str(adir)))
        driver = SlurmDriver()
        cpu, wall = [], []
        for _ in range(POLLS):
            c0, w0 = time.process_time(), time.perf_counter()
            statuses = driver.poll(refs)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            queued = sum(s.phase == "queued" for s in statuses.values())
            if queued != n:
                raise RuntimeError(f"{queued} of {n} held tasks polled as queued")
        listed = run_command(["squeue", "--me", "--noheader", "--array"], 60).stdout
        lines = len(listed.splitlines())
    finally:
        run_command(["scancel", f"--name={name}"], 60)
    return C.median(cpu), C.median(wall), lines


# --------------------------------------------------------------------------- setup


def slurm_problem() -> str | None:
    """Why the local Slurm cannot be used, or None once it is up (setup is idempotent)."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install -e '.[bench]')"
    try:
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{SETUP} took over 10 minutes"
    if done.returncode != 0:
        return f"{SETUP} exited {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}"
    return None


def max_array_size() -> int:
    from clusterd.drivers.batch.commands import run_command
    from clusterd.drivers.slurm import parse_scontrol_config

    out = run_command(["scontrol", "show", "config"], 30, None).stdout
    return int(parse_scontrol_config(out)["MaxArraySize"])


# --------------------------------------------------------------------------- report


def report(
    ours: list[Result],
    theirs: list[Result],
    per_job: Result | None,
    n: int,
    poll: float,
    table: C.Table,
) -> None:
    wall = C.median([r.wall for r in ours])
    base = C.median([r.wall for r in theirs])
    sbatch = max(r.calls["sbatch"] for r in ours)
    arrays = math.ceil(n / max_array_size())
    per_poll = max(max(r.squeue_per_poll) for r in ours)
    polls = C.median([r.polls for r in ours])

    def med(results: list[Result], command: str) -> float:
        return C.median([r.calls[command] for r in results])

    ours_q = C.median([r.calls["squeue"] + r.calls["sacct"] for r in ours])
    base_q = C.median([r.calls["squeue"] + r.calls["sacct"] for r in theirs])
    ours_all = C.median([r.scheduler_calls() for r in ours])
    base_all = C.median([r.scheduler_calls() for r in theirs])
    table.add(
        f"wall, submit to all {n} done (median)",
        C.fmt_s(wall),
        C.fmt_s(base),
        C.fmt_ratio(base / wall) if wall else "-",
        f"≤ submitit's + one poll ({poll:g} s)",
        wall <= base + poll,
    )
    table.add(
        "sbatch calls",
        f"{sbatch:g}",
        f"{med(theirs, 'sbatch'):g}",
        "-",
        f"≤ ceil({n}/MaxArraySize) = {arrays}",
        sbatch <= arrays,
    )
    per_job_sbatch = per_job.calls["sbatch"] if per_job else n
    table.add(
        "sbatch vs one sbatch per job",
        f"{sbatch:g}",
        f"{per_job_sbatch} (cluster_utils)",
        f"1/{per_job_sbatch // max(1, sbatch)}",
        "≤ 1/100",
        sbatch * 100 <= per_job_sbatch if n >= 100 else None,
    )
    if per_job is not None:
        table.add(
            f"submission wall, {n} jobs",
            C.fmt_s(C.median([r.submit_wall for r in ours])),
            f"{C.fmt_s(per_job.wall)} (one sbatch per job)",
            C.fmt_ratio(per_job.wall / C.median([r.submit_wall for r in ours])),
        )
    table.add("squeue calls per poll (max)", f"{per_poll}", "-", "-", "1", per_poll == 1)
    cpu = C.median([c for r in ours for c in r.poll_cpu])
    table.add(f"daemon CPU per poll, {n} jobs (median)", C.fmt_s(cpu), "-", "-")
    table.add(
        f"polls (every {poll:g} s)",
        f"{polls:g}",
        "-",
        "-",
        "-",
    )
    table.add(
        "squeue + sacct calls, submit to done",
        f"{ours_q:g} ({med(ours, 'squeue'):g} + {med(ours, 'sacct'):g})",
        f"{base_q:g} ({med(theirs, 'squeue'):g} + {med(theirs, 'sacct'):g})",
        C.fmt_ratio(base_q / ours_q) if ours_q else "-",
    )
    table.add(
        "all scheduler calls (login side)",
        f"{ours_all:g}",
        f"{base_all:g}",
        C.fmt_ratio(base_all / ours_all) if ours_all else "-",
    )
    table.add(
        "srun job steps, inside the jobs",
        f"{med(ours, 'srun'):g}",
        f"{med(theirs, 'srun'):g}",
        "-",
        "0",
        med(ours, "srun") == 0,
    )
    others = ("scontrol", "sacctmgr", "sinfo", "scancel")
    other = ", ".join(f"{c} {med(ours, c):g}" for c in others if med(ours, c))
    table.note(f"clusterd's other calls per run: {other or 'none'} (read once per driver)")
    table.note(
        f"runs: clusterd {len(ours)} ({', '.join(C.fmt_s(r.wall) for r in ours)}), "
        f"submitit {len(theirs)} ({', '.join(C.fmt_s(r.wall) for r in theirs)})"
    )
    table.note(
        "clusterd's wall includes up to one poll interval after the last task ends; "
        "its tasks run the clusterd runner (status.json, events), submitit's unpickle a function"
    )


def report_poll_cost(costs: dict[int, tuple[float, float, int]], table: C.Table) -> None:
    sizes = sorted(costs)
    for n in sizes:
        cpu, wall, lines = costs[n]
        target = "< 1 s" if n >= 10_000 else "-"
        table.add(
            f"daemon CPU per poll, {n:,} held tasks in the queue (wall)",
            f"{C.fmt_s(cpu)} ({C.fmt_s(wall)})",
            "-",
            "-",
            target,
            cpu < 1.0 if n >= 10_000 else None,
        )
        table.note(f"{n:,} tasks: squeue --array printed {lines:,} lines")
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        growth = costs[big][0] / costs[small][0] if costs[small][0] else float("inf")
        table.add(
            f"CPU growth, {small:,} -> {big:,} tasks",
            f"{growth:.1f}x",
            f"{big / small:g}x (linear)",
            "-",
            "≤ linear",
            growth <= big / small * 1.2,  # 20 % for noise
        )


def main(argv: list[str] | None = None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1, help="runs of each side (default 1)")
    p.add_argument("--poll", type=float, default=30.0, help="clusterd's poll interval, s")
    p.add_argument("-n", type=int, default=None, help=f"tasks (default {N_FULL})")
    p.add_argument("--part", choices=("all", "calls", "cpu"), default="all")
    args = p.parse_args(argv)
    n = args.n or (N_QUICK if args.quick else N_FULL)
    runs = 1 if args.quick else max(1, args.runs)
    poll = min(args.poll, 2.0) if args.quick else args.poll
    C.header(
        f"bench_slurm: {n} trivial tasks, clusterd's Slurm driver vs submitit and "
        "one sbatch per job; CPU per poll",
        args.quick,
    )
    table = C.Table(f"Slurm: {n} tasks on the local one-node Slurm")
    problem = slurm_problem()
    if problem is not None:
        table.add(f"wall, submit to all {n} done", "-", "-")
        table.note(f"not measured: {problem}")
        table.print()
        return 0
    ours: list[Result] = []
    theirs: list[Result] = []
    costs: dict[int, tuple[float, float, int]] = {}
    with C.workdir("cdb-slurm-") as root:
        shims = Shims(root)
        if args.part in ("all", "cpu"):
            chunk = min(max_array_size() - 1, 1000)
            for size in POLL_SIZES_QUICK if args.quick else POLL_SIZES_FULL:
                costs[size] = poll_cost(root, size, chunk)
                print(f"poll of {size} tasks: {C.fmt_s(costs[size][0])} CPU", flush=True)
        per_job = None
        if args.part in ("all", "calls"):
            for run in range(runs):
                ours.append(run_clusterd(root / f"ours-{run}", n, poll, shims))
                print(f"clusterd run {run + 1}: {C.fmt_s(ours[-1].wall)}", flush=True)
                theirs.append(run_submitit(root / f"submitit-{run}", n, shims))
                print(f"submitit run {run + 1}: {C.fmt_s(theirs[-1].wall)}", flush=True)
            per_job = run_per_job(root / "per-job", n, shims)
            print(f"one sbatch per job: {C.fmt_s(per_job.wall)}", flush=True)
    if ours:
        report(ours, theirs, per_job, n, poll, table)
    if costs:
        report_poll_cost(costs, table)
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
