"""``clusterctl report`` of a 1,000-trial sweep with 100 steps each, beside Optuna's
``plot_*`` functions on the same data; ``export``/``results()`` of a 10,000-trial sweep
beside ``study.trials_dataframe()`` (issue 19's Performance section).

Report sweep: a grid of ``lr`` (10 values, log-spaced) x ``width`` (10) x ``opt`` (10
names) submitted to a real daemon and cancelled; with the daemon stopped, each trial
gets 100 steps of ``val_loss`` and ``acc`` (a curve whose floor depends on the three
parameters, plus noise) written straight into SQLite; 30 % of the trials are made
``stopped`` at step 10 with an ``asha`` stop decision (their curves end there). The
same trials go into an in-memory Optuna study (``create_trial``: params, value,
intermediate values; the stopped ones ``PRUNED``).

Figures: ``clusterctl report`` wall time (process start to exit) and file size; Optuna's
plotly ``plot_optimization_history``, ``plot_intermediate_values``,
``plot_parallel_coordinate``, ``plot_slice``, ``plot_param_importances`` (fANOVA, its
default) each timed, their sum, and the size of one self-contained HTML holding all
five (plotly.js inlined once: what "the plotly option" costs on disk); the same five
with ``optuna.visualization.matplotlib`` saved as inline PNGs. Then the 10,000-trial
sweep of ``bench_views`` (5 metrics x 20 steps): the ``export`` op, ``clusterctl
export`` (CSV), ``clusterd.client.results()``, and ``study.trials_dataframe()`` of a
study holding the same trials (params, value, 20 intermediate values).

    python benchmarks/bench_report.py [--quick] [--save DIR]
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import _common as C
import bench_views

LRS = [round(10 ** (-5 + 4 * i / 9), 8) for i in range(10)]
WIDTHS = [16 * (i + 1) for i in range(10)]
OPTS = ["sgd", "adam", "adamw", "rmsprop", "lamb", "lion", "adagrad", "nadam", "radam", "sm3"]


def report_sweep(path: Path, n_lr: int, n_width: int, n_opt: int) -> Path:
    lines = [
        'name = "rep"',
        f"command = {json.dumps(list(C.IDLE_COMMAND))}",
        "max_concurrent = 1",
        f'output_dir = "{path.parent / "runs-rep"}"',
        "",
        "[metric]",
        'name = "val_loss"',
        'mode = "min"',
        "",
        "[early_stopping]",
        'rule = "asha"',
        "min_steps = 10",
        "",
        "[params]",
        f"lr = {json.dumps(LRS[:n_lr])}",
        f"width = {json.dumps(WIDTHS[:n_width])}",
        f"opt = {json.dumps(OPTS[:n_opt])}",
        "epochs = 100",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def curves(params: dict[str, Any], steps: int, rng: random.Random) -> list[float]:
    floor = 0.05 + 0.1 * (math.log10(params["lr"]) + 3) ** 2 + 0.3 / params["width"] ** 0.5
    floor += 0.02 * OPTS.index(params["opt"])
    return [
        floor + (1 - floor) * math.exp(-0.06 * s) + rng.gauss(0, 0.01) * math.exp(-0.02 * s)
        for s in range(steps)
    ]


def fill_report(db: Path, steps: int, stop_share: float = 0.3) -> list[dict[str, Any]]:
    """Every trial of sweep ``rep``: ``steps`` steps of val_loss and acc, or stopped at
    step 10 by "asha". Returns what Optuna gets: params, state, curve."""
    rng = random.Random(0)
    con = sqlite3.connect(db)
    out = []
    try:
        sweep_id = con.execute("select id from sweeps where name = 'rep'").fetchone()[0]
        trials = con.execute(
            'select id, "index", params from trials where sweep_id = ? order by "index"',
            (sweep_id,),
        ).fetchall()
        now = time.time()
        rows, updates = [], []
        for trial_id, index, params_json in trials:
            params = json.loads(params_json)
            stopped = rng.random() < stop_share
            curve = curves(params, 11 if stopped else steps, rng)
            for step, v in enumerate(curve):
                rows.append((trial_id, 1, step, "val_loss", v, now))
                rows.append((trial_id, 1, step, "acc", 1 - v / 2, now))
            best = min(curve)
            decision = None
            if stopped:
                decision = json.dumps(
                    {"rule": "asha", "step": 10, "value": best, "threshold": best * 0.9,
                     "reason": f"best {best:.4g} by step 10 is not in the top third"}
                )  # fmt: skip
            updates.append(
                (
                    "stopped" if stopped else "completed",
                    len(curve) - 1,
                    curve[-1],
                    best,
                    curve.index(best),
                    decision,
                    now,
                    trial_id,
                )
            )
            out.append({"index": index, "params": params, "stopped": stopped, "curve": curve})
        con.executemany(
            "insert into metrics (trial_id, attempt, step, name, value, t) "
            "values (?, ?, ?, ?, ?, ?)",
            rows,
        )
        con.execute(
            "insert into metric_summaries (trial_id, name, last_value, last_step, "
            "last_attempt, lowest, highest, count) "
            "select g.trial_id, g.name, m.value, m.step, m.attempt, g.lo, g.hi, g.n "
            "from (select trial_id, name, max(id) as last_id, min(value) as lo, "
            "max(value) as hi, count(*) as n from metrics "
            "where trial_id in (select id from trials where sweep_id = ?) "
            "group by trial_id, name) as g "
            "join metrics as m on m.id = g.last_id",
            (sweep_id,),
        )
        con.executemany(
            "update trials set state = ?, reason = 'bench', last_step = ?, last_value = ?, "
            "best_value = ?, best_step = ?, stop_decision = ?, updated_at = ? where id = ?",
            updates,
        )
        con.execute("update sweeps set state = 'done' where id = ?", (sweep_id,))
        con.commit()
    finally:
        con.close()
    return out


def optuna_study(trials: list[dict[str, Any]]) -> Any:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, BaseDistribution] = {
        "lr": CategoricalDistribution(sorted({t["params"]["lr"] for t in trials})),
        "width": CategoricalDistribution(sorted({t["params"]["width"] for t in trials})),
        "opt": CategoricalDistribution(sorted({t["params"]["opt"] for t in trials})),
    }
    study = optuna.create_study(direction="minimize")
    study.add_trials(
        [
            create_trial(
                params={k: t["params"][k] for k in dists},
                distributions=dists,
                value=None if t["stopped"] else min(t["curve"]),
                state=TrialState.PRUNED if t["stopped"] else TrialState.COMPLETE,
                intermediate_values=dict(enumerate(t["curve"])),
            )
            for t in trials
        ]
    )
    return study


PLOTS = (
    "plot_optimization_history",
    "plot_intermediate_values",
    "plot_parallel_coordinate",
    "plot_slice",
    "plot_param_importances",
)


def optuna_plotly(study: Any, out: Path) -> tuple[dict[str, float], int]:
    """Seconds of each plotly plot, and the size of one HTML file holding all five."""
    from optuna import visualization as vis

    vis.plot_slice(study)  # warm-up: plotly's imports, as report_in_process warms its own
    times, figs = {}, []
    for name in PLOTS:
        t0 = time.perf_counter()
        figs.append(getattr(vis, name)(study))
        times[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figs)]
    out.write_text("<html><body>" + "".join(parts) + "</body></html>")
    times["write the HTML"] = time.perf_counter() - t0
    return times, out.stat().st_size


def optuna_matplotlib(study: Any) -> tuple[dict[str, float], int]:
    """Seconds of each matplotlib plot including its PNG, and the PNGs' base64 bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    times, size = {}, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" warnings
        vis.plot_slice(study)  # warm-up
        plt.close("all")
        for name in PLOTS:
            t0 = time.perf_counter()
            ax = getattr(vis, name)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=96)
            plt.close("all")
            times[name] = time.perf_counter() - t0
            size += len(base64.b64encode(buf.getvalue()))
    return times, size


