"""Run job scripts written for other tools under clusterd, unchanged.

``clusterd.compat.cluster_utils``: cluster_utils' client API (``initialize_job``,
``finalize_job``, ``cluster_main``, ...) over ``clusterd.trial``. A script that does
``from cluster_utils import ...`` finds it through the shim package in ``shim/``: put
that directory on the trials' ``PYTHONPATH`` (``python -m clusterd.compat`` prints it).
docs/compat.md. Stdlib only, like ``clusterd.trial``: it runs in the job's environment.
"""

from __future__ import annotations

import os

__all__ = ["SHIM_DIR"]

#: the directory holding the ``cluster_utils`` shim package (put it on PYTHONPATH)
SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")
