"""Many concurrent clients issuing a mix of requests to a live daemon, timed one by one.

Used by ``tests/stress/test_load.py`` (bounded, in CI) and ``benchmarks/bench_load.py``
(figures). Clients are threads spread over a few worker processes (one Python process
decoding every reply of 100 clients would measure its own GIL, not the daemon); each
keeps one connection, as the TUI does, and sends its next request as soon as the
previous one is answered. A latency is what the user of ``Client.call`` waits: send,
daemon, reply decoded.

    python -m tests.stress.loadgen '<json config>'   # one worker; prints its results
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# (weight, name) of the request mix; the names map to requests in _request().
MIX: tuple[tuple[int, str], ...] = (
    (10, "ping"),
    (10, "status"),
    (15, "sweeps"),
    (10, "trials small"),
    (10, "trials running"),
    (15, "show"),
    (10, "metrics"),
    (5, "best"),
    (5, "count (dry-run submit)"),
    (1, "trials 10,000"),
    (1, "submit"),
)


@dataclass
class Config:
    socket: str
    seconds: float
    clients: int
    big: str  # the sweep that runs during the load (many trials)
    big_trials: int
    small: str  # a finished sweep whose trials reported metrics
    small_trials: int
    count_file: str  # a sweep file for the dry-run submits
    submit_dir: str  # where clients write the sweep files they submit
    seed: int = 0


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    per_client: list[int] = field(default_factory=list)

    def merge(self, other: dict[str, Any]) -> None:
        for op, xs in other["latencies"].items():
            self.latencies.setdefault(op, []).extend(xs)
        self.errors.extend(other["errors"])
        self.per_client.extend(other["per_client"])

    def all(self) -> list[float]:
        return [x for xs in self.latencies.values() for x in xs]


def percentile(xs: Sequence[float], q: float) -> float:
    """Interpolated percentile, q in [0, 100]."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --------------------------------------------------------------------------- a client


def _request(
    cfg: Config, op: str, rng: random.Random, me: str, n: int
) -> tuple[str, dict[str, Any]]:
    """The protocol op and args of one request of kind ``op``."""
    if op == "trials small":
        return "trials", {"sweep": cfg.small}
    if op == "trials running":
        return "trials", {"sweep": cfg.big, "state": "running"}
    if op == "trials 10,000":
        return "trials", {"sweep": cfg.big}
    if op == "show":
        sweep, count = (cfg.big, cfg.big_trials) if rng.random() < 0.5 else (cfg.small, 0)
        count = count or cfg.small_trials
        return "show", {"trial": f"{sweep}/{rng.randrange(count)}"}
    if op == "metrics":
        return "metrics", {"trial": f"{cfg.small}/{rng.randrange(cfg.small_trials)}"}
    if op == "best":
        return "best", {"sweep": cfg.small, "n": 5}
    if op == "count (dry-run submit)":
        return "submit", {"path": cfg.count_file, "dry_run": True}
    if op == "submit":
        name = f"ld-{me}-{n}"
        path = Path(cfg.submit_dir) / f"{name}.toml"
        path.write_text(
            f'name = "{name}"\ncommand = ["true"]\ndriver = "fake"\n[params]\nx = [1, 2, 3]\n'
        )
        return "submit", {"path": str(path)}
    return op, {}


def _check(cfg: Config, op: str, args: dict[str, Any], result: Any) -> str | None:
    """What is wrong with a reply, if anything (a wrong answer is an error too)."""
    everything = op == "trials" and args.get("sweep") == cfg.big and "state" not in args
    if everything and len(result) != cfg.big_trials:
        return f"trials {cfg.big}: {len(result)} rows, not {cfg.big_trials}"
    running = op == "trials" and args.get("state") == "running"
    if running and any(t["state"] != "running" for t in result):
        return "trials --state running returned other states"
    if op == "show" and result.get("name") != args["trial"]:
        return f"show {args['trial']}: got {result.get('name')}"
    if op == "submit" and args.get("dry_run") and not result.get("count"):
        return f"dry-run submit: {result}"
    return None


def _client(cfg: Config, me: str, deadline: float, out: dict[str, Any], lock: Any) -> None:
    from clusterd.client import Client
    from clusterd.errors import ClusterdError

    rng = random.Random(f"{cfg.seed}-{me}")
    ops = [name for weight, name in MIX for _ in range(weight)]
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    n = 0
    try:
        with Client(cfg.socket, timeout=120) as client:
            while time.monotonic() < deadline:
                kind = rng.choice(ops)
                op, args = _request(cfg, kind, rng, me, n)
                t0 = time.perf_counter()
                try:
                    result = client.call(op, **args)
                except ClusterdError as exc:
                    errors.append(f"{kind}: {exc.code}: {exc.message}")
                    continue
                lat.setdefault(kind, []).append(time.perf_counter() - t0)
                n += 1
                problem = _check(cfg, op, args, result)
                if problem:
                    errors.append(problem)
    except Exception as exc:  # a client that cannot connect or crashes is an error too
        errors.append(f"client {me}: {exc!r}")
    with lock:
        for kind, xs in lat.items():
            out["latencies"].setdefault(kind, []).extend(xs)
        out["errors"].extend(errors)
        out["per_client"].append(n)


def worker(cfg: Config, ids: Sequence[int], start_at: float) -> dict[str, Any]:
    """Run clients ``ids`` in threads from ``start_at`` (time.time()) for cfg.seconds."""
    out: dict[str, Any] = {"latencies": {}, "errors": [], "per_client": []}
    lock = threading.Lock()
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + cfg.seconds
    threads = [
        threading.Thread(target=_client, args=(cfg, f"{os.getpid()}.{i}", deadline, out, lock))
        for i in ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def run(
    cfg: Config,
    processes: int = 4,
    env: dict[str, str] | None = None,
    during: Callable[[], None] | None = None,
) -> Results:
    """Run cfg.clients clients over ``processes`` worker processes; all start together.

    ``during`` is called about every second while they run (e.g. to sample RSS).
    """
    start_at = time.time() + 1.0 + 0.1 * processes  # every worker connected by then
    procs = []
    for p in range(processes):
        ids = list(range(p, cfg.clients, processes))
        payload = json.dumps({"cfg": cfg.__dict__, "ids": ids, "start_at": start_at})
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.stress.loadgen", payload],
                cwd=REPO,
                env={**(env or os.environ), "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    while any(p.poll() is None for p in procs):
        if during is not None and time.time() > start_at:
            during()
        time.sleep(1.0)
    results = Results()
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            results.errors.append(f"worker exited {p.returncode}: {err[-1000:]}")
            continue
        results.merge(json.loads(out))
    return results


if __name__ == "__main__":
    data = json.loads(sys.argv[1])
    result = worker(Config(**data["cfg"]), data["ids"], data["start_at"])
    print(json.dumps(result))
