"""The stand-in HTCondor commands answer in the recorded formats and move jobs as HTCondor
does; the event log they write is read back by HTCondor's own ``htcondor2.JobEventLog``.

Each check runs the commands as executables on PATH (the shims), as the driver does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import htcondor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.testing.waiting import wait_for
from tests.standins.htcondor.description import split_args, split_env
from tests.standins.htcondor.fixture import CondorStandIns, condor_standins
from tests.standins.htcondor.replies import FIXTURES

TERSE = re.compile(r"(\d+)\.0 - \1\.(\d+)")


@pytest.fixture
def condor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CondorStandIns]:
    with condor_standins(tmp_path) as standins:
        for key, value in standins.env.items():
            monkeypatch.setenv(key, value)
        yield standins


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed: {done.stderr}")
    return done


def description(tmp_path: Path, items: list[tuple[str, int]], *, code: str,
                extra: str = "") -> Path:  # fmt: skip
    """A description like the driver's: one cluster, item data of token and task."""
    rows = "\n".join(f"{token}, {task}" for token, task in items)
    path = tmp_path / "job.sub"
    path.write_text(
        "universe = vanilla\n"
        f"executable = {sys.executable}\n"
        f"arguments = \"-c '{code}' $(ClusterdTask) 'two words'\"\n"
        "batch_name = demo\n"
        f"log = {tmp_path}/demo.log\n"
        f"output = {tmp_path}/out.$(ClusterdTask)\n"
        f"error = {tmp_path}/err.$(ClusterdTask)\n"
        "request_cpus = 2\nrequest_memory = 100M\nrequest_disk = 1G\n"
        "environment = \"GREETING='hello there' EMPTY=\"\n"
        '+ClusterdToken = "$(ClusterdToken)"\n'
        f"{extra}"
        f"queue ClusterdToken, ClusterdTask from (\n{rows}\n)\n"
    )
    return path


EXIT_WITH_TASK = (
    'import os, sys; print(os.environ["GREETING"], sys.argv[1:], sorted(k for k in os.environ '
    'if not k.startswith("_CONDOR") and k not in ("LC_CTYPE",))); sys.exit(int(sys.argv[1]))'
)
WAIT = "import time; time.sleep(60)"
#: the shadow exception message of the recorded log (docs/users-manual/troubleshooting.rst)
SHADOW_MESSAGE = "Error from slot1_2@bat: FATAL:    executable file not found in $PATH"


def ads(command: str, *args: str) -> list[dict[str, Any]]:
    out = run(command, "-json", *args).stdout
    return json.loads(out) if out else []


def log_events(path: Path) -> list[Any]:
    return list(htcondor2.JobEventLog(str(path)).events(0))


def shapes(text: str) -> set[tuple[str, ...]]:
    """Each record as (number, title, body lines) with numbers, quoted strings, host
    addresses and spacing made alike: what must match the recorded format."""
    out = set()
    for record in text.split("...\n"):
        lines = record.strip("\n").splitlines()
        if not lines:
            continue
        head = re.match(r"(\d{3}) \([\d.]+\) [\d/-]+ [\d:]+ (.*)", lines[0])
        assert head, lines[0]
        body = [
            " ".join(
                re.sub(
                    r"\d+", "#", re.sub(r'"[^"]*"|<[^>]*>|@[\w.-]+|by user [\w.-]+', "S", line)
                ).split()
            )
            for line in [head.group(2), *lines[1:]]
        ]
        out.add((head.group(1), *body))
    return out


