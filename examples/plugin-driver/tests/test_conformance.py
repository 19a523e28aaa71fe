"""The example driver passes clusterd's conformance kit.

Installed (``pip install -e .``), the entry point registers it; run in place, name the
module in ``plugins`` (the kit puts it in ``CLUSTERD_PLUGINS``) and this directory on
``PYTHONPATH``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterd.testing import DriverConformance, SchedulerSetup

HERE = Path(__file__).resolve().parent.parent


class TestDetachedDriver(DriverConformance):
    driver_name = "detached"
    status_commands = ("ps",)
    plugins = ("clusterd_detached",)

    @pytest.fixture
    def scheduler(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[SchedulerSetup]:
        """Nothing to start: ``ps`` is always there. The daemon imports the module
        from this directory."""
        monkeypatch.syspath_prepend(str(HERE))
        monkeypatch.setenv("PYTHONPATH", f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        yield SchedulerSetup()
