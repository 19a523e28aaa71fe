"""``ClusterApp``: the Textual app behind ``clusterctl tui``.

The app owns two things every screen shares: the ``Backend`` (the daemon's
socket, or a fake) and the *event feed*, one ``subscribe`` stream read by a
thread worker. Screens declare a ``topic`` (None for all sweeps, else a sweep's
name); the feed follows the top screen's topic, and every (re)subscription ends
in a ``Subscribed`` message that makes the screens on that topic re-read their
state. That single rule covers first load, daemon restarts and ``overflow``:
there is no polling loop over the daemon's state anywhere.

Events are buffered by the feed thread and drained on the UI thread at most
ten times a second, so 1,000 metric reports a second cost ten table updates.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import get_current_worker

from clusterd.errors import ClusterdError, DaemonUnreachable, NotFound
from clusterd.tui.client import Backend, EventStream, SocketBackend
from clusterd.tui.messages import ConnectionChanged, EventsPending, Subscribed, TopicGone
from clusterd.tui.widgets.header import ConnectionState

__all__ = ["ClusterApp", "run"]

#: the UI applies buffered events at most this often (seconds)
DRAIN_INTERVAL = 0.1
#: reconnect back-off: first retry, ceiling (seconds)
RETRY_FIRST, RETRY_MAX = 0.2, 2.0

DARK, LIGHT = "textual-dark", "textual-light"


class ClusterApp(App[int]):
    """Sweeps → trials → trial detail, live over the daemon's socket."""

    TITLE = "clusterd"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("t", "toggle_theme", "Theme", show=False),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    connection: reactive[ConnectionState] = reactive(ConnectionState, always_update=True)

    def __init__(
        self,
        backend: Backend,
        *,
        sweep: str | None = None,
        trial: int | None = None,
        clock: Callable[[], float] | None = None,
        theme: str = DARK,
        retry_max: float = RETRY_MAX,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.clock: Callable[[], float] = clock or time.time
        self._start = (sweep, trial)
        self._initial_theme = theme
        self._retry_max = retry_max
        self._topic: str | None = None
        self._live_topic: str | bool | None = False  # False: not subscribed to anything
        self._stream: EventStream | None = None
        self._wake = threading.Event()
        self._feed_stopped = False  # not ``_closing``: Textual's MessagePump owns that name
        self._buffer: deque[dict[str, Any]] = deque()
        self._pending = False
        self._drain_timer: Timer | None = None
        self._last_drain = 0.0
        self.events_seen = 0

    # -- lifecycle -------------------------------------------------------------

    def on_mount(self) -> None:
        from clusterd.tui.screens.sweeps import SweepsScreen
        from clusterd.tui.screens.trials import TrialsScreen

        self.theme = self._initial_theme
        self.connection = ConnectionState(address=self.backend.address)
        sweep, trial = self._start
        self._topic = sweep
        self.push_screen(SweepsScreen())
        if sweep is not None:
            self.push_screen(TrialsScreen(sweep))
            if trial is not None:
                from clusterd.tui.screens.detail import DetailScreen  # plotext: only when used

                self.push_screen(DetailScreen(sweep, trial))
        self._feed()

    async def action_quit(self) -> None:
        self._shutdown_feed()
        self.exit(0)

    def on_unmount(self) -> None:
        self._shutdown_feed()

    def _shutdown_feed(self) -> None:
        self._feed_stopped = True
        self._wake.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        self.backend.close()

    # -- actions ---------------------------------------------------------------

    def action_help(self) -> None:
        from clusterd.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    # -- the event feed --------------------------------------------------------

    def set_topic(self, screen: Screen[Any], topic: str | None) -> bool:
        """Follow ``topic`` for ``screen``; True if its stream is already live (load now).

        Only the top screen steers the feed: screens pushed together at start-up are all
        resumed once, and the ones underneath must not switch the subscription back.
        """
        if screen is not self.screen:
            return False
        if topic == self._topic:
            return self._live_topic == topic
        self._topic = topic
        self._live_topic = False
        stream = self._stream
        if stream is not None:
            stream.close()  # the feed thread resubscribes with the new topic
        self._wake.set()
        return False

    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def _feed(self) -> None:
        """Keep one subscription open for the current topic, reconnecting with back-off."""
        worker = get_current_worker()
        delay = RETRY_FIRST
        while not (worker.is_cancelled or self._feed_stopped):
            topic = self._topic
            try:
                version = (self.backend.call("ping") or {}).get("version")
                stream = self.backend.subscribe(topic)
            except DaemonUnreachable as exc:
                self.post_message(ConnectionChanged(False, _why(exc)))
                delay = self._sleep(delay)
                continue
            except ClusterdError as exc:  # the daemon is there; the sweep is not
                if isinstance(exc, NotFound) and topic is not None:
                    self.post_message(TopicGone(topic, str(exc)))
                delay = self._sleep(delay)
                continue
            delay = RETRY_FIRST
            self._stream = stream
            self.post_message(ConnectionChanged(True, version=version))
            self.post_message(Subscribed(topic))
            overflow = self._pump(stream, topic)
            self._stream = None
            if not (overflow or self._feed_stopped or topic != self._topic):
                self.post_message(ConnectionChanged(False, "daemon went away; reconnecting…"))
                delay = self._sleep(delay)

    def _pump(self, stream: EventStream, topic: str | None) -> bool:
        """Buffer events until the stream ends; True if it ended with ``overflow``."""
        if topic != self._topic:  # the topic changed while we subscribed
            stream.close()
            return True
        for event in stream:
            if event.get("type") == "overflow":
                stream.close()
                return True
            self._buffer.append(event)
            if not self._pending:
                self._pending = True
                self.post_message(EventsPending())
        return False

    def _sleep(self, delay: float) -> float:
        self._wake.wait(delay)
        self._wake.clear()
        return min(delay * 2, self._retry_max)

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self.connection = ConnectionState(
            connected=message.connected,
            detail=message.detail,
            version=message.version or self.connection.version,
            address=self.backend.address,
        )

    def on_subscribed(self, message: Subscribed) -> None:
        if message.sweep != self._topic:
            return
        self._live_topic = message.sweep
        for screen in self.screen_stack:
            if getattr(screen, "topic", False) == message.sweep:
                screen.post_message(Subscribed(message.sweep))

    def on_topic_gone(self, message: TopicGone) -> None:
        for screen in self.screen_stack:
            if getattr(screen, "topic", None) == message.sweep:
                screen.post_message(TopicGone(message.sweep, message.text))

    def on_events_pending(self, message: EventsPending) -> None:
        wait = self._last_drain + DRAIN_INTERVAL - time.monotonic()
        if wait <= 0:
            self._drain()
        elif self._drain_timer is None:
            self._drain_timer = self.set_timer(wait, self._drain)

    def _drain(self) -> None:
        self._drain_timer = None
        self._pending = False
        events: list[dict[str, Any]] = []
        while self._buffer:
            events.append(self._buffer.popleft())
        self._last_drain = time.monotonic()
        if not events:
            return
        self.events_seen += len(events)
        topic = self._live_topic
        if (
            isinstance(topic, str)
            and {"type": "sweep", "name": topic, "state": "removed"} in events
        ):
            self.on_topic_gone(TopicGone(topic, f"sweep {topic} was removed"))
        for screen in self.screen_stack:
            apply = getattr(screen, "apply_events", None)
            if apply is not None and getattr(screen, "topic", False) == self._live_topic:
                apply(events)


def _why(exc: Exception) -> str:
    """A header-sized reason; the full message (with the socket path) is on the sweeps screen."""
    text = str(exc)
    if "Is it running" in text or "No such file" in text or "refused" in text.lower():
        text = "daemon unreachable"
    return f"{text}; reconnecting…"


def run(
    socket_path: str | None = None,
    sweep: str | None = None,
    trial: int | None = None,
    theme: str = DARK,
) -> int:
    """Run the TUI against the daemon (``clusterctl tui``); the exit status."""
    app = ClusterApp(SocketBackend(socket_path), sweep=sweep, trial=trial, theme=theme)
    app.run()
    return app.return_code or 0
