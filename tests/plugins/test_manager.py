"""Loading plugins in-process: a bad one is skipped with a clear problem, the rest load."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import clusterd.drivers.local
import clusterd.stopping.registry
from clusterd.errors import DriverError
from clusterd.plugins import (
    PluginError,
    RuleRegistry,
    SearchRegistry,
    build_plugin_manager,
    hookimpl,
    load_drivers,
    load_rules,
)
from clusterd.stopping import StopRule
from clusterd.stopping.median import MedianRule
from clusterd.testing.fake_driver import FakeDriver


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for tiny plugin modules; they are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        if name.startswith("tplug_"):
            del sys.modules[name]


def write_plugin(directory: Path, name: str, body: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return name


FAKE_PLUGIN = """
    from clusterd.plugins import hookimpl
    from clusterd.testing.fake_driver import FakeDriver

    class {cls}(FakeDriver):
        name = "{name}"
    {extra}
    @hookimpl
    def clusterd_register_drivers(registry):
        registry.add({cls})
        {after}
"""


def fake_plugin(directory: Path, module: str, driver: str, extra: str = "", after: str = "") -> str:
    body = FAKE_PLUGIN.format(cls="Driver_" + driver, name=driver, extra=extra, after=after)
    return write_plugin(directory, module, body)


def test_a_misregistered_stop_rule_is_a_stop_rule_error_not_a_driver_error() -> None:
    with pytest.raises(PluginError, match="expects a StopRule subclass") as err:
        RuleRegistry().add(FakeDriver)  # type: ignore[arg-type]
    assert not isinstance(err.value, DriverError)
    nameless = type("Nameless", (MedianRule,), {"name": ""})
    with pytest.raises(PluginError, match=r"^stop rule class .*Nameless has no 'name'"):
        RuleRegistry().add(nameless)
    with pytest.raises(PluginError, match=r"^search method class .*does not implement"):
        SearchRegistry().add(type("Half", (SearchRegistry.base,), {"name": "half"}))


def test_two_stop_rules_with_one_name_name_the_kind() -> None:
    class Other(MedianRule):
        pass

    registry = RuleRegistry()
    registry.add(MedianRule)
    with pytest.raises(PluginError, match="two plugins register a stop rule named 'median'"):
        registry.add(Other)


def test_the_built_in_rules_arrive_through_the_hook() -> None:
    pm = build_plugin_manager([clusterd.stopping.registry], entry_points=False)
    rules = load_rules(pm)
    assert rules.names() == ["asha", "hyperband", "median"]
    assert all(issubclass(cls, StopRule) for cls in rules)


def test_a_plugin_outside_its_api_range_is_skipped(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = fake_plugin(plugin_dir, "tplug_old", "old", extra='CLUSTERD_API = ">=2,<3"')
    ok = fake_plugin(plugin_dir, "tplug_ok", "ok", extra='CLUSTERD_API = ">=1.0, <2"')
    with caplog.at_level(logging.WARNING, logger="clusterd.plugins"):
        pm = build_plugin_manager([old, ok], entry_points=False)
    assert load_drivers(pm).names() == ["ok"]
    [problem] = pm.problems
    assert problem.source.name == "tplug_old"
    assert problem.why == (
        "it supports the clusterd plugin API >=2.0.0,<3.0.0 (CLUSTERD_API), this clusterd "
        "has API 1.0.0; install a release of the plugin made for API 1.x"
    )
    assert caplog.messages == [f"clusterd plugin tplug_old skipped: {problem.why}"]


def test_a_plugin_whose_range_is_no_range_is_skipped(plugin_dir: Path) -> None:
    bad = fake_plugin(plugin_dir, "tplug_badrange", "bad", extra='CLUSTERD_API = "1 or 2"')
    pm = build_plugin_manager([bad], entry_points=False)
    assert load_drivers(pm).names() == []
    assert pm.problems[0].why.startswith("its CLUSTERD_API is not a version range: ")


def test_a_plugin_that_cannot_be_imported_is_skipped(plugin_dir: Path) -> None:
    broken = write_plugin(plugin_dir, "tplug_broken", "import tplug_no_such_module\n")
    pm = build_plugin_manager([broken, clusterd.drivers.local, "tplug_missing"], entry_points=False)
    assert load_drivers(pm).names() == ["local"]
    whys = {p.source.name: p.why for p in pm.problems}
    assert whys == {
        "tplug_broken": "importing tplug_broken failed: ModuleNotFoundError: "
        "No module named 'tplug_no_such_module'",
        "tplug_missing": "importing tplug_missing failed: ModuleNotFoundError: "
        "No module named 'tplug_missing'",
    }


def test_a_hook_that_raises_adds_nothing_and_the_others_load(plugin_dir: Path) -> None:
    """All or none: the class added before the hook raised is not registered either."""
    bad = fake_plugin(plugin_dir, "tplug_raises", "half", after="raise RuntimeError('boom')")
    pm = build_plugin_manager([bad, clusterd.drivers.local], entry_points=False)
    assert load_drivers(pm).names() == ["local"]
    [problem] = pm.problems
    assert problem.line() == (
        "clusterd plugin tplug_raises skipped: clusterd_register_drivers failed: "
        "RuntimeError('boom')"
    )


def test_a_plugin_object_with_an_unknown_hook_is_skipped() -> None:
    class Typo:
        @hookimpl
        def clusterd_register_stop_rule(self, registry: RuleRegistry) -> None:
            registry.add(MedianRule)

    pm = build_plugin_manager([Typo()], entry_points=False)
    assert "implements unknown hook clusterd_register_stop_rule" in pm.problems[0].why
    assert load_rules(pm).names() == []


def test_where_each_driver_comes_from() -> None:
    pm = build_plugin_manager(["clusterd.testing.fake_driver"])
    registry = load_drivers(pm)
    local = pm.sources[registry.origin("local") or ""]
    assert (local.distribution, local.builtin) == ("clusterd", True)
    assert pm.sources[registry.origin("fake") or ""].name == "clusterd.testing.fake_driver"
