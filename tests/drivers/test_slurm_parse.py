"""The Slurm driver without a Slurm: parsers on recorded output, rendering, option checks.

Fixtures in ``fixtures/slurm/`` were recorded from slurm-wlm 22.05.8 on localhost by
``fixtures/slurm/record.sh`` (their ``# recorded`` header says so; it is stripped
here). Where a test needs the driver's commands, only the commands are faked
(``Replay``), as submitit's ``MockedSubprocess`` does; everything else is real.
The batch script is pinned by a golden file: regenerate it with
``CLUSTERD_UPDATE_GOLDEN=1 pytest tests/drivers/test_slurm_parse.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.slurm import (
    ArraySettings,
    SlurmDriver,
    build_sbatch_argv,
    clusterd_register_drivers,
    expand_job_ids,
    format_slurm_time,
    job_status,
    parse_gres_gpus,
    parse_node_names,
    parse_sacct,
    parse_sacctmgr_assoc,
    parse_sacctmgr_qos,
    parse_sbatch_parsable,
    parse_scontrol_config,
    parse_sinfo,
    parse_squeue,
    parse_usage,
    render_batch_script,
)
from clusterd.errors import DriverError, SpecError
from clusterd.plugins import DriverRegistry
from clusterd.spec.model import Resources, SweepSpec

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
GOLDEN = FIXTURES / "golden_batch_script.sh"


def recorded(name: str) -> str:
    """A fixture's text without its ``# recorded ...`` header."""
    text = (FIXTURES / name).read_text()
    assert text.startswith("# recorded from slurm-wlm 22.05"), f"{name} lacks its label"
    return "".join(line for line in text.splitlines(True) if not line.startswith("# "))


# --------------------------------------------------------------------------- fake commands


class Replay:
    """A ``CommandRunner`` answering each Slurm command with canned output; records calls."""

    def __init__(self, **answers: str | tuple[int, str, str] | Callable[[list[str]], Any]):
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        answer = self.answers.get(argv[0], "")
        if callable(answer):
            answer = answer(argv)
        if isinstance(answer, BaseException):
            raise answer
        rc, out, err = answer if isinstance(answer, tuple) else (0, answer, "")
        return subprocess.CompletedProcess(argv, rc, out, err)

    def count(self, command: str) -> int:
        return sum(1 for call in self.calls if call[0] == command)


def make_job(tmp_path: Path, index: int, **changes: Any) -> JobRequest:
    adir = tmp_path / "runs" / str(index) / "attempt-1"
    adir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "token": f"cd-sw-{index}-1-abc{index:03d}",
        "sweep": "sw",
        "trial_index": index,
        "attempt": 1,
        "attempt_dir": str(adir),
        "argv": ("/usr/bin/python3", "-m", "clusterd.runner", str(adir / "launch.json")),
        "resources": Resources(cpus=1),
    }
    fields.update(changes)
    return JobRequest(**fields)


def spec(**changes: Any) -> SweepSpec:
    fields: dict[str, Any] = {
        "name": "sw",
        "command": ("python", "train.py"),
        "source": "sweep.toml",
        "output_dir": "/tmp/runs/sw",
        "driver": "slurm",
    }
    fields.update(changes)
    return SweepSpec(**fields)


CONFIG = recorded("scontrol_show_config.txt")


# --------------------------------------------------------------------------- squeue


def test_squeue_pending_and_running_states() -> None:
    jobs = parse_squeue(recorded("squeue_pending_running.txt"))
    throttled = job_status(jobs["43_4"])
    assert (throttled.phase, throttled.reason) == ("queued", "JobArrayTaskLimit")
    assert job_status(jobs["50_1"]).reason == "Priority"
    assert job_status(jobs["44_0"]).reason == "Resources"
    running = job_status(jobs["43_2"])
    assert (running.phase, running.host, running.scheduler_state) == ("running", "vm", "RUNNING")
    assert jobs["43_2"].name == "cd.fixture.a1"
    assert jobs["43_2"].array_job_id == "43" and jobs["43_2"].task_id == 2


