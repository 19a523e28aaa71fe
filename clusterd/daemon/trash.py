"""The trash: ``rm --trash`` hides a sweep and moves its files, ``restore`` undoes both.

A trashed sweep keeps its rows (trials, attempts, metrics) with ``sweeps.trashed_at``
and ``sweeps.trash_path`` set. ``Store.require_sweep`` refuses it everywhere (``trials``,
``export``, ``relaunch``, ``submit --extend``...) with a message pointing here, and the
``sweeps`` listing leaves it out; ``trash`` lists it, ``restore`` brings it back,
``rm`` (or ``trash --empty``) deletes its rows and its files for good.

Its name stays taken while it is in the trash: a new sweep of that name is refused
(restore it, or ``rm`` it for good, first). Restoring never overwrites anything: the
original output dir must not have been claimed by another sweep meanwhile nor hold an
entry of the same name as one being moved back.

Order, so that a crash at any point loses nothing:

- trash: one transaction checks that no trial can still run and marks the row
  (hidden from then on: nothing launches or relaunches it), then the files move; a
  failed move puts back what it moved and unmarks the row. A kill between the two
  leaves a trashed row whose files are still in place: ``restore`` finds nothing in
  the trash directory and only unmarks it.
- restore: checks, moves the files back, then unmarks the row; a failed unmark moves
  the files to the trash again.
- delete: the rows go first, then the files (a kill in between leaves a directory in
  ``$CLUSTERD_HOME/trash`` that no sweep names; ``trash`` does not list it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Any

from sqlalchemy import func, select, update

from clusterd.daemon import outputs
from clusterd.daemon.store import S, Store, T
from clusterd.errors import Conflict, InvalidRequest

__all__ = ["delete", "dir_size", "empty", "listing", "mark", "restore", "trash_dir_for", "unmark"]

#: states in which a trial may still be launched: a trashed sweep must have none
UNFINISHED = ("pending", "queued", "running")


def trash_dir_for(home: str, name: str) -> str:
    """A new, empty directory ``$CLUSTERD_HOME/trash/<name>-<date>`` (0700)."""
    trash = os.path.join(home, "trash")
    os.makedirs(trash, mode=0o700, exist_ok=True)
    return outputs.fresh_dir(os.path.join(trash, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"))


def mark(store: Store, name: str, dest: str) -> Any:
    """Hide the sweep (one transaction: no trial may still run; then the row is marked)."""
    with store.tx() as conn:
        sweep = store.require_sweep(conn, name)
        rows = conn.execute(
            select(T.c.state).where(T.c.sweep_id == sweep.id, T.c.state.in_(UNFINISHED))
        ).all()
        if rows:
            raise Conflict(
                f"sweep {name!r} has {len(rows)} pending, queued or running trial(s); "
                f"run `clusterctl cancel {name}` first"
            )
        conn.execute(
            update(S).where(S.c.id == sweep.id).values(trashed_at=time.time(), trash_path=dest)
        )
        # to subscribers (the TUI) a trashed sweep is gone, as one ``rm`` removed
        store._changes.append({"type": "sweep", "name": name, "state": "removed"})
    return sweep


def unmark(store: Store, name: str) -> None:
    with store.tx() as conn:
        conn.execute(update(S).where(S.c.name == name).values(trashed_at=None, trash_path=None))
        sweep = store.require_sweep(conn, name)
        store._changes.append({"type": "sweep", "name": name, "state": sweep.state})


def dir_size(path: str) -> int:
    """Bytes under ``path`` (files only, links not followed); 0 if it is gone."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def listing(store: Store) -> list[dict[str, Any]]:
    """Every trashed sweep, oldest first: name, when, where its files are, their size."""
    with store.read() as conn:
        n_trials = select(func.count()).where(T.c.sweep_id == S.c.id).scalar_subquery()
        rows = conn.execute(
            select(S.c.name, S.c.trashed_at, S.c.trash_path, S.c.output_dir, S.c.group, n_trials)
            .where(S.c.trashed_at.is_not(None))
            .order_by(S.c.trashed_at)
        ).all()
    return [
        {
            "name": r[0],
            "trashed_at": r[1],
            "path": r[2],
            "output_dir": r[3],
            "group": r[4],
            "trials": r[5],
            "bytes": dir_size(r[2]) if r[2] else 0,
        }
        for r in rows
    ]


