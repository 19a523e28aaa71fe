"""A submit description, turned into the jobs ``condor_submit`` would queue.

The parsing and the macro expansion are HTCondor's own (``htcondor2.Submit``, the real
library, offline): the item data of ``queue ... from (...)``, ``$(Cluster)``/``$(Process)``
and each item's variables are expanded by it. What is done here is only what the library
leaves to the schedd and the starter: splitting ``arguments`` and ``environment`` in the
documented "new" (double-quoted) and "old" syntaxes, resolving paths against the job's
``Iwd``, and collecting the custom attributes (``+Name`` / ``MY.Name``) as values.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import classad2
import htcondor2

__all__ = ["Description", "JobSpec", "SubmitError", "parse", "split_args", "split_env"]


class SubmitError(ValueError):
    """The description is wrong; the message names what (condor_submit prints it)."""


@dataclass
class JobSpec:
    """One proc of the cluster: what runs, where, with what, and its ad attributes."""

    proc: int
    argv: list[str]
    env: dict[str, str]
    iwd: str
    stdout: str
    stderr: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Description:
    """The cluster a description asks for."""

    batch_name: str
    log: str | None
    hold: bool
    allowed_execute_duration: int | None
    attrs: dict[str, Any]
    jobs: list[JobSpec]


#: submit keys whose value is per job (expanded again for every proc)
PER_JOB = ("executable", "arguments", "output", "error", "initialdir", "environment", "log")
#: request_* keys and the ad attributes condor_submit gives them
REQUESTS = {
    "request_cpus": "RequestCpus",
    "request_gpus": "RequestGpus",
    "request_memory": "RequestMemory",
    "request_disk": "RequestDisk",
}
UNITS = {"": 1, "K": 1, "KB": 1, "M": 1024, "MB": 1024, "G": 1024**2, "GB": 1024**2, "T": 1024**3}


def split_args(value: str) -> list[str]:
    """``arguments``: new syntax (``"a 'b c' d"``: whitespace separates, single quotes
    group, a doubled quote is a literal one) or old syntax (whitespace only, ``\\"``)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return _split_new(value[1:-1].replace('""', '"'))
    return [word.replace('\\"', '"') for word in value.split()]


def _split_new(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            if current is not None:
                words.append("".join(current))
                current = None
            i += 1
            continue
        current = current if current is not None else []
        if char == "'":
            end = i + 1
            while True:
                end = text.find("'", end)
                if end < 0:
                    raise SubmitError(f"unterminated single quote in arguments: {text!r}")
                if text[end + 1 : end + 2] == "'":  # '' is a literal quote
                    end += 2
                    continue
                break
            current.append(text[i + 1 : end].replace("''", "'"))
            i = end + 1
            continue
        current.append(char)
        i += 1
    if current is not None:
        words.append("".join(current))
    return words


def split_env(value: str) -> dict[str, str]:
    """``environment``: new syntax (``"A=1 B='x y'"``) or old (``A=1;B=2``)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        entries = _split_new(value[1:-1].replace('""', '"'))
    else:
        entries = [e for e in value.split(";") if e.strip()]
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, val = entry.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise SubmitError(f"environment entry {entry!r} is not NAME=value")
        env[name.strip()] = val
    return env


def megabytes(value: str, default_unit: str) -> int:
    """``request_memory``/``request_disk`` as condor_submit stores them (MiB / KiB)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", value)
    if not match:
        raise SubmitError(f"bad size {value!r}")
    unit = match.group(2).upper() or default_unit
    if unit not in UNITS:
        raise SubmitError(f"bad size unit in {value!r}")
    kib = float(match.group(1)) * UNITS[unit]
    return int(kib if default_unit == "K" else kib / 1024)


def _value(expr: str) -> Any:
    """A ClassAd expression's value where it is a literal; the text otherwise."""
    try:
        tree = classad2.ExprTree(expr)
        value = tree.eval()
    except Exception:  # a malformed expression is stored as text, as the schedd would refuse it
        return expr
    if isinstance(value, (str, int, float, bool)):
        return value
    return expr


def _queue_count(qargs: str) -> int:
    match = re.match(r"\s*(\d+)", qargs)
    return int(match.group(1)) if match else 1


def parse(text: str, cluster: int, submit_dir: str, owner: str) -> Description:
    """The jobs of ``text`` as cluster ``cluster`` (paths relative to ``submit_dir``)."""
    try:
        sub = htcondor2.Submit(text)
    except Exception as exc:  # the library's own parse error
        raise SubmitError(f"submit description: {exc}") from exc
    items = list(sub.itemdata() or []) or [{}]
    per_item = _queue_count(sub.getQArgs())
    base = dict(sub)
    if "executable" not in base:
        raise SubmitError("no executable")
    keys = [k for k in base if "$" in base[k] or k in PER_JOB or k.startswith("MY.")]
    job = htcondor2.Submit(base)
    common: dict[str, Any] = {"Owner": owner, "JobUniverse": 5}
    for key, attr in REQUESTS.items():
        if key in base:
            raw = job.expand(key)
            common[attr] = (
                megabytes(raw, "M" if "memory" in key else "K")
                if (attr in ("RequestMemory", "RequestDisk"))
                else int(raw)
            )
    batch_name = job.expand("batch_name") if "batch_name" in base else ""
    if batch_name:
        common["JobBatchName"] = batch_name
    duration = (
        int(job.expand("allowed_execute_duration"))
        if ("allowed_execute_duration" in base)
        else None
    )
    if duration is not None:
        common["AllowedExecuteDuration"] = duration
    for key in ("accounting_group", "requirements", "rank"):
        if key in base:
            name = {"accounting_group": "AcctGroup"}.get(key, key.capitalize())
            common[name] = job.expand(key)
    getenv = base.get("getenv", "false").strip().lower() in ("true", "yes", "1")
    hold = base.get("hold", "false").strip().lower() in ("true", "yes", "1")
    jobs: list[JobSpec] = []
    log: str | None = None
    proc = 0
    for row, item in enumerate(items):
        for step in range(per_item):
            for name, value in item.items():
                job[name] = value
            numbers = {"Cluster": cluster, "ClusterId": cluster, "Process": proc,
                       "ProcId": proc, "Step": step, "Row": row, "Item": row}  # fmt: skip
            for name, number in numbers.items():
                job[name] = str(number)
            expanded = {k: job.expand(k) for k in keys}
            jobs.append(_job(proc, expanded, submit_dir, getenv))
            if log is None and expanded.get("log"):
                log = jobs[-1].attrs["UserLog"]
            proc += 1
    return Description(batch_name, log, hold, duration, common, jobs)


def _job(proc: int, expanded: dict[str, str], submit_dir: str, getenv: bool) -> JobSpec:
    iwd = os.path.join(submit_dir, expanded.get("initialdir", "") or "")
    iwd = os.path.normpath(iwd)

    def path(key: str) -> str:
        value = expanded.get(key, "")
        return os.path.join(iwd, value) if value else os.devnull

    executable = path("executable")
    argv = [executable, *split_args(expanded.get("arguments", ""))]
    env = dict(os.environ) if getenv else {}
    env.update(split_env(expanded.get("environment", "")))
    attrs: dict[str, Any] = {
        "ProcId": proc,
        "Cmd": executable,
        "Args": " ".join(argv[1:]),
        "Iwd": iwd,
        "Out": path("output"),
        "Err": path("error"),
    }
    if expanded.get("log"):
        attrs["UserLog"] = path("log")
    for key, value in expanded.items():
        if key.startswith("MY."):
            attrs[key[3:]] = _value(value)
    return JobSpec(proc, argv, env, iwd, attrs["Out"], attrs["Err"], attrs)
