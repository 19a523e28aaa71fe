"""A small pre-started process that forks the local driver's jobs (stdlib only).

Starting every trial's runner as a fresh ``python`` costs ~40 ms of CPU (interpreter,
site-packages, the runner's imports); forking it from a process that already
imported the runner costs ~1 ms. The local driver starts this server once
(``python -I -S forkserver.py RUNNER``, RUNNER the runner's script, loaded once by
path and never run as ``__main__``: it must define ``main(argv) -> int``) and asks it,
one JSON line per job, to fork:

    -> {"argv": [...], "env": {...}, "cwd": "/abs", "log": "/abs/driver.log", "spawn": "ab12"}
    <- {"pid": 4242}              or    {"error": "..."}

Before forking, the server *claims* the spawn: it creates ``<cwd>/.spawn-<spawn>``
with ``O_EXCL`` (:func:`claim_spawn`). A restarted driver that finds a job.json left
"starting" and no process makes the same claim: whoever creates the file first
decides. If the driver wins, the request never reached a fork and never will (a
request still sitting in a dead daemon's pipe is refused), so the job can be queued
again; if the server won, the job was forked and is adopted, never run twice.

Each child becomes a session leader (like ``start_new_session``), gets the job's
environment, working directory and log, and then either runs the runner in
process (when ``argv`` is the runner's command line) or ``exec``s ``argv``. The
server reaps its children automatically (SIGCHLD ignored), so the driver tracks
them with pidfds, exactly as it does jobs adopted after a daemon restart. The
server exits when its stdin closes (the daemon went away); the jobs do not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FORKED_FILE",
    "ForkServerClient",
    "SpawnNotSent",
    "claim_spawn",
    "runner_path",
    "serve",
]

#: written by each forked job in its working directory (the attempt dir): "pid starttime"
FORKED_FILE = "forked.pid"
#: ``<attempt dir>/.spawn-<id>``: whoever creates it decides whether spawn ``<id>`` happens
CLAIM_PREFIX = ".spawn-"


def claim_spawn(cwd: str, spawn: str) -> bool:
    """Create the claim file of spawn ``spawn`` in ``cwd``; False if it was claimed already.

    ``spawn`` is a hex id the driver chose; anything else is refused (it names a file).
    """
    if not spawn or not all(c in "0123456789abcdef" for c in spawn):
        raise ValueError(f"bad spawn id {spawn!r}")
    try:
        fd = os.open(os.path.join(cwd, CLAIM_PREFIX + spawn), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def serve(runner_path: str) -> int:
    """Answer fork requests on stdin until it closes."""
    runner = _load_runner(runner_path)  # loaded once: every fork inherits it

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps: no zombies
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            reply: dict[str, Any] = {"pid": _fork(request, runner, runner_path)}
        except Exception as exc:  # a bad request must not take the server down
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
    return 0


def _load_runner(path: str) -> Any:
    """The runner's script as a module (a private name, not ``__main__``: its entry is
    called per job, in the child); the script puts its package on ``sys.path`` itself."""
    spec = importlib.util.spec_from_file_location("_clusterd_runner", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the runner from {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def _fork(request: dict[str, Any], runner: Any, runner_path: str) -> int:
    argv = [str(a) for a in request["argv"]]
    env = {str(k): str(v) for k, v in request["env"].items()}
    _check_executable(argv[0], env.get("PATH", os.defpath))  # fail here, as Popen would
    cwd, spawn = request["cwd"], request.get("spawn")
    if spawn is not None and not claim_spawn(cwd, str(spawn)):
        raise FileExistsError(f"spawn {spawn} was claimed already: not forking it again")
    try:
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            pid = os.fork()
        except OSError:
            os.close(log_fd)
            raise
    except OSError:
        if spawn is not None:  # nothing was forked: the spawn may be tried again
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(cwd, CLAIM_PREFIX + str(spawn)))
        raise
    if pid:
        # Forked: from here on the reply is the pid, whatever fails (a missing marker only
        # makes a crashed driver's search harder; an error reply would read "not started").
        with contextlib.suppress(OSError):
            os.close(log_fd)
        with contextlib.suppress(Exception):
            _mark_forked(pid, request["cwd"])  # before replying: the driver may crash next
        return pid
    _become_job(argv, env, request["cwd"], log_fd, runner, runner_path)
    return 0  # not reached


def _become_job(
    argv: list[str], env: dict[str, str], cwd: str, log_fd: int, runner: Any, runner_path: str
) -> None:
    """In the child: detach, redirect, and run the job; never return."""
    code = 127
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        _close_other_fds()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the job's own stdout
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        if len(argv) >= 2 and os.path.realpath(argv[-2]) == os.path.realpath(runner_path):
            code = runner.main(argv[-1:])
        else:
            os.execvpe(argv[0], argv, env)
    except BaseException as exc:  # report and leave: the driver reads the exit via pidfd
        with contextlib.suppress(OSError):
            os.write(2, f"clusterd forkserver: cannot start {argv!r}: {exc}\n".encode())
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _mark_forked(pid: int, cwd: str) -> None:
    """Write "pid starttime" to FORKED_FILE in the job's directory: how a restarted driver
    finds a job it forked but had not yet recorded (a crash in between)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            starttime = fh.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return  # already gone: nothing to find later either
    tmp = os.path.join(cwd, f".{FORKED_FILE}.tmp")
    with open(tmp, "w") as fh:
        fh.write(f"{pid} {starttime}\n")
    os.replace(tmp, os.path.join(cwd, FORKED_FILE))


