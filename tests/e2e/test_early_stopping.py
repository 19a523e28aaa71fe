"""Early stopping and adaptive search end to end: a real daemon, real trial processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from clusterd.search.base import Result
from clusterd.search.cem import CemSearcher
from clusterd.spec import parse_sweep
from tests.conftest import REPO, Daemon, wait_for

PY = sys.executable


def _example(tmp_path: Path, sweep_file: str, **replace: str) -> Path:
    example = tmp_path / "early-stopping"
    shutil.copytree(REPO / "examples" / "early-stopping", example)
    path = example / sweep_file
    text = path.read_text().replace('"python3 train.py"', json.dumps(f"{PY} train.py"))
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


def _metric_rows(daemon: Daemon, index: int) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{daemon.home / 'clusterd.db'}")
    with engine.connect() as conn:
        n = conn.execute(
            text(
                "select count(*) from metrics m join trials t on m.trial_id = t.id "
                'where t."index" = :i'
            ),
            {"i": index},
        ).scalar_one()
    engine.dispose()
    return int(n)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_asha_stops_hopeless_trials_and_best_is_the_best_completed(
    daemon: Daemon, tmp_path: Path
) -> None:
    daemon.ctl("submit", str(_example(tmp_path, "sweep.toml")))
    trials = daemon.wait_sweep_done("early-stopping", timeout=240)
    states = [t["state"] for t in trials]
    assert set(states) <= {"completed", "stopped"}, trials
    stopped = [t for t in trials if t["state"] == "stopped"]
    completed = [t for t in trials if t["state"] == "completed"]
    assert len(stopped) >= 6 and completed, states

    for t in stopped:
        show = daemon.ctl_json("show", t["name"])
        assert {k: show[k] for k in t} == t  # `trials` and `show` agree on every field
        decision = show["stop_decision"]
        assert decision["rule"] == "asha" and decision["step"] in (3, 9)
        assert show["last_step"] < 24  # it stopped training, metrics up to then kept
        assert _metric_rows(daemon, t["index"]) == show["last_step"]
        text = daemon.ctl("show", t["name"]).stdout
        assert f"stopped by asha at step {decision['step']}: value" in text
        # the process is gone: its runner wrote status.json and exited
        status = json.loads(Path(show["attempt_list"][-1]["dir"], "status.json").read_text())
        assert not _alive(status["pid"])

    best = daemon.ctl_json("best", "early-stopping", "-n", "1")["trials"][0]
    assert best["best"] == min(t["best_value"] for t in completed)

    export = json.loads(daemon.ctl("export", "early-stopping", "--format", "json").stdout)
    by_state = {row["state"]: row for row in export}
    assert by_state["completed"]["stopped_at_step"] is None
    assert all(row["stopped_at_step"] in (3, 9) for row in export if row["state"] == "stopped")


def test_stop_by_hand_ends_a_trial_that_ignores_should_stop(daemon: Daemon, tmp_path: Path) -> None:
    """The marker is written at once; a trial that never asks is terminated after the grace."""
    (tmp_path / "stubborn.py").write_text(
        textwrap.dedent(
            """
            import time
            from clusterd import trial
            step = 0
            while True:
                step += 1
                trial.report(step, loss=1.0 / step)
                time.sleep(0.05)
            """
        )
    )
    (tmp_path / "sweep.toml").write_text(
        textwrap.dedent(
            f"""
            name = "hand"
            command = ["{PY}", "stubborn.py"]
            [metric]
            name = "loss"
            [params]
            x = [1]
            [early_stopping]
            rule = "none"
            """
        )
    )
    daemon.ctl("submit", str(tmp_path / "sweep.toml"))
    wait_for(lambda: (daemon.ctl_json("show", "hand/0")["last_step"] or 0) >= 5, 60, "steps")
    out = daemon.ctl("stop", "hand/0").stdout
    assert "hand/0: stopping" in out
    show = daemon.ctl_json("show", "hand/0")
    adir = Path(show["attempt_list"][-1]["dir"])
    assert json.loads((adir / "STOP").read_text())["rule"] == "manual"
    trials = daemon.wait_sweep_done("hand", timeout=90)
    assert trials[0]["state"] == "stopped"
    show = daemon.ctl_json("show", "hand/0")
    assert show["stop_decision"]["reason"] == "stopped by hand"
    assert show["attempt_list"][-1]["outcome"] == "stopped"
    status = json.loads((adir / "status.json").read_text())
    assert not _alive(status["pid"])
    again = daemon.ctl("stop", "hand/0", check=False)
    assert again.returncode == 1 and "already ended (stopped)" in again.stderr


def test_cem_search_survives_a_daemon_kill_and_proposes_what_the_seed_dictates(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Trials are proposed as results arrive; a SIGKILLed daemon resumes the same search."""
    path = _example(tmp_path, "cem.toml", **{"samples = 24": "samples = 16"})
    daemon.ctl("submit", str(path))
    wait_for(lambda: len(daemon.trials("early-stopping-cem")) > 8, 120, "generation 2")
    os.kill(daemon.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(daemon.pid), 10, "daemon to die")
    daemon.start()
    trials = daemon.wait_sweep_done("early-stopping-cem", timeout=240)
    assert [t["index"] for t in trials] == list(range(16))
    assert {t["state"] for t in trials} == {"completed"}

    # replaying the stored results through a fresh searcher proposes exactly the stored
    # trials: the proposals depend on the seed and the results only, not on the restart
    spec = parse_sweep(path.read_text(), source=str(path), base_dir=str(path.parent))
    searcher = CemSearcher(spec)
    for t in trials:
        assert searcher.ask(t["index"]) == t["params"], t["index"]
        searcher.tell(Result(t["index"], t["params"], t["best_value"], t["state"]))
    # and the search moved towards the good region (lr near 3e-3)
    import math

    def distance(ts: list[dict]) -> float:
        return sum(abs(math.log10(t["params"]["lr"]) + 2.5) for t in ts) / len(ts)

    assert distance(trials[8:]) < distance(trials[:8])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[early_stopping]\nrule = "medain"\n',
            "early_stopping.rule: expected one of none, asha, hyperband, median, got 'medain'",
        ),
        (
            '[early_stopping]\nrule = "hyperband"\n',
            "rule 'hyperband' needs max_steps",
        ),
        (
            '[early_stopping]\nrule = "asha"\nmin_trials = 3\n',
            "rule 'asha' does not use min_trials",
        ),
        (
            '[search]\nmethod = "cme"\nsamples = 4\n',
            "search.method: expected one of cem, grid, nevergrad, optuna, random, tpe, got 'cme'",
        ),
        (
            '[search]\nmethod = "cem"\nsamples = 4\n[search.options]\npopulation = 1\n',
            "search.options.population: expected an integer >= 2, got 1",
        ),
    ],
)
def test_unknown_rules_and_methods_are_refused_at_submit(
    daemon: Daemon, tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'name = "bad"\ncommand = "true"\n[metric]\nname = "loss"\n[params]\nx = [1, 2]\n{body}'
    )
    proc = daemon.ctl("submit", str(path), check=False)
    assert proc.returncode == 1, proc.stdout
    assert message in proc.stderr
    assert daemon.ctl_json("sweeps") == []


