"""Which GPUs are the attempt's: the pure selection from its environment."""

from __future__ import annotations

import uuid as uuidlib

from hypothesis import given
from hypothesis import strategies as st

from clusterd.runner.gpu_select import BATCH_MARKERS, DeviceId, Selection, parse_ids, select_gpus

indices = st.integers(0, 999_999)
gpu_uuids = st.uuids().map(lambda u: f"GPU-{u}")
mig_uuids = st.uuids().map(lambda u: f"MIG-{u}")
legacy = st.tuples(gpu_uuids, st.integers(0, 99), st.integers(0, 99))


def _render(device: DeviceId) -> str:
    if device.kind == "mig_legacy":
        return f"MIG-{device.value}/{device.gi}/{device.ci}"
    return str(device.value)


devices = st.one_of(
    indices.map(lambda i: DeviceId("index", i)),
    gpu_uuids.map(lambda u: DeviceId("uuid", u)),
    mig_uuids.map(lambda u: DeviceId("mig", u)),
    legacy.map(lambda t: DeviceId("mig_legacy", t[0], t[1], t[2])),
)


@given(st.lists(devices, min_size=1, max_size=6), st.sampled_from([",", ", ", " ,"]))
def test_every_id_form_round_trips_in_order(ids: list[DeviceId], sep: str) -> None:
    text = sep.join(_render(d) for d in ids)
    chosen = select_gpus({"CUDA_VISIBLE_DEVICES": text})
    assert chosen == Selection("ids", tuple(ids), f"CUDA_VISIBLE_DEVICES={text!r}")


@given(st.lists(devices, max_size=3), st.integers(1, 9), st.lists(devices, max_size=3))
def test_a_negative_index_ends_the_list_as_in_cuda(
    before: list[DeviceId], neg: int, after: list[DeviceId]
) -> None:
    text = ",".join([*map(_render, before), f"-{neg}", *map(_render, after)])
    assert parse_ids(text) == tuple(before)


@given(st.text(st.characters(blacklist_characters=","), min_size=1, max_size=20))
def test_an_unknown_form_samples_nothing_and_says_which(item: str) -> None:
    chosen = select_gpus({"CUDA_VISIBLE_DEVICES": f"0,{item}"})
    assert chosen.mode in ("ids", "unknown", "none")
    if chosen.mode == "unknown":
        assert chosen.ids == ()
        assert repr(item.strip()) in chosen.why


def test_unknown_forms_are_refused_not_widened() -> None:
    for text in ("gpu0", "GPU-xyz", "MIG-GPU-abc/1", "0,all", "nvidia0"):
        chosen = select_gpus({"CUDA_VISIBLE_DEVICES": text})
        assert chosen.mode == "unknown", text
        assert chosen.ids == ()


def test_empty_and_nodevfiles_mean_no_gpu() -> None:
    for text in ("", " ", "NoDevFiles", "-1"):
        assert select_gpus({"CUDA_VISIBLE_DEVICES": text}).mode == "none", text


def test_a_workstation_samples_every_gpu() -> None:
    assert select_gpus({"HOME": "/home/me"}).mode == "all"


@given(st.sampled_from([m for m in BATCH_MARKERS if m != "JOB_ID"]), st.text(min_size=1))
def test_a_batch_job_without_gpu_variables_samples_none(marker: str, value: str) -> None:
    chosen = select_gpus({marker: value})
    assert chosen.mode == "none"
    assert marker in chosen.why


def test_grid_engine_job_id_counts_only_with_sge_root() -> None:
    assert select_gpus({"JOB_ID": "42"}).mode == "all"
    assert select_gpus({"JOB_ID": "42", "SGE_ROOT": "/opt/sge"}).mode == "none"


@given(st.lists(indices, min_size=1, max_size=4, unique=True))
def test_slurm_gpus_without_cuda_visible_devices_are_minor_numbers(gpus: list[int]) -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": ",".join(map(str, gpus))}
    chosen = select_gpus(env)
    assert chosen.ids == tuple(DeviceId("minor", g) for g in gpus)
    # the step's GPUs win over the job's, CUDA_VISIBLE_DEVICES over both
    env["SLURM_STEP_GPUS"] = str(gpus[0])
    assert select_gpus(env).ids == (DeviceId("minor", gpus[0]),)
    env["CUDA_VISIBLE_DEVICES"] = "0"
    assert select_gpus(env).ids == (DeviceId("index", 0),)


def test_htcondor_assigned_gpus_forms() -> None:
    u = f"GPU-{uuidlib.UUID(int=5)}"
    assert select_gpus({"_CONDOR_AssignedGPUs": "CUDA0,CUDA3"}).ids == (
        DeviceId("index", 0),
        DeviceId("index", 3),
    )
    assert select_gpus({"_CONDOR_AssignedGPUs": u}).ids == (DeviceId("uuid", u),)
    short = select_gpus({"_CONDOR_AssignedGPUs": "GPU-6a96bd13"})
    assert short.ids == (DeviceId("uuid", "GPU-6a96bd13"),)


def test_grid_engine_rsmap_is_space_separated() -> None:
    chosen = select_gpus({"JOB_ID": "3", "SGE_ROOT": "/sge", "SGE_HGR_gpu": "0 2"})
    assert chosen.ids == (DeviceId("index", 0), DeviceId("index", 2))
