"""Job limits and bad hosts without a Slurm: recorded sacctmgr/squeue/sinfo output, replayed.

The fixtures were recorded by ``fixtures/slurm/record_limits.sh`` from slurm-wlm 22.05.8
with ``AccountingStorageEnforce=associations,limits,qos``: account ``cdrec`` with
``MaxSubmitJobs=4``, ``MaxJobs=1``; QOS ``cdrecq`` with ``MaxSubmitJobsPerUser=3``,
``MaxJobsPerUser=1``; four of root's jobs live (three in ``normal``, one in ``cdrecq``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.slurm import (
    ArraySettings,
    Association,
    QosLimit,
    SlurmDriver,
    SubmitBudget,
    SubmitLimits,
    parse_node_names,
    parse_sacctmgr_assoc,
    parse_sacctmgr_qos,
    parse_usage,
)
from clusterd.errors import DriverError
from clusterd.spec.model import Resources
from tests.drivers.test_slurm_parse import CONFIG, Replay, make_job, recorded

ENFORCING = CONFIG.replace(
    "AccountingStorageEnforce = none", "AccountingStorageEnforce = associations,limits,qos"
)
ASSOC = recorded("sacctmgr_user_assoc.txt")
QOS = recorded("sacctmgr_qos.txt")
USAGE = recorded("squeue_usage.txt")


def sacctmgr(argv: list[str]) -> str:
    """The recorded answer to either sacctmgr query the driver makes."""
    return QOS if "qos" in argv else ASSOC


def limits() -> SubmitLimits:
    default, assocs = parse_sacctmgr_assoc(ASSOC)
    return SubmitLimits(default, tuple(assocs), tuple(parse_sacctmgr_qos(QOS).values()))


def settings_for(**options: Any) -> ArraySettings:
    return ArraySettings(sweep="sw", **options)


# --------------------------------------------------------------------------- parsers


def test_sacctmgr_user_with_associations() -> None:
    default, assocs = parse_sacctmgr_assoc(ASSOC)
    assert default == "root"
    assert assocs == [
        Association("cdrec", None, 4, 1, ("cdrecq", "normal"), "normal"),
        Association("root", None, None, None, ("normal",), None),
    ]


def test_sacctmgr_qos() -> None:
    assert parse_sacctmgr_qos(QOS) == {
        "normal": QosLimit("normal", None, None),
        "cdrecq": QosLimit("cdrecq", 3, 1),
    }


def test_usage_counts_live_jobs_only() -> None:
    assert parse_usage(USAGE) == [("cdrec", "normal", "debug")] * 3 + [("cdrec", "cdrecq", "debug")]
    assert parse_usage("7_1|COMPLETED|cdrec|normal|debug\n7_2|CANCELLED by 0|a|q|p\n") == []


def test_node_names_map_every_spelling() -> None:
    assert parse_node_names(recorded("sinfo_nodes.txt")) == {"vm": "vm"}
    names = parse_node_names("n7|node7.cluster.example\nn8|n8\n")
    assert names == {"node7.cluster.example": "n7", "node7": "n7", "n7": "n7", "n8": "n8"}


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        (parse_sacctmgr_assoc, "root|root|clusterd|a||lots|||\n"),
        (parse_sacctmgr_assoc, "root|root\n"),
        (parse_sacctmgr_qos, "normal|x|\n"),
        (parse_sacctmgr_qos, "normal|1|2|3\n"),
    ],
    ids=["not a count", "too few fields", "qos not a count", "qos too many fields"],
)
def test_odd_sacctmgr_output_is_a_driver_error(parser: Callable[[str], Any], text: str) -> None:
    with pytest.raises(DriverError, match="cannot read sacctmgr line"):
        parser(text)


@given(text=st.text())
@settings(max_examples=100, deadline=None)
def test_limit_parsers_never_crash_on_garbage(text: str) -> None:
    for parser in (parse_sacctmgr_assoc, parse_sacctmgr_qos, parse_usage, parse_node_names):
        with contextlib.suppress(DriverError):
            parser(text)


# --------------------------------------------------------------------------- the budget


def test_budget_counts_each_limit_in_its_own_scope() -> None:
    """cdrec (MaxSubmitJobs=4) has 4 live jobs: full. QOS cdrecq (3 per user) has 1."""
    budget = SubmitBudget(limits(), parse_usage(USAGE))
    assert budget.room(settings_for(account="cdrec"))[0] == 0
    room, why = budget.room(settings_for(account="cdrec", qos="cdrecq"))
    assert (room, why) == (0, "MaxSubmitJobs of account cdrec (4 of 4 in use)")
    assert budget.room(settings_for())[0] is None  # the default account root: no limit


def test_budget_is_spent_as_arrays_go_out() -> None:
    usage = parse_usage(USAGE)[-1:]  # only the cdrecq job
    budget = SubmitBudget(limits(), usage)
    qos = settings_for(account="cdrec", qos="cdrecq")
    assert budget.room(qos) == (2, "MaxSubmitJobsPerUser of QOS cdrecq (1 of 3 in use)")
    budget.spend(qos, 2)
    assert budget.room(qos)[0] == 0
    assert budget.room(settings_for(account="cdrec")) == (
        1,
        "MaxSubmitJobs of account cdrec (3 of 4 in use)",
    )


def test_a_partitions_own_association_wins() -> None:
    own = Association("ml", "gpu", max_submit=2)
    general = Association("ml", None, max_submit=10)
    lim = SubmitLimits("ml", (general, own), ())
    assert lim.association(None, "gpu") == own
    assert lim.association("ml", "cpu") == general
    budget = SubmitBudget(lim, [("ml", "normal", "gpu"), ("ml", "normal", "cpu")])
    assert budget.room(settings_for(partition="gpu"))[0] == 1
    assert budget.room(settings_for(partition="cpu"))[0] == 8


def test_the_qos_is_the_jobs_else_the_associations_default() -> None:
    lim = SubmitLimits(
        "a",
        (Association("a", qos=("only",)), Association("b", default_qos="fast")),
        (QosLimit("only", 1), QosLimit("fast", 2), QosLimit("normal", 3)),
    )
    assert lim.qos_of(lim.association("a", None), None) == QosLimit("only", 1)
    assert lim.qos_of(lim.association("b", None), None) == QosLimit("fast", 2)
    assert lim.qos_of(lim.association("b", None), "normal") == QosLimit("normal", 3)


# --------------------------------------------------------------------------- the driver


def test_submit_sends_only_what_fits_and_leaves_the_rest(tmp_path: Path) -> None:
    """Two cdrec jobs live, MaxSubmitJobs=4: of 5 attempts 2 go out; the 3 others get no
    job.json, so that find() looks nowhere for them and the daemon offers them again."""
    usage = "".join(USAGE.splitlines(True)[:2])
    replay = Replay(scontrol=ENFORCING, sacctmgr=sacctmgr, squeue=usage, sbatch="120\n")
    driver = SlurmDriver(run=replay)
    jobs = [make_job(tmp_path, i, options={"account": "cdrec"}) for i in range(5)]
    accepted = driver.submit(jobs)
    assert accepted == {jobs[0].token: "120_0", jobs[1].token: "120_1"}
    assert [replay.count(c) for c in ("scontrol", "sacctmgr", "squeue", "sbatch")] == [1, 2, 1, 1]
    assert "--array=0-1" in replay.calls[-1] and "--account=cdrec" in replay.calls[-1]
    assert not any((Path(job.attempt_dir) / "job.json").exists() for job in jobs[2:])
    assert driver.find([_ref(job) for job in jobs[2:]]) == {}

    # the next pass: limits come from the cache; one squeue to count; nothing fits
    replay.answers["squeue"] = usage + "120_0|PENDING|cdrec|normal|debug\n" * 2
    assert driver.submit(jobs[2:]) == {}
    assert [replay.count(c) for c in ("sacctmgr", "squeue", "sbatch")] == [2, 2, 1]


def test_limits_are_read_again_after_the_ttl(tmp_path: Path) -> None:
    replay = Replay(scontrol=ENFORCING, sacctmgr=sacctmgr, squeue="", sbatch="5\n")
    driver = SlurmDriver(run=replay)
    driver.submit([make_job(tmp_path, 0)])
    driver.submit([make_job(tmp_path, 1)])
    assert replay.count("sacctmgr") == 2
    driver.limits_ttl = 0
    driver.submit([make_job(tmp_path, 2)])
    assert replay.count("sacctmgr") == 4


def test_without_enforcement_no_limit_is_read_and_no_queue_counted(tmp_path: Path) -> None:
    replay = Replay(scontrol=CONFIG, sbatch="5\n")
    SlurmDriver(run=replay).submit([make_job(tmp_path, i) for i in range(3)])
    assert [call[0] for call in replay.calls] == ["scontrol", "sbatch"]


def test_without_a_submit_limit_the_queue_is_not_counted(tmp_path: Path) -> None:
    """Enforced, but no association or QOS of the user sets a submit limit: no squeue."""
    replay = Replay(
        scontrol=ENFORCING,
        sacctmgr=lambda argv: "normal||\n" if "qos" in argv else "",
        sbatch="5\n",
    )
    SlurmDriver(run=replay).submit([make_job(tmp_path, 0)])
    assert replay.count("squeue") == 0 and replay.count("sbatch") == 1


def test_a_failing_sacctmgr_means_no_limits(tmp_path: Path, caplog: Any) -> None:
    error = (1, "", "sacctmgr: error: Problem talking to the database: Connection refused\n")
    replay = Replay(scontrol=ENFORCING, sacctmgr=error, sbatch="5\n")
    with caplog.at_level(logging.WARNING, "clusterd.drivers.slurm"):
        assert SlurmDriver(run=replay).submit([make_job(tmp_path, 0)])
    assert "cannot read job limits" in caplog.text
    assert replay.count("sacctmgr") == 1 and replay.count("squeue") == 0


@pytest.mark.parametrize(
    ("fixture", "limit"),
    [
        ("sbatch_qos_limit.txt", "QOSMaxSubmitJobPerUserLimit"),
        ("sbatch_assoc_limit.txt", "AssocMaxSubmitJobLimit"),
    ],
)
def test_a_refused_sbatch_removes_its_records_and_the_cached_limits(
    tmp_path: Path, fixture: str, limit: str
) -> None:
    """Someone else used the room up: sbatch refuses (recorded message). Nothing was
    submitted, so job.json goes; the limits are read again on the next pass."""
    refused = (1, "", recorded(fixture))
    replay = Replay(scontrol=ENFORCING, sacctmgr=sacctmgr, squeue="", sbatch=refused)
    driver = SlurmDriver(run=replay)
    job = make_job(tmp_path, 0, options={"account": "cdrec", "qos": "cdrecq"})
    with pytest.raises(DriverError, match=limit):
        driver.submit([job])
    assert not (Path(job.attempt_dir) / "job.json").exists()
    replay.answers["sbatch"] = "6\n"
    assert driver.submit([job]) == {job.token: "6_0"}
    assert replay.count("sacctmgr") == 4


def test_describe_cluster_lists_the_limits() -> None:
    replay = Replay(scontrol=ENFORCING, sacctmgr=sacctmgr, sinfo="", squeue="")
    notes = SlurmDriver(run=replay).describe_cluster().notes
    assert notes == [
        "account cdrec: MaxSubmitJobs=4 (clusterd stays below it)",
        "account cdrec: MaxJobs=1 (more wait: AssocMaxJobsLimit)",
        "QOS cdrecq: MaxSubmitJobsPerUser=3 (clusterd stays below it)",
        "QOS cdrecq: MaxJobsPerUser=1 (more wait: QOSMaxJobsPerUserLimit)",
    ]


# --------------------------------------------------------------------------- bad hosts


def test_bad_hosts_join_the_sweeps_exclude_as_node_names(tmp_path: Path, caplog: Any) -> None:
    nodes = "n7|node7.cluster.example\nn8|n8\n"
    replay = Replay(scontrol=CONFIG, sinfo=nodes, sbatch="5\n")
    job = make_job(
        tmp_path,
        0,
        options={"exclude": "n[1-2]"},
        exclude_hosts=("node7.cluster.example", "n8.cluster.example", "ghost"),
    )
    with caplog.at_level(logging.WARNING, "clusterd.drivers.slurm"):
        SlurmDriver(run=replay).submit([job])
    assert "--exclude=n[1-2],n7,n8" in replay.calls[-1]
    assert "cannot exclude host 'ghost'" in caplog.text


def test_a_bad_host_the_sweep_excludes_already_is_named_once(tmp_path: Path) -> None:
    replay = Replay(scontrol=CONFIG, sinfo=recorded("sinfo_nodes.txt"), sbatch="5\n")
    jobs = [
        make_job(tmp_path, i, options={"exclude": ["vm"]} if i else {}, exclude_hosts=("vm",))
        for i in range(2)
    ]
    SlurmDriver(run=replay).submit(jobs)
    (sbatch,) = [call for call in replay.calls if call[0] == "sbatch"]  # alike: one array
    assert [arg for arg in sbatch if arg.startswith("--exclude")] == ["--exclude=vm"]
    assert replay.count("sinfo") == 1  # node names are cached


def test_no_bad_hosts_no_sinfo(tmp_path: Path) -> None:
    replay = Replay(scontrol=CONFIG, sbatch="5\n")
    SlurmDriver(run=replay).submit([make_job(tmp_path, 0, resources=Resources(cpus=1))])
    assert replay.count("sinfo") == 0


def _ref(job: JobRequest) -> JobRef:
    return JobRef(job.token, None, job.attempt_dir)
