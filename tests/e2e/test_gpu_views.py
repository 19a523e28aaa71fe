"""GPU figures through a real daemon: a trial's ``gpu`` events lines (written here by the
trial itself, in the runner's format, so that no GPU or NVML is needed: the sampler's own
end-to-end test on the NVML stand-in is test_gpu_e2e.py) are ingested, stored and shown by
``clusterctl show``, ``gpus`` and ``export`` (CSV), with the same numbers in ``--json``.
"""

from __future__ import annotations

import csv
import io
import sys
import textwrap
from pathlib import Path

from tests.conftest import Daemon

#: writes an hour of samples at 10 s (361 lines) on two GPUs: GPU 0 at 90 % and 300 W,
#: GPU 1 idle at 1 % and 50 W; trial 1 (util = 0) is idle on both. A line as the runner
#: writes it (docs/gpu.md, "The events line"); values as recorded from an A100.
TRIAL = """
    import json, os, sys
    from clusterd import trial

    util = float(sys.argv[1].split("=")[1])
    t0 = 1_700_000_040.0
    with open(os.environ["CLUSTERD_EVENTS"], "a") as events:
        for k in range(361):
            gpus = [
                {"index": 0, "uuid": "GPU-1b3c6b4e-0000", "util": util * 90, "mem_used": 30000 + k,
                 "mem_total": 81920, "power_w": 50 + util * 250, "temp_c": 60,
                 "own_procs": 1, "own_mem": 29000},
                {"index": 1, "uuid": "GPU-1b3c6b4e-0001", "util": 1, "mem_used": 500,
                 "mem_total": 81920, "power_w": 50.0, "temp_c": 40, "own_procs": 0, "own_mem": 0},
            ]
            events.write(json.dumps({"type": "gpu", "t": t0 + 10 * k, "gpus": gpus}) + "\\n")
    trial.report(0, loss=1.0 - util)
"""

SWEEP = """
    name = "gv"
    command = ["{py}", "train.py"]
    max_concurrent = 2

    [metric]
    name = "loss"
    mode = "min"

    [params]
    util = [1.0, 0.0]
"""


def test_show_gpus_and_export_give_the_trials_gpu_use(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(textwrap.dedent(TRIAL))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(textwrap.dedent(SWEEP).replace("{py}", sys.executable))
    daemon.ctl("submit", str(sweep))
    trials = daemon.wait_sweep_done("gv")
    assert [t["state"] for t in trials] == ["completed", "completed"], daemon.log_tail()
    assert [t["gpu_util"] for t in trials] == [45.5, 0.5]  # mean over both GPUs

    shown = daemon.ctl_json("show", "gv/0")
    g0, g1 = shown["gpu_list"]
    assert (g0["gpu"], g0["samples"], g0["util_mean"], g0["mem_peak_mib"]) == (0, 361, 90.0, 30360)
    assert g0["energy_wh"] == 300.0 and g1["energy_wh"] == 50.0  # W x 1 h
    assert g1["idle_seconds"] == 3600 and g0["own_mem_peak_mib"] == 29000
    text = daemon.ctl("show", "gv/0").stdout
    assert "gpus    util mean 45.5 % (peak 90 %), memory peak 30360 MiB (own 29000)" in text
    assert "energy 350 Wh, idle 1h00m (under 5 %)" in text

    out = daemon.ctl("gpus", "gv").stdout.splitlines()
    assert out[0].startswith("ranked by wasted GPU-hours = GPU-hours x (1 - mean util)")
    ranked = [line.split()[0] for line in out if line.startswith("gv/")]
    assert ranked == ["gv/1", "gv/0"]  # the idle trial first
    ranked_json = daemon.ctl_json("gpus", "gv")
    assert [r["trial"] for r in ranked_json] == ["gv/1", "gv/0"]
    assert ranked_json[0]["wasted_gpu_hours"] == 1.99  # 2 GPU-hours at a mean of 0.5 %

    csv_out = tmp_path / "results.csv"
    daemon.ctl("export", "gv", "-o", str(csv_out))
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    assert [(r["gpu_util_mean"], r["gpu_mem_peak_mib"], r["gpu_energy_wh"]) for r in rows] == [
        ("45.5", "30360", "350.0"),
        ("0.5", "30360", "100.0"),
    ]
