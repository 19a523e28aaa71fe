"""``clusterctl convert``, ``submit``/``count`` of converted files, and ``count`` per axis,
run as a user runs them (a real daemon, or none)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Daemon

GRID = {
    "optimization_procedure_name": "cu-grid",
    "results_dir": "results",
    "script_relative_path": "main.py",
    "restarts": 2,
    "generate_report": "never",
    "cluster_requirements": {"request_cpus": 1, "bid": 800},
    "fixed_params": {"ratio": "{a / 2}"},
    "hyperparam_list": [
        {"param": "a", "values": [1, 2, 3]},
        {"param": ["x", "y"], "values": [[1, 2], [3, 4]]},
    ],
}


def write_config(tmp_path: Path, name: str = "config.json") -> Path:
    (tmp_path / ".git").mkdir(exist_ok=True)  # the project root: main.py is found here
    (tmp_path / "main.py").write_text("print('ok')\n")
    path = tmp_path / name
    path.write_text(json.dumps({**GRID, "results_dir": str(tmp_path / "results")}))
    return path


def test_convert_prints_the_toml_and_the_mapping(stopped_daemon: Daemon, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    out = stopped_daemon.ctl("convert", str(path))
    assert out.stdout.startswith("# converted by `clusterctl convert`")
    assert 'name = "cu-grid"' in out.stdout and "[params]" in out.stdout
    assert "mapped   restarts -> _restart = [0, 1]" in out.stderr
    assert "refused  cluster_requirements.bid: HTCondor's bid" in out.stderr
    assert "refused  generate_report" in out.stderr

    target = tmp_path / "sweep.toml"
    stopped_daemon.ctl("convert", str(path), "-o", str(target))
    assert target.read_text() == out.stdout
    target.write_text("mine")
    again = stopped_daemon.ctl("convert", str(path), "-o", str(target), check=False)
    assert again.returncode == 1 and "--force" in again.stderr
    assert target.read_text() == "mine"  # nothing was overwritten
    stopped_daemon.ctl("convert", str(path), "-o", str(target), "--force")
    assert target.read_text() == out.stdout
    # the written file is a sweep file of its own: count agrees with the config's
    assert stopped_daemon.ctl("count", str(target), "--total").stdout == "12\n"


def test_count_per_axis_then_the_total(stopped_daemon: Daemon, tmp_path: Path) -> None:
    native = tmp_path / "sweep.toml"
    native.write_text(
        'name = "n"\ncommand = "python t.py"\n[params]\nlr = [1, 2, 3]\nseed = 0\n'
        "[params.opt.sgd]\nm = [0.1, 0.9]\n[params.opt.adam]\n"
    )
    out = stopped_daemon.ctl("count", str(native))
    lines = out.stdout.splitlines()
    assert lines[0] == "grid: the product of 2 axis/axes"
    assert lines[1].split() == ["lr", "3", "values"]
    assert lines[2].split() == ["opt", "2", "branches:", "sgd", "(2),", "adam", "(1)"]
    assert lines[3] == "  fixed: seed"
    assert lines[-1] == "9"
    assert stopped_daemon.ctl("count", str(native), "--total").stdout == "9\n"
    converted = stopped_daemon.ctl("count", str(write_config(tmp_path)))
    assert converted.stdout.splitlines()[-1] == "12"
    assert "_restart" in converted.stdout and "_zip0" in converted.stdout
    adaptive = tmp_path / "tpe.toml"
    adaptive.write_text(
        'name = "t"\ncommand = "x"\n[metric]\nname = "loss"\n[search]\nmethod = "tpe"\n'
        "samples = 30\n[search.space]\nlr = { loguniform = [1e-4, 1e-1] }\n"
    )
    text = stopped_daemon.ctl("count", str(adaptive)).stdout
    assert "method tpe: proposes up to 30 trial(s) (samples) as results arrive" in text
    assert "lr" in text and "loguniform" in text


def test_submit_converts_on_the_fly(daemon: Daemon, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    dry = daemon.ctl("submit", str(path), "--dry-run")
    assert "sweep cu-grid: 12 trial(s)" in dry.stdout
    assert "mapped   hyperparam_list" in dry.stderr
    assert daemon.ctl("count", str(path), "--total").stdout == "12\n"
    real = daemon.ctl("submit", str(path))
    assert "sweep cu-grid: 12 trial(s) submitted" in real.stdout
    assert "refused  cluster_requirements.bid" in real.stderr
    trials = daemon.ctl_json("trials", "cu-grid")
    params = [t["params"] for t in trials]
    assert len(params) == 12
    assert params[0]["ratio"] == 0.5 and (params[0]["x"], params[0]["y"]) == (1, 2)
    assert {p["_restart"] for p in params} == {0, 1}
    daemon.cancel_everything()
