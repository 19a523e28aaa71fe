"""The runner's entry: ``python -m clusterd.runner /abs/attempt-dir/launch.json``.

Drivers run this file as a script, ``python -I -S /abs/clusterd/runner/__main__.py``
(isolated, without site-packages: ~20 ms less per trial); then the package is not on
``sys.path``, and the directory holding ``clusterd/`` is put first on it, so the runner
and the ``clusterd.node`` contract it reads come from the same checkout.
"""

from __future__ import annotations

import os
import sys

if not __package__:  # run as a script: the package is two levels above us
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from clusterd.node.files import open_own_dir
from clusterd.node.launch import LaunchError, load_launch
from clusterd.node.status import status_record, write_new_status
from clusterd.runner.attempt import EXIT_BAD_LAUNCH, run
from clusterd.runner.log import RunnerLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m clusterd.runner /abs/attempt-dir/launch.json\n")
        return EXIT_BAD_LAUNCH
    path = os.path.abspath(args[0])
    try:
        launch = load_launch(path)
    except LaunchError as exc:
        return _bad_launch(path, f"invalid launch.json: {exc}")
    return run(launch)


def _bad_launch(path: str, message: str) -> int:
    """launch.json is unusable: say so in a new status.json beside it (if the dir is ours
    and has none) and exit 2; nothing of the launch is used."""
    import time

    sys.stderr.write(f"clusterd runner: {message}\n")
    now = time.time()
    try:
        dir_fd = open_own_dir(os.path.dirname(path))
    except OSError as exc:
        sys.stderr.write(f"clusterd runner: cannot write status.json: {exc}\n")
        return EXIT_BAD_LAUNCH
    try:
        RunnerLog(dir_fd)(message)
        write_new_status(dir_fd, status_record(None, now, now, None, False, message))
    finally:
        os.close(dir_fd)
    return EXIT_BAD_LAUNCH


if __name__ == "__main__":
    sys.exit(main())
