"""The submit description clusterd writes, pinned by a golden file, and parsed offline by
HTCondor's own ``htcondor2.Submit``: its item data gives every attempt's token and task;
no user value can add a line, a command or a macro.

Regenerate the golden file with ``CLUSTERD_UPDATE_GOLDEN=1 pytest
tests/drivers/htcondor/test_htcondor_submit.py`` (docs/htcondor.md shows it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers.base import JobRequest
from clusterd.drivers.batch.script import render_script
from clusterd.drivers.htcondor import HTCondorDriver
from clusterd.drivers.htcondor.submit import (
    HTCONDOR_SCRIPT,
    SubmitSettings,
    extra_problem,
    render_submit,
    submit_literal,
)
from clusterd.errors import DriverError
from clusterd.spec.model import Resources
from tests.drivers.htcondor.htc_helpers import FIXTURES

GOLDEN = FIXTURES / "golden" / "submit_description.sub"
BASE = "/scratch/u/runs/lr-depth"
OPTIONS: dict[str, Any] = {
    "accounting_group": "group_ml.alice",
    "requirements": '(CUDACapability >= 7.0) && (OpSysAndVer == "AlmaLinux9")',
    "rank": "Memory",
    "request_disk": "20G",
    "max_materialize": 500,
    "extra": ["+MaxRuntimeHours = 4", "periodic_release = False"],
}


def golden_jobs(n: int = 3, **changes: Any) -> list[JobRequest]:
    fields: dict[str, Any] = {
        "sweep": "lr-depth",
        "attempt": 1,
        "resources": Resources(cpus=4, gpus=1, memory_mb=16384, time_seconds=4 * 3600),
        "options": OPTIONS,
        "exclude_hosts": ("badnode.cluster.example",),
    }
    fields.update(changes)
    return [
        JobRequest(
            token=f"cd-lr-depth-{i}-1-ab12c{i}",
            trial_index=i,
            attempt_dir=f"{BASE}/{i}/attempt-1",
            argv=("/usr/bin/python3", "-I", "-S", "/opt/clusterd/runner.py", f"{BASE}/{i}/l.json"),
            **fields,
        )
        for i in range(n)
    ]


def describe(jobs: list[JobRequest], batch: str = "cd.lr-depth.0123abcd") -> str:
    settings = HTCondorDriver().array_key(jobs[0])
    return render_submit(settings, batch, [[j] for j in jobs], f"{BASE}/.htcondor/{batch}.sh",
                         f"{BASE}/.htcondor")  # fmt: skip


def test_the_description_matches_the_golden_file() -> None:
    text = describe(golden_jobs())
    if os.environ.get("CLUSTERD_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "description changed: CLUSTERD_UPDATE_GOLDEN=1 to accept"


def test_htcondor_parses_it_and_its_item_data_gives_every_token() -> None:
    htcondor2 = pytest.importorskip("htcondor2")
    jobs = golden_jobs()
    sub = htcondor2.Submit(describe(jobs))
    items = list(sub.itemdata())
    assert [(i["ClusterdToken"], i["ClusterdTask"]) for i in items] == [
        (job.token, str(n)) for n, job in enumerate(jobs)
    ]
    assert sub["MY.ClusterdToken"] == '"$(ClusterdToken)"'
    assert sub["log"] == f"{BASE}/.htcondor/events.log"  # one log for every batch of the sweep
    assert sub["batch_name"] == "cd.lr-depth.0123abcd"
    assert (sub["request_cpus"], sub["request_gpus"], sub["request_memory"]) == (
        "4", "1", "16384",
    )  # fmt: skip
    assert sub["request_disk"] == "20G"
    assert sub["allowed_execute_duration"] == str(4 * 3600 + 120)
    assert sub["accounting_group"] == "group_ml.alice"
    assert sub["max_materialize"] == "500"
    assert sub["MY.MaxRuntimeHours"] == "4"
    assert "ClusterdToken, ClusterdTask from" in sub.getQArgs()


def test_the_requirements_are_a_classad_expression_that_avoids_bad_hosts() -> None:
    htcondor2 = pytest.importorskip("htcondor2")
    classad2 = pytest.importorskip("classad2")
    sub = htcondor2.Submit(describe(golden_jobs()))
    expr = classad2.ExprTree(sub.expand("requirements").replace("TARGET.", "").replace("MY.", ""))
    machine = {"CUDACapability": 8.0, "OpSysAndVer": "AlmaLinux9", "NumJobStarts": 0}
    assert expr.eval(classad2.ClassAd({**machine, "Machine": "good.cluster.example"})) is True
    assert expr.eval(classad2.ClassAd({**machine, "Machine": "badnode.cluster.example"})) is False
    assert expr.eval(classad2.ClassAd({**machine, "Machine": "badnode2.example"})) is True
    ran_once = {**machine, "Machine": "good.cluster.example", "NumJobStarts": 1}
    assert expr.eval(classad2.ClassAd(ran_once)) is False  # an evicted job never reruns


def _requirements_of(jobs: list[JobRequest]) -> str:
    settings = HTCondorDriver().array_key(jobs[0])
    text = render_submit(settings, "cd.x.1", [[job] for job in jobs], "/s/x.sh", "/s")
    htcondor2 = pytest.importorskip("htcondor2")
    return str(htcondor2.Submit(text).expand("requirements"))


@pytest.mark.parametrize(
    ("machine", "matches"),
    [
        ("node1.cluster.example", False),
        ("node1", False),
        ("node2.cluster.example", False),
        ("node10.cluster.example", True),  # a longer name with an excluded one's start
        ("gpu-node1.cluster.example", True),
        ("good.cluster.example", True),
    ],
)
def test_excluded_hosts_never_match_and_the_others_do(machine: str, matches: bool) -> None:
    """Host exclusion as HTCondor matches it: the job's Requirements (with ``TARGET.``)
    against a slot ad's ``Machine``, by the ClassAd library (``regexp`` is in HTCondor's
    ClassAd function reference; ``split``'s list form errs in classad2 25.x)."""
    classad2 = pytest.importorskip("classad2")
    jobs = golden_jobs(
        1, options={}, exclude_hosts=("node1.cluster.example", "node2", "node1.other")
    )
    job = classad2.ClassAd({"NumJobStarts": 0})
    job["Requirements"] = classad2.ExprTree(_requirements_of(jobs))
    slot = classad2.ClassAd({"Machine": machine, "Requirements": True})
    assert slot.matches(job) is matches


