"""Keys, mouse and pushed events on the fixed data of ``FakeBackend`` (fast, no daemon)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from clusterd.tui.fake import FakeBackend
from clusterd.tui.screens.detail import DetailScreen
from clusterd.tui.screens.dialogs import ConfirmScreen, ExportScreen
from clusterd.tui.screens.sweeps import SweepsScreen
from clusterd.tui.screens.trials import TrialsScreen
from clusterd.tui.widgets.text_line import TextLine
from clusterd.tui.widgets.trial_table import TrialTable
from tests.tui.conftest import demo_app, loaded, run_async, settle


async def open_trials(pilot: Any, sweep: str = "lr-depth") -> TrialsScreen:
    await settle(pilot, loaded(pilot.app, TrialsScreen), what=f"the trials of {sweep}")
    screen = pilot.app.screen
    assert isinstance(screen, TrialsScreen) and screen.sweep == sweep
    return screen


def plain(widget: Static) -> str:
    """What a Static shows, as text (rendered 200 columns wide)."""
    console = Console(width=200, color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


def calls(backend: FakeBackend, op: str) -> int:
    return sum(1 for name, _ in backend.calls if name == op)


@run_async
async def test_pushed_events_update_rows_without_rereading() -> None:
    backend = FakeBackend()
    app = demo_app(backend=backend, sweep="lr-depth")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trials(pilot)
        reads = calls(backend, "trials")
        backend.emit(
            {"type": "progress", "sweep_id": 1, "index": 25, "last_step": 99, "last_value": 0.01},
            {"type": "trial", "sweep_id": 1, "index": 30, "from": "pending", "state": "queued"},
        )
        trials = screen.trials
        await settle(
            pilot, lambda: trials.rows[25].last_step == 99 and trials.rows[30].state == "queued"
        )
        assert screen.trials.rows[30].attempts == 1
        assert calls(backend, "trials") == reads
        backend.emit({"type": "trial", "sweep_id": 1, "index": 4000, "state": "pending"})
        await settle(pilot, lambda: calls(backend, "trials") == reads + 1, what="a re-read")


@run_async
async def test_overflow_resubscribes_and_rereads() -> None:
    backend = FakeBackend()
    app = demo_app(backend=backend, sweep="lr-depth")
    async with app.run_test() as pilot:
        await open_trials(pilot)
        reads, subs = calls(backend, "trials"), len(backend.streams)
        backend.emit({"type": "overflow"})
        await settle(pilot, lambda: calls(backend, "trials") == reads + 1, what="a re-read")
        assert len(backend.streams) == subs + 1


@run_async
async def test_sort_filter_search_by_keys_and_mouse() -> None:
    app = demo_app(sweep="lr-depth")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trials(pilot)
        await pilot.click(TrialTable, offset=(45, 0))  # the "best" column title
        await settle(pilot)
        assert screen.trials.sort_key == "best" and not screen.trials.descending
        best = [r.best_value for r in screen.table.rows if r.best_value is not None]
        assert best == sorted(best)
        await pilot.press("S")
        await settle(pilot)
        assert screen.trials.descending

        await pilot.press("f", "5")
        await settle(pilot)
        assert {r.state for r in screen.table.rows} == {"failed"}
        await pilot.press("f", "0")
        await settle(pilot)
        assert len(screen.table.rows) == 48

        await pilot.press("slash", *"adamw depth=2")
        await settle(pilot)
        assert screen.table.rows and all(
            "optimizer=adamw" in r.params_str and "depth=2" in r.params_str
            for r in screen.table.rows
        )
        await pilot.press("escape")
        await settle(pilot)
        assert len(screen.table.rows) == 48 and isinstance(app.screen, TrialsScreen)


@run_async
async def test_enter_and_click_open_a_trial_and_escape_returns() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, loaded(app, SweepsScreen))
        await pilot.press("enter")
        screen = await open_trials(pilot)
        await pilot.click(TrialTable, offset=(10, 3))  # third row: highlight...
        await pilot.click(TrialTable, offset=(10, 3))  # ...and open it
        await settle(pilot, lambda: getattr(app.screen, "index", None) == 2)
        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is screen)
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, SweepsScreen))


@run_async
async def test_relaunch_asks_first() -> None:
    backend = FakeBackend()
    app = demo_app(backend=backend, sweep="lr-depth")
    async with app.run_test() as pilot:
        await open_trials(pilot)
        await pilot.press("r")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, TrialsScreen))
        assert calls(backend, "relaunch") == 0
        await pilot.press("r", "y")
        await settle(pilot, lambda: calls(backend, "relaunch") == 1)
        assert ("relaunch", {"sweep": "lr-depth", "which": "failed"}) in backend.calls


@run_async
async def test_export_writes_the_file_it_was_given(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    app = demo_app(sweep="lr-depth")
    async with app.run_test() as pilot:
        await open_trials(pilot)
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.press("enter")
        await settle(pilot, lambda: (tmp_path / "lr-depth.csv").exists(), what="the export")
    rows = list(csv.DictReader((tmp_path / "lr-depth.csv").open()))
    assert len(rows) == 48 and rows[0]["trial"] == "lr-depth/0"


@run_async
async def test_copy_trial_dir_and_theme_toggle() -> None:
    app = demo_app(sweep="lr-depth")
    async with app.run_test() as pilot:
        await open_trials(pilot)
        await pilot.press("down", "y")
        await settle(pilot, lambda: app.clipboard == "/scratch/ada/runs/lr-depth/1")
        assert app.theme == "textual-dark"
        await pilot.press("t")
        assert app.theme == "textual-light"


@run_async
async def test_a_removed_sweep_closes_its_screen() -> None:
    backend = FakeBackend()
    app = demo_app(backend=backend, sweep="lr-depth")
    async with app.run_test() as pilot:
        await open_trials(pilot)
        backend.emit({"type": "sweep", "name": "lr-depth", "state": "removed"})
        await settle(pilot, lambda: isinstance(app.screen, SweepsScreen))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@run_async
async def test_ten_thousand_rows_render_only_what_is_visible(size: tuple[int, int]) -> None:
    app = demo_app(backend=FakeBackend(big=10_000), sweep="big-grid")
    async with app.run_test(size=size) as pilot:
        screen = await open_trials(pilot, "big-grid")
        table = screen.table
        assert len(table.rows) == 10_000
        await pilot.press("end")
        await settle(pilot)
        assert table.cursor == 9_999 and table.current is not None
        assert table.current.index == 9_999
        await pilot.press(*["pageup"] * 5, "home")
        await settle(pilot)
        # eight screens' worth of lines at most, never anything like 10,000
        assert table.lines_rendered < 8 * size[1]


@run_async
async def test_a_sweep_that_does_not_exist_says_so_and_closes() -> None:
    app = demo_app(sweep="nope")
    async with app.run_test() as pilot:
        await settle(pilot, loaded(app, SweepsScreen), what="the sweeps list")
        assert any("nope" in n.message for n in app._notifications)


@run_async
async def test_stop_early_asks_then_shows_the_trial_stopping() -> None:
    backend = FakeBackend()
    app = demo_app(backend=backend, sweep="lr-depth")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_trials(pilot)
        await pilot.press("x")  # trial 0 has completed: nothing to stop
        await settle(pilot)
        assert app.screen is screen and calls(backend, "stop") == 0
        assert any("already ended (completed)" in n.message for n in app._notifications)

        await pilot.press(*["down"] * 25)  # trial 25: running
        await settle(pilot)
        assert screen.table.current is not None and screen.table.current.state == "running"
        await pilot.press("x")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await settle(pilot, lambda: app.screen is screen)
        assert calls(backend, "stop") == 0

        await pilot.press("x", "y")
        await settle(pilot, lambda: screen.trials.rows[25].stopping, what="the stop event")
        assert ("stop", {"trial": "lr-depth/25"}) in backend.calls
        assert screen.table.current.shown_state == "stopping"
        assert screen.trials.rows[25].state == "running"  # the filter still finds it
        await pilot.press("x")  # a second x only says so
        await settle(pilot)
        assert calls(backend, "stop") == 1 and app.screen is screen

        # the daemon ends the trial, its last metrics first: the row says stopped, not
        # stopping, and shows the last step without asking the daemon again
        shows = calls(backend, "show")
        backend.emit(
            {"type": "progress", "sweep_id": 1, "index": 25, "last_step": 99, "last_value": 0.5},
            {"type": "trial", "sweep_id": 1, "index": 25, "from": "running", "state": "stopped"},
        )
        await settle(pilot, lambda: screen.table.current.shown_state == "stopped")
        assert any("terminated in 30s" in n.message for n in app._notifications)
        assert screen.table.current.last_step == 99 and calls(backend, "show") == shows

        await pilot.press(*["down"] * 15, "x", "y")  # trial 40 is pending: it stops at once
        await settle(pilot, lambda: screen.trials.rows[40].state == "stopped")
        await pilot.press(*["up"] * 15)

        await pilot.press("up", "enter")  # trial 24 is running too: stop it from its detail
        await settle(pilot, loaded(app, DetailScreen))
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.index == 24
        await pilot.press("x", "y")
        await settle(pilot, lambda: bool(detail.show.get("stop_decision")))
        overview = plain(detail.query_one("#overview-body", Static))
        assert "manual" in overview and "stopped by hand" in overview
        assert "stopping: stopped by hand" in detail.query_one("#summary", TextLine).text.plain


@run_async
async def test_stop_refuses_a_trial_that_ended() -> None:
    backend = FakeBackend()
    app = demo_app(backend=backend, sweep="lr-depth", trial=2)  # trial 2 was early-stopped
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, loaded(app, DetailScreen))
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen) and calls(backend, "stop") == 0
        assert not app.screen.active_bindings["x"].enabled  # greyed out in the footer
        overview = plain(app.screen.query_one("#overview-body", Static))
        assert "median" in overview and "threshold" in overview and "0.412" in overview
