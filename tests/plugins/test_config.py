"""The per-user config file: where it is, what it may say, how it meets a sweep's table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from clusterd.config import ConfigError, UserConfig, config_path, read_config
from clusterd.drivers.base import Driver
from clusterd.drivers.options import Option, non_empty_string, positive_int
from clusterd.testing.fake_driver import FakeDriver


class Batchy(FakeDriver):
    """A driver with sweep options and a driver-wide one, like Slurm's."""

    name = "batchy"
    option_specs = (
        Option("account", "a non-empty string", non_empty_string),
        Option("partition", "a non-empty string", non_empty_string),
        Option("command_timeout", "a positive integer", positive_int, sweep=False),
    )


DRIVERS: dict[str, type[Driver]] = {"batchy": Batchy, "fake": FakeDriver}


def config(tmp_path: Path, text: str) -> UserConfig:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return read_config(path)


def test_where_the_file_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLUSTERD_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".config/clusterd/config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg/clusterd/config.toml"
    monkeypatch.setenv("CLUSTERD_CONFIG", str(tmp_path / "mine.toml"))
    assert config_path() == tmp_path / "mine.toml"


def test_no_file_is_an_empty_config(tmp_path: Path) -> None:
    empty = read_config(tmp_path / "absent.toml")
    assert empty.table("batchy") == {} and empty.check(DRIVERS) == []


def test_sweep_keys_are_defaults_under_the_sweep_and_the_sweep_wins(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        '[drivers.batchy]\naccount = "ml"\npartition = "cpu"\ncommand_timeout = 60\n',
    )
    assert cfg.check(DRIVERS) == []
    assert cfg.merged(Batchy, {"partition": "gpu"}) == {"account": "ml", "partition": "gpu"}
    assert cfg.driver_options(Batchy) == {"command_timeout": 60}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[drivers.batchy]\naccont = "ml"\n',
            "drivers.batchy.accont: unknown option 'accont'; "
            "valid options: account, command_timeout, partition",
        ),
        (
            "[drivers.batchy]\ncommand_timeout = -1\n",
            "drivers.batchy.command_timeout: option 'command_timeout' must be a positive "
            "integer, got -1",
        ),
        ("[drivers.batchy\n", "not valid TOML: "),
        ('account = "ml"\n', "unknown key 'account'; valid keys: drivers"),
        ('drivers = "slurm"\n', "drivers: must be tables, e.g. [drivers.slurm]"),
        ("[drivers]\nbatchy = 3\n", "drivers.batchy: must be a table ([drivers.batchy])"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config(tmp_path, text).check(DRIVERS)
    assert err.value.message.startswith(f"{tmp_path / 'config.toml'}: ")
    assert message in err.value.message


def test_a_table_for_a_driver_not_installed_is_only_a_warning(tmp_path: Path) -> None:
    cfg = config(tmp_path, '[drivers.lsf]\nqueue = "long"\n')
    [warning] = cfg.check(DRIVERS)
    assert warning == (
        f"{tmp_path / 'config.toml'}: [drivers.lsf]: no driver named 'lsf' is installed; "
        "the table is ignored"
    )


def test_a_driver_that_declares_no_options_accepts_none(tmp_path: Path) -> None:
    class Bare(FakeDriver):
        name = "bare"
        option_specs = ()

    with pytest.raises(ConfigError, match=r"drivers\.bare\.x: unknown option 'x'; valid .*: none"):
        config(tmp_path, "[drivers.bare]\nx = 1\n").check({"bare": Bare})


def test_the_merged_table_is_what_validate_judges(tmp_path: Path) -> None:
    """A default from the file cannot break a sweep; a sweep's bad key still fails."""
    from clusterd.daemon.scheduler import DriverSet
    from clusterd.errors import SpecError
    from clusterd.spec.model import SweepSpec

    cfg = config(tmp_path, '[drivers.batchy]\naccount = "ml"\ncommand_timeout = 5\n')
    drivers = DriverSet(dict(DRIVERS), lambda: None, config=cfg)
    spec: Any = SweepSpec(
        name="s",
        command=("x",),
        source="sweep.toml",
        output_dir=str(tmp_path),
        driver="batchy",
        driver_options={"batchy": {"partition": "gpu"}},
    )
    judged = drivers.with_defaults(spec)
    assert judged.driver_options["batchy"] == {"account": "ml", "partition": "gpu"}
    driver = drivers.get("batchy")
    driver.validate(judged)
    assert driver.options == {"command_timeout": 5}
    bad = drivers.with_defaults(
        dataclasses.replace(spec, driver_options={"batchy": {"command_timeout": 1}})
    )
    with pytest.raises(SpecError, match="unknown option 'command_timeout' in a sweep"):
        driver.validate(bad)
