"""The local driver passes the conformance kit (clusterd.testing)."""

from __future__ import annotations

from clusterd.testing import DriverConformance


class TestLocalDriver(DriverConformance):
    """No scheduler to start and no status command: the count and garbage checks skip."""

    driver_name = "local"
