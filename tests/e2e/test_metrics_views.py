"""Issue 18 end to end, real daemon and real trials on the local driver: every metric a
trial reports, with its own direction, in ``trials``, ``show``, ``best --by``, ``export``,
``results()`` and the ``metrics`` op; the swept parameters first and whole; ``sweeps``
and ``best`` agreeing on which trials count for "best"; ``relaunch --cancelled``; the ETA
of a relaunched sweep.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from clusterd.client import Client
from tests.conftest import Daemon, wait_for

PY = sys.executable

#: two metrics in opposite directions, plus one the guess makes "max" (f1) and one that
#: a [metrics.<name>] table turns around (margin)
TWO_METRICS = """
    from clusterd import trial

    p = trial.params()
    for step in range(6):
        loss = p["lr"] * (6 - step) + p["width"] / 1000
        acc = 1 - loss / 2 if step < 5 else 1 - loss  # acc peaks at step 4, then drops
        trial.report(step, val_loss=loss, val_acc=acc, f1=acc / 2, margin=-loss)
"""

SWEEP = """
    name = "two"
    command = ["{py}", "train.py"]
    max_concurrent = 6

    [metric]
    name = "val_loss"
    mode = "min"

    [metrics.margin]
    mode = "min"

    [params]
    epochs = 6
    optimizer = "adamw_with_a_long_name_that_used_to_push_lr_and_width_off_the_table"
    lr = [0.1, 0.01, 0.001]
    width = [64, 512]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("{py}", PY))
    return path


def loss(lr: float, width: int, step: int) -> float:
    return lr * (6 - step) + width / 1000


@pytest.fixture
def two(daemon: Daemon, tmp_path: Path) -> list[dict[str, Any]]:
    write(tmp_path, "train.py", TWO_METRICS)
    daemon.ctl("submit", str(write(tmp_path, "sweep.toml", SWEEP)))
    trials = daemon.wait_sweep_done("two")
    assert {t["state"] for t in trials} == {"completed"}, trials
    return trials


def test_every_metric_with_its_own_direction(daemon: Daemon, two: list[dict[str, Any]]) -> None:
    t = two[3]  # lr=0.01, width=512
    lr, width = t["params"]["lr"], t["params"]["width"]
    m = t["metrics"]
    assert list(m) == ["val_loss", "f1", "margin", "val_acc"]  # [metric] first, then by name
    assert {k: v["mode"] for k, v in m.items()} == {
        "val_loss": "min",
        "f1": "max",  # guessed from the name
        "margin": "min",  # declared, though -loss would be "max"-ish
        "val_acc": "max",  # guessed: was silently "min" before
    }
    last_loss = loss(lr, width, 5)
    assert m["val_loss"]["last"] == pytest.approx(last_loss)
    assert m["val_loss"]["best"] == pytest.approx(last_loss)
    assert m["val_acc"]["last"] == pytest.approx(1 - last_loss)
    assert m["val_acc"]["best"] == pytest.approx(1 - loss(lr, width, 4) / 2)  # the highest
    assert m["margin"]["best"] == pytest.approx(-loss(lr, width, 0))  # the lowest

    show = daemon.ctl_json("show", "two/3")["metrics"]
    assert show["val_acc"]["best"] == m["val_acc"]["best"] and show["val_acc"]["mode"] == "max"
    text = daemon.ctl("show", "two/3").stdout
    assert "val_acc last" in text and "(max)" in text


