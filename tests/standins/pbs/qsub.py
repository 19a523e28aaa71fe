"""Stand-in ``qsub`` (PBS Pro / OpenPBS and Torque): one engine cluster per submission.

It prints the new id as the real one does (``12[].server`` for an array, ``12.server``
for a plain job) and spools the script, as PBS copies it at submit time. Each task's
environment is what PBS gives a job, not qsub's own environment: the ``PBS_O_*``
variables of the submitter, the ``-v`` list (``-V``: everything), the login basics
(``HOME``, ``USER``, ``PATH``, ...; PATH standing in for the login shell's) and the job's
own ``PBS_*`` variables -- PBS Pro: ``PBS_JOBID=12[7].server``, ``PBS_ARRAY_INDEX``,
``PBS_ARRAY_ID``, ``PBS_JOBNAME``; Torque: ``PBS_ARRAYID``, ``PBS_JOBID=12[7].server``,
``PBS_JOBNAME=<name>-7``. The job starts in ``$HOME`` (Torque: ``-d`` if given), as in
PBS; ``walltime`` becomes the engine's time limit (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import platform
import pwd
import socket
import sys
from pathlib import Path
from typing import Any

from tests.standins.engine import StandIn, StandInError, Task
from tests.standins.pbs.ids import format_id
from tests.standins.pbs.options import (
    PRO_USAGE,
    TORQUE_USAGE,
    QsubError,
    QsubOptions,
    parse_qsub,
    seconds,
)
from tests.standins.pbs.site import Site, read_site

__all__ = ["main", "submit"]

#: OpenPBS src/lib/Liblog/pbs_messages.c (PBSE_MaxArraySize)
MAX_ARRAY_MESSAGE = "qsub: Array job exceeds server or queue size limit"
#: variables of the submitter that PBS copies as PBS_O_<NAME>
_O_VARS = ("HOME", "LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ")


def main(argv: list[str]) -> int:
    """``qsub [options] script``: print the job id, or the real error on stderr."""
    si = StandIn()
    si.record_call("qsub", argv)
    site = read_site(si.root)
    if argv == ["--version"]:
        print("pbs_version = 22.05.11" if site.pro else "Version: 6.1.3")
        return 0
    try:
        print(submit(si, site, argv, dict(os.environ), os.getcwd()))
    except QsubError as exc:
        if str(exc):
            print(str(exc), file=sys.stderr)
        if exc.usage:
            sys.stderr.write(PRO_USAGE if site.pro else TORQUE_USAGE)
        return exc.status
    return 0


def submit(si: StandIn, site: Site, argv: list[str], environ: dict[str, str], cwd: str) -> str:
    """Submit as ``qsub argv`` run in ``cwd`` with ``environ``; the new job's id."""
    opts = parse_qsub(site, argv, lambda path: _read(cwd, path))
    if opts.script is None:
        raise QsubError("qsub: this stand-in needs a script file (no stdin scripts)", 2)
    text = _read(cwd, opts.script)
    if opts.array is not None and len(opts.indices) > site.max_array_size:
        raise QsubError(MAX_ARRAY_MESSAGE, 2)
    walltime = opts.resources.get("walltime")
    name = opts.name or Path(opts.script).name
    attrs = _cluster_attrs(site, opts, name, environ, cwd)
    spooled = si.spool(text, Path(opts.script).name)
    home = _login(environ)["HOME"]
    workdir = _abs(cwd, opts.workdir) if opts.workdir else home
    array = opts.array is not None
    indices = opts.indices if array else [0]
    # the tasks' PBS_JOBID and output paths need the id before the submission: the
    # engine's transaction keeps another qsub from taking it in between
    try:
        with si.transaction():
            cluster = si.next_cluster()
            tasks = [
                _task(site, opts, attrs, environ, cwd, cluster, i, array, name) for i in indices
            ]
            got = si.submit(
                spooled,
                tasks,
                name=name,
                workdir=workdir,
                env={},
                attrs=attrs,
                hold=opts.hold,
                time_limit=float(seconds(walltime)) if walltime else None,
                limit_action="kill",
            )
    except StandInError as exc:
        raise QsubError(f"qsub: {exc}", 1) from None
    assert got == cluster, (got, cluster)
    return format_id(site, got, None, array=array)


def _read(cwd: str, path: str) -> str:
    try:
        return Path(_abs(cwd, path)).read_text()
    except OSError as exc:
        raise QsubError(f"qsub: script file:: {exc.strerror or exc}", 2) from None


