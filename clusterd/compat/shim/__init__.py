"""Holds the ``cluster_utils`` shim package; this directory goes on PYTHONPATH, not this package."""
