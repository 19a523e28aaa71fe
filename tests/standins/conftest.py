"""Fixtures for stand-in scheduler tests (used by the engine's and the frontends' tests).

``standin``: a fresh :class:`StandIn` rooted at ``tmp_path/"standin"``; at teardown every
active job is removed and its wrapper awaited, so no process outlives the test.
``standin_bin``: an empty ``tmp_path/"bin"`` for :func:`tests.standins.shims.install`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins.engine import StandIn


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    si = StandIn(tmp_path / "standin")
    yield si
    si.shutdown()


@pytest.fixture
def standin_bin(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path
