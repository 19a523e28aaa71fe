"""The metric-vs-step plot of a trial, against the sweep's best trial and its median,
and the trials marked in the list (``overlay``); the detail screen picks the metric.

Drawn with textual-plotext; series colours come from the theme (like the state
colours) so the three lines stay distinct on light and dark backgrounds.
"""

from __future__ import annotations

from typing import Any

from textual.color import Color
from textual_plotext import PlotextPlot

__all__ = ["MetricPlot"]

#: theme variables for the curves of trials marked in the list (cycled)
OVERLAY_COLOURS = ("text-accent", "text-secondary", "text-error", "foreground")


def _rgb(app: Any, var: str) -> tuple[int, int, int]:
    variables = app.get_css_variables()
    background = Color.parse(variables.get("background", "#000000"))
    color = background + Color.parse(variables.get(var, variables["foreground"]))
    return color.rgb


class MetricPlot(PlotextPlot):
    """Shows the last ``metrics`` reply; ``show`` redraws it."""

    DEFAULT_CSS = """
    MetricPlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._reply: dict[str, Any] = {}

    def on_mount(self) -> None:
        self.watch(self.app, "theme", lambda _: self.show(self._reply))

    def show(self, reply: dict[str, Any]) -> None:
        """Plot a ``metrics`` reply: this trial, the best trial, the median of the sweep,
        the marked trials; the title names the metric and its direction."""
        self._reply = reply
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        name = reply.get("name")
        points = reply.get("points") or []
        if not name or not points:
            plt.title("no metrics reported yet" if not name else f"{name}: no values yet")
            self.refresh()
            return
        median = reply.get("median") or []
        best = reply.get("best") or {}
        if len(median) > 1:
            xs, ys = zip(*median, strict=True)
            plt.plot(xs, ys, label="median", marker="hd", color=_rgb(self.app, "text-warning"))
        if best.get("points") and best.get("trial") != reply.get("trial"):
            xs, ys = zip(*best["points"], strict=True)
            label = f"best #{best['trial'].rpartition('/')[2]}"
            plt.plot(xs, ys, label=label, marker="hd", color=_rgb(self.app, "text-success"))
        overlay = [o for o in reply.get("overlay") or [] if o.get("points")]
        for n, other in enumerate(overlay):
            xs, ys = zip(*other["points"], strict=True)
            colour = _rgb(self.app, OVERLAY_COLOURS[n % len(OVERLAY_COLOURS)])
            label = f"#{other['trial'].rpartition('/')[2]}"
            plt.plot(xs, ys, label=label, marker="hd", color=colour)
        xs, ys = zip(*points, strict=True)
        plt.plot(xs, ys, label="this trial", marker="hd", color=_rgb(self.app, "text-primary"))
        steps = (
            [p[0] for p in points]
            + [p[0] for p in median]
            + [p[0] for p in best.get("points") or []]
            + [p[0] for o in overlay for p in o["points"]]
        )
        plt.xticks(_int_ticks(min(steps), max(steps)))
        mode = reply.get("mode")
        plt.title(f"{name} ({mode})" if mode else name)
        plt.xlabel("step")
        self.refresh()


def _int_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Whole-number step ticks (plotext would label steps 9.8, 19.5, ...)."""
    low_i, high_i = int(low), int(high)
    stride = max(1, -(-max(1, high_i - low_i) // (most - 1)))
    return [float(t) for t in range(low_i, high_i + 1, stride)]
