"""The whole daemon on a real PostgreSQL server: a sweep runs to the end and is queryable."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Daemon


def test_sweep_runs_to_the_end_on_postgres(
    short_home: Path, new_pg_url: Callable[[], str], tmp_path: Path
) -> None:
    url = new_pg_url()
    daemon = Daemon(short_home)
    daemon.env["CLUSTERD_DB_URL"] = url
    script = tmp_path / "t.py"
    script.write_text(
        "from clusterd import trial\n"
        "p = trial.params()\n"
        "for s in range(5):\n"
        "    trial.report(s, loss=p['x'] / (s + 1))\n"
    )
    (tmp_path / "sweep.toml").write_text(
        textwrap.dedent(
            f"""
            name = "pg"
            command = ["{sys.executable}", "t.py"]
            max_concurrent = 2
            [metric]
            name = "loss"
            [params]
            x = [1.0, 2.0, 3.0]
            """
        )
    )
    daemon.start()
    try:
        assert "postgresql" in daemon.clusterd("status").stdout
        assert not (short_home / "clusterd.db").exists()
        daemon.ctl("submit", str(tmp_path / "sweep.toml"))
        trials = daemon.wait_sweep_done("pg")
        assert [t["state"] for t in trials] == ["completed"] * 3
        assert [t["best_value"] for t in trials] == [0.2, 0.4, 0.6]
        best = daemon.ctl_json("best", "pg", "-n", "1")
        assert best["trials"][0]["name"] == "pg/0"
    finally:
        daemon.stop()
