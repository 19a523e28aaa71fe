"""How fast is ``clusterctl tui``? First paint, keypress-to-repaint, idle CPU.

Usage::

    python benchmarks/bench_tui.py [--trials 10000] [--live 100] [--hz 10] [--keys 200]

What runs: a real daemon in a temporary ``CLUSTERD_HOME`` with one sweep of
``--trials`` trials on the ``fake`` driver (which keeps ``--live`` of them
"running" without starting processes), and the real TUI (``python -m
clusterd.tui SWEEP``) in a pseudo-terminal of 120x40, exactly as a user's
terminal would drive it. A writer thread appends metric lines to the live
trials' events files at ``--hz`` each, so the daemon ingests them and pushes
progress events to the TUI the whole time keys are pressed.

Figures, and the targets from the TUI issue:

* first paint: process start -> the 10,000-row table on screen       (<= 1 s)
* keypress -> repaint: a cursor move written to the pty -> the frame
  showing the new row number read back; median and p99              (median <= 50 ms)
* CPU while idle (no events, no keys), % of one core                 (<= 2 %)
* CPU while the live trials report (for information)

The repaint is detected by the view bar's "row N of 10000", which the TUI
redraws in the same frame as the moved cursor.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COLS, ROWS = 120, 40
TICK = os.sysconf("SC_CLK_TCK")


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CLUSTERD_HOME=str(home),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        TERM="xterm-256color",
        COLORTERM="truecolor",
    )
    env.pop("CLUSTERD_DB_URL", None)
    return env


def _call(home: Path, op: str, **args: Any) -> Any:
    sys.path.insert(0, str(REPO))
    from clusterd.tui.client import SocketBackend

    backend = SocketBackend(home / "clusterd.sock")
    try:
        return backend.call(op, **args)
    finally:
        backend.close()


def start_daemon(root: Path, trials: int, live: int) -> tuple[Path, Path]:
    home = root / "home"
    env = _env(home)
    subprocess.run([sys.executable, "-m", "clusterd.daemon.main", "start"], env=env, check=True)
    sweep = root / "sweep.toml"
    sweep.write_text(
        'name = "bench"\ncommand = "true"\ndriver = "fake"\n'
        f"max_concurrent = {live}\n"
        '[metric]\nname = "val_loss"\nmode = "min"\n'
        f"[params]\nseed = {list(range(trials))}\n"
        'lr = 0.001\noptimizer = "adamw"\nwidth = 512\ndepth = 12\n'
        "[drivers.fake]\nsteps_running = 100000000\n"
    )
    subprocess.run(
        [sys.executable, "-m", "clusterd.cli", "submit", str(sweep)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [t for t in _call(home, "trials", sweep="bench", state="running")]
        if len(running) >= live:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"only {len(running)} of {live} trials started on the fake driver")
    out = Path(_call(home, "sweeps")[0]["output_dir"])
    return home, out


class Writer(threading.Thread):
    """Appends one metric line per live trial ``hz`` times a second."""

    def __init__(self, files: list[Path], hz: float) -> None:
        super().__init__(daemon=True)
        self.files, self.period = files, 1.0 / hz
        self.stop = threading.Event()
        self.lines = 0

    def run(self) -> None:
        handles = [open(f, "a", buffering=1) for f in self.files]  # noqa: SIM115
        step, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            for i, fh in enumerate(handles):
                value = 0.2 + 2.0 / (1 + step / 20) + (i % 7) * 0.01
                fh.write(
                    json.dumps({"type": "metric", "step": step, "values": {"val_loss": value}})
                )
                fh.write("\n")
            self.lines += len(handles)
            step += 1
            next_at += self.period
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        for fh in handles:
            fh.close()


class Terminal:
    """The TUI in a pseudo-terminal; a thread drains its output with arrival times."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.fd = master
        self.buf = bytearray()
        self.lock = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            with self.lock:
                if not data:
                    self.lock.notify_all()
                    return
                self.buf += data
                self.lock.notify_all()

    def wait_for(self, marker: bytes, start: int, timeout: float = 30.0) -> float:
        """perf_counter() when ``marker`` had arrived after offset ``start``."""
        deadline = time.perf_counter() + timeout
        with self.lock:
            while marker not in self.buf[start:]:
                left = deadline - time.perf_counter()
                if left <= 0 or self.proc.poll() is not None:
                    tail = bytes(self.buf[-400:])
                    raise SystemExit(f"no {marker!r} from the TUI in {timeout} s; output: {tail!r}")
                self.lock.wait(left)
            return time.perf_counter()

    def send(self, keys: bytes) -> tuple[float, int]:
        with self.lock:
            offset = len(self.buf)
        at = time.perf_counter()
        os.write(self.fd, keys)
        return at, offset

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def close(self) -> None:
        try:
            os.write(self.fd, b"q")
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.fd)


def cpu_percent(term: Terminal, seconds: float) -> float:
    before, t0 = term.cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return 100 * (term.cpu_seconds() - before) / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--live", type=int, default=100)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cdb-", dir="/tmp"))
    home = root / "home"
    term: Terminal | None = None
    try:
        home, out = start_daemon(root, args.trials, args.live)
        running = _call(home, "trials", sweep="bench", state="running")
        files = [
            out / str(t["index"]) / f"attempt-{t['attempts']}" / "events.jsonl" for t in running
        ]
        n = args.trials
        term = Terminal([sys.executable, "-m", "clusterd.tui", "bench"], _env(home))
        first_frame = term.wait_for(b"Filter", 0) - term.started  # the footer: UI is up
        painted = term.wait_for(f"row 1 of {n}".encode(), 0)
        first_paint = painted - term.started

        writer = Writer(files, args.hz)
        writer.start()
        time.sleep(3.0)  # let events flow: the daemon ingests and pushes progress
        latencies = []
        for k in range(args.keys):
            at, offset = term.send(b"j")
            seen = term.wait_for(f"row {k + 2} of {n}".encode(), offset, timeout=10)
            latencies.append((seen - at) * 1000)
            time.sleep(0.05)
        busy_cpu = cpu_percent(term, 5.0)
        writer.stop.set()
        writer.join()
        time.sleep(3.0)  # the last progress events drain
        idle_cpu = cpu_percent(term, args.idle)
    finally:
        if term is not None:
            term.close()
        subprocess.run(
            [sys.executable, "-m", "clusterd.daemon.main", "stop"],
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)

    median, p99 = statistics.median(latencies), pct(latencies, 0.99)
    rows = [
        (
            "first paint, 10,000 trials" if n == 10_000 else f"first paint, {n} trials",
            f"{first_paint * 1000:.0f} ms",
            "<= 1000 ms",
            first_paint <= 1.0,
        ),
        ("  of which: start-up to the first frame", f"{first_frame * 1000:.0f} ms", "", None),
        ("keypress -> repaint, median", f"{median:.1f} ms", "<= 50 ms", median <= 50),
        ("keypress -> repaint, p99", f"{p99:.1f} ms", "(no target)", None),
        ("CPU while idle", f"{idle_cpu:.2f} %", "<= 2 %", idle_cpu <= 2.0),
        (
            f"CPU while {args.live} trials report at {args.hz:g} Hz",
            f"{busy_cpu:.1f} %",
            "(no target)",
            None,
        ),
    ]
    print(
        f"TUI benchmark: {n} trials, {args.live} live at {args.hz:g} Hz, "
        f"{args.keys} keypresses, {COLS}x{ROWS} pty, {os.cpu_count()} CPUs"
    )
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        target = f"target {target}" if target else ""
        print(f"  {name:<42} {value:>10}   {target:<19} {verdict}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
