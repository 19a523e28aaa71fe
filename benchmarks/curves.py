"""Seeded synthetic learning curves for the early-stopping benchmark.

Each curve is a trial of a made-up sweep over two hyperparameters, a learning rate
``lr`` (log-uniform in [1e-4, 1]) and a regularisation strength ``reg`` (uniform in
[0, 1]), whose validation loss at step ``t`` (1-based) follows a power law:

    loss(t) = (floor + (start - floor) * (1 + t) ** -rate) * (1 + noise(t))

- ``rate`` grows with ``lr``: large learning rates converge fast;
- ``floor`` is lowest near ``lr = 1e-2, reg = 0.3`` and grows quadratically in
  ``log10(lr)`` away from it: large learning rates converge fast *to a worse loss*,
  small ones slowly to a good one, so curves cross and early values mislead a little
  (what makes early stopping a bet rather than a sure thing);
- ``start`` is near 2.3 (ln 10, a 10-class cross-entropy at initialisation);
- ``ticks``, the time one step takes (1, 2 or 3 ticks, uniformly, independent of the
  rest): trials of a real sweep train at different speeds, so they reach a step in
  another order than they started in;
- ``noise(t)`` is Gaussian with a standard deviation of 1 % (``noise``), independent
  per step (a validation loss measured on a finite set).

Everything is drawn from ``random.Random(seed)``: the same ``(n, steps, seed)`` gives
the same curves on every machine and Python >= 3.11.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Curve", "generate"]


@dataclass(frozen=True)
class Curve:
    """One trial: its hyperparameters and the loss it reports at steps 1..len(values)."""

    lr: float
    reg: float
    floor: float
    rate: float
    ticks: int
    values: tuple[float, ...]

    @property
    def final(self) -> float:
        return self.values[-1]


def _curve(rng: random.Random, steps: int, noise: float) -> Curve:
    lr = 10 ** rng.uniform(-4.0, 0.0)
    reg = rng.uniform(0.0, 1.0)
    x = math.log10(lr)
    floor = 0.08 + 0.06 * (x + 2.0) ** 2 + 0.25 * (reg - 0.3) ** 2
    rate = 0.25 + 0.35 * (x + 4.0) / 4.0 + rng.uniform(-0.05, 0.05)
    start = 2.3 + rng.uniform(-0.1, 0.1)
    ticks = rng.randint(1, 3)
    values = []
    for t in range(1, steps + 1):
        clean = floor + (start - floor) * (1 + t) ** -rate
        values.append(clean * (1.0 + noise * rng.gauss(0.0, 1.0)))
    return Curve(lr=lr, reg=reg, floor=floor, rate=rate, ticks=ticks, values=tuple(values))


def generate(n: int, steps: int = 81, seed: int = 0, noise: float = 0.01) -> list[Curve]:
    """``n`` curves of ``steps`` values each (loss, lower is better), in trial order."""
    rng = random.Random(seed)
    return [_curve(rng, steps, noise) for _ in range(n)]
