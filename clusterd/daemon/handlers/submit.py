"""The ``submit`` op: validate, expand and persist a sweep file (``--dry-run`` too)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from clusterd.daemon import repro, submission
from clusterd.daemon.handlers.context import Context, arg_bool, arg_opt_str, arg_str
from clusterd.errors import InvalidRequest, SpecError
from clusterd.search.registry import STATIC_METHODS
from clusterd.spec import expand, params_key, parse_sweep
from clusterd.spec.model import SweepSpec

__all__ = ["submit"]


def _check_plugins(ctx: Context, spec: SweepSpec, display: str) -> None:
    """The stop rule and the search method must be installed and accept the sweep."""
    rules = ctx.scheduler.stopper.rules
    rule = spec.early_stopping.rule
    if rule != "none":
        if rule not in rules:
            known = ", ".join(["none", *sorted(rules)])
            raise SpecError(
                display, "early_stopping.rule", f"expected one of {known}, got {rule!r}"
            )
        unknown = sorted(set(spec.early_stopping.options) - {"grace_period", *rules[rule].options})
        if unknown:
            raise SpecError(
                display,
                "early_stopping",
                f"rule {rule!r} does not use {', '.join(unknown)} "
                f"(it uses: {', '.join(['min_steps', 'grace_period', *rules[rule].options])})",
            )
        problem = rules[rule].check(spec.early_stopping)
        if problem:
            raise SpecError(display, "early_stopping", problem)
    method = spec.search.method
    if method in STATIC_METHODS:
        return
    methods = ctx.scheduler.proposer.methods
    if method not in methods:
        known = ", ".join(sorted({*STATIC_METHODS, *methods}))
        raise SpecError(display, "search.method", f"expected one of {known}, got {method!r}")
    problem = methods[method].check(spec)
    if problem:
        raise SpecError(display, "search", problem)


DRY_RUN_SHOWN = 10


async def submit(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Validate, expand and persist a sweep file.

    ``{"op": "submit", "args": {"path": "/abs/sweep.toml", "display": "sweep.toml",
    "text": "...", "extend": false, "dry_run": false, "reuse_output": false,
    "python": "/usr/bin/python3"}}``
    -> ``{"name": "lr-depth", "trials": 9, "added": 9, "existing": 0, "output_dir": "..."}``

    Parsing, expanding and persisting run in a worker thread (a 300,000-trial file takes
    seconds; the daemon keeps answering meanwhile). The output dir is claimed as
    ``daemon.submission`` describes; a refused submit persists nothing and changes
    nothing on disk.
    """
    path = arg_str(args, "path")
    if not os.path.isabs(path):
        raise InvalidRequest("argument 'path' must be an absolute path")
    extend, dry_run = arg_bool(args, "extend"), arg_bool(args, "dry_run")
    reuse = arg_bool(args, "reuse_output")
    if reuse and extend:
        raise InvalidRequest("--reuse-output is for a new sweep; --extend keeps its own files")
    python = arg_opt_str(args, "python")
    spec, trials = await asyncio.to_thread(_prepare, ctx, args, path)
    if dry_run:
        return {
            "name": spec.name,
            "count": len(trials),
            "first": trials[:DRY_RUN_SHOWN],
            "output_dir": spec.output_dir,
        }
    if extend:
        added, existing = await asyncio.to_thread(_extend, ctx, spec, trials)
    else:
        info = await asyncio.to_thread(_create, ctx, spec, trials, python, reuse)
        added, existing = len(trials), 0
        _background(ctx, _record_freeze(ctx, spec.name, python, spec.output_dir))
    ctx.scheduler.wake()
    reply = {
        "name": spec.name,
        "trials": added + existing,
        "added": added,
        "existing": existing,
        "output_dir": spec.output_dir,
    }
    if not extend and info.get("previous_output"):
        reply["previous_output"] = info["previous_output"]
    return reply


def _prepare(
    ctx: Context, args: dict[str, Any], path: str
) -> tuple[SweepSpec, list[dict[str, Any]]]:
    """Read, parse, check and expand (in a worker thread: none of it on the event loop)."""
    display = arg_opt_str(args, "display") or path
    text = arg_opt_str(args, "text")
    if text is None:
        text = _read_text(path, display)
    spec = parse_sweep(text, source=display, base_dir=os.path.dirname(path))
    spec = dataclasses.replace(spec, source=path)
    _check_plugins(ctx, spec, display)
    drivers = ctx.scheduler.drivers
    drivers.get(spec.driver).validate(drivers.with_defaults(spec))  # the user's defaults too
    return spec, expand(spec)


def _create(
    ctx: Context,
    spec: SweepSpec,
    trials: list[dict[str, Any]],
    python: str | None,
    reuse: bool,
) -> dict[str, Any]:
    keyed = [(p, params_key(p)) for p in trials]
    return submission.create(ctx.store, spec, keyed, python, reuse)


def _extend(ctx: Context, spec: SweepSpec, trials: list[dict[str, Any]]) -> tuple[int, int]:
    keyed = [(p, params_key(p)) for p in trials]
    return submission.extend(ctx.store, spec, keyed)


async def _record_freeze(ctx: Context, name: str, python: str | None, output_dir: str) -> None:
    """``pip freeze`` after the reply (the sweep is accepted: repro/ is its own)."""
    extra = await asyncio.to_thread(repro.freeze, python, output_dir)
    if extra:
        await asyncio.to_thread(ctx.store.update_repro, name, extra)


def _background(ctx: Context, coro: Any) -> None:
    """Run after the reply; keep a reference so the task is not garbage-collected."""
    tasks: set[asyncio.Task[Any]] = ctx.extra.setdefault("tasks", set())
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _read_text(path: str, display: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise SpecError(display, "", f"cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(display, "", "expected a UTF-8 text file") from None
