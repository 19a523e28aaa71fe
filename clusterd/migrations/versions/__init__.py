"""Alembic revision modules, one per schema change: ``NNNN_slug.py``, revision id ``NNNN``."""
