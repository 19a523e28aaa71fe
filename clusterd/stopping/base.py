"""What an early-stopping rule is: it watches one sweep's learning curves and says stop.

A rule sees every value of the sweep's metric as the daemon ingests it, in arrival
order, through :meth:`StopRule.observe`, and answers with a :class:`Decision` or
``None``. Rules keep their own in-memory state; the daemon rebuilds it at start by
replaying the sweep's stored metrics in the order they arrived, so a rule must be a
pure function of that sequence (the same order gives the same decisions).

Third-party rules subclass :class:`StopRule` and are registered through the
``clusterd_register_stop_rules`` hook (docs/plugins.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from clusterd.spec.model import EarlyStopping

__all__ = ["Decision", "StopRule", "worse"]


@dataclass(frozen=True)
class Decision:
    """Why a trial was stopped: enough for ``clusterctl show`` to explain it in one line."""

    rule: str
    step: int
    value: float  # the trial's value the rule judged (best so far, or the value at a rung)
    threshold: float  # what it had to beat
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "step": self.step,
            "value": self.value,
            "threshold": self.threshold,
            "reason": self.reason,
        }


def worse(value: float, threshold: float, mode: str) -> bool:
    """Strictly worse in the metric's direction (a tie is never a reason to stop)."""
    return value > threshold if mode == "min" else value < threshold


class StopRule(ABC):
    """One sweep's early-stopping state. ``mode`` is the metric's "min" or "max"."""

    #: the name used in ``[early_stopping] rule = "..."``
    name: ClassVar[str] = ""
    #: ``[early_stopping]`` keys this rule understands besides ``rule`` and ``min_steps``
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: EarlyStopping, mode: str) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.config = config
        self.mode = mode
        self.min_steps = config.min_steps

    def option(self, key: str, default: Any) -> Any:
        return self.config.options.get(key, default)

    def observe(self, trial: int, step: int, value: float) -> Decision | None:
        """Trial ``trial`` (its index in the sweep) reported ``value`` at ``step``.

        Non-finite values are ignored (a NaN loss is the trial's own business: it is
        recorded, and the trial decides what to do about it).
        """
        if not math.isfinite(value):
            return None
        return self.judge(trial, step, value)

    @abstractmethod
    def judge(self, trial: int, step: int, value: float) -> Decision | None:
        """Record the value and decide (``value`` is finite)."""

    def forget(self, trial: int) -> None:  # noqa: B027 - optional for rules without memory
        """The trial was stopped: rules that compare only against survivors drop it."""

    @classmethod
    def check(cls, config: EarlyStopping) -> str | None:
        """An error message for a misconfigured ``[early_stopping]`` table, else None."""
        return None
