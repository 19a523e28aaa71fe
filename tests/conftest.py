"""Shared fixtures: a real daemon process in its own CLUSTERD_HOME, and clusterctl runs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterd.testing.daemon import Daemon as KitDaemon
from clusterd.testing.waiting import alive, wait_for

__all__ = ["REPO", "Daemon", "process_gone", "wait_for"]

REPO = Path(__file__).resolve().parent.parent


def process_gone(pid: int) -> bool:
    """The process exited, or is a zombie nobody reaped yet (a SIGKILLed daemon whose parent
    is the test: it can no longer do anything)."""
    return not alive(pid)


class Daemon(KitDaemon):
    """A clusterd daemon started as a real process, and clusterctl run as one: the
    conformance kit's, with the test-only fake driver registered."""

    def __init__(self, home: Path) -> None:
        super().__init__(
            home,
            {
                # the test-only fake driver is in no entry-point group: name it
                "CLUSTERD_PLUGINS": "clusterd.testing.fake_driver",
                # the user's own ~/.config/clusterd/config.toml must not reach the tests
                "CLUSTERD_CONFIG": str(home.parent / "config.toml"),
            },
        )


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A CLUSTERD_HOME with a short path (a Unix socket path must fit in 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cd-", dir="/tmp"))
    yield path / "home"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_home: Path) -> Iterator[Daemon]:
    d = Daemon(short_home)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def stopped_daemon(short_home: Path) -> Iterator[Daemon]:
    d = Daemon(short_home)
    yield d
    d.stop()