def report_timed(d: C.Daemon, out: Path, runs: int) -> tuple[list[float], int]:
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [*d.ctl_argv, "report", "rep", "-o", str(out)],
            env=d.env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        walls.append(time.perf_counter() - t0)
    return walls, out.stat().st_size


def report_in_process(d: C.Daemon, runs: int) -> float:
    """Median seconds of gathering and rendering the report inside this process (the
    figures' imports warm after the first run, as Optuna's are)."""
    from clusterd.client import Client
    from clusterd.report import data, html

    walls = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        with Client(d.home / "clusterd.sock", timeout=300) as c:
            html.render(data.gather(c.call, "rep"))
        walls.append(time.perf_counter() - t0)
    return C.median(walls[1:])


def export_optuna(n: int, steps: int) -> tuple[float, tuple[int, int]]:
    """``study.trials_dataframe()`` of ``n`` trials with ``steps`` intermediate values."""
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    dists: dict[str, BaseDistribution] = {
        "lr": FloatDistribution(1e-4, 1e-2),
        "seed": IntDistribution(0, n),
    }
    study = optuna.create_study()
    trials = []
    for i in range(n):
        base = rng.uniform(0.2, 2.0)
        trials.append(
            create_trial(
                params={"lr": 1e-4 * (i % 100 + 1), "seed": i // 100},
                distributions=dists,
                value=base / steps,
                intermediate_values={s: base / (1 + s) for s in range(steps)},
                user_attrs={"val_loss": base, "val_acc": 1 - base / 3, "f1": 0.5},
            )
        )
    study.add_trials(trials)
    t0 = time.perf_counter()
    frame = study.trials_dataframe()
    return time.perf_counter() - t0, frame.shape


def kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 10 * 1024 * 1024 else f"{n / 1048576:,.1f} MiB"


def main() -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--save", metavar="DIR", help="keep the report and Optuna's HTML there")
    args = p.parse_args()
    quick = args.quick
    grid = (5, 4, 3) if quick else (10, 10, 10)
    steps = 20 if quick else 100
    n_export = 200 if quick else 10_000
    runs = 1 if quick else 3
    n = grid[0] * grid[1] * grid[2]
    C.header(f"bench_report: report of {n:,} trials x {steps} steps; export of {n_export:,}", quick)
    with C.workdir("cdb-report-") as root:
        d = C.Daemon(root)
        try:
            d.start()
            d.ctl("submit", str(report_sweep(root / "rep.toml", *grid)))
            d.ctl("submit", str(C.write_sweep(root / "views.toml", "views", n_export)))
            d.ctl("cancel", "rep")
            d.ctl("cancel", "views")
            C.wait_for(
                lambda: all(
                    t["state"] == "cancelled"
                    for s in ("rep", "views")
                    for t in d.call("trials", sweep=s)
                ),
                300,
                "every trial to be cancelled",
            )
            d.stop()
            # bench_views' summaries cover the whole database: fill its sweep first
            bench_views.fill_metrics(d.home / "clusterd.db", "views", bench_views.STEPS)
            trials = fill_report(d.home / "clusterd.db", steps)
            d.start()

            table = C.Table(f"report: {n:,} trials x {steps} steps (30 % stopped at step 10)")
            walls, size = report_timed(d, root / "report.html", runs)
            ours = C.median(walls)
            inproc = report_in_process(d, runs)
            study = optuna_study(trials)
            try:
                plotly_times, plotly_size = optuna_plotly(study, root / "optuna.html")
            except ImportError:  # Optuna's plotly figures need plotly
                plotly_times, plotly_size = {}, 0
            theirs = sum(plotly_times.values())
            table.add(
                "clusterctl report (wall, whole process)", C.fmt_s(ours),
                C.fmt_s(theirs) if theirs else "plotly not installed",
                C.fmt_ratio(theirs / ours) if theirs else "-",
            )  # fmt: skip
            table.add(
                "  the same in-process (gather + render)", C.fmt_s(inproc),
                C.fmt_s(theirs) if theirs else "-",
                C.fmt_ratio(theirs / inproc) if theirs else "-",
            )  # fmt: skip
            table.add("  report file (matplotlib PNGs, no script)", kib(size), kib(plotly_size))
            for name, seconds in plotly_times.items():
                table.add(f"  optuna {name} (plotly)", "", C.fmt_s(seconds))
            mpl_times, mpl_size = optuna_matplotlib(study)
            table.add(
                "  optuna.visualization.matplotlib, all five", "",
                C.fmt_s(sum(mpl_times.values())),
            )  # fmt: skip
            table.add("  the same five as base64 PNGs", "", kib(mpl_size))
            table.note(
                "baseline: Optuna's five plotly plot_* functions on the same trials (summed), "
                "in-process after a warm-up call, and the self-contained HTML of all five"
            )
            table.print()
            if args.save:
                for name in ("report.html", "optuna.html"):
                    if (root / name).exists():
                        shutil.copy(root / name, Path(args.save) / name)

            table = C.Table(f"export: {n_export:,} trials x 5 metrics x {bench_views.STEPS} steps")
            walls, size = bench_views.op_timed(d, "export", runs, sweep="views")
            opt_s, shape = export_optuna(n_export, bench_views.STEPS)
            table.add(
                "'export' op over the socket p50", C.fmt_s(C.median(walls)), C.fmt_s(opt_s),
                C.fmt_ratio(opt_s / C.median(walls)),
            )  # fmt: skip
            table.add("  reply size", kib(size))
            walls, size = bench_views.timed_ctl(d, ["export", "views"], runs)
            table.add("clusterctl export (CSV, wall)", C.fmt_s(C.median(walls)))
            table.add("  bytes printed", kib(size))
            os.environ["CLUSTERD_HOME"] = str(d.home)  # results() finds the daemon
            res = bench_views.results_timed(d, "views", runs)
            if res is not None:
                rwalls, rshape = res
                table.add(
                    "clusterd.client.results() p50", C.fmt_s(C.median(rwalls)), C.fmt_s(opt_s),
                    C.fmt_ratio(opt_s / C.median(rwalls)),
                )  # fmt: skip
                table.add("  DataFrame rows x columns", f"{rshape[0]} x {rshape[1]}",
                          f"{shape[0]} x {shape[1]}")  # fmt: skip
            table.note("baseline: study.trials_dataframe() of the same trials in memory")
            table.print()
        finally:
            d.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
