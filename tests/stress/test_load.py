"""Load: 100 clients at once, mixed requests, while a 10,000-trial sweep runs (issue 8).

The real daemon runs a 10,000-trial sweep of ``true`` on the local driver (as many at
once as the machine has CPUs) while 100 clients -- threads in 4 worker processes, one
connection each -- send ping, status, sweeps, trials (small, running only, all
10,000), show, metrics, best, dry-run submits (the count) and real submits, each the
moment the previous reply arrived. Every request must succeed with a right answer; the
sweep must keep running. p50/p99/max latency per request kind and the daemon's RSS
are printed.

``CLUSTERD_LOAD_SECONDS`` (default 20; the issue's full run is 60) and
``CLUSTERD_LOAD_CLIENTS`` (default 100) scale it. Figures: benchmarks/bench_load.py.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks._common import rss_kb  # one /proc reader for this test and the benchmarks
from tests.conftest import Daemon, wait_for
from tests.stress import loadgen

SECONDS = float(os.environ.get("CLUSTERD_LOAD_SECONDS") or 20)
CLIENTS = int(os.environ.get("CLUSTERD_LOAD_CLIENTS") or 100)
BIG = 10_000
SMALL = 20

REPORTER = textwrap.dedent(
    """
    from clusterd import trial

    p = trial.params()
    for step in range(50):
        trial.report(step, loss=1.0 / (step + p["x"]))
    """
)


def sweeps(tmp_path: Path) -> tuple[Path, Path]:
    """The small sweep with metrics ("m") and the 10,000-trial one ("big")."""
    (tmp_path / "report.py").write_text(REPORTER)
    small = tmp_path / "m.toml"
    xs = ", ".join(str(x) for x in range(1, SMALL + 1))
    small.write_text(
        f'name = "m"\ncommand = ["{sys.executable}", "report.py"]\nmax_concurrent = 4\n'
        f'[metric]\nname = "loss"\n[params]\nx = [{xs}]\n'
    )
    big = tmp_path / "big.toml"
    big.write_text(
        'name = "big"\ncommand = ["true"]\nmax_concurrent = 8\n'
        f"[params]\nlr = {[i / 100 for i in range(100)]}\nseed = {list(range(BIG // 100))}\n"
    )
    return small, big


@pytest.mark.timeout(300 + 2 * SECONDS)
def test_100_clients_while_a_10000_trial_sweep_runs(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small, big = sweeps(tmp_path)
    daemon.ctl("submit", str(small))
    daemon.wait_sweep_done("m", timeout=120)
    daemon.ctl("submit", str(big))
    db_done = "select count(*) from trials t join sweeps s on s.id = t.sweep_id " + (
        "where s.name = 'big' and t.state = 'completed'"
    )
    from tests.faults.conftest import query

    db = daemon.home / "clusterd.db"
    wait_for(lambda: query(db, db_done)[0][0] > 0, 60, "the big sweep to run")
    (tmp_path / "submits").mkdir()
    # dry-run submits of the big file under a free name (its own name is taken: refused)
    count = big.with_name("count.toml")
    count.write_text(big.read_text().replace('name = "big"', 'name = "big-count"'))
    cfg = loadgen.Config(
        socket=str(daemon.home / "clusterd.sock"),
        seconds=SECONDS,
        clients=CLIENTS,
        big="big",
        big_trials=BIG,
        small="m",
        small_trials=SMALL,
        count_file=str(count),
        submit_dir=str(tmp_path / "submits"),
    )
    pid = daemon.pid
    peak = {"VmRSS": 0, "VmHWM": 0}

    def sample() -> None:
        for key, value in rss_kb(pid).items():
            peak[key] = max(peak[key], value)

    done_before = query(db, db_done)[0][0]
    t0 = time.monotonic()
    results = loadgen.run(cfg, env=daemon.env, during=sample)
    wall = time.monotonic() - t0
    done_during = query(db, db_done)[0][0] - done_before
    sample()

    assert not results.errors, f"{len(results.errors)} errors, first: {results.errors[:5]}"
    assert len(results.per_client) == CLIENTS and min(results.per_client) > 0
    assert done_during > 0, "the sweep made no progress under load"
    latencies = results.all()
    p50, p99 = loadgen.percentile(latencies, 50), loadgen.percentile(latencies, 99)
    with capsys.disabled():
        print(
            f"\nload: {CLIENTS} clients for {SECONDS:.0f} s ({wall:.0f} s wall): "
            f"{len(latencies)} requests ({len(latencies) / SECONDS:.0f}/s), 0 errors; "
            f"latency p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
            f"max {max(latencies) * 1e3:.0f} ms; daemon RSS {peak['VmRSS'] / 1024:.0f} MB "
            f"(peak VmHWM {peak['VmHWM'] / 1024:.0f} MB); {done_during} trials of "
            f"'big' completed meanwhile"
        )
        for kind, xs in sorted(results.latencies.items()):
            print(
                f"load:   {kind:24} n={len(xs):6}  p50 {loadgen.percentile(xs, 50) * 1e3:7.1f} ms"
                f"  p99 {loadgen.percentile(xs, 99) * 1e3:7.1f} ms"
            )
    assert "Traceback" not in daemon.log()
