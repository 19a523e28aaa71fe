"""The example third-party driver (examples/plugin-driver) passes the conformance kit,
run from its own test module as a plugin author runs it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "examples" / "plugin-driver" / "tests"

_spec = importlib.util.spec_from_file_location(
    "clusterd_detached_conformance", TESTS / "test_conformance.py"
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

TestDetachedDriver = _module.TestDetachedDriver
