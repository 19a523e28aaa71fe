"""``clusterctl sweeps`` round trip (process start to exit) against ``optuna trials``.

clusterd: a daemon holding a 10,000-trial sweep; ``clusterctl sweeps`` run >= 20 times
(the installed console script, as a user runs it), wall time from spawn to exit.
Baseline, same run: ``optuna trials --study-name S --storage sqlite:///...`` on a
1,000-trial study (completed trials), >= 5 times.
Also: ``python -X importtime -c "import clusterd.cli"`` (cumulative, median of 5) and
whether it loaded SQLAlchemy, Textual or pynvml (it must not: principle 3).
Targets: p50 <= 60 ms; >= 10x faster than ``optuna trials``.

    python benchmarks/bench_cli.py [--quick]
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import _common as C

TARGET_P50 = 0.060
TARGET_RATIO = 10.0
FORBIDDEN = ("sqlalchemy", "textual", "pynvml", "alembic", "rich")
NOSITE = (
    "import sys; sys.path.insert(0, {path!r}); "
    "from clusterd.cli import main; sys.exit(main(['sweeps']))"
)
CLUSTERD_PARENT = str(Path(__import__("clusterd").__file__).resolve().parent.parent)


def timed(argv: list[str], env: dict | None, runs: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(runs):
        w, c = C.run_timed(argv, env)
        walls.append(w)
        cpus.append(c)
    return walls, cpus


#: every verb's module, imported by the check of what clusterctl loads
VERB_MODULES = (
    "clusterd.cli.sweeps",
    "clusterd.cli.submit",
    "clusterd.cli.trials",
    "clusterd.cli.system",
)


def importtime(
    module: str, env: dict[str, str], also: tuple[str, ...] = ()
) -> tuple[float, set[str]]:
    """Cumulative µs of ``module`` from -X importtime, and the top-level packages loaded
    (by ``module`` and the modules ``also`` imported after it)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {', '.join((module, *also))}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    cumulative = None
    loaded: set[str] = set()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        name = m.group(4)
        loaded.add(name.split(".")[0])
        if name == module:
            cumulative = int(m.group(2))
    assert cumulative is not None, proc.stderr[-500:]
    return cumulative / 1e6, loaded


