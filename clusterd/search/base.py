"""What an adaptive search method is: it proposes the next trial from the results so far.

The daemon's database is the only record of a search. A searcher is rebuilt at daemon
start by replaying the sweep's trials in index order -- :meth:`Searcher.tell` for
those that ended, :meth:`Searcher.running` for those in flight -- and then asked for
trial ``index`` with :meth:`Searcher.ask`. Methods that draw randomness from
``(seed, index)`` rather than from one long-lived stream propose the same trial after
a restart as they would have without one; every built-in method does.

A conditional ``[params]`` (``[params.optimizer.sgd]``, ``[params.optimizer.adam]``)
is a tree: :meth:`Searcher.check` refuses it by default, since ``self.space.dims``
holds only the flat part. A method that searches trees overrides ``check`` and
proposes with ``self.space.walk(choose)`` (define-by-run: the branch, then its own
params; see ``space.py``), as the Optuna-backed methods do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from clusterd.search.space import Space
from clusterd.spec.model import SweepSpec

__all__ = ["Result", "Searcher"]


@dataclass(frozen=True)
class Result:
    """A trial that ended, as a searcher sees it."""

    index: int
    params: dict[str, Any]
    value: float | None  # the trial's best value of the sweep's metric; None if none
    state: str  # completed | failed | stopped | cancelled
    step: int | None = None  # the step of ``value``


class Searcher(ABC):
    """One sweep's adaptive search."""

    #: the name used in ``[search] method = "..."``
    name: ClassVar[str] = ""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.space = Space.from_spec(spec)
        self.seed = spec.search.seed
        self.mode = spec.metric.mode if spec.metric else "min"

    def option(self, key: str, default: Any) -> Any:
        return self.spec.search.options.get(key, default)

    @abstractmethod
    def ask(self, index: int) -> dict[str, Any] | None:
        """Params for trial ``index``, or None to wait until more trials have ended."""

    @abstractmethod
    def tell(self, result: Result) -> None:
        """A trial ended (each trial is told once)."""

    def running(self, index: int, params: dict[str, Any]) -> None:  # noqa: B027 - optional
        """At rebuild: trial ``index`` was proposed earlier and has not ended yet."""

    @classmethod
    def check(cls, spec: SweepSpec) -> str | None:
        """An error message if this method cannot search ``spec`` (checked at submit)."""
        return Space.check(spec)