def test_squeue_final_states_are_gone_with_the_state_as_reason() -> None:
    jobs = parse_squeue(recorded("squeue_final.txt"))
    timeout = job_status(jobs["44_0"])
    assert (timeout.phase, timeout.scheduler_state) == ("gone", "TIMEOUT")
    assert timeout.reason is not None and timeout.reason.startswith("TIMEOUT")
    assert job_status(jobs["51_0"]).scheduler_state == "NODE_FAIL"
    assert job_status(jobs["50_2"]).reason == "CANCELLED"
    completed = job_status(jobs["43_0"])
    assert (completed.phase, completed.reason) == ("gone", None)
    assert job_status(jobs["43_1"]).reason == "FAILED (NonZeroExitCode)"


def test_squeue_expands_folded_arrays() -> None:
    jobs = parse_squeue("7_[1-3,9%2]|7|1-3,9%2|PENDING|JobArrayTaskLimit||cd.x.1\n")
    assert sorted(jobs) == ["7_1", "7_2", "7_3", "7_9"]
    assert {job.reason for job in jobs.values()} == {"JobArrayTaskLimit"}


def test_squeue_job_name_may_hold_the_separator() -> None:
    jobs = parse_squeue("5_0|5|0|RUNNING|None|vm|a|b|c\n")
    assert jobs["5_0"].name == "a|b|c"


# --------------------------------------------------------------------------- sacct


def test_sacct_final_states() -> None:
    jobs = parse_sacct(recorded("sacct_final.txt"))
    assert job_status(jobs["43_0"]).reason is None
    assert job_status(jobs["43_1"]).reason == "FAILED (exit code 3:0)"
    cancelled = job_status(jobs["43_2"])
    assert (cancelled.reason, cancelled.scheduler_state) == ("CANCELLED by 0", "CANCELLED by 0")
    assert cancelled.host == "vm"  # its own line wins over the folded 43_[4-5%2] line
    assert job_status(jobs["43_5"]).reason == "CANCELLED by 0"
    assert job_status(jobs["44_0"]).scheduler_state == "TIMEOUT"
    assert job_status(jobs["45_0"]).reason == "FAILED (exit code 0:10)"  # killed by USR1
    assert sorted(job for job in jobs if job.startswith("50_")) == ["50_0", "50_1", "50_2"]
    assert jobs["51"].state == "NODE_FAIL"  # a one-task array, listed without its task id


# --------------------------------------------------------------------------- others


def test_sbatch_parsable() -> None:
    assert parse_sbatch_parsable(recorded("sbatch_parsable.txt")).isdigit()
    assert parse_sbatch_parsable("123;cluster2\n") == "123"
    with pytest.raises(DriverError, match="expected a job id"):
        parse_sbatch_parsable("sbatch: error: Batch job submission failed\n")


def test_scontrol_config() -> None:
    config = parse_scontrol_config(CONFIG)
    assert config["MaxArraySize"] == "1001"
    assert config["MinJobAge"] == "300 sec"
    assert config["SLURM_VERSION"].startswith("22.05")


def test_sinfo() -> None:
    (idle,) = parse_sinfo(recorded("sinfo_idle.txt"))
    assert idle["partition"] == "debug" and idle["default"] is True
    assert idle["state"] == "idle" and idle["cpus_idle"] == idle["cpus"] > 0
    (busy,) = parse_sinfo(recorded("sinfo_busy.txt"))
    assert busy["state"] == "allocated" and busy["cpus_idle"] == 0


def test_gres_gpus() -> None:
    assert parse_gres_gpus("(null)") == 0
    assert parse_gres_gpus("gpu:a100:4(S:0-1)") == 4
    assert parse_gres_gpus("gpu:2,shard:8") == 2
    assert parse_gres_gpus("gpu:a100:2(IDX:0-1),gpu:v100:1(IDX:2)") == 3


