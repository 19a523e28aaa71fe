"""The daemon's Proposer: a searcher hears about every result the database holds, once
per time the trial ended, including the new result of a relaunched trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterd.daemon import db
from clusterd.daemon.searching import Proposer
from clusterd.daemon.store import Store
from clusterd.search.base import Result, Searcher
from clusterd.spec import parse_sweep
from clusterd.spec.model import SweepSpec

SPEC = (
    'name = "s"\ncommand = "python train.py"\n[metric]\nname = "loss"\nmode = "min"\n'
    '[search]\nmethod = "recording"\nsamples = 5\nseed = 1\n'
    "[search.space]\nx = { uniform = [0.0, 1.0] }\n"
)


class Recording(Searcher):
    """Proposes x = index / 10 and keeps what it was told, in order."""

    name = "recording"

    def __init__(self, spec: SweepSpec) -> None:
        self.told: list[tuple[int, float | None, str]] = []
        self.running_at_start: list[int] = []

    def ask(self, index: int) -> dict[str, Any] | None:
        return {"x": index / 10}

    def tell(self, result: Result) -> None:
        self.told.append((result.index, result.value, result.state))

    def running(self, index: int, params: dict[str, Any]) -> None:
        self.running_at_start.append(index)


def end(store: Store, name: str, index: int, state: str, value: float | None) -> None:
    with store.tx() as conn:
        sweep = store.require_sweep(conn, name)
        trial = next(t for t in store.trials(conn, sweep.id) if t.index == index)
        store.transition(conn, trial, state, "test", best_value=value, best_step=5)


def top_up(store: Store, proposer: Proposer, name: str, free: int) -> int:
    with store.tx() as conn:
        sweep = store.require_sweep(conn, name)
        spec = SweepSpec.from_dict(sweep.spec)
        return proposer.top_up(conn, sweep, spec, free)


def test_a_relaunched_trial_s_new_result_reaches_the_searcher(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade(engine)
    try:
        store = Store(engine)
        spec = parse_sweep(SPEC, source="sweep.toml", base_dir=str(tmp_path))
        store.create_sweep(spec.to_dict(), [], None)
        proposer = Proposer(store, {"recording": Recording})

        def told() -> list[tuple[int, float | None, str]]:
            searcher = proposer._states[1].searcher
            assert isinstance(searcher, Recording)
            return searcher.told

        assert top_up(store, proposer, "s", 3) == 3  # trials 0-2, inserted as pending
        end(store, "s", 0, "failed", None)
        end(store, "s", 1, "completed", 0.5)
        end(store, "s", 2, "completed", 0.25)
        assert top_up(store, proposer, "s", 1) == 1  # trial 3, after hearing of 0-2
        assert told() == [(0, None, "failed"), (1, 0.5, "completed"), (2, 0.25, "completed")]

        assert store.relaunch("s", ["failed"]) == 1
        end(store, "s", 0, "completed", 0.125)  # the relaunched trial succeeds this time
        end(store, "s", 3, "completed", 0.75)
        assert top_up(store, proposer, "s", 1) == 1  # trial 4
        # what the searcher knows when it proposes trial 4: trial 0's new result, not the
        # failure it replaced
        assert sorted(told()) == [
            (0, 0.125, "completed"),
            (1, 0.5, "completed"),
            (2, 0.25, "completed"),
            (3, 0.75, "completed"),
        ]
    finally:
        engine.dispose()
