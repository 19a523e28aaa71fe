"""``clusterd.client``: submit a dict, wait, sweeps/results/metrics against a real daemon;
then the same read calls with the daemon stopped give the same frames, from a database
whose bytes and mtime do not change (issue #19 item 1)."""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas
import pytest

from clusterd import client
from clusterd.daemon.readonly import ReadOnlyWarning
from clusterd.errors import Conflict, DaemonUnreachable, InvalidRequest, NotFound
from tests.conftest import Daemon

TRAIN = """\
from clusterd import trial
p = trial.params()
for step in range(3):
    trial.report(step, loss=p["lr"] * (3 - step) + p["model.width"], acc=0.1 * step)
"""

#: blocks until the file named by its parameter exists (a sweep that is still running)
BLOCK = """\
import os, time
from clusterd import trial
while not os.path.exists(trial.params()["gate"]):
    time.sleep(0.05)
trial.report(0, loss=1.0)
"""


def spec(tmp_path: Path, name: str, script: str, params: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / f"{name}.py").write_text(script)
    return {
        "name": name,
        "command": [sys.executable, str(tmp_path / f"{name}.py")],
        "group": "api-tests",
        "max_concurrent": 4,
        "output_dir": str(tmp_path / "runs" / name),
        "metric": {"name": "loss", "mode": "min"},
        "params": params,
    }


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns


def test_submit_wait_read_then_the_same_frames_read_only(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = daemon.home / "clusterd.sock"
    sweep = spec(tmp_path, "api", TRAIN, {"lr": [0.1, 0.01], "model.width": [1, 2]})
    monkeypatch.chdir(tmp_path)  # a dict is submitted as if it were ./api.toml
    name = client.submit(sweep, socket_path=sock)
    assert name == "api"
    entry = client.wait(name, timeout=120, progress=False, socket_path=sock)
    assert entry["counts"] == {"completed": 4}

    listed = client.sweeps(socket_path=sock)
    assert [(s["name"], s["group"]) for s in listed] == [("api", "api-tests")]
    assert client.sweeps(group="other", socket_path=sock) == []

    frame = client.results(name, sock)
    assert len(frame) == 4
    for column in ("trial", "state", "attempts", "loss_last", "loss_best", "acc_best"):
        assert column in frame.columns
    for column in ("stopped_at_step", "runtime_s", "lr", "model.width"):
        assert column in frame.columns
    assert set(frame["state"]) == {"completed"}
    best = frame.sort_values("loss_best").iloc[0]
    assert (best["lr"], best["model.width"]) == (0.01, 1)
    assert best["loss_best"] == pytest.approx(0.01 + 1)  # last step: lr * 1 + width
    assert frame.attrs["metrics"] == {"loss": "min", "acc": "max"}

    curves = client.metrics(name, socket_path=sock)
    assert list(curves.columns) == ["trial", "index", "attempt", "step", "name", "value"]
    assert len(curves) == 4 * 3 * 2
    one = curves[(curves["trial"] == "api/0") & (curves["name"] == "acc")]
    assert list(one["step"]) == [0, 1, 2]
    assert len(client.metrics(name, "acc", socket_path=sock)) == 12

    daemon.stop()
    db = daemon.home / "clusterd.db"
    before, listing = fingerprint(db), sorted(os.listdir(daemon.home))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        offline_frame = client.results(name, sock)
        offline_curves = client.metrics(name, socket_path=sock)
        offline_list = client.sweeps(socket_path=sock)
    assert {type(w.message) for w in caught} == {ReadOnlyWarning}
    assert "read-only" in str(caught[0].message) and str(db) in str(caught[0].message)
    pandas.testing.assert_frame_equal(offline_frame, frame)
    assert offline_frame.attrs == frame.attrs
    pandas.testing.assert_frame_equal(offline_curves, curves)
    assert offline_list == listed
    assert fingerprint(db) == before
    assert sorted(os.listdir(daemon.home)) == listing  # no -wal/-shm left behind either

    with pytest.raises(DaemonUnreachable):  # writing needs the daemon
        client.submit(sweep, socket_path=sock)
    with pytest.warns(ReadOnlyWarning), pytest.raises(NotFound, match="no sweep named 'nope'"):
        client.results("nope", sock)
    assert fingerprint(db) == before


def test_wait_times_out_saying_how_far_it_got_and_shows_progress(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = daemon.home / "clusterd.sock"
    gate = tmp_path / "gate"
    name = client.submit(spec(tmp_path, "blocked", BLOCK, {"gate": str(gate)}), socket_path=sock)
    with pytest.raises(TimeoutError, match=r"'blocked' has not ended after 0.5 s \(0 of 1"):
        client.wait(name, timeout=0.5, progress=False, socket_path=sock)
    gate.write_text("go")
    assert client.wait(name, timeout=60, progress=True, socket_path=sock)["counts"] == {
        "completed": 1
    }
    bar = capsys.readouterr().err  # tqdm's bar, on stderr outside a notebook
    assert "blocked" in bar and "1/1" in bar
    with pytest.raises(NotFound, match="no sweep named 'other'"):
        client.wait("other", socket_path=sock)


def test_a_sweep_file_path_is_submitted_like_clusterctl_does(
    daemon: Daemon, tmp_path: Path
) -> None:
    sock = daemon.home / "clusterd.sock"
    (tmp_path / "t.py").write_text(TRAIN)
    path = tmp_path / "s.toml"
    path.write_text(
        f'name = "file"\ncommand = ["{sys.executable}", "t.py"]\n'
        '[params]\nlr = [0.5]\n"model.width" = [3]\n'
    )
    assert client.submit(path, socket_path=sock) == "file"
    client.wait("file", timeout=120, progress=False, socket_path=sock)
    assert (tmp_path / "runs" / "file" / "0").is_dir()  # relative to the file, as the CLI
    with pytest.raises(Conflict, match="exists"):
        client.submit(path, socket_path=sock)
    assert client.submit(path, extend=True, socket_path=sock) == "file"


def test_a_dict_without_a_name_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match='needs a "name"'):
        client.submit({"command": "true"}, socket_path=tmp_path / "none.sock")
    with pytest.raises(InvalidRequest, match=r"params\.x = None cannot be written as TOML"):
        client.toml_text({"name": "n", "params": {"x": None}})
