"""Events ingestion: throughput into the database, and lag behind live writers.

(1) Throughput, in-process: 1,000,000 ``report()``-format lines (one metric each) in the
    events files of 100 running attempts, ingested with
    ``clusterd.daemon.ingest.ingest_attempt`` the way the scheduler's ``_ingest_live``
    calls it: per pass, one transaction over all attempts, until nothing is left.
    Writing the files and opening the database are not timed.
(2) Lag, through the real daemon: 100 trials (``fake`` driver: it keeps the attempts
    "running" without starting anything, because the local driver runs at most one
    trial per CPU) each written by its own process calling ``clusterd.trial.report``
    100 times a second (10,000 lines/s in all) for ~20 s. The database is sampled
    read-only every 100 ms: lag = now - newest ingested write time, for the stalest
    trial (an upper bound on any line's write-to-queryable time).
(3) One big attempt, through the real daemon: one attempt's events file of 1 GB
    (``--big-mb``; ~10 M lines) written while the daemon is stopped, with the attempt
    ended (status.json); then ``clusterd start`` and the time until the trial has ended:
    lines/s, lines kept, and the daemon's peak RSS (VmHWM), which must stay bounded
    (ingestion reads and commits one chunk at a time; ``--big-only`` runs just this).
Baselines, same run: Optuna ``trial.report(value, step)`` per call into RDB on SQLite
and into JournalStorage(JournalFileBackend) (µs/call).
Targets: >= 100,000 lines/s; lag < 1 s.

    python benchmarks/bench_ingest.py [--quick] [--big-mb N] [--big-only]
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import _common as C

TARGET_LPS = 100_000
TARGET_LAG = 1.0

WRITER = r"""
import os, sys, time
from clusterd import trial
rate, start_at, seconds = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
batch = 5                      # lines per wake-up: 100 lines/s = 5 lines every 50 ms
period = batch / rate
time.sleep(max(0.0, start_at - time.time()))   # every writer starts at the same moment
start = time.monotonic()
step = 0
while time.monotonic() - start < seconds:
    for _ in range(batch):
        trial.report(step, loss=1.0 / (step + 1))
        step += 1
    nxt = start + (step // batch) * period
    delay = nxt - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def line(step: int, t: float) -> bytes:
    # exactly what clusterd.trial.report(step, loss=v) writes
    value = 1.0 / (step + 1)
    return f'{{"type":"metric","t":{t!r},"step":{step},"values":{{"loss":{value!r}}}}}\n'.encode()


def setup_attempts(root: Path, n_trials: int, lines_per: int, run: int):
    from clusterd.daemon import db
    from clusterd.daemon.ingest import AttemptCursor
    from clusterd.daemon.store import Store

    engine = db.make_engine(f"sqlite:///{root}/ingest-{run}.db")
    db.upgrade(engine)
    store = Store(engine)
    out = root / f"runs-{run}"
    spec = {
        "name": f"ingest{run}",
        "driver": "fake",
        "source": str(root / "x.toml"),
        "output_dir": str(out),
        "metric": {"name": "loss", "mode": "min"},
    }
    trials = [({"i": i}, f'{{"i":{i}}}') for i in range(n_trials)]
    sweep_id = store.create_sweep(spec, trials, None)
    with store.read() as conn:
        rows = store.trials(conn, sweep_id)
    with store.tx() as conn:
        store.add_attempts(
            conn,
            [
                {
                    "trial_id": r.id,
                    "number": 1,
                    "token": f"tok-{run}-{r.index}",
                    "state": "running",
                    "events_offset": 0,
                    "cancel_requested": False,
                }
                for r in rows
            ],
        )
    with store.read() as conn:
        attempts = store.live_attempts(conn)
    cursors = []
    t = time.time()
    for a in attempts:
        adir = out / str(a.index) / "attempt-1"
        adir.mkdir(parents=True)
        with open(adir / "events.jsonl", "wb") as fh:
            fh.write(b"".join(line(s, t + s * 1e-3) for s in range(lines_per)))
        cursors.append(
            AttemptCursor(
                attempt_id=a.id,
                trial_id=a.trial_id,
                number=1,
                attempt_dir=str(adir),
                offset=0,
                metric="loss",
                mode="min",
            )
        )
    return engine, store, cursors


def ingest_all(store, cursors) -> tuple[int, int]:
    """Passes like Scheduler._ingest_live until a pass reads nothing; (lines, passes)."""
    from clusterd.daemon.ingest import ingest_attempt

    total, passes = 0, 0
    while True:
        got = 0
        with store.tx() as conn:
            for cur in cursors:
                got += ingest_attempt(store, conn, cur).lines
        passes += 1
        total += got
        if not got:
            return total, passes


def throughput(root: Path, n_trials: int, lines_per: int, runs: int, profile: bool) -> list[float]:
    rates = []
    for run in range(runs):
        engine, store, cursors = setup_attempts(root, n_trials, lines_per, run)
        t0 = time.perf_counter()
        if profile and run == 0:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            lines, passes = ingest_all(store, cursors)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        else:
            lines, passes = ingest_all(store, cursors)
        dt = time.perf_counter() - t0
        assert lines == n_trials * lines_per, lines
        with store.read() as conn:
            from sqlalchemy import text

            rows = conn.execute(text("SELECT count(*) FROM metrics")).scalar_one()
        assert rows == lines, rows
        engine.dispose()
        rates.append(lines / dt)
        print(
            f"  run {run}: {lines:,} lines in {dt:.2f} s ({passes} passes) "
            f"= {lines / dt:,.0f} lines/s",
            flush=True,
        )
    return rates


def lag(root: Path, n_trials: int, rate: float, seconds: float, settle: float) -> dict[str, float]:
    sweep = C.write_sweep(
        root / "lag.toml",
        "lag",
        n_trials,
        command=("true",),
        max_concurrent=n_trials,
        driver="fake",
        extra="[drivers.fake]\nsteps_queued = 1\nsteps_running = 100000000",
    )
    writer = root / "writer.py"
    writer.write_text(WRITER)
    procs: list[subprocess.Popen[bytes]] = []
    samples: list[float] = []
    with C.Daemon(root) as d:
        d.ctl("submit", str(sweep))
        out = root / "runs-lag"

        def running() -> bool:
            s = {x["name"]: x for x in d.call("sweeps")}["lag"]
            return s["counts"].get("running", 0) == n_trials

        C.wait_for(running, 60, "every trial to be running")
        # the writers start together, once all are up (100 interpreters take a while)
        start_at = time.time() + 2.0 + 0.08 * n_trials
        for i in range(n_trials):
            events = out / str(i) / "attempt-1" / "events.jsonl"
            env = {
                **d.env,
                "CLUSTERD_EVENTS": str(events),
                "CLUSTERD_ATTEMPT_DIR": str(events.parent),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(writer), str(rate), str(start_at), str(seconds)], env=env
                )
            )
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = _cpu_seconds(d.pid)
        t_start = time.time()
        db = sqlite3.connect(f"file:{d.home / 'clusterd.db'}?mode=ro", uri=True)
        newest: dict[int, float] = {}
        cpu1: float | None = None
        wall = seconds
        last_id = 0
        try:
            while any(p.poll() is None for p in procs):
                time.sleep(0.1)
                rows = db.execute(
                    "SELECT trial_id, MAX(t), MAX(id) FROM metrics WHERE id > ? GROUP BY trial_id",
                    (last_id,),
                ).fetchall()
                now = time.time()
                for trial_id, t, mid in rows:
                    newest[trial_id] = t
                    last_id = max(last_id, mid)
                # sample while every writer writes (not during the first `settle` s, nor
                # after the first one has finished: its newest line then only gets older)
                if settle < now - t_start < seconds - 0.2 and len(newest) == n_trials:
                    samples.append(now - min(newest.values()))
                if now - t_start >= seconds and cpu1 is None:
                    cpu1, wall = _cpu_seconds(d.pid), now - t_start
            time.sleep(2.5)
            total = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
        finally:
            db.close()
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
    written = sum(_lines_in(out / str(i) / "attempt-1" / "events.jsonl") for i in range(n_trials))
    return {
        "median": C.median(samples),
        "p99": C.percentile(samples, 99),
        "max": max(samples),
        "samples": len(samples),
        "rate": written / wall,
        "written": written,
        "ingested": total,
        "daemon_cpu": ((cpu1 or cpu0) - cpu0) / wall,
    }


