"""Bad input at the edges: the socket (what tests/e2e/test_protocol_live.py does not
cover), events lines through the real ingestion, and path and shell values in sweep
files. Scheduler output is covered by tests/drivers/test_slurm_parse.py.

Never a crash, never a lost or doubled metric, never a write outside the sweep's output
dir, never a shell: a param value of ``$(touch /tmp/pwned)`` must not run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import socket
import struct
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy import select as sql_select

from clusterd.daemon import db as dbmod
from clusterd.daemon.ingest import AttemptCursor, ingest_attempt
from clusterd.daemon.store import A, M, Store, T
from tests.conftest import Daemon, wait_for
from tests.faults.conftest import query, sweep_state

# =========================================================================== the socket


@pytest.fixture(scope="module")
def live() -> Iterator[Daemon]:
    base = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))
    d = Daemon(base / "home")
    d.start()
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


def connect(daemon: Daemon, timeout: float = 10) -> tuple[socket.socket, Any]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(daemon.home / "clusterd.sock"))
    f = s.makefile("rb")
    assert json.loads(f.readline())["hello"] == "clusterd"
    return s, f


def strict_json(line: bytes) -> Any:
    """Parse as any client would: NaN, Infinity and -Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} in a reply")

    return json.loads(line, parse_constant=refuse)


def ping_time(daemon: Daemon) -> float:
    t0 = time.monotonic()
    s, f = connect(daemon)
    with s:
        s.sendall(b'{"id": "p", "op": "ping"}\n')
        assert strict_json(f.readline())["ok"]
    return time.monotonic() - t0


