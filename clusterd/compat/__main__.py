"""``python -m clusterd.compat``: print the shim directory to put on ``PYTHONPATH``."""

from clusterd.compat import SHIM_DIR

print(SHIM_DIR)
