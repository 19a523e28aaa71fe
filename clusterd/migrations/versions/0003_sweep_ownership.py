"""A sweep's files are its own: database identity, sweep uid, code provenance per attempt.

- ``meta`` (key/value) holds ``database_id``, a random identity written once, so that
  an output directory's marker can name the database its sweep belongs to (a fresh
  ``CLUSTERD_HOME`` or another PostgreSQL database is another owner).
- ``sweeps.uid``: a random identity per sweep; a removed sweep and a new one of the same
  name differ by it. Existing sweeps get one here.
- ``attempts.code_commit``/``code_dirty``/``code_diff``: the code each attempt ran (an
  attempt added by ``submit --extend`` or ``relaunch`` after new commits runs new code).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.bulk_insert(meta, [{"key": "database_id", "value": secrets.token_hex(16)}])
    op.add_column("sweeps", sa.Column("uid", sa.String(length=32), nullable=True))
    op.add_column("attempts", sa.Column("code_commit", sa.String(length=64), nullable=True))
    op.add_column("attempts", sa.Column("code_dirty", sa.Boolean(), nullable=True))
    op.add_column("attempts", sa.Column("code_diff", sa.Text(), nullable=True))
    if op.get_context().as_sql:
        return  # offline DDL: no rows to read
    sweeps = sa.table("sweeps", sa.column("id", sa.Integer()), sa.column("uid", sa.String()))
    conn = op.get_bind()
    for (sweep_id,) in conn.execute(sa.select(sweeps.c.id)).all():
        conn.execute(
            sweeps.update().where(sweeps.c.id == sweep_id).values(uid=secrets.token_hex(16))
        )


def downgrade() -> None:
    op.drop_column("attempts", "code_diff")
    op.drop_column("attempts", "code_dirty")
    op.drop_column("attempts", "code_commit")
    op.drop_column("sweeps", "uid")
    op.drop_table("meta")