def test_expand_job_ids() -> None:
    assert expand_job_ids("12") == ["12"]
    assert expand_job_ids("12_3") == ["12_3"]
    assert expand_job_ids("12_[0-2,5%3]") == ["12_0", "12_1", "12_2", "12_5"]
    for bad in ("", "x", "12_[3-1]", "12_[a]"):
        with pytest.raises(DriverError):
            expand_job_ids(bad)
    with pytest.raises(DriverError, match="out of bounds"):
        expand_job_ids("1_[0-99999999]")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(30, "00:00:30"), (3600, "01:00:00"), (86399, "23:59:59"), (90061, "1-01:01:01")],
)
def test_format_slurm_time(seconds: int, expected: str) -> None:
    assert format_slurm_time(seconds) == expected


# --------------------------------------------------------------------------- robustness

PARSERS: list[Callable[[str], Any]] = [
    parse_squeue,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol_config,
    parse_sinfo,
    parse_sacctmgr_assoc,
    parse_sacctmgr_qos,
    parse_usage,
    parse_node_names,
]
FIXTURE_FOR: dict[Callable[[str], Any], str] = {
    parse_squeue: "squeue_pending_running.txt",
    parse_sacct: "sacct_final.txt",
    parse_sbatch_parsable: "sbatch_parsable.txt",
    parse_scontrol_config: "scontrol_show_config.txt",
    parse_sinfo: "sinfo_busy.txt",
    parse_sacctmgr_assoc: "sacctmgr_user_assoc.txt",
    parse_sacctmgr_qos: "sacctmgr_qos.txt",
    parse_usage: "squeue_usage.txt",
    parse_node_names: "sinfo_nodes.txt",
}
slurmish = st.text(alphabet=st.sampled_from("0123456789_[]-,%|: \nABCDENOPRTUXabvm*()/"))


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@given(text=st.one_of(st.text(), slurmish))
@settings(max_examples=150, deadline=None)
def test_parsers_never_crash_on_garbage(parser: Callable[[str], Any], text: str) -> None:
    try:
        parser(text)
    except DriverError as exc:
        assert str(exc)  # a message, not a bare exception


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parsers_on_truncated_real_output(parser: Callable[[str], Any], data: Any) -> None:
    text = recorded(FIXTURE_FOR[parser])
    cut = data.draw(st.integers(0, len(text)))
    try:
        parser(text[:cut])
    except DriverError as exc:
        assert "expected" in str(exc) or "odd" in str(exc) or "unexpected" in str(exc)


# --------------------------------------------------------------------------- rendering


def golden_jobs() -> list[JobRequest]:
    """Requests with awkward values: spaces, quotes, a ``$``, a newline, an env var."""
    base = "/abs/runs/lr depth"
    return [
        JobRequest(
            token="cd-lr-depth-0-1-aaaaaa",
            sweep="lr-depth",
            trial_index=0,
            attempt=1,
            attempt_dir=f"{base}/0/attempt-1",
            argv=("/usr/bin/python3", "-m", "clusterd.runner", f"{base}/0/attempt-1/launch.json"),
            resources=Resources(cpus=2),
        ),
        JobRequest(
            token="cd-lr-depth-7-2-bbbbbb",
            sweep="lr-depth",
            trial_index=7,
            attempt=2,
            attempt_dir=f"{base}/7/attempt-2",
            argv=("python3", "-c", 'print("it\'s $HOME; `id`")\nprint(1)', "--x=a b"),
            resources=Resources(cpus=2),
            env={"OMP_NUM_THREADS": "4", "ODD": "$(rm -rf /) 'q'"},
        ),
    ]


def test_batch_script_matches_golden_file() -> None:
    script = render_batch_script("cd.lr-depth.0123abcd", golden_jobs())
    if os.environ.get("CLUSTERD_UPDATE_GOLDEN"):
        GOLDEN.write_text(script)
    assert script == GOLDEN.read_text(), "batch script changed: CLUSTERD_UPDATE_GOLDEN=1 to accept"
    subprocess.run(["bash", "-n", str(GOLDEN)], check=True)


