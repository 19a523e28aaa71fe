"""Writing an attempt's ``launch.json``: the attempt dir is created once (principle 7).

``write_launch`` creates ``<output_dir>/<index>/attempt-<n>/`` exclusively, never
through a symlink, and writes ``launch.json`` 0600 (it holds the sweep's ``[env] vars``,
API keys among them) by an exclusive temp file and a rename. An existing attempt dir
is reused only when it is provably ours and never started: nothing in it but our
launch.json (and, when an unconfirmed submission is retried, the driver's job.json) for
this very attempt. Anything else -- someone else's directory, a symlink, a file a run
leaves (runner.json, events.jsonl, ...) -- is refused with ``AttemptDirRefused``, and
the scheduler ends the attempt with that message instead of mixing two runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from clusterd.node import names
from clusterd.node.atomic import replace_json
from clusterd.node.files import UnsafeFile, open_dir, open_subdir, read_own

__all__ = ["RUN_FILES", "AttemptDirRefused", "write_launch"]

LAUNCH_FILE = names.LAUNCH
RUN_FILES = names.RUN_FILES


class AttemptDirRefused(Exception):
    """The attempt dir exists and is not ours-and-never-started; the message says why."""


def write_launch(
    output_dir: str, index: int, number: int, launch: dict[str, Any], *, again: bool
) -> None:
    """Create the attempt dir and write ``launch.json`` in it (0600, no symlink followed).

    ``again``: re-writing the launch of an attempt the database already holds (an
    unconfirmed submission); its dir may then hold job.json of the same token."""
    adir = launch["attempt_dir"]
    try:
        out_fd = open_dir(output_dir)
    except FileNotFoundError:
        os.makedirs(output_dir, exist_ok=True)
        out_fd = open_dir(output_dir)
    except UnsafeFile as exc:
        raise AttemptDirRefused(f"output dir refused: {exc}") from None
    try:
        trial_path = os.path.dirname(adir)
        try:
            trial_fd = open_subdir(out_fd, str(index), trial_path, create=True, exclusive=False)
        except UnsafeFile as exc:
            raise AttemptDirRefused(f"trial dir refused: {exc}") from None
        try:
            _write_in(trial_fd, adir, launch, again=again)
        finally:
            os.close(trial_fd)
    finally:
        os.close(out_fd)


def _write_in(trial_fd: int, adir: str, launch: dict[str, Any], *, again: bool) -> None:
    name = os.path.basename(adir)
    try:
        fd = open_subdir(trial_fd, name, adir, create=True, exclusive=True)
    except FileExistsError:
        fd = _reopen_unstarted(trial_fd, adir, launch, again=again)
    except UnsafeFile as exc:
        raise AttemptDirRefused(f"attempt dir refused: {exc}") from None
    try:
        # no fsync: after a host crash the attempt is resubmitted and this file rewritten
        replace_json(fd, LAUNCH_FILE, launch, mode=0o600, fsync=False)
    finally:
        os.close(fd)


def _reopen_unstarted(trial_fd: int, adir: str, launch: dict[str, Any], *, again: bool) -> int:
    """The existing attempt dir, if it is ours and holds nothing but an unstarted launch."""
    refuse = f"attempt dir {adir} already exists and "
    hint = "; clusterd never runs two attempts in one dir (use another output_dir)"
    try:
        name = os.path.basename(adir)
        fd = open_subdir(trial_fd, name, adir, create=False, exclusive=False)
    except UnsafeFile as exc:
        raise AttemptDirRefused(f"{refuse}is refused: {exc}{hint}") from None
    try:
        found = set(os.listdir(fd))
        used = sorted(found & RUN_FILES)
        if used:
            raise AttemptDirRefused(f"{refuse}was used by a run ({', '.join(used)}){hint}")
        other = sorted(n for n in found - names.UNSTARTED_FILES if not n.startswith("."))
        if other:
            raise AttemptDirRefused(f"{refuse}holds files clusterd did not write there: {other}")
        if names.JOB in found and not again:
            raise AttemptDirRefused(f"{refuse}holds another submission's job.json{hint}")
        if LAUNCH_FILE in found:
            _check_same_attempt(fd, adir, launch, again=again)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_same_attempt(dir_fd: int, adir: str, launch: dict[str, Any], *, again: bool) -> None:
    """Our launch.json of this attempt: the same token when the attempt is known (``again``),
    else the same sweep, trial and attempt (a daemon killed before it recorded the attempt)."""
    path = os.path.join(adir, LAUNCH_FILE)
    try:
        old = json.loads(read_own(LAUNCH_FILE, dir_fd=dir_fd))
    except (UnsafeFile, ValueError) as exc:
        raise AttemptDirRefused(f"attempt dir {adir} holds a launch.json not ours: {exc}") from None
    if not isinstance(old, dict):
        raise AttemptDirRefused(f"{path} is not a launch file")
    keys = ("sweep", "trial_index", "attempt")
    same = all(old.get(k) == launch.get(k) for k in keys)
    if again and old.get("token") not in (None, launch.get("token")):
        same = False
    if not same:
        raise AttemptDirRefused(f"{path} was written for another attempt; refusing to reuse it")
