"""Hypothesis over output-dir layouts: whatever a sweep's output_dir is (inside another
sweep's, shared with it, a symlink to it, ".", "~", a parent of CLUSTERD_HOME, a parent of
another sweep's dir), submitting it, running it and ``rm --trash``-ing it never changes a
file outside the sweep's own tree (every file and mtime compared before and after)."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Daemon, wait_for

PY = sys.executable
LAYOUTS = ("fresh", "shared", "nested", "symlink", "dot", "home", "clusterd_home", "parent")
MUST_REFUSE = {"shared", "nested", "symlink"}
Tree = dict[str, tuple[int, int]]


def tree(root: Path, skip: Path) -> Tree:
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        links = [d for d in dirnames if Path(dirpath, d).is_symlink()]
        for name in filenames + links:
            st_ = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cdl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def layout_daemon(base: Path) -> Iterator[Daemon]:
    """A daemon whose HOME (for "~") and CLUSTERD_HOME lie inside ``base``."""
    (base / "userhome").mkdir()
    d = Daemon(base / "h" / "home")
    d.env["HOME"] = str(base / "userhome")
    d.start()
    yield d
    d.stop()


def write(directory: Path, name: str, output_dir: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = ["{PY}", "-c", "pass"]\noutput_dir = "{output_dir}"\n'
        "[params]\nx = [1, 2]\n"
    )
    return path


COUNTER = itertools.count()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layout=st.sampled_from(LAYOUTS), trash=st.booleans())
def test_no_file_outside_the_sweeps_own_tree_changes(
    layout_daemon: Daemon, base: Path, layout: str, trash: bool
) -> None:
    d = layout_daemon
    n = next(COUNTER)
    proj = base / f"proj{n}"
    proj.mkdir()
    (proj / ".git").mkdir()  # a project root
    (proj / "notes.txt").write_text("mine\n")
    a = write(proj, f"a{n}", "runs/a")
    d.ctl("submit", str(a))
    d.wait_sweep_done(f"a{n}")
    freeze = proj / "runs" / "a" / "repro" / "pip-freeze.txt"
    wait_for(freeze.exists, 60, "pip freeze of a (written after the submit reply)")
    (proj / "link").symlink_to(proj / "runs" / "a")
    output_dir = {
        "fresh": "runs/b",
        "shared": "runs/a",
        "nested": "runs/a/sub",
        "symlink": "link",
        "dot": ".",
        "home": "~",
        "clusterd_home": str(base / "h"),
        "parent": "runs",
    }[layout]
    b = write(proj, f"b{n}", output_dir)
    before = tree(base, skip=d.home)

    proc = d.ctl("submit", str(b), check=False)
    accepted = proc.returncode == 0
    if layout in MUST_REFUSE:
        assert not accepted
    if not accepted:
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
        assert tree(base, skip=d.home) == before
        return
    own = os.path.realpath(os.path.expanduser(proj / output_dir if output_dir != "~" else "~"))
    if layout == "home":
        own = str(base / "userhome")
    d.wait_sweep_done(f"b{n}")
    wait_for(lambda: Path(own, "repro", "pip-freeze.txt").exists(), 60, "pip freeze of b")
    if trash:
        d.ctl("rm", f"b{n}", "--trash", check=False)  # refused for ".", CLUSTERD_HOME
    d.ctl("rm", f"b{n}", check=False)
    after = tree(base, skip=d.home)
    changed = {p for p in before if after.get(p) != before[p]}
    assert not changed, changed
    added = {p for p in after if p not in before}
    assert all(p.startswith(own + os.sep) for p in added), (own, sorted(added)[:5])
    assert all(d.trials(f"a{n}")[i]["state"] == "completed" for i in (0, 1))
