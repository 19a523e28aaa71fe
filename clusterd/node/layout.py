"""Where a trial's files live under the sweep's output dir.

``<output_dir>/<index>/`` is the trial dir, kept across attempts;
``<output_dir>/<index>/attempt-<n>/`` holds one attempt's files (docs/runtime.md).
"""

from __future__ import annotations

import os

from clusterd.node import names

__all__ = ["attempt_dir", "events_path", "trial_dir"]


def trial_dir(output_dir: str, index: int) -> str:
    return os.path.join(output_dir, str(index))


def attempt_dir(output_dir: str, index: int, attempt: int) -> str:
    return os.path.join(output_dir, str(index), f"{names.ATTEMPT_PREFIX}{attempt}")


def events_path(attempt_dir_: str) -> str:
    return os.path.join(attempt_dir_, names.EVENTS)
