"""Expand + validate + persist a 10,000-trial sweep, against Optuna enqueuing the same trials.

clusterd:
  (a) in-process: ``parse_sweep`` + ``expand`` + ``params_key`` + ``Store.create_sweep`` on a
      fresh SQLite database (opening and migrating the database is not timed) -- what the
      daemon's ``submit`` handler does, minus the socket and the reproducibility record;
  (b) end to end: ``clusterctl submit sweep.toml`` against a running daemon (process start
      to exit), which also records git state and ``pip freeze`` (shown separately).
Baselines, same trials (same params dicts), same run:
  Optuna ``study.enqueue_trial(params)`` x N into RDBStorage on SQLite, and into
  JournalStorage(JournalFileBackend).
Targets: (a) <= 0.3 s; >= 100x Optuna RDB; >= 10x Optuna Journal.
Also: the time to refuse a 10 M-trial grid (over ``[limits] max_trials``), in process and
through the daemon's ``submit`` op; it must be well under a second (target 0.1 s).

    python benchmarks/bench_submit.py [--quick]
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import _common as C

TARGET_S = 0.3
TARGET_RDB = 100.0
TARGET_JOURNAL = 10.0
TARGET_REFUSE_S = 0.1
HUGE_AXES = 7  # 10 values each: 10,000,000 trials


def write_huge_grid(path: Path) -> Path:
    """A sweep whose grid is 10 M trials: over the default cap, to be refused."""
    axes = "\n".join(f"a{i} = [{', '.join(map(str, range(10)))}]" for i in range(HUGE_AXES))
    path.write_text(f'name = "huge"\ncommand = "true"\n[params]\n{axes}\n')
    return path


def refuse_in_process(sweep: Path, runs: int) -> list[float]:
    """parse + expand of the 10 M grid, until its SpecError."""
    from clusterd.errors import SpecError
    from clusterd.spec import expand, parse_sweep

    text, times = sweep.read_text(), []
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            expand(parse_sweep(text, source=str(sweep), base_dir=sweep.parent))
        except SpecError:
            times.append(time.perf_counter() - t0)
        else:
            raise AssertionError("a 10 M-trial grid was expanded")
    return times


def refuse_over_socket(d: C.Daemon, sweep: Path, runs: int) -> list[float]:
    """The daemon's ``submit`` op on the 10 M grid, until its invalid_spec reply."""
    from clusterd.errors import ClusterdError

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            d.call("submit", path=str(sweep), display=sweep.name)
        except ClusterdError as exc:
            assert "max_trials" in exc.message, exc.message
            times.append(time.perf_counter() - t0)
        else:
            raise AssertionError("the daemon accepted a 10 M-trial grid")
    return times


def clusterd_in_process(root: Path, sweep: Path, runs: int) -> tuple[list[float], dict[str, float]]:
    from clusterd.daemon import db
    from clusterd.daemon.store import Store
    from clusterd.spec import expand, params_key, parse_sweep

    text = sweep.read_text()
    times: list[float] = []
    phases: dict[str, list[float]] = {"parse": [], "expand": [], "keys": [], "persist": []}
    for i in range(runs + 1):  # run 0 is a warm-up (imports, SQLAlchemy's statement cache)
        engine = db.make_engine(f"sqlite:///{root}/inproc-{i}.db")
        db.upgrade(engine)
        store = Store(engine)
        t0 = time.perf_counter()
        spec = parse_sweep(text, source=str(sweep), base_dir=sweep.parent)
        t1 = time.perf_counter()
        trials = expand(spec)
        t2 = time.perf_counter()
        keyed = [(p, params_key(p)) for p in trials]
        t3 = time.perf_counter()
        store.create_sweep(spec.to_dict(), keyed, None)
        t4 = time.perf_counter()
        engine.dispose()
        if i == 0:
            cold = t4 - t0
            continue
        times.append(t4 - t0)
        for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[k].append(v)
    out = {k: C.median(v) for k, v in phases.items()}
    out["cold"] = cold
    return times, out


def clusterd_end_to_end(
    root: Path, n: int, runs: int
) -> tuple[list[float], list[float], list[float]]:
    """Wall time of ``clusterctl submit``; of the bare ``submit`` op over the socket; and
    of the op refusing a 10 M-trial grid."""
    ctl_times: list[float] = []
    op_times: list[float] = []
    with C.Daemon(root) as d:
        refuse_times = refuse_over_socket(d, write_huge_grid(root / "huge.toml"), runs)
        for i in range(runs):
            f = C.write_sweep(root / f"e2e-{i}.toml", f"e2e-{i}", n)
            t0 = time.perf_counter()
            d.ctl("submit", str(f))
            ctl_times.append(time.perf_counter() - t0)
        for i in range(runs):
            f = C.write_sweep(root / f"op-{i}.toml", f"op-{i}", n)
            t0 = time.perf_counter()
            d.call("submit", path=str(f), display=f.name)  # no "python": no pip freeze
            op_times.append(time.perf_counter() - t0)
    return ctl_times, op_times, refuse_times