def fake_sweep(directory: Path, name: str, trials: int) -> Path:
    """Trials on the fake driver: no processes, three transitions each, in about a second."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = ["true"]\ndriver = "fake"\nmax_concurrent = {trials}\n'
        f"[params]\nx = {list(range(trials))}\n"
    )
    return path


FLOOD = 1000  # trials: ~3,000 events, ~450 KB of event lines (more than a socket buffer)


def test_a_subscriber_that_never_reads_does_not_slow_anyone(live: Daemon, tmp_path: Path) -> None:
    """One subscriber never reads while thousands of events flow; another reads them all,
    in order; pings stay fast; the stuck one is eventually dropped, never buffered for."""
    stuck, _ = connect(live)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b'{"id": 1, "op": "subscribe"}\n')
    s, f = connect(live, timeout=60)
    s.sendall(b'{"id": 2, "op": "subscribe"}\n')
    assert strict_json(f.readline())["result"] == {"subscribed": True}
    seen: list[dict[str, Any]] = []

    def read_all() -> None:
        for line in f:
            event = strict_json(line)["event"]
            seen.append(event)
            if event == {"type": "sweep", "name": "flood", "state": "done"}:
                return

    thread = threading.Thread(target=read_all)
    thread.start()
    live.ctl("submit", str(fake_sweep(tmp_path, "flood", FLOOD)))
    slowest = 0.0
    while thread.is_alive():
        slowest = max(slowest, ping_time(live))
        thread.join(0.05)
    s.close()
    trial_events = [e for e in seen if e["type"] == "trial"]
    assert len(trial_events) >= 3 * FLOOD - 5, len(trial_events)
    for index in range(FLOOD):
        states = [e["state"] for e in trial_events if e["index"] == index]
        assert states in (["queued", "running", "completed"], ["queued", "completed"]), states
    # A pass over 1,000 fresh trials holds the loop for ~2 s on 2 cores with or without a
    # stuck client; a daemon waiting on the stuck one would stall for WRITE_TIMEOUT (10 s).
    assert slowest < 5.0, f"a ping took {slowest:.2f} s while a subscriber was stuck"
    # the stuck subscriber: dropped once its socket stayed full (WRITE_TIMEOUT), or still
    # connected with a valid prefix of the stream; either way the daemon kept no backlog
    stuck.setblocking(False)
    received = b""
    with contextlib.suppress(BlockingIOError, ConnectionError):
        while chunk := stuck.recv(1 << 20):
            received += chunk
    stuck.close()
    lines = received.split(b"\n")[:-1]
    assert all("event" in strict_json(x) or "result" in strict_json(x) for x in lines)
    assert sweep_state(live.home / "clusterd.db", "flood") == "done"


def test_a_client_that_vanishes_mid_reply_leaves_the_daemon_serving(
    live: Daemon, tmp_path: Path
) -> None:
    """A large reply (the trials of a big sweep), and the client resets the connection."""
    if sweep_state(live.home / "clusterd.db", "flood") is None:  # (run on its own)
        live.ctl("submit", str(fake_sweep(tmp_path, "flood", FLOOD)))
    wait_for(lambda: sweep_state(live.home / "clusterd.db", "flood") == "done", 60, "the sweep")
    for _ in range(5):
        s, _f = connect(live)
        s.sendall(b'{"id": 1, "op": "trials", "args": {"sweep": "flood"}}\n' * 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST, with replies on their way
    assert ping_time(live) < 2
    assert len(live.trials("flood")) == FLOOD


def test_a_full_request_then_half_close_still_gets_its_reply(live: Daemon) -> None:
    s, f = connect(live)
    with s:
        s.sendall(b'{"id": 1, "op": "ping"}\n{"id": 2, "op": "drivers"}\n')
        s.shutdown(socket.SHUT_WR)
        assert [strict_json(f.readline())["id"] for _ in range(2)] == [1, 2]
        assert f.readline() == b""  # then the daemon closes its side


def test_a_thousand_pipelined_requests_get_their_replies_in_order(live: Daemon) -> None:
    s, f = connect(live, timeout=30)
    with s:
        s.sendall(b"".join(b'{"id": %d, "op": "ping"}\n' % i for i in range(1000)))
        assert [strict_json(f.readline())["id"] for _ in range(1000)] == list(range(1000))


@pytest.mark.parametrize(
    "line",
    [
        b'{"id": NaN, "op": "ping"}',
        b'{"id": Infinity, "op": "ping"}',
        b'{"id": 1e400, "op": "ping"}',
        b'{"id": -0.0, "op": "ping"}',
        b'{"id": ' + b"9" * 5000 + b', "op": "ping"}',
        b'{"id": 1, "op": "trials", "args": {"sweep": NaN}}',
        b'{"id": 1, "op": "best", "args": {"sweep": "x", "n": 1e999}}',
        b'{"id": 1, "op": "best", "args": {"sweep": "x", "n": -Infinity}}',
        b'{"id": 1, "op": "show", "args": {"trial": "x/99999999999999999999999999"}}',
        b'{"id": 1, "op": "show", "args": {"trial": "\\u0000/\\ud800"}}',
        b'{"id": "\\ud800", "op": "ping"}',
        b'{"id": 1, "op": "ping", "args": {"a": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}}',
    ],
)
def test_odd_numbers_and_strings_get_one_strict_json_reply(live: Daemon, line: bytes) -> None:
    s, f = connect(live)
    with s:
        s.sendall(line + b'\n{"id": "next", "op": "ping"}\n')
        reply = strict_json(f.readline())
        assert set(reply) >= {"id", "ok"}
        if not reply["ok"]:
            assert "Traceback" not in reply["error"]["message"]
        assert strict_json(f.readline())["id"] == "next"  # the connection still works
    assert ping_time(live) < 2


def test_deeply_nested_request_gets_one_error_and_the_connection_lives(live: Daemon) -> None:
    s, f = connect(live)
    with s:
        s.sendall(b"[" * 100_000 + b'\n{"id": "next", "op": "ping"}\n')
        reply = strict_json(f.readline())
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
        assert strict_json(f.readline())["id"] == "next"


def test_stop_with_a_client_connected_logs_no_traceback(daemon: Daemon) -> None:
    s, _f = connect(daemon)
    with s:
        daemon.clusterd("stop")
    assert "Traceback" not in daemon.log(), daemon.log()[-1500:]


# ----------------------------------------------------------- the socket, client side


@contextlib.contextmanager
def impostor(home: Path, behaviour: str) -> Iterator[None]:
    """A socket that greets like clusterd, reads one request, then resets the connection
    (``reset``) or never answers (``silent``)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(home / "clusterd.sock"))
    server.listen(5)
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b'{"hello": "clusterd", "version": "0.1.0", "protocol": 1}\n')
        select.select([conn], [], [], 10)  # the request arrived (left unread)
        if behaviour == "silent":
            done.wait(30)
        conn.close()  # unread data: the client gets ECONNRESET

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(10)
        server.close()


