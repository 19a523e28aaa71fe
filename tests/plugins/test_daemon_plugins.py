"""Plugins and the config file with a real daemon: what a user sees in ``clusterctl drivers``."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from tests.conftest import Daemon

BAD_PLUGINS = {
    # states a range this clusterd is outside of
    "tplug_old": 'CLUSTERD_API = ">=2,<3"\n',
    # cannot be imported
    "tplug_broken": "import tplug_no_such_module\n",
    # its registering hook raises
    "tplug_raises": """
        from clusterd.plugins import hookimpl

        @hookimpl
        def clusterd_register_drivers(registry):
            raise RuntimeError("the license server is down")
    """,
}

RECORDING = """
    import json, os

    from clusterd.drivers.options import Option, non_empty_string, positive_int
    from clusterd.plugins import hookimpl
    from clusterd.testing.fake_driver import OPTIONS, FakeDriver

    CLUSTERD_API = ">=1,<2"

    class RecordingDriver(FakeDriver):
        '''The fake driver, writing down the options each job and the driver got.'''

        name = "recording"
        option_specs = (
            *OPTIONS,
            Option("account", "a non-empty string", non_empty_string, "account to bill"),
            Option("partition", "a non-empty string", non_empty_string, "where to run"),
            Option("workers", "a positive integer", positive_int, "threads", sweep=False),
        )

        def submit(self, jobs):
            for job in jobs:
                with open(os.path.join(job.attempt_dir, "recorded.json"), "w") as fh:
                    json.dump({"job": dict(job.options), "driver": self.options}, fh)
            return super().submit(jobs)

    @hookimpl
    def clusterd_register_drivers(registry):
        registry.add(RecordingDriver)
