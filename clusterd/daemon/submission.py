"""Accepting a sweep into its output directory: check, claim, snapshot, persist.

The order is what keeps principle 7 and "a refused submit changes nothing":

1. every check that can refuse runs first and writes nothing (``check_new``, which
   ``submit --dry-run`` and ``count`` run too): the name is free, the output dir is
   not another sweep's (``outputs.claim_problem``), nobody else can write it
   (``outputs.check_permissions``), the git state and the repository root
   (``[code] snapshot``) can be read;
2. then the claim: the output dir is created (never group/other-writable), another
   sweep's files are moved aside if ``--reuse-output`` asked, the marker is written
   naming the new sweep's uid, and the code snapshot is cloned into
   ``.clusterd/code-<uid>`` (a directory no one else has);
3. then the sweep row is committed. If anything in 2 or 3 fails, the claim is undone
   (what was moved goes back, what was created is removed): the scheduler never sees
   a sweep whose snapshot is not complete, since the row comes last.
4. after the commit the marker is rewritten with the sweep's id, and the diffs are
   written (``repro/git.diff`` once, ``.clusterd/diffs/<sha256>.diff``). A crash
   before the commit leaves a marker without an id, which claims nothing.

Submits that claim run one at a time (``outputs.CLAIM_LOCK``), in a worker thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from typing import Any

from clusterd.daemon import outputs, repro
from clusterd.daemon.environment import KEY as ENVIRONMENT_KEY
from clusterd.daemon.store import Store
from clusterd.errors import Conflict, InvalidRequest
from clusterd.spec.model import SweepSpec

__all__ = ["check_extend", "check_new", "create", "extend"]

log = logging.getLogger("clusterd.submission")

Keyed = Sequence[tuple[dict[str, Any], str]]


def _owner_of(store: Store, uid: str) -> str | None:
    with store.read() as conn:
        row = store.sweep_by_uid(conn, uid)
    return None if row is None else str(row.name)


def _marker(spec: SweepSpec, uid: str, database: str, sweep_id: int | None) -> dict[str, Any]:
    return {
        "version": 1,
        "sweep": spec.name,
        "sweep_id": sweep_id,
        "uid": uid,
        "database": database,
        "source": spec.source,
        "created_at": time.time(),
    }


def check_new(store: Store, spec: SweepSpec, reuse: bool) -> outputs.Problem | None:
    """Every check a new sweep must pass before anything is written (``create`` runs it
    under the claim lock; ``submit --dry-run`` and ``count`` run it too, so the three agree):
    the name is free, the output dir is not another sweep's (unless ``reuse`` may move its
    files aside: that problem is returned), nobody else can write it, and a ``[code]
    snapshot`` sweep file is inside a git repository. Writes nothing."""
    with store.read() as conn:
        existing = store.sweep_by_name(conn, spec.name)
        if existing is not None and existing.trashed_at is not None:
            raise Conflict(
                f"a sweep named {spec.name!r} is in the trash; `clusterctl restore "
                f"{spec.name}` brings it back, `clusterctl rm {spec.name}` deletes it for good"
            )
        if existing is not None:
            raise Conflict(
                f"a sweep named {spec.name!r} exists; use `clusterctl submit --extend` "
                "to add new trials to it, or `clusterctl rm` it first"
            )
    problem = outputs.claim_problem(
        spec.output_dir, store.database_id(), lambda uid: _owner_of(store, uid)
    )
    if problem is not None and not (reuse and problem.movable):
        raise Conflict(problem.message)
    outputs.check_permissions(spec.output_dir)
    if spec.code.snapshot == "git":
        repro.repo_root(os.path.dirname(spec.source), spec.source)
    return problem


def create(
    store: Store,
    spec: SweepSpec,
    keyed: Keyed,
    python: str | None,
    reuse: bool,
    environment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Persist a new sweep after claiming its output dir; returns its repro record
    (``environment``: the submitting shell's, daemon/environment.py, stored in it)."""
    workdir = os.path.dirname(spec.source)
    with outputs.CLAIM_LOCK:
        problem = check_new(store, spec, reuse)
        database = store.database_id()
        info, state = repro.collect(workdir, python)
        if environment is not None:
            info[ENVIRONMENT_KEY] = environment
        repro.GIT_CACHE.forget(workdir)
        root = repro.repo_root(workdir, spec.source) if spec.code.snapshot == "git" else None
        uid = secrets.token_hex(16)
        claim = outputs.Claim(spec.output_dir)
        try:
            claim.make_dirs()
            if problem is not None:
                info["previous_output"] = claim.move_aside(problem.entries)
            claim.write_marker(_marker(spec, uid, database, None))
            if state is not None and state.dirty:
                info["git_diff"] = os.path.join(spec.output_dir, "repro", "git.diff")
            if root is not None:
                dest = os.path.join(spec.output_dir, outputs.MARKER_DIR, f"code-{uid}")
                claim.trees.append(dest)
                info["code_dir"] = repro.snapshot_code(workdir, root, dest, state, spec.source)
                info["code"] = _snapshot_provenance(spec.output_dir, state)
            sweep_id = store.create_sweep(spec.to_dict(), keyed, info, uid)
        except BaseException:
            claim.undo()
            raise
    _after_commit(spec, uid, database, sweep_id, state)
    return info


