"""``import cluster_utils`` under clusterd: the names of cluster_utils' client API,
served by ``clusterd.compat.cluster_utils`` (docs/compat.md). Only on ``PYTHONPATH``
when you put it there (``python -m clusterd.compat`` prints the directory)."""

from clusterd.compat.cluster_utils import *  # noqa: F403
from clusterd.compat.cluster_utils import __all__ as __all__