def make_optuna_study(path: Path, n: int) -> None:
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="bench", storage=f"sqlite:///{path}")
    dists = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "depth": IntDistribution(1, 16)}
    trials = [
        optuna.trial.create_trial(
            params={"lr": 1e-4 * (1 + i % 100), "depth": 1 + i % 16},
            distributions=dists,
            value=1.0 / (i + 1),
        )
        for i in range(n)
    ]
    study.add_trials(trials)


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 200 if args.quick else 10_000
    n_optuna = 50 if args.quick else 1_000
    runs = 5 if args.quick else 30
    optuna_runs = 1 if args.quick else 7
    C.header(f"bench_cli: clusterctl sweeps with {n:,} trials vs optuna trials", args.quick)
    logging.getLogger("optuna").setLevel(logging.WARNING)

    with C.workdir("cdb-cli-") as root:
        # baselines for the floor: a bare interpreter, and the import alone
        env = C.bench_env(root)
        few = 3 if args.quick else max(5, runs // 3)
        timed([sys.executable, "-c", "import clusterd.cli"], env, 1)  # fills the bytecode cache
        py_bare, py_bare_cpu = timed([sys.executable, "-c", "pass"], env, few)
        py_nosite, _ = timed([sys.executable, "-S", "-c", "pass"], env, few)
        py_import, _ = timed([sys.executable, "-c", "import clusterd.cli"], env, few)
        imports = [importtime("clusterd.cli", env) for _ in range(2 if args.quick else 5)]
        with C.Daemon(root) as d:
            sweep = C.write_sweep(root / "sweep.toml", "bench", n)
            d.ctl("submit", str(sweep))
            for _ in range(1 if args.quick else 3):  # warm-up: page cache, daemon's statement cache
                d.ctl("sweeps")
            ctl, ctl_cpu = timed([*d.ctl_argv, "sweeps"], d.env, runs)
            ctl_json, _ = timed([*d.ctl_argv, "sweeps", "--json"], d.env, runs // 2)
            # the same verb with site (and its .pth files: the editable-install finder, and
            # whatever the environment adds) skipped: what the interpreter floor costs
            nosite_argv = [sys.executable, "-S", "-c", NOSITE.format(path=CLUSTERD_PARENT)]
            timed(nosite_argv, d.env, 1)
            ctl_nosite, _ = timed(nosite_argv, d.env, runs // 2)
            op = []
            for _ in range(runs):
                t0 = time.perf_counter()
                d.call("sweeps")
                op.append(time.perf_counter() - t0)
            print(d.ctl("sweeps").stdout, flush=True)
        study_db = root / "optuna.db"
        t0 = time.perf_counter()
        make_optuna_study(study_db, n_optuna)
        print(f"(built the {n_optuna}-trial optuna study in {time.perf_counter() - t0:.1f} s)")
        optuna_cli = Path(sys.executable).parent / "optuna"
        optuna_argv = [
            str(optuna_cli) if optuna_cli.exists() else "optuna",
            "trials",
            "--study-name",
            "bench",
            "--storage",
            f"sqlite:///{study_db}",
        ]
        if not args.quick:
            timed(optuna_argv, env, 1)  # warm-up
        opt, opt_cpu = timed(optuna_argv, env, optuna_runs)

    imp = C.median([t for t, _ in imports])
    # what a verb loads too: the verb modules are imported only when their verb runs
    loaded = imports[0][1] | importtime("clusterd.cli", env, VERB_MODULES)[1]
    bad = sorted(m for m in FORBIDDEN if m in loaded)

    p50, p90 = C.percentile(ctl, 50), C.percentile(ctl, 90)
    o50 = C.percentile(opt, 50)
    t = C.Table(f"clusterctl sweeps, {n:,} trials in the daemon (wall, process start to exit)")
    t.add(
        "clusterctl sweeps p50",
        C.fmt_s(p50),
        target=f"<= {TARGET_P50 * 1e3:.0f} ms",
        ok=p50 <= TARGET_P50,
    )
    t.add("clusterctl sweeps p90", C.fmt_s(p90))
    t.add(
        f"  vs optuna trials ({n_optuna:,} trials) p50",
        C.fmt_s(p50),
        C.fmt_s(o50),
        C.fmt_ratio(o50 / p50),
        f">= {TARGET_RATIO:.0f}x",
        o50 / p50 >= TARGET_RATIO,
    )
    t.add("optuna trials p90", C.fmt_s(C.percentile(opt, 90)))
    c50, oc50 = C.percentile(ctl_cpu, 50), C.percentile(opt_cpu, 50)
    t.add(
        "clusterctl sweeps CPU (user+sys) p50", C.fmt_s(c50), C.fmt_s(oc50), C.fmt_ratio(oc50 / c50)
    )
    t.add("clusterctl sweeps --json p50", C.fmt_s(C.percentile(ctl_json, 50)))
    t.add("  same, python -S (site/.pth skipped) p50", C.fmt_s(C.percentile(ctl_nosite, 50)))
    t.add("  'sweeps' op over the socket p50", C.fmt_s(C.percentile(op, 50)))
    t.add("  python -c pass p50 (floor)", C.fmt_s(C.percentile(py_bare, 50)))
    t.add("  python -c pass CPU p50 (floor)", C.fmt_s(C.percentile(py_bare_cpu, 50)))
    t.add("  python -S -c pass p50 (no site/.pth)", C.fmt_s(C.percentile(py_nosite, 50)))
    t.add("  python -c 'import clusterd.cli' p50", C.fmt_s(C.percentile(py_import, 50)))
    t.add("import clusterd.cli (-X importtime, cum.)", C.fmt_s(imp))
    t.add(
        "  heavy modules loaded by clusterd.cli",
        ", ".join(bad) if bad else "none",
        target="none of " + "/".join(FORBIDDEN[:3]),
        ok=not bad,
    )
    print(f"sqlalchemy loaded by `import clusterd.cli`: {'sqlalchemy' in loaded}")
    t.note(f"clusterctl: {runs} runs; optuna trials: {optuna_runs} runs; both after a warm-up")
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