def _snapshot_provenance(output_dir: str, state: repro.GitState | None) -> dict[str, Any]:
    """What every attempt of a snapshot sweep runs: the snapshot's commit and diff."""
    if state is None:
        return {"code_commit": None, "code_dirty": None, "code_diff": None}
    diff = None
    if state.dirty:
        diff = os.path.join(output_dir, outputs.MARKER_DIR, "diffs", f"{state.sha}.diff")
    return {"code_commit": state.commit, "code_dirty": state.dirty, "code_diff": diff}


def _after_commit(
    spec: SweepSpec, uid: str, database: str, sweep_id: int, state: repro.GitState | None
) -> None:
    """The sweep is accepted: name its id in the marker, write the diffs (best effort:
    a failure here is logged, the sweep runs)."""
    try:
        outputs.Claim(spec.output_dir).write_marker(_marker(spec, uid, database, sweep_id))
        repro.write_sweep_diff(spec.output_dir, state)
        if state is not None and state.dirty:
            repro.diff_file(spec.output_dir, state)
    except (OSError, InvalidRequest) as exc:
        log.warning("sweep %s: after submit: %s", spec.name, exc)


def check_extend(store: Store, spec: SweepSpec) -> Any:
    """Every check ``extend`` runs before it writes (``--dry-run --extend`` runs it too):
    the sweep exists, keeps its output dir, and that dir is still its own. Returns the
    sweep row."""
    with store.read() as conn:
        sweep = store.require_sweep(conn, spec.name)
    if os.path.realpath(sweep.output_dir) != os.path.realpath(spec.output_dir):
        raise InvalidRequest(
            f"sweep {spec.name!r} writes to {sweep.output_dir}; --extend cannot move it "
            f"to {spec.output_dir} (submit a sweep of another name there)"
        )
    problem = outputs.claim_problem(
        sweep.output_dir, store.database_id(), lambda uid: _owner_of(store, uid), uid=sweep.uid
    )
    if problem is not None:
        raise Conflict(problem.message)
    return sweep


def extend(store: Store, spec: SweepSpec, keyed: Keyed) -> tuple[int, int]:
    """Add the new trials to an existing sweep: same output dir, still its own."""
    with outputs.CLAIM_LOCK:
        sweep = check_extend(store, spec)
        database = store.database_id()
        if sweep.uid and outputs.read_marker(sweep.output_dir) is None:
            claim = outputs.Claim(sweep.output_dir)  # a sweep from before markers
            claim.make_dirs()
            claim.write_marker(_marker(spec, sweep.uid, database, sweep.id))
        repro.GIT_CACHE.forget(os.path.dirname(spec.source))  # new trials run today's code
        return store.extend_sweep(spec.name, spec.to_dict(), keyed)
