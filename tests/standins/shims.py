"""Executables that stand in for a scheduler's commands (``qsub``, ``condor_q``, ...).

Each shim is a ``#!<python>`` script that puts the repository root on ``sys.path``, sets
``CLUSTERD_STANDIN_DIR`` to its state root and calls a frontend's
``function(argv) -> exit code`` with ``sys.argv[1:]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.standins.engine import REPO

__all__ = ["install"]

_TEMPLATE = """#!{python}
# stand-in for {name}: tests/standins (not a real scheduler command)
import os
import sys

sys.path.insert(0, {repo!r})
os.environ["CLUSTERD_STANDIN_DIR"] = {root!r}
from {module} import {func} as _main

sys.exit(_main(sys.argv[1:]))
"""


def install(bin_dir: str | Path, commands: dict[str, str], root: str | Path) -> dict[str, str]:
    """Write ``bin_dir/<name>`` for each ``name: "module:function"`` and return the
    environment to give a daemon: PATH with ``bin_dir`` first, and CLUSTERD_STANDIN_DIR."""
    bin_path = Path(bin_dir).resolve()
    bin_path.mkdir(parents=True, exist_ok=True)
    root_s = str(Path(root).resolve())
    for name, target in commands.items():
        module, sep, func = target.partition(":")
        if not sep or not module.replace(".", "").replace("_", "").isalnum():
            raise ValueError(f"shim {name!r}: {target!r} is not 'module:function'")
        if not func.isidentifier() or "/" in name or not name:
            raise ValueError(f"shim {name!r}: bad command or function name")
        path = bin_path / name
        path.write_text(
            _TEMPLATE.format(
                python=sys.executable,
                name=name,
                repo=str(REPO),
                root=root_s,
                module=module,
                func=func,
            )
        )
        path.chmod(0o755)
    return {
        "PATH": os.pathsep.join([str(bin_path), os.environ.get("PATH", os.defpath)]),
        "CLUSTERD_STANDIN_DIR": root_s,
    }


def dump(argv: list[str]) -> int:
    """A debugging command (``standin-dump [cluster]``): the jobs as JSON lines."""
    import dataclasses
    import json

    from tests.standins.engine import StandIn

    si = StandIn()
    si.record_call("standin-dump", argv)
    for job in si.jobs(int(argv[0]) if argv else None):
        print(json.dumps(dataclasses.asdict(job), sort_keys=True))
    return 0
