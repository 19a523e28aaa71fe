"""Fixtures for the converter tests: the recorded configs (tests/convert/fixtures, sources in
SOURCES.md), copied where no git work tree is above them so paths resolve the same way
everywhere, and a fixed environment for ``{$USER}``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of fixtures/ under a directory with no .git above it; ``$USER`` is "alice"."""
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = Path(shutil.copytree(FIXTURES, tmp_path / "project"))
    (tmp_path / "project" / "cluster_utils" / ".git").mkdir()  # the project root
    return root