def test_the_stand_in_matches_a_sweep_that_excludes_other_hosts() -> None:
    """The stand-in's matchmaking (``ads.requirements_met``, this machine's fqdn as
    ``Machine``) runs the same requirements: excluding another host still runs here."""
    import socket

    from tests.standins.htcondor.ads import requirements_met

    here = socket.getfqdn().split(".", 1)[0]
    elsewhere = _requirements_of(golden_jobs(1, options={}, exclude_hosts=("elsewhere",)))
    assert requirements_met({"Requirements": elsewhere}, 0) is True
    excluded = _requirements_of(golden_jobs(1, options={}, exclude_hosts=(here,)))
    assert requirements_met({"Requirements": excluded}, 0) is False


def test_packed_jobs_ask_for_their_attempts_share_times_pack() -> None:
    jobs = golden_jobs(4, resources=Resources(cpus=2, gpus=1, memory_mb=1000, pack=2))
    settings = HTCondorDriver().array_key(jobs[0])
    text = render_submit(settings, "cd.x.1", [jobs[0:2], jobs[2:4]], "/s/x.sh", "/s")
    assert "request_cpus = 4\nrequest_gpus = 2\nrequest_memory = 2000" in text
    assert f"{jobs[0].token} 0\n{jobs[2].token} 1\n)" in text


def test_the_container_universe_names_its_image() -> None:
    opts = {"universe": "container", "container_image": "docker://pytorch/pytorch:2.3"}
    text = describe(golden_jobs(1, options=opts))
    assert "universe = container\ncontainer_image = docker://pytorch/pytorch:2.3\n" in text


@pytest.mark.parametrize(
    "value",
    [
        "Memory > 1\nqueue 1000",  # a second queue command
        "Memory > 1\rexecutable = /bin/evil",
        "Memory > 1 \\",  # would continue into the next line
    ],
)
def test_a_user_value_never_adds_a_line(value: str) -> None:
    jobs = golden_jobs(1, options={"requirements": value})
    with pytest.raises(DriverError, match=r"line break|backslash"):
        describe(jobs)
    assert HTCondorDriver.option_specs  # and validate refuses it before (test_driver)


def test_a_dollar_in_a_user_value_stays_literal() -> None:
    htcondor2 = pytest.importorskip("htcondor2")
    jobs = golden_jobs(1, options={"requirements": 'Name == "$(ClusterdToken)x"'})
    sub = htcondor2.Submit(describe(jobs))
    assert '"$(ClusterdToken)x"' in sub.expand("requirements")
    assert submit_literal("a$b", "x") == "a$(DOLLAR)b"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('+Project = "ml"', None),
        ('MY.Project = "ml"', None),
        ("periodic_release = (NumJobStarts < 3)", None),
        ("queue 10", "key = value"),
        ("log = /tmp/elsewhere.log", "set by clusterd"),
        ("Executable = /bin/sh", "set by clusterd"),
        ('+ClusterdToken = "x"', "set by clusterd"),
        ('environment = "A=1"', "set by clusterd"),
        ("x = 1\nqueue", "line break"),
        ("x = 1 \\", "backslash"),
        ("include : /etc/passwd", "key = value"),
        ("= 3", "key = value"),
    ],
)
def test_extra_lines_are_checked(line: str, problem: str | None) -> None:
    found = extra_problem(line)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_a_token_that_is_not_one_word_is_refused() -> None:
    jobs = golden_jobs(1)
    bad = [[JobRequest(**{**jobs[0].__dict__, "token": "a b"})]]
    with pytest.raises(DriverError, match="item data"):
        render_submit(SubmitSettings(sweep="s"), "cd.s.1", bad, "/s/x.sh", "/s")


def test_the_batch_script_picks_its_task_from_the_environment(tmp_path: Path) -> None:
    """The environment line gives the script HTCondor's task index and cluster id; the
    script is the shared batch script in HTCondor's names (bash -n clean)."""
    jobs = golden_jobs(2)
    script = render_script(HTCONDOR_SCRIPT, "cd.lr-depth.0123abcd", jobs)
    assert 'case "${CLUSTERD_HTC_TASK:-}" in' in script
    path = tmp_path / "s.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert (
        'environment = "CLUSTERD_HTC_TASK=$(ClusterdTask) CLUSTERD_HTC_CLUSTER=$(ClusterId)"'
        in (describe(jobs))
    )
