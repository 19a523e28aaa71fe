"""The report's data shaping without a daemon: ranking, stop decisions, GPU figures, the
importance estimator, axes, escaping, the atomic write, and what ``gather`` asks for."""

from __future__ import annotations

import argparse
import html as std_html
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.errors import ClusterdError, InvalidRequest, NotFound
from clusterd.report import data, importance
from clusterd.report.data import ReportData, gather, gpu_figures, rank, read_diff, stop_rows

STATES = ("completed", "stopped", "failed", "running", "cancelled")

row_st = st.fixed_dictionaries(
    {
        "state": st.sampled_from(STATES),
        "loss_best": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(row_st, max_size=30), mode=st.sampled_from(["min", "max"]), k=st.integers(0, 12)
)
def test_rank_is_the_k_best_counted_trials_in_the_metric_direction(
    rows: list[dict[str, Any]], mode: str, k: int
) -> None:
    for i, r in enumerate(rows):
        r.update(index=i, trial=f"s/{i}")
    ranked = rank(rows, "loss", mode, k)
    valued = [r for r in rows if r["loss_best"] is not None]
    completed = [r for r in valued if r["state"] == "completed"]
    pool = completed or valued  # completed trials count; any with a value while none has
    assert len(ranked) == min(k, len(pool))
    assert all(r in pool for r in ranked)
    values = [r["loss_best"] for r in ranked]
    assert values == sorted(values, reverse=mode == "max")
    if ranked and len(ranked) < len(pool):  # nothing left out beats the last one kept
        rest = [r["loss_best"] for r in pool if r not in ranked]
        last = values[-1]
        assert all(v >= last for v in rest) if mode == "min" else all(v <= last for v in rest)


def test_rank_breaks_ties_by_trial_index() -> None:
    rows = [
        {"index": i, "trial": f"s/{i}", "state": "completed", "loss_best": 1.0} for i in (3, 1, 2)
    ]
    assert [r["index"] for r in rank(rows, "loss", "min", 3)] == [1, 2, 3]


def test_stop_rows_lists_decisions_by_index() -> None:
    trials = [
        {
            "name": "s/4",
            "index": 4,
            "state": "stopped",
            "stop_decision": {"rule": "asha", "step": 9},
        },
        {"name": "s/0", "index": 0, "state": "completed", "stop_decision": None},
        {
            "name": "s/2",
            "index": 2,
            "state": "running",  # decided, still in its grace period: listed too
            "stop_decision": {"rule": "median", "step": 3, "value": 0.5, "threshold": 0.4},
        },
    ]
    rows = stop_rows(trials)
    assert [(r["trial"], r["rule"], r["step"]) for r in rows] == [
        ("s/2", "median", 3),
        ("s/4", "asha", 9),
    ]
    assert rows[0]["threshold"] == 0.4 and rows[1]["value"] is None


def test_gpu_figures_none_without_samples() -> None:
    assert gpu_figures([{"trial": "s/0", "runtime_s": 10.0}], []) is None


def test_gpu_figures_from_export_columns_win() -> None:
    rows = [
        {"trial": "s/0", "state": "completed", "runtime_s": 3600.0, "gpu_util_mean": 90.0,
         "gpu_mem_peak_mib": 1000, "gpu_energy_wh": 250.0},
        {"trial": "s/1", "state": "completed", "runtime_s": 1800.0, "gpu_util_mean": 30.0,
         "gpu_mem_peak_mib": 500, "gpu_energy_wh": 50.0},
        {"trial": "s/2", "state": "failed", "runtime_s": 5.0},  # no samples: left out
    ]  # fmt: skip
    gpus = [
        {"trial": "s/0", "gpu": g, "samples": 10, "util_avg": 1.0, "mem_max": 9} for g in (0, 1)
    ]
    fig = gpu_figures(rows, gpus)
    assert fig is not None and fig["source"] == "export"
    assert [t["trial"] for t in fig["trials"]] == ["s/1", "s/0"]  # least utilised first
    assert fig["trials"][1]["util_mean"] == 90.0  # the export's figure, not the gpus op's
    assert fig["gpu_hours"] == pytest.approx(2 * 1.0 + 0.5)  # s/0 ran on two GPUs
    assert fig["util_mean"] == pytest.approx((90 * 2 + 30 * 0.5) / 2.5)  # per GPU-hour
    assert fig["energy_wh"] == 300.0


def test_gpu_figures_fall_back_to_the_gpus_op() -> None:
    rows = [{"trial": "s/0", "state": "completed", "runtime_s": 7200.0}]
    gpu = {"trial": "s/0", "mem_total": 800}
    gpus = [
        {**gpu, "gpu": 0, "samples": 30, "util_avg": 80.0, "mem_max": 100},
        {**gpu, "gpu": 1, "samples": 10, "util_avg": 40.0, "mem_max": 300},
    ]
    fig = gpu_figures(rows, gpus)
    assert fig is not None and fig["source"] == "gpus"
    t = fig["trials"][0]
    assert t["util_mean"] == pytest.approx(70.0)  # weighted by samples
    assert (t["mem_peak_mib"], t["mem_total_mib"], t["gpus"]) == (300, 800, 2)
    assert fig["gpu_hours"] == pytest.approx(4.0) and fig["energy_wh"] is None


def test_gpu_figures_from_the_daemons_ranking_keep_its_order() -> None:
    """This release's ``gpus`` op: one entry per trial, most wasted GPU-hours first."""
    base = {"state": "completed", "gpus": 1, "mem_peak_mib": 900, "mem_total_mib": 8000}
    gpus = [
        {**base, "trial": "s/2", "util_mean": 10.0, "gpu_hours": 2.0, "energy_wh": 100.0,
         "wasted_gpu_hours": 1.8, "idle_gpu_hours": 1.5},
        {**base, "trial": "s/0", "util_mean": 90.0, "gpu_hours": 1.0, "energy_wh": None,
         "wasted_gpu_hours": 0.1, "idle_gpu_hours": 0.0},
    ]  # fmt: skip
    fig = gpu_figures([{"trial": "s/0", "gpu_util_mean": 1.0}], gpus)
    assert fig is not None and fig["source"] == "ranked"
    assert [t["trial"] for t in fig["trials"]] == ["s/2", "s/0"]  # the daemon's order
    assert fig["gpu_hours"] == pytest.approx(3.0)
    assert fig["util_mean"] == pytest.approx((10 * 2 + 90 * 1) / 3)
    assert fig["energy_wh"] == 100.0 and fig["idle_gpu_hours"] == 1.5
    assert fig["wasted_gpu_hours"] == pytest.approx(1.9)


def test_read_diff_cuts_and_explains(tmp_path: Path) -> None:
    assert read_diff(None) == (None, None)
    missing = tmp_path / "gone.diff"
    text, note = read_diff(str(missing))
    assert text is None and note is not None and str(missing) in note
    big = tmp_path / "big.diff"
    big.write_bytes(b"+x\n" * 1000 + b"\xff")
    text, note = read_diff(str(big), limit=100)
    assert text == ("+x\n" * 34)[:100] and note is not None and "first" in note
    small = tmp_path / "small.diff"
    small.write_bytes(b"+caf\xe9\n")  # Latin-1: still shown
    assert read_diff(str(small)) == ("+caf\ufffd\n", None)


# -- importance -----------------------------------------------------------------------


def test_importance_of_a_parameter_that_decides_the_metric_is_one() -> None:
    opt = ["sgd", "adam", "rms"] * 4
    y = [{"sgd": 1.0, "adam": 0.2, "rms": 0.5}[o] for o in opt]
    noise = [i % 2 for i in range(12)]  # balanced against opt: explains nothing
    imp = importance.main_effects(y, {"opt": opt, "seed": noise})
    assert imp.why is None and imp.n == 12
    assert imp.shares["opt"] == pytest.approx(1.0)
    assert imp.shares["seed"] == pytest.approx(0.0, abs=1e-12)
    assert list(imp.shares) == ["opt", "seed"]  # largest first


def test_importance_of_an_additive_grid_is_its_main_effects() -> None:
    """On a full grid, eta^2 is fANOVA's main effect: an additive function's shares sum
    to one, in proportion to each axis's own variance."""
    a_vals, b_vals = [0.0, 1.0, 2.0], [0.0, 10.0]
    a = [x for x in a_vals for _ in b_vals]
    b = [y for _ in a_vals for y in b_vals]
    y = [3 * x + 0.1 * z for x, z in zip(a, b, strict=True)]
    imp = importance.main_effects(y, {"a": a, "b": b})
    var_a = 9 * (2 / 3)  # (3x): values 0,3,6 -> variance 6
    var_b = 0.25  # (0.1z): values 0,1 -> variance 0.25
    assert imp.shares["a"] == pytest.approx(var_a / (var_a + var_b))
    assert imp.shares["b"] == pytest.approx(var_b / (var_a + var_b))
    assert imp.residual == pytest.approx(0.0, abs=1e-9)


def test_importance_says_why_it_has_nothing() -> None:
    few = importance.main_effects([1.0, 2.0], {"a": [1, 2]})
    assert not few.shares and few.why and "at least" in few.why
    flat = importance.main_effects([1.0] * 6, {"a": [1, 2, 3, 4, 5, 6]})
    assert not flat.shares and flat.why and "same value" in flat.why
    with pytest.raises(ValueError, match="'a' has 3 values for 4 trials"):
        importance.main_effects([1.0, 2.0, 3.0, 4.0], {"a": [1, 2, 3]})


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from(["a", "b", "<c>"]),
    st.lists(st.integers(0, 2), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e6, 1e6, allow_nan=False), json_values, st.floats(0, 1e3)),
        min_size=4,
        max_size=60,
    )
)
def test_importance_shares_are_fractions(trials: list[tuple[float, Any, float]]) -> None:
    y = [t[0] for t in trials]
    imp = importance.main_effects(y, {"p": [t[1] for t in trials], "q": [t[2] for t in trials]})
    if imp.why is None:
        assert set(imp.shares) == {"p", "q"}
        assert all(0.0 <= s <= 1.0 for s in imp.shares.values())
        assert 0.0 <= imp.residual <= 1.0
    else:
        assert not imp.shares


