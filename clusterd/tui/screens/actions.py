"""The actions the screens share: cancel, stop early, relaunch, export, copy a trial's dir.

Each asks first (``LiveScreen.confirm``), then sends one request from a worker;
the outcome comes back as a notification. The daemon's own events then update
the tables (a stop decision arrives as a ``stop`` event), so an action never
patches the screen by hand.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from textual import work

from clusterd.errors import ClusterdError
from clusterd.node.atomic import replace_at
from clusterd.tui.messages import ActionDone, RequestFailed
from clusterd.tui.model import FINAL_STATES, fmt_duration
from clusterd.tui.screens.base import LiveScreen
from clusterd.tui.screens.dialogs import ExportScreen

__all__ = ["ActionsMixin", "write_export"]


def write_export(path: str, reply: dict[str, Any]) -> int:
    """Write an ``export`` reply to ``path`` (JSON if it ends in .json, else CSV) atomically."""
    rows = reply["rows"]
    if path.endswith(".json"):
        text = json.dumps(rows, indent=1) + "\n"
    else:
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=reply["columns"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        text = out.getvalue()
    # the user's file: the umask decides its mode; no fsync, an export is made again on request
    replace_at(path, text.encode("utf-8"), mode=0o666, fsync=False)
    return len(rows)


def _stopping_text(reply: dict[str, Any]) -> str:
    grace = reply.get("grace")
    text = f"{reply['trial']}: stopping early"
    if grace is not None:
        text += f"; terminated in {fmt_duration(grace)} unless it stops by itself"
    return text


class ActionsMixin(LiveScreen):
    """Confirmed actions on a sweep or a trial, for any live screen."""

    def ask_cancel_sweep(self, sweep: str, live: int) -> None:
        self.confirm(
            f"Cancel sweep {sweep}?",
            f"Pending trials are cancelled at once; {live} queued or running "
            "trial(s) are stopped through the driver. Finished trials are kept.",
            lambda: self.request(
                "cancel",
                {"target": sweep},
                lambda r: f"{sweep}: {r['cancelled']} cancelled, {r['cancelling']} stopping",
            ),
        )

    def ask_cancel_trial(self, trial: str, state: str) -> None:
        if state in FINAL_STATES:
            self.notify(f"{trial} has already ended ({state})", severity="warning")
            return
        self.confirm(
            f"Cancel trial {trial}?",
            f"It is {state}; its job is stopped through the driver.",
            lambda: self.request(
                "cancel",
                {"target": trial},
                lambda r: f"{trial}: " + ("stopping" if r["cancelling"] else "cancelled"),
            ),
        )

    def ask_stop_trial(self, trial: str, state: str, stopping: bool = False) -> None:
        """Early-stop by hand (the ``stop`` op): unlike a cancel, the trial ends ``stopped``
        with a stop decision on record, like a trial an early-stopping rule stopped."""
        if state in FINAL_STATES:
            self.notify(f"{trial} has already ended ({state})", severity="warning")
            return
        if stopping:
            self.notify(f"{trial} is already stopping", severity="information")
            return
        self.confirm(
            f"Stop trial {trial} early?",
            f"It is {state}. The daemon records a manual stop decision: the trial sees "
            "trial.should_stop(), is terminated after the grace period if it goes on, "
            "and ends stopped with the metrics it reported.",
            lambda: self.request("stop", {"trial": trial}, _stopping_text),
        )

    def ask_relaunch_failed(self, sweep: str, failed: int) -> None:
        if failed == 0:
            self.notify(f"{sweep} has no failed trials", severity="information")
            return
        self.confirm(
            f"Relaunch {failed} failed trial(s) of {sweep}?",
            "They go back to pending with fresh failure counts; their directories are kept.",
            lambda: self.request(
                "relaunch",
                {"sweep": sweep, "which": "failed"},
                lambda r: f"{sweep}: {r['relaunched']} trial(s) relaunched",
            ),
        )

    def ask_export(self, sweep: str) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.export_to(sweep, os.path.abspath(os.path.expanduser(path)))

        self.app.push_screen(ExportScreen(sweep, f"{sweep}.csv"), chosen)

    @work(thread=True, group="action")
    def export_to(self, sweep: str, path: str) -> None:
        try:
            n = write_export(path, self.capp.backend.call("export", sweep=sweep))
        except ClusterdError as exc:
            self.post_message(RequestFailed("export", str(exc)))
        except OSError as exc:
            self.post_message(RequestFailed("export", f"cannot write {path}: {exc.strerror}"))
        else:
            self.post_message(ActionDone(f"wrote {n} trial(s) to {path}"))

    @work(thread=True, group="action")
    def copy_trial_dir(self, trial: str) -> None:
        """Copy the trial's directory (OSC 52: most terminals) and show it, for the rest."""
        try:
            path = self.capp.backend.call("show", trial=trial)["trial_dir"]
        except ClusterdError as exc:
            self.post_message(RequestFailed("show", str(exc)))
            return
        self.app.call_from_thread(self.app.copy_to_clipboard, path)
        self.post_message(ActionDone(f"copied {path}"))