def run_task(script: str, task: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "array.sh"
    path.write_text(script)
    env = {
        "PATH": os.environ["PATH"],
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_JOB_ID": "77",
    }
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=30)


ECHO_ARGV = (
    "python3",
    "-c",
    "import json, os, sys; print(json.dumps([sys.argv[1:], dict(os.environ)]))",
)


# any text a sweep file can hold: TOML is UTF-8, so no lone surrogates (category Cs)
@given(
    args=st.lists(
        st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))),
        max_size=4,
    )
)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_batch_script_passes_any_argv_verbatim(tmp_path: Path, args: list[str]) -> None:
    """Whatever the argv and environment, the task runs exactly them: nothing is shell-parsed."""
    adir = tmp_path / "it's a $dir"
    adir.mkdir(exist_ok=True)
    (adir / "slurm.out").unlink(missing_ok=True)
    value = args[0] if args else "$(false)"
    job = make_job(tmp_path, 0, attempt_dir=str(adir), argv=(*ECHO_ARGV, *args), env={"V": value})
    done = run_task(render_batch_script("cd.sw.x", [job]), 0, tmp_path)
    assert done.returncode == 0, done.stderr
    argv, environ = json.loads((adir / "slurm.out").read_text())
    assert argv == args
    assert environ["V"] == value and environ["CLUSTERD_JOB_TOKEN"] == job.token
    assert (adir / "slurm_job_id").read_text() == "77_0\n"


def test_batch_script_unknown_task_fails(tmp_path: Path) -> None:
    done = run_task(render_batch_script("cd.sw.x", [make_job(tmp_path, 0)]), 5, tmp_path)
    assert done.returncode == 97
    assert "array task 5 is not in this script" in done.stderr


def test_batch_script_rejects_bad_env_names(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="environment variable name"):
        render_batch_script("cd.sw.x", [make_job(tmp_path, 0, env={"A B": "1"})])


def test_sbatch_argv_translates_every_resource_and_option(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        0,
        resources=Resources(
            cpus=4,
            gpus=2,
            memory="16G",
            memory_mb=16384,
            time="04:00:00",
            time_seconds=14400,
            partition="gpu",
        ),
        options={
            "account": "ml",
            "qos": "high",
            "constraint": "a100",
            "exclude": ["node1", "node2"],
            "extra": ["--mail-type=END", "--comment=a b; rm -rf /"],
            "throttle": 3,
        },
        resume_signal="USR1",
        resume_lead=120,
    )
    settings_ = ArraySettings.of(job)
    argv = build_sbatch_argv(settings_, "cd.sw.x", 10, "/state", "/state/cd.sw.x.sh")
    assert argv == [
        "sbatch",
        "--parsable",
        "--array=0-9%3",
        "--job-name=cd.sw.x",
        "--chdir=/state",
        "--output=/state/cd.sw.x.out",
        "--open-mode=append",
        "--requeue",
        "--cpus-per-task=4",
        "--gres=gpu:2",
        "--mem=16384M",
        "--time=04:00:00",
        "--signal=B:USR1@120",
        "--partition=gpu",
        "--account=ml",
        "--qos=high",
        "--constraint=a100",
        "--exclude=node1,node2",
        "--mail-type=END",
        "--comment=a b; rm -rf /",
        "/state/cd.sw.x.sh",
    ]


def test_signal_lead_longer_than_the_time_limit_becomes_half_of_it(tmp_path: Path) -> None:
    job = make_job(tmp_path, 0, resources=Resources(time_seconds=60), resume_lead=120)
    assert ArraySettings.of(replace(job, resume_signal="SIGUSR2")).signal == "USR2"
    assert ArraySettings.of(replace(job, resume_signal="USR2")).signal_lead == 30
    untimed = make_job(tmp_path, 1, resume_signal="USR1", resume_lead=120)
    assert ArraySettings.of(untimed).signal is None  # no --time


