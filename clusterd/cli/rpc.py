"""The CLI's side of the socket: one request per call, and what failures mean as exit statuses.

Every verb reaches the daemon through ``call`` and runs under ``exit_status``, so
the rule "1 for a user error, 2 when the daemon is unreachable" lives in one place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from clusterd.client import Client
from clusterd.errors import ClusterdError, DaemonUnreachable

__all__ = ["call", "exit_status"]


def call(op: str, **args: Any) -> Any:
    with Client() as client:
        return client.call(op, **args)


def exit_status(run: Callable[[], int], prog: str = "clusterctl") -> int:
    """Run a verb; a clusterd error becomes one line on stderr (``prog: message``) and its
    exit status. ``clusterd``'s own commands use it too."""
    try:
        return int(run())
    except DaemonUnreachable as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 2
    except ClusterdError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
