"""Stand-in ``condor_submit [-terse] [-batch-name NAME] <file>``: one engine cluster per
description, one proc per queued item, replies as recorded from HTCondor.

Each proc runs its own ``executable``/``arguments`` in its ``Iwd`` through a small
launcher (the engine runs one script per cluster), with only the environment HTCondor
would give it: ``environment``, what ``getenv`` copies, and ``_CONDOR_*`` variables.
``allowed_execute_duration`` is the engine's time limit with ``limit_action="hold"``:
the job is held with HTCondor's reason and code 47 (``ads.hold_info``).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from tests.standins.engine import REPO, StandIn, StandInError, Task
from tests.standins.htcondor import replies
from tests.standins.htcondor.description import SubmitError, parse

__all__ = ["main"]

NOTIFY = "tests.standins.htcondor.events:notify"
LAUNCHER = '''#!{python}
"""stand-in HTCondor starter (tests/standins/htcondor): exec the proc's argv in its Iwd,
if the job matches this machine; one whose requirements fail (an evicted job with
NumJobStarts == 0 in them) stays idle: this process waits, running nothing, until removed."""
import json, os, signal, sys
sys.path.insert(0, {repo!r})
env = dict(os.environ)
argv = json.loads(env.pop("_CONDOR_STANDIN_ARGV"))
iwd = env.pop("_CONDOR_STANDIN_IWD")
with open("/proc/%d/cmdline" % os.getppid(), "rb") as fh:  # run_task <root> <c> <i> <run>
    root, cluster, index, run = fh.read().rstrip(b"\\0").split(b"\\0")[-4:]
from tests.standins.engine import StandIn
from tests.standins.htcondor.ads import requirements_met
job = StandIn(root.decode()).job(int(cluster), int(index))
if not requirements_met(job.attrs, int(run) - 1):
    while True:
        signal.pause()
os.chdir(iwd)
os.execve(argv[0], argv, env)
'''


def launcher(root: Path) -> str:
    """The launcher script under the state root (written once)."""
    path = root / "htcondor-launch"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(LAUNCHER.format(python=sys.executable, repo=str(REPO)))
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return str(path)


def _next_cluster(root: Path) -> int:
    seq = root / "seq"
    text = seq.read_text().strip() if seq.exists() else "0"
    return int(text) + 1 if text.isdigit() else 1


def main(argv: list[str]) -> int:
    si = StandIn()
    si.record_call("condor_submit", argv)
    terse, batch_name, files = False, None, []
    args = iter(argv)
    for arg in args:
        if arg == "-terse":
            terse = True
        elif arg in ("-batch-name", "-batch_name"):
            batch_name = next(args, None)
        elif arg.startswith("-"):
            print(f"ERROR: stand-in condor_submit does not know option {arg}", file=sys.stderr)
            return 1
        else:
            files.append(arg)
    if len(files) != 1:
        print("ERROR: stand-in condor_submit takes exactly one submit file", file=sys.stderr)
        return 1
    path = Path(files[0])
    try:
        text = path.read_text()
    except OSError as exc:
        print(f'ERROR: Failed to open file "{path}": {exc.strerror}', file=sys.stderr)
        return 1
    owner = getpass.getuser()
    try:
        # the cluster id is only known under the engine's lock; macros that use it
        # ($(Cluster)) are expanded with the next free id, which the engine then takes
        # (condor_submit calls are not concurrent in the tests)
        desc = parse(text, _next_cluster(si.root), str(Path.cwd()), owner)
    except SubmitError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if batch_name:
        desc.attrs["JobBatchName"] = batch_name
    if desc.log:
        desc.attrs["UserLog"] = desc.log
    tasks = [
        Task(
            index=job.proc,
            env={
                **job.env,
                "_CONDOR_STANDIN_ARGV": json.dumps(job.argv),
                "_CONDOR_STANDIN_IWD": job.iwd,
                "_CONDOR_SCRATCH_DIR": job.iwd,
                "_CONDOR_SLOT": "slot1",
            },
            stdout=job.stdout,
            stderr=job.stderr,
            attrs=job.attrs,
        )
        for job in desc.jobs
    ]
    try:
        cluster = si.submit(
            launcher(si.root),
            tasks,
            name=desc.attrs.get("JobBatchName", ""),
            workdir=desc.jobs[0].iwd,
            env={},
            attrs=desc.attrs,
            hold=desc.hold,
            time_limit=desc.allowed_execute_duration,
            limit_action="hold",
            notify=NOTIFY,
        )
    except StandInError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    last = desc.jobs[-1].proc
    if terse:
        print(replies.submit_terse(cluster, last))
    else:
        print(replies.submit(cluster, len(desc.jobs)), end="")
    return 0
