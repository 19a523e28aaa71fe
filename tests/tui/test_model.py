"""The TUI's data layer without Textual widgets: rows, events, sorting, formatting, log reads."""

from __future__ import annotations

from pathlib import Path

from rich.style import Style

from clusterd.tui.client import read_log
from clusterd.tui.model import SweepRow, TrialRow, TrialSet, fmt_duration, fmt_value, params_text
from clusterd.tui.widgets.state_bar import state_bar, state_legend


def view(index: int, state: str = "pending", **kw: object) -> dict[str, object]:
    return {"index": index, "state": state, "params": {"lr": 0.1 * (index + 1)}, **kw}


def test_formatting() -> None:
    assert fmt_value(None) == "-"
    assert fmt_value(0.000012345) == "1.234e-05"
    assert fmt_value(0.31234) == "0.3123"
    assert [fmt_duration(s) for s in (5, 185, 3720, 90000)] == ["5s", "3m05s", "1h02m", "1d01h"]
    assert params_text({"lr": 0.001, "opt": "adam", "bn": True}) == "lr=0.001 opt=adam bn=true"


def test_transition_events_count_attempts_and_runtime() -> None:
    row = TrialRow.from_view(view(0))
    row.apply({"type": "trial", "from": "pending", "state": "queued", "t": 100.0})
    row.apply({"type": "trial", "from": "queued", "state": "running", "t": 110.0})
    assert (row.attempts, row.state, row.running_since) == (1, "running", 110.0)
    assert row.runtime(now=130.0) == 20.0
    row.apply({"type": "trial", "from": "running", "state": "pending", "t": 150.0})
    row.apply({"type": "trial", "from": "pending", "state": "queued", "t": 160.0})
    assert row.attempts == 2 and row.runtime(now=999.0) == 40.0


def test_a_stop_decision_shows_as_stopping_until_the_trial_ends() -> None:
    decision = {"rule": "manual", "reason": "stopped by hand"}
    row = TrialRow.from_view(view(0, "running"))
    assert row.shown_state == "running"
    assert row.apply({"type": "stop", "index": 0, "decision": decision})
    assert (row.state, row.shown_state) == ("running", "stopping")  # filters see "running"
    row.apply({"type": "trial", "from": "running", "state": "stopped", "t": 5.0})
    assert row.shown_state == "stopped"
    row.apply({"type": "trial", "from": "stopped", "state": "pending", "t": 9.0})  # relaunched
    assert not row.stopping and row.shown_state == "pending"
    assert TrialRow.from_view(view(1, "queued", stop_decision=decision)).shown_state == "stopping"
    assert TrialRow.from_view(view(2, "stopped", stop_decision=decision)).shown_state == "stopped"


def test_progress_bumps_version_only_on_change() -> None:
    row = TrialRow.from_view(view(0, "running"))
    assert row.apply({"type": "progress", "last_step": 3, "last_value": 0.5})
    version = row.version
    assert not row.apply({"type": "progress", "last_step": 3})
    assert row.version == version


def test_trialset_filter_search_sort_and_resort_flag() -> None:
    ts = TrialSet(mode="min")
    ts.load(
        [view(0, "running", best_value=0.3), view(1, "failed"), view(2, "running", best_value=0.1)]
    )
    ts.sort_key = "best"
    assert [r.index for r in ts.refresh_view(0)] == [2, 0, 1]  # None last
    ts.descending = True
    assert [r.index for r in ts.refresh_view(0)] == [0, 2, 1]  # None still last
    ts.state_filter, ts.search = "running", "LR=0.3"
    assert [r.index for r in ts.refresh_view(0)] == [2]
    changed, resort, unknown = ts.apply(
        [{"type": "progress", "index": 0, "best_value": 0.05}, {"type": "trial", "index": 9}]
    )
    assert changed == {0} and resort and unknown


def test_trialset_reload_keeps_extra_columns() -> None:
    ts = TrialSet()
    ts.load([view(0, "running")])
    ts.set_extras({0: 30.0}, {0: 88.0}, fetched_at=100.0)
    ts.load([view(0, "running")])
    row = ts.rows[0]
    assert row.gpu_util == 88.0 and row.runtime(now=110.0) == 40.0


def test_sweep_eta() -> None:
    sweep = SweepRow(
        {"name": "s", "state": "active", "trials": 10, "finished": 2, "created_at": 1000}
    )
    assert sweep.eta(now=1100.0) == 400.0
    assert SweepRow({**sweep.data, "state": "done"}).eta(100.0) is None


def test_state_bar_always_fills_its_width() -> None:
    styles = {s: Style() for s in ("completed", "running", "pending", "failed")}
    for counts in ({"completed": 1, "pending": 9999}, {"running": 3, "failed": 1}, {}):
        assert state_bar(counts, 12, styles).cell_len == 12
    assert "failed 1" in state_legend({"failed": 1}, styles).plain


def test_read_log_tail_then_follow(tmp_path: Path) -> None:
    path = tmp_path / "stdout"
    path.write_text("".join(f"line {i}\n" for i in range(10_000)))
    first = read_log(str(path), None, tail=100)
    assert first.reset and first.text.startswith("line ") and first.text.endswith("line 9999\n")
    with path.open("a") as fh:
        fh.write("new\npartial")
    more = read_log(str(path), first.offset)
    assert more.text == "new\n" and not more.reset  # the partial line waits for its newline
    path.write_text("rotated\n")
    assert read_log(str(path), more.offset).reset
    assert read_log(str(tmp_path / "none"), None).missing


def test_an_adaptive_sweep_counts_its_planned_trials() -> None:
    row = SweepRow({"state": "active", "trials": 10, "planned": 40, "finished": 10})
    assert row.total == 40
    assert row.eta(now=1000.0) is None  # no created_at: no rate
    row.data["created_at"] = 0.0
    assert row.eta(now=100.0) == 300.0  # 10 done in 100 s, 30 to go
