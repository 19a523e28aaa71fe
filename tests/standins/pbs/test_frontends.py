"""The stand-in PBS commands against the recorded real output (both dialects).

What qsub prints and refuses, what a task sees, and that ``qstat``'s output has the
recorded captures' shape (``tests/drivers/fixtures/pbs/``): the same layout, attribute
names in the same order, the same id forms and state letters. Jobs here are tiny bash
scripts run by the shared engine; waits are on conditions.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterd.testing.waiting import wait_for
from tests.standins.pbs import pro_json
from tests.standins.pbs.fixture import PbsStandIn, pbs, pbs_standin
from tests.standins.pbs.options import parse_range
from tests.standins.pbs.torque_xml import to_xml

__all__ = ["pbs"]  # the fixture

FIXTURES = Path(__file__).resolve().parents[2] / "drivers" / "fixtures" / "pbs"
PRO = FIXTURES / "pbspro"
TORQUE = FIXTURES / "torque"

#: attributes the stand-in adds that no capture at hand shows (OpenPBS names them)
PRO_EXTRA = {"max_run_subjobs"}


def run(
    server: PbsStandIn, *argv: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A stand-in command, as the driver runs it (its own process, no shell)."""
    return subprocess.run(
        list(argv), env={**server.env}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def script(tmp_path: Path, body: str, name: str = "job.sh") -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


def array_flag(server: PbsStandIn) -> str:
    return "-J" if server.site.pro else "-t"


def qstat_jobs(server: PbsStandIn) -> dict[str, dict[str, Any]]:
    """Every job by id, from the one status call the driver makes, parsed generically."""
    if server.site.pro:
        done = run(server, "qstat", "-f", "-F", "json", "-x", "-t")
        assert done.returncode == 0, done.stderr
        jobs: dict[str, dict[str, Any]] = json.loads(done.stdout).get("Jobs", {})
        return jobs
    done = run(server, "qstat", "-x", "-t")
    assert done.returncode == 0, done.stderr
    return {
        job.findtext("Job_Id") or "": {child.tag: child for child in job}
        for job in ET.fromstring(done.stdout)
    }


def text(value: Any) -> str:
    return (value.text or "") if isinstance(value, ET.Element) else str(value)


# -- layout ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(p.name for p in PRO.glob("qstat-*f-F-json*.json") if "-Bf-" not in p.name)
)
def test_pbspro_json_printer_reproduces_every_job_capture_byte_for_byte(name: str) -> None:
    """(qstat-Bf-F-json.json is laid out as Python's json.dumps(indent=3) writes it --
    re-serialised by whoever recorded it -- so only its attribute names are compared.)"""
    recorded = (PRO / name).read_text()
    assert pro_json.dumps(json.loads(recorded)) + "\n" == recorded


def test_torque_xml_writer_reproduces_the_capture_byte_for_byte() -> None:
    recorded = (TORQUE / "qstat-x.xml").read_text()
    root = ET.fromstring(recorded)

    def elements(node: ET.Element) -> list[tuple[str, Any]]:
        return [(c.tag, elements(c) if len(c) else (c.text or "")) for c in node]

    rebuilt = "<Data>" + "".join(to_xml(elements(job)) for job in root) + "</Data>\n"
    assert rebuilt == recorded


# -- qsub --------------------------------------------------------------------------------


def test_qsub_prints_the_recorded_id_forms(pbs: PbsStandIn, tmp_path: Path) -> None:
    job = script(tmp_path, "true")
    array = run(pbs, "qsub", array_flag(pbs), "0-3", "-N", "cd.s.1", str(job), cwd=tmp_path)
    plain = run(pbs, "qsub", "-N", "cd.s.2", str(job), cwd=tmp_path)
    assert (array.returncode, plain.returncode) == (0, 0), array.stderr + plain.stderr
    recorded = (PRO if pbs.site.pro else TORQUE).joinpath("qsub-array.txt").read_text()
    shape = re.sub(r"^\d+\[\]\.(.+)$", r"<n>[].<server>", recorded.strip())
    assert re.sub(r"^\d+\[\]\.(.+)$", r"<n>[].<server>", array.stdout.strip()) == shape
    assert array.stdout == f"1[].{pbs.site.server}\n"
    assert plain.stdout == f"2.{pbs.site.server}\n"
    assert len(pbs.calls("qsub")) == 2