def test_no_resume_signal_means_no_signal_option(tmp_path: Path) -> None:
    """``[resume] signal = "none"``: no signal is asked for, sbatch gets --time only."""
    job = make_job(tmp_path, 0, resources=Resources(time_seconds=600), resume_signal="none")
    argv = build_sbatch_argv(ArraySettings.of(job), "cd.sw.x", 1, "/state", "/state/x.sh")
    assert "--time=00:10:00" in argv and not any(a.startswith("--signal") for a in argv)


# --------------------------------------------------------------------------- options


def test_validate_rejects_unknown_options_listing_valid_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown option 'acount'.*account, constraint") as info:
        SlurmDriver().validate(spec(driver_options={"slurm": {"acount": "ml"}}))
    assert info.value.source == "sweep.toml"


@pytest.mark.parametrize(
    "options",
    [{"extra": "--exclusive"}, {"throttle": 0}, {"throttle": True}, {"account": ""}],
)
def test_validate_rejects_ill_typed_options(options: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="must be"):
        SlurmDriver().validate(spec(driver_options={"slurm": options}))


def test_validate_accepts_the_documented_options() -> None:
    options = {
        "account": "ml",
        "qos": "q",
        "constraint": "a100",
        "exclude": "n[1-2]",
        "extra": ["--exclusive"],
        "throttle": 2,
        "poll_interval": 60,
        "max_array_size": 9,
    }
    SlurmDriver().validate(spec(driver_options={"slurm": options}))


def test_validate_accepts_packing() -> None:
    SlurmDriver().validate(spec(resources=Resources(cpus=2, gpus=1, pack=4)))


def test_driver_options_are_checked() -> None:
    with pytest.raises(DriverError, match="unknown option 'acount'"):
        SlurmDriver({"acount": "ml"})
    with pytest.raises(DriverError, match="option 'command_timeout' must be"):
        SlurmDriver({"command_timeout": 0})
    driver = SlurmDriver({"poll_interval": 5, "max_array_size": 10, "command_timeout": 3})
    assert driver.poll_interval == 5 and SlurmDriver.poll_interval == 30.0


def test_driver_wide_options_are_defaults_the_sweep_overrides(tmp_path: Path) -> None:
    """The per-user config file's [drivers.slurm] reaches the driver as its options."""
    replay = Replay(scontrol=CONFIG, sbatch="5\n")
    driver = SlurmDriver({"account": "ml", "qos": "low"}, run=replay)
    driver.submit([make_job(tmp_path, 0, options={"qos": "high"})])
    assert "--account=ml" in replay.calls[-1] and "--qos=high" in replay.calls[-1]


def test_a_sweep_may_not_set_driver_wide_options() -> None:
    with pytest.raises(SpecError, match="unknown option 'command_timeout' in a sweep"):
        SlurmDriver().validate(spec(driver_options={"slurm": {"command_timeout": 5}}))


def test_registers_through_the_hook() -> None:
    registry = DriverRegistry()
    clusterd_register_drivers(registry)
    assert registry.get("slurm") is SlurmDriver
    assert SlurmDriver.enforces_time_limit and SlurmDriver.status_grace >= 60


# --------------------------------------------------------------------------- replayed commands


def test_submit_groups_alike_jobs_and_chunks_by_max_array_size(tmp_path: Path) -> None:
    config = CONFIG.replace("MaxArraySize            = 1001", "MaxArraySize            = 2")
    ids = iter(range(100, 200))
    replay = Replay(scontrol=config, sbatch=lambda argv: f"{next(ids)}\n")
    alike = [make_job(tmp_path, i) for i in range(5)]
    other = [make_job(tmp_path, 9, resources=Resources(cpus=2))]
    accepted = SlurmDriver(run=replay).submit([*alike, *other])
    arrays = [next(a for a in call if a.startswith("--array=")) for call in replay.calls[1:]]
    assert arrays == ["--array=0-1", "--array=0-1", "--array=0-0", "--array=0-0"]
    assert replay.count("scontrol") == 1 and replay.count("sbatch") == 4
    assert accepted[alike[0].token] == "100_0" and accepted[alike[4].token] == "102_0"
    record = json.loads((Path(alike[3].attempt_dir) / "job.json").read_text())
    assert record["job_id"] == "101_1" and record["task"] == 1
    assert record["batch"].startswith("cd.sw.")


