"""``clusterd``: start, stop and inspect the per-user daemon.

``clusterd start`` launches ``clusterd start --foreground`` as a detached process
and returns once its socket answers -- or prints why it did not start. Cold
path: nothing here imports SQLAlchemy except ``--foreground`` and ``db upgrade``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time

from clusterd import paths
from clusterd.cli.rpc import exit_status
from clusterd.client import Client
from clusterd.daemon.homecheck import check_home
from clusterd.errors import ClusterdError, DaemonUnreachable
from clusterd.pidcheck import pid_alive

__all__ = ["main"]

START_TIMEOUT = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return exit_status(lambda: args.func(args), prog="clusterd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterd", description="the clusterd daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the daemon (returns once it accepts requests)")
    start.add_argument("--foreground", action="store_true", help="run in this process")
    start.add_argument(
        "--new-database",
        action="store_true",
        help="start with a new, empty database where the one clusterd created is gone",
    )
    start.set_defaults(func=cmd_start)
    sub.add_parser("stop", help="stop the daemon; running trials keep running").set_defaults(
        func=cmd_stop
    )
    status = sub.add_parser("status", help="pid, uptime, database, counts")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="upgrade the schema to this version").set_defaults(
        func=cmd_db_upgrade
    )
    return parser


def _running_pid() -> int | None:
    """The pid of a live daemon per the pid file; stale files are removed."""
    try:
        pid = int(paths.pid_path().read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):  # gone, or exited and not reaped yet
        _clean_stale()
        return None
    cmdline = _cmdline(pid)
    if cmdline is not None and "clusterd" not in cmdline:
        _clean_stale()  # the pid was recycled by an unrelated process
        return None
    return pid


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _clean_stale() -> None:
    for path in (paths.pid_path(), paths.socket_path()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def cmd_start(args: argparse.Namespace) -> int:
    check_home(paths.home())  # before ensure_home tightens modes: a shared home is refused
    paths.ensure_home()
    pid = _running_pid()
    if pid is not None:
        print(
            f"clusterd is already running (pid {pid}, socket {paths.socket_path()})",
            file=sys.stderr,
        )
        return 1
    if args.foreground:
        return _foreground(args.new_database)
    return _spawn(["--new-database"] if args.new_database else [])


def _foreground(new_database: bool = False) -> int:
    _setup_logging()
    pid_file = paths.pid_path()
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        from clusterd.daemon.app import run_foreground

        return run_foreground(new_database=new_database)
    except ClusterdError as exc:
        logging.getLogger("clusterd").error("%s", exc.message)
        print(f"clusterd: {exc.message}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(pid_file.read_text()) == os.getpid():
                pid_file.unlink()


def _setup_logging() -> None:
    handlers: list[logging.Handler] = [logging.FileHandler(paths.log_path())]
    if sys.stderr.isatty():
        handlers.append(logging.StreamHandler())
    logging.basicConfig(
        level=os.environ.get("CLUSTERD_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )


def _spawn(extra: list[str]) -> int:
    log = paths.log_path()
    start_offset = log.stat().st_size if log.exists() else 0
    with open(os.devnull, "rb") as devnull, open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clusterd.daemon.main", "start", "--foreground", *extra],
            stdin=devnull,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print("clusterd: the daemon exited during start-up:", file=sys.stderr)
            print(_log_tail(start_offset), file=sys.stderr)
            return 1
        try:
            with Client(timeout=5.0) as client:
                client.call("ping")
            print(f"clusterd started (pid {proc.pid}); socket {paths.socket_path()}")
            return 0
        except DaemonUnreachable:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    print(
        f"clusterd: the daemon did not answer within {START_TIMEOUT:.0f} s; see {log}",
        file=sys.stderr,
    )
    return 1


def _log_tail(offset: int, lines: int = 20) -> str:
    try:
        with open(paths.log_path(), "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def cmd_stop(args: argparse.Namespace) -> int:
    pid = _running_pid()
    try:
        with Client(timeout=10.0) as client:
            pid = client.call("shutdown").get("pid", pid)
    except DaemonUnreachable:
        if pid is None:
            print("clusterd is not running", file=sys.stderr)
            return 1
        os.kill(pid, 15)
    deadline = time.monotonic() + 60
    while pid is not None and time.monotonic() < deadline:
        if not pid_alive(pid):  # gone, or a zombie its reaper has not collected yet
            break
        time.sleep(0.02)
    else:
        if pid is not None:
            print(f"clusterd: pid {pid} did not stop within 60 s", file=sys.stderr)
            return 1
    print("clusterd stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with Client(timeout=10.0) as client:
            status = client.call("status")
    except DaemonUnreachable:
        _print_last_halt()
        raise
    if args.json:
        import json

        print(json.dumps(status, indent=2))
        return 0
    counts = status["counts"]
    states = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("sweeps", "trials"))
    print(f"clusterd {status['version']}  pid {status['pid']}  up {_duration(status['uptime'])}")
    print(f"database  {status['db_url']}")
    print(
        f"sweeps    {counts['sweeps']}   trials {counts['trials']}"
        + (f" ({states})" if states else "")
    )
    for name, h in sorted(status["drivers"].items()):
        polled = (
            "never" if h["last_poll_at"] is None else f"{time.time() - h['last_poll_at']:.0f} s ago"
        )
        line = f"driver    {name}: last poll {polled}"
        if h["last_error"]:
            ago = time.time() - (h.get("last_error_at") or time.time())
            line += f"; last error {ago:.0f} s ago: {h['last_error']}"
        if h.get("failures"):
            wait = max(0.0, (h.get("next_try_at") or 0) - time.time())
            line += f"; backing off ({h['failures']} failed in a row, next try in {wait:.0f} s)"
        print(line)
    for problem in status.get("plugin_problems", []):
        print(f"plugin    {problem['plugin']} skipped: {problem['why']}")
    for line in _guard_lines(status):
        print(line)
    for line in _resource_lines(status):
        print(line)
    from clusterd.cli.system import gpu_idle_line  # light: table and rpc only

    idle = gpu_idle_line(status)
    if idle:
        print(idle)
    return 0


def _guard_lines(status: dict) -> list[str]:
    """Why the daemon halted (it then writes nothing and exits), and sweeps that cannot
    launch (each backs off alone) or trials held by the crash-loop backoff."""
    lines = []
    halted = status.get("halted")
    if halted:
        lines.append(f"HALTED    {halted['reason']}")
    now = time.time()
    for name, trouble in sorted((status.get("stuck_sweeps") or {}).items()):
        wait = max(0.0, trouble["next_try_at"] - now)
        lines.append(
            f"sweep     {name}: cannot launch trials ({trouble['failures']} failed in a row, "
            f"next try in {wait:.0f} s): {trouble['reason']}"
        )
    if status.get("crash_backoff"):
        lines.append(f"backoff   {status['crash_backoff']} failing trial(s) wait before retrying")
    return lines


def _print_last_halt() -> None:
    """The daemon is gone: if it halted (lease lost, database deleted), say why (the file
    is guard.HALTED_FILE; read here without importing the daemon's SQLAlchemy side)."""
    try:
        reason = (paths.home() / "clusterd.halted").read_text().strip()
    except OSError:
        return
    if reason:
        print(f"clusterd halted at {reason}", file=sys.stderr)


def _resource_lines(status: dict) -> list[str]:
    """The daemon's descriptors and socket clients: running out of either stalls it."""
    lines = []
    fds = status.get("fds") or {}
    if fds:
        used = "unknown (none left to count them)" if fds.get("open") is None else fds["open"]
        lines.append(f"fds       {used} open of {fds.get('limit')} (RLIMIT_NOFILE)")
    clients = status.get("clients") or {}
    if clients:
        line = f"clients   {clients['connected']} of {clients['limit']} (CLUSTERD_MAX_CLIENTS)"
        if clients.get("refused"):
            line += f"; {clients['refused']} turned away"
        if clients.get("accept_paused_since"):
            ago = time.time() - clients["accept_paused_since"]
            line += f"; accept() paused for {ago:.0f} s: out of file descriptors"
        lines.append(line)
    return lines


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from clusterd.daemon import db

    paths.ensure_home()
    engine = db.make_engine(paths.db_url())
    before = db.current_revision(engine)
    db.upgrade(engine)
    after = db.current_revision(engine)
    if before == after:
        print(f"database is up to date (revision {after})")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
