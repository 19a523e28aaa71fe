"""The trial runner: ``python -m clusterd.runner /abs/attempt-dir/launch.json``.

Every driver launches this in place of the user's command, which is what makes every
backend behave alike (docs/runtime.md is the contract): it reads ``launch.json``, writes
``params.json`` and ``runner.json``, runs the command in its own process group with its
output in the attempt dir, forwards signals to that group, enforces the time limit,
samples GPUs, and finally writes ``status.json`` atomically.

Stdlib only: it runs in the job's environment, where the daemon's dependencies may be
missing. Its own diagnostics go to ``<attempt_dir>/runner.log``.

Waiting is event driven: SIGCHLD and every forwarded signal wake a ``select()`` on the
``signal.set_wakeup_fd`` pipe, whose timeout is the next deadline (resume signal, time
limit, SIGKILL), so the runner reacts at once and never polls the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

try:  # as the package module (``python -m clusterd.runner``, the daemon's imports)
    from clusterd import contain, nodefs
except ImportError:  # as a script (``python -I -S runner.py``): the package is beside us
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from clusterd import contain, nodefs

TYPE_CHECKING = False  # typing itself costs ~2.5 ms to import; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

__all__ = [
    "FORWARDED_SIGNALS",
    "Launch",
    "LaunchError",
    "build_argv",
    "build_shell_line",
    "child_env",
    "load_launch",
    "main",
    "render_value",
    "write_json_atomic",
]

#: signals received by the runner and passed on to the command's process group
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
#: exit status of the runner when launch.json is unusable
EXIT_BAD_LAUNCH = 2
#: exit status of the runner when the attempt dir was used by an earlier run
EXIT_ALREADY_RAN = 4
#: a process of the trial writes its pid here when it handles the resume signal
RESUME_HANDLER_FILE = "RESUME_HANDLER"
#: files a run leaves in its attempt dir: finding one, a runner does not run (once only)
RUN_FILES = nodefs.RUN_FILES
#: exit status (and status.json exit_code) when the command cannot be started
EXIT_NOT_STARTED = 127
#: longest wait for the processes of a group after SIGKILL (they may be stuck in the kernel)
AFTER_KILL_WAIT = 5.0

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class LaunchError(ValueError):
    """launch.json is missing, unreadable or invalid; the message says which field."""


class Launch:
    """A validated launch.json (docs/runtime.md); times are in seconds.

    A plain slotted class rather than a dataclass: importing ``dataclasses`` costs
    ~6 ms, paid by every trial's runner.
    """

    __slots__ = (
        "attempt",
        "attempt_dir",
        "command",
        "cwd",
        "enforce_time_limit",
        "env",
        "gpu_interval",
        "kill_grace",
        "params",
        "resume_exit_code",
        "resume_signal",
        "setup",
        "signal_lead",
        "sweep",
        "time_limit",
        "token",
        "trial_dir",
        "trial_id",
        "trial_index",
    )
    sweep: str
    token: str | None
    trial_index: int
    trial_id: str
    attempt: int
    trial_dir: str
    attempt_dir: str
    command: list[str]
    params: dict[str, Any]
    cwd: str | None
    env: dict[str, str]
    setup: str | None
    resume_exit_code: int
    resume_signal: signal.Signals
    signal_lead: float
    time_limit: float | None
    enforce_time_limit: bool
    kill_grace: float
    gpu_interval: float

    def __init__(self, **fields: Any) -> None:
        missing = set(self.__slots__) - set(fields)
        if missing:
            raise TypeError(f"Launch is missing {sorted(missing)}")
        for name, value in fields.items():
            setattr(self, name, value)


# -- launch.json ------------------------------------------------------------------------


def load_launch(path: str) -> Launch:
    """Read and validate launch.json; raise LaunchError naming the offending field.

    Only a regular file of our own uid that group and others cannot write is read: in
    a shared output dir another user could rename a forged one over ours."""
    try:
        data = json.loads(nodefs.read_own(path, 64 << 20))
    except nodefs.UnsafeFile as exc:
        raise LaunchError(f"refused: {exc}") from None
    except OSError as exc:
        raise LaunchError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise LaunchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LaunchError(f"{path}: not a JSON object")
    try:
        return _launch_from(data)
    except LaunchError as exc:
        raise LaunchError(f"{path}: {exc}") from None


def _launch_from(data: dict[str, Any]) -> Launch:
    if data.get("version") != 1:
        raise LaunchError(f"version: expected 1, got {data.get('version')!r}")
    resume = _get(data, "resume", dict, {})
    return Launch(
        sweep=_get(data, "sweep", str),
        token=_get(data, "token", str, None),
        trial_index=_get(data, "trial_index", int),
        trial_id=_get(data, "trial_id", str),
        attempt=_get(data, "attempt", int),
        trial_dir=_abs_path(data, "trial_dir"),
        attempt_dir=_abs_path(data, "attempt_dir"),
        command=_command(data),
        params=_get(data, "params", dict, {}),
        cwd=_opt_abs_path(data, "cwd"),
        env=_env_vars(data),
        setup=_get(data, "setup", str, None) or None,
        resume_exit_code=_get(resume, "exit_code", int, 3, "resume.exit_code"),
        resume_signal=_signal_from(resume.get("signal", "USR1")),
        signal_lead=_seconds(resume, "signal_lead", 120.0, "resume.signal_lead"),
        time_limit=_seconds(data, "time_limit", None),
        enforce_time_limit=_get(data, "enforce_time_limit", bool, True),
        kill_grace=_seconds(data, "kill_grace", 10.0),
        gpu_interval=_seconds(data, "gpu_interval", 0.0),
    )


_REQUIRED = object()


def _get(
    data: dict[str, Any], key: str, kind: type, default: Any = _REQUIRED, name: str = ""
) -> Any:
    """One field of the expected JSON type (bool is not an int here); None means default."""
    value = data.get(key)
    if value is None:
        if default is _REQUIRED:
            raise LaunchError(f"{name or key}: missing")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LaunchError(f"{name or key}: expected {kind.__name__}, got {value!r}")
    return value


def _seconds(data: dict[str, Any], key: str, default: float | None, name: str = "") -> Any:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise LaunchError(f"{name or key}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _abs_path(data: dict[str, Any], key: str) -> str:
    value = _opt_abs_path(data, key)
    if value is None:
        raise LaunchError(f"{key}: missing")
    return value


def _opt_abs_path(data: dict[str, Any], key: str) -> str | None:
    value = _get(data, key, str, None)
    if value is not None and not os.path.isabs(value):
        raise LaunchError(f"{key}: expected an absolute path, got {value!r}")
    return value


def _command(data: dict[str, Any]) -> list[str]:
    command = _get(data, "command", list)
    if not command or not all(isinstance(part, str) for part in command):
        raise LaunchError(f"command: expected a non-empty list of strings, got {command!r}")
    return list(command)


def _env_vars(data: dict[str, Any]) -> dict[str, str]:
    env = _get(data, "env", dict, {})
    out = {}
    for key, value in env.items():
        if not key or "=" in key or isinstance(value, bool | dict | list) or value is None:
            raise LaunchError(f"env.{key}: expected a string value, got {value!r}")
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _signal_from(value: Any) -> signal.Signals:
    """``"USR1"``, ``"SIGUSR1"`` or a number."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signal.Signals(value)
        name = str(value).upper()
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        raise LaunchError(f"resume.signal: unknown signal {value!r}") from None


