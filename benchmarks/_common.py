"""Shared plumbing for the benchmark scripts (not a benchmark itself).

- ``workdir()``: a short temp dir under /tmp (a Unix socket path must fit in 108 bytes),
  removed afterwards;
- ``Daemon``: a real ``clusterd`` daemon in its own ``CLUSTERD_HOME`` and ``clusterctl``
  run as a process, with a cleanup that stops the daemon and kills whatever processes
  the benchmark left behind (trials keep running when the daemon stops, by design);
- ``write_sweep()``: a grid sweep file of N trials;
- statistics (median, percentiles) and the result table every script prints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clusterd.testing.waiting import wait_for as wait_for  # one wait, shared with the tests

REPO = Path(__file__).resolve().parent.parent

#: a trial that never finishes by itself; params are appended as --key=value, which
#: ``sh -c`` takes as $0, $1, ... and ignores
IDLE_COMMAND = ("sh", "-c", "exec sleep 3600")

#: bytecode cache of the processes the benchmarks start (see bench_env)
PYCACHE = f"/tmp/clusterd-bench-pycache-{os.getuid()}"


# --------------------------------------------------------------------------- CLI


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line; also makes SIGTERM/SIGINT run the cleanups (finally blocks)."""
    signal.signal(signal.SIGTERM, _exit_on_term)
    signal.signal(signal.SIGINT, _exit_on_term)
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a figure")
    return p


def header(title: str, quick: bool) -> None:
    import platform

    mode = "QUICK (smoke test sizes; figures are not comparable)" if quick else "full"
    print(f"== {title} ==")
    print(
        f"{_dt.date.today().isoformat()}  python {platform.python_version()}  "
        f"{os.cpu_count()} cpus  mode: {mode}",
        flush=True,
    )


# --------------------------------------------------------------------------- stats


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile, q in [0, 100]."""
    s = sorted(xs)
    if not s:
        return float("nan")
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.1f} µs"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


# --------------------------------------------------------------------------- table


class Table:
    """figure | clusterd | baseline | ratio | target | result."""

    COLUMNS = ("figure", "clusterd", "baseline", "ratio", "target", "result")

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, ...]] = []
        self.notes: list[str] = []

    def add(
        self,
        figure: str,
        value: str,
        baseline: str = "-",
        ratio: str = "-",
        target: str = "-",
        ok: bool | None = None,
    ) -> None:
        result = "-" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append((figure, value, baseline, ratio, target, result))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print(self) -> None:
        rows = [self.COLUMNS, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.COLUMNS))]
        line = "  ".join("-" * w for w in widths)
        print()
        print(f"{self.title}")
        for i, row in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print(line)
        for n in self.notes:
            print(f"note: {n}")
        misses = sum(1 for r in self.rows if r[-1] == "MISS")
        print(f"summary: {len(self.rows)} figures, {misses} MISS", flush=True)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def workdir(prefix: str = "cdb-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        kill_processes_under(path)
        shutil.rmtree(path, ignore_errors=True)


def write_sweep(
    path: Path,
    name: str,
    n: int,
    command: Sequence[str] | str = IDLE_COMMAND,
    max_concurrent: int = 1,
    driver: str = "local",
    metric: str | None = "loss",
    extra: str = "",
) -> Path:
    """A grid sweep of exactly ``n`` trials: ``lr`` (100 values) x ``seed`` when n % 100 == 0."""
    if n % 100 == 0 and n >= 100:
        axes = {"lr": [round(1e-4 * (i + 1), 6) for i in range(100)], "seed": list(range(n // 100))}
    else:
        axes = {"x": list(range(n))}
    cmd = json.dumps(list(command)) if not isinstance(command, str) else json.dumps(command)
    lines = [
        f'name = "{name}"',
        f"command = {cmd}",
        f'driver = "{driver}"',
        f"max_concurrent = {max_concurrent}",
        f'output_dir = "{path.parent / ("runs-" + name)}"',
    ]
    if metric:
        lines += ["", "[metric]", f'name = "{metric}"', 'mode = "min"']
    lines += ["", "[params]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in axes.items()]
    lines.append('tag = "bench"')
    if extra:
        lines += ["", extra]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read()
    except OSError:
        return False


def bench_env(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every process a benchmark starts.

    Bytecode caching on, as in a normal install: this sandbox exports
    PYTHONDONTWRITEBYTECODE=1, which would make every clusterctl, runner and daemon start
    recompile clusterd from source (about +10 ms per process start). The cache goes to
    ``PYCACHE`` (PYTHONPYCACHEPREFIX), so nothing is written into the source tree; it is
    a cache, kept between runs (delete it at will); the warm-up runs fill it.
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


def kill_processes_under(root: Path) -> int:
    """SIGKILL every process of ours whose argv or environment mentions ``root``."""
    me = os.getpid()
    needle = str(root)
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        if needle in _cmdline(pid) or _environ_has(pid, needle.encode()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one process run, from spawn to exit.

    CPU time is what the process itself cost; on a loaded 2-core machine wall time also
    holds the time it waited for a core.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def clusterctl_argv() -> list[str]:
    """The installed ``clusterctl`` console script (what a user runs)."""
    script = Path(sys.executable).parent / "clusterctl"
    if script.exists():
        return [str(script)]
    found = shutil.which("clusterctl")
    return [found] if found else [sys.executable, "-m", "clusterd.cli"]


class Daemon:
    """A real daemon in ``<root>/h``; clusterctl run as a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "h"
        self.env = {
            **bench_env(root),
            "CLUSTERD_HOME": str(self.home),
            # the test-only fake driver (bench_ingest, bench_tui), and no user config file
            "CLUSTERD_PLUGINS": "clusterd.testing.fake_driver",
            "CLUSTERD_CONFIG": str(root / "config.toml"),
        }
        self.env.pop("CLUSTERD_DB_URL", None)
        self.ctl_argv = clusterctl_argv()

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "clusterd.daemon.main", "start"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"clusterd start failed: {proc.stderr.strip()}\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return int((self.home / "clusterd.pid").read_text())

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.ctl_argv, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"clusterctl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json").stdout)

    def call(self, op: str, **args: Any) -> Any:
        """One request over the socket, in this process (no clusterctl start-up cost)."""
        from clusterd.client import Client

        with Client(self.home / "clusterd.sock", timeout=300) as c:
            return c.call(op, **args)

    def log_tail(self, n: int = 20) -> str:
        path = self.home / "clusterd.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = self.pid
        with contextlib.suppress(Exception):
            subprocess.run(
                [sys.executable, "-m", "clusterd.daemon.main", "stop"],
                env=self.env,
                capture_output=True,
                timeout=90,
                stdin=subprocess.DEVNULL,
            )
        if pid is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def cancel_all(self) -> None:
        """Cancel every active sweep (kills running trials through the driver)."""
        with contextlib.suppress(Exception):
            for s in self.call("sweeps"):
                if s["state"] == "active":
                    self.call("cancel", target=s["name"])

    def cleanup(self) -> None:
        self.cancel_all()
        self.stop()
        kill_processes_under(self.root)
