"""What the runner executes: the argv from the command and the params, the optional
setup line in front of it, and the command's environment (docs/runtime.md "Command
building")."""

from __future__ import annotations

import os

from clusterd.node import names
from clusterd.node.placeholders import names_in, render_value, substitute
from clusterd.runner.contain import TOKEN_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from clusterd.node.launch import Launch

__all__ = ["build_argv", "build_shell_line", "child_env", "full_argv", "render_value", "shell"]


def build_argv(command: Sequence[str], params: Mapping[str, Any]) -> list[str]:
    """The argv to run.

    If any element has a ``{key}`` placeholder naming a parameter, placeholders are
    substituted and nothing is appended; otherwise every parameter is appended as
    ``--key=value``. ``{{`` and ``}}`` always stand for literal braces; a ``{word}``
    that names no parameter is left as it is.
    """
    if not command:
        raise ValueError("the command is empty")
    filled = any(names_in(part) & params.keys() for part in command)
    argv = [substitute(part, params if filled else {}) for part in command]
    if not filled:
        argv.extend(f"--{key}={render_value(value)}" for key, value in params.items())
    return argv


def build_shell_line(setup: str, argv: Sequence[str]) -> str:
    """``{ <setup>\\n} && exec <argv...>``, every argv element quoted with shlex.quote.

    The braces and the newline keep a trailing ``# comment`` or a multi-line setup
    from swallowing the ``exec``; the exit status of the group is that of the setup's
    last command, exactly as with ``<setup> && exec ...``.
    """
    from shlex import quote  # only sweeps with a setup line pay for it

    return "{ " + setup + "\n} && exec " + " ".join(quote(arg) for arg in argv)


def shell() -> str:
    """bash where there is one (setup lines say ``source``), else POSIX sh."""
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def full_argv(launch: Launch) -> list[str]:
    """The argv the runner starts: the command's, or a shell running setup then it."""
    argv = build_argv(launch.command, launch.params)
    if launch.setup is None:
        return argv
    return [shell(), "-c", build_shell_line(launch.setup, argv)]


def child_env(
    launch: Launch, base: Mapping[str, str] | None = None, token: str | None = None
) -> dict[str, str]:
    """The command's environment: the runner's, less ``submit_unset``, with the submitting
    shell's ``submit_env`` over it (``[env] inherit``: daemon/environment.py), then the
    sweep's ``[env] vars``, then ours.

    ``CLUSTERD_ATTEMPT_TOKEN`` marks every process of the attempt (contain.py finds
    those that leave the process group by it)."""
    env = dict(os.environ if base is None else base)
    for name in launch.submit_unset:
        env.pop(name, None)
    env.update(launch.submit_env)
    env.update(launch.env)
    env[TOKEN_ENV] = token or launch.token or ""
    env.update(
        CLUSTERD_SWEEP=launch.sweep,
        CLUSTERD_TRIAL_ID=launch.trial_id,
        CLUSTERD_TRIAL_INDEX=str(launch.trial_index),
        CLUSTERD_ATTEMPT=str(launch.attempt),
        CLUSTERD_TRIAL_DIR=launch.trial_dir,
        CLUSTERD_ATTEMPT_DIR=launch.attempt_dir,
        CLUSTERD_PARAMS=os.path.join(launch.trial_dir, names.PARAMS),
        CLUSTERD_EVENTS=os.path.join(launch.attempt_dir, names.EVENTS),
        CLUSTERD_RESUME_EXIT_CODE=str(launch.resume_exit_code),
        CLUSTERD_RESUME_SIGNAL=launch.resume_signal.name[3:] if launch.resume_signal else "none",
    )
    return env
