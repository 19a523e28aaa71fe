"""The sweep lists read on every request and scheduling pass stay small as history grows:
finished sweeps are not scheduled, and no list row carries a sweep's repro record."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from clusterd.daemon.store import Store
from clusterd.spec import parse_sweep
from clusterd.spec.expand import expand, params_key

FREEZE = {"pip_freeze": "\n".join(f"package{i}==1.0.{i}" for i in range(300)), "git": "3f2c1e9"}


def make_sweep(store: Store, tmp_path: Path, name: str) -> int:
    text = f'name = "{name}"\ncommand = "true"\n[params]\nx = [1, 2]\n'
    spec = parse_sweep(text, source="sweep.toml", base_dir=str(tmp_path))
    trials = [(params, params_key(params)) for params in expand(spec)]
    return store.create_sweep(spec.to_dict(), trials, FREEZE)


def test_a_pass_schedules_active_sweeps_and_those_still_ending(
    engine: Engine, tmp_path: Path
) -> None:
    store = Store(engine)
    ids = {name: make_sweep(store, tmp_path, name) for name in ("old", "ending", "new")}
    with store.tx() as conn:
        for name, state in (("old", "done"), ("ending", "cancelled")):
            store.set_sweep_state(conn, store.require_sweep(conn, name), state)

    with store.read() as conn:
        idle = {s.name for s in store.scheduling_sweeps(conn, set())}
        ending = {s.name for s in store.scheduling_sweeps(conn, {ids["ending"]})}
        listed = store.list_sweeps(conn)
        active = store.active_sweeps(conn)
        repro = store.sweep_repro(conn, ids["new"])

    assert idle == {"new"}
    assert ending == {"new", "ending"}  # its attempts are still being cancelled
    assert [s.name for s in listed] == ["old", "ending", "new"]  # `sweeps` lists them all
    assert all("repro" not in s._fields for s in [*listed, *active])
    assert repro == FREEZE  # launches still get the whole record