# -- command building ----------------------------------------------------------------------


def render_value(value: Any) -> str:
    """A parameter on the command line: strings verbatim, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def build_argv(command: Sequence[str], params: Mapping[str, Any]) -> list[str]:
    """The argv to run (docs/runtime.md "Command building").

    If any element has a ``{key}`` placeholder naming a parameter, placeholders are
    substituted and nothing is appended; otherwise every parameter is appended as
    ``--key=value``. ``{{`` and ``}}`` always stand for literal braces; a ``{word}``
    that names no parameter is left as it is.
    """
    if not command:
        raise ValueError("the command is empty")
    placeholders = any(_placeholder_names(part) & params.keys() for part in command)
    argv = [_substitute(part, params if placeholders else {}) for part in command]
    if not placeholders:
        argv.extend(f"--{key}={render_value(value)}" for key, value in params.items())
    return argv


def _placeholder_names(part: str) -> set[str]:
    return {m.group(1) for m in _TOKEN.finditer(part) if m.group(1) is not None}


def _substitute(part: str, params: Mapping[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        token, name = match.group(0), match.group(1)
        if name is None:
            return token[0]  # "{{" -> "{", "}}" -> "}"
        return render_value(params[name]) if name in params else token

    return _TOKEN.sub(replace, part)


def build_shell_line(setup: str, argv: Sequence[str]) -> str:
    """``{ <setup>\\n} && exec <argv...>``, every argv element quoted with shlex.quote.

    The braces and the newline keep a trailing ``# comment`` or a multi-line setup
    from swallowing the ``exec``; the exit status of the group is that of the setup's
    last command, exactly as with ``<setup> && exec ...``.
    """
    return "{ " + setup + "\n} && exec " + " ".join(shlex.quote(arg) for arg in argv)


def shell() -> str:
    """bash where there is one (setup lines say ``source``), else POSIX sh."""
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def full_argv(launch: Launch) -> list[str]:
    argv = build_argv(launch.command, launch.params)
    if launch.setup is None:
        return argv
    return [shell(), "-c", build_shell_line(launch.setup, argv)]


def child_env(
    launch: Launch, base: Mapping[str, str] | None = None, token: str | None = None
) -> dict[str, str]:
    """The command's environment: the runner's, the sweep's ``[env] vars``, then ours.

    ``CLUSTERD_ATTEMPT_TOKEN`` marks every process of the attempt (contain.py finds
    those that leave the process group by it)."""
    env = dict(os.environ if base is None else base)
    env.update(launch.env)
    env[contain.TOKEN_ENV] = token or launch.token or ""
    env.update(
        CLUSTERD_SWEEP=launch.sweep,
        CLUSTERD_TRIAL_ID=launch.trial_id,
        CLUSTERD_TRIAL_INDEX=str(launch.trial_index),
        CLUSTERD_ATTEMPT=str(launch.attempt),
        CLUSTERD_TRIAL_DIR=launch.trial_dir,
        CLUSTERD_ATTEMPT_DIR=launch.attempt_dir,
        CLUSTERD_PARAMS=os.path.join(launch.trial_dir, "params.json"),
        CLUSTERD_EVENTS=os.path.join(launch.attempt_dir, "events.jsonl"),
        CLUSTERD_RESUME_EXIT_CODE=str(launch.resume_exit_code),
        CLUSTERD_RESUME_SIGNAL=launch.resume_signal.name[3:],
    )
    return env


# -- files -----------------------------------------------------------------------------------


def write_json_atomic(path: str, obj: Any) -> None:
    """Temp file in the same dir (created exclusively, never through a symlink), fsync,
    rename, fsync the dir: absent or complete."""
    fd = open_attempt_dir(os.path.dirname(path))
    try:
        write_json_in(fd, os.path.basename(path), obj)
    finally:
        os.close(fd)


def open_attempt_dir(path: str) -> int:
    """A directory fd of ``path``, whose last component must not be a symlink (it is ours)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise nodefs.UnsafeFile(f"{path} does not belong to us (uid {os.geteuid()})")
    return fd


