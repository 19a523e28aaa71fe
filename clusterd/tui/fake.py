"""``FakeBackend``: fixed, deterministic data in place of a daemon.

Used by the snapshot tests, the screenshots in docs/ and the benchmark's
in-process mode, the way ``clusterd/testing/fake_driver.py`` stands in for a scheduler: every op
the TUI sends gets a reply of the daemon's shape (docs/protocol.md), built from
seeded random numbers around the fixed clock ``NOW``, so two runs draw the same
screen. ``emit`` pushes events to open subscriptions, as the daemon would.
"""

from __future__ import annotations

import math
import queue
import random
import threading
from collections.abc import Iterator
from typing import Any

from clusterd.errors import InvalidRequest, NotFound
from clusterd.protocol import TRIAL_COLUMNS
from clusterd.tui.client import LogChunk

__all__ = ["NOW", "FakeBackend"]

#: the fake clock: 2024-11-24 14:53:20 UTC
NOW = 1732460000.0
#: a stopped trial's grace period, as the daemon's default (``[early_stopping] grace_period``)
GRACE = 30.0

_LRS = (0.1, 0.03, 0.01, 0.003)
_DEPTHS = (2, 4, 8)
_OPTS = ("sgd", "adam", "adamw", "lion")


def _state_of(index: int, total: int) -> str:
    """A plausible mid-sweep spread of states, fixed per index."""
    frac = index / max(1, total)
    r = random.Random(index * 7919).random()
    if frac < 0.45:
        return "failed" if r < 0.07 else "stopped" if r < 0.17 else "completed"
    if frac < 0.55:
        return "cancelled" if r < 0.05 else "running"
    if frac < 0.6:
        return "queued"
    return "pending"


def _curve(index: int, steps: int) -> list[list[float]]:
    rng = random.Random(index)
    floor, scale, speed = 0.18 + rng.random() * 0.25, 1.5 + rng.random(), 6 + rng.random() * 14
    return [
        [s, round(floor + scale * math.exp(-s / speed) + rng.gauss(0, 0.01), 4)]
        for s in range(steps)
    ]


