"""Running scheduler commands: no shell, a timeout, the whole process group killed.

Every batch driver talks to its scheduler through command-line tools (``sbatch``,
``condor_q``, ``qstat``). They all run through one ``CommandRunner`` so that tests can
replay recorded output and count calls, and every failure becomes a ``DriverError``
that says which command failed and what to do (the daemon backs off and asks again).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from clusterd.errors import DriverError

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "CommandRunner",
    "SchedulerCommands",
    "env_timeout",
    "first_line",
    "run_command",
    "timeout_env_var",
]

CommandRunner = Callable[[Sequence[str], float, str | None], subprocess.CompletedProcess[str]]
"""``(argv, timeout, stdin) -> CompletedProcess``; tests wrap it to count calls."""

DEFAULT_COMMAND_TIMEOUT = 30.0


def run_command(
    argv: Sequence[str], timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a scheduler command without a shell; the default ``CommandRunner``.

    It runs in a process group of its own, killed whole on a time-out: login nodes
    often wrap ``squeue`` & co in scripts, and a child left holding the output pipe
    would make the wait for the output hang as long as the command itself.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def timeout_env_var(driver: str) -> str:
    """``CLUSTERD_<DRIVER>_TIMEOUT``: seconds every command of that driver may take."""
    return f"CLUSTERD_{driver.upper()}_TIMEOUT"


def env_timeout(driver: str, environ: Mapping[str, str] = os.environ) -> dict[str, float]:
    """``{"command_timeout": s}`` from ``timeout_env_var(driver)``, the daemon's way to set it
    for every sweep at once; a bad value is a DriverError naming the variable."""
    name = timeout_env_var(driver)
    raw = environ.get(name)
    if raw is None:
        return {}
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise DriverError(f"{name}={raw!r}: expected a number of seconds > 0")
    return {"command_timeout": seconds}


def first_line(text: str) -> str:
    """The first non-blank line, stripped: scheduler tools put the gist there."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


@dataclass
class SchedulerCommands:
    """One scheduler's commands, run with one timeout, failing with a hint.

    ``scheduler`` ("Slurm") and ``controller`` ("slurmctld") only shape the messages.
    """

    run: CommandRunner
    timeout: float
    scheduler: str
    controller: str

    def output(self, argv: Sequence[str]) -> str:
        """The command's stdout; DriverError naming the command if it fails."""
        return self.checked(argv, check=True).stdout

    def checked(self, argv: Sequence[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; not found, hung or unrunnable is a DriverError, and so is a
        non-zero exit with ``check`` (the caller judges it otherwise)."""
        command = argv[0]
        try:
            done = self.run(argv, self.timeout, None)
        except FileNotFoundError:
            raise DriverError(
                f"{command} not found: run clusterd on a {self.scheduler} login node (or put "
                f"the {self.scheduler} commands on PATH)"
            ) from None
        except subprocess.TimeoutExpired:
            raise DriverError(
                f"{command} did not answer within {self.timeout:g} s; {self.controller} may be "
                f"busy or down (clusterd retries later)"
            ) from None
        except OSError as exc:
            raise DriverError(f"{command} could not run: {exc}") from None
        if check and done.returncode != 0:
            why = first_line(done.stderr or done.stdout) or f"exit status {done.returncode}"
            raise DriverError(f"{command} failed: {why}")
        return done
