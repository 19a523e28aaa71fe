"""What code a sweep ran: git commit, dirty diff, Python, pip freeze, code snapshot.

Recorded at submit so ``show``/``export`` can answer "which code produced this
number?" months later. Every git call runs with an argv (never a shell) and a
timeout; a directory that is not a git repository is recorded as such, not an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from clusterd.errors import SpecError

__all__ = ["collect", "freeze", "snapshot_code"]

TIMEOUT = 30


def _git(workdir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", workdir, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def collect(workdir: str, output_dir: str, python: str | None) -> dict[str, Any]:
    """Record git state (the diff goes to a file); fast enough to run inside submit."""
    info: dict[str, Any] = {"workdir": workdir, "python": python}
    repro_dir = Path(output_dir) / "repro"
    repro_dir.mkdir(parents=True, exist_ok=True)
    info.update(_git_state(workdir, repro_dir))
    return info


def freeze(python: str | None, output_dir: str) -> dict[str, Any]:
    """``pip freeze`` of the submitting Python into repro/ (~0.5 s: run after replying)."""
    if not python or not os.path.exists(python):
        return {}
    repro_dir = Path(output_dir) / "repro"
    repro_dir.mkdir(parents=True, exist_ok=True)
    return {"pip_freeze": _pip_freeze(python, repro_dir)}


def _git_state(workdir: str, repro_dir: Path) -> dict[str, Any]:
    if shutil.which("git") is None:
        return {"git": None}
    try:
        head = _git(workdir, "rev-parse", "HEAD")
        if head.returncode != 0:
            return {"git": None}
        status = _git(workdir, "status", "--porcelain", "--untracked-files=no")
        dirty = bool(status.stdout.strip())
        info: dict[str, Any] = {"git": head.stdout.strip(), "git_dirty": dirty}
        if dirty:
            diff = _git(workdir, "diff", "HEAD", "--binary")
            path = repro_dir / "git.diff"
            path.write_text(diff.stdout)
            info["git_diff"] = str(path)
        return info
    except (OSError, subprocess.TimeoutExpired):
        return {"git": None}


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
    path = repro_dir / "pip-freeze.txt"
    path.write_text(out.stdout)
    return str(path)


def snapshot_code(workdir: str, output_dir: str, source: str) -> str:
    """Clone HEAD of the repository holding ``workdir`` (plus its dirty diff) into code/.

    Returns the directory trials run from: the same relative position as
    ``workdir`` inside the clone, so relative paths in the command still work.
    """
    top = _git(workdir, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise SpecError(
            source, "code.snapshot", f"expected {workdir} to be inside a git repository"
        )
    root = top.stdout.strip()
    dest = Path(output_dir) / "code"
    if dest.exists():
        shutil.rmtree(dest)
    clone = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", root, str(dest)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if clone.returncode != 0:
        raise SpecError(source, "code.snapshot", f"git clone failed: {clone.stderr.strip()}")
    diff = _git(root, "diff", "HEAD", "--binary")
    if diff.stdout.strip():
        apply = subprocess.run(
            ["git", "-C", str(dest), "apply", "--whitespace=nowarn", "-"],
            input=diff.stdout,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if apply.returncode != 0:
            raise SpecError(source, "code.snapshot", f"git apply failed: {apply.stderr.strip()}")
    return str(dest / os.path.relpath(workdir, root))