# -- axes and html --------------------------------------------------------------------


def test_axis_of_numbers_logs_wide_positive_ranges_and_categorises_the_rest() -> None:
    pytest.importorskip("matplotlib")
    from clusterd.report.plots import axis_of

    wide = axis_of([1e-5, 1e-3, 1e-1])
    assert wide.log and not wide.categorical
    assert wide.positions == pytest.approx([-5, -3, -1])
    narrow = axis_of([0.1, 0.5, 0.9])
    assert not narrow.log and narrow.positions == [0.1, 0.5, 0.9]
    assert not axis_of([-1.0, 100.0]).log  # not all positive
    mixed = axis_of([1, "a", None, [1, 2], True])
    assert mixed.categorical and mixed.labels == sorted(["1", "a", "(none)", "[1, 2]", "true"])
    assert sorted(mixed.positions) == [0.0, 1.0, 2.0, 3.0, 4.0]


def _data(name: str, value: Any, reason: str) -> ReportData:
    rows = [
        {"trial": f"{name}/{i}", "index": i, "state": "completed", "m_best": float(i),
         "m_last": float(i), "p": value if i else f"{value}!", "f": value, "runtime_s": 1.0}
        for i in range(3)
    ]  # fmt: skip
    d = ReportData(
        sweep={"name": name, "metric": "m", "mode": "min", "early_stopping": reason},
        columns=[],
        rows=rows,
        metrics={"m": "min"},
        swept=["p"],
        params=["p", "f"],
        stops=[
            {
                "trial": f"{name}/1",
                "index": 1,
                "state": "stopped",
                "rule": reason,
                "step": 1,
                "value": 1.0,
                "threshold": 0.5,
                "reason": reason,
            }
        ],
        code={"git": name, "git_dirty": True, "diff": reason, "diff_note": None},
    )
    d.top = rank(rows, "m", "min", 3)
    return d


