"""The socket against a live daemon: garbage, huge lines, dead and slow clients, many clients."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterd.client import Client
from clusterd.protocol import MAX_LINE
from tests.conftest import Daemon


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))
    d = Daemon(base / "home")
    d.start()
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


def raw(daemon: Daemon) -> tuple[socket.socket, object]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(daemon.home / "clusterd.sock"))
    f = s.makefile("rb")
    hello = json.loads(f.readline())
    assert hello["hello"] == "clusterd"
    return s, f


def still_serves(daemon: Daemon) -> bool:
    with Client(daemon.home / "clusterd.sock", timeout=10) as c:
        return bool(c.call("ping")["pong"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=500).filter(lambda b: b"\n" not in b))
def test_random_bytes_get_an_error_line(live: Daemon, data: bytes) -> None:
    s, f = raw(live)
    with s:
        if not data.strip():
            data += b'\n{"id": "after-blank", "op": "ping"}'  # blank lines get no reply
        s.sendall(data + b"\n")
        reply = json.loads(f.readline())  # type: ignore[attr-defined]
    assert reply["ok"] is False or reply.get("result") is not None
    if reply["ok"] is False:
        assert reply["error"]["code"] in {"bad_request", "not_found", "invalid_spec", "error"}
        assert "Traceback" not in reply["error"]["message"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(
        st.sampled_from(["id", "op", "args", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers())),
    )
)
def test_random_json_objects_get_one_reply(live: Daemon, obj: dict) -> None:
    s, f = raw(live)
    with s:
        s.sendall(json.dumps(obj).encode() + b"\n")
        reply = json.loads(f.readline())  # type: ignore[attr-defined]
    assert set(reply) >= {"id", "ok"}
    if not reply["ok"]:
        assert reply["error"]["message"]


def test_huge_line_is_refused_and_daemon_lives(live: Daemon) -> None:
    s, f = raw(live)
    with s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b"x" * (MAX_LINE + 10))
        line = f.readline()  # type: ignore[attr-defined]
    reply = json.loads(line)
    assert reply["ok"] is False and "longer than" in reply["error"]["message"]
    assert still_serves(live)


def test_half_closed_and_dead_clients_do_not_block(live: Daemon) -> None:
    s, _ = raw(live)
    s.sendall(b'{"id": 1, "op": "sw')  # half a request, then the write side closes
    s.shutdown(socket.SHUT_WR)
    s.close()
    stuck = []
    for _ in range(5):  # clients that connect and never read nor write
        sock, _f = raw(live)
        stuck.append(sock)
    assert still_serves(live)
    for sock in stuck:
        sock.close()


def test_a_client_that_never_reads_is_dropped(live: Daemon) -> None:
    s, _ = raw(live)
    s.setblocking(False)
    request = b'{"op": "drivers"}\n' * 2000
    sent = 0
    try:
        while sent < 50 * len(request):
            sent += s.send(request)
    except BlockingIOError:
        pass  # our send buffer is full: the daemon stopped reading from us, as it should
    assert still_serves(live)  # ...while serving everyone else
    s.close()


def test_hundred_clients_at_once(live: Daemon) -> None:
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with Client(live.home / "clusterd.sock", timeout=30) as c:
                for _ in range(5):
                    assert c.call("sweeps") == [] or True
                    assert c.call("ping")["pong"]
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]


def test_subscription_streams_changes(live: Daemon, tmp_path: Path) -> None:
    import sys

    (tmp_path / "sweep.toml").write_text(
        f'name = "sub"\ncommand = ["{sys.executable}", "-c", "pass"]\n[params]\nx = [1, 2]\n'
    )
    client = Client(live.home / "clusterd.sock", timeout=30).connect()
    events = client.subscribe()
    live.ctl("submit", str(tmp_path / "sweep.toml"))
    seen: list[tuple[int, str]] = []
    for event in events:
        if event["type"] == "trial":
            seen.append((event["index"], event["state"]))
        if event == {"type": "sweep", "name": "sub", "state": "done"}:
            break
    client.close()
    for index in (0, 1):
        states = [s for i, s in seen if i == index]
        assert states == ["queued", "running", "completed"] or states == ["queued", "completed"]


def test_an_attempt_s_last_metrics_arrive_before_its_end(live: Daemon, tmp_path: Path) -> None:
    """A subscriber folding events in (the TUI) has a trial's final step when it sees the
    trial end, without asking again: the last lines' progress event comes first."""
    import sys

    script = tmp_path / "train.py"
    script.write_text(
        "from clusterd import trial\n"
        "for step in range(50):\n"
        "    trial.report(step, loss=1.0 / (1 + step))\n"
    )
    (tmp_path / "sweep.toml").write_text(
        f'name = "fin"\ncommand = ["{sys.executable}", "{script}"]\n'
        '[metric]\nname = "loss"\nmode = "min"\n[params]\nx = [1, 2, 3]\n'
    )
    client = Client(live.home / "clusterd.sock", timeout=30).connect()
    events = client.subscribe()
    live.ctl("submit", str(tmp_path / "sweep.toml"))
    last_step: dict[int, int | None] = {}
    at_end: dict[int, int | None] = {}
    for event in events:
        index = event.get("index")
        if event["type"] == "progress" and "last_step" in event:
            assert index not in at_end, f"progress for trial {index} after it ended: {event}"
            last_step[index] = event["last_step"]
        if event["type"] == "trial" and event["state"] == "completed":
            at_end[index] = last_step.get(index)
        if event == {"type": "sweep", "name": "fin", "state": "done"}:
            break
    client.close()
    assert at_end == {0: 49, 1: 49, 2: 49}
