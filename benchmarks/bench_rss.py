"""Daemon memory with 100,000 trials in the database.

A daemon gets 10 sweeps x 10,000 trials (each sweep runs one idle trial at a time:
max_concurrent = 1 and ``sh -c 'exec sleep 3600'``, so the rest stay pending), then
answers ``clusterctl sweeps``, ``trials`` and ``export`` of one sweep. Its VmRSS and
VmHWM (peak) are read from /proc/<pid>/status after each step. Reference: the same
daemon right after start, with an empty database.
Target: VmRSS <= 150 MB (VmHWM shown against the same line: the peak is what a
login node's memory limit sees).

    python benchmarks/bench_rss.py [--quick]
"""

from __future__ import annotations

import sys
import time

import _common as C

TARGET_MB = 150.0


def mb(kb: int) -> float:
    return kb / 1024.0


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    sweeps, per = (2, 200) if args.quick else (10, 10_000)
    C.header(f"bench_rss: daemon memory with {sweeps * per:,} trials", args.quick)
    steps: list[tuple[str, dict[str, int], float]] = []
    failures: list[tuple[str, int, str]] = []
    with C.workdir("cdb-rss-") as root, C.Daemon(root) as d:
        pid = d.pid
        time.sleep(0.5)
        steps.append(("started, empty database", C.rss_kb(pid), 0.0))
        t0 = time.perf_counter()
        for i in range(sweeps):
            f = C.write_sweep(root / f"s{i}.toml", f"s{i}", per)
            d.ctl("submit", str(f))
        steps.append((f"after {sweeps} submits", C.rss_kb(pid), time.perf_counter() - t0))
        for label, argv in (
            ("clusterctl sweeps", ["sweeps"]),
            ("clusterctl trials s0", ["trials", "s0"]),
            ("clusterctl trials s0 --json", ["trials", "s0", "--json"]),
            ("clusterctl export s0", ["export", "s0", "-o", str(root / "s0.csv")]),
        ):
            t0 = time.perf_counter()
            proc = d.ctl(*argv, check=False)
            steps.append((f"after {label}", C.rss_kb(pid), time.perf_counter() - t0))
            failures.append((label, proc.returncode, proc.stderr.strip()[-200:]))
        t0 = time.perf_counter()
        proc = d.ctl("cancel", "s0", check=False)
        steps.append(("after clusterctl cancel s0", C.rss_kb(pid), time.perf_counter() - t0))
        failures.append(("clusterctl cancel s0", proc.returncode, proc.stderr.strip()[-200:]))
        total = sum(s["trials"] for s in d.call("sweeps"))
        assert total == sweeps * per, total
        time.sleep(1.0)  # a scheduler pass or two with 100,000 trials in the database
        steps.append(("1 s later", C.rss_kb(pid), 0.0))

    t = C.Table(f"daemon memory, {total:,} trials in {sweeps} sweeps")
    base = mb(steps[0][1]["VmRSS"])
    for label, kb, dt in steps:
        rss = mb(kb["VmRSS"])
        t.add(
            f"VmRSS {label}" + (f" ({C.fmt_s(dt)})" if dt else ""),
            f"{rss:.1f} MB",
            f"{base:.1f} MB" if label != steps[0][0] else "-",
            target=f"<= {TARGET_MB:.0f} MB",
            ok=rss <= TARGET_MB,
        )
    hwm = mb(steps[-1][1]["VmHWM"])
    t.add(
        "VmHWM (peak) at the end",
        f"{hwm:.1f} MB",
        target=f"<= {TARGET_MB:.0f} MB",
        ok=hwm <= TARGET_MB,
    )
    for label, rc, err in failures:
        t.add(f"{label}: exit status", str(rc), target="0", ok=rc == 0)
        if rc:
            t.note(f"{label} failed: {err}")
    t.note("baseline column: the same daemon's VmRSS right after start (empty database)")
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