def write_json_in(dir_fd: int, name: str, obj: Any) -> None:
    """``name`` in the directory ``dir_fd``, atomically and durably (0644)."""
    nodefs.replace_json(dir_fd, name, obj, 0o644, fsync=True)
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
        os.fsync(dir_fd)


class RunnerLog:
    """Line-buffered diagnostics in ``runner.log``, a file this runner creates (O_EXCL);
    stderr when there is no attempt dir fd or the file cannot be created."""

    def __init__(self, dir_fd: int | None, fd: int | None = None) -> None:
        self._fh: IO[str] = sys.stderr
        if fd is None and dir_fd is not None:
            with contextlib.suppress(OSError):
                fd = nodefs.create_new(dir_fd, "runner.log", 0o644)
        if fd is not None:
            self._fh = os.fdopen(fd, "a", buffering=1)

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            self._fh.write(f"{stamp} runner[{os.getpid()}]: {message}\n")


def _status(
    code: int | None,
    started: float,
    ended: float,
    pid: int | None,
    timed_out: bool,
    error: str | None,
) -> dict[str, Any]:
    """status.json: exit_code None and the signal's name when the command was killed."""
    sig = None
    if code is not None and code < 0:
        sig, code = _signal_name(-code), None
    return {
        "exit_code": code,
        "signal": sig,
        "started_at": started,
        "ended_at": ended,
        "host": os.uname().nodename,
        "pid": pid,
        "timed_out": timed_out,
        "error": error,
    }


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name[3:]
    except ValueError:
        return str(signum)