def pip_freeze_time() -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, check=False
    )
    return time.perf_counter() - t0


def trials_of(sweep: Path) -> list[dict]:
    from clusterd.spec import expand, load_sweep

    return expand(load_sweep(sweep))


def optuna_rdb(root: Path, trials: list[dict], runs: int) -> list[float]:
    import optuna

    times = []
    for i in range(runs):
        storage = optuna.storages.RDBStorage(f"sqlite:///{root}/optuna-{i}.db")
        study = optuna.create_study(study_name=f"s{i}", storage=storage)
        t0 = time.perf_counter()
        for p in trials:
            study.enqueue_trial(p)
        times.append(time.perf_counter() - t0)
    return times


def optuna_journal(root: Path, trials: list[dict], runs: int) -> list[float]:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    times = []
    for i in range(runs):
        storage = JournalStorage(JournalFileBackend(str(root / f"journal-{i}.log")))
        study = optuna.create_study(study_name=f"s{i}", storage=storage)
        t0 = time.perf_counter()
        for p in trials:
            study.enqueue_trial(p)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 200 if args.quick else 10_000
    runs = 2 if args.quick else 5
    rdb_runs = 1
    journal_runs = 1 if args.quick else 3
    C.header(f"bench_submit: expand + validate + persist {n:,} trials", args.quick)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with C.workdir("cdb-sub-") as root:
        sweep = C.write_sweep(root / "sweep.toml", "bench", n)
        trials = trials_of(sweep)
        assert len(trials) == n, len(trials)

        times, phases = clusterd_in_process(root, sweep, runs)
        ours = C.median(times)
        print(f"clusterd in-process runs: {', '.join(C.fmt_s(t) for t in times)}", flush=True)

        refuse = refuse_in_process(write_huge_grid(root / "huge-in.toml"), runs)
        ctl_times, op_times, refuse_op = clusterd_end_to_end(root, n, runs)
        print(f"clusterctl submit runs:   {', '.join(C.fmt_s(t) for t in ctl_times)}", flush=True)
        print(f"socket submit op runs:    {', '.join(C.fmt_s(t) for t in op_times)}", flush=True)
        freeze = pip_freeze_time()

        j_times = optuna_journal(root, trials, journal_runs)
        print(f"optuna journal runs:      {', '.join(C.fmt_s(t) for t in j_times)}", flush=True)
        r_times = optuna_rdb(root, trials, rdb_runs)
        print(f"optuna RDB runs:          {', '.join(C.fmt_s(t) for t in r_times)}", flush=True)

    rdb, journal = C.median(r_times), C.median(j_times)
    e2e, op = C.median(ctl_times), C.median(op_times)
    t = C.Table(f"submit {n:,} trials (medians; ratio = baseline / clusterd in-process)")
    t.add(
        "in-process parse+expand+persist",
        C.fmt_s(ours),
        target=f"<= {TARGET_S} s",
        ok=ours <= TARGET_S,
    )
    t.add(
        "  vs Optuna enqueue_trial, RDB sqlite",
        C.fmt_s(ours),
        C.fmt_s(rdb),
        C.fmt_ratio(rdb / ours),
        f">= {TARGET_RDB:.0f}x",
        rdb / ours >= TARGET_RDB,
    )
    t.add(
        "  vs Optuna enqueue_trial, Journal file",
        C.fmt_s(ours),
        C.fmt_s(journal),
        C.fmt_ratio(journal / ours),
        f">= {TARGET_JOURNAL:.0f}x",
        journal / ours >= TARGET_JOURNAL,
    )
    t.add(
        "end to end: clusterctl submit (wall)",
        C.fmt_s(e2e),
        C.fmt_s(rdb),
        C.fmt_ratio(rdb / e2e),
        f"<= {TARGET_S} s",
        e2e <= TARGET_S,
    )
    t.add(
        "  socket 'submit' op, no pip freeze",
        C.fmt_s(op),
        C.fmt_s(journal),
        C.fmt_ratio(journal / op),
    )
    t.add("  `pip freeze --all` alone (repro record)", C.fmt_s(freeze))
    for k in ("parse", "expand", "keys", "persist"):
        t.add(f"  phase: {k}", C.fmt_s(phases[k]))
    t.add("  first (cold) in-process run", C.fmt_s(phases["cold"]))
    for label, values in (("in process", refuse), ("socket 'submit' op", refuse_op)):
        t.add(
            f"refuse a 10 M-trial grid, {label}",
            C.fmt_s(C.median(values)),
            target=f"<= {TARGET_REFUSE_S} s",
            ok=C.median(values) <= TARGET_REFUSE_S,
        )
    t.note(
        f"clusterd: median of {runs} runs (after a warm-up); Optuna RDB: {rdb_runs} run "
        f"(~30 s at 10,000 trials); Optuna Journal: median of {journal_runs} runs"
    )
    t.note("end to end includes clusterctl start-up, the socket, git state and `pip freeze`")
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