hostile = st.lists(
    st.sampled_from([*"<>&\"'/ab =", "<script>", "</section>", "\u202e", "\x00"]),
    min_size=1,
    max_size=8,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(name=hostile, value=hostile, reason=hostile)
def test_every_user_string_is_escaped(name: str, value: str, reason: str) -> None:
    from clusterd.report import html, plots

    name, value, reason = f"Q{name}Z", f"Q{value}Z", f"Q{reason}Z"  # findable, even "<"
    with pytest.MonkeyPatch.context() as mp:  # figures are tested elsewhere: keep it fast
        for fn in (
            "metric_vs_params",
            "learning_curves",
            "parallel_coordinates",
            "importance_bars",
        ):
            mp.setattr(plots, fn, lambda *a, **k: None)
        page = html.render(_data(name, value, reason))
    assert "<script" not in page
    assert page.count("<section") == page.count("</section>") == len(html.SECTIONS)
    for s in (name, value, reason):
        if any(c in s for c in "<>&\"'"):
            assert s not in page  # only its escaped form
        assert std_html.escape(s, quote=True) in page


def test_write_is_atomic(tmp_path: Path) -> None:
    from clusterd.report import html

    target = tmp_path / "r.html"
    target.write_text("old")
    assert html.write(target, "new é") == len("new é".encode())
    assert target.read_text() == "new é"
    assert os.listdir(tmp_path) == ["r.html"]  # no temporary file left
    with pytest.raises(InvalidRequest, match="no directory"):
        html.write(tmp_path / "missing" / "r.html", "x")
    with pytest.raises(InvalidRequest, match="it is a directory"):
        html.write(tmp_path, "x")


def test_write_failure_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterd.report import html

    target = tmp_path / "r.html"
    target.write_text("old")

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(html.os, "replace", full_disk)
    with pytest.raises(InvalidRequest, match="No space left on device"):
        html.write(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.html"]


def test_report_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterd.cli import report

    monkeypatch.setattr(report, "find_spec", lambda name: None if name == "matplotlib" else 1)
    args = argparse.Namespace(sweep="s", output="/nonexistent/x.html", top=5)
    with pytest.raises(ClusterdError, match=r"needs matplotlib: pip install 'clusterd\[report\]'"):
        report.cmd_report(args)


# -- gather ---------------------------------------------------------------------------


class FakeDaemon:
    """Answers the ops ``gather`` asks, recording each request."""

    def __init__(self, rows: list[dict[str, Any]], diff: str | None = None) -> None:
        self.rows = rows
        self.diff = diff
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, op: str, **args: Any) -> Any:
        self.asked.append((op, args))
        if op == "export":
            if args["sweep"] != "s":
                raise NotFound(f"no sweep named {args['sweep']!r}")
            return {"columns": [], "rows": self.rows, "metrics": {"loss": "min"},
                    "params": ["lr"], "swept": ["lr"]}  # fmt: skip
        if op == "sweeps":
            return [{"name": "other"}, {"name": "s", "metric": "loss", "mode": "min"}]
        if op == "trials":
            return [{"name": f"s/{r['index']}", **r, "stop_decision": None} for r in self.rows]
        if op == "gpus":
            return []
        if op == "metrics":
            return {"trial": args["trial"], "points": [[0, 1.0]], "overlay": [], "median": []}
        if op == "show":
            return {"code": {"git": "abc", "git_dirty": self.diff is not None,
                             "git_diff": self.diff}}  # fmt: skip
        raise AssertionError(op)


def test_gather_asks_for_the_top_k_curves_and_reads_the_diff(tmp_path: Path) -> None:
    rows = [
        {"trial": f"s/{i}", "index": i, "state": "completed", "loss_best": v, "lr": i}
        for i, v in enumerate([0.5, 0.1, 0.9, 0.3, math.inf])
    ]
    diff = tmp_path / "git.diff"
    diff.write_text("+<b>\n")
    fake = FakeDaemon(rows, str(diff))
    got = gather(fake, "s", top_k=3)
    assert [op for op, _ in fake.asked] == ["export", "sweeps", "trials", "gpus", "metrics", "show"]
    assert got.sweep["name"] == "s" and got.metric == "loss"
    assert [r["index"] for r in got.top] == [1, 3, 0]  # inf is no value
    assert fake.asked[4][1] == {"trial": "s/1", "name": "loss", "points": 500, "overlay": [3, 0]}
    assert got.code["diff"] == "+<b>\n" and got.code["git"] == "abc"


def test_gather_unknown_sweep_fails_first() -> None:
    fake = FakeDaemon([])
    with pytest.raises(NotFound, match="no sweep named 'x'"):
        gather(fake, "x")
    assert [op for op, _ in fake.asked] == ["export"]


def test_gather_clamps_top_k_to_what_the_metrics_op_overlays() -> None:
    rows = [
        {"trial": f"s/{i}", "index": i, "state": "completed", "loss_best": float(i), "lr": i}
        for i in range(20)
    ]
    fake = FakeDaemon(rows)
    got = gather(fake, "s", top_k=50)
    assert len(got.top) == data.MAX_TOP_K
    assert len(fake.asked[4][1]["overlay"]) == data.MAX_TOP_K - 1


def _render_without_figures(d: ReportData) -> str:
    from clusterd.report import html, plots

    with pytest.MonkeyPatch.context() as mp:
        for fn in (
            "metric_vs_params",
            "learning_curves",
            "parallel_coordinates",
            "importance_bars",
        ):
            mp.setattr(plots, fn, lambda *a, **k: None)
        return html.render(d)


def test_many_stops_are_summarised_by_rule_and_step_then_capped() -> None:
    from clusterd.report import html

    d = _data("s", 1, "asha")
    d.stops = [
        {"trial": f"s/{i}", "index": i, "state": "stopped", "rule": "asha",
         "step": 3 if i % 3 else 9, "value": 1.0, "threshold": 0.5, "reason": "r"}
        for i in range(html.STOP_ROWS + 10)
    ]  # fmt: skip
    page = _render_without_figures(d)
    assert "<td>asha</td><td class='n'>3</td><td class='n'>40</td>" in page
    assert "<td>asha</td><td class='n'>9</td><td class='n'>20</td>" in page
    assert page.count("<td>stopped</td><td>asha</td>") == html.STOP_ROWS
    assert "and 10 more: <code>clusterctl trials s --state stopped</code>" in page


def test_a_sweep_without_trials_still_renders() -> None:
    d = ReportData(sweep={"name": "empty", "counts": {}}, columns=[], rows=[], metrics={},
                   swept=[], params=[])  # fmt: skip
    page = _render_without_figures(d)
    assert "no trials yet: no code record to show" in page
    assert page.count("no trial has reported a metric yet") == 5  # best + 4 figure sections
    assert "no trial was stopped early" in page and "no GPU samples" in page


def test_full_render_with_gpu_columns_draws_every_figure() -> None:
    """Every figure drawn for real (log and categorical axes, the GPU histogram), each a
    small 256-colour PNG inline."""
    pytest.importorskip("matplotlib")
    import base64
    import re

    from clusterd.report import html

    rows = []
    for i in range(40):
        lr, opt = 10 ** (-5 + i % 5), ["sgd", "adam", None, [1, 2]][i % 4]
        loss = 0.1 + abs(math.log10(lr) + 3) + (0.5 if opt == "sgd" else 0.0) + i / 1000
        rows.append({"trial": f"g/{i}", "index": i, "state": "completed", "loss_best": loss,
                     "loss_last": loss, "lr": lr, "opt": opt, "runtime_s": 1800.0,
                     "gpu_util_mean": 10.0 + 2 * i, "gpu_mem_peak_mib": 4000,
                     "gpu_energy_wh": 20.0})  # fmt: skip
    d = ReportData(
        sweep={"name": "g", "metric": "loss", "mode": "min"},
        columns=[],
        rows=rows,
        metrics={"loss": "min"},
        swept=["lr", "opt"],
        params=["lr", "opt"],
    )
    d.top = rank(rows, "loss", "min", 3)
    d.curves = {
        "trial": d.top[0]["trial"],
        "name": "loss",
        "points": [[s, 1 / (s + 1)] for s in range(50)],
        "overlay": [{"trial": r["trial"], "points": [[0, 2.0], [49, 0.5]]} for r in d.top[1:]],
        "median": [[s, 3 / (s + 1)] for s in range(0, 50, 5)],
        "median_over": 40,
    }
    page = html.render(d)
    pngs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(pngs) == 5  # vs parameters, curves, parallel, importance, GPU utilisation
    for png in pngs:
        raw = base64.b64decode(png)
        assert raw.startswith(b"\x89PNG") and len(raw) < 200_000
    gpu = page[page.index("<section id='gpu'>") :]
    assert "<td>GPU-hours (runtime x GPUs sampled)</td><td>20</td>" in gpu  # 40 x 0.5 h
    assert "<td>energy</td><td>800 Wh</td>" in gpu
    assert "The 10 least utilised trials" in gpu and "<td>g/0</td>" in gpu