def test_best_by_another_metric_ranks_in_its_direction(
    daemon: Daemon, two: list[dict[str, Any]]
) -> None:
    by_loss = daemon.ctl_json("best", "two", "-n", "6")
    assert by_loss["metric"] == "val_loss" and by_loss["mode"] == "min"
    values = [t["best"] for t in by_loss["trials"]]
    assert values == sorted(values)
    by_acc = daemon.ctl_json("best", "two", "-n", "3", "--by", "val_acc")
    assert by_acc["metric"] == "val_acc" and by_acc["mode"] == "max"
    accs = [t["best"] for t in by_acc["trials"]]
    assert accs == sorted(accs, reverse=True) and len(accs) == 3
    assert by_acc["trials"][0]["params"] == {**two[4]["params"]}  # lr=0.001, width=64
    assert [t["best_step"] for t in by_acc["trials"]] == [4, 4, 4]
    text = daemon.ctl("best", "two", "--by", "val_acc").stdout
    assert "ranked by val_acc, highest first" in text
    refused = daemon.ctl("best", "two", "--by", "val_accuracy", check=False)
    assert refused.returncode == 1
    assert "no metric 'val_accuracy'" in refused.stderr and "val_acc" in refused.stderr


def test_export_and_results_carry_every_metric(
    daemon: Daemon, two: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = list(csv.DictReader(io.StringIO(daemon.ctl("export", "two").stdout)))
    header = list(rows[0])
    for name in ("val_loss", "val_acc", "f1", "margin"):
        assert f"{name}_last" in header and f"{name}_best" in header
    # the swept parameters come before the fixed ones
    assert header[-4:] == ["lr", "width", "epochs", "optimizer"]
    by_index = {int(r["index"]): r for r in rows}
    for t in two:
        row = by_index[t["index"]]
        for name, m in t["metrics"].items():
            assert float(row[f"{name}_best"]) == pytest.approx(m["best"])
            assert float(row[f"{name}_last"]) == pytest.approx(m["last"])
    as_json = json.loads(daemon.ctl("export", "two", "--format", "json").stdout)
    assert as_json[3]["val_acc_best"] == pytest.approx(two[3]["metrics"]["val_acc"]["best"])

    with Client(daemon.home / "clusterd.sock") as c:
        data = c.call("export", sweep="two")
    assert data["metrics"] == {"val_loss": "min", "f1": "max", "margin": "min", "val_acc": "max"}
    assert data["swept"] == ["lr", "width"]

    from clusterd import client

    monkeypatch.setitem(sys.modules, "pandas", None)  # as on a machine without pandas
    with pytest.raises(ImportError, match=r"pip install 'clusterd\[pandas\]'"):
        client.results("two", daemon.home / "clusterd.sock")


def test_results_dataframe(daemon: Daemon, two: list[dict[str, Any]]) -> None:
    pytest.importorskip("pandas")
    from clusterd.client import results

    frame = results("two", daemon.home / "clusterd.sock")
    assert {"val_acc_best", "val_loss_best", "lr", "width"} <= set(frame.columns)
    assert frame.attrs["metrics"]["val_acc"] == "max"
    assert frame["val_acc_best"].idxmax() == 4


def test_trials_table_shows_the_swept_parameters_whole(
    daemon: Daemon, two: list[dict[str, Any]]
) -> None:
    daemon.env["COLUMNS"] = "200"
    out = daemon.ctl("trials", "two").stdout.splitlines()
    assert out[0].startswith("fixed: epochs=6 optimizer=adamw_with_a_long_name_that_used")
    assert out[1] == "best: val_loss lowest, f1 highest, margin lowest, val_acc highest"
    header = out[2].split()
    assert header[header.index("val_acc_best") + 1 : header.index("val_acc_best") + 3] == [
        "lr",
        "width",
    ]
    assert out[3].split()[header.index("lr")] == "0.1"
    picked = daemon.ctl("trials", "two", "--columns", "index,val_acc_best,width").stdout
    assert picked.splitlines()[-1].split()[::2] == ["5", "512"]
    whole = daemon.ctl_json("trials", "two")  # --json: everything, never cut
    assert whole[0]["params"]["optimizer"].endswith("off_the_table")


def test_metrics_op_modes_switching_and_overlay(daemon: Daemon, two: list[dict[str, Any]]) -> None:
    with Client(daemon.home / "clusterd.sock") as c:
        default = c.call("metrics", trial="two/1")
        acc = c.call("metrics", trial="two/1", name="val_acc", overlay=[4, 1, 2])
        with pytest.raises(Exception, match="overlay"):
            c.call("metrics", trial="two/1", overlay=list(range(20)))
    with Client(daemon.home / "clusterd.sock") as c:  # asked for, not the default
        assert "metrics" not in c.call("trials", sweep="two")[0]
        assert "val_acc" in c.call("trials", sweep="two", metrics=True)[0]["metrics"]
    assert default["name"] == "val_loss" and default["mode"] == "min"
    assert default["modes"] == {"f1": "max", "margin": "min", "val_acc": "max", "val_loss": "min"}
    assert acc["mode"] == "max" and len(acc["points"]) == 6
    assert acc["best"]["trial"] == "two/4"  # the highest val_acc, not the lowest
    assert [o["trial"] for o in acc["overlay"]] == ["two/4", "two/2"]  # not itself
    assert all(len(o["points"]) == 6 for o in acc["overlay"])


STOPPABLE = """
    import os, sys, time
    from clusterd import trial

    x = trial.params()["x"]
    if x == 0:  # finishes at once
        trial.report(0, loss=5.0)
    elif x == 1:  # a very low value, then stopped by hand: it must not become "best"
        trial.report(0, loss=-100.0)
        while not trial.should_stop():
            time.sleep(0.05)
    else:  # waits for the researcher's fix; cancelled meanwhile, resumed afterwards
        trial.report(0, loss=1.0)
        while not os.path.exists("fixed"):
            time.sleep(0.05)
        trial.report(1, loss=-50.0)
"""


def test_best_rule_relaunch_cancelled_and_eta(daemon: Daemon, tmp_path: Path) -> None:
    from clusterd.tui.model import SweepRow

    write(tmp_path, "train.py", STOPPABLE)
    sweep = write(
        tmp_path,
        "sweep.toml",
        """
        name = "s"
        command = ["{py}", "train.py"]
        max_concurrent = 3
        [metric]
        name = "loss"
        mode = "min"
        [params]
        x = [0, 1, 2]
        """,
    )
    daemon.ctl("submit", str(sweep))

    def states() -> list[str]:
        return [t["state"] for t in daemon.trials("s")]

    wait_for(
        lambda: (
            states() == ["completed", "running", "running"]
            and all(t["last_step"] == 0 for t in daemon.trials("s"))
        ),
        60,
        "trial 0 to complete and 1, 2 to report",
    )
    daemon.ctl("stop", "s/1")
    wait_for(lambda: states()[1] == "stopped", 60, "trial 1 to stop")
    daemon.ctl("cancel", "s")
    wait_for(lambda: states() == ["completed", "stopped", "cancelled"], 60, "the cancel")

    # "best": completed trials only, in both views (the stopped one had -100)
    listed = daemon.sweeps()["s"]
    assert listed["best"] == 5.0
    assert daemon.ctl_json("best", "s")["trials"][0]["best"] == 5.0
    assert daemon.ctl_json("best", "s", "--all")["trials"][0]["best"] == -100.0

    out = daemon.ctl("relaunch", "s", "--cancelled", cwd=tmp_path).stdout
    assert "1 trial(s) relaunched (cancelled)" in out
    wait_for(lambda: states()[2] == "running", 60, "trial 2 to run again")
    assert states()[:2] == ["completed", "stopped"]  # the stopped one was not re-run
    view = daemon.sweeps()["s"]
    assert view["relaunched_at"] is not None and view["finished_since_relaunch"] == 0
    # no relaunched trial has finished yet: no pace to go by (the old ETA took trial 0's)
    assert SweepRow(view).eta(time.time()) is None
    (tmp_path / "fixed").touch()
    trials = daemon.wait_sweep_done("s")
    assert [(t["state"], t["attempts"]) for t in trials] == [
        ("completed", 1),
        ("stopped", 1),
        ("completed", 2),
    ]
    assert daemon.sweeps()["s"]["best"] == -50.0
    assert daemon.ctl_json("best", "s", "-n", "1")["trials"][0]["name"] == "s/2"
    help_text = daemon.ctl("relaunch", "--help").stdout
    assert "--cancelled" in help_text and "stopped" in help_text and "(the default)" in help_text
