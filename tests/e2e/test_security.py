"""Only its owner reaches the daemon (principle 6), tested with a real second user.

The tests run as root in CI and switch to ``nobody`` (uid 65534) in a subprocess, as
another user on a shared login node would be: that user can neither read the daemon's
files nor talk to it, and each refused connection is logged with its uid. The daemon
also refuses to start in a home that others could tamper with.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon

NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def as_nobody(fn: Callable[[], int | None]) -> tuple[int, str, str]:
    """Run ``fn`` in a forked child as uid/gid 65534 with no supplementary groups (no exec:
    the interpreter may live where ``nobody`` cannot read); (exit code, stdout, stderr)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, run, never return into pytest
        code = 70
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn() or 0
        except BaseException as exc:
            print(f"as_nobody: {exc!r}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stdout, stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def open_the_way(daemon: Daemon) -> None:
    """Let others reach the socket file, so that only the SO_PEERCRED check stands."""
    for directory in (daemon.home.parent, daemon.home):
        os.chmod(directory, 0o711)
    os.chmod(daemon.home / "clusterd.sock", 0o666)


@needs_root
def test_another_user_can_neither_read_nor_connect(daemon: Daemon) -> None:
    home = daemon.home
    assert mode(home) == 0o700
    assert mode(home / "clusterd.sock") == 0o600
    assert mode(home / "clusterd.db") == 0o600

    def snoop() -> None:
        for what in ("clusterd.db", "clusterd.log"):
            try:
                (home / what).read_bytes()
                print(what, "READ")
            except PermissionError:
                print(what, "denied")
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(home / "clusterd.sock"))
                print("socket CONNECTED")
            except PermissionError:
                print("socket denied")

    code, out, err = as_nobody(snoop)
    assert (code, out.splitlines()) == (
        0,
        ["clusterd.db denied", "clusterd.log denied", "socket denied"],
    ), out + err


@needs_root
def test_another_user_is_refused_by_uid_and_the_refusal_is_logged(daemon: Daemon) -> None:
    open_the_way(daemon)

    def talk() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(daemon.home / "clusterd.sock"))
            f = s.makefile("rb")
            print(f.readline().decode().strip())  # instead of the greeting
            print(repr(f.readline()))  # then the daemon closes the connection

    code, out, err = as_nobody(talk)
    assert code == 0, err
    first, after = out.splitlines()[:2]
    reply = json.loads(first)
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden", out
    assert "serves only its owner" in reply["error"]["message"]
    assert after == "b''"

    def clusterctl() -> int:  # what the other user sees: one clear line, no traceback
        os.environ["CLUSTERD_HOME"] = str(daemon.home)
        from clusterd.cli import main

        return main(["sweeps"])

    code, out, err = as_nobody(clusterctl)
    assert code == 1 and "Traceback" not in err, err
    assert err.startswith("clusterctl: ") and "serves only its owner" in err, err
    log = daemon.log()
    assert log.count(f"refused a connection from uid {NOBODY}") == 2, log[-1500:]
    assert daemon.ctl_json("sweeps") == []  # the owner is still served


@pytest.mark.parametrize("bits", [0o770, 0o707, 0o1777])
def test_start_refuses_a_home_others_can_write(short_home: Path, bits: int) -> None:
    short_home.mkdir(parents=True)
    os.chmod(short_home, bits)
    daemon = Daemon(short_home)
    started = daemon.clusterd("start", check=False)
    assert started.returncode == 1, started.stdout
    message = started.stderr.strip()
    assert f"CLUSTERD_HOME {short_home} is writable by" in message, message
    assert f"chmod 700 {short_home}" in message and "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert mode(short_home) == bits and list(short_home.iterdir()) == []  # nothing changed
    os.chmod(short_home, 0o700)  # doing what the message says
    daemon.start()
    daemon.stop()


@needs_root
def test_start_refuses_a_home_owned_by_someone_else(short_home: Path) -> None:
    short_home.mkdir(parents=True, mode=0o700)
    os.chown(short_home, NOBODY, NOBODY)
    daemon = Daemon(short_home)
    started = daemon.clusterd("start", check=False)
    assert started.returncode == 1, started.stdout
    message = started.stderr.strip()
    assert f"CLUSTERD_HOME {short_home} belongs to uid {NOBODY} (nobody)" in message, message
    assert "not to you (uid 0" in message and "Traceback" not in message
    assert list(short_home.iterdir()) == [] and short_home.stat().st_uid == NOBODY