def test_qsub_refuses_J_0_0_with_the_real_words(tmp_path: Path) -> None:
    with pbs_standin("pbspro") as server:
        done = run(server, "qsub", "-J", "0-0", str(script(tmp_path, "true")), cwd=tmp_path)
        recorded = (PRO / "qsub-J-0-0.stderr.txt").read_text()
        assert done.returncode == 2
        assert done.stderr.startswith(recorded)  # then the usage, as OpenPBS prints it
        assert "usage: qsub" in done.stderr and done.stdout == ""
        assert server.engine.jobs() == []  # nothing was submitted


def test_qsub_refuses_what_real_qsub_refuses(pbs: PbsStandIn, tmp_path: Path) -> None:
    job = str(script(tmp_path, "true"))
    for argv, words in [
        (["-l", "walltime=soon", job], "qsub: illegal -l value"),
        (["-j", "xy", job], "qsub: illegal -j value"),
        (["--bogus", job], "qsub: invalid option"),
        ([array_flag(pbs), "5-2", job], f"qsub: illegal {array_flag(pbs)} value"),
    ]:
        done = run(pbs, "qsub", *argv, cwd=tmp_path)
        assert done.returncode != 0 and done.stderr.startswith(words), (argv, done.stderr)
    if pbs.site.pro:
        rerun = run(pbs, "qsub", "-r", "n", "-J", "0-3", job, cwd=tmp_path)
        assert rerun.stderr.startswith("qsub:  cannot submit non-rerunable Array Job\n")
    too_many = run(pbs, "qsub", array_flag(pbs), "0-10000", job, cwd=tmp_path)
    assert too_many.stderr.strip() == "qsub: Array job exceeds server or queue size limit"
    assert pbs.engine.jobs() == []


def test_tasks_get_the_pbs_variables_and_their_own_output(pbs: PbsStandIn, tmp_path: Path) -> None:
    body = (
        'echo "index=${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-}} id=$PBS_JOBID name=$PBS_JOBNAME '
        "array=${PBS_ARRAY_ID:-} token=$CLUSTERD_BATCH workdir=$PBS_O_WORKDIR pwd=$PWD "
        'env=$PBS_ENVIRONMENT secret=${SECRET:-unset}"'
    )
    job = script(tmp_path, body)
    argv = ["qsub", array_flag(pbs), "0-2", "-N", "cd.s.ab", "-v", "CLUSTERD_BATCH=cd.s.ab"]
    argv += ["-o", f"{tmp_path}/out/", "-e", f"{tmp_path}/out/", str(job)]
    (tmp_path / "out").mkdir()
    done = subprocess.run(
        argv, env={**pbs.env, "SECRET": "x"}, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: all(j.state == "completed" for j in pbs.engine.jobs()), 30, "the tasks")
    outputs = sorted(p.read_text() for p in (tmp_path / "out").iterdir() if p.stat().st_size)
    server, home = pbs.site.server, str(Path.home())
    for index, line in enumerate(outputs):
        fields = dict(item.split("=", 1) for item in line.split())
        assert fields["index"] == str(index)
        assert fields["id"] == f"1[{index}].{server}"
        assert fields["token"] == "cd.s.ab" and fields["secret"] == "unset"  # no -V
        assert fields["workdir"] == str(tmp_path) and fields["pwd"] == home
        assert fields["env"] == "PBS_BATCH"
        if pbs.site.pro:
            assert (fields["name"], fields["array"]) == ("cd.s.ab", f"1[].{server}")
        else:
            assert fields["name"] == f"cd.s.ab-{index}"


