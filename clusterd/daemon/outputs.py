"""A sweep's files are its own (DESIGN principle 7): claim, check and move output dirs.

An output directory is claimed by one sweep through a marker,
``<output_dir>/.clusterd/sweep.json`` (0600, written without following symlinks), that
names the sweep (name, id, a random uid) and the database it belongs to (its random
``database_id``). ``submit`` refuses a directory claimed by another sweep, nested in
one, or holding trial directories it did not create; ``--reuse-output`` first moves
those old files aside into ``<output_dir>/previous-<date>/``, never mixing them with
the new sweep's. ``rm --trash`` moves only what clusterd created for the sweep, and
only from a directory whose marker names it.

The marker is written *before* the sweep row is committed, without the sweep id; once
the row is committed it is rewritten with the id. A marker without an id whose uid no
sweep of this database has is what a submit interrupted before its commit leaves (or
one that failed): it claims nothing. A removed sweep's marker has an id.

Permissions: an output directory, or the directory clusterd creates it under, must not
be writable by another user (who could swap what clusterd writes there for a symlink),
except a sticky directory like ``/tmp`` owned by root or us. Directories clusterd
creates are never group- or other-writable.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clusterd.errors import Conflict, InvalidRequest
from clusterd.node import atomic, names
from clusterd.node.files import create_new, open_own_dir

__all__ = [
    "CLAIM_LOCK",
    "MARKER_DIR",
    "Claim",
    "Problem",
    "check_permissions",
    "claim_problem",
    "fresh_dir",
    "move_back",
    "move_to_trash",
    "read_marker",
    "remove_if_empty",
    "trash_problem",
]

MARKER_DIR = ".clusterd"
MARKER = "sweep.json"
#: what clusterd itself creates directly in an output dir, besides the trial dirs
OWN_ENTRIES = (MARKER_DIR, "repro")
#: submits that claim directories run one at a time (two into one dir: one wins)
CLAIM_LOCK = threading.Lock()
_TRIAL_DIR = re.compile(r"[0-9]+")
_ATTEMPT_DIR = re.compile(r"attempt-[0-9]+")
#: how many trial-like entries a check looks into before it stops (a 10,000-trial
#: dir of our own is never scanned: its marker answers first)
SCAN_LIMIT = 1000
#: directories clusterd creates: umask applies, never writable by group or others
DIR_MODE = 0o755


@dataclass(frozen=True)
class Problem:
    """Why a directory cannot be used as it is; ``movable``: ``--reuse-output`` helps."""

    message: str
    movable: bool
    entries: tuple[str, ...] = ()  # what --reuse-output moves aside


# -- reading --------------------------------------------------------------------


def marker_path(output_dir: str) -> str:
    return os.path.join(output_dir, MARKER_DIR, MARKER)


def read_marker(output_dir: str) -> dict[str, Any] | None:
    """The marker's content; None if there is none. An unreadable or forged one (not a
    regular file, not a JSON object) reads as a claim by an unknown sweep."""
    path = marker_path(output_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return {"sweep": "?", "uid": "?", "database": "?", "sweep_id": 0}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {"sweep": "?", "uid": "?", "database": "?", "sweep_id": 0}
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(1 << 16)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"sweep": "?", "uid": "?", "database": "?", "sweep_id": 0}
    return data


def _trial_like(path: str) -> bool:
    """A directory clusterd made for a trial: attempt dirs, params.json or checkpoints."""
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.name in (names.PARAMS, names.CHECKPOINTS, MARKER_DIR):
                    return True
                if _ATTEMPT_DIR.fullmatch(entry.name):
                    return True
    except OSError:
        return False
    return False


def foreign_entries(output_dir: str) -> list[str]:
    """Entries of ``output_dir`` that some sweep made: trial dirs, ``.clusterd``, ``repro``."""
    found: list[str] = []
    looked = 0
    try:
        with os.scandir(output_dir) as it:
            entries = sorted(
                (e.name for e in it if e.is_dir(follow_symlinks=False)),
                key=lambda n: (not n.isdigit(), len(n), n),
            )
    except OSError:
        return []
    for name in entries:
        if name in OWN_ENTRIES:
            found.append(name)
        elif _TRIAL_DIR.fullmatch(name) and looked < SCAN_LIMIT:
            looked += 1
            if _trial_like(os.path.join(output_dir, name)):
                found.append(name)
    return found


# -- checks ---------------------------------------------------------------------


def _private_group(gid: int) -> bool:
    """A group only we are in (a user private group, umask 002): its write bit is ours."""
    if gid != os.getegid():
        return False
    try:
        members = set(grp.getgrgid(gid).gr_mem)
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return False
    return members <= {me}


def _others_can_write(st: os.stat_result) -> bool:
    if st.st_uid not in (os.geteuid(), 0):
        return True
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and not _private_group(st.st_gid)


def check_permissions(output_dir: str) -> None:
    """Refuse an output dir (or the directory clusterd creates it under) that another
    user can write.

    The output dir itself, when it exists, must be ours and writable by nobody else.
    When it does not, the nearest existing directory above it -- where clusterd creates
    it -- must not be writable by others, unless it is sticky (``/tmp``, a ``/scratch``
    made with ``chmod +t``) and owned by root or us: others cannot then rename or delete
    what we create in it. Directories further up are not judged (the issue's scope): a
    group-writable ``/project/<group>`` above a directory of one's own stays usable.
    """
    target = path = os.path.realpath(output_dir)
    me = os.geteuid()
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise InvalidRequest(
                f"output_dir {output_dir}: cannot inspect {path}: {exc.strerror}"
            ) from None
        if st is not None:
            if path == target:
                _check_own_dir(output_dir, path, st, me)
            elif _others_can_write(st) and not (st.st_mode & stat.S_ISVTX and st.st_uid in (me, 0)):
                raise InvalidRequest(
                    f"output_dir {output_dir}: {path} can be written by other users (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}), who could replace "
                    "the sweep's files; use a directory only you can write (or make the shared "
                    f"one sticky: chmod +t {path})"
                )
            return  # the first existing directory is the one judged
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _check_own_dir(output_dir: str, path: str, st: os.stat_result, me: int) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidRequest(f"output_dir {output_dir}: {path} exists and is not a directory")
    if st.st_uid != me:
        raise InvalidRequest(
            f"output_dir {output_dir}: {path} belongs to another user (uid {st.st_uid}); "
            "choose a directory of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and _others_can_write(st):
        raise InvalidRequest(
            f"output_dir {output_dir}: {path} can be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run `chmod go-w {path}` or choose another"
        )


def _claimed_above(path: str) -> tuple[str, dict[str, Any]] | None:
    """The nearest directory above ``path`` that a sweep's marker claims."""
    current = os.path.dirname(path)
    while True:
        marker = read_marker(current)
        if marker is not None:
            return current, marker
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def claim_problem(
    output_dir: str,
    database: str,
    sweep_by_uid: Callable[[str], str | None],
    uid: str | None = None,
) -> Problem | None:
    """Why ``output_dir`` cannot be claimed by a new sweep (``uid`` None) or by the sweep
    ``uid`` (``submit --extend``); None if it can. ``sweep_by_uid`` names the sweep of
    this database that has a uid (None: no such sweep, it was removed)."""
    real = os.path.realpath(output_dir)
    above = _claimed_above(real)
    if above is not None:
        where, outer = above
        return Problem(
            f"output_dir {output_dir} lies inside {where}, the output dir of sweep "
            f"{outer.get('sweep')!r}; choose an output_dir outside it",
            movable=False,
        )
    if not os.path.isdir(real):
        return None
    marker = read_marker(real)
    reuse = (
        "choose another output_dir, or `clusterctl submit --reuse-output FILE` to move "
        f"them aside into {output_dir}/previous-<date>/ first"
    )
    if marker is not None:
        owner = str(marker.get("sweep"))
        if uid is not None and marker.get("uid") == uid and marker.get("database") == database:
            return None  # ours
        if marker.get("database") == database:
            live = sweep_by_uid(str(marker.get("uid")))
            if live is not None:
                return Problem(
                    f"output_dir {output_dir} belongs to sweep {live!r}; choose another "
                    f"output_dir, or `clusterctl rm {live} --trash` that sweep first",
                    movable=False,
                )
            if marker.get("sweep_id") is not None:
                return Problem(
                    f"output_dir {output_dir} holds the files of the removed sweep {owner!r}; "
                    + reuse,
                    movable=True,
                    entries=tuple(foreign_entries(real)),
                )
            # an interrupted submit's claim (no sweep id, no row): it claims nothing
        else:
            return Problem(
                f"output_dir {output_dir} belongs to sweep {owner!r} of another clusterd "
                "database; " + reuse,
                movable=True,
                entries=tuple(foreign_entries(real)),
            )
    elif uid is not None:
        return None  # a sweep from before markers (or its claim was lost): its own files
    entries = [e for e in foreign_entries(real) if e != MARKER_DIR or marker is None]
    if entries:
        trial_dirs = [e for e in entries if e.isdigit()]
        what = "trial directories" if trial_dirs else "files of another sweep"
        example = os.path.join(output_dir, (trial_dirs or entries)[0])
        return Problem(
            f"output_dir {output_dir} holds {what} this sweep did not create "
            f"(e.g. {example}); " + reuse,
            movable=True,
            entries=tuple(entries),
        )
    return None


def trash_problem(
    output_dir: str, name: str, uid: str | None, database: str, source: str, home: str
) -> str | None:
    """Why ``rm --trash`` must not move sweep ``name``'s files; None if it may."""
    real = os.path.realpath(output_dir)
    keep = f"`clusterctl rm {name}` without --trash removes the sweep and leaves its files"
    if os.path.realpath(source).startswith(real + os.sep):
        return f"output_dir {output_dir} holds the sweep file {source}; {keep}"
    if os.path.lexists(os.path.join(real, ".git")):
        return f"output_dir {output_dir} is a project root (it holds .git); {keep}"
    home_real = os.path.realpath(home)
    if home_real == real or home_real.startswith(real + os.sep):
        return f"output_dir {output_dir} holds CLUSTERD_HOME ({home}); {keep}"
    marker = read_marker(real)
    if marker is None:
        return (
            f"output_dir {output_dir} has no marker ({MARKER_DIR}/{MARKER}) naming sweep "
            f"{name!r}, so clusterd cannot tell its files from others'; {keep}"
        )
    if marker.get("uid") != uid or marker.get("database") != database:
        owner = marker.get("sweep")
        return f"output_dir {output_dir} belongs to sweep {owner!r}, not {name!r}; {keep}"
    return None


# -- writing --------------------------------------------------------------------


@dataclass
class Claim:
    """What one submit created or moved in an output dir, so a failed submit can undo it."""

    output_dir: str
    created: list[str] = field(default_factory=list)  # directories, outermost first
    moved: list[tuple[str, str]] = field(default_factory=list)  # (from, to)
    files: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)  # made whole by this submit (a snapshot)

    def make_dirs(self) -> None:
        """Create the output dir and missing parents, never group/other-writable; a
        component that appears meanwhile must be a directory of ours, not a symlink."""
        path = os.path.abspath(self.output_dir)
        missing: list[str] = []
        while not os.path.isdir(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for d in reversed(missing):
            try:
                os.mkdir(d, DIR_MODE)
            except FileExistsError:
                _require_own_dir(d)
                continue
            except OSError as exc:
                raise InvalidRequest(f"cannot create output_dir {d}: {exc.strerror}") from None
            self.created.append(d)

    def move_aside(self, entries: Iterable[str]) -> str:
        """Move another sweep's entries into ``previous-<date>/`` inside the output dir."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = fresh_dir(os.path.join(self.output_dir, f"previous-{stamp}"))
        self.created.append(dest)
        for entry in entries:
            src = os.path.join(self.output_dir, entry)
            os.rename(src, os.path.join(dest, entry))
            self.moved.append((src, os.path.join(dest, entry)))
        return dest

    def write_marker(self, content: dict[str, Any]) -> None:
        """``.clusterd/sweep.json``, 0600, through a directory fd: no symlink followed."""
        mdir = os.path.join(self.output_dir, MARKER_DIR)
        try:
            os.mkdir(mdir, 0o700)
            self.created.append(mdir)
        except FileExistsError:
            _require_own_dir(mdir)
        write_file_at(mdir, MARKER, json.dumps(content, indent=1) + "\n", replace=True)
        self.files.append(os.path.join(mdir, MARKER))

    def undo(self) -> None:
        """Best effort: put back what was moved, delete only what this claim created."""
        for tree in self.trees:
            shutil.rmtree(tree, ignore_errors=True)
        for path in self.files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for src, dest in reversed(self.moved):
            with contextlib.suppress(OSError):
                os.rename(dest, src)
        for d in reversed(self.created):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _require_own_dir(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise InvalidRequest(f"{path} appeared meanwhile and is not a directory of yours")


def fresh_dir(base: str) -> str:
    for n in range(100):
        path = base if n == 0 else f"{base}-{n}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise Conflict(f"cannot create a fresh directory like {base}")


def write_file_at(directory: str, name: str, text: str, replace: bool = False) -> bool:
    """Write ``directory/name`` (0600) through a directory fd opened without following
    symlinks; the file is created exclusively (``replace``: via a temporary and a rename).
    Returns False when it exists and ``replace`` is off (written once, never again)."""
    dfd = open_own_dir(directory)
    try:
        if replace:
            atomic.replace(dfd, name, text.encode(), mode=0o600, fsync=False)
            return True
        try:
            os.close(create_new(dfd, name, 0o600, text.encode()))
        except FileExistsError:
            return False
        return True
    finally:
        os.close(dfd)


def move_to_trash(output_dir: str, names: Iterable[str], dest: str) -> list[tuple[str, str]]:
    """Move ``names`` (entries of ``output_dir``) into the new directory ``dest``; on a
    failure, move back what was moved and raise. Returns the (from, to) pairs."""
    moved: list[tuple[str, str]] = []
    try:
        for entry in names:
            src = os.path.join(output_dir, entry)
            if not os.path.lexists(src):
                continue
            shutil.move(src, os.path.join(dest, entry))
            moved.append((src, os.path.join(dest, entry)))
    except OSError as exc:
        move_back(moved)
        raise Conflict(
            f"could not move {output_dir} to the trash ({exc.strerror or exc}); nothing was removed"
        ) from None
    return moved


def remove_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def move_back(moved: list[tuple[str, str]]) -> None:
    for src, dest in reversed(moved):
        with contextlib.suppress(OSError):
            shutil.move(dest, src)
