"""``clusterd.compat.cluster_utils`` outside clusterd: cluster_utils 3.0.0's own command
line, files and return values (src/cluster_utils/client/__init__.py of its sdist)."""

from __future__ import annotations

import copy
import csv
import json
import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.compat import cluster_utils as cu


def read_csv(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    return row


def test_a_parameter_file_and_overrides_give_a_nested_read_only_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = tmp_path / "wd"
    (tmp_path / "p.json").write_text(
        json.dumps({"working_dir": str(wd), "fn_args": {"x": 1.0, "y": 2}, "name": "a"})
    )
    params = cu.initialize_job(["main.py", str(tmp_path / "p.json"), "fn_args.y=5", "lr=1e-3"])
    assert params.fn_args.x == 1.0 and params.fn_args.y == 5 and params.lr == 1e-3
    assert params["fn_args"]["y"] == 5 and "working_dir" in params
    assert json.loads((wd / "settings.json").read_text())["fn_args"] == {"x": 1.0, "y": 5}
    assert '"lr": 0.001' in capsys.readouterr().out  # verbose, as cluster_utils
    with pytest.raises(TypeError, match="read-only"):
        setattr(params, "lr", 1)  # noqa: B010 - the attribute write is the point
    with pytest.raises(AttributeError, match="no parameter 'nope'"):
        _ = params.nope
    assert copy.deepcopy(params) == params and pickle.loads(pickle.dumps(params)).fn_args.x == 1.0


def test_parameter_dict_is_read_as_a_literal_never_evaluated(tmp_path: Path) -> None:
    params = cu.initialize_job(
        ["m.py", "--parameter-dict", "{'a': {'b': (1, 2)}, 'c': 'x'}"], verbose=False
    )
    assert params.a.b == (1, 2) and params.c == "x"
    with pytest.raises(ValueError, match="not a Python literal"):
        cu.initialize_job(["m.py", "--parameter-dict", "__import__('os').getcwd()"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cu.initialize_job(["m.py", str(tmp_path / "missing.json")])


def test_finalize_job_writes_cluster_utils_files_with_time_elapsed(tmp_path: Path) -> None:
    params = cu.nest({"working_dir": str(tmp_path), "opt.lr": 0.1, "opt.kind": "sgd"})
    metrics = {"loss": 0.5}
    cu.finalize_job(metrics, params)
    assert read_csv(tmp_path / "param_choice.csv") == {
        "working_dir": str(tmp_path),
        "opt.lr": "0.1",
        "opt.kind": "sgd",
    }
    row = read_csv(tmp_path / "metrics.csv")
    assert row["loss"] == "0.5" and float(row["time_elapsed"]) >= 0
    assert cu.save_metrics_params is cu.finalize_job


def test_cluster_main_passes_params_as_keywords_and_saves_the_returned_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"working_dir": str(tmp_path), "id": 3, "u": 2}))
    monkeypatch.setattr("sys.argv", ["main.py", str(tmp_path / "p.json")])

    @cu.cluster_main
    def main(working_dir: str, id: int, **kwargs: float) -> dict[str, float]:
        return {"result": kwargs["u"] * id}

    assert main()["result"] == 6
    assert read_csv(tmp_path / "metrics.csv")["result"] == "6"


def test_outside_clusterd_exit_for_resume_returns_and_announcements_are_dropped() -> None:
    cu.exit_for_resume()  # cluster_utils without its server: returns
    cu.announce_early_results({"loss": 1.0})
    cu.announce_fraction_finished(0.5)


names = st.lists(st.text("abc", min_size=1, max_size=3), min_size=1, max_size=3).map(".".join)


@given(st.dictionaries(names, st.integers(), max_size=8))
def test_nest_and_flatten_are_inverse_or_name_the_clash(flat: dict[str, int]) -> None:
    try:
        tree = cu.nest(flat)
    except ValueError as exc:
        clash = [a for a in flat for b in flat if b.startswith(a + ".")]
        assert clash and any(repr(c) in str(exc) or repr(c + ".") in str(exc) for c in flat)
        return
    assert dict(cu.flatten(tree)) == flat


def test_the_converters_helper_params_never_reach_the_job_script(tmp_path: Path) -> None:
    """A converted config's trials carry ``_zipN``/``_restart`` (docs/convert.md); the
    script sees only the params cluster_utils would have handed it."""
    import subprocess
    import sys

    params = tmp_path / "params.json"
    params.write_text(json.dumps({"_zip0": "b1", "_restart": 1, "_zipper": 2, "lr": 0.1}))
    code = (
        "import json; from clusterd.compat.cluster_utils import initialize_job; "
        "print(json.dumps(sorted(initialize_job(verbose=False))))"
    )
    env = {
        **os.environ,
        "CLUSTERD_PARAMS": str(params),
        "CLUSTERD_TRIAL_ID": "cu/3",
        "CLUSTERD_TRIAL_DIR": str(tmp_path / "3"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == ["_zipper", "id", "lr", "working_dir"]
