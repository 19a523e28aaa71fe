"""The TUI's GPU parts (issue #17), by keys and pushed events on ``FakeBackend``'s data:
the idle flag in the trials table (lr-depth/23 is flagged there), its live changes, the
``u`` sort by GPU utilisation, and the GPU panel's figures."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from clusterd.tui.fake import FakeBackend
from clusterd.tui.screens.detail import DetailScreen
from clusterd.tui.screens.help import bindings_table
from clusterd.tui.screens.trials import TrialsScreen
from clusterd.tui.widgets.gpu_panel import GpuPanel, figures_from_samples, figures_text
from clusterd.tui.widgets.text_line import TextLine
from clusterd.tui.widgets.trial_table import TrialTable
from tests.tui.conftest import demo_app, loaded, run_async, settle

IDLE = 23  # the fake's running trial flagged idle (FakeBackend: gpu_idle_since)


def line_of(table: TrialTable, index: int) -> str:
    """The table's rendered line of trial ``index`` (it must be on screen)."""
    y = next(i for i, r in enumerate(table.rows) if r.index == index) - int(table.scroll_offset.y)
    return "".join(seg.text for seg in table.render_line(y + 1))


def gpu_cell(table: TrialTable, index: int) -> str:
    """What the ``gpu%`` column shows for trial ``index``."""
    header = "".join(seg.text for seg in table.render_line(0))
    at = header.index("gpu%")
    return line_of(table, index)[at : at + 4].strip()


def viewbar(screen: TrialsScreen) -> str:
    return screen.query_one("#viewbar", TextLine).text.plain


async def trials_screen(pilot: Any) -> TrialsScreen:
    app = pilot.app
    await settle(pilot, loaded(app, TrialsScreen))
    screen = app.screen
    assert isinstance(screen, TrialsScreen)
    await settle(pilot, lambda: screen.trials.rows[0].gpu_util is not None, what="gpu%")
    return screen


@run_async
async def test_an_idle_trial_shows_a_flag_that_events_set_and_clear() -> None:
    backend = FakeBackend()
    app = demo_app(sweep="lr-depth", backend=backend)
    async with app.run_test(size=(120, 60)) as pilot:
        screen = await trials_screen(pilot)
        table = screen.table
        assert table.gpu_idle == {IDLE}
        assert gpu_cell(table, IDLE) == "!2" and gpu_cell(table, 22).isdigit()
        assert "!1 with idle GPUs" in viewbar(screen)
        backend.emit({"type": "gpu_idle", "sweep_id": 1, "index": 22, "idle": True, "t": 1.0})
        await settle(pilot, lambda: table.gpu_idle == {22, IDLE}, what="trial 22 flagged")
        assert gpu_cell(table, 22).startswith("!") and "!2 with idle GPUs" in viewbar(screen)
        backend.emit({"type": "gpu_idle", "sweep_id": 1, "index": IDLE, "idle": False})
        await settle(pilot, lambda: table.gpu_idle == {22}, what="trial 23 cleared")
        assert gpu_cell(table, IDLE) == "2"
        assert screen.trials.rows[IDLE].state == "running"  # a flag is no state change


@run_async
async def test_u_sorts_by_gpu_utilisation_lowest_first_then_highest() -> None:
    app = demo_app(sweep="lr-depth")
    async with app.run_test(size=(120, 60)) as pilot:
        screen = await trials_screen(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert screen.trials.sort_key == "gpu" and not screen.trials.descending
        assert screen.table.rows[0].index == IDLE  # the idle one first
        util = [r.gpu_util for r in screen.table.rows if r.gpu_util is not None]
        assert util == sorted(util) and "sort: gpu ▲" in viewbar(screen)
        await pilot.press("u")
        await settle(pilot)
        util = [r.gpu_util for r in screen.table.rows if r.gpu_util is not None]
        assert screen.trials.descending and util == sorted(util, reverse=True)
        assert screen.table.rows[len(util) - 1].index == IDLE
        console = Console(width=200, color_system=None)
        with console.capture() as capture:
            console.print(bindings_table(screen))  # what ? lists
        assert "Sort by GPU use" in capture.get()


@run_async
async def test_the_gpu_panel_shows_what_show_gives_per_gpu() -> None:
    app = demo_app(sweep="lr-depth", trial=IDLE)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, loaded(app, DetailScreen))
        await pilot.press("2")
        panel = app.screen.query_one(GpuPanel)
        await settle(pilot, lambda: panel.query(".figures"), what="the GPU figures")
        lines = [str(w.render()) for w in panel.query(".figures").results(Static)]
        assert lines == [
            "gpu0  mean 2% · peak 40% · mem peak 52.3/80.0 GiB · 42.6 Wh",
            "gpu1  mean 2% · peak 40% · mem peak 54.3/80.0 GiB · 42.6 Wh",
        ]


def test_figures_from_samples_when_the_daemon_gives_none() -> None:
    g = {
        "gpu": 0,
        "t": [0.0, 10.0, 20.0, 30.0],
        "util": [10.0, None, 50.0, 90.0],
        "mem_used": [100.0, 300.0, None, 200.0],
        "power_w": [100.0, 200.0, None, 50.0],
        "mem_total": 1024.0,
    }
    f = figures_from_samples(g)
    assert f["util_mean"] == 50.0 and f["util_peak"] == 90.0 and f["mem_peak_mib"] == 300.0
    assert f["energy_wh"] == pytest.approx((100 * 10 + 200 * 10) / 3600)
    assert figures_text(0, f) == "gpu0  mean 50% · peak 90% · mem peak 0.3/1.0 GiB · 0.833 Wh"
    empty = figures_from_samples({"t": [], "util": [], "mem_used": [], "power_w": []})
    assert figures_text(1, empty) == "gpu1  mean - · peak - · mem peak -/- GiB · energy -"
