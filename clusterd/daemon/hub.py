"""Fan-out of change events to subscribed clients (the TUI).

Each subscriber has a bounded queue. A subscriber that cannot keep up is sent
one ``overflow`` event and dropped, so a slow or stuck client never makes the
daemon buffer without bound or wait; the client reconnects and re-reads state.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Hub", "Subscription"]

QUEUE_SIZE = 10_000


class Subscription:
    def __init__(self, sweep_id: int | None) -> None:
        self.sweep_id = sweep_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        if self.sweep_id is not None and event.get("sweep_id") not in (None, self.sweep_id):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():  # drop the backlog: the client must re-read state
                self.queue.get_nowait()
            self.queue.put_nowait({"type": "overflow"})
            self.queue.put_nowait(None)


class Hub:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self, sweep_id: int | None = None) -> Subscription:
        sub = Subscription(sweep_id)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, events: list[dict[str, Any]]) -> None:
        for sub in list(self._subs):
            for event in events:
                sub.offer(event)

    def __len__(self) -> int:
        return len(self._subs)
