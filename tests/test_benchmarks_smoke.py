"""Smoke test of benchmarks/: every script runs with --quick, exits 0 and prints its table.

No timing is asserted (figures live in benchmarks/README.md, not in tests). The scripts
need the ``bench`` extra (Optuna, submitit), so this module is skipped without it. They
start together and run side by side (each has its own daemon and temp dir), which keeps
the whole module well under a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("submitit")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = [
    "bench_slurm.py",
    "bench_submit.py",
    "bench_cli.py",
    "bench_rss.py",
    "bench_local.py",
    "bench_ingest.py",
    "bench_trial.py",
    "bench_early_stopping.py",
    "bench_tui.py",
    "bench_views.py",
    "bench_htcondor.py",
    "bench_pbs.py",
    "bench_sge.py",
    "bench_gpu_sampler.py",
    "bench_report.py",
    "bench_gpu_storage.py",
]
TIMEOUT = 150


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.Popen[str]]:
    env = {**os.environ}
    env.pop("CLUSTERD_HOME", None)
    env.pop("CLUSTERD_DB_URL", None)
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCH / name), "--quick"],
            cwd=BENCH.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in SCRIPTS
    }
    yield procs
    for proc in procs.values():  # a failed assertion must not leave a script running
        if proc.poll() is None:
            proc.terminate()  # the scripts turn SIGTERM into their cleanup
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.timeout(TIMEOUT + 30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_runs_quick(runs: dict[str, subprocess.Popen[str]], script: str) -> None:
    proc = runs[script]
    deadline = time.monotonic() + TIMEOUT
    try:
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"{script} --quick ran over {TIMEOUT} s:\n{out[-3000:]}")
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{out[-3000:]}"
    lines = out.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("figure ")), None)
    assert header is not None, f"{script} printed no table:\n{out[-3000:]}"
    assert set(lines[header + 1]) <= {"-", " "}, lines[header + 1]
    for column in ("clusterd", "baseline", "ratio", "target", "result"):
        assert column in lines[header]
    assert any(line.startswith("summary: ") for line in lines[header:]), out[-2000:]
    assert "Traceback" not in out, out[-3000:]