def test_clusterctl_when_the_daemon_dies_mid_request(short_home: Path) -> None:
    client = Daemon(short_home)
    with impostor(short_home, "reset"):
        done = client.ctl("sweeps", check=False, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_clusterd_status_when_the_daemon_does_not_answer(short_home: Path) -> None:
    client = Daemon(short_home)
    with impostor(short_home, "silent"):
        done = client.clusterd("status", check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "answer" in done.stderr


# =========================================================================== events lines


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    base = tmp_path_factory.mktemp("ingest")
    engine: Engine = dbmod.make_engine(f"sqlite:///{base / 'clusterd.db'}")
    dbmod.upgrade(engine)
    yield Store(engine), base
    engine.dispose()


class Attempt:
    """One fresh sweep/trial/attempt in the store, and its events file."""

    def __init__(self, store: Store, base: Path) -> None:
        self.store = store
        name = f"f{uuid.uuid4().hex[:12]}"
        self.out = base / name
        spec: dict[str, Any] = {"name": name, "driver": "local", "source": str(base / "s.toml")}
        spec |= {"output_dir": str(self.out), "metric": {"name": "m", "mode": "min"}}
        sweep_id = store.create_sweep(spec, [({"x": 0}, "0")], None)
        with store.tx() as conn:
            self.trial_id = conn.execute(
                sql_select(T.c.id).where(T.c.sweep_id == sweep_id)
            ).scalar_one()
            store.add_attempts(
                conn,
                [
                    {"trial_id": self.trial_id, "number": 1, "token": name, "state": "running"}
                    | {"events_offset": 0, "cancel_requested": False}
                ],
            )
            self.attempt_id = conn.execute(sql_select(A.c.id).where(A.c.token == name)).scalar_one()
        self.adir = self.out / "0" / "attempt-1"
        self.adir.mkdir(parents=True)
        self.events = self.adir / "events.jsonl"
        self.events.touch()

    def append(self, data: bytes) -> None:
        with open(self.events, "ab") as fh:  # one write, as a trial would
            fh.write(data)

    def ingest(self, final: bool = False, crash: bool = False) -> None:
        """One pass of a freshly started daemon (cursor from the database); with
        ``crash``, killed before the commit."""
        with self.store.read() as conn:
            offset = conn.execute(
                sql_select(A.c.events_offset).where(A.c.id == self.attempt_id)
            ).scalar_one()
            trial = self.store.trial_by_id(conn, self.trial_id)
        cursor = AttemptCursor(
            attempt_id=self.attempt_id,
            trial_id=self.trial_id,
            number=1,
            attempt_dir=str(self.adir),
            offset=offset,
            metric="m",
            mode="min",
            last_step=trial.last_step,
            best_value=trial.best_value,
            best_step=trial.best_step,
        )
        with contextlib.suppress(_Crash), self.store.tx() as conn:
            ingest_attempt(self.store, conn, cursor, final=final)
            if crash:
                raise _Crash

    def stored(self) -> Counter[tuple[int, str, float]]:
        with self.store.read() as conn:
            rows = conn.execute(
                sql_select(M.c.step, M.c.name, M.c.value).where(M.c.trial_id == self.trial_id)
            )
            return Counter((s, n, v) for s, n, v in rows)

    def offset(self) -> int:
        with self.store.read() as conn:
            return int(
                conn.execute(
                    sql_select(A.c.events_offset).where(A.c.id == self.attempt_id)
                ).scalar_one()
            )


class _Crash(Exception):
    pass


Line = tuple[bytes, list[tuple[int, str, float]]]  # the line, and the rows it must give

finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=6)


@st.composite
def good_line(draw: st.DrawFn) -> Line:
    step = draw(st.one_of(st.integers(0, 100), st.just((1 << 63) - 1)))
    values = draw(st.dictionaries(names, finite, min_size=1, max_size=3))
    obj: dict[str, Any] = {"type": "metric", "step": step, "values": values}
    if draw(st.booleans()):
        obj["t"] = draw(finite)
    line = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()
    return line, [(step, k, v) for k, v in values.items()]


NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309", b"1" + b"0" * 400]


@st.composite
def bad_line(draw: st.DrawFn) -> Line:
    kind = draw(st.integers(0, 4))
    if kind == 0:  # garbage bytes
        line = draw(st.binary(max_size=80).filter(lambda b: b"\n" not in b))
    elif kind == 1:  # a non-finite metric value
        value = draw(st.sampled_from(NON_FINITE))
        line = b'{"type": "metric", "step": 1, "values": {"a": ' + value + b"}}"
    elif kind == 2:  # a bad step
        step = draw(st.sampled_from([b"-1", b"1.5", b'"3"', b"true", b"null", b"9" * 30]))
        line = b'{"type": "metric", "step": ' + step + b', "values": {"a": 1.0}}'
    elif kind == 3:  # a non-finite time
        t = draw(st.sampled_from(NON_FINITE[:5]))
        line = b'{"type": "metric", "step": 1, "t": ' + t + b', "values": {"a": 1.0}}'
    else:  # JSON that is no metric event
        line = draw(
            st.sampled_from(
                [b"[]", b'"metric"', b"{}", b'{"type": 7}', b'{"type": "metric"}', b"{" * 5000]
            )
        )
    return line, []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(st.one_of(good_line(), bad_line()), max_size=25),
    cuts=st.lists(st.floats(0, 1), max_size=8),
    crashes=st.lists(st.booleans(), min_size=10, max_size=10),
    tail=st.one_of(st.just(b""), good_line().map(lambda x: x[0]), bad_line().map(lambda x: x[0])),
)
def test_fuzzed_events_are_never_lost_nor_doubled(
    store: tuple[Store, Path],
    lines: list[Line],
    cuts: list[float],
    crashes: list[bool],
    tail: bytes,
) -> None:
    """Good, garbage and non-finite lines, written in pieces cut anywhere (a line may be
    half-written when the daemon reads), ingested by daemons that may die before their
    commit; then the attempt ends, perhaps with a last line its writer never finished."""
    attempt = Attempt(*store)
    stream = b"".join(line + b"\n" for line, _ in lines) + tail.replace(b"\n", b" ")
    points = sorted({0, len(stream), *(int(c * len(stream)) for c in cuts)})
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        attempt.append(stream[a:b])
        attempt.ingest(crash=crashes[i % len(crashes)])
    attempt.ingest(final=True)
    expected = Counter(row for _, rows in lines for row in rows)
    assert attempt.stored() == expected
    assert attempt.offset() == len(stream)


