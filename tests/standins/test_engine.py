"""The stand-in scheduler engine with real processes: what frontends and drivers rely on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from clusterd.testing.waiting import alive, wait_for
from tests.standins import shims
from tests.standins.engine import (
    REPO,
    CorruptState,
    Job,
    StandIn,
    SubmitRejected,
    Task,
    UnknownJob,
    WrongState,
    group_alive,
)

NOTIFY = "tests.standins.engine:record_event"


def script(tmp: Path, body: str, name: str = "job.sh") -> str:
    path = tmp / name
    path.write_text(body)
    return str(path)


def task(tmp: Path, index: int = 0, **env: str) -> Task:
    return Task(index, dict(env), str(tmp / f"out.{index}"), str(tmp / f"err.{index}"))


def base_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}


def submit(si: StandIn, tmp: Path, body: str, n: int = 1, **kw: object) -> int:
    tasks = [task(tmp, i, IDX=str(i)) for i in range(n)]
    # a fresh script file each time: a job reads its script when it starts, and rewriting
    # one in place could let a starting job read it half written
    path = script(tmp, body, f"job.{len(list(tmp.glob('job.*.sh')))}.sh")
    return si.submit(path, tasks, name="j", workdir=str(tmp), env=base_env(), **kw)  # type: ignore[arg-type]


def state_is(si: StandIn, cluster: int, index: int, *states: str) -> Job | None:
    job = si.job(cluster, index)
    return job if job.state in states else None


def running_with_pid(si: StandIn, cluster: int, index: int = 0) -> Job:
    def check() -> Job | None:
        job = si.job(cluster, index)
        return job if job.state == "running" and job.pid else None

    return wait_for(check, 10, f"job {cluster}.{index} running with a pid")


def file_text(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def ended(si: StandIn, cluster: int, index: int = 0) -> Job:
    return wait_for(lambda: state_is(si, cluster, index, "completed", "removed"), 10, "job to end")


def gone(si: StandIn, job: Job) -> None:
    """The job's process group has no live member and no wrapper of the root is left."""
    pgid = job.pid
    assert pgid is not None
    wait_for(lambda: not group_alive(pgid) and not si.wrapper_pids(), 10, "processes gone")


# -- running scripts ------------------------------------------------------------------


def test_submit_runs_script_in_workdir_with_env_and_appends_outputs(
    standin: StandIn, tmp_path: Path
) -> None:
    (tmp_path / "out.0").write_text("before\n")
    c = submit(
        standin,
        tmp_path,
        'echo "idx=$IDX foo=$FOO pwd=$(pwd)"; echo oops >&2\n',
        attrs={"token": "t1"},
    )
    assert c == 1
    job = ended(standin, c)
    assert (job.state, job.exit_code, job.term_signal, job.runs) == ("completed", 0, None, 1)
    assert job.end_reason == "exit" and job.pid is None
    assert job.start_time and job.end_time and job.submit_time <= job.start_time <= job.end_time
    assert (tmp_path / "out.0").read_text() == f"before\nidx=0 foo= pwd={tmp_path}\n"
    assert (tmp_path / "err.0").read_text() == "oops\n"
    assert job.attrs == {"token": "t1"} and job.env["IDX"] == "0"
    assert job.owner and job.name == "j"


def test_executable_script_runs_directly_and_shared_output_file(
    standin: StandIn, tmp_path: Path
) -> None:
    path = script(tmp_path, "#!/bin/sh\necho out; echo err >&2\n", "x.sh")
    os.chmod(path, 0o755)
    both = str(tmp_path / "both")
    c = standin.submit(
        path, [Task(7, {}, both, both)], name="x", workdir=str(tmp_path), env=base_env()
    )
    job = ended(standin, c, 7)
    assert job.exit_code == 0 and sorted(Path(both).read_text().split()) == ["err", "out"]


def test_exit_codes_and_signals_are_recorded(standin: StandIn, tmp_path: Path) -> None:
    c = submit(standin, tmp_path, "case $IDX in 0) exit 3;; 1) kill -KILL $$;; esac\n", n=3)
    jobs = {j.index: j for j in (ended(standin, c, i) for i in range(3))}
    assert (jobs[0].exit_code, jobs[0].term_signal, jobs[0].end_reason) == (3, None, "exit")
    assert (jobs[1].exit_code, jobs[1].term_signal, jobs[1].end_reason) == (None, 9, "signal")
    assert (jobs[2].exit_code, jobs[2].term_signal) == (0, None)
    long = submit(standin, tmp_path, "exit 5\n", time_limit=1e10)  # far off: no overflow
    assert ended(standin, long).exit_code == 5


