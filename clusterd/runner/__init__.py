"""The trial runner: what every job runs in place of the user's command.

``python -m clusterd.runner /abs/attempt-dir/launch.json``, or as drivers start it,
``python -I -S /abs/clusterd/runner/__main__.py /abs/.../launch.json`` (:data:`SCRIPT`;
isolated and without site-packages: it is stdlib only, and that saves ~20 ms per trial).
It reads ``launch.json``, writes ``params.json`` and ``runner.json``, runs the command in
its own process group with its output in the attempt dir, forwards signals to that
group, enforces the time limit, samples GPUs, and finally writes ``status.json``
atomically (docs/runtime.md is the contract).

One job per module: ``__main__`` (the entry), ``attempt`` (one attempt from claim to
status.json), ``command`` (argv, shell line, environment), ``supervise`` (the process
group: start, wait, clean up), ``signals`` (forwarding, the wakeup pipe, deadlines),
``contain`` (which processes belong to the attempt), ``gpu`` (the sampler), ``log``
(runner.log). This ``__init__`` imports nothing: every trial pays for its imports.
"""

import os

__all__ = ["SCRIPT"]

#: the file drivers run as a script (``python -I -S SCRIPT launch.json``)
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