def _abs(cwd: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(cwd, path)


def _cluster_attrs(
    site: Site, opts: QsubOptions, name: str, environ: dict[str, str], cwd: str
) -> dict[str, Any]:
    """What qstat shows of the whole submission (the ``pbs`` attrs of every job)."""
    host = socket.gethostname()
    o_vars = {f"PBS_O_{key}": environ[key] for key in _O_VARS if key in environ}
    o_vars.update(PBS_O_WORKDIR=cwd, PBS_O_SYSTEM=platform.system(), PBS_O_HOST=host)
    o_vars["PBS_O_QUEUE"] = opts.queue or site.queue
    variables = {**o_vars, **_user_vars(opts, environ)}
    return {
        "pbs": {
            "flavor": site.flavor,
            "job_name": name,
            "array": opts.array,
            "indices": opts.indices if opts.array is not None else None,
            "throttle": opts.throttle,
            "queue": opts.queue or site.queue,
            "account": opts.account,
            "resources": dict(opts.resources),
            "variables": variables,
            "submit_args": " ".join(opts.submit_args),
            "output": opts.output,
            "error": opts.error,
            "join": opts.join,
            "hold_types": "u" if opts.hold else "n",
            "rerunable": opts.rerunable,
            "submit_host": host,
            "workdir": cwd,
            "extra": dict(opts.extra),
        }
    }


def _user_vars(opts: QsubOptions, environ: dict[str, str]) -> dict[str, str]:
    """``-V`` (everything qsub sees) under ``-v`` (``A=1``, or ``A`` for qsub's own A)."""
    found = dict(environ) if opts.export_all else {}
    for item in opts.variables:
        key, sep, value = item.partition("=")
        if sep:
            found[key] = value
        elif key in environ:
            found[key] = environ[key]
    return found


def _task(
    site: Site,
    opts: QsubOptions,
    attrs: dict[str, Any],
    environ: dict[str, str],
    cwd: str,
    cluster: int,
    index: int,
    array: bool,
    name: str,
) -> Task:
    """One task: its environment and its output paths."""
    job_id = format_id(site, cluster, index if array else None, array=array)
    env = _login(environ)
    env.update(attrs["pbs"]["variables"])
    queue = attrs["pbs"]["queue"]
    env.update(PBS_ENVIRONMENT="PBS_BATCH", PBS_JOBID=job_id, PBS_QUEUE=queue)
    env["PBS_JOBDIR"] = env.get("HOME", "/")
    ncpus = _ncpus(opts)
    if site.pro:
        env.update(PBS_JOBNAME=name, NCPUS=str(ncpus), OMP_NUM_THREADS=str(ncpus))
        env.update(PBS_TASKNUM="1", PBS_MOMPORT="15003")
        if array:
            env["PBS_ARRAY_INDEX"] = str(index)
            env["PBS_ARRAY_ID"] = format_id(site, cluster, array=True)
    else:
        env.update(PBS_JOBNAME=f"{name}-{index}" if array else name, PBS_SERVER=site.server)
        env.update(PBS_NUM_NODES="1", PBS_NUM_PPN=str(ncpus), PBS_NP=str(ncpus))
        env["PBS_VERSION"] = "TORQUE-6.1.3"
        if array:
            env["PBS_ARRAYID"] = str(index)
    stdout = _output(site, opts.output, "o", name, cluster, index, array, cwd)
    stderr = _output(site, opts.error, "e", name, cluster, index, array, cwd)
    if opts.join == "oe":
        stderr = stdout
    elif opts.join == "eo":
        stdout = stderr
    return Task(index=index, env=env, stdout=stdout, stderr=stderr, attrs={"pbs_id": job_id})


def _login(environ: dict[str, str]) -> dict[str, str]:
    """What the job's login shell on the execution host has: the user's passwd entry, the
    locale, and a PATH (qsub's own stands in for the login profile's)."""
    user = pwd.getpwuid(os.getuid())
    env = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": user.pw_shell or "/bin/sh",
        "PATH": environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
    }
    env.update({key: environ[key] for key in ("LANG", "TERM") if key in environ})
    return env


def _ncpus(opts: QsubOptions) -> int:
    """ncpus of ``select=1:ncpus=N`` / ``ncpus=N`` (PBS Pro) or ``nodes=1:ppn=N`` (Torque)."""
    for key in ("select", "nodes"):
        for part in opts.resources.get(key, "").split(":"):
            name, _, value = part.partition("=")
            if name in ("ncpus", "ppn") and value.isdigit():
                return int(value)
    value = opts.resources.get("ncpus", "1")
    return int(value) if value.isdigit() else 1


def _output(
    site: Site,
    path: str | None,
    kind: str,
    name: str,
    cluster: int,
    index: int,
    array: bool,
    cwd: str,
) -> str:
    """Where a task's stdout (``kind`` "o") or stderr ("e") goes.

    No path: ``<submit dir>/<name>.o<seq>`` (PBS Pro subjob: ``.o<seq>.<index>``, Torque:
    ``-<index>``). A ``host:`` prefix is dropped; PBS Pro puts a directory's files at
    ``<dir>/<seq>[<index>].<server>.OU`` / ``.ER`` and replaces ``^array_index^``; Torque
    appends ``-<index>`` to a subjob's file name.
    """
    if path is None:
        suffix = (f".{index}" if site.pro else f"-{index}") if array else ""
        return os.path.join(cwd, f"{name}.{kind}{cluster}{suffix}")
    if ":" in path and not path.startswith("/"):
        path = path.split(":", 1)[1]
    path = _abs(cwd, path)
    if os.path.isdir(path) or path.endswith("/"):
        if site.pro:
            ext = "OU" if kind == "o" else "ER"
            job = f"{cluster}[{index}]" if array else str(cluster)
            return os.path.join(path, f"{job}.{site.server}.{ext}")
        suffix = f"-{index}" if array else ""
        return os.path.join(path, f"{name}.{kind}{cluster}{suffix}")
    if site.pro:
        return path.replace("^array_index^", str(index))
    return f"{path}-{index}" if array else path
