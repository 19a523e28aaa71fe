"""What code a sweep and each attempt ran: git commit, dirty diff, Python, pip freeze, snapshot.

Recorded so ``show``/``export`` can answer "which code produced this number?" months
later. ``collect`` reads the git state at submit and writes nothing: a refused submit
changes nothing on disk. Once the sweep is accepted, ``write_sweep_diff`` writes
``repro/git.diff`` (once: a later ``submit --extend`` never overwrites it) and
``diff_file`` writes ``.clusterd/diffs/<sha256>.diff`` per distinct dirty state, which
attempts point to. Every git call runs with an argv (never a shell) and a timeout; a
directory that is not a git repository is recorded as such, not an error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterd.daemon.outputs import MARKER_DIR, write_file_at
from clusterd.errors import SpecError

__all__ = [
    "GIT_CACHE",
    "GitState",
    "attempt_code",
    "collect",
    "diff_file",
    "freeze",
    "git_state",
    "repo_root",
    "snapshot_code",
    "write_sweep_diff",
]

TIMEOUT = 30
#: how long a launch batch reuses the workdir's git state (one set of git calls per batch)
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class GitState:
    """HEAD and the uncommitted diff against it ("" when clean)."""

    commit: str
    diff: str
    git_dir: str = ""

    @property
    def dirty(self) -> bool:
        return bool(self.diff.strip())

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.diff.encode("utf-8", "surrogateescape")).hexdigest()


def _git(workdir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", workdir, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def git_state(workdir: str) -> GitState | None:
    """The code state of ``workdir``; None outside a git repository (or without git)."""
    if shutil.which("git") is None:
        return None
    try:
        head = _git(workdir, "rev-parse", "HEAD", "--absolute-git-dir")
        if head.returncode != 0:
            return None
        commit, _, git_dir = head.stdout.strip().partition("\n")
        status = _git(workdir, "status", "--porcelain", "--untracked-files=no")
        diff = ""
        if status.stdout.strip():
            diff = _git(workdir, "diff", "HEAD", "--binary").stdout
        return GitState(commit=commit, diff=diff, git_dir=git_dir)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _stamp(state: GitState | None) -> tuple[int, ...]:
    """What moves when HEAD or the index does (a commit, checkout, reset, add): the
    mtimes of ``HEAD``, ``index`` and the HEAD reflog (a few stats, no git call)."""
    if state is None or not state.git_dir:
        return ()
    out = []
    for name in ("HEAD", "index", os.path.join("logs", "HEAD")):
        try:
            out.append(os.stat(os.path.join(state.git_dir, name)).st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


class GitCache:
    """``git_state`` per workdir, reused for ``CACHE_SECONDS`` while HEAD and the index
    stay put: a batch of launches costs one set of git calls, and a commit is seen at
    once (an unstaged edit within the few seconds is not). Thread-safe."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._states: dict[str, tuple[float, tuple[int, ...], GitState | None]] = {}
        self._written: set[str] = set()

    def get(self, workdir: str) -> GitState | None:
        now = time.monotonic()
        with self._lock:
            cached = self._states.get(workdir)
        fresh = cached is not None and now - cached[0] < self.seconds
        if cached is not None and fresh and _stamp(cached[2]) == cached[1]:
            return cached[2]
        state = git_state(workdir)
        with self._lock:
            self._states[workdir] = (now, _stamp(state), state)
        return state

    def forget(self, workdir: str) -> None:
        """Drop the cached state (a submit just read a fresher one)."""
        with self._lock:
            self._states.pop(workdir, None)

    def provenance(self, workdir: str, output_dir: str) -> dict[str, Any]:
        """The attempt columns for code run from ``workdir`` now (the diff file is
        written into the sweep's ``.clusterd/diffs`` once per distinct dirty state)."""
        state = self.get(workdir)
        if state is None:
            return {"code_commit": None, "code_dirty": None, "code_diff": None}
        path = None
        if state.dirty:
            path = os.path.join(output_dir, MARKER_DIR, "diffs", f"{state.sha}.diff")
            with self._lock:
                known = path in self._written
            if not known:
                path = diff_file(output_dir, state)
                if path is not None:
                    with self._lock:
                        self._written.add(path)
        return {"code_commit": state.commit, "code_dirty": state.dirty, "code_diff": path}


