"""Bad hosts per sweep: `sweeps` reports each sweep's own, by its own threshold, from one
query over every failed attempt (it used to scan them all once per sweep)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from clusterd.daemon.handlers.sweeps import list_sweeps
from clusterd.daemon.store import A, Store, T
from clusterd.spec import parse_sweep
from clusterd.spec.expand import expand, params_key


def make_sweep(store: Store, tmp_path: Path, name: str, threshold: int) -> None:
    text = (
        f'name = "{name}"\ncommand = "true"\n[params]\nx = [1, 2, 3, 4]\n'
        f"[retry]\nexclude_host_after = {threshold}\n"
    )
    spec = parse_sweep(text, source="sweep.toml", base_dir=str(tmp_path))
    trials = [(params, params_key(params)) for params in expand(spec)]
    store.create_sweep(spec.to_dict(), trials, None)


def fail_on(store: Store, sweep: str, hosts: list[str | None], outcome: str = "lost") -> None:
    """One ended attempt per host in ``hosts``, spread over the sweep's trials."""
    with store.tx() as conn:
        sweep_id = store.require_sweep(conn, sweep).id
        ids = list(conn.execute(select(T.c.id).where(T.c.sweep_id == sweep_id)).scalars())
        numbers = {i: 0 for i in ids}
        for trial_id in conn.execute(select(A.c.trial_id).where(A.c.trial_id.in_(ids))).scalars():
            numbers[trial_id] += 1  # attempts from an earlier call
        rows: list[dict[str, Any]] = []
        for k, host in enumerate(hosts):
            trial_id = ids[k % len(ids)]
            numbers[trial_id] += 1
            rows.append(
                {
                    "trial_id": trial_id,
                    "number": numbers[trial_id],
                    "token": f"{sweep}-{trial_id}-{numbers[trial_id]}",
                    "state": "ended",
                    "outcome": outcome,
                    "host": host,
                }
            )
        conn.execute(insert(A), rows)


def test_each_sweep_lists_its_own_bad_hosts_by_its_own_threshold(
    engine: Engine, tmp_path: Path
) -> None:
    store = Store(engine)
    make_sweep(store, tmp_path, "strict", threshold=2)
    make_sweep(store, tmp_path, "lenient", threshold=5)
    make_sweep(store, tmp_path, "off", threshold=0)
    fail_on(store, "strict", ["n1", "n1", "n2", None, None, None])  # no host: not counted
    fail_on(store, "lenient", ["n1"] * 4 + ["n2"] * 5)
    fail_on(store, "lenient", ["n3"] * 6, outcome="completed")  # only failures count
    fail_on(store, "off", ["n1"] * 9)

    ctx = SimpleNamespace(store=store, scheduler=SimpleNamespace(troubles={}))
    views = {v["name"]: v for v in list_sweeps(ctx, {})}  # type: ignore[arg-type]

    assert views["strict"]["excluded_hosts"] == {"n1": 2}
    assert views["lenient"]["excluded_hosts"] == {"n2": 5}
    assert views["off"]["excluded_hosts"] == {}
    with store.read() as conn:  # the scheduler's per-sweep question agrees
        for name, threshold in (("strict", 2), ("lenient", 5), ("off", 0)):
            sweep_id = store.require_sweep(conn, name).id
            hosts = store.failing_hosts(conn, sweep_id, threshold)
            assert hosts == views[name]["excluded_hosts"]
