"""Each metric's direction: ``[metric]``, ``[metrics.<name>] mode``, else guessed by name.

Names a researcher reads as "higher is better" (``val_acc``, ``test_auc``, ``f1``) must
not come out "min" by default; a declared mode wins over the guess; a bad declaration is
refused with the key named, and the modes survive the database round trip.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.errors import SpecError
from clusterd.spec import parse_sweep
from clusterd.spec.model import SweepSpec, guessed_mode

BASE = 'name = "m"\ncommand = "python train.py"\n[params]\nlr = [0.1, 0.01]\n'


def spec(extra: str = "") -> SweepSpec:
    return parse_sweep(BASE + extra, source="sweep.toml")


@pytest.mark.parametrize(
    "name",
    [
        "val_acc",
        "accuracy",
        "top5_accuracy",
        "test_auc",
        "f1",
        "f1_macro",
        "mAP",
        "val_iou",
        "mean_reward",
        "precision",
        "recall_at_10",
        "r2",
        "score",
    ],
)
def test_names_that_mean_higher_is_better_are_max(name: str) -> None:
    assert guessed_mode(name) == "max"
    assert spec().metric_mode(name) == "max"


@pytest.mark.parametrize(
    "name", ["val_loss", "loss", "error", "perplexity", "wer", "grad_norm", "mse", "time_s"]
)
def test_other_names_are_min(name: str) -> None:
    assert spec().metric_mode(name) == "min"


def test_declared_modes_win_over_the_guess_and_metric_keeps_its_own() -> None:
    s = spec(
        '[metric]\nname = "val_acc"\nmode = "max"\n'
        '[metrics.val_loss]\nmode = "max"\n[metrics.val_acc]\nmode = "max"\n'
        '[metrics.neg_score]\nmode = "min"\n'
    )
    assert s.metric_mode("val_acc") == "max"
    assert s.metric_mode("val_loss") == "max"  # declared, against the name
    assert s.metric_mode("neg_score") == "min"  # declared, against the guess
    assert s.metric_mode("wer") == "min"
    again = SweepSpec.from_dict(s.to_dict())  # what the daemon stores and reads back
    assert again.metric_modes == s.metric_modes
    assert again.metric_mode("val_loss") == "max"


def test_a_min_metric_named_like_accuracy_is_what_metric_says() -> None:
    s = spec('[metric]\nname = "acc_drop"\nmode = "min"\n')
    assert s.metric_mode("acc_drop") == "min"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[metrics.val_acc]\nmode = "up"\n', "metrics.val_acc.mode"),
        ("[metrics.val_acc]\n", "metrics.val_acc"),
        ('[metrics.val_acc]\nmode = "max"\ngoal = 1\n', "metrics.val_acc"),
        ('metrics = "val_acc"\n', "metrics"),
        (
            '[metric]\nname = "val_acc"\nmode = "max"\n[metrics.val_acc]\nmode = "min"\n',
            "metrics.val_acc.mode",
        ),
    ],
)
def test_bad_declarations_name_the_key(extra: str, key: str) -> None:
    # a top-level key goes before the first table, a table after the others
    text = BASE.replace("[params]", extra + "[params]") if extra[0] != "[" else BASE + extra
    with pytest.raises(SpecError) as err:
        parse_sweep(text, source="sweep.toml")
    assert key in str(err.value)


@given(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), st.sampled_from(["min", "max"]))
def test_a_declared_mode_is_always_the_one_used(name: str, mode: str) -> None:
    s = spec(f'[metrics.{name}]\nmode = "{mode}"\n')
    assert s.metric_mode(name) == mode
