"""The wrapper of one run of one stand-in job: ``python -m tests.standins.run_task
<root> <cluster> <index> <run>``.

It starts the job's script as its own process group, records the group, waits (without
holding the state lock), enforces the time limit, kills leftovers of the group when the
script ends (as a real scheduler does), and records how it ended -- unless the run was
evicted, held or removed meanwhile, in which case it records nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO

from tests.standins.engine import Job, StandIn, kill_group

LIMIT_GRACE = 5.0  # seconds between SIGTERM and SIGKILL at the time limit


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Wait until the script's process ends (not reaping it); False on timeout."""
    fd = os.pidfd_open(proc.pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if timeout is None:
            return bool(poller.poll())
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if poller.poll(min(left, 86400.0) * 1000):  # poll's int ms must not overflow
                return True
        return bool(poller.poll(0))
    finally:
        os.close(fd)


def _start(job: Job) -> subprocess.Popen[bytes]:
    cmd = [job.script] if os.access(job.script, os.X_OK) else ["bash", job.script]
    opened: list[IO[bytes]] = []
    try:
        out = open(job.stdout, "ab")  # noqa: SIM115 -- closed below, after the fork
        opened.append(out)
        err = out if job.stderr == job.stdout else open(job.stderr, "ab")  # noqa: SIM115
        opened.append(err)
        return subprocess.Popen(
            cmd, cwd=job.workdir, env=job.env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=err, start_new_session=True,
        )  # fmt: skip
    finally:
        for fh in opened:
            fh.close()


def main(argv: list[str]) -> int:
    root, cluster, index, run = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    si = StandIn(root)
    job = si.run_spec(cluster, index, run)
    if job is None:
        return 0
    started = time.monotonic()
    try:
        proc = _start(job)
    except OSError as exc:
        si.finished(cluster, index, run, exit_code=None, term_signal=None,
                    reason=f"start failed: {exc}")  # fmt: skip
        return 0
    if not si.started(cluster, index, run, proc.pid):
        kill_group(proc.pid, 2.0)
        proc.wait()
        si.schedule()
        return 0
    limit = job.time_limit
    timed_out = not _wait_exit(
        proc, None if limit is None else limit - (time.monotonic() - started)
    )
    if timed_out:
        kill_group(proc.pid, LIMIT_GRACE)
        _wait_exit(proc, None)
    # the leader is a zombie until reaped, so the group id is still ours: clear leftovers
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    exit_code, term_signal = (rc, None) if rc >= 0 else (None, -rc)
    if timed_out:
        si.finished(cluster, index, run, exit_code=exit_code, term_signal=term_signal,
                    reason="time limit", hold=job.limit_action == "hold")  # fmt: skip
    else:
        reason = "exit" if term_signal is None else "signal"
        si.finished(cluster, index, run, exit_code=exit_code, term_signal=term_signal,
                    reason=reason)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
