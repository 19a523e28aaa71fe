"""Driver discovery through pluggy: entry points, third-party plugins, start-up checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pluggy
import pytest

import clusterd.drivers.fake
import clusterd.drivers.local
from clusterd.drivers import (
    Driver,
    DriverRegistry,
    JobRef,
    JobRequest,
    JobStatus,
    build_plugin_manager,
    hookimpl,
    hookspecs,
    load_drivers,
)
from clusterd.errors import DriverError, NotFound

REPO = Path(__file__).resolve().parents[2]

installed = {ep.name for ep in entry_points(group="clusterd")} >= {"local", "fake"}
needs_entry_points = pytest.mark.skipif(
    not installed, reason="clusterd is not pip-installed: run `pip install -e . --no-deps`"
)


class AcmeDriver(Driver):
    """The smallest driver a third party could ship."""

    name = "acme"

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        return {job.token: f"acme-{job.token}" for job in jobs}

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        return {ref.token: JobStatus("gone", ref.job_id) for ref in jobs}

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        pass


class AcmePlugin:
    @hookimpl
    def clusterd_register_drivers(self, registry: DriverRegistry) -> None:
        registry.add(AcmeDriver)


class ImpostorLocalDriver(AcmeDriver):
    name = "local"


class ImpostorPlugin:
    @hookimpl
    def clusterd_register_drivers(self, registry: DriverRegistry) -> None:
        registry.add(ImpostorLocalDriver)


class MistypedPlugin:
    @hookimpl
    def clusterd_register_driver(self, registry: DriverRegistry) -> None:  # no "s"
        registry.add(AcmeDriver)


BUILTINS = (clusterd.drivers.local, clusterd.drivers.fake)


@needs_entry_points
def test_builtin_drivers_arrive_through_the_entry_point_group() -> None:
    pm = build_plugin_manager()
    assert pm.get_plugin("local") is clusterd.drivers.local
    assert pm.get_plugin("fake") is clusterd.drivers.fake
    registry = load_drivers(pm)
    assert {"local", "fake"} <= set(registry.names())
    assert registry.get("local") is clusterd.drivers.local.LocalDriver


def test_builtins_have_no_special_path() -> None:
    """Without entry points there are no drivers at all: built-ins are plain plugins."""
    assert load_drivers(build_plugin_manager(entry_points=False)).names() == []


def test_third_party_plugin_adds_a_driver() -> None:
    pm = build_plugin_manager([*BUILTINS, AcmePlugin()], entry_points=False)
    registry = load_drivers(pm)
    assert registry.names() == ["acme", "fake", "local"]
    assert registry.get("acme") is AcmeDriver


@needs_entry_points
def test_third_party_plugin_sits_beside_installed_ones() -> None:
    registry = load_drivers(build_plugin_manager([AcmePlugin()]))
    assert {"acme", "fake", "local"} <= set(registry.names())


def test_duplicate_driver_names_fail_naming_both_classes() -> None:
    pm = build_plugin_manager([clusterd.drivers.local, ImpostorPlugin()], entry_points=False)
    with pytest.raises(DriverError) as err:
        load_drivers(pm)
    message = str(err.value)
    assert "'local'" in message
    assert "clusterd.drivers.local.LocalDriver" in message
    assert f"{__name__}.ImpostorLocalDriver" in message


def test_adding_the_same_class_twice_is_harmless() -> None:
    registry = DriverRegistry()
    registry.add(AcmeDriver)
    registry.add(AcmeDriver)
    assert registry.names() == ["acme"]


def test_mistyped_hook_fails_at_start_up() -> None:
    with pytest.raises(DriverError) as err:
        build_plugin_manager([MistypedPlugin()], entry_points=False)
    assert str(err.value) == (
        f"clusterd plugin {__name__}.MistypedPlugin implements unknown hook "
        "clusterd_register_driver; known hooks: clusterd_register_drivers, "
        "clusterd_register_search_methods, clusterd_register_stop_rules. "
        "Fix the hook's name or uninstall the plugin"
    )
    assert isinstance(err.value.__cause__, pluggy.PluginValidationError)


def test_unknown_driver_lists_the_available_ones() -> None:
    registry = load_drivers(build_plugin_manager(BUILTINS, entry_points=False))
    with pytest.raises(NotFound, match=r"no driver named 'slurmm' \(available: fake, local\)"):
        registry.get("slurmm")


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (object, "expects a Driver subclass"),
        (AcmeDriver(), "expects a Driver subclass"),
        (type("Nameless", (AcmeDriver,), {"name": ""}), "has no 'name'"),
        (type("Half", (Driver,), {"name": "half"}), "does not implement: cancel, poll, submit"),
    ],
)
def test_add_rejects_what_is_not_a_usable_driver(candidate: object, expected: str) -> None:
    with pytest.raises(DriverError, match=expected):
        DriverRegistry().add(candidate)  # type: ignore[arg-type]


def test_importing_the_package_loads_no_driver() -> None:
    """No import-time side effects: drivers are imported only by the plugin manager."""
    code = "import sys, clusterd.drivers; print(sorted(m for m in sys.modules if 'drivers.' in m))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "clusterd.drivers.local" not in out
    assert "clusterd.drivers.fake" not in out


def test_every_hook_is_documented() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("clusterd_")]
    assert hooks == [
        "clusterd_register_drivers",
        "clusterd_register_search_methods",
        "clusterd_register_stop_rules",
    ]
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "Called" in doc, f"{name} must say when it is called"