def test_unstartable_workdir_completes_with_reason(standin: StandIn, tmp_path: Path) -> None:
    c = standin.submit(
        script(tmp_path, "true\n"),
        [task(tmp_path)],
        name="j",
        workdir=str(tmp_path / "missing"),
        env=base_env(),
    )
    job = ended(standin, c)
    assert job.exit_code is None and (job.end_reason or "").startswith("start failed:")


def test_tasks_of_a_cluster_each_run_with_their_env(standin: StandIn, tmp_path: Path) -> None:
    c = submit(standin, tmp_path, "echo task $IDX\n", n=5)
    for i in range(5):
        assert ended(standin, c, i).exit_code == 0
        assert (tmp_path / f"out.{i}").read_text() == f"task {i}\n"
    assert [(j.cluster, j.index) for j in standin.jobs(c)] == [(c, i) for i in range(5)]
    assert submit(standin, tmp_path, "true\n") == c + 1


def test_slots_queue_the_rest_and_start_them_as_others_end(
    standin: StandIn, tmp_path: Path
) -> None:
    standin.set_auto(slots=2)
    c = submit(standin, tmp_path, f"while [ ! -e {tmp_path}/go.$IDX ]; do sleep 0.01; done\n", n=4)
    states = [j.state for j in standin.jobs(c)]
    assert states == ["running", "running", "idle", "idle"]
    (tmp_path / "go.0").touch()
    wait_for(lambda: state_is(standin, c, 2, "running"), 10, "task 2 to start")
    assert [j.state for j in standin.jobs(c)] == ["completed", "running", "running", "idle"]
    for i in (1, 2, 3):
        (tmp_path / f"go.{i}").touch()
    for i in range(4):
        assert ended(standin, c, i).exit_code == 0


def test_zero_slots_keep_jobs_idle_until_raised(standin: StandIn, tmp_path: Path) -> None:
    standin.set_auto(slots=0)
    c = submit(standin, tmp_path, "true\n", n=2)
    assert [j.state for j in standin.jobs(c)] == ["idle", "idle"]
    standin.set_auto(slots=1)
    assert [j.state for j in standin.jobs(c)] == ["running", "idle"]
    assert [ended(standin, c, i).exit_code for i in (0, 1)] == [0, 0]


# -- remove, hold, release, evict -----------------------------------------------------

FOREVER = 'sleep 300 & echo $! > "child.$IDX"; wait\n'


def test_remove_running_and_idle_leaves_no_process(standin: StandIn, tmp_path: Path) -> None:
    standin.set_auto(slots=1)
    c = submit(standin, tmp_path, FOREVER, n=2)
    job = running_with_pid(standin, c)
    child = int(wait_for(lambda: file_text(tmp_path / "child.0"), 10, "child pid"))
    assert standin.job(c, 1).state == "idle"
    assert standin.remove([(c, 0), (c, 1), (c, 9), (99, 0)]) == [(c, 0), (c, 1)]
    assert not alive(child) and not group_alive(job.pid)  # type: ignore[arg-type]
    gone(standin, job)
    for i in (0, 1):  # the wrapper recorded nothing over "removed"
        j = standin.job(c, i)
        assert (j.state, j.exit_code, j.term_signal) == ("removed", None, None)
    assert standin.remove([(c, 0)]) == []


def test_remove_kills_a_script_that_ignores_sigterm(standin: StandIn, tmp_path: Path) -> None:
    c = submit(standin, tmp_path, "trap '' TERM\n" + FOREVER)
    job = running_with_pid(standin, c)
    wait_for(lambda: file_text(tmp_path / "child.0"), 10, "child pid")
    t0 = time.monotonic()
    assert standin.remove([(c, 0)]) == [(c, 0)]
    assert time.monotonic() - t0 >= 2.0  # SIGTERM ignored: SIGKILL after the 2 s grace
    gone(standin, job)
    assert standin.job(c, 0).state == "removed"


