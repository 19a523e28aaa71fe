"""Alembic migrations for the daemon's database (``env.py`` + ``versions/``).

A package so that a regular ``pip install`` ships the revision modules; the
daemon points alembic at this directory in code (``clusterd.daemon.db``).
"""