# -- process groups --------------------------------------------------------------------------


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    if not signal_group(pgid, 0):
        return False
    try:
        names = os.listdir("/proc")
    except OSError:
        return True  # no /proc: trust kill(0), zombies and all
    return any(_is_live_member(name, pgid) for name in names if name.isdigit())


def _is_live_member(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in (...) may hold spaces
    return len(fields) > 2 and fields[2] == b"%d" % pgid and fields[0] not in (b"Z", b"X")


# -- GPU sampling ---------------------------------------------------------------------------


def _import_pynvml() -> Any:
    """pynvml, from site-packages even when the runner was started with ``-S``.

    Drivers start the runner as ``python -I -S runner.py`` to save the ~20 ms that
    site-packages processing costs per trial; only GPU sampling needs site-packages.
    """
    try:
        import pynvml
    except ImportError:
        if not sys.flags.no_site:
            raise
        import site

        site.main()
        import pynvml
    return pynvml


class GpuSampler:
    """Appends ``{"type": "gpu", ...}`` lines every ``interval`` s from a daemon thread.

    pynvml is optional and imported lazily in the thread: without it, or without a
    GPU, the sampler quietly does nothing (one line in runner.log).
    """

    def __init__(self, dir_fd: int, interval: float, log: RunnerLog) -> None:
        self._dir_fd = dir_fd
        self._interval = interval
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        try:
            pynvml = _import_pynvml()
            pynvml.nvmlInit()
            handles = _gpu_handles(pynvml)
        except Exception as exc:  # no pynvml, no driver, no GPU: nothing to sample
            self._log(f"GPU sampling off: {type(exc).__name__}: {exc}")
            return
        self._log(f"GPU sampling every {self._interval:g}s: {len(handles)} GPU(s)")
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open("events.jsonl", flags, dir_fd=self._dir_fd)  # created by prepare()
        try:
            self._loop(pynvml, handles, fd)
        finally:
            os.close(fd)
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()

    def _loop(self, nvml: Any, handles: list[tuple[int, Any]], fd: int) -> None:
        while not self._stop.wait(self._interval):
            try:
                gpus = [_sample(nvml, index, handle) for index, handle in handles]
            except Exception as exc:
                self._log(f"GPU sampling stopped: {type(exc).__name__}: {exc}")
                return
            line = json.dumps({"type": "gpu", "t": time.time(), "gpus": gpus}) + "\n"
            os.write(fd, line.encode())


def _gpu_handles(nvml: Any) -> list[tuple[int, Any]]:
    """The GPUs of this job: those in CUDA_VISIBLE_DEVICES when it names them, else all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = nvml.nvmlDeviceGetCount()
    everything = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    if visible is None:
        return everything
    chosen = []
    for item in (part.strip() for part in visible.split(",") if part.strip()):
        try:
            if item.isdigit():
                chosen.append((int(item), nvml.nvmlDeviceGetHandleByIndex(int(item))))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(item)
                chosen.append((int(nvml.nvmlDeviceGetIndex(handle)), handle))
        except Exception:
            return everything  # MIG ids and the like: report the whole node instead
    return chosen


def _sample(nvml: Any, index: int, handle: Any) -> dict[str, int]:
    util = nvml.nvmlDeviceGetUtilizationRates(handle)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    mib = 1 << 20
    return {
        "index": index,
        "util": int(util.gpu),
        "mem_used": int(mem.used) // mib,
        "mem_total": int(mem.total) // mib,
    }


# -- the runner -------------------------------------------------------------------------------


class Runner:
    """Runs one attempt: prepare files, start, supervise, clean up, write status.json.

    Every file it writes in the attempt dir it creates itself (O_EXCL, relative to the
    directory fd ``dir_fd``, never through a symlink): an attempt runs once.
    """

    def __init__(self, launch: Launch, log: RunnerLog, dir_fd: int) -> None:
        self.launch = launch
        self.log = log
        self.dir_fd = dir_fd
        self.token = launch.token or os.urandom(8).hex()
        self.containment: contain.Containment = contain.Containment(self.token)
        self.t0 = time.monotonic()
        self.started_at = time.time()
        self.pending: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.resume_at: float | None = None
        self.limit_at: float | None = None
        self.kill_at: float | None = None
        self.term_sent = False
        self.killed = False
        self.timed_out = False
        self._wake_r = -1

    def path(self, name: str) -> str:
        return os.path.join(self.launch.attempt_dir, name)

    # setup

    def install_signals(self) -> None:
        """Handlers only record; the wakeup pipe makes the main loop act on them at once."""
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._wake_r = wake_r
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def _on_sigchld(self, signum: int, frame: Any) -> None:
        """Nothing to do here: the byte in the wakeup pipe is what wakes the loop."""

    def prepare(self) -> None:
        """params.json (atomic), checkpoints/ and a new, empty events.jsonl."""
        launch = self.launch
        trial_fd = open_attempt_dir(launch.trial_dir)
        try:
            os.close(
                nodefs.open_subdir(
                    trial_fd,
                    "checkpoints",
                    os.path.join(launch.trial_dir, "checkpoints"),
                    create=True,
                    exclusive=False,
                )
            )
            write_json_in(trial_fd, "params.json", launch.params)
        finally:
            os.close(trial_fd)
        # the trial appends to it (same user): 0644, but only ever the one created here
        os.close(nodefs.create_new(self.dir_fd, "events.jsonl", 0o644))

    def start(self, argv: list[str]) -> str | None:
        """Start the command in its own process group; an error message if it cannot start."""
        launch = self.launch
        self.containment = contain.choose(self.token, self.log)
        out_fd = nodefs.create_new(self.dir_fd, "stdout", 0o644)
        try:
            err_fd = nodefs.create_new(self.dir_fd, "stderr", 0o644)
        except BaseException:
            os.close(out_fd)
            raise
        try:
            try:
                with self.containment.spawning():
                    self.proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=out_fd,
                        stderr=err_fd,
                        cwd=launch.cwd,
                        env=child_env(launch, token=self.token),
                        process_group=0,
                    )
            except (OSError, subprocess.SubprocessError) as exc:
                message = _start_error(argv, launch.cwd, exc)
                os.write(err_fd, f"clusterd runner: {message}\n".encode())
                self.containment.close()
                return message
        finally:
            os.close(out_fd)
            os.close(err_fd)
        contained = self.containment.started(self.proc.pid)
        if contained is not self.containment:
            self.log("the command did not enter its cgroup; using the scan of /proc instead")
            self.containment = contained
        return None

    def write_runner_json(self) -> None:
        assert self.proc is not None
        info = {
            "pid": os.getpid(),
            "child_pid": self.proc.pid,
            "child_pgid": self.proc.pid,
            "host": os.uname().nodename,
            "started_at": self.started_at,
            "containment": self.containment.kind,
        }
        write_json_in(self.dir_fd, "runner.json", info)

    def arm_time_limit(self) -> None:
        """The resume signal at the lead (whatever the scheduler does), then the limit."""
        limit = self.launch.time_limit
        if limit is None:
            return
        lead = self.launch.signal_lead
        # a lead as long as the limit leaves the command no time to set up its handler
        self.resume_at = self.t0 + (limit - lead if lead < limit else limit / 2)
        if self.launch.enforce_time_limit:
            self.limit_at = self.t0 + limit

    # supervision

    def supervise(self) -> int:
        """Wait for the command's exit while acting on signals and deadlines."""
        proc = self.proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                return code
            self.dispatch_signals()
            self.run_due(time.monotonic())
            code = proc.poll()
            if code is not None:
                return code
            self.sleep(self.next_deadline())

    def dispatch_signals(self) -> None:
        while self.pending:
            signum = self.pending.pop(0)
            if signum == self.launch.resume_signal:  # Slurm's --signal=B:..., or a user's
                self.request_checkpoint(f"received {_signal_name(signum)}")
                continue
            self.log(f"received {_signal_name(signum)}; forwarding it to the command's group")
            self.send(signum)
            if signum == signal.SIGTERM:
                self.term_sent = True
                self.arm_kill(time.monotonic())

    def run_due(self, now: float) -> None:
        if self.resume_at is not None and now >= self.resume_at:
            self.resume_at = None
            self.request_checkpoint("time limit near")
        if self.limit_at is not None and now >= self.limit_at:
            self.limit_at = None
            self.timed_out = True
            self.log("time limit reached; sending TERM")
            self.send(signal.SIGTERM)
            self.term_sent = True
            self.arm_kill(now)
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            self.killed = True
            self.log("kill grace is over; sending KILL")
            self.send(signal.SIGKILL)

    def request_checkpoint(self, why: str) -> None:
        """CHECKPOINT_REQUESTED always; the signal only to processes that announced a
        handler (docs/runtime.md): its default action is to terminate."""
        name = self.launch.resume_signal.name[3:]
        with contextlib.suppress(OSError):
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open("CHECKPOINT_REQUESTED", flags, 0o644, dir_fd=self.dir_fd))
        targets = self.resume_targets()
        if targets is None:
            self.log(f"{why}: created CHECKPOINT_REQUESTED; no {name} handler announced")
        elif not targets:
            self.log(f"{why}: created CHECKPOINT_REQUESTED; sending {name} to the group")
            self.send(self.launch.resume_signal)
        else:
            shown = ", ".join(map(str, sorted(targets)))
            self.log(f"{why}: created CHECKPOINT_REQUESTED; sending {name} to {shown}")
            self.containment.signal(targets, self.launch.resume_signal)

    def resume_targets(self) -> set[int] | None:
        """None: no handler announced; empty: the whole group; else the announcing pids
        that are still processes of this attempt."""
        try:
            text = nodefs.read_own(RESUME_HANDLER_FILE, 1 << 16, dir_fd=self.dir_fd)
        except OSError:
            return None
        pids = {int(x) for x in text.split() if x.isdigit()}
        if not pids:
            return set()
        scan = contain.Containment(self.token)
        mine = {pid for pid in pids if scan.carries(pid)}
        return mine or None

    def arm_kill(self, now: float) -> None:
        if self.kill_at is None and not self.killed:
            self.kill_at = now + self.launch.kill_grace

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.resume_at, self.limit_at, self.kill_at) if d is not None]
        return min(deadlines) if deadlines else None

    def sleep(self, deadline: float | None) -> None:
        """Block until a signal (SIGCHLD included) arrives or the deadline passes."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if ready:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    def send(self, signum: int) -> None:
        if self.proc is not None:
            signal_group(self.proc.pid, signum)

    # the end

    def clean_up(self) -> None:
        """Leave no process of the attempt behind: its group, and those that left it
        (setsid) but carry its mark -- TERM, the kill grace, then KILL."""
        assert self.proc is not None
        pgid, holder = self.proc.pid, self.containment
        strays = holder.members()
        if not group_alive(pgid) and not strays:
            holder.close()
            return
        self.log(
            f"processes of the attempt outlived the command ({len(strays)} outside "
            "its group or in it); terminating them"
        )
        if not self.term_sent:
            signal_group(pgid, signal.SIGTERM)
        holder.signal(strays, signal.SIGTERM)

        def gone() -> bool:
            return not group_alive(pgid) and not holder.members()

        deadline = self.kill_at or time.monotonic() + self.launch.kill_grace
        if self.killed or not _wait(gone, deadline):
            signal_group(pgid, signal.SIGKILL)
            holder.kill_all()
            if not _wait(gone, time.monotonic() + AFTER_KILL_WAIT):
                self.log("processes of the attempt survive SIGKILL (stuck in the kernel?)")
        holder.close()


def _wait(done: Callable[[], bool], deadline: float) -> bool:
    """Poll ``done`` with a short backoff until it holds or ``deadline`` (monotonic)."""
    pause = 0.01
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)
    return True


def _start_error(argv: list[str], cwd: str | None, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.filename is not None and exc.filename == cwd:
            return f"cannot start the command: working directory {cwd}: {exc.strerror}"
        if isinstance(exc, FileNotFoundError):
            return f"command not found: {argv[0]}"
        return f"cannot start {argv[0]!r}: {exc.strerror}"
    return f"cannot start {argv[0]!r}: {exc}"


def _exit_status(code: int) -> int:
    """The runner's own exit status mirrors the command's, shell style for signals."""
    return 128 - code if code < 0 else code


def run(launch: Launch) -> int:
    """Run one attempt end to end; returns the runner's exit status."""
    try:
        dir_fd = open_attempt_dir(launch.attempt_dir)
    except OSError as exc:
        message = f"attempt dir {launch.attempt_dir}: {exc.strerror or exc}"
        sys.stderr.write(f"clusterd runner: {message}\n")
        return EXIT_BAD_LAUNCH
    try:
        # the claim: runner.log created O_EXCL. Two runners started for one attempt (a
        # launch raced by a second daemon, a requeue) cannot both get it.
        try:
            log_fd = nodefs.create_new(dir_fd, "runner.log", 0o644)
        except FileExistsError:
            return _refuse_rerun(launch, dir_fd, ["runner.log"], claimed=False)
        log = RunnerLog(None, log_fd)
        used = sorted((set(os.listdir(dir_fd)) & RUN_FILES) - {"runner.log"})
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
        _write_new_status(dir_fd, _status(None, now, now, None, False, message))
    return EXIT_ALREADY_RAN