def test_hold_and_release(standin: StandIn, tmp_path: Path) -> None:
    c = submit(standin, tmp_path, FOREVER, hold=True, notify=NOTIFY)
    held = standin.job(c, 0)
    assert (held.state, held.runs, held.hold_reason) == ("held", 0, "submitted on hold")
    with pytest.raises(WrongState, match="is held: not running"):
        standin.evict(c, 0)
    standin.release(c, 0)
    first = running_with_pid(standin, c)
    standin.hold(c, 0, "by test", code=21)
    held = standin.job(c, 0)
    assert (held.state, held.hold_reason, held.hold_code, held.runs) == ("held", "by test", 21, 1)
    gone(standin, first)
    assert standin.job(c, 0).state == "held"
    with pytest.raises(WrongState, match=r"1\.0 is held: cannot hold"):
        standin.hold(c, 0, "again")
    standin.release(c, 0)
    second = running_with_pid(standin, c)
    assert second.runs == 2 and second.hold_reason is None
    with pytest.raises(WrongState, match="not held"):
        standin.release(c, 0)
    with pytest.raises(UnknownJob):
        standin.hold(c, 5, "x")
    standin.remove([(c, 0)])
    events = [e["event"] for e in standin.events()]
    assert events == ["submit", "held", "released", "execute", "held", "released", "execute",
                      "aborted"]  # fmt: skip


def test_evict_restarts_and_first_run_records_nothing(standin: StandIn, tmp_path: Path) -> None:
    body = f'echo run >> {tmp_path}/runs; [ "$(wc -l < {tmp_path}/runs)" -ge 2 ] && exit 4\n'
    c = submit(standin, tmp_path, body + FOREVER, notify=NOTIFY)
    first = running_with_pid(standin, c)
    standin.evict(c, 0, "test")
    assert not group_alive(first.pid)  # type: ignore[arg-type]
    job = ended(standin, c)
    assert (job.state, job.runs, job.exit_code) == ("completed", 2, 4)
    wait_for(lambda: not standin.wrapper_pids(), 10, "wrappers to exit")
    assert standin.job(c, 0).exit_code == 4  # the evicted run's wrapper wrote nothing
    events = [(e["event"], e["runs"]) for e in standin.events()]
    assert events == [
        ("submit", 0),
        ("execute", 1),
        ("evicted", 1),
        ("execute", 2),
        ("terminated", 2),
    ]


def test_notify_runs_in_the_process_that_made_the_transition(
    standin: StandIn, tmp_path: Path
) -> None:
    c = submit(
        standin, tmp_path, f"while [ ! -e {tmp_path}/go ]; do sleep 0.01; done\n", notify=NOTIFY
    )
    wrapper = running_with_pid(standin, c).wrapper
    (tmp_path / "go").touch()
    ended(standin, c)
    events = [(e["event"], e["state"], e["pid"]) for e in standin.events()]
    me = os.getpid()
    assert events == [
        ("submit", "idle", me),
        ("execute", "running", me),
        ("terminated", "completed", wrapper),
    ]


def test_bad_notify_is_refused_before_anything_is_stored(standin: StandIn, tmp_path: Path) -> None:
    for bad in ("nocolon", "no.such.module:f", "tests.standins.engine:nope"):
        with pytest.raises(SubmitRejected, match="notify"):
            submit(standin, tmp_path, "true\n", notify=bad)
    with pytest.raises(SubmitRejected, match="no tasks"):
        standin.submit("x", [], name="j", workdir=str(tmp_path), env={})
    with pytest.raises(SubmitRejected, match="limit_action"):
        submit(standin, tmp_path, "true\n", limit_action="stop")
    with pytest.raises(SubmitRejected, match="not a str"):
        standin.submit("x", [task(tmp_path)], name="j", workdir="/", env={"N": 1})  # type: ignore[dict-item]
    with pytest.raises(SubmitRejected, match="JSON"):
        submit(standin, tmp_path, "true\n", attrs={"f": object()})
    assert standin.jobs() == []


# -- time limit -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["kill", "hold"])
def test_time_limit(standin: StandIn, tmp_path: Path, action: str) -> None:
    c = submit(standin, tmp_path, FOREVER, time_limit=0.3, limit_action=action)
    first = running_with_pid(standin, c)
    job = wait_for(lambda: state_is(standin, c, 0, "completed", "held"), 10, "time limit")
    gone(standin, first)
    assert job.end_reason == "time limit" and job.term_signal == signal.SIGTERM
    assert job.end_time is None or job.end_time - job.start_time >= 0.3  # type: ignore[operator]
    if action == "kill":
        assert (job.state, job.exit_code) == ("completed", None)
    else:
        assert (job.state, job.hold_reason, job.runs) == ("held", "time limit", 1)


# -- a wrapper that died --------------------------------------------------------------


def test_dead_wrapper_marks_job_lost_and_kills_its_group(standin: StandIn, tmp_path: Path) -> None:
    c = submit(standin, tmp_path, FOREVER, notify=NOTIFY)
    job = running_with_pid(standin, c)
    assert job.wrapper
    os.kill(job.wrapper, signal.SIGKILL)
    wait_for(lambda: not alive(job.wrapper), 10, "wrapper killed")  # type: ignore[arg-type]
    lost = standin.jobs(c)[0]
    assert (lost.state, lost.exit_code, lost.term_signal, lost.end_reason) == (
        "completed",
        None,
        9,
        "lost",
    )
    assert not group_alive(job.pid)  # type: ignore[arg-type]
    assert standin.events()[-1]["event"] == "terminated"