def test_directives_in_the_script_apply_under_the_command_line(
    pbs: PbsStandIn, tmp_path: Path
) -> None:
    job = script(tmp_path, "#PBS -N from-script\n#PBS -l walltime=00:10:00\n#PBS -q other\ntrue")
    done = run(pbs, "qsub", "-q", "cli", "-l", "mem=1gb", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (info,) = {j.cluster: j.attrs["pbs"] for j in pbs.engine.jobs()}.values()
    assert info["job_name"] == "from-script" and info["queue"] == "cli"
    assert info["resources"] == {"mem": "1gb", "walltime": "00:10:00"}


# -- qstat -------------------------------------------------------------------------------


def _capture_keys() -> list[str]:
    """Attribute names of every PBS Pro capture, in a server order consistent with all."""
    order: list[str] = []
    for path in sorted(PRO.glob("qstat-*f-F-json*.json")):
        if "-Bf-" in path.name:
            continue
        for job in json.loads(path.read_text()).get("Jobs", {}).values():
            for key in job:
                if key not in order:
                    order.append(key)
    return order


def _follows(keys: list[str], reference: list[str]) -> bool:
    """True if ``keys`` appear in ``reference``'s relative order."""
    positions = [reference.index(k) for k in keys if k in reference]
    return positions == sorted(positions)


def test_pbspro_qstat_has_the_captures_shape(tmp_path: Path) -> None:
    with pbs_standin("pbspro") as server:
        gate = tmp_path / "gate"
        job = script(
            tmp_path,
            f'[ "$PBS_ARRAY_INDEX" = 0 ] && exit 3\nwhile [ ! -e {gate} ]; do sleep 0.05; done',
        )
        argv = ["qsub", "-J", "0-3", "-N", "cd.s.x", "-l", "select=1:ncpus=1", str(job)]
        done = run(server, *argv, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: server.engine.job(1, 0).state == "completed", 30, "subjob 0 to end")
        server.engine.hold(1, 1, "job held, too many failed attempts to run")
        wait_for(lambda: server.engine.job(1, 2).state == "running", 30, "subjob 2 to run")
        jobs = qstat_jobs(server)
        reference = json.loads((PRO / "qstat-f-F-json.json").read_text())["Jobs"]
        known = set(_capture_keys()) | PRO_EXTRA
        assert list(jobs) == ["1[].pbs-server", *(f"1[{i}].pbs-server" for i in range(4))]
        parent, first, held, running, _ = jobs.values()
        assert (parent["job_state"], first["job_state"], held["job_state"]) == ("B", "X", "H")
        assert running["job_state"] == "R" and first["Exit_status"] == 3
        assert held["comment"] == "job held, too many failed attempts to run"
        assert held["Hold_Types"] == "s" and "Exit_status" not in held
        assert parent["array_state_count"] == "Queued:1 Running:2 Exiting:0 Expired:1 "
        assert (first["array_id"], first["array_index"]) == ("1[].pbs-server", 0)
        recorded_parent = next(iter(reference.values()))
        anchors = _anchor_order()
        for attrs in jobs.values():
            assert set(attrs) <= known, set(attrs) - known
            assert _follows(list(attrs), anchors), list(attrs)
            tail = list(attrs)[list(attrs).index("Submit_Host") + 1 :]  # as in the composed one
            assert tail in ([], ["array_id", "array_index"], list(recorded_parent)[-4:]), tail
        assert set(recorded_parent) - set(parent) <= {"group_list"}
        gate.touch()
        wait_for(lambda: server.engine.job(1, 2).state == "completed", 30, "subjob 2 to end")


def _anchor_order() -> list[str]:
    """The attributes every job of every PBS Pro capture has, in their (common) order; the
    captures disagree on where the rest go (``comment`` moves between versions)."""
    lists = [
        list(a) for a in json.loads((PRO / "qstat-f-F-json.json").read_text())["Jobs"].values()
    ]
    for path in sorted(PRO.glob("qstat-x-f-F-json*.json")):
        lists += [list(a) for a in json.loads(path.read_text())["Jobs"].values()]
    common = [key for key in lists[0] if all(key in keys for keys in lists)]
    assert all(_follows(keys, common) for keys in lists), "the captures disagree"
    return common


def test_torque_qstat_has_the_captures_shape(tmp_path: Path) -> None:
    with pbs_standin("torque") as server:
        job = script(tmp_path, '[ "$PBS_ARRAYID" = 0 ] && exit 3\nsleep 30')
        argv = ["qsub", "-t", "0-2", "-N", "cd.s.x", "-l", "nodes=1:ppn=1", str(job)]
        done = run(server, *argv, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: server.engine.job(1, 0).state == "completed", 30, "subjob 0 to end")
        server.engine.hold(1, 1, "held by the admin")
        wait_for(lambda: server.engine.job(1, 2).state == "running", 30, "subjob 2 to run")
        jobs = qstat_jobs(server)
        server_name = server.site.server
        assert list(jobs) == [f"1[].{server_name}", *(f"1[{i}].{server_name}" for i in range(3))]
        parent, first, held, running = jobs.values()
        assert [text(j["job_state"]) for j in jobs.values()] == ["R", "C", "H", "R"]
        assert text(first["exit_status"]) == "3" and text(first["Job_Name"]) == "cd.s.x-0"
        assert text(held["Hold_Types"]) == "s" and text(held["comment"]) == "held by the admin"
        assert text(parent["job_array_request"]) == "0-2"
        assert text(running["job_array_id"]) == "2"
        assert text(first["Variable_List"]).startswith("PBS_ARRAYID=0,")
        recorded = ET.fromstring((TORQUE / "qstat-x.xml").read_text())
        order: list[str] = []
        for node in sorted(recorded, key=len, reverse=True):  # the fullest job first
            keys = [c.tag for c in node]
            for i, key in enumerate(keys):
                if key not in order:
                    order.insert(order.index(keys[i - 1]) + 1 if i else 0, key)
        torque_order = _torque_order(order)
        for elements in jobs.values():
            assert _follows(list(elements), torque_order), list(elements)
            assert set(elements) <= set(torque_order), set(elements) - set(torque_order)


def _torque_order(recorded: list[str]) -> list[str]:
    """The capture's element order, with ``comment`` where Torque's job_attr_def.c puts it
    (after ``queue_type``, before ``etime``) and ``init_work_dir`` (in qstat-x-finished.xml)."""
    order = list(recorded)
    order.insert(order.index("etime"), "comment")
    order.insert(order.index("request_version"), "init_work_dir")
    return order


def test_walltime_ends_a_job_with_the_real_exit_status(pbs: PbsStandIn, tmp_path: Path) -> None:
    job = script(tmp_path, "exec sleep 60")
    done = run(pbs, "qsub", "-l", "walltime=00:00:01", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: pbs.engine.job(1, 0).state == "completed", 30, "the walltime kill")
    (attrs,) = qstat_jobs(pbs).values()
    if pbs.site.pro:
        assert (attrs["job_state"], attrs["Exit_status"]) == ("F", -29)  # as on Aurora
        assert attrs["comment"].endswith(" and exceeded resource walltime")
    else:
        assert (text(attrs["job_state"]), text(attrs["exit_status"])) == ("C", "-11")


def test_qstat_without_jobs_and_with_unknown_ids(pbs: PbsStandIn) -> None:
    if pbs.site.pro:
        empty = run(pbs, "qstat", "-f", "-F", "json", "-x", "-t")
        assert "Jobs" not in json.loads(empty.stdout)  # qstat.c adds it with the first job
    else:
        assert run(pbs, "qstat", "-x", "-t").stdout == "<Data></Data>\n"
    unknown = run(pbs, "qstat", "-x", "12345")
    word = "Unknown Job Id" if pbs.site.pro else "Unknown Job Id Error"
    assert unknown.stderr == f"qstat: {word} 12345.{pbs.site.server}\n"
    assert unknown.returncode == 153
    if not pbs.site.pro:  # the recorded Torque line has that form
        recorded = (TORQUE / "qstat-unknown.stderr.txt").read_text().splitlines()[0]
        assert recorded.rsplit(" ", 1)[0] == unknown.stderr.rsplit(" ", 1)[0]


def test_qstat_version_and_server_attributes(pbs: PbsStandIn) -> None:
    version = run(pbs, "qstat", "--version").stdout
    recorded = (PRO if pbs.site.pro else TORQUE).joinpath("qstat-version.txt").read_text()
    assert version == recorded
    if pbs.site.pro:
        server = json.loads(run(pbs, "qstat", "-B", "-f", "-F", "json").stdout)
        attrs = server["Server"][pbs.site.server]
        assert attrs["max_array_size"] == 10_000
        recorded = json.loads((PRO / "qstat-Bf-F-json.json").read_text())
        recorded_keys = next(iter(recorded["Server"].values()))
        assert set(attrs) <= set(recorded_keys), set(attrs) - set(recorded_keys)
    else:
        assert "max_job_array_size = 10000" in run(pbs, "qstat", "-B", "-f").stdout


# -- qdel, qrls ------------------------------------------------------------------------------


def test_qdel_takes_many_ids_in_one_call(pbs: PbsStandIn, tmp_path: Path) -> None:
    job = script(tmp_path, "exec sleep 60")
    run(pbs, "qsub", array_flag(pbs), "0-2", str(job), cwd=tmp_path)
    run(pbs, "qsub", str(job), cwd=tmp_path)
    wait_for(lambda: sum(j.state == "running" for j in pbs.engine.jobs()) == 4, 30, "4 to run")
    server = pbs.site.server
    done = run(pbs, "qdel", f"1[0].{server}", f"1[2].{server}", f"2.{server}", f"77.{server}")
    assert [j.state for j in pbs.engine.jobs()] == ["removed", "running", "removed", "removed"]
    assert len(pbs.calls("qdel")) == 1
    if pbs.site.pro:
        recorded = (PRO / "qdel-unknown.stderr.txt").read_text().splitlines()[0]
        assert done.stderr == re.sub(r"\S+$", f"77.{server}", recorded) + "\n"
    else:
        assert done.stderr == f"qdel: nonexistent job id: 77.{server}\n"
    assert done.returncode == 153
    again = run(pbs, "qdel", f"1[].{server}")  # the array: its subjob still running
    assert again.returncode == 0, again.stderr
    assert [j.state for j in pbs.engine.jobs()] == ["removed"] * 4
    finished = run(pbs, "qdel", f"2.{server}")
    if pbs.site.pro:
        assert finished.stderr == f"qdel: Job has finished 2.{server}\n"


def test_qsub_h_holds_and_qrls_releases(pbs: PbsStandIn, tmp_path: Path) -> None:
    job = script(tmp_path, "true")
    run(pbs, "qsub", "-h", array_flag(pbs), "0-1", str(job), cwd=tmp_path)
    jobs = qstat_jobs(pbs)
    states = [text(j["job_state"]) for j in jobs.values()]
    assert states == ["H", "H", "H"]
    holds = [text(j["Hold_Types"]) for j in jobs.values() if "Hold_Types" in j]
    assert set(holds) == {"u"}
    assert all("comment" not in j for j in jobs.values())  # as capture 157.pbs: none yet
    done = run(pbs, "qrls", f"1[].{pbs.site.server}")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: all(j.state == "completed" for j in pbs.engine.jobs()), 30, "the release")