class _Sweep:
    def __init__(self, name: str, driver: str, total: int, state: str, metric: bool) -> None:
        self.name, self.driver, self.state = name, driver, state
        self.metric = "val_loss" if metric else None
        self.created_at = NOW - 3 * 3600 - total * 2
        self.trials = [self._trial(i, total) for i in range(total)]

    def _trial(self, i: int, total: int) -> dict[str, Any]:
        state = _state_of(i, total) if self.state == "active" else "completed"
        steps = {"completed": 40, "stopped": 12, "failed": 7, "running": 5 + i % 30}.get(state, 0)
        if state == "cancelled":
            steps = 3
        curve = _curve(i, steps) if self.metric else []
        best = min(curve, key=lambda p: p[1]) if curve else None
        rng = random.Random(i + 17)
        params: dict[str, Any] = {
            "lr": _LRS[i % 4],
            "depth": _DEPTHS[i // 4 % 3],
            "optimizer": _OPTS[i // 12 % 4],
            "seed": i // 48,
            "width": 64 * (1 + rng.randrange(8)),
        }
        attempts = 0 if state == "pending" else 1 + (i % 5 == 0) + (state == "failed")
        return {
            "sweep": self.name,
            "index": i,
            "name": f"{self.name}/{i}",
            "state": state,
            "attempts": attempts,
            "failures": 1 if state == "failed" else 0,
            "resumes": 1 if i % 5 == 0 and attempts > 1 else 0,
            "last_step": curve[-1][0] if curve else None,
            "last_value": curve[-1][1] if curve else None,
            "best_value": best[1] if best else None,
            "best_step": best[0] if best else None,
            "reason": _reason(state, i),
            "stop_decision": _median_stop(best) if state == "stopped" and best else None,
            "params": params,
            "updated_at": NOW - 60,
            "runtime_s": 0.0 if attempts == 0 else 60.0 * (5 + i % 50),
            "curve": curve,
            # the daemon's idle-GPU watch flagged it ([gpu] idle_warning): lr-depth/23
            "gpu_idle_since": NOW - 2400 if state == "running" and i % 8 == 7 else None,
        }

    def view(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        finished = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled", "stopped"))
        bests = [t["best_value"] for t in self.trials if t["best_value"] is not None]
        return {
            "name": self.name,
            "driver": self.driver,
            "state": self.state,
            "trials": len(self.trials),
            "planned": len(self.trials),
            "search": "grid",
            "early_stopping": "median" if counts.get("stopped") else "none",
            "counts": counts,
            "finished": finished,
            "metric": self.metric,
            "mode": "min" if self.metric else None,
            "best": min(bests) if bests else None,
            "output_dir": f"/scratch/ada/runs/{self.name}",
            "created_at": self.created_at,
            "updated_at": NOW - 5,
        }


def _median_stop(best: list[float]) -> dict[str, Any]:
    """A stop decision of the shape the median rule records (clusterd/stopping/)."""
    step, value = int(best[0]), best[1]
    return {
        "rule": "median",
        "step": step,
        "value": value,
        "threshold": 0.412,
        "reason": f"best {value:.6g} by step {step} is worse than the median 0.412 "
        "of 18 other trials at that step",
        "at": NOW - 1500,
        "grace": GRACE,
    }


def _reason(state: str, i: int) -> str | None:
    return {
        "running": f"started on gpu{i % 4:02d}",
        "queued": "submitted",
        "failed": "exit code 1 (retries used up)",
        "stopped": "stopped early",
        "cancelled": "cancelled by the user",
        "completed": "exit code 0",
    }.get(state)


_TRIAL_KEYS = ("sweep", "name", *TRIAL_COLUMNS)


class _FakeStream:
    def __init__(self, backend: FakeBackend, sweep: str | None) -> None:
        self.backend, self.sweep = backend, sweep
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            event = self.queue.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        self.queue.put(None)


class FakeBackend:
    """A daemon made of fixed data; ``calls`` records every request, for tests."""

    address = "/home/ada/.local/share/clusterd/clusterd.sock"

    def __init__(self, big: int = 2000) -> None:
        self.sweeps = {
            s.name: s
            for s in (
                _Sweep("lr-depth", "local", 48, "active", metric=True),
                _Sweep("quickstart", "local", 6, "done", metric=True),
                _Sweep("big-grid", "slurm", big, "active", metric=True),
            )
        }
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.streams: list[_FakeStream] = []
        self.unreachable = False
        self._lock = threading.Lock()

    # -- Backend ---------------------------------------------------------------

    def call(self, op: str, **args: Any) -> Any:
        from clusterd.errors import DaemonUnreachable

        if self.unreachable:
            raise DaemonUnreachable("daemon unreachable")
        with self._lock:
            self.calls.append((op, args))
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise InvalidRequest(f"unknown op {op!r}")
        return handler(**args)

    def subscribe(self, sweep: str | None) -> _FakeStream:
        from clusterd.errors import DaemonUnreachable

        if self.unreachable:
            raise DaemonUnreachable("daemon unreachable")
        stream = _FakeStream(self, sweep)
        with self._lock:
            self.streams.append(stream)
        return stream

    def read_log(self, path: str, offset: int | None) -> LogChunk:
        lines = [
            f"[{step:04d}] epoch {step // 10} step {step} loss {value:.4f} lr 0.01"
            for step, value in _curve(7, 40)
        ]
        text = "\n".join(lines) + "\n"
        if path.endswith("stderr"):
            text = "warning: torch.compile is slow on first step\n"
        return LogChunk("" if offset else text, len(text), reset=not offset)

    def close(self) -> None:
        with self._lock:
            streams, self.streams = self.streams, []
        for s in streams:
            s.close()

    def emit(self, *events: dict[str, Any]) -> None:
        """Send events to every open subscription (``sweep_id`` 1 is lr-depth, and so on).

        A ``trial`` event changes the fake's own data first, as a daemon commits before it
        publishes: a screen that re-reads the trial afterwards sees the new state."""
        for event in events:
            self._commit(event)
        with self._lock:
            streams = list(self.streams)
        for stream in streams:
            for event in events:
                stream.queue.put(event)

    def _commit(self, event: dict[str, Any]) -> None:
        names = list(self.sweeps)
        sweep_id, index = event.get("sweep_id"), event.get("index")
        if event.get("type") != "trial" or not isinstance(sweep_id, int):
            return
        if not 1 <= sweep_id <= len(names) or not isinstance(index, int):
            return
        trials = self.sweeps[names[sweep_id - 1]].trials
        if 0 <= index < len(trials) and isinstance(event.get("state"), str):
            trials[index].update(state=event["state"], reason=event.get("reason"))

    # -- ops ---------------------------------------------------------------------

    def _sweep(self, name: str) -> _Sweep:
        if name not in self.sweeps:
            raise NotFound(f"no sweep named {name!r}")
        return self.sweeps[name]

    def _trial(self, trial: str) -> tuple[_Sweep, dict[str, Any]]:
        name, _, index = trial.rpartition("/")
        sweep = self._sweep(name)
        if not index.isdigit() or int(index) >= len(sweep.trials):
            raise NotFound(f"sweep {name!r} has no trial {index}")
        return sweep, sweep.trials[int(index)]

    def _op_ping(self) -> dict[str, Any]:
        return {"pong": True, "version": "0.1.0"}

    def _op_sweeps(self) -> list[dict[str, Any]]:
        return [s.view() for s in self.sweeps.values()]

    def _op_trials(self, sweep: str, state: str | None = None) -> list[dict[str, Any]]:
        return [
            {k: t[k] for k in _TRIAL_KEYS} | _idle(t)
            for t in self._sweep(sweep).trials
            if state is None or t["state"] == state
        ]

    def _op_export(self, sweep: str) -> dict[str, Any]:
        rows = [
            {"trial": t["name"], "index": t["index"], "state": t["state"], **t["params"]}
            | {"runtime_s": t["runtime_s"]}
            for t in self._sweep(sweep).trials
        ]
        return {"columns": ["trial", "index", "state", "runtime_s"], "rows": rows}

    def _op_gpus(self, sweep: str) -> list[dict[str, Any]]:
        out = []
        for t in self._sweep(sweep).trials:
            if t["attempts"]:
                for gpu in (0, 1):
                    out.append({"trial": t["name"], "gpu": gpu, "util_avg": _util(t, gpu)})
        return out

    def _op_show(self, trial: str) -> dict[str, Any]:
        sweep, t = self._trial(trial)
        view = {k: t[k] for k in _TRIAL_KEYS}
        i = t["index"]
        base = f"{sweep.view()['output_dir']}/{i}"
        attempts = [_attempt(n, t, base) for n in range(1, t["attempts"] + 1)]
        view.update(
            trial_dir=base,
            metric=sweep.metric,
            mode="min",
            attempt_list=attempts,
            checkpoints=[
                {"attempt": 1, "step": 10, "path": f"{base}/checkpoints/step10.pt", "t": NOW - 900}
            ]
            if t["resumes"]
            else [],
            metrics={"val_loss": {"step": t["last_step"], "value": t["last_value"]}}
            if t["curve"]
            else {},
            errors=[],
            transitions=_transitions(t),
            code={"git": "3f2c1e9", "git_dirty": False, "python": "3.11.9"},
            gpu_list=[_gpu_figures(t, n, g) for n in range(1, t["attempts"] + 1) for g in (0, 1)],
            **_idle(t),
        )
        return view

    def _op_metrics(self, trial: str, **unused: Any) -> dict[str, Any]:
        sweep, t = self._trial(trial)
        with_values = [x for x in sweep.trials if x["best_value"] is not None]
        best = min(with_values, key=lambda x: x["best_value"]) if with_values else None
        median = []
        for step in range(40):
            vals = sorted(x["curve"][step][1] for x in with_values if len(x["curve"]) > step)
            if vals:
                median.append([step, vals[len(vals) // 2]])
        return {
            "trial": trial,
            "name": sweep.metric,
            "mode": "min",
            "names": ["acc", "val_loss"],
            "points": t["curve"],
            "best": {"trial": best["name"], "points": best["curve"]} if best else None,
            "median": median,
            "median_over": len(with_values),
        }

    def _op_gpu_samples(self, trial: str, **unused: Any) -> dict[str, Any]:
        _, t = self._trial(trial)
        if not t["attempts"]:
            return {"trial": trial, "attempt": None, "gpus": []}
        gpus = []
        for gpu in (0, 1):
            util = [60 + 35 * math.sin((k + gpu * 9) / 6) ** 2 for k in range(60)]
            mem = [30000 + 400 * k + gpu * 2000 for k in range(60)]
            gpus.append({"gpu": gpu, "t": [], "util": util, "mem_used": mem, "mem_total": 81920.0})
        return {"trial": trial, "attempt": t["attempts"], "gpus": gpus}

    def _op_logs(self, trial: str, stderr: bool = False, attempt: int | None = None) -> Any:
        sweep, t = self._trial(trial)
        if not t["attempts"]:
            raise NotFound(f"trial {trial} has not started yet (state {t['state']})")
        n = attempt or t["attempts"]
        stream = "stderr" if stderr else "stdout"
        path = f"{sweep.view()['output_dir']}/{t['index']}/attempt-{n}/{stream}"
        return {"path": path, "attempt": n, "live": t["state"] == "running", "state": t["state"]}

    def _op_stop(self, trial: str) -> dict[str, Any]:
        """Record a manual stop decision and push its ``stop`` event, as the daemon does;
        a live trial ends later (a test ``emit``s that), a pending one at once."""
        sweep, t = self._trial(trial)
        if t["state"] in ("completed", "failed", "cancelled", "stopped"):
            raise InvalidRequest(f"trial {trial} has already ended ({t['state']}); nothing to stop")
        decision = {
            "rule": "manual",
            "step": t["last_step"],
            "value": t["best_value"],
            "threshold": None,
            "reason": "stopped by hand",
            "at": NOW,
            "grace": GRACE,
        }
        t["stop_decision"] = decision
        sweep_id = list(self.sweeps).index(sweep.name) + 1
        self.emit({"type": "stop", "sweep_id": sweep_id, "index": t["index"], "decision": decision})
        if t["state"] == "pending":
            self.emit(
                {"type": "trial", "sweep_id": sweep_id, "index": t["index"], "from": "pending"}
                | {"state": "stopped", "reason": "stopped by hand", "t": NOW}
            )
        return {"trial": trial, "stopping": True, "grace": GRACE}

    def _op_cancel(self, target: str) -> dict[str, int]:
        return {"cancelled": 0, "cancelling": 1}

    def _op_relaunch(self, sweep: str, which: str = "failed") -> dict[str, int]:
        return {"relaunched": sum(t["state"] == "failed" for t in self._sweep(sweep).trials)}


def _util(t: dict[str, Any], gpu: int) -> float:
    """A trial's mean utilisation of one GPU (2 % for a trial flagged idle)."""
    return 2.0 if t["gpu_idle_since"] else float(55 + (t["index"] * 13 + gpu * 7) % 45)


def _idle(t: dict[str, Any]) -> dict[str, Any]:
    """``gpu_idle_since`` of a trial the daemon flagged idle (absent otherwise)."""
    return {"gpu_idle_since": t["gpu_idle_since"]} if t["gpu_idle_since"] else {}


def _gpu_figures(t: dict[str, Any], attempt: int, gpu: int) -> dict[str, Any]:
    """One ``gpu_list`` entry of ``show``: the GPU's figures over one attempt."""
    util = _util(t, gpu)
    return {
        "attempt": attempt,
        "gpu": gpu,
        "samples": 54,
        "util_mean": util,
        "util_peak": min(100.0, util + 38),
        "mem_peak_mib": 53600 + gpu * 2000,
        "mem_total_mib": 81920,
        "energy_wh": round(0.5 * (80 + 2.6 * util), 1),
    }


def _attempt(n: int, t: dict[str, Any], base: str) -> dict[str, Any]:
    last = n == t["attempts"]
    outcome = {
        "completed": "completed",
        "failed": "failed",
        "stopped": "stopped",
        "cancelled": "cancelled",
    }.get(t["state"])
    if not last:
        outcome = "resume" if t["resumes"] else "failed"
    started = NOW - 3600 + n * 600
    running = last and t["state"] == "running"
    return {
        "number": n,
        "state": "running" if running else "ended",
        "outcome": None if running else outcome,
        "exit_code": None if running else {"failed": 1, "resume": 3}.get(outcome or "", 0),
        "signal": None,
        "job_id": f"{41200 + t['index'] * 3 + n}",
        "host": f"gpu{t['index'] % 4:02d}",
        "reason": None if running else _attempt_reason(outcome),
        "token": f"tok{n}",
        "submitted_at": started - 20,
        "started_at": started,
        "ended_at": None if running else started + 540,
        "runtime": 540.0,
        "dir": f"{base}/attempt-{n}",
    }


def _attempt_reason(outcome: str | None) -> str:
    return {
        "completed": "exit code 0",
        "stopped": "stopped early",
        "cancelled": "cancelled by the user",
        "failed": "exit code 1",
    }.get(outcome or "", "exit code 3 (resume)")


def _transitions(t: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    at = NOW - 3700.0
    prev = "pending"
    for n in range(1, t["attempts"] + 1):
        for to, why in (
            ("queued", "submitted"),
            ("running", f"started on gpu{t['index'] % 4:02d}"),
        ):
            out.append({"from": prev, "to": to, "reason": why, "attempt": n, "t": at})
            prev, at = to, at + 20
        if n < t["attempts"]:
            out.append(
                {
                    "from": prev,
                    "to": "pending",
                    "reason": "exit code 3 (resume)",
                    "attempt": n,
                    "t": at + 540,
                }
            )
            prev, at = "pending", at + 560
    if t["state"] not in ("pending", "queued", "running"):
        out.append(
            {
                "from": prev,
                "to": t["state"],
                "reason": t["reason"],
                "attempt": t["attempts"] or None,
                "t": at + 500,
            }
        )
    return out
