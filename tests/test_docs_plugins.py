"""docs/plugins.md names everything a plugin author must know, and its example is real.

A hook, a ``Driver`` method or class attribute, a field of what drivers are given or
return, or a conformance check that the page does not name is one a newcomer cannot
learn about; the example driver printed there must be the one the kit runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from clusterd.drivers.base import ClusterInfo, Driver, JobRef, JobRequest, JobStatus
from clusterd.testing.conformance import CHECKS, DriverConformance

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "plugins.md").read_text()
EXAMPLE = REPO / "examples" / "plugin-driver" / "clusterd_detached.py"


def hookspecs_module() -> ModuleType:
    """Where the hooks are specified (``clusterd.plugins`` since the plugins package)."""
    try:
        return importlib.import_module("clusterd.plugins.hookspecs")
    except ImportError:
        return importlib.import_module("clusterd.drivers.hookspecs")


def hook_names() -> list[str]:
    module = hookspecs_module()
    return sorted(
        name
        for name, value in vars(module).items()
        if callable(value) and hasattr(value, "clusterd_spec")
    )


def driver_members() -> list[str]:
    """Every public method and class attribute of the contract, ``__init__`` aside."""
    methods = [n for n, v in vars(Driver).items() if not n.startswith("_") and callable(v)]
    attributes = [n for n in Driver.__annotations__ if not n.startswith("_")]
    return sorted(set(methods + attributes))


def named(name: str) -> bool:
    """``name`` appears in code spelling: `name`, `name(...)` or `name = ...`."""
    return re.search(rf"`{re.escape(name)}(`|\(| =)", DOC) is not None


def test_the_hooks_are_found() -> None:
    assert "clusterd_register_drivers" in hook_names()
    assert len(hook_names()) >= 3


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    assert named(hook), f"docs/plugins.md does not name the hook {hook}"


@pytest.mark.parametrize("member", driver_members())
def test_every_driver_method_and_attribute_is_documented(member: str) -> None:
    assert named(member), f"docs/plugins.md does not name Driver.{member}"


@pytest.mark.parametrize(
    "field",
    sorted(
        {
            f.name
            for cls in (JobRequest, JobRef, JobStatus, ClusterInfo)
            for f in dataclasses.fields(cls)
        }
    ),
)
def test_every_field_drivers_see_is_documented(field: str) -> None:
    assert named(field), f"docs/plugins.md does not name the field {field}"


def test_the_kit_lists_exactly_its_checks() -> None:
    checks = sorted(n for n, v in inspect.getmembers(DriverConformance) if n.startswith("test_"))
    assert checks == sorted(CHECKS)


@pytest.mark.parametrize("check", CHECKS)
def test_every_conformance_check_is_documented(check: str) -> None:
    assert named(check), f"docs/plugins.md does not list the conformance check {check}"


def test_the_example_driver_in_the_docs_is_the_one_the_kit_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    assert EXAMPLE.read_text() in blocks, (
        "the first example in docs/plugins.md differs from "
        "examples/plugin-driver/clusterd_detached.py: copy the file into the page"
    )