def _run_in(launch: Launch, dir_fd: int, log: RunnerLog) -> int:
    runner = Runner(launch, log, dir_fd)
    runner.install_signals()
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
            write_json_in(
                dir_fd,
                "status.json",
                _status(None, runner.started_at, time.time(), pid, False, error),
            )
        return 1


def _run(runner: Runner) -> int:
    launch, log = runner.launch, runner.log
    runner.prepare()
    argv = full_argv(launch)
    stops = [s for s in runner.pending if s in (signal.SIGTERM, signal.SIGINT)]
    runner.pending.clear()  # USR1/USR2 before the start have no one to go to
    if stops:  # cancelled while preparing: do not start at all
        signum = stops[0]
        error = f"received {_signal_name(signum)} before the command started"
        runner_status(runner, _status(-signum, runner.started_at, time.time(), None, False, error))
        return _exit_status(-signum)
    log(f"starting {argv!r} in {launch.cwd or os.getcwd()}")
    failure = runner.start(argv)
    if failure is not None:
        log(failure)
        now = time.time()
        status = _status(EXIT_NOT_STARTED, runner.started_at, now, None, False, failure)
        runner_status(runner, status)
        return EXIT_NOT_STARTED
    assert runner.proc is not None
    runner.write_runner_json()
    log(f"command started: pid {runner.proc.pid}")
    runner.arm_time_limit()
    sampler = _start_sampler(runner, log)
    code = runner.supervise()
    ended = time.time()
    log(f"command ended: {'signal ' + _signal_name(-code) if code < 0 else f'exit code {code}'}")
    runner.clean_up()
    if sampler is not None:
        sampler.stop()
    status = _status(code, runner.started_at, ended, runner.proc.pid, runner.timed_out, None)
    runner_status(runner, status)
    return _exit_status(code)