# -- properties --------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(start=st.integers(0, 50), length=st.integers(1, 50), step=st.integers(1, 7))
def test_pbspro_ranges_are_the_indices_of_X_to_Y_by_Z(start: int, length: int, step: int) -> None:
    end = start + length
    assert parse_range(f"{start}-{end}:{step}", torque=False) == list(range(start, end + 1, step))
    with pytest.raises(ValueError):
        parse_range(f"{end}-{start}", torque=False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_the_pbs_json_layout_is_json(value: dict[str, Any]) -> None:
    assert json.loads(pro_json.dumps(value)) == value


@settings(max_examples=100, deadline=None)
@given(text_value=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30))
def test_the_torque_xml_escapes_every_value(text_value: str) -> None:
    node = ET.fromstring(to_xml([("Job_Name", text_value), ("Resource_List", [("mem", "1")])]))
    assert (node.findtext("Job_Name") or "") == text_value


# -- the driver's parsers ----------------------------------------------------------------------


def test_the_drivers_parsers_read_every_standin_answer(pbs: PbsStandIn, tmp_path: Path) -> None:
    """What the PBS driver reads -- version, qsub's id, one qstat of everything, the
    server's array cap, qdel's complaints -- it reads from the stand-in as from PBS."""
    from clusterd.drivers.pbs import parse

    flavor, _ = parse.parse_version(run(pbs, "qstat", "--version").stdout)
    assert flavor == pbs.flavor
    job = script(tmp_path, '[ "${PBS_ARRAY_INDEX:-$PBS_ARRAYID}" = 1 ] && exit 4\ntrue')
    argv = ["qsub", array_flag(pbs), "0-2", "-N", "cd.s.1a2b", "-v", "CLUSTERD_BATCH=cd.s.1a2b"]
    array_id = parse.parse_qsub(run(pbs, *argv, str(job), cwd=tmp_path).stdout)
    assert array_id == f"1[].{pbs.site.server}"
    wait_for(lambda: all(j.state == "completed" for j in pbs.engine.jobs()), 30, "the tasks")
    if pbs.site.pro:
        jobs = parse.parse_qstat_json(run(pbs, "qstat", "-f", "-F", "json", "-x", "-t").stdout)
        size = parse.parse_max_array_size(run(pbs, "qstat", "-B", "-f", "-F", "json").stdout)
        assert size == pbs.site.max_array_size
    else:
        jobs = parse.parse_qstat_xml(run(pbs, "qstat", "-x", "-t").stdout)
    assert list(jobs) == ["1[]", "1[0]", "1[1]", "1[2]"]
    assert jobs["1[]"].is_array and jobs["1[]"].batch == "cd.s.1a2b"
    done = "X" if pbs.site.pro else "C"
    assert [(j.state, j.exit_status) for j in list(jobs.values())[1:]] == [
        (done, 0), (done, 4), (done, 0)
    ]  # fmt: skip
    assert [parse.job_status(j).phase for j in list(jobs.values())[1:]] == ["gone"] * 3
    assert jobs["1[0]"].host  # exec_host
    gone = run(pbs, "qdel", f"1[0].{pbs.site.server}", f"9.{pbs.site.server}")
    known, other = parse.unknown_job_lines(gone.stderr)
    assert (len(known), other) == (2, []), gone.stderr
