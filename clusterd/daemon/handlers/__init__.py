"""Request handlers: one function per op, one flat dispatch table.

Each handler takes the daemon ``Context`` and the request's ``args`` dict and
returns a JSON-ready result (or an awaitable of one), raising ``ClusterdError``
subclasses for anything the user should read. Docstrings show the wire format.
"""

from __future__ import annotations

from clusterd.daemon.handlers import metrics, results, submit, sweeps, system, trials
from clusterd.daemon.handlers.context import Context
from clusterd.daemon.handlers.stream import subscribe
from clusterd.protocol import OPS

__all__ = ["HANDLERS", "Context", "subscribe"]

HANDLERS = {
    "ping": system.ping,
    "status": system.status,
    "shutdown": system.shutdown,
    "drivers": system.drivers,
    "cluster": system.cluster,
    "submit": submit.submit,
    "sweeps": sweeps.list_sweeps,
    "cancel": sweeps.cancel,
    "relaunch": sweeps.relaunch,
    "rm": sweeps.rm,
    "trash": sweeps.list_trash,
    "restore": sweeps.restore,
    "export": sweeps.export,
    "best": sweeps.best,
    "gpus": sweeps.gpus,
    "metric_table": results.metric_table,
    "trials": trials.list_trials,
    "show": trials.show,
    "logs": trials.logs,
    "stop": trials.stop,
    "metrics": metrics.metrics,
    "gpu_samples": metrics.gpu_samples,
}

assert set(HANDLERS) | {"subscribe"} == OPS, "every op needs a handler"
