"""``runner.log``: the runner's own diagnostics, beside the command's output."""

from __future__ import annotations

import contextlib
import os
import sys
import time

from clusterd.node import names
from clusterd.node.files import create_new

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

__all__ = ["RunnerLog"]


class RunnerLog:
    """Line-buffered diagnostics in ``runner.log``, a file this runner creates (O_EXCL);
    stderr when there is no attempt dir fd or the file cannot be created."""

    def __init__(self, dir_fd: int | None, fd: int | None = None) -> None:
        self._fh: IO[str] = sys.stderr
        if fd is None and dir_fd is not None:
            with contextlib.suppress(OSError):
                fd = create_new(dir_fd, names.RUNNER_LOG, 0o644)
        if fd is not None:
            self._fh = os.fdopen(fd, "a", buffering=1)

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            self._fh.write(f"{stamp} runner[{os.getpid()}]: {message}\n")
