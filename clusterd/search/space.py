"""The space an adaptive method searches: ``[search.space]`` plus the ``[params]`` axes.

Scalars in ``[params]`` are fixed, lists are categorical choices, ``[search.space]``
entries are the distributions. Conditional ``[params]`` tables (branches) would need a
tree-structured space; adaptive methods refuse them with a clear error instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterd.spec.model import Distribution, SweepSpec

__all__ = ["Space"]


@dataclass(frozen=True)
class Space:
    dims: dict[str, Distribution]  # in file order: [params] axes, then [search.space]
    fixed: dict[str, Any]
    order: tuple[str, ...] = ()  # every name in file order

    @classmethod
    def from_spec(cls, spec: SweepSpec) -> Space:
        dims: dict[str, Distribution] = {}
        fixed: dict[str, Any] = {}
        for name, node in spec.params.items():
            if isinstance(node, list):
                dims[name] = Distribution("choice", tuple(node))
            elif not isinstance(node, dict):
                fixed[name] = node
        dims.update(spec.search.space)
        order = (*spec.params, *spec.search.space)
        return cls(dims=dims, fixed=fixed, order=order)

    @staticmethod
    def check(spec: SweepSpec) -> str | None:
        branches = [name for name, node in spec.params.items() if isinstance(node, dict)]
        if branches:
            return (
                f"method {spec.search.method!r} cannot search conditional [params] "
                f'({", ".join(branches)}); use method = "grid" or "random", or flatten them'
            )
        return None  # a missing [metric] is refused by the parser already

    def complete(self, drawn: dict[str, Any]) -> dict[str, Any]:
        """A trial's params: fixed and drawn values, in the sweep file's key order."""
        values = {**self.fixed, **drawn}
        return {name: values[name] for name in self.order if name in values}