def test_submit_queues_one_cluster_of_all_items_with_their_attributes(
    condor: CondorStandIns, tmp_path: Path
) -> None:
    path = description(tmp_path, [("tok-a", 0), ("tok-b", 3), ("tok-c", 0)], code=EXIT_WITH_TASK)
    reply = run("condor_submit", "-terse", str(path)).stdout
    recorded = (FIXTURES / "condor_submit-terse.txt").read_text()
    assert TERSE.fullmatch(recorded.strip()) and TERSE.fullmatch(reply.strip()), reply
    assert reply.strip().endswith(".2")
    assert len(condor.calls("condor_submit")) == 1
    jobs = {j.attrs["ClusterdToken"]: j for j in condor.jobs()}
    assert sorted(jobs) == ["tok-a", "tok-b", "tok-c"]
    assert len({j.cluster for j in jobs.values()}) == 1
    a = jobs["tok-a"].attrs
    assert (a["JobBatchName"], a["RequestCpus"], a["RequestMemory"], a["RequestDisk"]) == (
        "demo", 2, 100, 1024**2,
    )  # fmt: skip
    wait_for(lambda: all(j.state == "completed" for j in condor.jobs()), 30, "the jobs to end")
    history = ads("condor_history", "-constraint", 'ClusterdToken == "tok-b"')
    assert [(h["ExitCode"], h["JobStatus"], h["ExitBySignal"]) for h in history] == [(3, 4, False)]
    out = (tmp_path / "out.3").read_text()
    # arguments split as HTCondor's new syntax; only the description's environment
    assert out == "hello there ['3', 'two words'] ['EMPTY', 'GREETING']\n", out


def test_event_log_is_real_format_and_parses_with_htcondor(
    condor: CondorStandIns, tmp_path: Path
) -> None:
    path = description(tmp_path, [("t0", 0), ("t1", 2), ("t2", 0)], code=EXIT_WITH_TASK)
    run("condor_submit", "-terse", str(path))
    wait_for(lambda: all(j.state == "completed" for j in condor.jobs()), 30, "the jobs to end")
    log = tmp_path / "demo.log"
    events = log_events(log)
    kinds = [e.type for e in events]
    assert kinds.count(htcondor2.JobEventType.SUBMIT) == 3
    assert kinds.count(htcondor2.JobEventType.EXECUTE) == 3
    ends = {
        e.proc: e["ReturnValue"] for e in events if e.type == htcondor2.JobEventType.JOB_TERMINATED
    }
    assert ends == {0: 0, 1: 2, 2: 0}
    recorded = shapes((FIXTURES / "event-log.txt").read_text())
    mine = shapes(log.read_text())
    assert mine <= recorded, mine - recorded


def test_allowed_execute_duration_holds_with_htcondors_reason(
    condor: CondorStandIns, tmp_path: Path
) -> None:
    path = description(tmp_path, [("slow", 0)], code=WAIT, extra="allowed_execute_duration = 1\n")
    run("condor_submit", "-terse", str(path))
    wait_for(lambda: condor.jobs()[0].state == "held", 30, "the hold at the limit")
    (held,) = ads("condor_q", "-constraint", 'ClusterdToken == "slow"')
    assert held["JobStatus"] == 5
    assert held["HoldReason"] == "The job exceeded allowed execute duration of 0:00:01"
    assert (held["HoldReasonCode"], held["HoldReasonSubCode"]) == (47, 0)
    events = log_events(tmp_path / "demo.log")
    assert [e.type for e in events][-2:] == [
        htcondor2.JobEventType.JOB_EVICTED,
        htcondor2.JobEventType.JOB_HELD,
    ]
    assert (events[-1]["HoldReasonCode"], events[-1]["HoldReason"]) == (47, held["HoldReason"])
    recorded = shapes((FIXTURES / "event-log.txt").read_text())
    assert shapes((tmp_path / "demo.log").read_text()) <= recorded


def test_condor_q_json_constraint_attributes_and_no_jobs(
    condor: CondorStandIns, tmp_path: Path
) -> None:
    assert run("condor_q", "-json").stdout == (FIXTURES / "condor_q-empty.txt").read_text()
    path = description(tmp_path, [("w0", 0), ("w1", 1), ("x2", 2)], code=WAIT)
    run("condor_submit", "-terse", str(path))
    wait_for(lambda: all(j.state == "running" for j in condor.jobs()), 30, "the jobs to run")
    got = ads("condor_q", "-constraint", 'regexp("^w", ClusterdToken)',
              "-attributes", "ClusterId,ProcId,JobStatus,ClusterdToken")  # fmt: skip
    assert sorted((a["ClusterdToken"], a["JobStatus"]) for a in got) == [("w0", 2), ("w1", 2)]
    assert all(set(a) <= {"ClusterId", "ProcId", "JobStatus", "ClusterdToken"} for a in got)
    # the recorded framing: "[", ads separated by a "," line, "]"
    text = run("condor_q", "-json", "-attributes", "ProcId").stdout
    assert text.startswith("[\n{\n") and "}\n,\n{" in text and text.endswith("}\n]\n"), text
    bad = run("condor_q", "-json", "-constraint", "ClusterdToken ==", check=False)
    assert bad.returncode != 0 and "constraint" in bad.stderr


