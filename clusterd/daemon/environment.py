"""The environment a sweep was submitted from, and how its trials get it back.

``clusterctl submit`` sends its own environment and ``sys.executable``; the submit op
keeps only :func:`capture`'s names -- :data:`CAPTURED`, the ``CUDA_*`` variables but
``CUDA_VISIBLE_DEVICES`` (the driver assigns GPUs), and what ``[env] pass`` names --
and drops the rest on arrival: nothing else is stored, logged or passed on, so a token
in the submitting shell reaches a trial only when the sweep file names it.

The record is kept in the sweep's ``repro`` (key ``environment``, see :func:`capture`),
so ``submit --extend`` and ``relaunch`` run with the environment of the first submit.
At each launch :func:`launch_env` turns it into launch.json's ``submit_env`` and
``submit_unset``; the runner builds the command's environment as (``runner/command.py``):

1. the runner's own environment (what the driver gives it: the daemon's, or on a
   Slurm node what sbatch exported plus Slurm's variables);
2. with ``[env] inherit = "submit"`` (the default): each :data:`CAPTURED` name that
   was unset in the submitting shell is removed (``PATH`` excepted), then every
   captured variable is set to its value at submit -- so ``python`` resolves through
   the submitting shell's ``PATH`` to its venv's interpreter, as with ``sbatch``;
   with ``inherit = "daemon"`` only the ``pass`` names are set;
3. the sweep's ``[env] vars``;
4. clusterd's own ``CLUSTERD_*`` variables.

A sweep submitted by a client that sent no environment (an older ``clusterctl``) runs
with the daemon's, as before; ``show`` says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from clusterd.spec.model import EnvConfig

__all__ = ["CAPTURED", "KEY", "capture", "launch_env", "show_view"]

#: captured by name when ``inherit = "submit"``: what decides which interpreter, packages
#: and shared libraries a trial gets
CAPTURED = (
    "PATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
)
#: captured by prefix when ``inherit = "submit"``
PREFIXES = ("CUDA_",)
#: never captured unless ``pass`` names it: the driver sets it per job
DRIVER_SET = frozenset({"CUDA_VISIBLE_DEVICES"})
#: kept even when unset in the submitting shell (a trial without PATH finds nothing)
KEEP_WHEN_UNSET = frozenset({"PATH"})
#: the key of the record in the sweep's repro
KEY = "environment"


def _wanted(name: str, inherit: str, passed: frozenset[str]) -> bool:
    if name in passed:
        return True
    if inherit != "submit" or name in DRIVER_SET:
        return False
    return name in CAPTURED or name.startswith(PREFIXES)


def capture(
    environ: Mapping[str, str] | None,
    python: str | None,
    env: EnvConfig,
    program: str | None = None,
) -> dict[str, Any]:
    """The record stored with the sweep, from the submitting shell's ``environ``.

    ``{"inherit": "submit", "captured": true, "python": "/venv/bin/python",
    "vars": {"PATH": "...", "VIRTUAL_ENV": "/venv"}, "unset": ["CONDA_PREFIX", ...],
    "pass": ["WANDB_PROJECT"], "missing": []}``: ``unset`` lists the :data:`CAPTURED`
    names the shell did not have (removed from the trial's environment), ``missing``
    the ``pass`` names it did not have (the trial gets the runner's, if any).
    ``captured`` is false when the client sent no environment. ``program``: the
    command's first word; ``resolved`` is where the trials' ``PATH`` finds it on the
    daemon's machine (None: not found there -- the trials would fail with "command not
    found" unless a compute node has it)."""
    passed = frozenset(env.pass_vars)
    record: dict[str, Any] = {
        "inherit": env.inherit,
        "captured": environ is not None,
        "python": python,
        "vars": {},
        "unset": [],
        "pass": list(env.pass_vars),
        "missing": [],
    }
    if environ is None:
        return record
    record["vars"] = {
        name: str(value)
        for name, value in sorted(environ.items())
        if isinstance(name, str) and "=" not in name and _wanted(name, env.inherit, passed)
    }
    if env.inherit == "submit":
        record["unset"] = [n for n in CAPTURED if n not in environ and n not in KEEP_WHEN_UNSET]
    record["missing"] = [n for n in env.pass_vars if n not in environ]
    if program is not None:
        record["program"] = program
        record["resolved"] = _resolve(program, record)
    return record


def _resolve(program: str, record: Mapping[str, Any]) -> str | None:
    """Where the trials' ``PATH`` (the recorded one, else the daemon's) finds ``program``."""
    if "/" in program:
        return program if os.access(program, os.X_OK) else None
    path = (record.get("vars") or {}).get("PATH") or os.environ.get("PATH", os.defpath)
    return shutil.which(program, path=path)


def launch_env(repro: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """launch.json's ``submit_env`` and ``submit_unset`` for a sweep's attempts."""
    record = repro.get(KEY)
    if not isinstance(record, dict) or not record.get("captured"):
        return {}, []
    values = record.get("vars") or {}
    unset = record.get("unset") or []
    return (
        {str(k): str(v) for k, v in values.items()},
        [str(n) for n in unset if n not in values],
    )


def show_view(repro: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``show`` prints about the trial's environment (the ``environment`` field).

    ``{"inherit": "submit", "python": "/venv/bin/python", "vars": {...},
    "unset": [...], "missing": [...], "note": "..."}``; ``note`` is one line for people."""
    record = (repro or {}).get(KEY)
    if not isinstance(record, dict):
        return {
            "inherit": "daemon",
            "python": (repro or {}).get("python"),
            "vars": {},
            "unset": [],
            "missing": [],
            "program": None,
            "resolved": None,
            "note": "submitted before clusterd recorded environments: trials get the daemon's",
        }
    inherit = record.get("inherit", "submit")
    if not record.get("captured"):
        note = "the client sent no environment: trials get the daemon's"
    elif inherit == "submit":
        note = "trials get the daemon's environment with these variables from the submit"
    else:
        note = 'trials get the daemon\'s environment ([env] inherit = "daemon")'
        if record.get("vars"):
            note += " plus the [env] pass variables"
    return {
        "inherit": inherit,
        "python": record.get("python"),
        "vars": dict(record.get("vars") or {}),
        "unset": list(record.get("unset") or []),
        "missing": list(record.get("missing") or []),
        "program": record.get("program"),
        "resolved": record.get("resolved"),
        "note": note,
    }
