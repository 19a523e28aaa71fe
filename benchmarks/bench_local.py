"""500 trivial trials end to end through the daemon and the local driver.

clusterd: a sweep of N trials whose command is ``true`` (params are appended as
``--key=value`` and ignored), max_concurrent = 2, submitted over the socket; timed from
the submit request to the sweep's ``done`` event (a subscription, no polling).
Baselines, same command, 2 at a time, same run:
  - submitit ``LocalExecutor`` running ``subprocess.run(["true"])`` N times (a sliding
    window keeps 2 jobs in flight);
  - a plain ``concurrent.futures.ProcessPoolExecutor(2)`` running the same N times.
Per-trial overhead = (clusterd wall - pool wall) x 2 / N: the slot time clusterd adds to
each trial over a plain pool. Exit-to-next-start latency: per attempt dir, status.json
``ended_at`` of the k-th exit vs runner.json ``started_at`` of the (k+2)-th start (the
trial that took the freed slot), split at launch.json's mtime (the daemon's decision).
Targets: overhead <= 25 ms/trial; >= 10x submitit's throughput; >= 0.8x the pool's;
exit-to-next-start median <= 50 ms.

    python benchmarks/bench_local.py [--quick]
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as C

CONCURRENCY = 2
TARGET_OVERHEAD = 0.025
TARGET_SUBMITIT = 10.0
TARGET_POOL = 0.8
TARGET_LATENCY = 0.050
COMMAND = ("true",)


def run_clusterd(root: Path, n: int) -> tuple[float, Path]:
    from clusterd.client import Client

    sweep = C.write_sweep(
        root / "local.toml", "local", n, command=COMMAND, max_concurrent=CONCURRENCY, metric=None
    )
    with C.Daemon(root) as d:
        with Client(d.home / "clusterd.sock", timeout=600) as sub:
            events = sub.subscribe()
            t0 = time.perf_counter()
            d.call("submit", path=str(sweep), display=sweep.name)
            for ev in events:
                if (
                    ev.get("type") == "sweep"
                    and ev.get("name") == "local"
                    and ev.get("state") != "active"
                ):
                    break
            wall = time.perf_counter() - t0
        sweeps = {s["name"]: s for s in d.call("sweeps")}
        counts = sweeps["local"]["counts"]
        if counts.get("completed") != n:
            raise RuntimeError(f"not every trial completed: {counts}")
        return wall, root / "runs-local"


def latencies(output_dir: Path, n: int) -> dict[str, list[float]]:
    ends, starts, launches = [], [], []
    for i in range(n):
        adir = output_dir / str(i) / "attempt-1"
        status = json.loads((adir / "status.json").read_text())
        runner = json.loads((adir / "runner.json").read_text())
        ends.append(status["ended_at"])
        starts.append(runner["started_at"])
        launches.append((adir / "launch.json").stat().st_mtime)
    ends.sort()
    order = sorted(range(n), key=lambda i: starts[i])
    total, decide, spawn = [], [], []
    for k in range(n - CONCURRENCY):
        nxt = order[k + CONCURRENCY]
        total.append(starts[nxt] - ends[k])
        decide.append(launches[nxt] - ends[k])
        spawn.append(starts[nxt] - launches[nxt])
    return {"total": total, "decide": decide, "spawn": spawn}


def _true() -> int:
    return subprocess.run(list(COMMAND), check=False).returncode


def run_pool(n: int) -> float:
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(CONCURRENCY) as pool:
        codes = [f.result() for f in [pool.submit(_true) for _ in range(n)]]
    wall = time.perf_counter() - t0
    assert all(c == 0 for c in codes)
    return wall


def run_submitit(root: Path, n: int) -> float:
    import submitit

    executor = submitit.LocalExecutor(folder=str(root / "submitit"))
    executor.update_parameters(timeout_min=10)
    t0 = time.perf_counter()
    todo, active, done = n, [], 0
    while todo or active:
        while todo and len(active) < CONCURRENCY:
            active.append(executor.submit(subprocess.run, list(COMMAND)))
            todo -= 1
        still = []
        for job in active:
            if job.done():
                job.result()
                done += 1
            else:
                still.append(job)
        active = still
        if active:
            time.sleep(0.002)
    wall = time.perf_counter() - t0
    assert done == n
    return wall


def bare_command_time(runs: int = 50) -> float:
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(list(COMMAND), check=True)
        ts.append(time.perf_counter() - t0)
    return C.median(ts)


def runner_start_cpu(root: Path, runs: int = 10) -> tuple[float, float]:
    """Wall and CPU of ``python -m clusterd.runner`` on an invalid launch (start-up only)."""
    bad = root / "bad" / "launch.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{}")
    walls, cpus = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "clusterd.runner", str(bad)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=C.bench_env(root),
        )
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        walls.append(time.perf_counter() - t0)
        cpus.append(usage.ru_utime + usage.ru_stime)
    return C.median(walls), C.median(cpus)


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 40 if args.quick else 500
    n_submitit = 6 if args.quick else 100
    C.header(f"bench_local: {n} trivial trials, {CONCURRENCY} at a time", args.quick)
    logging.getLogger("submitit").setLevel(logging.WARNING)
    with C.workdir("cdb-loc-") as root:
        wall, out = run_clusterd(root, n)
        print(f"clusterd: {n} trials in {wall:.2f} s", flush=True)
        lat = latencies(out, n)
        pool = run_pool(n)
        print(f"process pool: {n} runs in {pool:.2f} s", flush=True)
        sub = run_submitit(root, n_submitit)
        print(f"submitit: {n_submitit} jobs in {sub:.2f} s", flush=True)
        bare = bare_command_time()
        r_wall, r_cpu = runner_start_cpu(root)

    tps, pool_tps, sub_tps = n / wall, n / pool, n_submitit / sub
    per_slot = wall * CONCURRENCY / n
    pool_slot = pool * CONCURRENCY / n
    sub_slot = sub * CONCURRENCY / n_submitit
    overhead = per_slot - pool_slot
    sub_overhead = sub_slot - pool_slot
    t = C.Table(f"{n} trivial trials through daemon + local driver, max_concurrent={CONCURRENCY}")
    t.add("throughput (trials/s)", f"{tps:.1f}/s")
    t.add(
        "  vs submitit LocalExecutor",
        f"{tps:.1f}/s",
        f"{sub_tps:.1f}/s",
        C.fmt_ratio(tps / sub_tps),
        f">= {TARGET_SUBMITIT:.0f}x",
        tps / sub_tps >= TARGET_SUBMITIT,
    )
    t.add(
        "  vs ProcessPoolExecutor(2)",
        f"{tps:.1f}/s",
        f"{pool_tps:.1f}/s",
        C.fmt_ratio(tps / pool_tps),
        f">= {TARGET_POOL}x",
        tps / pool_tps >= TARGET_POOL,
    )
    t.add(
        "per-trial overhead over the pool",
        C.fmt_s(overhead),
        f"submitit {C.fmt_s(sub_overhead)}",
        C.fmt_ratio(sub_overhead / overhead) if overhead > 0 else "-",
        f"<= {TARGET_OVERHEAD * 1e3:.0f} ms",
        overhead <= TARGET_OVERHEAD,
    )
    t.add("  slot time per trial (wallx2/N)", C.fmt_s(per_slot), f"pool {C.fmt_s(pool_slot)}")
    med, p99 = C.median(lat["total"]), C.percentile(lat["total"], 99)
    t.add(
        "exit -> next runner start, median",
        C.fmt_s(med),
        target=f"<= {TARGET_LATENCY * 1e3:.0f} ms",
        ok=med <= TARGET_LATENCY,
    )
    t.add("exit -> next runner start, p99", C.fmt_s(p99))
    t.add("  exit -> launch.json written (daemon), median", C.fmt_s(C.median(lat["decide"])))
    t.add("  launch.json -> runner started_at, median", C.fmt_s(C.median(lat["spawn"])))
    t.add("  `python -m clusterd.runner` start, wall", C.fmt_s(r_wall))
    t.add("  `python -m clusterd.runner` start, CPU", C.fmt_s(r_cpu))
    t.add("  bare `true` via subprocess.run", C.fmt_s(bare))
    t.note(
        f"submitit ran {n_submitit} jobs (it costs ~0.25 s of a slot each); ratios use throughput"
    )
    t.note("runner started_at is taken after the runner's interpreter and imports are up")
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
