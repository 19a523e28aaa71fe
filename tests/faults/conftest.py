"""Helpers for the fault tests: small sweeps, read-only looks at the database, audits."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterd.testing.waiting import alive as alive  # re-exported for the fault tests

# A trial that reports ``steps`` metric lines (two values each), ``pause`` s apart.
TRIAL = textwrap.dedent(
    """
    import time

    from clusterd import trial

    p = trial.params()
    for step in range(p["steps"]):
        trial.report(step, loss=1.0 / (step + p["x"]), acc=step * 0.5)
        time.sleep(p["pause"])
    """
)


def write_sweep(
    directory: Path,
    name: str,
    trials: int = 3,
    steps: int = 50,
    pause: float = 0.01,
    max_concurrent: int = 3,
    extra: str = "",
) -> Path:
    """A sweep file (and its trial script) in ``directory``; output in ``runs/<name>``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trial.py").write_text(TRIAL)
    xs = ", ".join(str(x) for x in range(1, trials + 1))
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n'
        f'command = ["{sys.executable}", "trial.py"]\n'
        f"max_concurrent = {max_concurrent}\n"
        '[metric]\nname = "loss"\n'
        f"[params]\nx = [{xs}]\nsteps = {steps}\npause = {pause}\n" + extra
    )
    return path


def ro(db: Path) -> sqlite3.Connection:
    """A read-only connection: the test never writes behind the daemon's back."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def query(db: Path, sql: str, *args: Any) -> list[Any]:
    """Rows of ``sql``, or [] while the database or its schema does not exist yet."""
    if not db.exists():
        return []
    conn = ro(db)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def metric_count(db: Path) -> int:
    rows = query(db, "select count(*) from metrics")
    return int(rows[0][0]) if rows else 0


def metrics_exactly_once(db: Path, output_dir: Path) -> int:
    """Assert that every metric line of every events file under ``output_dir`` is in the
    metrics table exactly once (and nothing else is); return the number of lines."""
    lines, missing, extra = metric_diff(db, output_dir)
    assert not missing and not extra, (
        f"{len(missing)} metric values missing from the database (first {missing[:3]}), "
        f"{len(extra)} duplicated or foreign (first {extra[:3]})"
    )
    return lines


Value = tuple[str, int, str, float]  # "<index>/attempt-<n>", step, name, value


def metric_diff(db: Path, output_dir: Path) -> tuple[int, list[Value], list[Value]]:
    """Compare the events files under ``output_dir`` with the metrics table: the number of
    metric lines, and the values missing from / extra in the table (as (file, step, name,
    value) tuples)."""
    conn = ro(db)
    lines = 0
    missing: list[Value] = []
    extra: list[Value] = []
    try:
        for events in sorted(output_dir.glob("*/attempt-*/events.jsonl")):
            index = int(events.parent.parent.name)
            attempt = int(events.parent.name.split("-")[1])
            expected: Counter[tuple[int, str, float]] = Counter()
            for line in events.read_bytes().splitlines():
                event = json.loads(line)
                if event.get("type") == "metric":
                    lines += 1
                    for key, value in event["values"].items():
                        expected[(event["step"], key, float(value))] += 1
            got = Counter(
                (step, name, value)
                for step, name, value in conn.execute(
                    "select m.step, m.name, m.value from metrics m "
                    "join trials t on t.id = m.trial_id "
                    "join sweeps s on s.id = t.sweep_id "
                    'where s.output_dir = ? and t."index" = ? and m.attempt = ?',
                    (str(output_dir), index, attempt),
                )
            )
            where = f"{index}/attempt-{attempt}"
            missing += [(where, *v) for v in sorted((expected - got).elements())]
            extra += [(where, *v) for v in sorted((got - expected).elements())]
    finally:
        conn.close()
    return lines, missing, extra


def holds_for(predicate: Callable[[], bool], seconds: float) -> bool:
    """Watch ``predicate`` for ``seconds``; False as soon as it stops holding."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.1)
    return predicate()


def sweep_state(db: Path, name: str) -> str | None:
    rows = query(db, "select state from sweeps where name = ?", name)
    return rows[0][0] if rows else None
