"""The per-trial statements are built once and take their columns from the call: an
update sets exactly the columns it names, keeps the rest, and refuses a misspelt one
instead of dropping it (a prebuilt UPDATE would otherwise skip it without a word)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from clusterd.daemon.store import A, Store
from tests.daemon.test_store_lists import make_sweep


def first_trial(store: Store, tmp_path: Path) -> tuple[int, int]:
    """(trial id, attempt id) of trial 0 of a new sweep, with one queued attempt."""
    sweep_id = make_sweep(store, tmp_path, "s")
    with store.tx() as conn:
        (trial, _) = store.pending_trials(conn, sweep_id, 2)
        row = {"trial_id": trial.id, "number": 1, "token": "tok-1", "state": "queued"}
        store.add_attempts(conn, [{**row, "events_offset": 0, "cancel_requested": False}])
        store.transition(conn, trial, "queued", "submitted", 1, attempts=1)
        (attempt_id,) = store.attempt_ids(conn, ["tok-1"]).values()
    return trial.id, attempt_id


def attempt(engine: Engine, attempt_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(select(A).where(A.c.id == attempt_id)).one()._mapping)


def test_an_update_sets_what_it_names_and_keeps_the_rest(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine)
    _, attempt_id = first_trial(store, tmp_path)
    with store.tx() as conn:
        store.update_attempt(conn, attempt_id, job_id="57_0", submitted_at=1.5)
    with store.tx() as conn:
        store.update_attempt(conn, attempt_id, state="running", host="node7")
    row = attempt(engine, attempt_id)
    assert (row["state"], row["host"], row["job_id"], row["submitted_at"]) == (
        "running",
        "node7",
        "57_0",
        1.5,
    )


def test_a_misspelt_column_is_refused_and_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine)
    trial_id, attempt_id = first_trial(store, tmp_path)
    with pytest.raises(ValueError, match="no such attempt column: hots"), store.tx() as conn:
        store.update_attempt(conn, attempt_id, state="running", hots="node7")
    assert attempt(engine, attempt_id)["state"] == "queued"
    with store.read() as conn:
        trial = store.trial_by_id(conn, trial_id)
    with pytest.raises(ValueError, match="no such trial column: failure"), store.tx() as conn:
        store.transition(conn, trial, "failed", "boom", 1, failure=1)
    with store.read() as conn:
        assert store.trial_by_id(conn, trial_id).state == "queued"
        assert [x.to_state for x in store.transitions(conn, trial_id)] == ["pending", "queued"]


def test_pending_and_live_counts_follow_their_parameters(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine)
    first_trial(store, tmp_path)
    with store.read() as conn:
        (sweep,) = store.active_sweeps(conn)
        assert [t.index for t in store.pending_trials(conn, sweep.id, 5)] == [1]
        assert store.pending_trials(conn, sweep.id, 0) == []
        assert store.live_count(conn, sweep.id) == 1
        assert store.live_count(conn, sweep.id + 1) == 0
        assert store.has_unfinished(conn, sweep.id)
