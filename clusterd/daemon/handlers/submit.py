"""The ``submit`` op: validate, expand and persist a sweep file; ``dry_run`` (what
``clusterctl count`` and ``submit --dry-run`` ask) runs the same checks and persists nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from clusterd.daemon import environment, repro, submission
from clusterd.daemon.handlers.context import Context, arg_bool, arg_opt_str, arg_str
from clusterd.errors import InvalidRequest, SpecError
from clusterd.search.registry import STATIC_METHODS
from clusterd.spec import expand, params_key, parse_sweep
from clusterd.spec.expand import count
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
#: the largest environment a client may send (the request line's limit is 1 MiB anyway)
MAX_ENVIRON = 4096


async def submit(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Validate, expand and persist a sweep file.

    ``{"op": "submit", "args": {"path": "/abs/sweep.toml", "display": "sweep.toml",
    "text": "...", "extend": false, "dry_run": false, "reuse_output": false,
    "python": "/usr/bin/python3", "environ": {"PATH": "...", ...}}}``
    -> ``{"name": "lr-depth", "trials": 9, "added": 9, "existing": 0, "output_dir": "...",
    "planned": 9, "adaptive": false, "method": "grid"}`` (an adaptive method's trials are
    proposed as results arrive: ``trials`` 0, ``planned`` its ``samples``)

    ``environ`` is the submitting shell's environment: only the names of
    ``daemon.environment.capture`` are kept (the rest is dropped here, never stored).

    ``dry_run`` runs every check a submit runs -- the file, the stop rule's, search
    method's and driver's own checks, the sweep's name and output dir
    (``submission.check_new`` / ``check_extend``) -- and persists nothing:
    ``{"name": ..., "count": 20, "adaptive": true, "method": "tpe", "first": [...],
    "output_dir": ..., "driver": "local", "max_concurrent": 4, "environment": {...}}``;
    ``count`` is what a submit would plan (``samples`` for an adaptive method, whose
    trials are proposed as results arrive, so ``first`` is empty). ``clusterctl count``
    and ``submit --dry-run`` both ask this, so they refuse what ``submit`` refuses.

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
    environ = _arg_environ(args)
    spec, trials = await asyncio.to_thread(_prepare, ctx, args, path)
    captured = environment.capture(environ, python, spec.env, _program(spec))
    if dry_run:
        return await asyncio.to_thread(_dry_run, ctx, spec, trials, extend, reuse, captured)
    if extend:
        added, existing = await asyncio.to_thread(_extend, ctx, spec, trials)
    else:
        info = await asyncio.to_thread(_create, ctx, spec, trials, python, reuse, captured)
        added, existing = len(trials), 0
        _background(ctx, _record_freeze(ctx, spec.name, python, spec.output_dir))
    ctx.scheduler.wake()
    reply = {
        "name": spec.name,
        "trials": added + existing,
        "added": added,
        "existing": existing,
        "output_dir": spec.output_dir,
        # what ``count`` and the dry run say: ``samples`` for an adaptive method
        "planned": count(spec),
        "adaptive": spec.search.method not in STATIC_METHODS,
        "method": spec.search.method,
    }
    if not extend and info.get("previous_output"):
        reply["previous_output"] = info["previous_output"]
    return reply


def _program(spec: SweepSpec) -> str | None:
    """The command's first word, to say where it is found; None where that cannot be
    known here (a ``{placeholder}``, or a setup line that may change ``PATH``)."""
    first = spec.command[0]
    return None if spec.env.setup or "{" in first else first


def _arg_environ(args: dict[str, Any]) -> dict[str, str] | None:
    """The client's environment, as sent (None: an older client sent none)."""
    value = args.get("environ")
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > MAX_ENVIRON
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise InvalidRequest(
            "argument 'environ' must be an object of strings (the submitting environment)"
        )
    return value


def _dry_run(
    ctx: Context,
    spec: SweepSpec,
    trials: list[dict[str, Any]],
    extend: bool,
    reuse: bool,
    captured: dict[str, Any],
) -> dict[str, Any]:
    """What a submit would do, after every check it runs (nothing written)."""
    if extend:
        submission.check_extend(ctx.store, spec)
    else:
        submission.check_new(ctx.store, spec, reuse)
    adaptive = spec.search.method not in STATIC_METHODS
    return {
        "name": spec.name,
        "count": count(spec),
        "adaptive": adaptive,
        "method": spec.search.method,
        "first": trials[:DRY_RUN_SHOWN],
        "output_dir": spec.output_dir,
        "driver": spec.driver,
        "max_concurrent": spec.max_concurrent,
        "environment": environment.show_view({environment.KEY: captured}),
    }


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
    captured: dict[str, Any],
) -> dict[str, Any]:
    keyed = [(p, params_key(p)) for p in trials]
    return submission.create(ctx.store, spec, keyed, python, reuse, captured)


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