def test_condor_rm_many_ids_in_one_call(condor: CondorStandIns, tmp_path: Path) -> None:
    path = description(tmp_path, [("r0", 0), ("r1", 1)], code=WAIT)
    cluster = TERSE.fullmatch(run("condor_submit", "-terse", str(path)).stdout.strip())
    assert cluster
    c = cluster.group(1)
    wait_for(lambda: all(j.state == "running" for j in condor.jobs()), 30, "the jobs to run")
    done = run("condor_rm", f"{c}.0", f"{c}.1", f"{c}.7", check=False)
    assert done.returncode == 1  # one id was not found
    assert done.stdout == f"Job {c}.0 marked for removal\nJob {c}.1 marked for removal\n"
    assert done.stderr == f"Job {c}.7 not found\n"
    recorded = (FIXTURES / "condor_rm.txt").read_text().replace("23.", f"{c}.")
    assert done.stdout == recorded
    history = ads("condor_history", "-attributes", "JobStatus,RemoveReason")
    assert [h["JobStatus"] for h in history] == [3, 3]
    assert ads("condor_q") == []
    aborted = [
        e for e in log_events(tmp_path / "demo.log") if e.type == htcondor2.JobEventType.JOB_ABORTED
    ]
    assert len(aborted) == 2


def test_hold_release_evict_and_shadow_exception_are_logged(
    condor: CondorStandIns, tmp_path: Path
) -> None:
    path = description(tmp_path, [("h0", 0), ("e1", 1)], code=WAIT)
    run("condor_submit", "-terse", str(path))
    wait_for(lambda: all(j.state == "running" for j in condor.jobs()), 30, "the jobs to run")
    jobs = {j.attrs["ClusterdToken"]: j for j in condor.jobs()}
    c = jobs["h0"].cluster
    assert run("condor_hold", f"{c}.0").stdout == f"Job {c}.0 held\n"
    (held,) = ads("condor_q", "-constraint", "JobStatus == 5")
    assert held["HoldReason"].startswith("via condor_hold (by user ")
    released = run("condor_release", f"{c}.0").stdout
    assert released == (FIXTURES / "condor_release.txt").read_text().replace("23.3", f"{c}.0")
    condor.evict(jobs["e1"])
    wait_for(lambda: condor.engine.job(c, 1).runs == 2, 30, "the evicted job to run again")
    condor.evict(condor.engine.job(c, 1), SHADOW_MESSAGE)
    wait_for(lambda: condor.engine.job(c, 1).runs == 3, 30, "the job to run a third time")
    kinds = [(e.proc, e.type) for e in log_events(tmp_path / "demo.log")]
    t = htcondor2.JobEventType
    assert [k for p, k in kinds if p == 0][-4:] == [
        t.JOB_EVICTED,
        t.JOB_HELD,
        t.JOB_RELEASED,
        t.EXECUTE,
    ]
    assert [k for p, k in kinds if p == 1][-4:] == [
        t.JOB_EVICTED,
        t.EXECUTE,
        t.SHADOW_EXCEPTION,
        t.EXECUTE,
    ]
    recorded = shapes((FIXTURES / "event-log.txt").read_text())
    assert shapes((tmp_path / "demo.log").read_text()) <= recorded


def test_condor_version_is_the_recorded_one(condor: CondorStandIns) -> None:
    assert run("condor_version").stdout == (FIXTURES / "condor_version.txt").read_text()


