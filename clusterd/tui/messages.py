"""The app's own messages: small dataclasses posted by socket workers to the UI thread.

Workers never touch widgets; they post one of these and the screen that asked
applies it on the event loop (toolong's ``messages.py`` pattern). The one
high-rate message, ``EventsPending``, can replace an unprocessed copy of itself,
so a burst of daemon events costs one drain of the buffer, not one message each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

__all__ = [
    "ActionDone",
    "ConnectionChanged",
    "DetailLoaded",
    "EventsPending",
    "LogRead",
    "PlotLoaded",
    "RequestFailed",
    "Subscribed",
    "SweepsLoaded",
    "TopicGone",
    "TrialExtrasLoaded",
    "TrialsLoaded",
]


@dataclass
class ConnectionChanged(Message):
    """The event stream connected or was lost; ``detail`` says why, for the header."""

    connected: bool
    detail: str = ""
    version: str | None = None


@dataclass
class Subscribed(Message, bubble=False):
    """The stream for ``sweep`` (None: all sweeps) is live: screens showing it (re)load now.

    Loading after subscribing (not before) means no change falls between what a
    screen read and the first event it is sent; it also covers reconnects and
    ``overflow`` (the daemon dropped us), both of which end in a new subscription.
    The app forwards it to those screens, so it must not bubble back up.
    """

    sweep: str | None


@dataclass
class TopicGone(Message, bubble=False):
    """The sweep ``sweep`` does not exist (any more): screens showing it close."""

    sweep: str
    text: str


@dataclass
class EventsPending(Message):
    """Events wait in the app's buffer; the app drains it (rate-limited) on the UI thread."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsPending)


@dataclass
class SweepsLoaded(Message):
    sweeps: list[dict[str, Any]]


@dataclass
class TrialsLoaded(Message):
    """The ``trials`` reply of one sweep plus its ``sweeps`` entry, read at ``fetched_at``."""

    sweep: str
    trials: list[dict[str, Any]]
    summary: dict[str, Any] | None
    fetched_at: float


@dataclass
class TrialExtrasLoaded(Message):
    """Columns that cost an extra request each (runtime via ``export``, GPU via ``gpus``)."""

    sweep: str
    runtimes: dict[int, float] = field(default_factory=dict)
    gpu_util: dict[int, float] = field(default_factory=dict)
    fetched_at: float = 0.0


@dataclass
class DetailLoaded(Message):
    """The ``show`` reply of one trial."""

    trial: str
    show: dict[str, Any]


@dataclass
class PlotLoaded(Message):
    """The ``metrics`` and ``gpu_samples`` replies of one trial."""

    trial: str
    metrics: dict[str, Any]
    gpus: dict[str, Any]


@dataclass
class LogRead(Message):
    """New text of a trial's log; ``reset`` replaces what is shown."""

    trial: str
    attempt: int
    stream: str
    path: str
    text: str
    offset: int
    reset: bool
    live: bool
    missing: bool = False


@dataclass
class ActionDone(Message):
    """A user action (cancel, relaunch, export, ...) succeeded; ``text`` is shown to the user."""

    text: str


@dataclass
class RequestFailed(Message):
    """A request failed; ``text`` says what and why, to show in a notification."""

    op: str
    text: str