# -- shared state across processes ----------------------------------------------------

SUBMITTER = """
import sys
from tests.standins.engine import StandIn, Task
si = StandIn(sys.argv[1])
for k in range(int(sys.argv[2])):
    si.record_call("sub", [str(k)])
    c = si.submit("/bin/true", [Task(0, {}, "/dev/null", "/dev/null")], name="c",
                  workdir="/", env={})
    print(c)
"""


def test_concurrent_submits_get_distinct_ids_and_lose_nothing(
    standin: StandIn, tmp_path: Path
) -> None:
    procs, each = 4, 5
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, str(standin.root), str(each)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    ids = [int(x) for p in runs for x in p.communicate(timeout=60)[0].split()]
    assert all(p.returncode == 0 for p in runs)
    assert sorted(ids) == list(range(1, procs * each + 1))
    assert sorted(j.cluster for j in standin.jobs()) == sorted(ids)
    assert len(standin.calls("sub")) == procs * each
    for c in ids:
        assert ended(standin, c).exit_code == 0
    with standin.transaction():
        assert standin.next_cluster() == procs * each + 1
        assert submit(standin, tmp_path, "true\n") == procs * each + 1


# -- bad state ------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", ["", "{not json", '{"cluster": 1}', "[1, 2]"])
def test_corrupt_state_file_is_a_clear_error(
    standin: StandIn, tmp_path: Path, garbage: str
) -> None:
    c = submit(standin, tmp_path, "true\n", hold=True)  # held: submit reads it too
    path = standin.root / "clusters" / f"{c}.json"
    text = path.read_text()
    path.write_text(garbage or text[: len(text) // 2])  # empty means: truncated
    for call in (
        standin.jobs,
        lambda: standin.job(c, 0),
        lambda: submit(standin, tmp_path, "true\n"),
    ):
        with pytest.raises(CorruptState, match=str(path)):
            call()
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{c}.json"]  # nothing added
    path.write_text(text)
    assert standin.job(c, 0).state == "held"


def test_shutdown_with_unreadable_state_still_kills_the_scripts(
    standin: StandIn, tmp_path: Path
) -> None:
    c = submit(standin, tmp_path, FOREVER)
    job = running_with_pid(standin, c)
    path = standin.root / "clusters" / f"{c}.json"
    text = path.read_text()
    path.write_text("{")
    with pytest.raises(CorruptState):
        standin.shutdown()
    assert not group_alive(job.pid)  # type: ignore[arg-type]
    wait_for(lambda: not standin.wrapper_pids(), 10, "wrapper to exit")
    path.write_text(text)  # the wrapper could not record: the job is then found lost
    assert standin.job(c, 0).end_reason == "lost"


def test_set_attrs_and_spool(standin: StandIn, tmp_path: Path) -> None:
    path = standin.spool("echo spooled\n", "job.sh")
    assert Path(path).parent == standin.root / "spool"
    c = standin.submit(path, [task(tmp_path, 0), task(tmp_path, 1)], name="s",
                       workdir=str(tmp_path), env=base_env(), attrs={"a": 1})  # fmt: skip
    standin.set_attrs(c, None, {"b": 2})
    standin.set_attrs(c, 1, {"a": 3})
    assert [j.attrs for j in standin.jobs(c)] == [{"a": 1, "b": 2}, {"a": 3, "b": 2}]
    assert ended(standin, c, 1).exit_code == 0
    assert (tmp_path / "out.1").read_text() == "spooled\n"


def test_corrupt_sequence_file_stops_submit(standin: StandIn, tmp_path: Path) -> None:
    (standin.root / "seq").write_text("x1")
    with pytest.raises(CorruptState, match="seq"):
        submit(standin, tmp_path, "true\n")
    assert standin.jobs() == []


def test_knobs_reject_and_hold_the_next_submit_only(standin: StandIn, tmp_path: Path) -> None:
    standin.set_auto(reject_next="Too many jobs")
    with pytest.raises(SubmitRejected, match="Too many jobs"):
        submit(standin, tmp_path, "true\n")
    standin.set_auto(hold_next="policy", host="node7")
    c = submit(standin, tmp_path, "true\n")
    job = standin.job(c, 0)
    assert (job.state, job.hold_reason, job.host) == ("held", "policy", "node7")
    assert ended(standin, submit(standin, tmp_path, "true\n")).host == "node7"


# -- calls and shims ------------------------------------------------------------------


def test_record_call_and_calls(standin: StandIn) -> None:
    standin.record_call("qstat", ["-f", "1"])
    standin.record_call("qsub", ["job.sh"])
    standin.record_call("qstat", [])
    assert standin.calls("qstat") == [["-f", "1"], []]
    assert standin.calls("qdel") == []
    assert standin.calls() == [["qstat", "-f", "1"], ["qsub", "job.sh"], ["qstat"]]
    standin.clear_calls()
    assert standin.calls() == []


def test_shims_install_commands_bound_to_their_root(
    standin: StandIn, standin_bin: Path, tmp_path: Path
) -> None:
    env = shims.install(standin_bin, {"standin-dump": "tests.standins.shims:dump"}, standin.root)
    assert env["PATH"].split(os.pathsep)[0] == str(standin_bin)
    c = submit(standin, tmp_path, "true\n")
    ended(standin, c)
    run_env = {"PATH": env["PATH"], "HOME": "/"}  # root baked in, no PYTHONPATH needed
    out = subprocess.run(
        ["standin-dump", str(c)], env=run_env, cwd="/", capture_output=True, text=True, check=True
    ).stdout
    assert [json.loads(line)["state"] for line in out.splitlines()] == ["completed"]
    assert standin.calls("standin-dump") == [[str(c)]]
    with pytest.raises(ValueError, match="module:function"):
        shims.install(standin_bin, {"x": "nocolon"}, standin.root)


# -- model-based: submit/remove/hold/release/evict against a model --------------------

SLOTS = 2


class EngineVsModel(RuleBasedStateMachine):
    """Jobs never end by themselves here: every state change comes from an operation, so
    the model (FIFO start while fewer than SLOTS run) predicts each state and run count."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="standin-"))
        self.si = StandIn(self.dir / "root")
        self.si.set_auto(slots=SLOTS)
        self.model: dict[tuple[int, int], list] = {}  # id -> [state, runs]

    def _schedule(self) -> None:
        running = sum(s == "running" for s, _ in self.model.values())
        for key in sorted(self.model):
            if running >= SLOTS:
                break
            if self.model[key][0] == "idle":
                self.model[key] = ["running", self.model[key][1] + 1]
                running += 1

    def _pick(self, data: st.DataObject) -> tuple[int, int]:
        return data.draw(st.sampled_from(sorted(self.model)))

    @rule(n=st.integers(1, 2), hold=st.booleans())
    def submit(self, n: int, hold: bool) -> None:
        c = submit(self.si, self.dir, "sleep 300\n", n=n, hold=hold)
        for i in range(n):
            self.model[(c, i)] = ["held" if hold else "idle", 0]
        self._schedule()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        key = self._pick(data)
        active = self.model[key][0] in ("idle", "held", "running")
        assert self.si.remove([key]) == ([key] if active else [])
        if active:
            self.model[key][0] = "removed"
        self._schedule()

    def _try(self, key: tuple[int, int], ok_from: tuple[str, ...], op: str, to: str) -> None:
        call = {
            "hold": lambda: self.si.hold(*key, "h"),
            "release": lambda: self.si.release(*key),
            "evict": lambda: self.si.evict(*key),
        }[op]
        if self.model[key][0] in ok_from:
            call()
            self.model[key][0] = to
            self._schedule()
        else:
            with pytest.raises(WrongState):
                call()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        self._try(self._pick(data), ("idle", "running"), "hold", "held")

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self._try(self._pick(data), ("held",), "release", "idle")

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def evict(self, data: st.DataObject) -> None:
        self._try(self._pick(data), ("running",), "evict", "idle")

    @invariant()
    def matches_model(self) -> None:
        got = {(j.cluster, j.index): [j.state, j.runs] for j in self.si.jobs()}
        assert got == self.model

    def teardown(self) -> None:
        self.si.shutdown()
        assert all(j.state in ("completed", "removed") for j in self.si.jobs())


TestEngineVsModel = EngineVsModel.TestCase
TestEngineVsModel.settings = settings(
    max_examples=int((os.environ.get("CLUSTERD_STRESS") and 60) or 6),
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_many_tasks_finish_quickly(standin: StandIn, tmp_path: Path) -> None:
    """A figure for the README: 20 trivial tasks submitted, started and completed."""
    t0 = time.monotonic()
    c = submit(standin, tmp_path, "true\n", n=20)
    for i in range(20):
        ended(standin, c, i)
    assert time.monotonic() - t0 < 20
