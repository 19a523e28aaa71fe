"""The trial API: what a training script calls to talk to clusterd (``from clusterd import trial``).

Stdlib only, and cheap to import, because it runs inside the user's job environment,
where the daemon's dependencies are absent and every millisecond of start-up is paid by
every trial. Hence: no ``json`` at import (it drags in ``re``, ~7 ms; it is imported on
first use), no ``signal`` (it drags in ``enum``, ~4 ms; the C module ``_signal`` has
everything needed), no ``pathlib``/``dataclasses``/``typing``/``threading``.

Under clusterd (``$CLUSTERD_EVENTS`` set, see docs/runtime.md) the functions append
events lines and read the attempt's marker files. Outside clusterd (a plain ``python
train.py``) everything still works as a no-op: ``params()`` returns the parameters of
``$CLUSTERD_PARAMS`` if that is set and ``{}`` otherwise (argv is left to the script's
own parser), ``report()`` validates and drops, ``last_checkpoint()`` is None,
``should_stop()`` and ``time_to_checkpoint()`` are False; one warning goes to stderr.
"""

from __future__ import annotations

import math
import os
import sys
import time

try:  # the C half of ``signal``: same functions, without the enum import
    import _signal as _sig
except ImportError:  # pragma: no cover - not CPython
    import signal as _sig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    R = TypeVar("R")

__all__ = [
    "Checkpoint",
    "attempt",
    "checkpoint",
    "checkpoint_dir",
    "exit_for_resume",
    "last_checkpoint",
    "main",
    "params",
    "report",
    "should_stop",
    "time_to_checkpoint",
    "trial_id",
]

#: marker files are stat()ed at most this often: on a network filesystem a negative
#: lookup can cost a round trip to the server, and these calls sit in training loops
MARKER_INTERVAL = 0.5

_env = os.environ
# File names are those of clusterd.node.names, written out: importing it costs every trial
# two modules (tests/test_trial.py pins the import list; tests/node/test_names.py the names)
_EVENTS = _env.get("CLUSTERD_EVENTS") or None
_ACTIVE = _EVENTS is not None
_TRIAL_DIR = _env.get("CLUSTERD_TRIAL_DIR") or None
_ATTEMPT_DIR = _env.get("CLUSTERD_ATTEMPT_DIR") or (os.path.dirname(_EVENTS) if _EVENTS else None)
_STOP_PATH = os.path.join(_ATTEMPT_DIR, "STOP") if _ATTEMPT_DIR else None
_MARKER_PATH = os.path.join(_ATTEMPT_DIR, "CHECKPOINT_REQUESTED") if _ATTEMPT_DIR else None

_isfinite = math.isfinite
_now = time.time
_clock = time.monotonic

_fd = -1  # the events file, opened (O_APPEND) on first use
_warned = False
_params: dict[str, Any] | None = None
_last_step: int | None = None
_stopped = False
_stop_next = 0.0
_resume_requested = False
_marker_next = 0.0


class Checkpoint:
    """The newest checkpoint of this trial, as recorded in ``checkpoints/LATEST.json``."""

    __slots__ = ("attempt", "path", "step", "t")

    def __init__(self, path: str, step: int, attempt: int = 0, t: float = 0.0) -> None:
        self.path = path
        self.step = step
        self.attempt = attempt
        self.t = t

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r}, step={self.step}, attempt={self.attempt})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Checkpoint):
            return NotImplemented
        return (self.path, self.step, self.attempt) == (other.path, other.step, other.attempt)

    __hash__ = None  # type: ignore[assignment]


# -- identity and parameters --------------------------------------------------------------


def trial_id() -> str | None:
    """``sweep/index`` of this trial, None outside clusterd."""
    return _env.get("CLUSTERD_TRIAL_ID") or None


def attempt() -> int:
    """This attempt's number (1, 2, ... across resumes); 1 outside clusterd."""
    try:
        return int(_env.get("CLUSTERD_ATTEMPT", "1"))
    except ValueError:
        return 1


def params() -> dict[str, Any]:
    """The trial's parameters (``$CLUSTERD_PARAMS``), read once; a fresh shallow copy each call.

    Outside clusterd, ``$CLUSTERD_PARAMS`` is still honoured when set (handy to replay a
    trial by hand); otherwise the result is ``{}``.
    """
    global _params
    if _params is None:
        path = _env.get("CLUSTERD_PARAMS")
        _params = _read_params(path) if path else {}
        if not _ACTIVE:
            _warn_local()
    return dict(_params)


def _read_params(path: str) -> dict[str, Any]:
    """Only a regular file of ours that others cannot write: in a shared output dir a
    params.json renamed in by another user must not steer the run."""
    import json
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise PermissionError(
                f"{path}: refusing parameters not owned by uid {os.geteuid()} or writable by others"
            )
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: parameters must be a JSON object")
    return data


# -- metrics --------------------------------------------------------------------------------