def big_attempt(root: Path, megabytes: int) -> dict[str, float]:
    """(3): one ended attempt's ``megabytes`` MB events file, ingested by a fresh daemon."""
    sweep = C.write_sweep(
        root / "big.toml",
        "big",
        1,
        command=("true",),
        driver="fake",
        extra="[drivers.fake]\nsteps_queued = 1\nsteps_running = 100000000",
    )
    with C.Daemon(root) as d:
        d.ctl("submit", str(sweep))

        def running() -> bool:
            return {x["name"]: x for x in d.call("sweeps")}["big"]["counts"].get("running") == 1

        C.wait_for(running, 60, "the trial to be running")
        d.stop()  # the fake scheduler forgets the job: after the restart it is gone
        adir = root / "runs-big" / "0" / "attempt-1"
        t0 = time.time()
        lines, size, step = 0, 0, 0
        with open(adir / "events.jsonl", "wb") as fh:
            while size < megabytes * 1_000_000:
                block = b"".join(line(s, t0 + s * 1e-3) for s in range(step, step + 10_000))
                fh.write(block)
                size += len(block)
                step += 10_000
                lines += 10_000
        status = {"exit_code": 0, "signal": None, "started_at": t0, "ended_at": t0 + 1}
        (adir / "status.json").write_text(json.dumps(status))
        db_path = d.home / "clusterd.db"
        start = time.perf_counter()
        d.start()
        pid = d.pid
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
        hwm = 0
        try:
            while True:
                hwm = max(hwm, _peak_rss(pid))
                state = db.execute("SELECT state FROM trials").fetchone()[0]
                if state not in ("queued", "running"):
                    break
                time.sleep(0.2)
            wall = time.perf_counter() - start
            kept = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
            errors = [m for (m,) in db.execute("SELECT message FROM trial_errors")]
        finally:
            db.close()
        hwm = max(hwm, _peak_rss(pid))
    return {
        "bytes": size,
        "lines": lines,
        "kept": kept,
        "wall": wall,
        "rate": kept / wall,
        "peak_rss": hwm,
        "errors": len(errors),
        "state": state,
    }


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for row in fh:
                if row.startswith("VmHWM:"):
                    return int(row.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _big_rows(t: C.Table, big: dict[str, float]) -> None:
    mb = big["bytes"] / 1e6
    t.add(
        f"one ended attempt's {mb:,.0f} MB events file: lines kept",
        f"{big['kept']:,} / {big['lines']:,}",
        target="all",
        ok=big["kept"] == big["lines"] and big["errors"] == 0,
    )
    t.add("  ingested at (lines/s, daemon start to trial ended)", f"{big['rate']:,.0f}/s")
    t.add(
        "  daemon peak RSS (VmHWM)",
        f"{big['peak_rss'] / 2**20:,.0f} MiB",
        target="< 300 MiB",
        ok=big["peak_rss"] < 300 << 20,
    )


def _lines_in(path: Path) -> int:
    with open(path, "rb") as fh:
        return fh.read().count(b"\n")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def optuna_report(root: Path, calls_rdb: int, calls_journal: int) -> tuple[float, float]:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    for storage, calls in (
        (optuna.storages.RDBStorage(f"sqlite:///{root}/optuna-report.db"), calls_rdb),
        (JournalStorage(JournalFileBackend(str(root / "optuna-report.log"))), calls_journal),
    ):
        study = optuna.create_study(study_name="r", storage=storage)
        trial = study.ask()
        t0 = time.perf_counter()
        for step in range(calls):
            trial.report(1.0 / (step + 1), step)
        out.append((time.perf_counter() - t0) / calls)
    return out[0], out[1]


def trial_report_cost() -> float:
    """µs per clusterd.trial.report() call (a fresh process, events file in /tmp)."""
    code = (
        "import timeit, os; from clusterd import trial; "
        "print(min(timeit.repeat('trial.report(5, loss=0.25)', globals=globals(), "
        "number=20000, repeat=5)) / 20000)"
    )
    with C.workdir("cdb-tr-") as d:
        env = {
            **C.bench_env(d),
            "CLUSTERD_EVENTS": str(d / "events.jsonl"),
            "CLUSTERD_ATTEMPT_DIR": str(d),
        }
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip())


