"""Nested JSON grids (``{"args": …, "machine": …, "meta": …}``, the "clutils" style) -> sweep.toml.

The exact format accepted is in docs/convert.md ("Nested JSON grid"). In short:

- ``args``: the grid of the script's arguments. A list is an axis; a scalar is fixed;
  an object whose values are all objects is a *conditional*: the arg takes each key in
  turn and that key's object is a sub-grid (same rules) added for it -- exactly
  clusterd's conditional ``[params]``; any other object is a namespace, flattened into
  dotted names (``{"model": {"depth": [2, 4]}}`` is the axis ``model.depth``).
- ``machine``: ``cpus``, ``gpus``, ``memory``/``mem``, ``time``, ``partition`` ->
  ``[resources]``; ``account``, ``qos``, ``constraint`` -> ``[drivers.slurm]``.
- ``meta``: ``name``, ``command`` (required), ``output_dir``, ``driver``,
  ``max_concurrent``, ``flags`` (default true: append ``--<arg>={<arg>}`` for every
  arg each trial has), ``sample`` (N random combinations), ``seed``, ``env``, ``setup``.

``sample`` (or ``clusterctl convert --sample N``) gives ``method = "random"`` with
``samples = N`` when N is less than the grid's size (draws are independent, as
clusterd's random method makes them), else the whole grid.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clusterd.node.placeholders import PARAM_NAME_RE
from clusterd.report.convert.emit import Conversion
from clusterd.report.convert.grid import GridError

__all__ = ["SECTIONS", "convert"]

SECTIONS = ("args", "machine", "meta")
_NAME_BAD_RE = re.compile(r"[^A-Za-z0-9._-]+")
_RESOURCES = {
    "cpus": "cpus",
    "gpus": "gpus",
    "memory": "memory",
    "mem": "memory",
    "time": "time",
    "partition": "partition",
}
_SLURM = ("account", "qos", "constraint")
_META = (
    "name",
    "command",
    "output_dir",
    "driver",
    "max_concurrent",
    "flags",
    "sample",
    "seed",
    "env",
    "setup",
)


def convert(data: Mapping[str, Any], source: str, *, sample: int | None = None) -> Conversion:
    conv = Conversion(kind="json_grid", spec_dict={}, source=source)
    spec = conv.spec_dict
    for key in data:
        if key not in SECTIONS:
            conv.refused.append((key, f"not a section of a JSON grid ({', '.join(SECTIONS)})"))
    meta = _object(data, "meta")
    machine = _object(data, "machine")
    args = _object(data, "args")
    for key in meta:
        if key not in _META:
            conv.refused.append((f"meta.{key}", "not a meta key clusterd knows"))
    name = meta.get("name") or Path(source).stem
    if not isinstance(name, str):
        raise GridError("meta.name", f"expected a string, got {name!r}")
    clean = _NAME_BAD_RE.sub("-", name).strip("-.")[:64] or "converted"
    spec["name"] = clean
    conv.mapped.append(("meta.name" if "name" in meta else "(file name)", f"name = {clean!r}"))
    command = meta.get("command")
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise GridError("meta.command", f"expected a command line, got {exc}") from None
    elif isinstance(command, list) and all(isinstance(a, str) for a in command):
        argv = list(command)
    else:
        raise GridError(
            "meta.command", f'expected a command like "python train.py", got {command!r}'
        )
    if not argv:
        raise GridError("meta.command", "expected a command, got an empty one")
    tree = _level(args, "args", set())
    spec["params"] = tree
    conv.mapped.append(("args", f"[params]: {_describe(tree)}"))
    flags = meta.get("flags", True)
    if not isinstance(flags, bool):
        raise GridError("meta.flags", f"expected true or false, got {flags!r}")
    if flags:
        always = _always(tree)
        for arg in [n for n in _names(tree) if n in always]:
            argv.append(f"--{arg}={{{arg}}}")
        branch_only = [n for n in _names(tree) if n not in always]
        if branch_only:
            conv.mapped.append(
                (
                    "meta.flags",
                    f"--<arg>={{<arg>}} for each arg every trial has; {', '.join(branch_only)} "
                    "(set by some branches only) reach the script in params.json (CLUSTERD_PARAMS)",
                )
            )
        else:
            conv.mapped.append(("meta.flags", "--<arg>={<arg>} for each arg"))
    spec["command"] = argv
    conv.mapped.append(("meta.command", f"command = {shlex.join(argv)}"))
    for key in ("output_dir", "driver"):
        if key in meta:
            if not isinstance(meta[key], str) or not meta[key]:
                raise GridError(f"meta.{key}", f"expected a string, got {meta[key]!r}")
            spec[key] = meta[key]
            conv.mapped.append((f"meta.{key}", f"{key} = {meta[key]!r}"))
    if "max_concurrent" in meta:
        spec["max_concurrent"] = _int("meta.max_concurrent", meta["max_concurrent"], 1)
        conv.mapped.append(("meta.max_concurrent", f"max_concurrent = {spec['max_concurrent']}"))
    env: dict[str, Any] = {}
    if "env" in meta:
        raw = meta["env"]
        if not isinstance(raw, Mapping):
            raise GridError("meta.env", f"expected an object of variables, got {raw!r}")
        env["vars"] = {k: v if isinstance(v, str) else str(v) for k, v in raw.items()}
        conv.mapped.append(("meta.env", "[env] vars"))
    if "setup" in meta:
        if not isinstance(meta["setup"], str):
            raise GridError("meta.setup", f"expected a shell line, got {meta['setup']!r}")
        env["setup"] = meta["setup"]
        conv.mapped.append(("meta.setup", "[env] setup"))
    if env:
        spec["env"] = env
    _machine(machine, spec, conv)
    n = sample if sample is not None else meta.get("sample")
    seed = _int("meta.seed", meta.get("seed", 0), 0)
    if n is not None:
        n = _int("sample" if sample is not None else "meta.sample", n, 1)
        size = _grid_size(tree)
        where = "--sample" if sample is not None else "meta.sample"
        if n < size:
            spec["search"] = {"method": "random", "samples": n, "seed": seed}
            conv.mapped.append(
                (
                    where,
                    f'[search] method = "random", samples = {n}, seed = {seed} '
                    f"(of {size} combinations)",
                )
            )
        else:
            conv.mapped.append((where, f"{n} >= the grid's {size} combinations: the whole grid"))
    if "seed" in meta and "search" not in spec:
        conv.mapped.append(("meta.seed", "unused: the whole grid runs"))
    return conv


def _object(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise GridError(key, f"expected an object, got {value!r}")
    return dict(value)


def _int(where: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise GridError(where, f"expected an integer >= {lo}, got {value!r}")
    return value


def _level(table: Mapping[str, Any], where: str, outer: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in _flat(table, where):
        path = f"{where}.{key}"
        if not PARAM_NAME_RE.fullmatch(key):
            raise GridError(path, f'expected an arg name like "lr", got {key!r}')
        if key in outer or key in out:
            raise GridError(path, f"arg {key!r} is set twice on the same trial")
        if isinstance(value, Mapping):  # a conditional (``_flat`` leaves only those)
            taken = outer | set(out) | {key}
            out[key] = {alt: _level(sub, f"{path}.{alt}", taken) for alt, sub in value.items()}
        elif isinstance(value, list):
            if not value:
                raise GridError(path, "expected a non-empty list of values (an axis)")
            for i, v in enumerate(value):
                _scalar_or_list(f"{path}[{i}]", v)
            out[key] = list(value)
        else:
            out[key] = _scalar(path, value)
    return out


def _flat(table: Mapping[str, Any], where: str, prefix: str = "") -> list[tuple[str, Any]]:
    """Namespaces flattened to dotted names; conditionals (all values objects) kept."""
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, Mapping):
            if not value:
                raise GridError(f"{where}.{name}", "expected values or alternatives, got {}")
            if all(isinstance(v, Mapping) for v in value.values()):
                items.append((name, value))
            else:
                items += _flat(value, where, name + ".")
        else:
            items.append((name, value))
    return items


def _scalar(where: str, value: Any) -> Any:
    if value is None:
        raise GridError(where, "null has no sweep.toml form: give a value or leave it out")
    if isinstance(value, float) and value != value:
        raise GridError(where, "expected a number, got NaN")
    if not isinstance(value, str | int | float | bool):
        raise GridError(where, f"expected a value, got {value!r}")
    return value


def _scalar_or_list(where: str, value: Any) -> None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            _scalar(f"{where}[{i}]", v)
    else:
        _scalar(where, value)


def _names(tree: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, node in tree.items():
        out.append(key)
        if isinstance(node, Mapping):
            for branch in node.values():
                out += [n for n in _names(branch) if n not in out]
    return out


def _always(tree: Mapping[str, Any]) -> set[str]:
    names = set(tree)
    for node in tree.values():
        if isinstance(node, Mapping):
            shared: set[str] | None = None
            for branch in node.values():
                got = _always(branch)
                shared = got if shared is None else shared & got
            names |= shared or set()
    return names


def _grid_size(tree: Mapping[str, Any]) -> int:
    total = 1
    for node in tree.values():
        if isinstance(node, list):
            total *= len(node)
        elif isinstance(node, Mapping):
            total *= sum(_grid_size(b) for b in node.values())
    return total


def _describe(tree: Mapping[str, Any]) -> str:
    axes = sum(isinstance(v, list) for v in tree.values())
    branches = sum(isinstance(v, Mapping) for v in tree.values())
    return f"{axes} axis/axes, {branches} conditional(s), {_grid_size(tree)} combination(s)"


def _machine(machine: Mapping[str, Any], spec: dict[str, Any], conv: Conversion) -> None:
    res: dict[str, Any] = {}
    for key, value in machine.items():
        where = f"machine.{key}"
        if key in _RESOURCES:
            res[_RESOURCES[key]] = value
            conv.mapped.append((where, f"resources.{_RESOURCES[key]} = {value!r}"))
        elif key in _SLURM:
            spec.setdefault("drivers", {}).setdefault("slurm", {})[key] = value
            conv.mapped.append((where, f"[drivers.slurm] {key} = {value!r}"))
        else:
            conv.refused.append((where, "not a machine key clusterd knows"))
    if res:
        spec["resources"] = res