GIT_CACHE = GitCache()


def collect(workdir: str, python: str | None) -> tuple[dict[str, Any], GitState | None]:
    """Git state of the submit (nothing written: the sweep is not accepted yet)."""
    info: dict[str, Any] = {"workdir": workdir, "python": python}
    state = git_state(workdir)
    if state is None:
        info["git"] = None
    else:
        info.update(git=state.commit, git_dirty=state.dirty)
    return info, state


def write_sweep_diff(output_dir: str, state: GitState | None) -> str | None:
    """``repro/git.diff`` of the first submit, created once (never overwritten)."""
    if state is None or not state.dirty:
        return None
    repro_dir = Path(output_dir) / "repro"
    repro_dir.mkdir(mode=0o755, exist_ok=True)
    if not write_file_at(str(repro_dir), "git.diff", state.diff):
        return None
    return str(repro_dir / "git.diff")


def diff_file(output_dir: str, state: GitState) -> str | None:
    """``.clusterd/diffs/<sha256>.diff`` holding ``state``'s diff, written once."""
    diffs = Path(output_dir) / MARKER_DIR / "diffs"
    try:
        diffs.mkdir(mode=0o700, parents=False, exist_ok=True)
        write_file_at(str(diffs), f"{state.sha}.diff", state.diff)
    except OSError:
        return None  # the record says dirty; the diff is lost, the launch goes on
    return str(diffs / f"{state.sha}.diff")


def freeze(python: str | None, output_dir: str) -> dict[str, Any]:
    """``pip freeze`` of the submitting Python into repro/ (~0.5 s: run after replying)."""
    if not python or not os.path.exists(python):
        return {}
    repro_dir = Path(output_dir) / "repro"
    repro_dir.mkdir(mode=0o755, exist_ok=True)
    return {"pip_freeze": _pip_freeze(python, repro_dir)}


def _pip_freeze(python: str, repro_dir: Path) -> str | None:
    try:
        out = subprocess.run(
            [python, "-m", "pip", "freeze", "--all"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        write_file_at(str(repro_dir), "pip-freeze.txt", out.stdout, replace=True)
    except OSError:
        return None
    return str(repro_dir / "pip-freeze.txt")


def repo_root(workdir: str, source: str) -> str:
    """The top of the git repository holding ``workdir`` (``[code] snapshot`` needs one)."""
    try:
        top = _git(workdir, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpecError(source, "code.snapshot", f"git failed: {exc}") from None
    if top.returncode != 0:
        raise SpecError(
            source, "code.snapshot", f"expected {workdir} to be inside a git repository"
        )
    return top.stdout.strip()


def snapshot_code(workdir: str, root: str, dest: str, state: GitState | None, source: str) -> str:
    """Clone ``root`` at HEAD (plus ``state``'s dirty diff) into ``dest``, which must not
    exist: the snapshot only ever writes into a directory it creates for its sweep.

    Returns the directory trials run from: the same relative position as ``workdir``
    inside the clone, so relative paths in the command still work.
    """
    clone = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", root, dest],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if clone.returncode != 0:
        raise SpecError(source, "code.snapshot", f"git clone failed: {clone.stderr.strip()}")
    if state is not None and state.dirty:
        apply = subprocess.run(
            ["git", "-C", dest, "apply", "--whitespace=nowarn", "-"],
            input=state.diff,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if apply.returncode != 0:
            raise SpecError(source, "code.snapshot", f"git apply failed: {apply.stderr.strip()}")
    return os.path.join(dest, os.path.relpath(workdir, root))


def attempt_code(record: dict[str, Any], output_dir: str, source: str) -> dict[str, Any]:
    """The code columns of the attempts a launch batch creates: the snapshot's state for a
    ``[code] snapshot`` sweep, else the workdir's at launch (``GIT_CACHE``: a few seconds)."""
    if record.get("code_dir"):
        code = record.get("code")
        if isinstance(code, dict):
            return {k: code.get(k) for k in ("code_commit", "code_dirty", "code_diff")}
        return {
            "code_commit": record.get("git"),
            "code_dirty": record.get("git_dirty"),
            "code_diff": None,
        }
    workdir = record.get("workdir") or os.path.dirname(source)
    return GIT_CACHE.provenance(str(workdir), output_dir)