"""


def add_plugins(daemon: Daemon, directory: Path, modules: dict[str, str]) -> None:
    """Write plugin modules into ``directory`` and name them in CLUSTERD_PLUGINS."""
    directory.mkdir()
    for name, body in modules.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(body))
    daemon.env["PYTHONPATH"] = f"{directory}{os.pathsep}{daemon.env['PYTHONPATH']}"
    daemon.env["CLUSTERD_PLUGINS"] += "," + ",".join(modules)


def write_config(daemon: Daemon, text: str) -> Path:
    path = Path(daemon.env["CLUSTERD_CONFIG"])
    path.write_text(text)
    return path


def write_sweep(directory: Path, name: str, driver: str, extra: str = "") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ncommand = ["python3", "-c", "pass"]\ndriver = "{driver}"\n'
        f"[params]\nx = [1, 2]\n{extra}"
    )
    return path


def test_bad_plugins_are_skipped_listed_and_local_still_runs(
    stopped_daemon: Daemon, tmp_path: Path
) -> None:
    d = stopped_daemon
    add_plugins(d, tmp_path / "plugins", BAD_PLUGINS)
    config = write_config(d, "[drivers.local]\ncpus = 2\n[drivers.lsf]\nqueue = 'long'\n")
    d.start()

    out = d.ctl("drivers").stdout
    assert "problems (plugins skipped, see the daemon log):" in out
    problems = {
        "tplug_old": "it supports the clusterd plugin API >=2.0.0,<3.0.0 (CLUSTERD_API), "
        "this clusterd has API 1.0.0; install a release of the plugin made for API 1.x",
        "tplug_broken": "importing tplug_broken failed: ModuleNotFoundError: "
        "No module named 'tplug_no_such_module'",
        "tplug_raises": "clusterd_register_drivers failed: "
        "RuntimeError('the license server is down')",
    }
    for plugin, why in problems.items():
        assert f"  {plugin}: {why}\n" in out, out
        assert f"clusterd plugin {plugin} skipped: {why}" in d.log()
    assert f"{config}: [drivers.lsf]: no driver named 'lsf' is installed" in d.log()
    local = next(line for line in out.splitlines() if line.startswith("local "))
    assert local.split()[1:4] == ["clusterd", "0.1.0", "yes"]  # name, distribution, built in

    info = d.ctl_json("drivers")
    assert {p["plugin"] for p in info["problems"]} == set(problems)
    status = d.clusterd("status").stdout
    for plugin, why in problems.items():
        assert f"plugin    {plugin} skipped: {why}" in status, status
    rows = {row["name"]: row for row in info["drivers"]}
    assert {"fake", "local"} <= set(rows)  # and slurm where it is installed
    row = rows["local"]
    assert row["class"] == "clusterd.drivers.local.driver.LocalDriver"
    assert (row["distribution"], row["builtin"], row["config"]) == ("clusterd", True, {"cpus": 2})
    assert info["api_version"] == "1.0.0" and info["config_file"] == str(config)

    d.ctl("submit", str(write_sweep(tmp_path, "still-local", "local")))
    trials = d.wait_sweep_done("still-local")
    assert [t["state"] for t in trials] == ["completed", "completed"]


def test_drivers_options_lists_the_options_and_the_config_values(
    stopped_daemon: Daemon,
) -> None:
    d = stopped_daemon
    config = write_config(d, "[drivers.local]\ncpus = 2\nkill_timeout = 5\n")
    d.start()
    out = d.ctl("drivers", "--options", "local").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["option", "must", "be", "default", "set", "in", "help"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert set(rows) == {"cpus", "gpus", "kill_timeout"}
    assert "driver-wide" in rows["cpus"] and " sweep " in rows["kill_timeout"]
    assert "seconds from a cancel's SIGTERM" in rows["kill_timeout"]
    assert lines[4] == f"{config} sets for [drivers.local]: cpus = 2, kill_timeout = 5"

    config.write_text("[drivers.local]\ncpus = 3\n")
    out = d.ctl("drivers", "--options", "local").stdout
    assert out.endswith("note: the file changed since the daemon started; restart it to apply\n")
    missing = d.ctl("drivers", "--options", "lsf", check=False)
    assert missing.returncode == 1
    assert "no driver named 'lsf' is installed (installed: fake, htcondor, local" in missing.stderr


def test_config_defaults_sit_under_the_sweep_table_and_the_sweep_wins(
    stopped_daemon: Daemon, tmp_path: Path
) -> None:
    d = stopped_daemon
    add_plugins(d, tmp_path / "plugins", {"tplug_recording": RECORDING})
    write_config(d, '[drivers.recording]\naccount = "ml"\npartition = "cpu"\nworkers = 3\n')
    d.start()
    sweep = write_sweep(tmp_path, "rec", "recording", '[drivers.recording]\npartition = "gpu"\n')
    d.ctl("submit", str(sweep))
    assert {t["state"] for t in d.wait_sweep_done("rec")} == {"completed"}
    records = sorted((tmp_path / "runs" / "rec").glob("*/attempt-*/recorded.json"))
    assert len(records) == 2
    for record in records:
        assert json.loads(record.read_text()) == {
            "job": {"account": "ml", "partition": "gpu"},
            "driver": {"workers": 3},
        }
    # a sweep that sets a driver-wide key is refused at submit, naming the key
    bad = write_sweep(tmp_path, "bad", "recording", "[drivers.recording]\nworkers = 1\n")
    refused = d.ctl("submit", str(bad), check=False)
    assert refused.returncode == 1
    assert "unknown option 'workers' in a sweep" in refused.stderr


def test_a_bad_config_key_refuses_the_start_naming_the_file(stopped_daemon: Daemon) -> None:
    d = stopped_daemon
    config = write_config(d, "[drivers.local]\ncpu = 2\n")
    started = d.clusterd("start", check=False)
    assert started.returncode == 1
    assert (
        f"{config}: drivers.local.cpu: unknown option 'cpu'; "
        "valid options: cpus, gpus, kill_timeout" in started.stderr
    )
    assert not (d.home / "clusterd.pid").exists()