def _check_executable(program: str, path: str) -> None:
    candidates = (
        [program] if "/" in program else [os.path.join(d, program) for d in path.split(":")]
    )
    if not any(os.path.isfile(c) and os.access(c, os.X_OK) for c in candidates):
        raise FileNotFoundError(f"no executable {program!r}")


def _close_other_fds() -> None:
    """Close every inherited descriptor above stderr (the server's pipes among them)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


class SpawnNotSent(OSError):
    """The request reached no fork server (none could be started): nothing was forked."""


class ForkServerClient:
    """The driver's end: starts the server on first use and restarts it if it died.

    Not thread-safe by itself: the local driver calls it under its lock.
    """

    def __init__(self, python: str = sys.executable) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        self._argv = [python, "-I", "-S", os.path.join(here, "forkserver.py"), runner_path()]
        self._proc: Any = None

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, log: str, spawn: str | None = None
    ) -> int:
        """Fork a job (once per ``spawn`` id, see :func:`claim_spawn`); return its pid.

        SpawnNotSent if no server got the request (certainly not forked); any other
        OSError if a server got it and did not answer with a pid (whether it forked is
        then for the spawn claim to tell)."""
        request = {"argv": argv, "env": env, "cwd": cwd, "log": log, "spawn": spawn}
        line = json.dumps(request).encode() + b"\n"
        sent = False
        for _ in range(2):  # one restart if the server had died
            try:
                proc = self._ensure()
            except OSError as exc:  # e.g. EMFILE creating its pipes
                if not sent:
                    raise SpawnNotSent(f"cannot start the fork server: {exc}") from exc
                raise
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                sent = True
                reply = proc.stdout.readline()
            except OSError:
                reply = b""
            if reply:
                data = json.loads(reply)
                if "pid" in data:
                    return int(data["pid"])
                raise OSError(data.get("error", "fork server refused the job"))
            self.close()
        raise OSError("the fork server is not answering")

    def _ensure(self) -> Any:
        if self._proc is None or self._proc.poll() is not None:
            import subprocess

            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        return self._proc

    def close(self) -> None:
        """Let the server go (its jobs keep running)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
        finally:
            proc.stdout.close()


def runner_path() -> str:
    """The script the daemon starts every job's runner with (``clusterd.runner.SCRIPT``);
    imported here, in the daemon, not in the stdlib-only server."""
    from clusterd.runner import SCRIPT

    return SCRIPT


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
