"""A cluster_utils job script runs unchanged under clusterd through a converted config
(issue #19 item 4), with the real daemon: ``import cluster_utils`` finds the shim,
``exit_for_resume()`` on the first attempt is resumed in the same working dir, and the
metrics ``finalize_job`` saves are the trial's final metrics. ``@trial.main`` too."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from clusterd import client
from clusterd.compat import SHIM_DIR
from clusterd.report.convert import convert_path
from clusterd.testing.daemon import _SOURCE_ROOT
from tests.conftest import Daemon

#: written like cluster_utils 3.0.0's examples/basic/main_no_fail.py and
#: examples/checkpointing/checkpoint_example.py (numpy replaced by json: stdlib only)
CU_SCRIPT = """\
import json
import os

from cluster_utils import announce_early_results, exit_for_resume, finalize_job, initialize_job


def fn_to_optimize(*, x, u, w):
    return (x - 3.14) ** 2 + u * w


if __name__ == "__main__":
    params = initialize_job()
    os.makedirs(params.working_dir, exist_ok=True)
    result_file = os.path.join(params.working_dir, "result.json")
    if os.path.isfile(result_file):
        with open(result_file) as f:
            noiseless_result = json.load(f)
    else:
        noiseless_result = fn_to_optimize(**params.fn_args)
        with open(result_file, "w") as f:
            json.dump(noiseless_result, f)
        if "test_resume" in params and params.test_resume:
            exit_for_resume()
    announce_early_results({"result": noiseless_result + 1})
    metrics = {"result": noiseless_result, "noiseless_result": noiseless_result}
    finalize_job(metrics, params)
"""

#: cluster_utils' examples/basic/main_with_decorator.py, shortened
CU_DECORATED = """\
from cluster_utils import cluster_main


@cluster_main
def main(working_dir, id, **kwargs):
    return {"result": kwargs["fn_args"]["x"] * 10 + id}


if __name__ == "__main__":
    main()
"""

TRIAL_MAIN = """\
from clusterd import trial


@trial.main
def train(params):
    for step in range(2):
        trial.report(step, loss=10.0)
    return {"loss": params["lr"] * 2, "note": "not a number"}


train()
"""


def config(tmp_path: Path, name: str, script: str, resume: bool) -> Path:
    """A cluster_utils grid_search config, as in its examples/basic/grid_search.json."""
    data = {
        "optimization_procedure_name": name,
        "results_dir": str(tmp_path / "results"),
        "script_relative_path": script,
        "environment_setup": {},
        "cluster_requirements": {"request_cpus": 1, "request_gpus": 0, "memory_in_mb": 1000},
        "restarts": 1,
        "samples": None,
        "fixed_params": {"test_resume": resume, "fn_args": {"w": 2}},
        "hyperparam_list": [
            {"param": "fn_args.x", "values": [1.0, 2.0]},
            {"param": "fn_args.u", "values": [0.5]},
        ],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def test_cluster_utils_scripts_run_unchanged_through_a_converted_config(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = daemon.home / "clusterd.sock"
    (tmp_path / "main.py").write_text(CU_SCRIPT)
    (tmp_path / "main_deco.py").write_text(CU_DECORATED)
    (tmp_path / "native.py").write_text(TRIAL_MAIN)
    # trials run with the submitting process's environment: the shim on PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SHIM_DIR, _SOURCE_ROOT]))
    monkeypatch.chdir(tmp_path)

    plain = convert_path(config(tmp_path, "cu_plain", "main.py", resume=True))
    deco = convert_path(config(tmp_path, "cu_deco", "main_deco.py", resume=False))
    assert plain.kind == "cluster_utils"
    for conv in (plain, deco):
        client.submit(conv.spec_dict, socket_path=sock)
    native = {
        "name": "native",
        "command": [sys.executable, str(tmp_path / "native.py")],
        "params": {"lr": [0.5]},
    }
    client.submit(native, socket_path=sock)

    for name in ("cu_plain", "cu_deco", "native"):
        assert client.wait(name, 120, progress=False, socket_path=sock)["counts"] == {
            "completed": len(client.results(name, sock))
        }, daemon.log_tail()

    frame = client.results("cu_plain", sock).set_index("fn_args.x")
    assert list(frame["attempts"]) == [2, 2] and list(frame["resumes"]) == [1, 1]
    for x in (1.0, 2.0):
        expected = (x - 3.14) ** 2 + 0.5 * 2
        assert frame.loc[x, "result_last"] == pytest.approx(expected)  # finalize_job's
        assert frame.loc[x, "result_best"] == pytest.approx(expected)  # min: not the +1
        assert frame.loc[x, "noiseless_result_last"] == pytest.approx(expected)
        assert frame.loc[x, "time_elapsed_last"] >= 0
    curves = client.metrics("cu_plain", "result", socket_path=sock)
    assert list(curves[curves["index"] == 0]["step"]) == [0, 1]  # early result, then final

    out = Path(plain.spec_dict["output_dir"])
    with open(out / "0" / "param_choice.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["fn_args.x"] == "1.0" and row["working_dir"] == str(out / "0")
    assert json.loads((out / "0" / "settings.json").read_text())["fn_args"] == {
        "x": 1.0,
        "u": 0.5,
        "w": 2,
    }
    assert (out / "0" / "metrics.csv").read_text().startswith("result,noiseless_result,")

    deco_frame = client.results("cu_deco", sock).set_index("index")
    assert list(deco_frame["result_last"]) == [10.0, 21.0]  # x * 10 + id

    (native_row,) = client.results("native", sock).to_dict("records")
    assert native_row["loss_last"] == 1.0 and native_row["last_step"] == 2