def _trashed(store: Store, name: str) -> Any:
    with store.read() as conn:
        sweep = store.require_sweep(conn, name, trashed=True)
    if sweep.trashed_at is None:
        raise InvalidRequest(f"sweep {name!r} is not in the trash")
    return sweep


def _entries(path: str | None) -> list[str]:
    try:
        return sorted(os.listdir(path)) if path else []
    except FileNotFoundError:
        return []


def restore_problem(store: Store, sweep: Any) -> str | None:
    """Why the trashed ``sweep``'s files cannot go back where they were; None if they can."""
    entries = _entries(sweep.trash_path)
    out = sweep.output_dir
    if not entries:
        return None  # nothing was moved (a kill before the move): only unhide it
    if os.path.lexists(out) and not os.path.isdir(out):
        return f"{out} is now a file, not a directory"
    marker = outputs.read_marker(out) if os.path.isdir(out) else None
    if marker is not None:
        return (
            f"its output dir {out} now belongs to sweep {marker.get('sweep')!r} "
            f"({outputs.MARKER_DIR}/{outputs.MARKER}); move that sweep's files away first"
        )
    clash = [e for e in entries if os.path.lexists(os.path.join(out, e))]
    if clash:
        return f"{out} already holds {', '.join(clash[:5])}; move them away first"
    problem = outputs.claim_problem(out, store.database_id(), lambda uid: None)
    if problem is not None:  # inside another sweep's dir, or another sweep's trial dirs
        return problem.message.split(";")[0]
    return None


def restore(store: Store, name: str) -> dict[str, Any]:
    """Move the files back, then unhide the sweep; refuse (changing nothing) when the
    original place is taken."""
    with outputs.CLAIM_LOCK:  # no submit claims the dir meanwhile, no second restore
        return _restore(store, name)


def _restore(store: Store, name: str) -> dict[str, Any]:
    sweep = _trashed(store, name)
    problem = restore_problem(store, sweep)
    if problem:
        raise Conflict(f"cannot restore sweep {name!r}: {problem}")
    entries = _entries(sweep.trash_path)
    created = False
    if entries and not os.path.isdir(sweep.output_dir):
        os.makedirs(sweep.output_dir, mode=outputs.DIR_MODE)
        created = True
    try:
        moved = _move_all(sweep.trash_path, entries, sweep.output_dir)
    except BaseException:
        if created:
            outputs.remove_if_empty(sweep.output_dir)
        raise
    try:
        unmark(store, name)
    except BaseException:
        outputs.move_back(moved)
        raise
    if sweep.trash_path:
        outputs.remove_if_empty(sweep.trash_path)
    return {"restored": name, "output_dir": sweep.output_dir, "entries": len(entries)}


def _move_all(src_dir: str, names: list[str], dest_dir: str) -> list[tuple[str, str]]:
    """Move ``names`` from ``src_dir`` into ``dest_dir``; on a failure put back what was
    moved and raise Conflict (nothing changed). Returns the (from, to) pairs."""
    moved: list[tuple[str, str]] = []
    try:
        for entry in names:
            src, dest = os.path.join(src_dir, entry), os.path.join(dest_dir, entry)
            shutil.move(src, dest)
            moved.append((src, dest))
    except OSError as exc:
        outputs.move_back(moved)
        raise Conflict(
            f"could not move {src_dir} back to {dest_dir} ({exc.strerror or exc}); "
            "nothing was changed"
        ) from None
    return moved


def delete(store: Store, name: str, home: str) -> dict[str, Any]:
    """Delete a trashed sweep for good: its rows, then its files in the trash (only ever
    a directory under ``$CLUSTERD_HOME/trash``, whatever the row says)."""
    sweep = _trashed(store, name)
    store.delete_sweep(name, trashed=True)
    path = sweep.trash_path
    inside = os.path.realpath(os.path.join(home, "trash")) + os.sep
    if path and os.path.realpath(path).startswith(inside) and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    return {"removed": name, "output_dir": sweep.output_dir, "deleted": path}


def empty(store: Store, home: str, older_than: float | None = None) -> list[str]:
    """Delete for good every trashed sweep (trashed more than ``older_than`` seconds ago)."""
    cutoff = None if older_than is None else time.time() - older_than
    gone = []
    for entry in listing(store):
        if cutoff is None or entry["trashed_at"] <= cutoff:
            delete(store, entry["name"], home)
            gone.append(entry["name"])
    return gone
