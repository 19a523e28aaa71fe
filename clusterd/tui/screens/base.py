"""``LiveScreen``: what the sweeps, trials and detail screens share.

A live screen names its ``topic`` (the sweep whose events it needs, None for
all); it loads when its topic's subscription is live (``Subscribed``) and then
folds pushed events in through ``apply_events``. Actions run in thread workers
and come back as ``ActionDone``/``RequestFailed`` notifications.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.screen import Screen

from clusterd.errors import ClusterdError
from clusterd.tui.messages import ActionDone, RequestFailed, Subscribed, TopicGone
from clusterd.tui.screens.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from clusterd.tui.app import ClusterApp

__all__ = ["LiveScreen"]


class LiveScreen(Screen[None]):
    """A screen fed by the daemon: load on subscribe, then apply events."""

    topic: str | None = None
    HELP_TITLE = ""
    HELP = ""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False

    @property
    def capp(self) -> ClusterApp:
        return cast("ClusterApp", self.app)

    def on_screen_resume(self) -> None:
        if self.capp.set_topic(self, self.topic) and not self.loaded:
            self.load()

    def on_subscribed(self, message: Subscribed) -> None:
        self.load()

    def on_topic_gone(self, message: TopicGone) -> None:
        """Our sweep does not exist: say so once, and close (screens above close first)."""
        if self.app.screen is self:
            self.notify(message.text, severity="warning")
            self.dismiss()

    def load(self) -> None:
        """Re-read this screen's state from the daemon (in a worker)."""

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        """Fold a batch of pushed events into what is shown."""

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, timeout=4)

    def on_request_failed(self, message: RequestFailed) -> None:
        self.notify(message.text, title=f"{message.op} failed", severity="error", timeout=6)

    def confirm(self, title: str, body: str, then: Callable[[], object]) -> None:
        """Run ``then`` only if the user says yes."""

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(title, body), answered)

    @work(thread=True, group="action")
    def request(self, op: str, args: dict[str, Any], done: Callable[[Any], str]) -> None:
        """Send one request; notify ``done(result)`` or the error."""
        try:
            result = self.capp.backend.call(op, **args)
        except ClusterdError as exc:
            self.post_message(RequestFailed(op, str(exc)))
            return
        self.post_message(ActionDone(done(result)))
