"""Index attempts by outcome.

``Store.failing_hosts`` (asked on every scheduling pass that submits, and by every
``sweeps`` request) looks for a sweep's failed, lost and timed-out attempts. Without
an index that is a scan of every attempt ever made; with it, of the few that failed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_attempts_outcome", "attempts", ["outcome"])


def downgrade() -> None:
    op.drop_index("ix_attempts_outcome", table_name="attempts")
