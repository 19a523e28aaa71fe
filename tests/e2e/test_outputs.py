"""A sweep's files are its own (principle 7, issue #12 items 1-4 and 7), with the real daemon.

Each test is a thing a user did that went wrong before: a re-submitted sweep resuming
from the removed sweep's checkpoints, two sweeps sharing a directory, a snapshot that
deleted the project's own ``code/``, ``rm --trash`` moving a whole project, provenance
recorded once per sweep. Trees are compared file by file (size and mtime) before and
after, so "changes nothing" means exactly that.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon, wait_for

PY = sys.executable

#: resumes from its checkpoint if it finds one: a trial that reads another sweep's
#: checkpoint starts at step 3 instead of 0
TRAIN = """\
import os
from clusterd import trial
ckpt = trial.last_checkpoint()
start = ckpt.step + 1 if ckpt else 0
for step in range(start, start + 3):
    trial.report(step, loss=float(step))
    path = os.path.join(trial.checkpoint_dir(), f"step-{step}")
    open(path, "w").write("x")
    trial.checkpoint(path, step)
"""

Tree = dict[str, tuple[int, int]]


def tree(root: Path, skip: Path | None = None) -> Tree:
    """Every file and symlink under ``root`` (not following links): size and mtime."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def sweep_file(
    directory: Path,
    name: str,
    output_dir: str | None = None,
    extra: str = "",
    command: str = f'["{PY}", "train.py"]',
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "train.py").exists():
        (directory / "train.py").write_text(TRAIN)
    out = f'output_dir = "{output_dir}"\n' if output_dir is not None else ""
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = {command}\n{out}'
        f'[metric]\nname = "loss"\n[params]\nx = [1, 2]\n{extra}'
    )
    return path


def git(repo: Path, *args: str) -> str:
    argv = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    return path


def metric_rows(daemon: Daemon, sweep: str, index: int) -> int:
    with sqlite3.connect(f"file:{daemon.home / 'clusterd.db'}?mode=ro", uri=True) as db:
        return int(
            db.execute(
                "select count(*) from metrics m join trials t on m.trial_id = t.id "
                'join sweeps s on t.sweep_id = s.id where s.name = ? and t."index" = ?',
                (sweep, index),
            ).fetchone()[0]
        )


def settled(out: Path) -> None:
    """Wait for the submit's last write, ``pip freeze`` (done after the reply)."""
    wait_for((out / "repro" / "pip-freeze.txt").exists, 60, f"pip freeze in {out}")


