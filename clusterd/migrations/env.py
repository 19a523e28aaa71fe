"""Alembic environment for clusterd.

The daemon runs migrations on its own connection, passed in
``config.attributes["connection"]`` (alembic's "Sharing a Connection" recipe), so the
upgrade happens inside the caller's transaction. Without one (a developer running
alembic by hand) an engine is made from ``sqlalchemy.url`` or clusterd's default URL,
through ``make_engine`` so the SQLite pragmas and checks apply.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from clusterd import paths
from clusterd.daemon import models

config = context.config
target_metadata = models.Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or paths.db_url()


def _run(connection: Connection) -> None:
    """Migrate on ``connection``; batch mode on SQLite, which cannot ALTER most things."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL instead of running it (``alembic upgrade head --sql``), e.g. for a DBA."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate on the shared connection, or on a fresh engine's when there is none."""
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    from clusterd.daemon.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