def _start_sampler(runner: Runner, log: RunnerLog) -> GpuSampler | None:
    launch = runner.launch
    if launch.gpu_interval <= 0 or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None  # an empty CUDA_VISIBLE_DEVICES: the driver gave this trial no GPU
    sampler = GpuSampler(runner.dir_fd, launch.gpu_interval, log)
    sampler.start()
    return sampler


def runner_status(runner: Runner, status: dict[str, Any]) -> None:
    write_json_in(runner.dir_fd, "status.json", status)


def _write_new_status(dir_fd: int, status: dict[str, Any]) -> None:
    """status.json only where there is none: an earlier run's result is never replaced."""
    try:
        os.close(nodefs.create_new(dir_fd, "status.json", 0o644, json.dumps(status).encode()))
    except FileExistsError:
        pass  # the earlier run's result stays
    except OSError as exc:
        sys.stderr.write(f"clusterd runner: status.json not written: {exc.strerror or exc}\n")


def _bad_launch(path: str, message: str) -> int:
    """launch.json is unusable: say so in a new status.json beside it (if the dir is ours
    and has none) and exit 2; nothing of the launch is used."""
    sys.stderr.write(f"clusterd runner: {message}\n")
    now = time.time()
    try:
        dir_fd = open_attempt_dir(os.path.dirname(path))
    except OSError as exc:
        sys.stderr.write(f"clusterd runner: cannot write status.json: {exc}\n")
        return EXIT_BAD_LAUNCH
    try:
        RunnerLog(dir_fd)(message)
        _write_new_status(dir_fd, _status(None, now, now, None, False, message))
    finally:
        os.close(dir_fd)
    return EXIT_BAD_LAUNCH


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m clusterd.runner /abs/attempt-dir/launch.json\n")
        return EXIT_BAD_LAUNCH
    path = os.path.abspath(args[0])
    try:
        launch = load_launch(path)
    except LaunchError as exc:
        return _bad_launch(path, f"invalid launch.json: {exc}")
    return run(launch)


if __name__ == "__main__":
    sys.exit(main())