def report(step: int, /, **metrics: float) -> None:
    """Record metrics at ``step``: one events line, one ``write()``, no fsync.

    ``step`` is positional-only, so a metric may itself be called ``step``. Values must
    be finite real numbers (bool is not one); ints are kept exact. A bad value raises
    ValueError naming the metric, in local mode too, so a script fails the same way
    under clusterd and on a laptop.
    """
    global _last_step
    if type(step) is not int or step < 0:
        step = _check_step(step)
    values = _format_values(metrics)
    _last_step = step
    if not _ACTIVE:
        _warn_local()
        return
    _write(f'{{"type":"metric","t":{_now()!r},"step":{step},"values":{{{values}}}}}\n')


def _format_values(metrics: dict[str, Any]) -> str:
    """The inside of the JSON ``values`` object, hand-rolled: json.dumps is 3x slower."""
    parts = []
    for name, value in metrics.items():
        kind = type(value)
        if kind is float:
            if not _isfinite(value):
                raise _bad_value(name, value)
            text = repr(value)  # shortest round-trip form, valid JSON for finite floats
        elif kind is int:
            text = _int_text(name, value)
        else:
            text = repr(_coerce(name, value))
        if name.isidentifier():  # cannot hold a quote, backslash or control character
            parts.append(f'"{name}":{text}')
        else:
            parts.append(f"{_json_string(name)}:{text}")
    return ",".join(parts)


def _check_step(step: object) -> int:
    """Validate a step that is not a plain non-negative int (numpy ints are fine)."""
    index = getattr(type(step), "__index__", None)
    if index is None or type(step) is bool:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    value = index(step)
    if value < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(value)


def _int_text(name: str, value: int) -> str:
    try:
        float(value)  # the daemon stores floats: beyond ~1.8e308 an int is not storable
    except OverflowError:
        raise _bad_value(name, value) from None
    return repr(value)


def _coerce(name: str, value: object) -> float:
    """Accept numpy/torch scalars and the like (anything with ``__float__``), never bool."""
    convert = getattr(type(value), "__float__", None)
    if convert is None or isinstance(value, bool) or type(value).__name__ == "bool_":
        raise _bad_value(name, value)
    try:
        number = float(convert(value))
    except (TypeError, ValueError, OverflowError):
        raise _bad_value(name, value) from None
    if not _isfinite(number):
        raise _bad_value(name, value)
    return number


def _bad_value(name: str, value: object) -> ValueError:
    return ValueError(f"metric {name!r}: {value!r} is not a finite number")


def _json_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def _write(line: str) -> None:
    """Append one line with a single ``write()`` (O_APPEND), so lines never interleave."""
    global _fd
    if _fd < 0:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        _fd = os.open(_EVENTS, flags, 0o644)  # type: ignore[arg-type]
    data = line.encode("utf-8")
    written = os.write(_fd, data)
    while written < len(data):  # only on a full disk or a signal mid-write: finish the line
        written += os.write(_fd, data[written:])


# -- checkpoints ----------------------------------------------------------------------------


def checkpoint_dir() -> str:
    """``<trial_dir>/checkpoints`` (kept across attempts), created; ``./checkpoints`` locally."""
    path = os.path.join(_TRIAL_DIR, "checkpoints") if _TRIAL_DIR else os.path.abspath("checkpoints")
    os.makedirs(path, exist_ok=True)
    return path


def checkpoint(path: str | os.PathLike[str], step: int) -> None:
    """Declare that ``path`` holds a checkpoint of ``step`` (save it first).

    ``checkpoints/LATEST.json`` is replaced atomically (what the next attempt resumes
    from), then a checkpoint event is appended (what the daemon records).
    """
    step = _check_step(step) if type(step) is not int or step < 0 else step
    full = os.path.abspath(os.fspath(path))
    if not _ACTIVE:
        _warn_local()
        return
    import json

    t = _now()
    if _TRIAL_DIR:
        latest = {"path": full, "step": step, "attempt": attempt(), "t": t}
        _write_atomic(os.path.join(checkpoint_dir(), "LATEST.json"), json.dumps(latest))
    event = {"type": "checkpoint", "t": t, "step": step, "path": full}
    _write(json.dumps(event, ensure_ascii=False) + "\n")