def test_a_write_split_at_every_byte_is_read_once(store: tuple[Store, Path]) -> None:
    """A small mixed stream, cut in two at every byte offset in turn."""
    lines = [
        b'{"type": "metric", "step": 0, "values": {"loss": 0.5, "acc": 1e308}}',
        b"not json at all \xff\xfe",
        b'{"type": "metric", "step": 1, "values": {"loss": NaN}}',
        b'{"type": "metric", "step": 2, "values": {"loss": 1e309}}',
        b"",
        b'{"type": "metric", "step": 3, "values": {"\xc3\xa9t\xc3\xa9": -0.0, "x": 5e-324}}',
        b'{"type": "checkpoint", "step": 3, "path": "/x/\xe2\x9c\x93"}',
        b'{"type": "metric", "step": 4, "values": {"loss": 0.25}}',
    ]
    stream = b"".join(line + b"\n" for line in lines)
    expected = Counter(
        [(0, "loss", 0.5), (0, "acc", 1e308), (3, "été", -0.0), (3, "x", 5e-324), (4, "loss", 0.25)]
    )
    for cut in range(len(stream) + 1):
        attempt = Attempt(*store)
        attempt.append(stream[:cut])
        attempt.ingest()
        attempt.append(stream[cut:])
        attempt.ingest(final=True)
        assert attempt.stored() == expected, cut
        assert attempt.offset() == len(stream)


