"""The CLI's trial tables: swept parameters first and whole, fixed ones once above, every
metric's last/best, ``--columns``, and a width that follows the terminal (COLUMNS).

Before issue 18 the parameters were one column cut at ~40 characters even at
COLUMNS=200, constants first, so lr, width and dropout never showed.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.cli.output import Column, TrialTable, split_params
from clusterd.errors import InvalidRequest
from clusterd.table import fit, render, terminal_width

LONG = "adamw_with_a_name_long_enough_to_have_been_cut_at_forty_chars"


def trial(i: int, lr: float, width: int, dropout: float, state: str = "completed") -> dict:
    loss = lr * 10 + width / 1000
    return {
        "index": i,
        "state": state,
        "attempts": 1,
        "last_step": 19,
        "reason": "exit code 0",
        "params": {"epochs": 20, "optimizer": LONG, "lr": lr, "width": width, "dropout": dropout},
        "metrics": {
            "val_loss": {
                "last": loss,
                "best": loss * 0.9,
                "step": 19,
                "mode": "min",
                "best_step": 12,
            },
            "val_acc": {"last": 1 - loss, "best": 1 - loss * 0.8, "step": 19, "mode": "max"},
        },
    }


TRIALS = [trial(0, 0.1, 64, 0.0), trial(1, 0.01, 128, 0.25), trial(2, 0.001, 512, 0.5)]


def table(trials: list[dict[str, Any]] = TRIALS) -> TrialTable:
    return TrialTable(
        trials,
        lead=[
            Column("index", "#", lambda t: t["index"], right=True),
            Column("state", "state", lambda t: t["state"]),
            Column("attempts", "att", lambda t: t["attempts"], right=True),
            Column("step", "step", lambda t: t["last_step"], right=True),
        ],
        trail=[Column("note", "note", lambda t: t["reason"])],
    )


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_swept_parameters_come_first_and_whole_fixed_ones_once_above(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = lines(table().render(None))
    assert out[0] == f"fixed: epochs=20 optimizer={LONG}"
    assert out[1] == "best: val_loss lowest, val_acc highest"
    header = out[2].split()
    assert header[:4] == ["#", "state", "att", "step"]
    assert header[4:7] == ["val_loss_last", "val_loss_best", "val_acc_best"]
    assert header[7:10] == ["lr", "width", "dropout"]  # swept, in the sweep's order
    assert "epochs" not in header and "optimizer" not in header
    assert out[3].split()[7:10] == ["0.1", "64", "0"]
    assert out[5].split()[7:10] == ["0.001", "512", "0.5"]


def test_every_metric_is_a_column_by_its_export_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = lines(table().render("index,val_acc_last,val_acc_best,val_loss_best,lr"))
    assert out[-4].split() == ["#", "val_acc_last", "val_acc_best", "val_loss_best", "lr"]
    assert out[-1].split() == ["2", "0.478", "0.5824", "0.4698", "0.001"]


def test_columns_chooses_and_orders_and_may_show_a_fixed_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # chosen columns are never left out
    out = lines(table().render("optimizer,index"))
    assert out[0] == "fixed: epochs=20"  # optimizer is in the table now
    assert out[-1].split() == [LONG, "2"]


def test_unknown_column_is_refused_with_the_names_there_are() -> None:
    with pytest.raises(InvalidRequest) as err:
        table().render("index,val_accuracy")
    message = str(err.value)
    assert "val_accuracy" in message
    assert "val_acc_best" in message and "dropout" in message


def test_a_narrow_terminal_leaves_whole_columns_out_and_says_which(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = lines(table().render(None))
    assert all(len(line) <= 60 for line in out[2:])
    header = out[2].split()
    # the most wanted stay: the trial, its state, the [metric]'s best, the swept params
    assert header[:3] == ["#", "state", "val_loss_best"]
    assert {"lr", "width", "dropout"} <= set(header)
    left = capsys.readouterr().err
    assert "left out to fit 60 columns" in left and "val_acc_best" in left
    for cell in out[3].split():  # nothing cut: every value shown is whole
        assert "…" not in cell


def test_piped_output_is_never_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert terminal_width() is None
    wide = [trial(i, 0.1 * i, 64, 0.1) for i in range(3)]
    for t in wide:
        t["reason"] = "x" * 300
    text = table(wide).render(None)
    assert "x" * 300 in text


def test_columns_env_is_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "123")
    assert terminal_width() == 123


def test_render_cuts_only_the_columns_it_may() -> None:
    rows = [("a" * 30, "note " * 10)]
    text = render(["param", "note"], rows, width=50, shrink=[1])
    assert "a" * 30 in text and "…" in text.splitlines()[1]


def test_fit_drops_least_wanted_first() -> None:
    assert fit([5, 5, 5, 5], 100, [0, 1, 2, 3]) == [0, 1, 2, 3]
    assert fit([5, 5, 5, 5], 12, [3, 0, 2, 1]) == [0, 3]
    assert fit([50, 5], 10, [0, 1]) == [0]  # the first wanted always stays


def test_one_trial_and_no_metrics() -> None:
    t = {
        "index": 0,
        "state": "pending",
        "attempts": 0,
        "last_step": None,
        "reason": None,
        "params": {"lr": 0.1},
        "metrics": {},
    }
    out = lines(table([t]).render("index,state,lr"))
    assert out == ["#  state    lr", "0  pending  0.1"]  # nothing fixed left, no metric line
    assert lines(table([t]).render(None))[0] == "fixed: lr=0.1"


params_st = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2), max_size=4),
    min_size=1,
    max_size=8,
)


@given(params_st)
def test_split_params_every_name_is_swept_or_fixed_and_fixed_ones_never_vary(
    params: list[dict[str, int]],
) -> None:
    swept, fixed = split_params(params)
    names = {k for p in params for k in p}
    assert set(swept) | set(fixed) == names and not set(swept) & set(fixed)
    for name, value in fixed.items():
        assert all(p.get(name) == value and name in p for p in params)
    for name in swept:
        assert len({repr(p.get(name, "<missing>")) for p in params}) > 1
