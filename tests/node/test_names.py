"""File names: clusterd.trial spells them out (to stay import-light); they must match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clusterd.node import names
from clusterd.node.layout import attempt_dir, events_path


def test_trial_uses_the_contract_names(tmp_path: Path) -> None:
    adir = attempt_dir(str(tmp_path), 7, 1)
    code = (
        "from clusterd import trial; "
        "print(trial._STOP_PATH); print(trial._MARKER_PATH); print(trial.checkpoint_dir())"
    )
    env = {"CLUSTERD_EVENTS": events_path(adir), "CLUSTERD_TRIAL_DIR": str(tmp_path / "7")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    stop, marker, checkpoints = done.stdout.split()
    assert Path(stop) == Path(adir) / names.STOP
    assert Path(marker) == Path(adir) / names.CHECKPOINT_REQUESTED
    assert Path(checkpoints) == tmp_path / "7" / names.CHECKPOINTS


def test_trial_source_spells_every_name_it_uses_as_the_contract_does() -> None:
    source = Path(sys.modules["clusterd.node.names"].__file__ or "").parents[1] / "trial.py"
    text = source.read_text()
    for name in (names.STOP, names.CHECKPOINT_REQUESTED, names.RESUME_HANDLER, names.LATEST):
        assert f'"{name}"' in text


def test_run_files_are_what_a_started_attempt_leaves() -> None:
    assert {
        names.RUNNER_JSON,
        names.RUNNER_LOG,
        names.EVENTS,
        names.STATUS,
        names.STDOUT,
        names.STDERR,
    } == names.RUN_FILES
    assert not names.RUN_FILES & names.UNSTARTED_FILES