WRITER = textwrap.dedent(
    """
    import os
    import time

    fd = os.open(os.environ["CLUSTERD_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    bad = [b"garbage", b'{"type": "metric", "step": 1, "values": {"a": NaN}}',
           b'{"type": "metric", "step": 1, "values": {"a": 1e309}}', b"\\xff\\xfe{"]
    for step in range(40):
        line = b'{"type": "metric", "step": %d, "values": {"loss": %r}}\\n' % (step, 1 / (step + 1))
        os.write(fd, line[:7])      # half a line: the daemon may read it now
        time.sleep(0.01)
        os.write(fd, line[7:])
        os.write(fd, bad[step % 4] + b"\\n")
    os.write(fd, b'{"type": "metric", "step": 99, "values"')  # killed mid-line, at the end
    """
)


def test_a_live_trial_writing_halves_and_garbage_loses_and_doubles_nothing(
    live: Daemon, tmp_path: Path
) -> None:
    """A real trial writes each line in two writes, garbage between, and dies mid-line."""
    (tmp_path / "w.py").write_text(WRITER)
    (tmp_path / "s.toml").write_text(
        f'name = "w"\ncommand = ["{sys.executable}", "w.py"]\n'
        '[metric]\nname = "loss"\n[params]\nx = [1, 2]\n'
    )
    live.ctl("submit", str(tmp_path / "s.toml"))
    trials = live.wait_sweep_done("w", 60)
    assert [t["state"] for t in trials] == ["completed", "completed"]
    assert [t["last_step"] for t in trials] == [39, 39]
    db = live.home / "clusterd.db"
    expected = Counter((step, "loss", 1 / (step + 1)) for step in range(40))
    ids = query(
        db, "select t.id from trials t join sweeps s on s.id = t.sweep_id where s.name = 'w'"
    )
    for (trial_id,) in ids:
        rows = query(db, "select step, name, value from metrics where trial_id = ?", trial_id)
        assert Counter(rows) == expected
        errors = [
            m for (m,) in query(db, "select message from trial_errors where trial_id = ?", trial_id)
        ]
        assert errors and any("truncated" in m for m in errors), errors


# =========================================================================== path values


