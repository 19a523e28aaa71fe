"""``clusterctl trials`` / ``export`` / ``results()`` of a 10,000-trial sweep reporting 5
metrics each: time and reply size (issue 18's Performance section).

The sweep is submitted to a real daemon and cancelled; then, with the daemon stopped,
every trial is made ``completed`` with 20 steps of 5 metrics (``loss`` is the sweep's
``[metric]``; ``val_loss``, ``val_acc``, ``f1``, ``grad_norm``) written straight into
its SQLite database (1,000,000 metric rows at full size), and the daemon is started
again. Only the stdlib's ``sqlite3`` touches the database, so the script measures any
checkout: ``PYTHONPATH=/path/to/checkout python benchmarks/bench_views.py``.

Figures: ``clusterctl trials SWEEP`` (table) and ``--json``, ``clusterctl export SWEEP``
(CSV to stdout), ``clusterctl best -n 10``, wall time from process start to exit
(median of runs) and bytes printed; the ``trials`` (plain, as the TUI asks, and with
``metrics``, as ``clusterctl trials`` asks) and ``export`` ops over the socket
in-process (time, reply bytes); ``clusterd.client.results()`` (when pandas is
installed); and which heavy modules ``clusterctl trials`` loads (``-X importtime``:
none of sqlalchemy, textual, pynvml may load: it stays a one-request verb).

    python benchmarks/bench_views.py [--quick]
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import _common as C

METRICS = ("loss", "val_loss", "val_acc", "f1", "grad_norm")
STEPS = 20
FORBIDDEN = ("sqlalchemy", "textual", "pynvml", "alembic", "pandas")


def fill_metrics(db: Path, name: str, steps: int) -> int:
    """Every trial of sweep ``name`` completed, with ``steps`` steps of every metric."""
    rng = random.Random(0)
    con = sqlite3.connect(db)
    try:
        sweep_id = con.execute("select id from sweeps where name = ?", (name,)).fetchone()[0]
        trials = con.execute("select id from trials where sweep_id = ?", (sweep_id,)).fetchall()
        now = time.time()
        rows = []
        updates = []
        for (trial_id,) in trials:
            base = rng.uniform(0.2, 2.0)
            best = None
            for step in range(steps):
                decay = base / (1 + step)
                values = {
                    "loss": decay,
                    "val_loss": decay * 1.1,
                    "val_acc": 1 - decay / 3,
                    "f1": 1 - decay / 2.5,
                    "grad_norm": rng.uniform(0.1, 5.0),
                }
                for metric, value in values.items():
                    rows.append((trial_id, 1, step, metric, value, now))
                best = decay if best is None else min(best, decay)
            updates.append((steps - 1, decay, best, steps - 1, now, trial_id))
        con.executemany(
            "insert into metrics (trial_id, attempt, step, name, value, t) "
            "values (?, ?, ?, ?, ?, ?)",
            rows,
        )
        if con.execute(
            "select 1 from sqlite_master where type = 'table' and name = 'metric_summaries'"
        ).fetchone():  # what the daemon keeps at ingest (revision 0004 on)
            con.execute(
                "insert into metric_summaries (trial_id, name, last_value, last_step, "
                "last_attempt, lowest, highest, count) "
                "select g.trial_id, g.name, m.value, m.step, m.attempt, g.lo, g.hi, g.n "
                "from (select trial_id, name, max(id) as last_id, min(value) as lo, "
                "max(value) as hi, count(*) as n from metrics group by trial_id, name) as g "
                "join metrics as m on m.id = g.last_id"
            )
        con.executemany(
            "update trials set state = 'completed', reason = 'exit code 0', last_step = ?, "
            "last_value = ?, best_value = ?, best_step = ?, updated_at = ? where id = ?",
            updates,
        )
        con.execute("update sweeps set state = 'done' where id = ?", (sweep_id,))
        con.commit()
        return len(rows)
    finally:
        con.close()


def timed_ctl(d: C.Daemon, args: list[str], runs: int) -> tuple[list[float], int]:
    """Wall seconds of ``runs`` clusterctl runs, and the bytes the last one printed."""
    walls = []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*d.ctl_argv, *args],
            env={**d.env, "COLUMNS": "200"},
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        walls.append(time.perf_counter() - t0)
        size = len(proc.stdout)
    return walls, size


def op_timed(d: C.Daemon, op: str, runs: int, **args: object) -> tuple[list[float], int]:
    from clusterd.client import Client

    walls = []
    size = 0
    with Client(d.home / "clusterd.sock", timeout=300) as c:
        for _ in range(runs):
            t0 = time.perf_counter()
            result = c.call(op, **args)
            walls.append(time.perf_counter() - t0)
            size = len(json.dumps(result, separators=(",", ":")))
    return walls, size


def heavy_imports(d: C.Daemon, sweep: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "clusterd.cli", "trials", sweep],
        env=d.env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    loaded = set()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            loaded.add(m.group(1).split(".")[0])
    return {m for m in FORBIDDEN if m in loaded}


def results_timed(d: C.Daemon, sweep: str, runs: int) -> tuple[list[float], tuple[int, int]] | None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return None
    from clusterd.client import results

    walls = []
    shape = (0, 0)
    for _ in range(runs):
        t0 = time.perf_counter()
        frame = results(sweep, d.home / "clusterd.sock")
        walls.append(time.perf_counter() - t0)
        shape = frame.shape
    return walls, shape


def kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 10 * 1024 * 1024 else f"{n / 1048576:,.1f} MiB"


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 200 if args.quick else 10_000
    runs = 2 if args.quick else 5
    C.header(f"bench_views: trials/export/results() of {n:,} trials x 5 metrics", args.quick)
    with C.workdir("cdb-views-") as root:
        d = C.Daemon(root)
        try:
            d.start()
            sweep = C.write_sweep(root / "sweep.toml", "views", n)
            d.ctl("submit", str(sweep))
            d.ctl("cancel", "views")
            C.wait_for(
                lambda: all(t["state"] == "cancelled" for t in d.call("trials", sweep="views")),
                120,
                "every trial to be cancelled",
            )
            d.stop()
            t0 = time.perf_counter()
            rows = fill_metrics(d.home / "clusterd.db", "views", STEPS)
            print(f"(wrote {rows:,} metric rows in {time.perf_counter() - t0:.1f} s)", flush=True)
            d.start()
            d.ctl("trials", "views")  # warm-up: page cache, statement cache, bytecode
            table = C.Table(f"{n:,} completed trials, {len(METRICS)} metrics x {STEPS} steps each")
            for label, argv in (
                ("clusterctl trials", ["trials", "views"]),
                ("clusterctl trials --json", ["trials", "views", "--json"]),
                ("clusterctl export (CSV)", ["export", "views"]),
                ("clusterctl best -n 10", ["best", "views", "-n", "10"]),
            ):
                walls, size = timed_ctl(d, argv, runs)
                table.add(f"{label} p50 (wall)", C.fmt_s(C.median(walls)))
                table.add(f"  {label}: bytes printed", kib(size))
            for label, op, kw in (
                ("trials", "trials", {"sweep": "views"}),
                # what clusterctl trials asks (an older daemon ignores the argument)
                ("trials metrics=true", "trials", {"sweep": "views", "metrics": True}),
                ("export", "export", {"sweep": "views"}),
            ):
                walls, size = op_timed(d, op, runs, **kw)
                table.add(f"'{label}' op over the socket p50", C.fmt_s(C.median(walls)))
                table.add(f"  '{label}' reply size", kib(size))
            res = results_timed(d, "views", runs)
            if res is None:
                table.add("clusterd.client.results()", "pandas not installed")
            else:
                walls, shape = res
                table.add("clusterd.client.results() p50", C.fmt_s(C.median(walls)))
                table.add("  its DataFrame (rows x columns)", f"{shape[0]} x {shape[1]}")
            heavy = heavy_imports(d, "views")
            table.add(
                "heavy modules `clusterctl trials` loads",
                ", ".join(sorted(heavy)) or "none",
                target="none",
                ok=not heavy,
            )
            table.note(f"{runs} runs each after one warm-up; COLUMNS=200 for the table")
            table.print()
        finally:
            d.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
