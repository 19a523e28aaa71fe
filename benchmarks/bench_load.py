"""Request latency and daemon memory under load: 100 clients while a 10,000-trial sweep runs.

A daemon runs a 10,000-trial sweep of ``true`` (local driver, 8 at once at most) next to
a finished 20-trial sweep whose trials reported metrics. Then 100 clients (threads in 4
processes, one connection each, the next request as soon as the reply is in) send the
mix of tests/stress/loadgen.py (ping, status, sweeps, trials, show, metrics, best,
dry-run and real submits, now and then all 10,000 trials) for ``--seconds``. Figures,
medians over ``--runs`` runs: p50/p99/max latency, requests/s, errors, the daemon's
VmRSS/VmHWM. Baseline, same daemon, same sweep running, same mix: one client alone
(what a request costs without contention); the ratio says what 100 clients add.

    python benchmarks/bench_load.py [--quick] [--seconds 60] [--runs 3]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import _common as C

sys.path.insert(0, str(C.REPO))
from tests.stress import loadgen  # the same load the CI test applies

SMALL = 20
REPORTER = (
    "from clusterd import trial\n"
    "p = trial.params()\n"
    "for step in range(50):\n"
    "    trial.report(step, loss=1.0 / (step + p['x']))\n"
)


def setup(d: C.Daemon, root: Path, big_trials: int) -> tuple[Path, Path]:
    (root / "report.py").write_text(REPORTER)
    small = root / "m.toml"
    xs = ", ".join(str(x) for x in range(1, SMALL + 1))
    small.write_text(
        f'name = "m"\ncommand = ["{sys.executable}", "{root / "report.py"}"]\n'
        f'max_concurrent = 4\n[metric]\nname = "loss"\n[params]\nx = [{xs}]\n'
    )
    d.ctl("submit", str(small))
    C.wait_for(lambda: d.call("sweeps")[0]["state"] == "done", 120, "the metrics sweep")
    big = C.write_sweep(root / "big.toml", "big", big_trials, ["true"], max_concurrent=8)
    d.ctl("submit", str(big))
    C.wait_for(
        lambda: any(t["state"] == "completed" for t in d.call("trials", sweep="big")),
        60,
        "the big sweep to run",
    )
    (root / "submits").mkdir(exist_ok=True)
    return small, big


def one_run(cfg: loadgen.Config, d: C.Daemon) -> dict[str, Any]:
    pid = d.pid
    peak = {"VmRSS": 0, "VmHWM": 0}

    def sample() -> None:
        for key, value in C.rss_kb(pid).items():
            peak[key] = max(peak[key], value)

    res = loadgen.run(cfg, processes=min(4, cfg.clients), env=d.env, during=sample)
    sample()
    xs = res.all()
    return {
        "p50": C.percentile(xs, 50),
        "p99": C.percentile(xs, 99),
        "max": max(xs) if xs else float("nan"),
        "rate": len(xs) / cfg.seconds,
        "errors": len(res.errors),
        "first_error": res.errors[0] if res.errors else "",
        "rss": peak["VmRSS"] / 1024,
        "hwm": peak["VmHWM"] / 1024,
    }


def main() -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="load per run (default 30)")
    p.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    p.add_argument("--clients", type=int, default=100)
    args = p.parse_args()
    big_trials, seconds, runs, clients = 10_000, args.seconds, args.runs, args.clients
    if args.quick:
        big_trials, seconds, runs, clients = 1_000, 3.0, 1, 10
    C.header(f"bench_load: {clients} clients while a {big_trials:,}-trial sweep runs", args.quick)
    loaded: list[dict[str, Any]] = []
    alone: list[dict[str, Any]] = []
    with C.workdir("cdb-load-") as root, C.Daemon(root) as d:
        _small, big = setup(d, root, big_trials)
        for run in range(runs):
            # dry-run submits of the big file under a free name (its own name is taken: refused)
            count = big.with_name("count.toml")
            count.write_text(big.read_text().replace('name = "big"', 'name = "big-count"'))
            cfg = loadgen.Config(
                socket=str(d.home / "clusterd.sock"),
                seconds=seconds,
                clients=clients,
                big="big",
                big_trials=big_trials,
                small="m",
                small_trials=SMALL,
                count_file=str(count),
                submit_dir=str(root / "submits"),
                seed=run,
            )
            alone.append(one_run(cfg.__class__(**{**cfg.__dict__, "clients": 1}), d))
            loaded.append(one_run(cfg, d))
            print(
                f"run {run + 1}: {clients} clients p50 {C.fmt_s(loaded[-1]['p50'])} "
                f"p99 {C.fmt_s(loaded[-1]['p99'])} {loaded[-1]['rate']:.0f} req/s "
                f"{loaded[-1]['errors']} errors; 1 client p50 {C.fmt_s(alone[-1]['p50'])} "
                f"p99 {C.fmt_s(alone[-1]['p99'])}",
                flush=True,
            )
            time.sleep(1.0)
        left = next(s for s in d.call("sweeps") if s["name"] == "big")["counts"]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return C.median([r[key] for r in rows])

    t = C.Table(f"{clients} clients, mixed requests, {seconds:.0f} s x {runs} runs (medians)")
    for key, label in (("p50", "latency p50"), ("p99", "latency p99"), ("max", "latency max")):
        a, b = med(loaded, key), med(alone, key)
        t.add(label, C.fmt_s(a), f"1 client {C.fmt_s(b)}", C.fmt_ratio(a / b))
    rate_a, rate_b = med(loaded, "rate"), med(alone, "rate")
    t.add("requests/s", f"{rate_a:.0f}", f"1 client {rate_b:.0f}", C.fmt_ratio(rate_a / rate_b))
    errors = sum(r["errors"] for r in loaded + alone)
    t.add("errors (all runs)", str(errors), target="0", ok=errors == 0)
    t.add("daemon VmRSS under load", f"{med(loaded, 'rss'):.0f} MB", f"{med(alone, 'rss'):.0f} MB")
    t.add("daemon VmHWM (peak)", f"{max(r['hwm'] for r in loaded):.0f} MB")
    if errors:
        t.note(f"first error: {next(r['first_error'] for r in loaded + alone if r['errors'])}")
    t.note(f"the big sweep's trials at the end: {left}")
    t.note("baseline: one client alone against the same daemon, same running sweep, same mix")
    t.print()
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
