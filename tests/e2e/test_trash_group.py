"""``sweeps --group``, ``rm --trash`` / ``trash`` / ``restore`` with the real daemon (issue
#19 item 5): what the trash hides comes back whole, and nothing is ever overwritten."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.conftest import Daemon, wait_for

TRAIN = """\
from clusterd import trial
p = trial.params()
for step in range(3):
    trial.report(step, loss=p["x"] + 1.0 / (step + 1))
"""


def sweep(tmp: Path, name: str, *, group: str | None = None, out: str | None = None) -> Path:
    (tmp / "train.py").write_text(TRAIN)
    text = f'name = "{name}"\ncommand = ["{sys.executable}", "train.py"]\n'
    text += f'group = "{group}"\n' if group else ""
    text += f'output_dir = "{out}"\n' if out else ""
    text += '[metric]\nname = "loss"\nmode = "min"\n[params]\nx = [1, 2]\n'
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def run(daemon: Daemon, tmp: Path, name: str, **kw: str) -> Path:
    daemon.ctl("submit", str(sweep(tmp, name, **kw)))
    daemon.wait_sweep_done(name)
    out = Path(kw.get("out") or tmp / "runs" / name)
    wait_for((out / "repro" / "pip-freeze.txt").exists, 60, "the submit's last write")
    return out


def refused(daemon: Daemon, *argv: str) -> str:
    proc = daemon.ctl(*argv, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def files(root: Path) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, f), root): os.path.getsize(os.path.join(d, f))
        for d, _, names in os.walk(root)
        for f in names
    }


def test_sweeps_group_lists_only_that_group(daemon: Daemon, tmp_path: Path) -> None:
    for name, group in (("a", "ablation"), ("b", "ablation"), ("c", "baseline")):
        daemon.ctl("submit", str(sweep(tmp_path, name, group=group)))
    daemon.ctl("submit", str(sweep(tmp_path, "d")))
    listed = daemon.ctl_json("sweeps", "--group", "ablation")
    assert [s["name"] for s in listed] == ["a", "b"]
    assert {s["group"] for s in daemon.ctl_json("sweeps")} == {"ablation", "baseline", None}
    assert "no sweep in group 'nope'" in daemon.ctl("sweeps", "--group", "nope").stdout
    table = daemon.ctl("sweeps", "--group", "baseline").stdout
    assert "c " in table and "a " not in table
    bad = sweep(tmp_path, "e")
    bad.write_text(bad.read_text().replace('name = "e"\n', 'name = "e"\ngroup = "two words"\n'))
    line = refused(daemon, "submit", str(bad))
    assert "group" in line and 'a label like "ablations/2024"' in line
    assert "e" not in daemon.sweeps()


def test_trash_hides_lists_and_restore_brings_back_trials_metrics_and_files(
    daemon: Daemon, tmp_path: Path
) -> None:
    out = run(daemon, tmp_path, "t", group="g")
    before = files(out)
    trials_before = daemon.trials("t")
    shown_before = daemon.ctl_json("show", "t/1")["metrics"]

    proc = daemon.ctl("rm", "t", "--trash")
    assert "clusterctl restore t" in proc.stdout
    assert not out.exists()
    assert daemon.sweeps() == {}
    assert daemon.ctl_json("sweeps", "--group", "g") == []
    line = refused(daemon, "trials", "t")
    assert "sweep 't' is in the trash" in line and "clusterctl restore t" in line
    assert "in the trash" in refused(daemon, "relaunch", "t", "--all")
    assert "in the trash" in refused(daemon, "export", "t")

    (entry,) = daemon.ctl_json("trash")
    assert (entry["name"], entry["trials"], entry["group"]) == ("t", 2, "g")
    assert entry["output_dir"] == str(out)
    assert files(Path(entry["path"])) == before  # everything that was moved, listed
    assert entry["bytes"] == sum(before.values())
    text = daemon.ctl("trash").stdout
    assert "t " in text and entry["path"] in text

    # the name stays taken while the sweep is in the trash, and the refusal says how to free it
    line = refused(daemon, "submit", str(sweep(tmp_path, "t")))
    assert "is in the trash" in line and "clusterctl restore t" in line

    assert "restored sweep t" in daemon.ctl("restore", "t").stdout
    assert files(out) == before
    assert daemon.trials("t") == trials_before
    assert daemon.ctl_json("show", "t/1")["metrics"] == shown_before
    assert [s["name"] for s in daemon.ctl_json("sweeps", "--group", "g")] == ["t"]
    assert daemon.ctl_json("trash") == []
    assert not Path(entry["path"]).exists()
    assert "not in the trash" in refused(daemon, "restore", "t")


def test_restore_refuses_a_taken_place_and_rm_deletes_for_good(
    daemon: Daemon, tmp_path: Path
) -> None:
    out = run(daemon, tmp_path, "old")
    daemon.ctl("rm", "old", "--trash")
    (entry,) = daemon.ctl_json("trash")
    moved = files(Path(entry["path"]))
    # another sweep takes the freed output dir: restoring must not mix the two
    run(daemon, tmp_path, "new", out=str(out))
    line = refused(daemon, "restore", "old")
    assert "belongs to sweep 'new'" in line
    assert files(Path(entry["path"])) == moved  # nothing moved
    assert [s["name"] for s in daemon.ctl_json("trash")] == ["old"]

    proc = daemon.ctl("rm", "old")
    assert "deleted sweep old for good" in proc.stdout
    assert not Path(entry["path"]).exists()
    assert daemon.ctl_json("trash") == []
    assert "no sweep named 'old'" in refused(daemon, "trials", "old")
    assert set(daemon.sweeps()) == {"new"}
    assert (out / "0").is_dir()  # the new sweep's files are untouched


def test_trash_empty_keeps_recent_ones_with_older_than(daemon: Daemon, tmp_path: Path) -> None:
    for name in ("e1", "e2"):
        run(daemon, tmp_path, name)
        daemon.ctl("rm", name, "--trash")
    assert json.loads(daemon.ctl("trash", "--empty", "--older-than", "30d", "--json").stdout) == []
    assert [e["name"] for e in daemon.ctl_json("trash")] == ["e1", "e2"]
    assert "--older-than: expected an age like 30d" in refused(
        daemon, "trash", "--empty", "--older-than", "soon"
    )
    assert "goes with --empty" in refused(daemon, "trash", "--older-than", "1d")
    paths = [e["path"] for e in daemon.ctl_json("trash")]
    assert "deleted 2 trashed sweep(s) for good" in daemon.ctl("trash", "--empty").stdout
    assert daemon.ctl_json("trash") == []
    assert not any(Path(p).exists() for p in paths)
    assert "the trash is empty" in daemon.ctl("trash").stdout


def test_rm_trash_of_a_running_sweep_is_refused_and_changes_nothing(
    daemon: Daemon, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    (tmp_path / "wait.py").write_text(
        "import os, time\nwhile not os.path.exists(os.environ['GATE']):\n    time.sleep(0.05)\n"
    )
    path = tmp_path / "live.toml"
    path.write_text(
        f'name = "live"\ncommand = ["{sys.executable}", "wait.py"]\n'
        f'[params]\nx = [1]\n[env]\nvars = {{ GATE = "{gate}" }}\n'
    )
    daemon.ctl("submit", str(path))
    wait_for(lambda: daemon.trials("live")[0]["state"] == "running", 60, "the trial to run")
    line = refused(daemon, "rm", "live", "--trash")
    assert "running trial(s)" in line and "clusterctl cancel live" in line
    assert daemon.ctl_json("trash") == [] and "live" in daemon.sweeps()
    gate.write_text("go")
    daemon.wait_sweep_done("live")
