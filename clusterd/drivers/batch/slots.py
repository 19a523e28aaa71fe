"""Packed attempts: several attempts (slots) share one array task.

Such an attempt's job id is ``<task job id>/<slot>`` (``57_0/1``). The scheduler knows
the shared job only, so a slot's own phase comes from its attempt dir, and cancelling
some slots of a running job writes ``CANCEL`` in their attempt dirs, which the batch
shell turns into a SIGTERM for that runner only (``batch/script.py``); the job itself is
cancelled once no slot is left to run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from clusterd.drivers.base import JobRef, JobStatus
from clusterd.drivers.jobfile import read_job_file
from clusterd.errors import DriverError
from clusterd.node import names

__all__ = ["PACK_SEP", "cancel_slots", "slot_status", "split_slot", "with_slot"]

PACK_SEP = "/"  # job id of a packed attempt: "<task job id>/<slot>"


def split_slot(job_id: str) -> tuple[str, int | None]:
    """``"57_0/1"`` -> ``("57_0", 1)``: a packed attempt's scheduler job and its slot in it."""
    job, sep, slot = job_id.partition(PACK_SEP)
    return (job, int(slot)) if sep and slot.isdigit() else (job_id, None)


def with_slot(job_id: str, slot: int | None) -> str:
    """The inverse of ``split_slot``."""
    return job_id if slot is None else f"{job_id}{PACK_SEP}{slot}"


def slot_status(ref: JobRef, status: JobStatus, started_file: str) -> JobStatus:
    """A packed attempt's own phase inside its shared job (``status``).

    Its runner may be done (``status.json``) while the others run on, and a slot
    cancelled before the job started never runs: either way it is gone for the
    daemon, which reads status.json or, for the cancelled, needs none.
    """
    adir = Path(ref.attempt_dir)
    if status.phase == "running" and (adir / names.STATUS).exists():
        return JobStatus("gone", status.job_id, "its runner ended; its packed job runs on")
    if (adir / names.CANCEL).exists() and not (adir / started_file).exists():
        # the batch shell checks CANCEL before it starts a slot (and writes started_file)
        return JobStatus("gone", status.job_id, "cancelled before its slot started")
    return status


def cancel_slots(refs: Sequence[JobRef]) -> bool:
    """Write ``CANCEL`` in each attempt dir (``refs``: slots of one job); True if no slot of
    their job is left to run (every sibling cancelled or finished), so that the whole job
    may be cancelled."""
    for ref in refs:
        try:
            (Path(ref.attempt_dir) / names.CANCEL).write_text(f"{time.time()}\n")
        except OSError as exc:
            raise DriverError(f"cannot write {names.CANCEL} in {ref.attempt_dir}: {exc}") from exc
    record = read_job_file(refs[0].attempt_dir, refs[0].token) or {}
    siblings = record.get("siblings")
    if not isinstance(siblings, list):
        return False  # the CANCEL files do it, slot by slot
    return all(
        (Path(str(adir)) / names.CANCEL).exists() or (Path(str(adir)) / names.STATUS).exists()
        for _token, adir in siblings
    )
