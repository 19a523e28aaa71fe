"""What an attempt is launched with: its launch.json, its job request, or its refusal.

The scheduler decides *when* to launch (free slots, backoffs, write-ahead rows, the
lease check before the driver call); this module builds *what* it launches:

* ``write_attempt_launch``: the runner's ``launch.json`` from the sweep's spec and the
  trial's params, written once into a new attempt dir (``launchfile.write_launch``);
* ``job_request``: the ``JobRequest`` a driver submits, which starts the runner
  (``RUNNER_ARGV``) on that launch.json;
* ``refuse_new``, ``refuse_known``: what the database records when the attempt dir is
  refused (it exists and is not this unstarted attempt's): the attempt ends, its trial
  fails with the reason, and the dir is never reused.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from clusterd import runner
from clusterd.daemon.environment import launch_env
from clusterd.daemon.launchfile import AttemptDirRefused, write_launch
from clusterd.daemon.store import Store
from clusterd.drivers.base import Driver, JobRequest
from clusterd.node import layout, names
from clusterd.node.launch import launch_record
from clusterd.spec.model import SweepSpec

__all__ = [
    "KILL_GRACE",
    "RUNNER_ARGV",
    "job_request",
    "refuse_known",
    "refuse_new",
    "write_attempt_launch",
]

log = logging.getLogger("clusterd.scheduler")

#: the runner's grace between SIGTERM and SIGKILL
KILL_GRACE = 10
#: how drivers start the runner: isolated (-I) and without site-packages (-S), since it
#: is stdlib only -- that saves ~20 ms of interpreter start-up per trial
RUNNER_ARGV = (sys.executable, "-I", "-S", str(Path(runner.SCRIPT).resolve()))


def job_request(
    sweep: Any,
    spec: SweepSpec,
    index: int,
    number: int,
    token: str,
    adir: str,
    options: dict[str, Any],
    exclude_hosts: tuple[str, ...],
) -> JobRequest:
    """The request that runs attempt ``number`` of trial ``index`` (its launch.json is
    written in ``adir``) with the sweep's driver ``options``, avoiding ``exclude_hosts``."""
    return JobRequest(
        token=token,
        sweep=sweep.name,
        trial_index=index,
        attempt=number,
        attempt_dir=adir,
        argv=(*RUNNER_ARGV, os.path.join(adir, names.LAUNCH)),
        resources=spec.resources,
        options=options,
        exclude_hosts=exclude_hosts,
        resume_signal=spec.resume.signal,
        resume_lead=spec.resume.signal_lead,
    )


def write_attempt_launch(
    sweep: Any,
    spec: SweepSpec,
    driver: Driver,
    repro: dict[str, Any],
    trial: Any,
    number: int,
    adir: str,
    token: str,
    again: bool = False,
) -> str | None:
    """Create the attempt dir once and write launch.json 0600 in it (launchfile.py);
    the reason when the dir is refused (it exists and is not this unstarted attempt's).
    ``again``: the attempt is recorded already and its launch is written a second time.
    The environment of the submit comes from ``repro`` (daemon/environment.py)."""
    submit_env, submit_unset = launch_env(repro)
    launch = launch_record(
        token=token,
        sweep=sweep.name,
        trial_index=trial.index,
        trial_id=f"{sweep.name}/{trial.index}",
        attempt=number,
        trial_dir=layout.trial_dir(sweep.output_dir, trial.index),
        attempt_dir=adir,
        command=list(spec.command),
        params=trial.params,
        cwd=repro.get("code_dir") or repro.get("workdir") or os.path.dirname(spec.source),
        env=dict(spec.env.vars),
        submit_env=submit_env,
        submit_unset=submit_unset,
        setup=spec.env.setup,
        resume_exit_code=spec.resume.exit_code,
        resume_signal=spec.resume.signal,
        signal_lead=spec.resume.signal_lead,
        time_limit=spec.resources.time_seconds,
        enforce_time_limit=not driver.enforces_time_limit,
        kill_grace=KILL_GRACE,
        gpu_interval=spec.gpu.interval,
    )
    try:
        write_launch(sweep.output_dir, trial.index, number, launch, again=again)
    except AttemptDirRefused as exc:
        log.warning("sweep %s: trial %d: %s", sweep.name, trial.index, exc)
        return str(exc)
    return None


def refuse_new(store: Store, conn: Any, refused: list[tuple[Any, int, str, str]]) -> None:
    """Attempts whose dir was refused before they were recorded: recorded as ended,
    their trial failed with the reason (running them would mix two runs' files)."""
    now = time.time()
    for trial, number, token, why in refused:
        row = {"trial_id": trial.id, "number": number, "token": token, "state": "ended"}
        row.update(outcome="failed", reason=why, ended_at=now, events_offset=0)
        store.add_attempts(conn, [{**row, "cancel_requested": False}])
        store.transition(
            conn, trial, "failed", why, number, attempts=number, failures=trial.failures + 1
        )


def refuse_known(store: Store, conn: Any, attempt: Any, why: str) -> None:
    """A recorded, unconfirmed attempt whose dir is refused: it ends, never resubmitted."""
    store.update_attempt(
        conn, attempt.id, state="ended", outcome="failed", reason=why, ended_at=time.time()
    )
    trial = store.trial_by_id(conn, attempt.trial_id)
    store.transition(conn, trial, "failed", why, attempt.number, failures=trial.failures + 1)
