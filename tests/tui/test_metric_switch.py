"""The plot switches metric with ``m``/``M`` and overlays the trials marked with ``v``.

Snapshots on the fixed data of ``FakeBackend`` (with a ``metrics`` op that honours
``name`` and ``overlay`` as the daemon does); pilots against the fake and against a real
daemon running a two-metric sweep (``val_loss`` min, ``val_acc`` max).
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import TabbedContent

from clusterd.tui.app import ClusterApp
from clusterd.tui.client import SocketBackend
from clusterd.tui.fake import FakeBackend
from clusterd.tui.screens.detail import DetailScreen
from clusterd.tui.screens.trials import TrialsScreen
from clusterd.tui.widgets.metric_plot import MetricPlot
from tests.conftest import Daemon
from tests.tui.conftest import demo_app, loaded, run_async, settle

RUNNING_TRIAL = 25


class TwoMetrics(FakeBackend):
    """The fake daemon, with ``acc`` (max) beside ``val_loss`` (min) and overlays."""

    def _op_metrics(self, trial: str, **args: Any) -> dict[str, Any]:
        reply = super()._op_metrics(trial)
        reply["modes"] = {"acc": "max", "val_loss": "min"}
        name = args.get("name") or "val_loss"
        if name == "acc":
            reply.update(name="acc", mode="max", points=_acc(reply["points"]), median=[])
            reply["best"] = None
        sweep, _, _ = trial.partition("/")
        reply["overlay"] = []
        for index in args.get("overlay") or []:
            _, other = self._trial(f"{sweep}/{index}")
            points = other["curve"] if name == "val_loss" else _acc(other["curve"])
            reply["overlay"].append({"trial": f"{sweep}/{index}", "points": points})
        return reply


def _acc(points: list[list[float]]) -> list[list[float]]:
    return [[s, round(1 - math.tanh(v) / 2, 4)] for s, v in points]


def metric_calls(backend: FakeBackend) -> list[dict[str, Any]]:
    return [args for op, args in backend.calls if op == "metrics"]


def plot_reply(app: ClusterApp) -> dict[str, Any]:
    return app.screen.query_one(MetricPlot)._reply


def then_switch(*keys: str) -> Any:
    async def run(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ClusterApp)
        await settle(pilot, loaded(app, DetailScreen))
        for key in ("2", *keys):
            await pilot.press(key)
            await settle(pilot)

    return run


def test_m_switches_the_plotted_metric_snapshot(snap_compare: Any) -> None:
    app = demo_app(sweep="lr-depth", trial=RUNNING_TRIAL, backend=TwoMetrics())
    assert snap_compare(app, terminal_size=(100, 30), run_before=then_switch("m"))


def test_marked_trials_are_drawn_together_snapshot(snap_compare: Any) -> None:
    app = demo_app(sweep="lr-depth", backend=TwoMetrics())

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot, loaded(app, TrialsScreen))
        for key in ("v", "down", "v", "down", "enter", "2"):
            await pilot.press(key)
            await settle(pilot)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run)


@run_async
async def test_m_and_shift_m_cycle_through_the_metrics() -> None:
    backend = TwoMetrics()
    app = demo_app(sweep="lr-depth", trial=RUNNING_TRIAL, backend=backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, loaded(app, DetailScreen))
        await pilot.press("m")  # from the overview: opens the plot on the next metric
        await settle(pilot, lambda: plot_reply(app).get("name") == "acc", what="acc plotted")
        assert app.screen.query_one(TabbedContent).active == "plot"
        assert plot_reply(app)["mode"] == "max"
        note = str(app.screen.query_one("#plot-note").render())
        assert "m: val_loss (min)" in note
        await pilot.press("M")
        await settle(pilot, lambda: plot_reply(app).get("name") == "val_loss")
        await pilot.press("m", "m")  # two metrics: m twice is back where it was
        await settle(pilot)
        assert plot_reply(app)["name"] == "val_loss"
        asked = [c.get("name") for c in metric_calls(backend)]
        assert asked[-1] == "val_loss" and "acc" in asked


@run_async
async def test_v_marks_trials_and_the_plot_overlays_them() -> None:
    backend = TwoMetrics()
    app = demo_app(sweep="lr-depth", backend=backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, loaded(app, TrialsScreen))
        trials = app.screen
        assert isinstance(trials, TrialsScreen)
        await pilot.press("v", "down", "v", "down", "v", "v")  # 0, 1 marked; 2 on and off
        await settle(pilot)
        assert trials.table.marked == {0, 1}
        await pilot.press("enter")  # opens trial 2, the highlighted one
        await settle(pilot, loaded(app, DetailScreen))
        await pilot.press("2")
        await settle(pilot, lambda: bool(plot_reply(app).get("overlay")))
        assert metric_calls(backend)[-1]["overlay"] == [0, 1]
        assert [o["trial"] for o in plot_reply(app)["overlay"]] == ["lr-depth/0", "lr-depth/1"]
        assert "marked #0, #1" in str(app.screen.query_one("#plot-note").render())


TRAIN = """
    from clusterd import trial

    p = trial.params()
    for step in range(8):
        loss = p["lr"] * (8 - step)
        trial.report(step, val_loss=loss, val_acc=1 - loss / 4)
"""


@run_async
async def test_real_daemon_plot_switches_to_val_acc_as_max(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAIN))
    (tmp_path / "sweep.toml").write_text(
        f'name = "pm"\ncommand = ["{sys.executable}", "train.py"]\n'
        '[metric]\nname = "val_loss"\nmode = "min"\n[params]\nlr = [0.1, 0.2, 0.3]\n'
    )
    daemon.ctl("submit", str(tmp_path / "sweep.toml"))
    daemon.wait_sweep_done("pm")
    app = ClusterApp(SocketBackend(daemon.home / "clusterd.sock"), sweep="pm")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, loaded(app, TrialsScreen))
        await pilot.press("v", "down", "v", "down", "enter", "2")  # 0 and 1 marked, open 2
        await settle(pilot, lambda: plot_reply(app).get("name") == "val_loss", timeout=30)
        reply = plot_reply(app)
        assert reply["mode"] == "min" and reply["best"]["trial"] == "pm/0"
        assert [o["trial"] for o in reply["overlay"]] == ["pm/0", "pm/1"]
        await pilot.press("m")
        await settle(pilot, lambda: plot_reply(app).get("name") == "val_acc", timeout=30)
        reply = plot_reply(app)
        assert reply["mode"] == "max"  # guessed from the name: no longer "min"
        assert reply["best"]["trial"] == "pm/0"  # the highest val_acc
        assert reply["points"][-1] == [7, 1 - 0.3 / 4]
        assert len(reply["overlay"]) == 2
