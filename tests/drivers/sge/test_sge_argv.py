"""The SGE driver without a Grid Engine: the batch script and qsub's argv (golden files,
shown verbatim in docs/sge.md), resource arithmetic, options, and the driver's commands
replayed from recorded output (``fixtures/sge``). Regenerate the golden files with
``CLUSTERD_UPDATE_GOLDEN=1 pytest tests/drivers/sge/test_sge_argv.py``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.drivers.jobfile import JOB_FILE, write_json_atomic
from clusterd.drivers.sge import SgeDriver, SgeSettings, build_qsub_argv, render_batch_script
from clusterd.drivers.sge.driver import _name_pattern
from clusterd.errors import DriverError
from clusterd.spec.model import Resources
from tests.drivers.sge.conftest import FIXTURES, REPO

GOLDEN_SCRIPT = FIXTURES / "golden_batch_script.sh"
GOLDEN_ARGV = FIXTURES / "golden_qsub_argv.txt"
DOC = REPO / "docs" / "sge.md"


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


def golden_argv() -> list[str]:
    """A sweep with every resource and option set: 4 cpus, 1 GPU, 16G, 4 hours."""
    job = JobRequest(
        token="cd-lr-depth-0-1-aaaaaa",
        sweep="lr-depth",
        trial_index=0,
        attempt=1,
        attempt_dir="/abs/runs/lr-depth/0/attempt-1",
        argv=("python3", "train.py"),
        resources=Resources(cpus=4, gpus=1, memory_mb=16384, time_seconds=4 * 3600),
        options={"queue": "gpu.q", "project": "ml", "throttle": 50, "extra": ["-m", "a"]},
        exclude_hosts=("node7",),
        resume_signal="USR1",
        resume_lead=300,
    )
    settings = SgeSettings.of(job)
    return build_qsub_argv(
        settings, "cd.lr-depth.0123abcd", 200, "/abs/runs/lr-depth/.sge",
        "/abs/runs/lr-depth/.sge/cd.lr-depth.0123abcd.sh",
    )  # fmt: skip


def _golden(path: Path, text: str) -> None:
    if os.environ.get("CLUSTERD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed: CLUSTERD_UPDATE_GOLDEN=1 to accept"


def test_batch_script_matches_golden_file() -> None:
    _golden(GOLDEN_SCRIPT, render_batch_script("cd.lr-depth.0123abcd", golden_jobs()))
    subprocess.run(["bash", "-n", str(GOLDEN_SCRIPT)], check=True)


def test_qsub_argv_matches_golden_file() -> None:
    _golden(GOLDEN_ARGV, "\n".join(golden_argv()) + "\n")


def test_docs_show_the_golden_files_verbatim() -> None:
    doc = DOC.read_text()
    assert GOLDEN_SCRIPT.read_text().strip() in doc, "docs/sge.md: paste golden_batch_script.sh"
    argv = GOLDEN_ARGV.read_text().split("\n")
    assert " \\\n    ".join(a for a in argv if a) in doc, "docs/sge.md: paste the qsub argv"


def run_task(script: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "array.sh"
    path.write_text(script)
    env = {"PATH": os.environ["PATH"], "JOB_ID": "77", **env}
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=30)


def test_tasks_count_from_one_and_a_rerun_task_runs_nothing(tmp_path: Path) -> None:
    adirs = [tmp_path / f"{i}" for i in range(2)]
    jobs = []
    for i, adir in enumerate(adirs):
        adir.mkdir()
        jobs.append(
            JobRequest(
                token=f"cd-x-{i}-1-abcdef",
                sweep="x",
                trial_index=i,
                attempt=1,
                attempt_dir=str(adir),
                argv=("bash", "-c", f"echo ran {i} $CLUSTERD_JOB_TOKEN"),
                resources=Resources(),
            )
        )
    script = render_batch_script("cd.x.00000000", jobs)
    assert run_task(script, {"SGE_TASK_ID": "2", "RESTARTED": "0"}, tmp_path).returncode == 0
    assert (adirs[1] / "sge.out").read_text() == "ran 1 cd-x-1-1-abcdef\n"
    assert (adirs[1] / "sge_job_id").read_text() == "77_2\n"
    assert run_task(script, {"SGE_TASK_ID": "0"}, tmp_path).returncode == 97  # unknown task
    rerun = run_task(script, {"SGE_TASK_ID": "1", "RESTARTED": "1"}, tmp_path)
    assert rerun.returncode == 0 and (adirs[0] / "requeued").exists()
    assert not (adirs[0] / "sge.out").exists()  # the attempt did not run again


# --------------------------------------------------------------------------- resources


def settings(**kw: object) -> SgeSettings:
    return SgeSettings(sweep="s", **kw)  # type: ignore[arg-type]


def resource_args(s: SgeSettings) -> list[str]:
    argv = build_qsub_argv(s, "cd.s.1", 3, "/st", "/st/x.sh")
    return argv[argv.index("y", argv.index("-j")) + 1 : -2]


def test_one_cpu_needs_no_parallel_environment() -> None:
    assert resource_args(settings(cpus=1, memory_mb=1000)) == ["-l", "h_vmem=1000M"]
    assert resource_args(settings()) == []


def test_per_slot_requests_are_the_total_divided_by_the_slots() -> None:
    """SGE multiplies -l requests by the PE's slots: 8G over 3 cpus asks 2731M a slot;
    GPUs are a per-job consumable, asked for the whole task."""
    args = resource_args(settings(cpus=3, memory_mb=8192, gpus=2, pe="mpi"))
    assert args == ["-pe", "mpi", "3", "-l", "h_vmem=2731M", "-l", "gpu=2"]


def test_a_packed_task_asks_for_pack_times_one_attempt() -> None:
    args = resource_args(settings(cpus=2, memory_mb=1000, gpus=1, pack=3))
    assert args == ["-pe", "smp", "6", "-l", "h_vmem=500M", "-l", "gpu=3"]
    assert resource_args(settings(pack=2))[:3] == ["-pe", "smp", "2"]


def test_s_rt_only_for_a_usr1_resume_signal() -> None:
    def limits(signal: str, lead: int, time: int = 600) -> list[str]:
        job = JobRequest(
            "t", "s", 0, 1, "/a", ("x",), Resources(time_seconds=time), {}, {}, (), signal, lead
        )
        return [a for a in resource_args(SgeSettings.of(job)) if "_rt=" in a]

    assert limits("USR1", 120) == ["h_rt=0:11:00", "s_rt=0:08:00"]
    assert limits("SIGUSR1", 900) == ["h_rt=0:11:00", "s_rt=0:05:00"]  # lead > limit: half
    assert limits("USR2", 120) == ["h_rt=0:11:00"]  # the runner's own timer sends it
    assert limits("none", 120) == ["h_rt=0:11:00"]
    assert limits("USR1", 120, 100 * 3600) == ["h_rt=100:01:00", "s_rt=99:58:00"]


def test_extra_comes_last_before_the_command_one_argument_each() -> None:
    argv = build_qsub_argv(settings(extra=("-l", "a=b c; rm -rf /")), "n", 1, "/st", "/st/x.sh")
    assert argv[-4:] == ["-l", "a=b c; rm -rf /", "/bin/bash", "/st/x.sh"]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"extra": "-l a=b"}, "extra"),
        ({"throttle": 0}, "throttle"),
        ({"queue": ""}, "queue"),
        ({"partition": "x"}, "partition"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, object], words: str) -> None:
    with pytest.raises(Exception, match=words):
        SgeDriver(options)


def test_qacct_patterns_cover_every_name() -> None:
    assert _name_pattern(["cd.a.1234abcd"]) == "cd.a.1234abcd"
    assert _name_pattern(["cd.a.1234abcd", "cd.a.12ffffff"]) == "cd.a.12*"
    assert _name_pattern(["cd.a.1", "cd.b.2"]) == "cd.*"
    assert _name_pattern(["x.1", "y.2"]) == "cd.*"  # never "*": clusterd's jobs only


# --------------------------------------------------------------------------- replayed


class Replay:
    """A CommandRunner answering from recorded output, counting calls."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        key = " ".join(argv[:2])
        code, out, err = self.answers.get(key, self.answers.get(argv[0], (0, "", "")))
        return subprocess.CompletedProcess(list(argv), code, out, err)


