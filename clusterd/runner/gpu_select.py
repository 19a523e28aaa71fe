"""Which GPUs belong to this attempt, from the environment its scheduler gave it (pure).

The sampler must report the trial's GPUs only: on a shared node the other GPUs are
other people's. Each driver says which GPUs a job has in a different way:

* local driver, Slurm, PBS Pro's cgroup hook, HTCondor: ``CUDA_VISIBLE_DEVICES``
  (indices, ``GPU-<uuid>`` -- HTCondor may give a short prefix -- ``MIG-<uuid>``, or
  the old ``MIG-GPU-<uuid>/<gi>/<ci>``);
* HTCondor without it: ``_CONDOR_AssignedGPUs`` (``CUDA0`` or ``GPU-<uuid>`` forms);
* Slurm without it: ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``, global gres indices,
  which are the device files' minor numbers (``/dev/nvidia<N>``);
* Grid Engine with a ``gpu`` RSMAP: ``SGE_HGR_gpu`` (space separated ids).

Integer ids in ``CUDA_VISIBLE_DEVICES`` are taken as NVML indices *as the runner sees
them*: under Slurm with ``ConstrainDevices`` the job's cgroup hides the other GPUs from
NVML as from CUDA, and both number the visible ones from 0 (so ``0`` is not the node's
GPU 0, and SLURM_JOB_GPUS would be wrong inside the job); without the constraint Slurm
gives the node's indices. UUIDs are unambiguous everywhere and are matched as such.

No variable at all outside a batch job (a workstation): every GPU. Inside a batch job
without a GPU variable: none. An id of a form this module does not know: none, with
the reason (sampling the whole node would blame the trial for its neighbours).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["BATCH_MARKERS", "DeviceId", "Selection", "parse_ids", "select_gpus"]

#: variables that say "this process runs inside a batch job" (Grid Engine's JOB_ID
#: counts only with SGE_ROOT: the name is too common on its own)
BATCH_MARKERS = ("SLURM_JOB_ID", "PBS_JOBID", "_CONDOR_JOB_AD", "LSB_JOBID", "JOB_ID")

_UUID = r"[0-9a-fA-F]{1,8}(?:-[0-9a-fA-F]{1,12}){0,4}"
_GPU_UUID = re.compile(rf"GPU-{_UUID}")
_MIG_UUID = re.compile(rf"MIG-{_UUID}")
_MIG_LEGACY = re.compile(rf"MIG-(GPU-{_UUID})/(\d{{1,6}})/(\d{{1,6}})")
_CONDOR_CUDA = re.compile(r"CUDA(\d{1,6})")
_INDEX = re.compile(r"\d{1,6}")
_NEGATIVE = re.compile(r"-\d+")


class DeviceId(NamedTuple):
    """One GPU named by the environment.

    ``kind``: ``index`` (NVML index as this process sees it), ``minor`` (device file
    number, Slurm's gres index), ``uuid`` (``GPU-...``, possibly a unique prefix),
    ``mig`` (``MIG-<uuid>``), ``mig_legacy`` (``value`` is the parent's ``GPU-<uuid>``,
    with the GPU and compute instance ids ``gi``/``ci``)."""

    kind: str
    value: str | int
    gi: int | None = None
    ci: int | None = None


class Selection(NamedTuple):
    """``mode``: ``all`` (every GPU NVML sees), ``ids``, ``none`` or ``unknown``;
    ``source`` names the variable it came from, ``why`` explains none/unknown."""

    mode: str
    ids: tuple[DeviceId, ...] = ()
    source: str = ""
    why: str = ""


def parse_ids(text: str, *, sep: str = ",") -> tuple[DeviceId, ...] | str:
    """The ids of a ``CUDA_VISIBLE_DEVICES``-style list, or the reason it is not one.

    As CUDA does, a negative index ends the list (``-1`` hides every GPU)."""
    ids: list[DeviceId] = []
    parts = text.split() if sep == " " else text.split(sep)
    for raw in parts:
        item = raw.strip()
        if not item:
            continue
        if _NEGATIVE.fullmatch(item):
            break
        device = _parse_one(item)
        if device is None:
            return f"{item!r} is not a GPU index, GPU-<uuid> or MIG id"
        ids.append(device)
    return tuple(ids)


def _parse_one(item: str) -> DeviceId | None:
    if _INDEX.fullmatch(item):
        return DeviceId("index", int(item))
    if _GPU_UUID.fullmatch(item):
        return DeviceId("uuid", item)
    legacy = _MIG_LEGACY.fullmatch(item)
    if legacy:
        return DeviceId("mig_legacy", legacy[1], int(legacy[2]), int(legacy[3]))
    if _MIG_UUID.fullmatch(item):
        return DeviceId("mig", item)
    condor = _CONDOR_CUDA.fullmatch(item)
    if condor:
        return DeviceId("index", int(condor[1]))
    return None


def select_gpus(environ: Mapping[str, str]) -> Selection:
    """The GPUs of the attempt whose environment is ``environ`` (see the module doc)."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return _from_list("CUDA_VISIBLE_DEVICES", visible, ",")
    condor = environ.get("_CONDOR_AssignedGPUs")
    if condor is not None:
        return _from_list("_CONDOR_AssignedGPUs", condor, ",")
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        slurm = environ.get(name)
        if slurm is not None:
            chosen = _from_list(name, slurm, ",")
            if chosen.mode != "ids":
                return chosen
            minors = tuple(
                DeviceId("minor", d.value) if d.kind == "index" else d for d in chosen.ids
            )
            return chosen._replace(ids=minors)
    sge = environ.get("SGE_HGR_gpu")
    if sge is not None:
        return _from_list("SGE_HGR_gpu", sge, " ")
    inside = [
        name
        for name in BATCH_MARKERS
        if environ.get(name) and (name != "JOB_ID" or environ.get("SGE_ROOT"))
    ]
    if inside:
        why = f"a batch job ({inside[0]} is set) without a GPU variable: it was given no GPU"
        return Selection("none", source=inside[0], why=why)
    return Selection("all", source="no CUDA_VISIBLE_DEVICES and no scheduler: every GPU")


def _from_list(name: str, text: str, sep: str) -> Selection:
    source = f"{name}={text!r}"
    if text.strip() in ("", "NoDevFiles"):  # NoDevFiles: Slurm's "gres without devices"
        return Selection("none", source=source, why=f"{name} names no GPU")
    ids = parse_ids(text, sep=sep)
    if isinstance(ids, str):
        return Selection("unknown", source=source, why=f"{name}: {ids}")
    if not ids:
        return Selection("none", source=source, why=f"{name} names no GPU")
    return Selection("ids", ids, source)