def main() -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--profile", action="store_true", help="cProfile the first throughput run")
    p.add_argument("--big-mb", type=int, help="size of (3)'s events file (1000; 20 with --quick)")
    p.add_argument("--big-only", action="store_true", help="run (3) alone")
    args = p.parse_args()
    big_mb = args.big_mb or (20 if args.quick else 1000)
    if args.big_only:
        with C.workdir("cdb-ing-") as root:
            big = big_attempt(root, big_mb)
        t = C.Table("one big attempt")
        _big_rows(t, big)
        t.print()
        return 0
    if args.quick:
        n_trials, lines_per, runs, lag_trials, lag_s = 100, 200, 1, 10, 3.0
    else:
        n_trials, lines_per, runs, lag_trials, lag_s = 100, 10_000, 3, 100, 20.0
    C.header(
        f"bench_ingest: {n_trials * lines_per:,} lines / {n_trials} trials; lag at "
        f"{lag_trials * 100:,} lines/s",
        args.quick,
    )
    logging.getLogger("optuna").setLevel(logging.WARNING)
    with C.workdir("cdb-ing-") as root:
        rates = throughput(root, n_trials, lines_per, runs, args.profile)
        lag_res = lag(root, lag_trials, 100.0, lag_s, 1.0 if args.quick else 3.0)
        print(f"  lag: {lag_res}", flush=True)
        rdb, journal = optuna_report(
            root, 200 if args.quick else 1_000, 1_000 if args.quick else 10_000
        )
        big = big_attempt(root, big_mb)
    report_cost = trial_report_cost()
    lps = C.median(rates)
    per_line = 1.0 / lps + report_cost  # a line's whole cost: trial's report() + daemon's ingest

    t = C.Table("events ingestion (medians)")
    t.add(
        "ingest throughput (lines/s, in-process)",
        f"{lps:,.0f}/s",
        target=f">= {TARGET_LPS:,}/s",
        ok=lps >= TARGET_LPS,
    )
    t.add("  ingest cost per line", C.fmt_s(1.0 / lps))
    t.add("  + trial.report() per call = clusterd per line", C.fmt_s(per_line))
    t.add(
        "  vs Optuna trial.report, RDB sqlite (per call)",
        C.fmt_s(per_line),
        C.fmt_s(rdb),
        C.fmt_ratio(rdb / per_line),
    )
    t.add(
        "  vs Optuna trial.report, Journal (per call)",
        C.fmt_s(per_line),
        C.fmt_s(journal),
        C.fmt_ratio(journal / per_line),
    )
    t.add(
        f"lag at {lag_res['rate']:,.0f} lines/s, median",
        C.fmt_s(lag_res["median"]),
        target=f"< {TARGET_LAG:g} s",
        ok=lag_res["median"] < TARGET_LAG,
    )
    t.add(
        "  lag p99",
        C.fmt_s(lag_res["p99"]),
        target=f"< {TARGET_LAG:g} s",
        ok=lag_res["p99"] < TARGET_LAG,
    )
    t.add("  lag max", C.fmt_s(lag_res["max"]))
    t.add(
        "  lines written / ingested at the end",
        f"{lag_res['written']:,} / {lag_res['ingested']:,}",
        ok=lag_res["written"] == lag_res["ingested"],
        target="equal",
    )
    t.add("  daemon CPU while ingesting", f"{lag_res['daemon_cpu'] * 100:.0f}% of a core")
    _big_rows(t, big)
    t.note(f"throughput: median of {runs} runs; lag: {lag_res['samples']} samples every 100 ms")
    t.note(
        "Optuna's report() writes to its storage synchronously; clusterd's is a buffered append "
        "and the daemon ingests in batches, so per line = report() + ingest"
    )
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