def ref(tmp_path: Path, token: str, job_id: str | None, batch: str | None = None) -> JobRef:
    adir = tmp_path / token
    adir.mkdir()
    if batch:
        record = {"version": 1, "driver": "sge", "token": token, "state": "submitting",
                  "batch": batch, "task": int(token.rsplit("-", 1)[1]), "job_id": None}  # fmt: skip
        write_json_atomic(adir / JOB_FILE, record)
    return JobRef(token, job_id, str(adir))


def test_one_qstat_answers_a_poll_and_batch_names_find_lost_ids(tmp_path: Path) -> None:
    qstat = (FIXTURES / "qstat_xml_mixed.xml").read_text()
    replay = Replay({"qstat -xml": (0, qstat, "")})
    driver = SgeDriver(run=replay)
    refs = [
        ref(tmp_path, "t-0", "2.1"),
        ref(tmp_path, "t-3", None, batch="cd.rec.array"),  # id lost: task index 3 -> "2.4"
        ref(tmp_path, "t-h", "4.2"),
    ]
    statuses = driver.poll(refs)
    assert (statuses["t-0"].phase, statuses["t-0"].host) == ("running", "vm")
    assert (statuses["t-3"].phase, statuses["t-3"].job_id) == ("queued", "2.4")
    assert (statuses["t-h"].phase, statuses["t-h"].reason) == ("queued", "held")
    assert [c[:2] for c in replay.calls] == [["qstat", "-xml"]]