def test_submit_takes_the_resume_signal_from_the_request(tmp_path: Path) -> None:
    resume = {"resume_signal": "USR2", "resume_lead": 300}
    job = make_job(tmp_path, 0, resources=Resources(time_seconds=3600), **resume)
    replay = Replay(scontrol=CONFIG, sbatch="5\n")
    SlurmDriver(run=replay).submit([job])
    sbatch = replay.calls[-1]
    assert "--time=01:00:00" in sbatch and "--signal=B:USR2@300" in sbatch


def test_a_failed_sbatch_is_a_driver_error(tmp_path: Path) -> None:
    error = "sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
    replay = Replay(scontrol=CONFIG, sbatch=(1, "", error))
    with pytest.raises(DriverError, match=r"sbatch failed: .*QOSMaxSubmitJobPerUserLimit"):
        SlurmDriver(run=replay).submit([make_job(tmp_path, 0)])


def test_a_hung_command_is_a_driver_error(tmp_path: Path) -> None:
    replay = Replay(squeue=lambda argv: subprocess.TimeoutExpired(argv, 3))
    driver = SlurmDriver({"command_timeout": 3}, run=replay)
    with pytest.raises(DriverError, match="did not answer within 3 s"):
        driver.poll([JobRef("t", "1_0", str(tmp_path))])


def test_missing_slurm_commands_are_a_driver_error(tmp_path: Path) -> None:
    replay = Replay(squeue=lambda argv: FileNotFoundError(argv[0]))
    with pytest.raises(DriverError, match="squeue not found"):
        SlurmDriver(run=replay).poll([JobRef("t", "1_0", str(tmp_path))])


def test_resubmitting_after_an_ambiguous_sbatch_adopts_the_job(tmp_path: Path) -> None:
    """sbatch timed out but did submit: offered again, the job is found, not run twice."""
    job = make_job(tmp_path, 0)
    first = Replay(scontrol=CONFIG, sbatch=lambda argv: subprocess.TimeoutExpired(argv, 60))
    with pytest.raises(DriverError):
        SlurmDriver(run=first).submit([job])
    batch = json.loads((Path(job.attempt_dir) / "job.json").read_text())["batch"]
    line = f"88_0|88|0|PENDING|Priority||{batch}\n"
    second = Replay(scontrol=CONFIG, squeue=line, sbatch="89\n")
    assert SlurmDriver(run=second).submit([job]) == {job.token: "88_0"}
    assert second.count("sbatch") == 0


def test_poll_asks_sacct_only_about_jobs_gone_from_squeue_or_cancelled(tmp_path: Path) -> None:
    """squeue --states=all still shows a job's final state for MinJobAge; accounting is
    needed for jobs past it, and to say who cancelled one."""
    replay = Replay(squeue=recorded("squeue_final.txt"), sacct=recorded("sacct_final.txt"))
    refs = [
        JobRef(f"t{i}", job_id, str(tmp_path))
        for i, job_id in enumerate(["43_1", "43_5", "44_0", "51_0", "999_0"])
    ]
    statuses = SlurmDriver(run=replay).poll(refs)
    assert [replay.count("squeue"), replay.count("sacct")] == [1, 1]
    assert replay.calls[-1][-1] == "--jobs=43_5,999_0"
    assert statuses["t0"].reason == "FAILED (NonZeroExitCode)"
    assert statuses["t1"].reason == "CANCELLED by 0"
    assert statuses["t2"].scheduler_state == "TIMEOUT"
    assert statuses["t3"].scheduler_state == "NODE_FAIL"
    assert statuses["t4"].phase == "gone" and "no record" in (statuses["t4"].reason or "")


