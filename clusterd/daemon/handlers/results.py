"""``metric_table``: every metric value of a sweep, long form, for ``clusterd.client.metrics``.

Not downsampled (unlike ``metrics``, which feeds plots): a notebook asks for the data
itself. Rows are sent as lists, not objects: a 1,000-trial sweep of 100 steps and 3
metrics is 300,000 rows, and the keys would triple the reply.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from clusterd.daemon.handlers.context import Context, arg_opt_str, arg_str
from clusterd.daemon.store import M, T

__all__ = ["COLUMNS", "metric_table"]

COLUMNS = ["trial", "index", "attempt", "step", "name", "value"]


def metric_table(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "metric_table", "args": {"sweep": "x", "name": "val_loss"}}`` ->
    ``{"columns": ["trial", "index", "attempt", "step", "name", "value"],
    "rows": [["x/0", 0, 1, 0, "val_loss", 0.93], ...]}``, ordered by trial, metric name,
    step, then arrival; ``name`` (optional) keeps one metric. A step reported again
    after a resume appears once per report (``attempt`` tells them apart)."""
    sweep_name = arg_str(args, "sweep")
    only = arg_opt_str(args, "name")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, sweep_name)
        q = (
            select(T.c.index, M.c.attempt, M.c.step, M.c.name, M.c.value)
            .join(T, M.c.trial_id == T.c.id)
            .where(T.c.sweep_id == sweep.id)
        )
        if only:
            q = q.where(M.c.name == only)
        q = q.order_by(T.c.index, M.c.name, M.c.step, M.c.id)
        rows = [
            [f"{sweep_name}/{i}", i, attempt, step, name, value]
            for i, attempt, step, name, value in conn.execute(q)
        ]
    return {"columns": COLUMNS, "rows": rows}
