"""The daemon's retry delay after failed scheduler calls: exponential, capped, jittered."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from clusterd.daemon.scheduler import backoff_delay


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.0, max_value=0.999999))
def test_delay_stays_in_the_upper_half_of_its_doubling_ceiling(failures: int, r: float) -> None:
    ceiling = min(300.0, 2.0 * 2 ** (failures - 1)) if failures < 20 else 300.0
    delay = backoff_delay(failures, lambda: r)
    assert ceiling / 2 <= delay <= ceiling


def test_delays_double_until_five_minutes() -> None:
    top = [backoff_delay(n, lambda: 0.999999) for n in range(1, 12)]
    assert [round(d) for d in top[:5]] == [2, 4, 8, 16, 32]
    assert round(top[-1]) == 300


def test_daemons_failing_together_retry_at_different_times() -> None:
    """Jitter: 50 daemons that saw the same failure don't all retry in the same second."""
    rng = random.Random(7)
    delays = {round(backoff_delay(6, rng.random)) for _ in range(50)}
    assert len(delays) > 10