def _attempt_of_batch(tmp_path: Path, token: str, batch: str, job_id: str) -> JobRef:
    """An attempt dir whose job.json names the batch it was submitted in."""
    adir = tmp_path / token
    adir.mkdir()
    record = {"version": 1, "driver": "slurm", "token": token, "batch": batch, "task": 0}
    (adir / "job.json").write_text(json.dumps(record | {"job_id": job_id}))
    return JobRef(token, job_id, str(adir))


@pytest.mark.parametrize("order", ["as recorded", "reversed"])
def test_a_cancelled_job_is_not_confused_with_an_earlier_job_of_the_same_id(
    tmp_path: Path, order: str
) -> None:
    """Job ids restart when slurmctld loses its state; accounting keeps the earlier job.
    sacct then lists two 830_0 (recorded, fixture sacct_reused_id.txt): the earlier one
    FAILED, ours CANCELLED. Ours is the one named as job.json says, in either order."""
    lines = recorded("sacct_reused_id.txt").splitlines(True)
    sacct = "".join(lines if order == "as recorded" else lines[::-1])
    replay = Replay(squeue=recorded("squeue_reused_id.txt"), sacct=sacct)
    ref = _attempt_of_batch(tmp_path, "t", "cd.fixture.dup", "830_0")
    (status,) = SlurmDriver(run=replay).poll([ref]).values()
    assert (status.phase, status.scheduler_state) == ("gone", "CANCELLED by 0")


def test_an_earlier_job_of_the_same_id_alone_in_accounting_is_not_ours(tmp_path: Path) -> None:
    """Accounting has not booked our job yet, only the earlier 830_0 (the recorded
    fixture's first line): squeue's CANCELLED stands, not the other job's FAILED."""
    earlier = recorded("sacct_reused_id.txt").splitlines(True)[0]
    replay = Replay(squeue=recorded("squeue_reused_id.txt"), sacct=earlier)
    ref = _attempt_of_batch(tmp_path, "t", "cd.fixture.dup", "830_0")
    (status,) = SlurmDriver(run=replay).poll([ref]).values()
    assert (status.phase, status.scheduler_state) == ("gone", "CANCELLED")


def test_poll_of_jobs_squeue_no_longer_lists_asks_sacct(tmp_path: Path) -> None:
    replay = Replay(squeue="", sacct=recorded("sacct_final.txt"))
    refs = [JobRef("a", "43_1", str(tmp_path)), JobRef("b", "51_0", str(tmp_path))]
    statuses = SlurmDriver(run=replay).poll(refs)
    assert statuses["a"].reason == "FAILED (exit code 3:0)"
    assert statuses["b"].scheduler_state == "NODE_FAIL"  # sacct says "51": the whole array


def test_poll_of_jobs_ended_in_squeue_needs_no_sacct(tmp_path: Path) -> None:
    replay = Replay(squeue=recorded("squeue_final.txt"))
    refs = [JobRef("a", "43_0", str(tmp_path)), JobRef("b", "44_0", str(tmp_path))]
    statuses = SlurmDriver(run=replay).poll(refs)
    assert [s.scheduler_state for s in statuses.values()] == ["COMPLETED", "TIMEOUT"]
    assert replay.count("sacct") == 0


def test_poll_of_live_jobs_needs_no_sacct(tmp_path: Path) -> None:
    replay = Replay(squeue=recorded("squeue_pending_running.txt"))
    refs = [JobRef("a", "43_4", str(tmp_path)), JobRef("b", "43_2", str(tmp_path))]
    statuses = SlurmDriver(run=replay).poll(refs)
    assert statuses["a"].phase == "queued" and statuses["b"].phase == "running"
    assert replay.count("sacct") == 0