def refused(daemon: Daemon, *argv: str) -> str:
    """Run a clusterctl command that must fail with one clear line; return that line."""
    proc = daemon.ctl(*argv, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# -- item 1: a re-submitted sweep never reads the removed sweep's files ---------------


def test_resubmit_after_rm_is_refused_and_reuse_output_moves_the_old_files_aside(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = sweep_file(tmp_path, "q")
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("q")
    daemon.ctl("rm", "q")
    out = tmp_path / "runs" / "q"
    settled(out)
    before = tree(tmp_path)

    line = refused(daemon, "submit", str(path))
    assert f"output_dir {out} holds the files of the removed sweep 'q'" in line
    assert "--reuse-output" in line
    assert daemon.ctl_json("sweeps") == []
    assert tree(tmp_path) == before  # nothing persisted, nothing on disk changed

    reply = daemon.ctl("submit", str(path), "--reuse-output").stdout
    (previous,) = out.glob("previous-*")
    assert f"moved to {previous}" in reply
    trials = daemon.wait_sweep_done("q")
    assert [t["state"] for t in trials] == ["completed", "completed"]
    for t in trials:  # started afresh: steps 0..2 of its own, one attempt
        assert t["attempts"] == 1 and t["last_step"] == 2
        assert metric_rows(daemon, "q", t["index"]) == 3
    assert sorted(p.name for p in (out / "0" / "checkpoints").iterdir()) == [
        "LATEST.json",
        "step-0",
        "step-1",
        "step-2",
    ]
    # the old files are all there, moved whole into previous-<date>/
    prefix = str(out) + os.sep
    assert tree(previous) == {
        str(previous) + os.sep + p[len(prefix) :]: v
        for p, v in before.items()
        if p.startswith(prefix)
    }


# -- item 2: two sweeps never share an output dir --------------------------------------


def test_a_second_sweep_into_another_sweeps_output_dir_is_refused(
    daemon: Daemon, tmp_path: Path
) -> None:
    a = sweep_file(tmp_path, "a", "shared")
    b = sweep_file(tmp_path, "b", "shared")
    daemon.ctl("submit", str(a))
    daemon.wait_sweep_done("a")
    settled(tmp_path / "shared")
    before = tree(tmp_path)
    line = refused(daemon, "submit", str(b))
    assert line == (
        f"clusterctl: output_dir {tmp_path / 'shared'} belongs to sweep 'a'; choose another "
        "output_dir, or `clusterctl rm a --trash` that sweep first"
    )
    # --reuse-output never takes a live sweep's files
    assert "belongs to sweep 'a'" in refused(daemon, "submit", str(b), "--reuse-output")
    # nor a directory nested in it
    nested = sweep_file(tmp_path, "c", "shared/sub")
    assert "lies inside" in refused(daemon, "submit", str(nested))
    assert [s["name"] for s in daemon.ctl_json("sweeps")] == ["a"]
    assert tree(tmp_path) == {**before, **{str(nested): tree(tmp_path)[str(nested)]}}
    best = daemon.ctl_json("best", "a")
    assert [t["best"] for t in best["trials"]] == [0.0, 0.0]


# -- item 3: the snapshot writes only into a directory it creates -----------------------


def test_snapshot_with_output_dir_dot_keeps_the_projects_own_code_folder(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "proj")
    (repo / "code").mkdir()
    (repo / "code" / "model.py").write_text("tracked = 1\n")
    path = sweep_file(repo, "snap", ".", '[code]\nsnapshot = "git"\n')
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    (repo / "code" / "model.py").write_text("tracked = 2  # uncommitted\n")
    (repo / "code" / "notes.txt").write_text("untracked\n")
    before = tree(repo, skip=repo / ".git")
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("snap")
    after = tree(repo, skip=repo / ".git")
    assert {p: after[p] for p in before} == before  # every file of the project unchanged
    (clone,) = (repo / ".clusterd").glob("code-*")
    assert (clone / "code" / "model.py").read_text() == "tracked = 2  # uncommitted\n"
    assert not (clone / "code" / "notes.txt").exists()  # a clone of HEAD plus the diff


def test_a_refused_submit_does_not_touch_the_running_sweeps_snapshot(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "proj")
    sleep = f'["{PY}", "-c", "import time; time.sleep(60)"]'
    path = sweep_file(repo, "run", extra='[code]\nsnapshot = "git"\n', command=sleep)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    daemon.ctl("submit", str(path))
    wait_for(
        lambda: any(t["state"] == "running" for t in daemon.trials("run")), 30, "a running trial"
    )
    before = tree(repo / "runs" / "run" / ".clusterd")
    (repo / "train.py").write_text("print('new code')\n")
    git(repo, "commit", "-qam", "new")
    line = refused(daemon, "submit", str(path))
    assert "a sweep named 'run' exists" in line
    other = sweep_file(repo, "other", "runs/run", '[code]\nsnapshot = "git"\n')
    assert "belongs to sweep 'run'" in refused(daemon, "submit", str(other))
    assert tree(repo / "runs" / "run" / ".clusterd") == before
    daemon.ctl("cancel", "run")


# -- item 4: rm --trash moves only what clusterd created for the sweep ------------------


def test_rm_trash_refuses_a_project_root_and_moves_nothing(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    (repo / "README").write_text("mine\n")
    path = sweep_file(repo, "dot", ".")
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("dot")
    settled(repo)
    before = tree(tmp_path)
    line = refused(daemon, "rm", "dot", "--trash")
    assert f"output_dir {repo} holds the sweep file {path}" in line
    assert "`clusterctl rm dot` without --trash" in line
    assert tree(tmp_path) == before
    assert [s["name"] for s in daemon.ctl_json("sweeps")] == ["dot"]  # the row is kept
    assert not (daemon.home / "trash").exists() or not list((daemon.home / "trash").iterdir())


def test_rm_trash_refuses_a_dir_holding_clusterd_home_and_keeps_the_sweep(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = sweep_file(tmp_path, "h", str(daemon.home.parent))
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("h")
    line = refused(daemon, "rm", "h", "--trash")
    assert f"holds CLUSTERD_HOME ({daemon.home})" in line
    assert [s["name"] for s in daemon.ctl_json("sweeps")] == ["h"]
    assert (daemon.home / "clusterd.db").exists()


def test_rm_trash_moves_the_sweeps_own_entries_and_leaves_the_rest(
    daemon: Daemon, tmp_path: Path
) -> None:
    path = sweep_file(tmp_path, "t")
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("t")
    out = tmp_path / "runs" / "t"
    settled(out)
    (out / "my-plot.png").write_text("not clusterd's")
    proc = daemon.ctl("rm", "t", "--trash")
    assert "my-plot.png" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["my-plot.png"]
    (trashed,) = (daemon.home / "trash").iterdir()
    assert sorted(p.name for p in trashed.iterdir()) == [".clusterd", "0", "1", "repro"]
    assert daemon.ctl_json("sweeps") == []


# -- item 5 (the output-dir half): nobody else can write where the sweep writes ---------


def test_an_output_dir_others_can_write_is_refused_unless_sticky(
    daemon: Daemon, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path = sweep_file(tmp_path, "p", "shared/p")
    line = refused(daemon, "submit", str(path))
    assert f"{shared} can be written by other users (mode 0777" in line
    assert "chmod +t" in line
    assert not (shared / "p").exists() and daemon.ctl_json("sweeps") == []
    shared.chmod(0o1777)  # sticky, like /tmp: what we create in it stays ours
    daemon.ctl("submit", str(path))
    assert stat.S_IMODE((shared / "p").stat().st_mode) & 0o022 == 0
    daemon.wait_sweep_done("p")


def test_a_shared_directory_further_up_does_not_matter(daemon: Daemon, tmp_path: Path) -> None:
    """A group project space others can write (``/project/<group>``, not sticky) above a
    directory of one's own: only the directory clusterd creates under is judged."""
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(0o777)
    mine = project / "alice"
    mine.mkdir(mode=0o755)
    daemon.ctl("submit", str(sweep_file(mine, "g", "runs/g")))
    assert [t["state"] for t in daemon.wait_sweep_done("g")] == ["completed"] * 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory another user's")
def test_an_output_dir_owned_by_another_user_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    line = refused(daemon, "submit", str(sweep_file(tmp_path, "o", "theirs")))
    assert f"{theirs} belongs to another user (uid 65534)" in line


# -- item 7: provenance per attempt ----------------------------------------------------


def test_extend_after_a_new_commit_records_the_new_commit_for_the_new_attempts(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "proj")
    path = sweep_file(repo, "prov")
    path.write_text(path.read_text().replace("x = [1, 2]", "x = [1]"))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text(TRAIN + "# edit one\n")  # dirty at the first submit
    daemon.ctl("submit", str(path))
    daemon.wait_sweep_done("prov")
    diff_one = (repo / "runs" / "prov" / "repro" / "git.diff").read_text()
    assert "# edit one" in diff_one

    git(repo, "commit", "-qam", "second")
    second = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text(TRAIN + "# edit two\n")
    path.write_text(path.read_text().replace("x = [1]", "x = [1, 2]"))
    daemon.ctl("submit", str(path), "--extend")
    daemon.wait_sweep_done("prov")

    old = daemon.ctl_json("show", "prov/0")["attempt_list"][0]["code"]
    new = daemon.ctl_json("show", "prov/1")["attempt_list"][0]["code"]
    assert old["git"] == first and old["git_dirty"] is True
    assert new["git"] == second and new["git_dirty"] is True
    assert "# edit one" in Path(old["git_diff"]).read_text()
    assert "# edit two" in Path(new["git_diff"]).read_text()
    assert Path(new["git_diff"]).parent == repo / "runs" / "prov" / ".clusterd" / "diffs"
    assert (repo / "runs" / "prov" / "repro" / "git.diff").read_text() == diff_one
    assert f"git {second[:12]}" in daemon.ctl("show", "prov/1").stdout
    exported = json.loads(daemon.ctl("export", "prov", "--format", "json").stdout)
    rows = {r["index"]: r for r in exported}
    assert (rows[0]["git"], rows[1]["git"]) == (first, second)
    assert rows[0]["git_dirty"] is True


# -- item 6 of the brief: submit is off the event loop ----------------------------------


def test_the_daemon_answers_ping_while_a_huge_submit_is_parsed(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterd.client import Client

    axis = ", ".join(str(i) for i in range(100))
    path = tmp_path / "big.toml"  # 100 x 100 x 30 = 300,000 trials
    path.write_text(
        f'name = "big"\ncommand = ["{PY}", "-c", "pass"]\nmax_concurrent = 1\n'
        "[limits]\nmax_trials = 300000\n"
        f"[params]\na = [{axis}]\nb = [{axis}]\nc = [{', '.join(map(str, range(30)))}]\n"
    )
    monkeypatch.setenv("CLUSTERD_HOME", str(daemon.home))
    done = threading.Event()
    result: list[object] = []

    def submit() -> None:
        try:
            with Client(timeout=600) as client:
                result.append(client.call("submit", path=str(path)))
        finally:
            done.set()

    thread = threading.Thread(target=submit)
    thread.start()
    slowest = 0.0
    pings = 0
    while not done.is_set():
        t0 = time.monotonic()
        with Client(timeout=30) as client:
            client.call("ping")
        slowest = max(slowest, time.monotonic() - t0)
        pings += 1
        time.sleep(0.05)
    thread.join()
    assert result and result[0]["trials"] == 300_000  # type: ignore[index]
    # parsing and expanding alone take ~1.5 s here: on the event loop, a ping waited that long
    assert pings >= 3 and slowest < 0.5, (pings, slowest)
    daemon.ctl("cancel", "big")