def test_bad_description_is_refused_and_queues_nothing(
    condor: CondorStandIns, tmp_path: Path
) -> None:
    path = tmp_path / "bad.sub"
    path.write_text('arguments = "x"\nqueue\n')  # no executable
    done = run("condor_submit", "-terse", str(path), check=False)
    assert done.returncode != 0 and done.stderr.startswith("ERROR: ")
    assert condor.jobs() == []


WORD = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\x00"),
    min_size=1,
    max_size=8,
)


def new_syntax(words: list[str]) -> str:
    """Words quoted as condor_submit's new argument syntax documents it."""
    quoted = ["'" + w.replace("'", "''") + "'" for w in words]
    return '"' + " ".join(quoted).replace('"', '""') + '"'


@settings(max_examples=200, deadline=None)
@given(st.lists(WORD, max_size=6))
def test_new_syntax_arguments_round_trip(words: list[str]) -> None:
    assert split_args(new_syntax(words)) == words


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True), WORD, max_size=4))
def test_new_syntax_environment_round_trip(env: dict[str, str]) -> None:
    quoted = " ".join(f"{k}='" + v.replace("'", "''") + "'" for k, v in env.items())
    assert split_env('"' + quoted.replace('"', '""') + '"') == env


def test_requirements_keep_an_evicted_job_idle(condor: CondorStandIns, tmp_path: Path) -> None:
    """The stand-in matches a job's Requirements (ClassAd library) against this machine:
    with the driver's ``NumJobStarts == 0`` clause an evicted job never starts again."""
    once = "(MY.NumJobStarts =?= undefined || MY.NumJobStarts == 0)"
    code = "print(1, flush=True); import time; time.sleep(60)"
    path = description(tmp_path, [("once", 0)], code=code, extra=f"requirements = {once}\n")
    run("condor_submit", "-terse", str(path))
    wait_for(lambda: (tmp_path / "out.0").read_text() if (tmp_path / "out.0").exists() else "",
             30, "the job to run")  # fmt: skip
    (job,) = condor.jobs()
    condor.evict(job)
    wait_for(lambda: condor.engine.job(job.cluster, 0).runs == 2, 30, "the engine to start it")
    (idle,) = ads("condor_q", "-attributes", "JobStatus,NumJobStarts")
    assert (idle["JobStatus"], idle["NumJobStarts"]) == (1, 1)
    t = htcondor2.JobEventType
    kinds = [e.type for e in log_events(tmp_path / "demo.log")]
    assert kinds == [t.SUBMIT, t.EXECUTE, t.JOB_EVICTED]
    run("condor_rm", f"{job.cluster}.0")
    assert (tmp_path / "out.0").read_text() == "1\n"  # it ran once
    kinds = [e.type for e in log_events(tmp_path / "demo.log")]
    assert kinds == [t.SUBMIT, t.EXECUTE, t.JOB_EVICTED, t.JOB_ABORTED]


REASON = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x00"),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip() == s)


@settings(max_examples=60, deadline=None)
@given(REASON, st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=999))
def test_any_hold_record_reads_back_with_htcondor(reason: str, code: int, index: int) -> None:
    """A held record the writer makes, for any one-line reason, is read back by the real
    parser with the same reason and code (the record format carries them faithfully)."""
    import tempfile
    from types import SimpleNamespace

    from tests.standins.htcondor.events import records

    job = SimpleNamespace(
        cluster=7, index=index, owner="u", attrs={"HoldReasonSubCode": 0}, runs=0,
        hold_reason=reason, hold_code=code, start_time=None, end_reason=None,
    )  # fmt: skip
    text = "".join(records(job, "submit") + records(job, "held"))
    with tempfile.NamedTemporaryFile("w", suffix=".log") as fh:
        fh.write(text)
        fh.flush()
        events = list(htcondor2.JobEventLog(fh.name).events(0))
    assert [e.type for e in events] == [
        htcondor2.JobEventType.SUBMIT,
        htcondor2.JobEventType.JOB_HELD,
    ]
    held = events[1]
    assert (held["HoldReason"], held["HoldReasonCode"], held.proc) == (reason, code, index)
