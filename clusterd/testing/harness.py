"""One conformance check's world: a daemon armed with the kit's instruments, a work
directory for sweeps, and the driver under test built in-process for direct calls."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterd.drivers.base import Driver, JobRef
from clusterd.plugins import build_plugin_manager, load_drivers
from clusterd.testing.commands import StatusCommands
from clusterd.testing.daemon import Daemon, short_home
from clusterd.testing.instrument import CRASH_ENV, Events, install, read_events
from clusterd.testing.sweeps import sweep_file, toml_table

__all__ = ["Kit", "SchedulerSetup", "load_driver_class"]


@dataclass(frozen=True)
class SchedulerSetup:
    """What the ``scheduler`` fixture hands the kit once the scheduler is up.

    ``sweep_options`` go into every sweep's ``[drivers.<name>]`` table (e.g. a short
    ``poll_interval``); ``driver_options`` become the ``[drivers.<name>]`` table of the
    daemon's per-user config file (``CLUSTERD_CONFIG``): driver-wide options reach the
    driver's constructor, sweep options are defaults under each sweep's table; ``env`` is
    added to the daemon's environment and the test process's (e.g. ``SLURM_CONF``).
    """

    sweep_options: Mapping[str, Any] = field(default_factory=dict)
    driver_options: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


def load_driver_class(name: str, plugins: Sequence[str] = ()) -> type[Driver]:
    """The driver class registered as ``name``, found as the daemon finds it: entry
    points, ``CLUSTERD_PLUGINS``, then the ``plugins`` modules; if it is missing, the
    error says which plugins were skipped and why."""
    pm = build_plugin_manager(extra_plugins=list(plugins))
    registry = load_drivers(pm)
    if name not in registry:
        skipped = "; ".join(problem.line() for problem in pm.problems) or "none"
        raise AssertionError(
            f"no driver named {name!r} (registered: {', '.join(registry.names()) or 'none'}; "
            f"plugins skipped: {skipped}): install the plugin or list its module in plugins"
        )
    return registry.get(name)


class Kit:
    """The daemon and files of one check; ``close`` cancels what it started and cleans up."""

    def __init__(
        self,
        driver: str,
        setup: SchedulerSetup,
        status_commands: Sequence[str],
        plugins: Sequence[str],
        work: Path,
    ) -> None:
        self.driver = driver
        self.setup = setup
        self.plugins = tuple(plugins)
        self.work = work
        self.events_path = Path(tempfile.mkdtemp(prefix="cd-kit-", dir="/tmp")) / "events"
        root = self.events_path.parent
        self.commands = (
            StatusCommands(root, status_commands, self.events_path) if status_commands else None
        )
        self.crash_marker = root / "crashed"
        #: what the test process needs too, for the in-process driver (the fixture sets it)
        self.process_env = {**setup.env}
        if self.commands is not None:
            self.process_env["PATH"] = self.commands.path(os.environ.get("PATH", ""))
        # the kit's own config file, empty or not: the author's ~/.config never reaches it
        config = root / "config.toml"
        config.write_text(toml_table(f"drivers.{driver}", setup.driver_options), encoding="utf-8")
        env = {**self.process_env, "CLUSTERD_CONFIG": str(config)}
        if self.plugins:
            env["CLUSTERD_PLUGINS"] = ",".join(self.plugins)
        self.daemon = Daemon(short_home(), env)
        site = root / "site"
        self.daemon.env.update(install(site, driver, self.events_path))
        self.daemon.env["PYTHONPATH"] = f"{site}{os.pathsep}{self.daemon.env['PYTHONPATH']}"

    def start(self, crash_after_submit: bool = False) -> None:
        """Start the daemon, instrumented; armed, it SIGKILLs itself after its first
        ``submit`` returns (once: the marker file remembers it, so it may start again)."""
        if crash_after_submit:
            self.daemon.env[CRASH_ENV] = str(self.crash_marker)
        self.daemon.start()

    def sweep(self, name: str, mode: str, trials: int = 1, **kwargs: Any) -> Path:
        """Write a sweep running the kit's trial script on the driver under test."""
        return sweep_file(
            self.work,
            name,
            self.driver,
            mode,
            trials,
            driver_options=self.setup.sweep_options,
            **kwargs,
        )

    def submit(self, path: Path) -> None:
        self.daemon.ctl("submit", str(path))

    def events(self) -> Events:
        return read_events(self.events_path)

    def refs(self, sweep: str, trials: int) -> list[JobRef]:
        """The jobs of every attempt of the sweep's first ``trials`` trials."""
        return [
            JobRef(a["token"], a["job_id"], a["dir"])
            for index in range(trials)
            for a in self.daemon.attempts(sweep, index)
        ]

    def in_process_driver(self) -> Driver:
        """The driver under test, built here as the daemon builds it (with the config
        file's driver-wide options), for direct calls."""
        cls = load_driver_class(self.driver, self.plugins)
        wide = {spec.name for spec in cls.option_specs if not spec.sweep}
        return cls({k: v for k, v in self.setup.driver_options.items() if k in wide})

    def job_options(self, driver: Driver) -> dict[str, Any]:
        """A sweep's ``[drivers.<name>]`` table as the daemon hands it to ``submit``: the
        config file's sweep options under the sweep's own."""
        sweep = {spec.name for spec in driver.option_specs if spec.sweep}
        config = {k: v for k, v in self.setup.driver_options.items() if k in sweep}
        return {**config, **self.setup.sweep_options}

    def close(self) -> None:
        try:
            if self.commands is not None:
                self.commands.answer("")
            self.daemon.cancel_everything()
        finally:
            self.daemon.remove()
            shutil.rmtree(self.events_path.parent, ignore_errors=True)
