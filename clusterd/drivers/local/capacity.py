"""The machine as a scheduler sees it: CPUs and GPUs, who holds which, what can fit."""

from __future__ import annotations

from collections.abc import Iterable

from clusterd.drivers.local.gpus import GpuSlots
from clusterd.spec.model import Resources

__all__ = ["Capacity", "cpus_of", "plural"]


def cpus_of(resources: Resources) -> int:
    """The CPUs a job holds: ``resources.cpus``, default 1."""
    return resources.cpus if resources.cpus is not None else 1


def plural(n: int) -> str:
    return "" if n == 1 else "s"


class Capacity:
    """CPUs and GPUs held by each job token. Adopted jobs may over-subscribe."""

    def __init__(self, cpus: int, gpus: GpuSlots) -> None:
        self.cpus_total = cpus
        self.gpus = gpus
        self._cpus: dict[str, int] = {}
        self._gpus: dict[str, tuple[str, ...]] = {}

    @property
    def cpus_used(self) -> int:
        return sum(self._cpus.values())

    def gpu_users(self) -> dict[str, list[str]]:
        """GPU id -> tokens using it."""
        users: dict[str, list[str]] = {gpu: [] for gpu in self.gpus.ids}
        for token, ids in self._gpus.items():
            for gpu in ids:
                users.setdefault(gpu, []).append(token)
        return users

    def free_gpus(self) -> list[str]:
        return [gpu for gpu, tokens in self.gpu_users().items() if not tokens]

    def can_ever_fit(self, cpus: int, gpus: int) -> bool:
        return cpus <= self.cpus_total and gpus <= len(self.gpus.ids)

    def fits(self, cpus: int, gpus: int) -> bool:
        return self.cpus_used + cpus <= self.cpus_total and len(self.free_gpus()) >= gpus

    def take(self, token: str, cpus: int, gpus: int) -> tuple[str, ...]:
        """Hold ``cpus`` and the first ``gpus`` free GPUs for ``token``; returns the GPU ids."""
        ids = tuple(self.free_gpus()[:gpus])
        self.hold(token, cpus, ids)
        return ids

    def hold(self, token: str, cpus: int, gpu_ids: Iterable[str]) -> None:
        self._cpus[token] = cpus
        self._gpus[token] = tuple(gpu_ids)

    def release(self, token: str) -> None:
        self._cpus.pop(token, None)
        self._gpus.pop(token, None)

    def misfit(self, resources: Resources, what: str) -> str | None:
        """Why ``resources`` can never fit this machine, or None."""
        want_gpus, have_gpus = resources.gpus, len(self.gpus.ids)
        if want_gpus > have_gpus:
            have = "none visible" if not have_gpus else f"only {have_gpus} visible"
            return (
                f"{what} asks for {want_gpus} GPU{plural(want_gpus)} per trial but this "
                f"machine has {have} ({self.gpus.source}); use a scheduler driver or set "
                f"resources.gpus = {have_gpus}"
            )
        want_cpus = cpus_of(resources)
        if want_cpus > self.cpus_total:
            return (
                f"{what} asks for {want_cpus} CPUs per trial but the local driver may use "
                f"{self.cpus_total}; lower resources.cpus or raise the driver's 'cpus' option"
            )
        return None