def last_checkpoint() -> Checkpoint | None:
    """The newest checkpoint of any earlier (or this) attempt; None if there is none."""
    if not (_ACTIVE and _TRIAL_DIR):
        return None
    import json

    try:
        with open(os.path.join(_TRIAL_DIR, "checkpoints", "LATEST.json"), "rb") as fh:
            data = json.load(fh)
        return Checkpoint(
            str(data["path"]),
            int(data["step"]),
            int(data.get("attempt", 0)),
            float(data.get("t", 0.0)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"clusterd.trial: ignoring unreadable LATEST.json: {exc}\n")
        return None


def _write_atomic(path: str, text: str) -> None:
    """Readers see the old or the new file; fsync'd: the next attempt resumes from it
    (clusterd.node.atomic, imported here: only checkpoint() needs it)."""
    from clusterd.node.atomic import replace_at

    replace_at(path, text.encode("utf-8"), fsync=True)


# -- stopping and resuming ------------------------------------------------------------------


def should_stop() -> bool:
    """True once the daemon stopped this trial early (``STOP`` marker in the attempt dir).

    Sticky, and the marker is looked at no more than every :data:`MARKER_INTERVAL` seconds,
    so it is cheap to call every step.
    """
    global _stopped, _stop_next
    if _stopped or _STOP_PATH is None:
        return _stopped
    now = _clock()
    if now >= _stop_next:
        _stop_next = now + MARKER_INTERVAL
        _stopped = _exists(_STOP_PATH)
    return _stopped


def time_to_checkpoint() -> bool:
    """True once the time limit is near: the resume signal arrived or its marker exists.

    The marker (``CHECKPOINT_REQUESTED``) covers scripts that replaced our signal handler
    or imported this module outside the main thread; it is rate-limited like ``STOP``.
    """
    global _resume_requested, _marker_next
    if _resume_requested or _MARKER_PATH is None:
        return _resume_requested
    now = _clock()
    if now >= _marker_next:
        _marker_next = now + MARKER_INTERVAL
        _resume_requested = _exists(_MARKER_PATH)
    return _resume_requested


def exit_for_resume() -> None:
    """Exit with the resume exit code: the daemon resubmits the trial (same trial dir)."""
    _flush_std()
    try:
        code = int(_env.get("CLUSTERD_RESUME_EXIT_CODE", "3"))
    except ValueError:
        code = 3
    sys.exit(code)


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _on_resume_signal(signum: int, frame: Any) -> None:
    global _resume_requested
    _resume_requested = True
    previous = _previous_handler
    if callable(previous):
        previous(signum, frame)


def _signal_number(name: str) -> int | None:
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(_sig, name, None)
    return number if isinstance(number, int) else None


def _install_resume_handler() -> Any:
    """Catch the resume signal from import on, under clusterd only.

    Why at import: the runner sends it to the whole process group, and its default
    action is to *terminate*, so a script would die at the very moment it should
    checkpoint. Installing it needs the main thread (a Python rule); elsewhere the
    marker file still makes ``time_to_checkpoint()`` work. A handler the script set
    before importing us is chained; one set afterwards replaces ours (the marker stays).
    """
    if not _ACTIVE:
        return None
    signum = _signal_number(_env.get("CLUSTERD_RESUME_SIGNAL", "USR1"))
    if signum is None:
        return None
    try:
        previous = _sig.getsignal(signum)
        _sig.signal(signum, _on_resume_signal)
    except (ValueError, OSError):  # not the main thread, or not a catchable signal
        return None
    _announce_handler()
    return previous


def _announce_handler() -> None:
    """Tell the runner this process handles the resume signal: it appends our pid to
    ``RESUME_HANDLER`` (docs/runtime.md). Unannounced processes never get the signal,
    whose default action would kill them; they still see ``CHECKPOINT_REQUESTED``."""
    if _ATTEMPT_DIR is None:
        return
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(os.path.join(_ATTEMPT_DIR, "RESUME_HANDLER"), flags, 0o644)
    except OSError:
        return  # a read-only attempt dir: the marker file still works
    try:
        os.write(fd, b"%d\n" % os.getpid())
    except OSError:
        pass
    finally:
        os.close(fd)


# -- cluster_utils-style entry point ----------------------------------------------------------


def main(fn: Callable[[dict[str, Any]], R]) -> Callable[..., R]:
    """Decorate ``train(params) -> metrics``: run it with :func:`params`, report its result.

    Serves scripts written for cluster_utils' ``cluster_main``: the returned dict is
    reported as the metrics of the final step (one past the last reported step, or 0).
    Entries that are not finite numbers are left out with a note on stderr rather than
    failing a run that has finished.
    """

    def run(explicit: dict[str, Any] | None = None) -> R:
        result = fn(params() if explicit is None else explicit)
        if isinstance(result, dict):
            _report_final(result)
        _flush_std()
        return result

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(run, attr, getattr(fn, attr, None))
    run.__wrapped__ = fn  # type: ignore[attr-defined]
    return run


def _report_final(result: dict[Any, Any]) -> None:
    metrics: dict[str, float] = {}
    for name, value in result.items():
        try:
            _format_values({str(name): value})
        except ValueError as exc:
            sys.stderr.write(f"clusterd.trial: not reporting {exc}\n")
        else:
            metrics[str(name)] = value
    step = 0 if _last_step is None else _last_step + 1
    report(step, **metrics)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib costs import time
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _warn_local() -> None:
    global _warned
    if not _warned:
        _warned = True
        sys.stderr.write(
            "clusterd.trial: not running under clusterd ($CLUSTERD_EVENTS is not set); "
            "metrics and checkpoints are not recorded\n"
        )


_previous_handler = _install_resume_handler()
