"""GPU samples in the database: ingest rate, the retention pass, the size kept, the views.

(1) Ingest, in-process: 1,000 running attempts with 4 GPUs each, every one's events file
    holding ``--minutes`` (10) of ``gpu`` lines at 10 s (the runner's line: index, uuid,
    util, memory, power, temperature, own processes and memory of each GPU), ingested
    with ``ingest_attempt`` the way ``Scheduler._ingest_live`` calls it (one transaction
    per pass over all attempts) until nothing is left. What the daemon must absorb:
    1,000 trials / 10 s = 100 lines/s = 400 sample rows/s. 3 runs, median.
(2) Size and retention: a 1,000-trial sweep of 8-hour trials sampled every 10 s on one
    GPU each (2.88 M samples; ``--trials`` scales it, and a smaller load is measured
    and extrapolated linearly under ``--quick``). Measured, SQLite (live pages, i.e.
    ``(page_count - freelist_count) x page_size``: the file does not shrink without
    VACUUM, and freed pages are reused by later samples):
    (a) every sample kept (the baseline: what the previous release did);
    (b) the trials just finished: each keeps its last ``RAW_WINDOW`` (1 h) raw, the rest
        rolled up into minute rows: one retention pass (``gpu_retention.roll_up``), timed,
        with the longest transaction (what other writers may wait for) and the median;
    (c) ``ENDED_GRACE`` (1 h) later: every sample rolled up (second pass).
    Computed next to it: rows x measured bytes per row.
(3) Views on that sweep, median of 3: ``gpus`` (ranking), ``export``'s GPU columns
    (``trial_gpu_figures``), ``trials``' ``gpu_util`` (``trial_util_means``), in states
    (a), (b) and (c).

    python benchmarks/bench_gpu_storage.py [--quick] [--trials N] [--minutes M]
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import _common as C

RATE_NEEDED = 100.0  # lines/s: 1,000 trials, one line each per 10 s
ROWS_NEEDED = 400.0  # sample rows/s: 4 GPUs a line
TX_TARGET = 0.1  # s: the longest transaction of a retention pass
HOURS = 8
INTERVAL = 10.0


def gpu_line(t: float, k: int) -> bytes:
    gpus = [
        {"index": g, "uuid": f"GPU-{g:08x}-0000-0000-0000-000000000000",
         "util": (k * 7 + g * 13) % 101, "mem_used": 30000 + k % 500, "mem_total": 81559,
         "power_w": 250.0 + (k % 40), "temp_c": 60 + k % 10, "own_procs": 1,
         "own_mem": 29000 + k % 500}
        for g in range(4)
    ]  # fmt: skip
    return (json.dumps({"type": "gpu", "t": t, "gpus": gpus}) + "\n").encode()


def new_store(path: Path) -> Any:
    from clusterd.daemon import db
    from clusterd.daemon.store import Store

    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    return Store(engine)


def new_sweep(store: Any, root: Path, name: str, n: int, state: str = "running") -> list[Any]:
    spec = {"name": name, "driver": "fake", "source": str(root / "x.toml"),
            "output_dir": str(root / name)}  # fmt: skip
    sweep_id = store.create_sweep(spec, [({"i": i}, f'{{"i":{i}}}') for i in range(n)], None)
    with store.read() as conn:
        trials = store.trials(conn, sweep_id)
    with store.tx() as conn:
        store.add_attempts(
            conn,
            [{"trial_id": t.id, "number": 1, "token": f"{name}-{t.index}", "state": state,
              "events_offset": 0, "cancel_requested": False} for t in trials],
        )  # fmt: skip
    return trials


# --------------------------------------------------------------------------- (1) ingest


def ingest_run(root: Path, run: int, trials: int, lines_per: int) -> tuple[float, int, int]:
    from clusterd.daemon.ingest import AttemptCursor, ingest_attempt

    store = new_store(root / f"ingest-{run}.db")
    rows = new_sweep(store, root, f"ing{run}", trials)
    with store.read() as conn:
        attempts = store.live_attempts(conn)
    cursors = []
    t0 = time.time()
    for a in attempts:
        adir = root / f"ing{run}" / str(a.index) / "attempt-1"
        adir.mkdir(parents=True)
        data = b"".join(gpu_line(t0 + INTERVAL * k, k) for k in range(lines_per))
        (adir / "events.jsonl").write_bytes(data)
        cursors.append(
            AttemptCursor(attempt_id=a.id, trial_id=a.trial_id, number=1, attempt_dir=str(adir),
                          offset=0, metric=None, mode=None, index=a.index)
        )  # fmt: skip
    lines = 0
    start = time.perf_counter()
    while True:
        got = 0
        with store.tx() as conn:
            for cur in cursors:
                got += ingest_attempt(store, conn, cur).lines
        lines += got
        if not got:
            break
    took = time.perf_counter() - start
    store.engine.dispose()
    assert len(rows) == trials
    return took, lines, lines * 4


# --------------------------------------------------------------------------- (2) size


def live_bytes(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    return int((pages - free) * size)


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of each table and index (SQLite's dbstat), for bytes per row."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:  # dbstat not compiled in
        return {}
    finally:
        con.close()
    return {str(n): int(s) for n, s in rows}


def gpu_bytes(path: Path) -> tuple[int, int]:
    """(raw samples incl. index, minute rows incl. unique index) bytes."""
    sizes = table_bytes(path)
    raw = sizes.get("gpu_samples", 0) + sizes.get("ix_gpu_samples_trial_attempt_t", 0)
    minutes = sum(v for k, v in sizes.items() if "gpu_minutes" in k)
    return raw, minutes


def fill(store: Any, trials: list[Any], samples: int, start: float) -> None:
    from sqlalchemy import insert

    from clusterd.daemon.gpustats import G

    batch: list[dict[str, Any]] = []
    for tr in trials:
        for k in range(samples):
            batch.append(
                {"trial_id": tr.id, "attempt": 1, "gpu": 0, "t": start + INTERVAL * k,
                 "util": float((k * 7 + tr.index) % 101), "mem_used": 30000.0 + k % 500,
                 "mem_total": 81559.0, "power_w": 250.0 + k % 40, "temp_c": 60,
                 "own_procs": 1, "own_mem": 29000 + k % 500}
            )  # fmt: skip
            if len(batch) >= 50_000:
                with store.tx() as conn:
                    conn.execute(insert(G), batch)
                batch = []
    if batch:
        with store.tx() as conn:
            conn.execute(insert(G), batch)


def counts(store: Any) -> tuple[int, int]:
    from sqlalchemy import func, select

    from clusterd.daemon.gpustats import GM, G

    with store.read() as conn:
        raw = conn.execute(select(func.count()).select_from(G)).scalar_one()
        minutes = conn.execute(select(func.count()).select_from(GM)).scalar_one()
    return int(raw), int(minutes)


def time_views(store: Any, sweep_id: int, runs: int) -> dict[str, float]:
    from sqlalchemy import select

    from clusterd.daemon import gpustats
    from clusterd.daemon.store import T

    ids = select(T.c.id).where(T.c.sweep_id == sweep_id)
    out: dict[str, list[float]] = {"gpus": [], "export": [], "trials": []}
    for _ in range(runs):
        for name, fn in (
            ("gpus", lambda c: gpustats.ranking(c, sweep_id)),
            ("export", lambda c: gpustats.trial_gpu_figures(c, ids)),
            ("trials", lambda c: gpustats.trial_util_means(c, ids)),
        ):
            with store.read() as conn:
                t0 = time.perf_counter()
                fn(conn)
                out[name].append(time.perf_counter() - t0)
    return {k: C.median(v) for k, v in out.items()}


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None, help="trials of the size load (1000)")
    p.add_argument("--minutes", type=int, default=10, help="minutes of lines per ingest file")
    args = p.parse_args()
    logging.disable(logging.WARNING)
    C.header("GPU samples: ingest, retention, size, views", args.quick)
    from sqlalchemy import update

    from clusterd.daemon import gpu_retention
    from clusterd.daemon.store import A

    full = 1000
    n_size = args.trials or (20 if args.quick else full)
    n_ingest = 100 if args.quick else 1000
    lines_per = 3 if args.quick else args.minutes * 6
    runs = 1 if args.quick else 3

    with C.workdir("cdb-gpu-") as root:
        # (1) ingest
        rates, row_rates = [], []
        for run in range(runs):
            took, lines, rows = ingest_run(root, run, n_ingest, lines_per)
            rates.append(lines / took)
            row_rates.append(rows / took)
        t = C.Table(f"GPU lines ingested (median of {runs} runs)")
        lps, rps = C.median(rates), C.median(row_rates)
        t.add(f"ingest, {n_ingest} attempts x 4 GPUs: lines/s", f"{lps:,.0f}", "-",
              C.fmt_ratio(lps / RATE_NEEDED), f">= {RATE_NEEDED:.0f} (1,000 trials / 10 s)",
              lps >= RATE_NEEDED)  # fmt: skip
        t.add("  sample rows/s", f"{rps:,.0f}", "-", C.fmt_ratio(rps / ROWS_NEEDED),
              f">= {ROWS_NEEDED:.0f}", rps >= ROWS_NEEDED)  # fmt: skip
        t.add("  daemon time per 10 s of 1,000 trials", C.fmt_s(1000 / lps), "-", "-",
              "< 10 s", 1000 / lps < 10)  # fmt: skip
        t.print()

        # (2) size and retention
        path = root / "size.db"
        store = new_store(path)
        trials = new_sweep(store, root, "size", n_size, state="ended")
        samples = int(HOURS * 3600 / INTERVAL)
        start = time.time() - HOURS * 3600 - 60
        t0 = time.perf_counter()
        fill(store, trials, samples, start)
        fill_s = time.perf_counter() - t0
        end = start + INTERVAL * (samples - 1)
        with store.tx() as conn:  # the trials just finished
            conn.execute(update(A).values(ended_at=end + 1))
        raw_a, _ = counts(store)
        size_a = live_bytes(path)
        bytes_a = gpu_bytes(path)
        with store.read() as conn:
            sweep_id = store.require_sweep(conn, "size").id
        views_a = time_views(store, sweep_id, 1 if args.quick else 3)

        first = gpu_retention.roll_up(store, now=end + 2)
        raw_b, min_b = counts(store)
        size_b = live_bytes(path)
        bytes_b = gpu_bytes(path)
        views_b = time_views(store, sweep_id, 1 if args.quick else 3)

        second = gpu_retention.roll_up(store, now=end + 2 + gpu_retention.ENDED_GRACE)
        raw_c, min_c = counts(store)
        if raw_c or (min_b + raw_b) == 0:  # a correctness check: all rolled up, none lost
            raise SystemExit(f"retention left {raw_c} raw rows after the grace; {min_b} minutes")
        size_c = live_bytes(path)
        bytes_c = gpu_bytes(path)
        views_c = time_views(store, sweep_id, 1 if args.quick else 3)
        store.engine.dispose()

        scale = full / n_size
        per_raw = bytes_a[0] / raw_a if raw_a else 0.0
        per_min = bytes_c[1] / min_c if min_c else 0.0
        t = C.Table(
            f"size: {n_size} trials x {HOURS} h at {INTERVAL:.0f} s, 1 GPU"
            + (f" (x{scale:g} = the 1,000-trial figure)" if scale != 1 else "")
        )
        t.add("samples stored", f"{raw_a * scale:,.0f}", "-", "-", "-")
        t.add("(a) every sample kept (baseline): DB", mb(size_a * scale))
        t.add("    gpu_samples + its index", mb(bytes_a[0] * scale), "-", "-",
              f"{per_raw:.0f} B/sample")  # fmt: skip
        t.add(f"(b) last {gpu_retention.RAW_WINDOW / 3600:g} h raw + minutes: DB",
              mb(size_b * scale), mb(size_a * scale), C.fmt_ratio(size_a / size_b),
              "smaller than (a)", size_b < size_a)  # fmt: skip
        t.add("    raw rows / minute rows", f"{raw_b * scale:,.0f} / {min_b * scale:,.0f}",
              "-", "-", f"{(bytes_b[0] + bytes_b[1]) * scale / 1e6:.1f} MB GPU tables")  # fmt: skip
        t.add("(c) all rolled up (1 h after): DB", mb(size_c * scale), mb(size_a * scale),
              C.fmt_ratio(size_a / size_c), "smaller than (b)", size_c < size_b)  # fmt: skip
        t.add("    minute rows", f"{min_c * scale:,.0f}", "-", "-",
              f"{per_min:.0f} B/minute row")  # fmt: skip
        computed_a = raw_a * scale * per_raw
        computed_c = min_c * scale * per_min
        t.add("computed: (a) samples x B/sample", mb(computed_a))
        t.add("computed: (c) trials x 480 min x B/row", mb(full * HOURS * 60 * per_min))
        rate = first.rows / max(first.seconds, 1e-9)
        t.add(f"pass (b): {first.rows * scale:,.0f} rows rolled up",
              C.fmt_s(first.seconds * scale), "-", "-",
              f"{first.transactions} tx ({rate:,.0f} rows/s)")  # fmt: skip
        tx = first.tx_times + second.tx_times
        t.add("  longest transaction (write lock held)", C.fmt_s(max(tx) if tx else 0.0),
              "-", "-", f"<= {C.fmt_s(TX_TARGET)}", bool(tx) and max(tx) <= TX_TARGET)  # fmt: skip
        t.add("  median transaction", C.fmt_s(C.median(tx) if tx else 0.0))
        t.add(f"pass (c): {second.rows * scale:,.0f} rows", C.fmt_s(second.seconds * scale))
        t.note(f"filling {raw_a:,} samples took {fill_s:.1f} s (not timed above)")
        if scale != 1:
            t.note(f"measured on {n_size} trials; sizes and pass times scaled x{scale:g} "
                   "(both are linear in the number of trials)")  # fmt: skip
        t.note(f"computed (c) differs from measured by the DB's other tables; "
               f"(a) computed {mb(computed_a)} vs measured {mb(bytes_a[0] * scale)}, "
               f"(c) {mb(computed_c)}")  # fmt: skip
        t.print()

        t = C.Table(f"views of the {n_size}-trial sweep (median; state a / b / c)")
        for name, label in (("gpus", "gpus op ranking"), ("export", "export GPU columns"),
                            ("trials", "trials gpu_util")):  # fmt: skip
            t.add(label, " / ".join(C.fmt_s(v[name]) for v in (views_a, views_b, views_c)))
        t.print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
