"""Early stopping: rules that judge learning curves as the daemon ingests them.

See docs/early-stopping.md. The daemon-side glue (rebuilding state, marking the
decision, terminating the attempt) is ``clusterd.daemon.stopper``.
"""

from clusterd.stopping.base import Decision, StopRule, worse

__all__ = ["Decision", "StopRule", "worse"]