def test_poll_without_accounting_uses_squeue_final_states(tmp_path: Path) -> None:
    disabled = (1, "", recorded("sacct_disabled.txt"))
    replay = Replay(squeue=recorded("squeue_final.txt"), sacct=disabled)
    refs = [JobRef("a", "44_0", str(tmp_path)), JobRef("b", "999_0", str(tmp_path))]
    statuses = SlurmDriver(run=replay).poll(refs)
    assert statuses["a"].scheduler_state == "TIMEOUT"
    assert statuses["b"].phase == "gone" and "accounting is off" in (statuses["b"].reason or "")


def test_poll_with_a_failing_sacct_says_unknown(tmp_path: Path) -> None:
    replay = Replay(squeue="", sacct=(1, "", "sacct: error: slurmdbd: connection refused\n"))
    (status,) = SlurmDriver(run=replay).poll([JobRef("a", "1_0", str(tmp_path))]).values()
    assert status.phase == "unknown" and "connection refused" in (status.reason or "")


def test_find_by_array_name_in_sacct_after_the_job_left_the_queue(tmp_path: Path) -> None:
    job = make_job(tmp_path, 0)
    record = {"version": 1, "token": job.token, "batch": "cd.fixture.a1", "task": 1}
    (Path(job.attempt_dir) / "job.json").write_text(json.dumps(record))
    replay = Replay(squeue="", sacct=recorded("sacct_final.txt"))
    found = SlurmDriver(run=replay).find([JobRef(job.token, None, job.attempt_dir)])
    assert found == {job.token: "43_1"}
    sacct = next(call for call in replay.calls if call[0] == "sacct")
    assert "--name=cd.fixture.a1" in sacct


def test_find_without_a_record_looks_nowhere(tmp_path: Path) -> None:
    replay = Replay()
    assert SlurmDriver(run=replay).find([JobRef("t", None, str(tmp_path))]) == {}
    assert replay.calls == []


def test_cancel_is_one_scancel(tmp_path: Path) -> None:
    replay = Replay(
        scancel=(
            1,
            "",
            "scancel: error: Kill job error on job id 3_1: "
            "Job/step already completing or completed\n",
        )
    )
    refs = [JobRef(f"t{i}", f"3_{i}", str(tmp_path)) for i in range(3)]
    SlurmDriver(run=replay).cancel(refs)
    assert replay.calls == [["scancel", "3_0", "3_1", "3_2"]]


def test_describe_cluster_in_two_calls() -> None:
    """One sinfo, one squeue; scontrol show config once per driver, to see whether limits
    are enforced (they are not in this recording, so sacctmgr is never asked)."""
    replay = Replay(
        sinfo=recorded("sinfo_busy.txt"), squeue=recorded("squeue_queue.txt"), scontrol=CONFIG
    )
    driver = SlurmDriver(run=replay)
    driver.describe_cluster()
    before = len(replay.calls)
    info = driver.describe_cluster()
    assert len(replay.calls) - before == 2 and replay.count("sacctmgr") == 0
    (partition,) = info.partitions
    assert partition["name"] == "debug" and partition["nodes_alloc"] == 1
    assert info.nodes[0]["partitions"] == ["debug"]
    assert {entry["state"] for entry in info.queue} == {"PENDING", "RUNNING"}
    assert all(entry["clusterd"] for entry in info.queue)


def test_cancel_finds_a_job_whose_id_was_lost(tmp_path: Path) -> None:
    job = make_job(tmp_path, 0)
    record = {"version": 1, "token": job.token, "batch": "cd.sw.feedbeef", "task": 2}
    (Path(job.attempt_dir) / "job.json").write_text(json.dumps(record))
    replay = Replay(squeue="12_2|12|2|PENDING|Priority||cd.sw.feedbeef\n")
    SlurmDriver(run=replay).cancel([JobRef(job.token, None, job.attempt_dir)])
    assert replay.calls[-1] == ["scancel", "12_2"]