def snapshot(root: Path, skip: Path | None = None) -> set[str]:
    """Every path under ``root`` (but not under ``skip``) with its size."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath).is_relative_to(skip):
            dirnames[:] = []
            continue
        for name in filenames:
            path = Path(dirpath) / name
            out.add(f"{path}:{path.stat().st_size}")
        out.add(dirpath)
    return out


@pytest.mark.parametrize("name", ["../x", "a/b", "x\ny", "", "/abs", "a" * 65, "ü"])
def test_bad_sweep_names_are_refused_and_write_nothing(
    live: Daemon, tmp_path: Path, name: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'name = {json.dumps(name)}\ncommand = ["true"]\n[params]\nx = [1]\n')
    before, sweeps = snapshot(tmp_path), live.ctl_json("sweeps")
    done = live.ctl("submit", str(path), check=False)
    assert done.returncode == 1 and "name" in done.stderr, done
    assert "Traceback" not in done.stderr
    assert snapshot(tmp_path) == before
    assert live.ctl_json("sweeps") == sweeps


@pytest.mark.parametrize("name", ["..", "."])
def test_dot_names_are_refused(live: Daemon, tmp_path: Path, name: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'name = "{name}"\ncommand = ["true"]\ndriver = "fake"\n[params]\nx = [1]\n')
    done = live.ctl("submit", str(path), check=False)
    assert done.returncode == 1 and "name" in done.stderr, done.stdout


TRIAL_ARGS = textwrap.dedent(
    """
    import json
    import os
    import sys

    from clusterd import trial

    out = os.path.join(os.environ["CLUSTERD_TRIAL_DIR"], "seen.json")
    with open(out, "w") as fh:
        json.dump({"argv": sys.argv[1:], "params": trial.params(),
                   "env": os.environ.get("ODD")}, fh)
    """
)


def injections(marker: Path) -> list[str]:
    return [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"; rm -rf {marker}.d; touch {marker}",
        f"| touch {marker}",
        f"&& touch {marker}",
        f"' ; touch {marker} ; '",
        f'" ; touch {marker} ; "',
        f"\ntouch {marker}\n",
        f"../../{marker.name}",
        "../../../etc/passwd",
        "--help",
        "{x}",
    ]


@pytest.mark.parametrize("setup", [None, "true"], ids=["exec", "with-setup"])
@pytest.mark.parametrize("form", ["list", "string"])
def test_param_values_never_reach_a_shell_nor_escape_the_output_dir(
    live: Daemon, tmp_path: Path, setup: str | None, form: str
) -> None:
    """Injection attempts as param values and env values, with a command that appends
    params (list form) or substitutes them into {x} (string form); with ``[env] setup`` the
    runner goes through bash. Each trial sees exactly its value; no marker appears;
    nothing is written outside the output dir."""
    marker = Path(tempfile.gettempdir()) / f"cd-pwned-{uuid.uuid4().hex}"
    values = injections(marker)
    (tmp_path / "t.py").write_text(TRIAL_ARGS)
    command = (
        f'["{sys.executable}", "t.py"]'
        if form == "list"
        else json.dumps(f"{sys.executable} t.py --value={{x}} {{x}}")
    )
    env = {"ODD": f"$(touch {marker}.env)"}
    name = f"inj-{form}-{'setup' if setup else 'exec'}"
    lines = [
        f'name = "{name}"',
        f"command = {command}",
        "max_concurrent = 2",
        "[params]",
        f"x = {json.dumps(values)}",
        "[env]",
        f"vars = {{ ODD = {json.dumps(env['ODD'])} }}",
    ]
    if setup:
        lines.append(f"setup = {json.dumps(setup)}")
    (tmp_path / "s.toml").write_text("\n".join(lines) + "\n")
    out = tmp_path / "runs" / name
    before = snapshot(tmp_path)
    live.ctl("submit", str(tmp_path / "s.toml"))
    trials = live.wait_sweep_done(name, 90)
    assert [t["state"] for t in trials] == ["completed"] * len(values), trials
    for i, value in enumerate(values):
        seen = json.loads((out / str(i) / "seen.json").read_text())
        expected = [f"--x={value}"] if form == "list" else [f"--value={value}", value]
        assert seen["argv"] == expected
        assert seen["params"] == {"x": value} and seen["env"] == env["ODD"]
    leaked = [p for p in Path(tempfile.gettempdir()).glob(f"{marker.name}*")]
    assert not leaked, f"a shell ran a param value: {leaked}"
    assert snapshot(tmp_path, skip=out) == before | {str(out.parent)}


def test_output_dir_with_a_newline_keeps_everything_inside_it(live: Daemon, tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(TRIAL_ARGS)
    (tmp_path / "s.toml").write_text(
        f'name = "nl"\ncommand = ["{sys.executable}", "t.py"]\n'
        'output_dir = "runs/a\\nb"\n[params]\nx = ["../../../y", "/abs"]\n'
        '[env]\nvars = { ODD = "\\n" }\n'
    )
    out = tmp_path / "runs" / "a\nb"
    before = snapshot(tmp_path)
    live.ctl("submit", str(tmp_path / "s.toml"))
    trials = live.wait_sweep_done("nl", 60)
    assert [t["state"] for t in trials] == ["completed", "completed"]
    assert json.loads((out / "0" / "seen.json").read_text())["params"] == {"x": "../../../y"}
    assert snapshot(tmp_path, skip=out) == before | {str(out.parent)}
