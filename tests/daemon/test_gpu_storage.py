"""GPU samples from the events line to what a user reads: ingest stores every reading of
the line (contract: docs/gpu.md), and ``show``, ``gpus``, ``export`` and ``trials`` give
per-GPU and per-trial figures (mean/peak utilisation, peak and own memory, energy, idle
time, wasted GPU-hours) that stay the same after the samples are rolled up. The CLI's
printers are fed the handlers' own replies.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, select

from clusterd.cli import sweeps as cli_sweeps
from clusterd.cli import trials as cli_trials
from clusterd.daemon import db
from clusterd.daemon.gpu_retention import roll_up
from clusterd.daemon.gpustats import G
from clusterd.daemon.handlers.context import Context
from clusterd.daemon.handlers.metrics import gpu_samples
from clusterd.daemon.handlers.sweeps import export, gpus
from clusterd.daemon.handlers.trials import list_trials, show
from clusterd.daemon.hub import Hub
from clusterd.daemon.ingest import ingest_attempt, open_cursor
from clusterd.daemon.store import Store
from clusterd.errors import InvalidRequest

T0 = 1_700_000_040.0  # the start of a minute


@pytest.fixture
def store(make_sqlite_engine: Callable[..., Engine]) -> Store:
    engine = make_sqlite_engine()
    db.upgrade(engine)
    return Store(engine)


def ctx(store: Store, tmp_path: Path) -> Context:
    return Context(store=store, scheduler=cast(Any, None), hub=Hub(), db_url="sqlite://",
                   home=tmp_path, started_at=0.0, request_shutdown=lambda: None)  # fmt: skip


def new_sweep(
    store: Store, root: Path, name: str, n: int, gpu: dict[str, Any] | None = None
) -> list[Any]:
    spec: dict[str, Any] = {"name": name, "driver": "fake", "source": str(root / "x.toml"),
                            "output_dir": str(root / name)}  # fmt: skip
    if gpu is not None:
        spec["gpu"] = gpu
    params = [({"lr": 10.0**-i}, json.dumps({"lr": 10.0**-i})) for i in range(n)]
    sweep_id = store.create_sweep(spec, params, None)
    with store.read() as conn:
        trials = store.trials(conn, sweep_id)
    with store.tx() as conn:
        store.add_attempts(
            conn,
            [{"trial_id": t.id, "number": 1, "token": f"{name}-{t.index}", "state": "running",
              "cancel_requested": False, "events_offset": 0} for t in trials],
        )  # fmt: skip
    return trials


def samples(trial_id: int, gpu: int, n: int, util: float, power: float | None = 300.0,
            mem: float = 2000.0, own: int | None = 1500) -> list[dict[str, Any]]:  # fmt: skip
    """``n`` samples 10 s apart: they cover (n - 1) x 10 s."""
    return [{"trial_id": trial_id, "attempt": 1, "gpu": gpu, "t": T0 + 10 * k, "util": util,
             "mem_used": mem + k, "mem_total": 81920.0, "power_w": power, "temp_c": 55,
             "own_procs": 1, "own_mem": own} for k in range(n)]  # fmt: skip


def add(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.tx() as conn:
        store.add_gpu_samples(conn, rows)


# -- ingest -------------------------------------------------------------------------------


def test_ingest_stores_every_reading_of_new_and_old_lines(store: Store, tmp_path: Path) -> None:
    (trial,) = new_sweep(store, tmp_path, "ing", 1)
    adir = tmp_path / "ing" / "0" / "attempt-1"
    adir.mkdir(parents=True)
    lines = [
        {"type": "gpu", "t": T0, "gpus": [
            {"index": 0, "uuid": "GPU-5c1d", "util": 97, "mem_used": 30000, "mem_total": 81559,
             "power_w": 412.5, "temp_c": 71, "own_procs": 2, "own_mem": 29500},
            {"index": 3, "util": None, "mem_used": 10, "mem_total": 81559, "power_w": None,
             "temp_c": None, "own_procs": None, "own_mem": None, "future_key": 1}]},
        {"type": "gpu", "t": T0 + 10, "gpus": [  # a runner of the previous release
            {"index": 0, "util": 50, "mem_used": 100, "mem_total": 81559}]},
        {"type": "gpu", "t": T0 + 20, "gpus": [  # readings beyond a 32-bit column
            {"index": 0, "util": 1, "mem_used": 1, "mem_total": 1, "own_mem": 1e12,
             "own_procs": 1 << 40, "temp_c": -1e12}, {"index": 1 << 40, "util": 1}]},
    ]  # fmt: skip
    (adir / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with store.read() as conn:
        (attempt,) = store.live_attempts(conn)
        sweep = store.require_sweep(conn, "ing")
        cursor = open_cursor(store, conn, attempt, sweep, str(adir))
    with store.tx() as conn:
        result = ingest_attempt(store, conn, cursor)
    assert result.lines == 3 and result.errors == 0
    with store.read() as conn:
        rows = conn.execute(
            select(G.c.gpu, G.c.t.label("at"), G.c.util, G.c.mem_used, G.c.power_w,
                   G.c.temp_c, G.c.own_procs, G.c.own_mem).order_by(G.c.id)
        ).all()  # fmt: skip
    big = (1 << 31) - 1
    assert [tuple(r) for r in rows] == [
        (0, T0, 97.0, 30000.0, 412.5, 71, 2, 29500),
        (3, T0, None, 10.0, None, None, None, None),
        (0, T0 + 10, 50.0, 100.0, None, None, None, None),
        (0, T0 + 20, 1.0, 1.0, None, -big, big, big),
    ]
    assert trial.id is not None


# -- show ---------------------------------------------------------------------------------


def test_show_gives_each_gpus_use_and_the_trials_totals(store: Store, tmp_path: Path) -> None:
    (trial,) = new_sweep(store, tmp_path, "sh", 1)
    add(store, samples(trial.id, 0, 61, util=80.0) + samples(trial.id, 1, 61, util=2.0, own=None))
    view = show(ctx(store, tmp_path), {"trial": "sh/0"})
    g0, g1 = view["gpu_list"]
    assert (g0["attempt"], g0["gpu"], g0["samples"]) == (1, 0, 61)
    assert g0["util_mean"] == 80.0 and g0["util_peak"] == 80.0
    assert g0["mem_peak_mib"] == 2060 and g0["own_mem_peak_mib"] == 1500
    assert g0["energy_wh"] == pytest.approx(300 * 600 / 3600)  # 300 W for 10 minutes
    assert g0["seconds"] == 600 and g0["idle_seconds"] == 0
    assert g1["util_mean"] == 2.0 and g1["idle_seconds"] == 600  # every minute under 5 %
    assert g1["own_mem_peak_mib"] is None
    total = view["gpu"]
    assert total["gpus"] == 2 and total["util_mean"] == 41.0 and total["util_peak"] == 80.0
    assert total["energy_wh"] == pytest.approx(100.0)
    assert total["idle_threshold"] == 5.0


def test_show_of_a_trial_without_samples_has_no_gpu_block(store: Store, tmp_path: Path) -> None:
    new_sweep(store, tmp_path, "none", 1)
    view = show(ctx(store, tmp_path), {"trial": "none/0"})
    assert view["gpu"] is None and view["gpu_list"] == []


# -- gpus ---------------------------------------------------------------------------------


def test_gpus_ranks_the_most_wasteful_trial_first(store: Store, tmp_path: Path) -> None:
    busy, idle, half, _never = new_sweep(store, tmp_path, "rk", 4, gpu={"idle_threshold": 10})
    add(store, samples(busy.id, 0, 361, util=95.0))  # 1 GPU-hour, 95 % used
    add(store, samples(idle.id, 0, 181, util=0.0))  # 0.5 GPU-hour, all wasted
    add(store, samples(half.id, 0, 361, util=50.0) + samples(half.id, 1, 361, util=50.0))
    rows = gpus(ctx(store, tmp_path), {"sweep": "rk"})
    assert [r["trial"] for r in rows] == ["rk/2", "rk/1", "rk/0"]  # 1.0, 0.5, 0.05 wasted
    by = {r["trial"]: r for r in rows}
    assert by["rk/2"]["gpu_hours"] == 2.0 and by["rk/2"]["wasted_gpu_hours"] == 1.0
    assert by["rk/2"]["busy_gpu_hours"] == 1.0 and by["rk/2"]["gpus"] == 2
    assert by["rk/1"]["idle_seconds"] == 1800 and by["rk/1"]["wasted_gpu_hours"] == 0.5
    assert by["rk/0"]["wasted_gpu_hours"] == pytest.approx(0.05)
    assert by["rk/0"]["idle_threshold"] == 10  # the sweep's [gpu] idle_threshold
    assert [g["gpu"] for g in by["rk/2"]["per_gpu"]] == [0, 1]
    assert by["rk/0"]["util_avg"] == 95.0  # what older clients (the TUI) read
    best_first = gpus(ctx(store, tmp_path), {"sweep": "rk", "order": "util"})
    assert [r["trial"] for r in best_first] == ["rk/0", "rk/2", "rk/1"]
    with pytest.raises(InvalidRequest, match="'order' must be one of waste, util"):
        gpus(ctx(store, tmp_path), {"sweep": "rk", "order": "fastest"})


# -- export and trials --------------------------------------------------------------------


def test_export_and_trials_carry_gpu_figures_when_there_are_samples(
    store: Store, tmp_path: Path
) -> None:
    a, b = new_sweep(store, tmp_path, "ex", 2)
    add(store, samples(a.id, 0, 13, util=60.0, power=360.0, mem=4000.0))
    table = export(ctx(store, tmp_path), {"sweep": "ex"})
    cols = table["columns"]
    assert cols[cols.index("reason") + 1 : cols.index("reason") + 4] == [
        "gpu_util_mean", "gpu_mem_peak_mib", "gpu_energy_wh"]  # fmt: skip
    row_a, row_b = table["rows"]
    assert row_a["gpu_util_mean"] == 60.0 and row_a["gpu_mem_peak_mib"] == 4012
    assert row_a["gpu_energy_wh"] == pytest.approx(360 * 120 / 3600)
    assert row_b["gpu_util_mean"] is None and row_b["gpu_energy_wh"] is None
    trials = list_trials(ctx(store, tmp_path), {"sweep": "ex"})
    assert [t["gpu_util"] for t in trials] == [60.0, None]

    new_sweep(store, tmp_path, "cpu", 1)  # no samples: no GPU columns
    assert not {"gpu_util_mean", "gpu_energy_wh"} & set(
        export(ctx(store, tmp_path), {"sweep": "cpu"})["columns"]
    )
    assert b.id != a.id


# -- after the rollup ---------------------------------------------------------------------


def test_the_views_say_the_same_after_the_samples_are_rolled_up(
    store: Store, tmp_path: Path
) -> None:
    trials = new_sweep(store, tmp_path, "ru", 2)
    for i, t in enumerate(trials):
        rows = samples(t.id, 0, 400, util=30.0 * (i + 1), power=250.0)
        for k, r in enumerate(rows):
            r["util"] = (r["util"] + 7 * k) % 101
        add(store, rows)
    c = ctx(store, tmp_path)

    def views() -> tuple[Any, ...]:
        return (show(c, {"trial": "ru/1"})["gpu_list"], gpus(c, {"sweep": "ru"}),
                export(c, {"sweep": "ru"})["rows"],
                [t["gpu_util"] for t in list_trials(c, {"sweep": "ru"})])  # fmt: skip

    before = views()
    assert roll_up(store, series=[(t.id, 1, T0 + 3000.0) for t in trials]).rows == 600
    after = views()
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)

    raw = gpu_samples(c, {"trial": "ru/1", "limit": 5})
    assert raw["resolution"] == "raw" and raw["gpus"][0]["t"][-1] == T0 + 3990
    assert raw["gpus"][0]["power_w"] == [250.0] * 5
    roll_up(store, series=[(t.id, 1, T0 + 4000.0) for t in trials])  # all of it
    rolled = gpu_samples(c, {"trial": "ru/1", "limit": 5})
    assert rolled["resolution"] == "minute" and rolled["attempt"] == 1
    assert rolled["gpus"][0]["t"][-1] == (T0 + 3960) // 60 * 60  # the last minute
    assert math.isclose(rolled["gpus"][0]["power_w"][-1], 250.0)


# -- the CLI's printers --------------------------------------------------------------------


def test_the_cli_prints_the_ranking_with_its_formula_and_shows_the_gpu_block(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    busy, idle = new_sweep(store, tmp_path, "cli", 2)
    add(store, samples(busy.id, 0, 361, util=90.0) + samples(idle.id, 0, 361, util=1.0))
    c = ctx(store, tmp_path)
    ops = {"gpus": lambda **a: gpus(c, a), "show": lambda **a: show(c, a)}
    monkeypatch.setattr(cli_sweeps, "call", lambda op, **a: ops[op](**a))
    monkeypatch.setattr(cli_trials, "call", lambda op, **a: ops[op](**a))

    assert cli_sweeps.cmd_gpus(argparse.Namespace(sweep="cli", json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == "ranked by wasted GPU-hours = GPU-hours x (1 - mean util), most wasteful first"
    )
    table = [line.split() for line in lines if line.startswith("cli/")]
    assert [r[0] for r in table] == ["cli/1", "cli/0"]
    assert table[0][3:9] == ["1", "1", "1", "0.01", "0.99", "1h00m"]  # util, peak, GPU-h...

    assert cli_trials.cmd_show(argparse.Namespace(trial="cli/0", json=False)) == 0
    out = capsys.readouterr().out
    head = "gpus    util mean 90 % (peak 90 %), memory peak 2360 MiB (own 1500), energy 300 Wh,"
    assert f"{head} idle 0s (under 5 %)" in out  # 300 W for an hour
    line = next(x for x in out.splitlines() if x.split()[:2] == ["1", "0"])
    assert line.split() == ["1", "0", "361", "90", "90", "2360", "1500", "300", "300", "0s"]
