"""GPU samples that stay small and say whose they are; sweep groups; a restorable trash.

- ``gpu_samples`` gains power, temperature and the attempt's own processes and memory
  on each GPU; its index becomes (trial, attempt, t), which the rollup and the views read by.
- ``gpu_minutes``: per-minute aggregates of raw samples older than the raw window.
- ``attempts.gpu_idle_since`` / ``gpu_idle_flagged``: the idle-GPU watch's state, kept
  across daemon restarts.
- ``sweeps.group`` (sweep.toml ``group``), ``sweeps.trashed_at`` / ``trash_path``
  (``rm --trash`` hides a sweep and keeps it restorable).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("gpu_samples", sa.Column("power_w", sa.Float(), nullable=True))
    op.add_column("gpu_samples", sa.Column("temp_c", sa.Integer(), nullable=True))
    op.add_column("gpu_samples", sa.Column("own_procs", sa.Integer(), nullable=True))
    op.add_column("gpu_samples", sa.Column("own_mem", sa.Integer(), nullable=True))
    op.create_index("ix_gpu_samples_trial_attempt_t", "gpu_samples", ["trial_id", "attempt", "t"])
    op.drop_index("ix_gpu_samples_trial", table_name="gpu_samples")
    op.create_table(
        "gpu_minutes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("gpu", sa.Integer(), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("util_mean", sa.Float(), nullable=True),
        sa.Column("util_max", sa.Float(), nullable=True),
        sa.Column("mem_max", sa.Float(), nullable=True),
        sa.Column("mem_total", sa.Float(), nullable=True),
        sa.Column("power_mean", sa.Float(), nullable=True),
        sa.Column("energy_j", sa.Float(), nullable=True),
        sa.Column("own_mem_max", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "attempt", "gpu", "minute", name="uq_gpu_minutes"),
    )
    op.add_column("attempts", sa.Column("gpu_idle_since", sa.Float(), nullable=True))
    op.add_column(
        "attempts",
        sa.Column("gpu_idle_flagged", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("sweeps", sa.Column("group", sa.String(length=128), nullable=True))
    op.add_column("sweeps", sa.Column("trashed_at", sa.Float(), nullable=True))
    op.add_column("sweeps", sa.Column("trash_path", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sweeps", "trash_path")
    op.drop_column("sweeps", "trashed_at")
    op.drop_column("sweeps", "group")
    op.drop_column("attempts", "gpu_idle_flagged")
    op.drop_column("attempts", "gpu_idle_since")
    op.drop_table("gpu_minutes")
    op.create_index("ix_gpu_samples_trial", "gpu_samples", ["trial_id"])
    op.drop_index("ix_gpu_samples_trial_attempt_t", table_name="gpu_samples")
    op.drop_column("gpu_samples", "own_mem")
    op.drop_column("gpu_samples", "own_procs")
    op.drop_column("gpu_samples", "temp_c")
    op.drop_column("gpu_samples", "power_w")
