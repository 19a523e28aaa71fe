"""Every screen at 80x24 and 160x48, on the fixed data of ``FakeBackend`` (SVG snapshots).

Update after an intended change with ``pytest tests/tui --snapshot-update`` and look
at the report pytest-textual-snapshot writes for the differences.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from clusterd.tui.screens.detail import DetailScreen
from clusterd.tui.screens.sweeps import SweepsScreen
from clusterd.tui.screens.trials import TrialsScreen
from tests.tui.conftest import demo_app, loaded, settle

SIZES = [(80, 24), (160, 48)]
RUNNING_TRIAL = 25  # running, second attempt, one checkpoint: the fullest detail screen
STOPPED_TRIAL = 2  # early-stopped by the median rule: the stop decision pane filled in


def then(*keys: str, shows: type | None = None) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Wait for the first screen to load, press ``keys``, wait for the result to load."""

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        if shows is not None:
            assert isinstance(pilot.app.screen, shows)

    return run


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sweeps(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(demo_app(), terminal_size=size, run_before=then(shows=SweepsScreen))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_trials(snap_compare: Any, size: tuple[int, int]) -> None:
    app = demo_app(sweep="lr-depth")
    assert snap_compare(app, terminal_size=size, run_before=then(shows=TrialsScreen))


@pytest.mark.parametrize("tab", ["1", "2", "3", "4"], ids=["overview", "plot", "log", "history"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail(snap_compare: Any, size: tuple[int, int], tab: str) -> None:
    app = demo_app(sweep="lr-depth", trial=RUNNING_TRIAL)
    assert snap_compare(app, terminal_size=size, run_before=then(tab, shows=DetailScreen))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_stopped_trial(snap_compare: Any, size: tuple[int, int]) -> None:
    app = demo_app(sweep="lr-depth", trial=STOPPED_TRIAL)
    # at 80x24 the decision is below the fold: scroll the overview down to it
    keys = ("end",) if size == (80, 24) else ()
    assert snap_compare(app, terminal_size=size, run_before=then(*keys, shows=DetailScreen))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(demo_app(sweep="lr-depth"), terminal_size=size, run_before=then("?"))


def test_filter_dialog(snap_compare: Any) -> None:
    assert snap_compare(demo_app(sweep="lr-depth"), run_before=then("f"))


def test_trials_filtered_to_failed(snap_compare: Any) -> None:
    assert snap_compare(demo_app(sweep="lr-depth"), run_before=then("f", "5"))


def test_confirm_cancel(snap_compare: Any) -> None:
    app = demo_app(sweep="lr-depth", trial=RUNNING_TRIAL)
    assert snap_compare(app, run_before=then("c"))


def test_confirm_stop_early(snap_compare: Any) -> None:
    app = demo_app(sweep="lr-depth", trial=RUNNING_TRIAL)
    assert snap_compare(app, run_before=then("x"))


def test_light_theme(snap_compare: Any) -> None:
    assert snap_compare(demo_app(sweep="lr-depth", theme="textual-light"), run_before=then())


def test_sweeps_waiting_for_the_daemon(snap_compare: Any) -> None:
    from clusterd.tui.fake import FakeBackend

    backend = FakeBackend()
    backend.unreachable = True
    app = demo_app(backend=backend)

    async def offline(pilot: Pilot[Any]) -> None:
        await settle(pilot, lambda: "unreachable" in app.connection.detail)
        assert not loaded(app, SweepsScreen)()

    assert snap_compare(app, run_before=offline)
