"""``count``, ``submit --dry-run`` and ``submit`` agree, on a table of sweep files that
includes ones ``submit`` refuses (the issue: count said 20, the dry run "0 trials,
nothing submitted", both exited 0, then submit refused). All three go through the
daemon's one validation path; without a daemon, count and the dry run say what they
could not check."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon

PY = sys.executable
HEAD = f'command = ["{PY}", "-c", "pass"]\n'
METRIC = '[metric]\nname = "loss"\n'
CONDITIONAL = "[params.optimizer.sgd]\nlr = [0.1, 0.01]\n[params.optimizer.adam]\nlr = [0.001]\n"

# (id, body after name/command/output_dir, trials submit creates or None if it refuses)
TABLE: list[tuple[str, str, int | None]] = [
    ("grid", "[params]\nlr = [0.1, 0.01, 0.001]\ndepth = [1, 2]\n", 6),
    ("conditional-grid", CONDITIONAL, 3),
    (
        "tpe-conditional",
        METRIC + CONDITIONAL + '[search]\nmethod = "tpe"\nsamples = 20\n',
        20,
    ),
    ("cem-conditional", METRIC + CONDITIONAL + '[search]\nmethod = "cem"\nsamples = 20\n', None),
    ("unknown-method", METRIC + '[search]\nmethod = "annealing"\nsamples = 5\n', None),
    ("unknown-rule", METRIC + '[early_stopping]\nrule = "hyperband"\n', None),
    ("driver-option", "[drivers.local]\nnot_an_option = 1\n", None),
    ("over-limit", "[params]\na = [1, 2, 3]\nb = [1, 2, 3]\n[limits]\nmax_trials = 8\n", None),
    ("empty-axis", "[params]\nlr = []\n", None),
]


@pytest.fixture(scope="module")
def shared() -> Any:
    """One daemon for the module's tests (each uses its own sweep names)."""
    root = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))  # a socket path fits
    d = Daemon(root / "home")
    d.start()
    yield d
    d.stop()
    shutil.rmtree(root, ignore_errors=True)


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n{HEAD}output_dir = "{tmp_path / "out" / name}"\n{body}')
    return path


def three(daemon: Daemon, path: Path) -> tuple[Any, Any, Any]:
    """count and the dry run (side by side: neither writes), then the submit."""
    with ThreadPoolExecutor(2) as pool:
        count = pool.submit(daemon.ctl, "count", str(path), check=False)
        dry = pool.submit(daemon.ctl, "submit", str(path), "--dry-run", check=False)
        done = count.result(), dry.result()
    return (*done, daemon.ctl("submit", str(path), check=False))


def test_count_dry_run_and_submit_agree_on_every_file(shared: Daemon, tmp_path: Path) -> None:
    daemon = shared
    for name, body, expected in TABLE:
        path = write(tmp_path, name, body)
        count, dry, real = three(daemon, path)
        codes = (count.returncode, dry.returncode, real.returncode)
        if expected is None:
            assert codes == (1, 1, 1), (name, count, dry, real)
            # the same refusal, word for word, from all three
            assert count.stderr == dry.stderr == real.stderr, name
            assert daemon.sweeps().get(name) is None
            assert not (tmp_path / "out" / name).exists()  # refused: nothing on disk
            continue
        assert codes == (0, 0, 0), (name, count, dry, real)
        assert count.stdout.strip().splitlines()[-1] == str(expected), name
        assert f"{name}: {expected} trial(s)," in dry.stdout, (name, dry.stdout)
        assert f"{name}: {expected} trial(s) submitted" in real.stdout, name
        if name == "tpe-conditional":  # not "0 trials": they are proposed as results arrive
            assert "method tpe proposes them as results arrive" in dry.stdout
            assert not re.search(r"\b0 trial", dry.stdout + real.stdout)
        stored = daemon.sweeps()[name]["trials"]
        # an adaptive method's trials are proposed as slots free up
        assert stored == expected if name != "tpe-conditional" else 0 <= stored <= expected
    daemon.cancel_everything()


def test_a_taken_name_or_output_dir_is_refused_by_all_three(shared: Daemon, tmp_path: Path) -> None:
    daemon = shared
    path = write(tmp_path, "taken", "[params]\nlr = [1, 2]\n")
    assert daemon.ctl("submit", str(path)).returncode == 0
    count, dry, real = three(daemon, path)
    assert (count.returncode, dry.returncode, real.returncode) == (1, 1, 1)
    assert "a sweep named 'taken' exists" in count.stderr
    assert count.stderr == dry.stderr == real.stderr
    # another name, the same output dir: the dir is the first sweep's
    other = tmp_path / "other.toml"
    other.write_text(path.read_text().replace('name = "taken"', 'name = "other"'))
    count, dry, real = three(daemon, other)
    assert (count.returncode, dry.returncode, real.returncode) == (1, 1, 1)
    assert count.stderr == dry.stderr == real.stderr
    # --extend: the dry run checks the extend path
    grown = path.read_text().replace("lr = [1, 2]", "lr = [1, 2, 3]")
    path.write_text(grown)
    dry = daemon.ctl("submit", str(path), "--dry-run", "--extend")
    assert "taken: 3 trial(s)" in dry.stdout
    daemon.cancel_everything()


@pytest.mark.parametrize("verb", ["count", "dry-run"])
def test_without_a_daemon_only_the_file_is_checked_and_that_is_said(
    stopped_daemon: Daemon, tmp_path: Path, verb: str
) -> None:
    path = write(
        tmp_path, "offline", METRIC + CONDITIONAL + '[search]\nmethod = "tpe"\nsamples = 20\n'
    )
    args = ("count", str(path)) if verb == "count" else ("submit", str(path), "--dry-run")
    out = stopped_daemon.ctl(*args, check=False)
    assert out.returncode == 0
    assert re.search(r"daemon is not running: checked the sweep file only", out.stderr)
    assert "20" in out.stdout
    broken = write(tmp_path, "broken", "[params]\nlr = []\n")
    bad = stopped_daemon.ctl("count", str(broken), check=False)
    assert bad.returncode == 1 and "params.lr" in bad.stderr