def test_tpe_proposes_every_sample_inside_the_space_with_optuna_only_in_memory(
    daemon: Daemon, tmp_path: Path
) -> None:
    pytest.importorskip("optuna")
    path = _example(
        tmp_path,
        "cem.toml",
        **{
            'method = "cem"': 'method = "tpe"',
            "samples = 24": "samples = 10",
            "[search.options]\npopulation = 8\nelite_fraction = 0.25\n": "",
        },
    )
    daemon.ctl("submit", str(path))
    trials = daemon.wait_sweep_done("early-stopping-cem", timeout=240)
    assert [t["index"] for t in trials] == list(range(10))
    assert {t["state"] for t in trials} == {"completed"}
    for t in trials:
        assert 1e-5 <= t["params"]["lr"] <= 1e-1
        assert t["params"]["width"] in (32, 64, 128, 256, 512)
        assert t["params"]["steps"] == 12
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 10
    # the daemon's home holds our database and nothing of Optuna's
    assert sorted(p.name for p in daemon.home.glob("*.db")) == ["clusterd.db"]
    sweeps = {s["name"]: s for s in daemon.ctl_json("sweeps")}
    assert sweeps["early-stopping-cem"]["planned"] == 10


def test_decisions_survive_a_daemon_kill_exactly_as_an_uninterrupted_rule_takes_them(
    daemon: Daemon, tmp_path: Path
) -> None:
    """SIGKILL mid-sweep: after restart, the stored decisions are exactly those a fresh
    rule takes on the stored metric stream, in stored order -- none lost, none doubled."""
    from sqlalchemy import create_engine, text

    from clusterd.spec.model import EarlyStopping
    from clusterd.stopping.asha import AshaRule

    daemon.ctl("submit", str(_example(tmp_path, "sweep.toml")))
    wait_for(
        lambda: any(t["state"] == "stopped" for t in daemon.trials("early-stopping")),
        120,
        "a first stopped trial",
    )
    os.kill(daemon.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(daemon.pid), 10, "daemon to die")
    daemon.start()
    trials = daemon.wait_sweep_done("early-stopping", timeout=240)
    stored = {t["index"]: t["stop_decision"]["step"] for t in trials if t["stop_decision"]}
    transitions = [
        daemon.ctl_json("show", t["name"])["transitions"] for t in trials if t["stop_decision"]
    ]
    assert all(sum(x["to"] == "stopped" for x in ts) == 1 for ts in transitions)

    engine = create_engine(f"sqlite:///{daemon.home / 'clusterd.db'}")
    with engine.connect() as conn:
        stream = conn.execute(
            text(
                'select t."index", m.step, m.value from metrics m join trials t '
                "on m.trial_id = t.id where m.name = 'val_loss' order by m.id"
            )
        ).all()
    engine.dispose()
    rule = AshaRule(EarlyStopping("asha", 3, {"reduction_factor": 3, "grace_period": 10}), "min")
    replayed: dict[int, int] = {}
    for index, step, value in stream:
        decision = rule.observe(index, step, value)
        if decision is not None:
            replayed[index] = decision.step
            rule.forget(index)
    assert stored == replayed and stored
