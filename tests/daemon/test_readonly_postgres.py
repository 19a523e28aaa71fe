"""The daemon-down reader on PostgreSQL (``clusterd.daemon.readonly``): the same answers
as the daemon's handlers, from a session the server itself keeps read-only, so even a
handler that tried to write could not change the database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from clusterd.daemon import db
from clusterd.daemon.readonly import Reader, ReadOnlyWarning
from clusterd.daemon.store import Store


def _sweep_with_metrics(url: str, root: Path) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    store = Store(engine)
    spec = {
        "name": "pg",
        "driver": "fake",
        "source": str(root / "pg.toml"),
        "output_dir": str(root / "pg"),
        "metric": {"name": "loss", "mode": "min"},
    }
    params = [({"lr": lr}, json.dumps({"lr": lr})) for lr in (0.1, 0.01)]
    sweep_id = store.create_sweep(spec, params, None)
    with store.read() as conn:
        trials = store.trials(conn, sweep_id)
    with store.tx() as conn:
        store.add_metrics(
            conn,
            [
                {"trial_id": t.id, "attempt": 1, "step": s, "name": "loss", "value": v, "t": 1.0}
                for t in trials
                for s, v in ((0, 1.0), (1, 0.5 + t.index))
            ],
        )
    engine.dispose()


def _fingerprint(url: str) -> list[tuple[str, int]]:
    """Row counts of every table: what a stray write would change."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            ).scalars()
            return [
                (t, conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one())
                for t in list(tables)
            ]
    finally:
        engine.dispose()


def test_postgres_reads_answer_like_the_daemon_from_a_read_only_session(
    new_pg_url: Callable[[], str], tmp_path: Path
) -> None:
    url = new_pg_url()
    _sweep_with_metrics(url, tmp_path)
    before = _fingerprint(url)
    with Reader(url) as reader, pytest.warns(ReadOnlyWarning):
        assert [s["name"] for s in reader.call("sweeps")] == ["pg"]
        rows = {r["index"]: r for r in reader.call("export", sweep="pg")["rows"]}
        assert (rows[0]["loss_best"], rows[1]["loss_last"]) == (0.5, 1.5)
        long = reader.call("metric_table", sweep="pg")
        assert len(long["rows"]) == 4
        # the session itself refuses writes: not just the op table
        with reader.engine.connect() as conn, pytest.raises(Exception, match="read-only"):
            conn.execute(text("DELETE FROM sweeps"))
    assert _fingerprint(url) == before
