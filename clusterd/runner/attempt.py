"""One attempt from start to end: claim the attempt dir, prepare the trial's files, run
and supervise the command, write ``runner.json`` and ``status.json``.

An attempt runs once: the claim is ``runner.log`` created ``O_EXCL``, and a dir that
holds any file of an earlier run (``node.names.RUN_FILES``) is refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from clusterd.node import names
from clusterd.node.atomic import replace_json
from clusterd.node.files import create_new, open_own_dir, open_subdir
from clusterd.node.status import signal_name, status_record, write_new_status, write_status
from clusterd.runner.command import child_env, full_argv
from clusterd.runner.gpu import start_sampler
from clusterd.runner.log import RunnerLog
from clusterd.runner.supervise import Supervisor, exit_status, signal_group

TYPE_CHECKING = False
if TYPE_CHECKING:
    from clusterd.node.launch import Launch

__all__ = ["EXIT_ALREADY_RAN", "EXIT_BAD_LAUNCH", "EXIT_NOT_STARTED", "run"]

#: exit status of the runner when launch.json (or its attempt dir) is unusable
EXIT_BAD_LAUNCH = 2
#: exit status of the runner when the attempt dir was used by an earlier run
EXIT_ALREADY_RAN = 4
#: exit status (and status.json exit_code) when the command cannot be started
EXIT_NOT_STARTED = 127


def run(launch: Launch) -> int:
    """Run one attempt end to end; returns the runner's exit status."""
    try:
        dir_fd = open_own_dir(launch.attempt_dir)
    except OSError as exc:
        message = f"attempt dir {launch.attempt_dir}: {exc.strerror or exc}"
        sys.stderr.write(f"clusterd runner: {message}\n")
        return EXIT_BAD_LAUNCH
    try:
        # the claim: runner.log created O_EXCL. Two runners started for one attempt (a
        # launch raced by a second daemon, a requeue) cannot both get it.
        try:
            log_fd = create_new(dir_fd, names.RUNNER_LOG, 0o644)
        except FileExistsError:
            return _refuse_rerun(launch, dir_fd, [names.RUNNER_LOG], claimed=False)
        log = RunnerLog(None, log_fd)
        used = sorted((set(os.listdir(dir_fd)) & names.RUN_FILES) - {names.RUNNER_LOG})
        if used:
            return _refuse_rerun(launch, dir_fd, used, claimed=True, log=log)
        return _run_in(launch, dir_fd, log)
    finally:
        os.close(dir_fd)


def _refuse_rerun(
    launch: Launch,
    dir_fd: int,
    used: list[str],
    claimed: bool,
    log: RunnerLog | None = None,
) -> int:
    """An attempt runs once: an earlier run's files are kept, the command is not run.

    Only a runner that claimed the dir (created runner.log) may write status.json: when
    another runner holds the claim, it may still be running the command, and its result
    is the attempt's, so this one leaves no file behind and only says why on stderr.
    """
    message = (
        f"attempt dir {launch.attempt_dir} was used by an earlier run ({', '.join(used)}); "
        "an attempt runs once: not running the command again"
    )
    sys.stderr.write(f"clusterd runner: {message}\n")
    if claimed:
        if log is not None:
            log(message)
        now = time.time()
        write_new_status(dir_fd, status_record(None, now, now, None, False, message))
    return EXIT_ALREADY_RAN


def _run_in(launch: Launch, dir_fd: int, log: RunnerLog) -> int:
    runner = Supervisor(launch, log, dir_fd)
    runner.wakeup.install()
    try:
        return _run(runner)
    except BaseException as exc:
        import traceback  # only on this path: it costs ~2 ms to import

        log("runner failed:\n" + traceback.format_exc())
        if runner.proc is not None and runner.proc.poll() is None:
            signal_group(runner.proc.pid, signal.SIGKILL)
        pid = runner.proc.pid if runner.proc else None
        error = f"runner failed: {type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            now = time.time()
            write_status(dir_fd, status_record(None, runner.started_at, now, pid, False, error))
        return 1


def _run(runner: Supervisor) -> int:
    launch, log = runner.launch, runner.log
    prepare(launch, runner.dir_fd)
    argv = full_argv(launch)
    stops = [s for s in runner.pending if s in (signal.SIGTERM, signal.SIGINT)]
    runner.pending.clear()  # USR1/USR2 before the start have no one to go to
    if stops:  # cancelled while preparing: do not start at all
        signum = stops[0]
        error = f"received {signal_name(signum)} before the command started"
        status = status_record(-signum, runner.started_at, time.time(), None, False, error)
        write_status(runner.dir_fd, status)
        return exit_status(-signum)
    log(f"starting {argv!r} in {launch.cwd or os.getcwd()}")
    failure = runner.start(argv)
    if failure is not None:
        log(failure)
        now = time.time()
        status = status_record(EXIT_NOT_STARTED, runner.started_at, now, None, False, failure)
        write_status(runner.dir_fd, status)
        return EXIT_NOT_STARTED
    assert runner.proc is not None
    write_runner_json(runner)
    log(f"command started: pid {runner.proc.pid}")
    runner.arm_time_limit()
    sampler = start_sampler(
        runner.dir_fd,
        launch.gpu_interval,
        log,
        environ=child_env(launch, token=runner.token),  # GPUs set by [env] vars count too
        carries=runner.containment.carries,  # a process that setsid'd away is still the trial's
    )
    code = runner.supervise()
    ended = time.time()
    log(f"command ended: {'signal ' + signal_name(-code) if code < 0 else f'exit code {code}'}")
    runner.clean_up()
    if sampler is not None:
        sampler.stop()
    status = status_record(code, runner.started_at, ended, runner.proc.pid, runner.timed_out, None)
    write_status(runner.dir_fd, status)
    return exit_status(code)


def prepare(launch: Launch, dir_fd: int) -> None:
    """params.json (atomic), checkpoints/ and a new, empty events.jsonl."""
    trial_fd = open_own_dir(launch.trial_dir)
    try:
        where = os.path.join(launch.trial_dir, names.CHECKPOINTS)
        os.close(open_subdir(trial_fd, names.CHECKPOINTS, where, create=True, exclusive=False))
        replace_json(trial_fd, names.PARAMS, launch.params, fsync=True)
    finally:
        os.close(trial_fd)
    # the trial appends to it (same user): 0644, but only ever the one created here
    os.close(create_new(dir_fd, names.EVENTS, 0o644))


def write_runner_json(runner: Supervisor) -> None:
    """runner.json: who runs the command, and since when (the daemon's start time)."""
    assert runner.proc is not None
    info = {
        "pid": os.getpid(),
        "child_pid": runner.proc.pid,
        "child_pgid": runner.proc.pid,
        "host": os.uname().nodename,
        "started_at": runner.started_at,
        "containment": runner.containment.kind,
    }
    replace_json(runner.dir_fd, names.RUNNER_JSON, info, fsync=True)
