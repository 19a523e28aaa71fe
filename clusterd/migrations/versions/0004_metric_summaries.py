"""Summarise each trial's metrics as they are stored.

``metric_summaries`` holds, per trial and metric name, the last value stored (its step
and attempt), the lowest, the highest and how many there are. ``trials``, ``export``,
``best`` and ``show`` read it instead of aggregating every value in ``metrics`` (a
10,000-trial sweep of 5 metrics x 20 steps: 50,000 rows read instead of 1,000,000).
``Store.add_metrics`` keeps it up to date in the transaction that stores the values.

The rows already stored are summarised here, with the rule the views used before: the
last value is the latest stored (largest ``metrics.id``), so an upgraded database shows
the same numbers. Offline (``--sql``) this is one ``INSERT ... SELECT`` in the script.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    summaries = op.create_table(
        "metric_summaries",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt", sa.Integer(), nullable=False),
        sa.Column("lowest", sa.Float(), nullable=False),
        sa.Column("highest", sa.Float(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trial_id", "name"),
    )
    metrics = sa.table(
        "metrics",
        sa.column("id", sa.Integer()),
        sa.column("trial_id", sa.Integer()),
        sa.column("attempt", sa.Integer()),
        sa.column("step", sa.BigInteger()),
        sa.column("name", sa.String()),
        sa.column("value", sa.Float()),
    )
    groups = (
        sa.select(
            metrics.c.trial_id,
            metrics.c.name,
            sa.func.max(metrics.c.id).label("last_id"),
            sa.func.min(metrics.c.value).label("lo"),
            sa.func.max(metrics.c.value).label("hi"),
            sa.func.count().label("n"),
        )
        .group_by(metrics.c.trial_id, metrics.c.name)
        .subquery("g")
    )
    rows = sa.select(
        groups.c.trial_id,
        groups.c.name,
        metrics.c.value,
        metrics.c.step,
        metrics.c.attempt,
        groups.c.lo,
        groups.c.hi,
        groups.c.n,
    ).join_from(groups, metrics, metrics.c.id == groups.c.last_id)
    columns = [
        "trial_id",
        "name",
        "last_value",
        "last_step",
        "last_attempt",
        "lowest",
        "highest",
        "count",
    ]
    op.execute(summaries.insert().from_select(columns, rows))


def downgrade() -> None:
    op.drop_table("metric_summaries")
