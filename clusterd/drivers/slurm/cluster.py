"""``clusterctl cluster`` on Slurm: sinfo's nodes and partitions, squeue's queue, as rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clusterd.drivers.batch.records import BATCH_PREFIX
from clusterd.drivers.slurm.parse import split_fields, unset

__all__ = ["nodes", "partitions", "queue_entry"]


def partitions(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per partition: nodes (idle, allocated), CPUs and GPUs (free), from ``parse_sinfo``."""
    parts: dict[str, dict[str, Any]] = {}
    for row in rows:
        part = parts.setdefault(
            row["partition"],
            {
                "name": row["partition"],
                "default": row["default"],
                "nodes": 0,
                "nodes_idle": 0,
                "nodes_alloc": 0,
                "cpus": 0,
                "cpus_idle": 0,
                "gpus": 0,
                "gpus_free": 0,
            },
        )
        state = row["state"].rstrip("*~#!%$@^-")
        part["nodes"] += 1
        part["nodes_idle"] += state == "idle"
        part["nodes_alloc"] += state in ("allocated", "mixed", "completing")
        part["cpus"] += row["cpus"]
        part["cpus_idle"] += row["cpus_idle"]
        part["gpus"] += row["gpus"]
        part["gpus_free"] += max(0, row["gpus"] - row["gpus_used"])
    return list(parts.values())


def nodes(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per node with the partitions it is in (sinfo lists it once per partition)."""
    by_name: dict[str, dict[str, Any]] = {}
    for row in rows:
        node = by_name.setdefault(row["node"], {**row, "partitions": []})
        node["partitions"].append(row["partition"])
    for node in by_name.values():
        del node["partition"], node["default"]
    return list(by_name.values())


def queue_entry(line: str) -> dict[str, Any]:
    """One line of ``squeue -o QUEUE_FORMAT``; ``clusterd``: the job is one of ours."""
    job_id, state, reason, node_list, partition, used, limit, name = split_fields(line, 8, "squeue")
    return {
        "job_id": job_id,
        "state": state,
        "reason": unset(reason),
        "nodes": unset(node_list),
        "partition": partition,
        "time": used,
        "time_limit": limit,
        "name": name,
        "clusterd": name.startswith(BATCH_PREFIX),
    }
