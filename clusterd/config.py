"""The per-user config file: defaults for the drivers' options.

Where: ``$CLUSTERD_CONFIG``, else ``$XDG_CONFIG_HOME/clusterd/config.toml``, else
``~/.config/clusterd/config.toml``; no file is an empty config. What: one
``[drivers.<name>]`` table per driver::

    [drivers.slurm]
    account = "ml"          # a sweep option: a default under every sweep's [drivers.slurm]
    partition = "gpu"       #   (the sweep's own table wins, key by key)
    command_timeout = 60    # a driver-wide option: handed to the driver when it starts

The daemon reads it once at start (``clusterctl drivers --options`` reads it too, to show
it). A key the driver does not declare (``Driver.option_specs``) or a value of the wrong
kind refuses the start, naming the file and ``drivers.<name>.<key>``: a mistyped account
must never silently submit to the default one. A table for a driver that is not
installed is only a warning (its plugin may be uninstalled for a while). Reading the file
needs nothing but the stdlib, so the CLI stays light.

A ``[gpu]`` table gives every sweep's idle-GPU watch its defaults (docs/gpu.md, "Idle
GPUs"); a sweep's own ``[gpu]`` keys win, and ``idle_warning = "off"`` there turns it off::

    [gpu]
    idle_warning = "30m"    # flag a trial whose GPUs stay idle this long
    idle_threshold = 5      # percent utilisation under which a GPU counts as idle
    idle_action = "warn"    # or "stop": stop such a trial
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterd.errors import ClusterdError

if TYPE_CHECKING:
    from clusterd.drivers.base import Driver
    from clusterd.spec.model import GpuConfig

__all__ = ["CONFIG_ENV", "ConfigError", "UserConfig", "config_path", "load_config", "read_config"]

CONFIG_ENV = "CLUSTERD_CONFIG"


class ConfigError(ClusterdError):
    """The config file is unusable; the message names the file and the key."""


def config_path() -> Path:
    """Where the config file is (it need not exist)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "clusterd" / "config.toml"


@dataclass(frozen=True)
class UserConfig:
    """The config file's driver tables, as read."""

    path: Path
    drivers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``[gpu]``: defaults of the idle-GPU watch (a ``GpuConfig``; None: no table)
    gpu: GpuConfig | None = None

    def table(self, name: str) -> dict[str, Any]:
        """``[drivers.<name>]`` as written (empty if absent)."""
        return dict(self.drivers.get(name, {}))

    def sweep_defaults(self, cls: type[Driver]) -> dict[str, Any]:
        """The keys of ``cls``'s table that are sweep options: defaults under a sweep's."""
        sweep = {spec.name for spec in cls.option_specs if spec.sweep}
        return {k: v for k, v in self.table(cls.name).items() if k in sweep}

    def driver_options(self, cls: type[Driver]) -> dict[str, Any]:
        """The keys of ``cls``'s table that are driver-wide: the driver's constructor's."""
        wide = {spec.name for spec in cls.option_specs if not spec.sweep}
        return {k: v for k, v in self.table(cls.name).items() if k in wide}

    def merged(self, cls: type[Driver], sweep_table: Mapping[str, Any]) -> dict[str, Any]:
        """A sweep's ``[drivers.<name>]`` over the user's defaults (the sweep wins)."""
        return self.sweep_defaults(cls) | dict(sweep_table)

    def check(self, classes: Mapping[str, type[Driver]]) -> list[str]:
        """Raise ``ConfigError`` for a key or value a driver refuses; return the warnings
        (tables of drivers that are not installed)."""
        from clusterd.drivers.options import option_problem

        warnings = []
        for name, table in sorted(self.drivers.items()):
            cls = classes.get(name)
            if cls is None:
                warnings.append(
                    f"{self.path}: [drivers.{name}]: no driver named {name!r} is installed; "
                    "the table is ignored"
                )
                continue
            for key, value in table.items():
                problem = option_problem(cls.option_specs, {key: value}, sweep=False)
                if problem is not None:
                    raise ConfigError(f"{self.path}: drivers.{name}.{key}: {problem}")
        return warnings


def read_config(path: Path | None = None) -> UserConfig:
    """Read and shape-check the file (TOML, ``[drivers.<name>]`` tables only)."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return UserConfig(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"drivers", "gpu"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid keys: drivers, gpu")
    drivers = data.get("drivers", {})
    if not isinstance(drivers, dict):
        raise ConfigError(f"{path}: drivers: must be tables, e.g. [drivers.slurm]")
    for name, table in drivers.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: drivers.{name}: must be a table ([drivers.{name}])")
    return UserConfig(path, drivers, _gpu_defaults(path, data.get("gpu")))


def _gpu_defaults(path: Path, table: Any) -> GpuConfig | None:
    """The ``[gpu]`` table checked like a sweep file's (without ``interval``, which the
    runner gets from the sweep)."""
    if table is None:
        return None
    from clusterd.spec.sections import _gpu  # stdlib only

    try:
        return _gpu(str(path), table, ("idle_warning", "idle_threshold", "idle_action"))
    except ClusterdError as exc:
        raise ConfigError(exc.message) from None


def load_config(classes: Mapping[str, type[Driver]]) -> tuple[UserConfig, list[str]]:
    """The daemon's start-up read: the file, checked against the installed drivers."""
    config = read_config()
    return config, config.check(classes)
