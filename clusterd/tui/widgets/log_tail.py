"""``LogTail``: the tail of one attempt's stdout or stderr, followed while it runs.

The daemon only names the file (``logs`` op); the tail reads it through the
backend (``read_log``), first its last 64 KiB, then whatever was appended, once
a second while the attempt is live and the tail is shown. Nothing is read while
the tab is hidden.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Log, Static

from clusterd.errors import ClusterdError
from clusterd.tui.messages import LogRead

__all__ = ["LogTail"]

FOLLOW_INTERVAL = 1.0
MAX_LINES = 5000


class LogTail(Vertical):
    """A title line (stream, attempt, live or ended) over a ``Log`` of the file's tail."""

    DEFAULT_CSS = """
    LogTail { height: 1fr; }
    LogTail #log-title { height: auto; max-height: 2; color: $text-muted; }
    LogTail Log { height: 1fr; }
    """

    def __init__(self, trial: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trial = trial
        self.stream = "stdout"
        self.attempt: int | None = None  # the one asked for; None: the latest
        self.shown_attempt: int | None = None
        self.path: str | None = None
        self.read_offset: int | None = None
        self.live = False
        self.active = False  # whether the tab is shown; only then do we read
        self._follow: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="log-title")
        yield Log(max_lines=MAX_LINES, auto_scroll=True)

    @property
    def text(self) -> str:
        return "\n".join(self.query_one(Log).lines)

    # -- what the screen asks --------------------------------------------------

    def show(self, keep_offset: bool = False) -> None:
        """(Re)read the chosen file: from its tail, or on from where we were."""
        self.active = True
        if not keep_offset:
            self.read_offset = None
        self._fetch(self.stream, self.attempt, self.read_offset)

    def hide(self) -> None:
        self.active = False
        self._set_follow(False)

    def toggle_stream(self) -> None:
        self.stream = "stderr" if self.stream == "stdout" else "stdout"
        self.show()

    def step_attempt(self, delta: int, total: int) -> None:
        if total:
            current = self.attempt or self.shown_attempt or total
            self.attempt = max(1, min(total, current + delta))
            self.show()

    # -- reading -----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="log")
    def _fetch(self, stream: str, attempt: int | None, offset: int | None) -> None:
        backend: Any = getattr(self.app, "backend")  # noqa: B009 - the ClusterApp's
        args: dict[str, Any] = {"trial": self.trial, "stderr": stream == "stderr"}
        if attempt is not None:
            args["attempt"] = attempt
        try:
            info = backend.call("logs", **args)
        except ClusterdError as exc:
            self.post_message(LogRead(self.trial, 0, stream, "", str(exc), 0, True, False, True))
            return
        chunk = backend.read_log(info["path"], offset)
        live = bool(info.get("live"))
        self.post_message(
            LogRead(
                self.trial,
                info["attempt"],
                stream,
                info["path"],
                chunk.text,
                chunk.offset,
                chunk.reset,
                live,
                chunk.missing,
            )
        )

    def on_log_read(self, message: LogRead) -> None:
        message.stop()
        if message.stream != self.stream:
            return  # an answer for the stream we just switched away from
        log = self.query_one(Log)
        if message.reset or message.missing:
            log.clear()
        if message.text and not (message.missing and not message.path):
            log.write(message.text)
        self.path, self.read_offset = message.path or None, message.offset
        self.live = message.live
        if message.attempt:
            self.shown_attempt = message.attempt
        self.query_one("#log-title", Static).update(self._title(message))
        self._set_follow(message.live and self.active)

    def _title(self, message: LogRead) -> Text:
        title = Text.assemble(
            (message.stream, "bold"),
            f" · attempt {message.attempt}" if message.attempt else "",
            " · " + ("live" if message.live else "ended"),
            " · o: stdout/stderr · [ ]: attempt",
        )
        if message.missing:
            detail = f"no file yet: {message.path}" if message.path else message.text
            title.append(f"\n{detail}", style="dim")
        return title

    def _set_follow(self, on: bool) -> None:
        if on and self._follow is None:
            self._follow = self.set_interval(FOLLOW_INTERVAL, self._poll)
        elif not on and self._follow is not None:
            self._follow.stop()
            self._follow = None

    def _poll(self) -> None:
        self._fetch(self.stream, self.attempt, self.read_offset)