def test_jobs_that_left_the_queue_cost_one_qacct_only_without_status_json(
    tmp_path: Path,
) -> None:
    empty = (FIXTURES / "qstat_xml_empty.xml").read_text()
    deleted = (FIXTURES / "qacct_deleted.txt").read_text()
    replay = Replay({"qstat -xml": (0, empty, ""), "qacct": (0, deleted, "")})
    driver = SgeDriver(run=replay)
    done, killed = ref(tmp_path, "t-done", "9.1"), ref(tmp_path, "t-killed", "3")
    (Path(done.attempt_dir) / "status.json").write_text("{}")
    statuses = driver.poll([done, killed])
    assert (statuses["t-done"].phase, statuses["t-done"].reason) == ("gone", None)
    assert statuses["t-killed"].phase == "gone"
    assert "assumedly after job" in (statuses["t-killed"].scheduler_state or "")
    assert [c[0] for c in replay.calls] == ["qstat", "qacct"]
    assert replay.calls[1][-2:] == ["-j", "3"]


def test_garbage_from_qstat_fails_the_poll(tmp_path: Path) -> None:
    driver = SgeDriver(run=Replay({"qstat -xml": (0, "<html>502</html>", "")}))
    with pytest.raises(DriverError):
        driver.poll([ref(tmp_path, "t-0", "2.1")])


def test_qdel_of_jobs_already_gone_is_no_error() -> None:
    out = (FIXTURES / "qdel_many.txt").read_text()
    lines = out.splitlines()
    replay = Replay({"qdel": (1, "\n".join(lines[:3]), lines[3])})
    SgeDriver(run=replay).cancel_ids(["4", "5", "6", "424242"])
    assert replay.calls == [["qdel", "4", "5", "6", "424242"]]
    with pytest.raises(DriverError, match="qdel failed"):
        SgeDriver(run=Replay({"qdel": (1, "", "error: commlib error")})).cancel_ids(["4"])


def test_a_job_in_error_state_is_deleted_and_ends_with_sges_reason(tmp_path: Path) -> None:
    """Eqw: one ``qstat -j`` for the reason, one ``qdel``; the attempt is gone with SGE's
    words, and still after the job left the queue (qacct would only say "failed 26")."""
    replay = Replay(
        {
            "qstat -xml": (0, (FIXTURES / "qstat_xml_mixed.xml").read_text(), ""),
            "qstat -j": (0, (FIXTURES / "qstat_j_error.txt").read_text(), ""),
            "qdel": (0, "root has deleted job 5\n", ""),
        }
    )
    driver = SgeDriver(run=replay)
    error = ref(tmp_path, "t-e", "5")
    status = driver.poll([error])["t-e"]
    why = 'Eqw: can\'t open output file "/nonexistent/dir/out": No such file or directory'
    assert (status.phase, status.reason, status.scheduler_state) == ("gone", why, why)
    assert [c[:2] for c in replay.calls] == [["qstat", "-xml"], ["qstat", "-j"], ["qdel", "5"]]
    replay.answers["qstat -xml"] = (0, (FIXTURES / "qstat_xml_empty.xml").read_text(), "")
    assert driver.poll([error])["t-e"].reason == why  # no qacct asked
    assert replay.calls[-1][:2] == ["qstat", "-xml"]
