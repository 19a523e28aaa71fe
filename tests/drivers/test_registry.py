"""Driver discovery through pluggy: entry points, third-party plugins, start-up checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import clusterd.drivers.local
import clusterd.testing.fake_driver
from clusterd.drivers import Driver, JobRef, JobRequest, JobStatus
from clusterd.errors import NotFound
from clusterd.plugins import (
    DriverRegistry,
    PluginError,
    build_plugin_manager,
    hookimpl,
    hookspecs,
    load_drivers,
)

REPO = Path(__file__).resolve().parents[2]

installed = {ep.name for ep in entry_points(group="clusterd")} >= {"local"}
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


BUILTINS = (clusterd.drivers.local, clusterd.testing.fake_driver)


@needs_entry_points
def test_builtin_drivers_arrive_through_the_entry_point_group() -> None:
    pm = build_plugin_manager()
    assert pm.get_plugin("local") is clusterd.drivers.local
    registry = load_drivers(pm)
    assert "local" in registry.names()
    assert registry.get("local") is clusterd.drivers.local.LocalDriver
    assert pm.sources["local"].builtin and pm.problems == []


@needs_entry_points
def test_the_fake_driver_is_not_offered_to_users() -> None:
    """Test-only: in no entry-point group; tests name its module (CLUSTERD_PLUGINS)."""
    assert "fake" not in load_drivers(build_plugin_manager()).names()
    registry = load_drivers(build_plugin_manager(["clusterd.testing.fake_driver"]))
    assert registry.get("fake") is clusterd.testing.fake_driver.FakeDriver


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
    assert {"acme", "local"} <= set(registry.names())


def test_duplicate_driver_name_skips_the_later_plugin_naming_both_classes() -> None:
    pm = build_plugin_manager([clusterd.drivers.local, ImpostorPlugin()], entry_points=False)
    registry = load_drivers(pm)
    assert registry.get("local") is clusterd.drivers.local.LocalDriver
    [problem] = pm.problems
    assert problem.source.name == f"{__name__}.ImpostorPlugin"
    assert "'local'" in problem.why
    local = clusterd.drivers.local.LocalDriver
    assert f"{local.__module__}.{local.__qualname__}" in problem.why
    assert f"{__name__}.ImpostorLocalDriver" in problem.why


def test_adding_the_same_class_twice_is_harmless() -> None:
    registry = DriverRegistry()
    registry.add(AcmeDriver)
    registry.add(AcmeDriver)
    assert registry.names() == ["acme"]


def test_mistyped_hook_skips_the_plugin_at_start_up() -> None:
    pm = build_plugin_manager([clusterd.drivers.local, MistypedPlugin()], entry_points=False)
    [problem] = pm.problems
    assert problem.why == (
        f"clusterd plugin {__name__}.MistypedPlugin implements unknown hook "
        "clusterd_register_driver; known hooks: clusterd_register_drivers, "
        "clusterd_register_search_methods, clusterd_register_stop_rules. "
        "Fix the hook's name or uninstall the plugin"
    )
    assert load_drivers(pm).names() == ["local"]  # the others still load
    assert not any(isinstance(p, MistypedPlugin) for p in pm.get_plugins())


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
    with pytest.raises(PluginError, match=expected):
        DriverRegistry().add(candidate)  # type: ignore[arg-type]


def test_importing_the_package_loads_no_driver() -> None:
    """No import-time side effects: drivers are imported only by the plugin manager, and
    the contract does not drag in the plugin machinery."""
    code = (
        "import sys, clusterd.drivers; "
        "print(sorted(m for m in sys.modules if 'drivers.' in m or 'plugins' in m))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "clusterd.drivers.local" not in out
    assert "fake_driver" not in out
    assert "clusterd.plugins" not in out


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
