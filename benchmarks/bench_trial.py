"""The trial API's own costs: import time and ``report()`` per call.

- ``python -X importtime -c "from clusterd import trial"`` in 10 fresh processes (inside a
  clusterd attempt's environment): cumulative time of ``clusterd.trial`` (+ the tiny
  ``clusterd`` package), median; and the modules it loads (stdlib only).
- ``trial.report(step, loss=v)`` µs per call (timeit, best of 5 x 20,000 calls, events
  file in /tmp), plus a two-metric variant.
- Beside it: Optuna ``trial.report(value, step)`` µs per call into RDB on SQLite and into
  JournalStorage (the baseline of bench_ingest.py), just printed.
Targets (issue "Trials run"): import <= 9 ms cumulative; report() <= 6 µs per call.

    python benchmarks/bench_trial.py [--quick]
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import _common as C

TARGET_IMPORT = 0.009
TARGET_REPORT = 6e-6


def import_time(env: dict[str, str]) -> tuple[float, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from clusterd import trial"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    total = 0
    loaded: set[str] = set()
    seen_site = False
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        name, depth = m.group(4), len(m.group(3))
        if name == "site":
            seen_site = True
            continue
        if not seen_site:
            continue  # interpreter start-up and site (.pth files): not ours
        loaded.add(name)
        if depth == 1:  # top level after site: what `from clusterd import trial` caused
            total += int(m.group(2))
    return total / 1e6, loaded


def report_cost(env: dict[str, str], stmt: str) -> float:
    code = (
        "import timeit; from clusterd import trial; "
        f"print(min(timeit.repeat({stmt!r}, globals=globals(), number=20000, repeat=5)) / 20000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> int:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    runs = 3 if args.quick else 10
    C.header("bench_trial: clusterd.trial import and report()", args.quick)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    with C.workdir("cdb-tri-") as d:
        env = {
            **C.bench_env(d),
            "CLUSTERD_EVENTS": str(d / "events.jsonl"),
            "CLUSTERD_ATTEMPT_DIR": str(d),
            "CLUSTERD_TRIAL_DIR": str(d),
        }
        import_time(env)  # fills the bytecode cache
        imports = [import_time(env) for _ in range(runs)]
        one = report_cost(env, "trial.report(5, loss=0.25)")
        two = report_cost(env, "trial.report(5, loss=0.25, acc=0.5)")
        from bench_ingest import optuna_report

        rdb, journal = optuna_report(
            d, 200 if args.quick else 1_000, 1_000 if args.quick else 5_000
        )
    imp = C.median([t for t, _ in imports])
    loaded = imports[0][1]
    stdlib = set(sys.stdlib_module_names)
    foreign = sorted(
        m for m in loaded if m.split(".")[0] not in stdlib and m.split(".")[0] != "clusterd"
    )
    t = C.Table("clusterd.trial (medians)")
    t.add(
        "import clusterd.trial (cumulative)",
        C.fmt_s(imp),
        target=f"<= {TARGET_IMPORT * 1e3:.0f} ms",
        ok=imp <= TARGET_IMPORT,
    )
    t.add(
        "  non-stdlib modules it loads", ", ".join(foreign) or "none", target="none", ok=not foreign
    )
    t.add("  modules it loads", str(len(loaded)))
    t.add(
        "report(step, loss=v) per call",
        C.fmt_s(one),
        C.fmt_s(rdb),
        C.fmt_ratio(rdb / one),
        f"<= {TARGET_REPORT * 1e6:.0f} µs",
        one <= TARGET_REPORT,
    )
    t.add(
        "  vs Optuna trial.report, Journal",
        C.fmt_s(one),
        C.fmt_s(journal),
        C.fmt_ratio(journal / one),
    )
    t.add("report(step, loss=v, acc=w) per call", C.fmt_s(two))
    t.note("baseline on the report() row: Optuna trial.report into RDB on SQLite")
    t.note(f"import: median of {runs} fresh processes; report(): best of 5 x 20,000 calls")
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
