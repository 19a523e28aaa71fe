"""The kit's sweeps: one small trial script whose behaviour each check picks by a
parameter, and the sweep files that run it on the driver under test."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TRIAL", "runs_of", "sweep_file", "toml_table", "toml_value"]

# Every run appends "<x> <attempt>" to the ``record`` file first, so the kit can tell
# how often each trial ran. ``mode`` says what the run does then:
#   ok      report three steps and exit 0
#   resume  first attempt: checkpoint and exit for resume; next: report and exit 0
#   retry   x == 1: fail (exit 1) on the first attempt only; other x: fail every time
#   wait    report a step, then wait for the ``release`` file (bounded), exit 0
TRIAL = """
import json
import os
import time

from clusterd import trial

p = trial.params()
fd = os.open(p["record"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, ("%s %d\\n" % (p["x"], trial.attempt())).encode())
os.close(fd)
mode = p["mode"]
if mode == "ok":
    for step in range(3):
        trial.report(step, loss=1.0 / (step + 1))
elif mode == "resume":
    if trial.last_checkpoint() is None:
        path = os.path.join(trial.checkpoint_dir(), "state.json")
        with open(path, "w") as fh:
            json.dump({"step": 1}, fh)
        trial.report(0, loss=1.0)
        trial.checkpoint(path, 1)
        trial.exit_for_resume()
    trial.report(1, loss=0.5)
elif mode == "retry":
    if p["x"] != 1 or trial.attempt() == 1:
        raise SystemExit(1)
    trial.report(0, loss=1.0)
elif mode == "wait":
    trial.report(0, loss=1.0)
    deadline = time.monotonic() + float(p["seconds"])
    while not os.path.exists(p["release"]) and time.monotonic() < deadline:
        time.sleep(0.1)
"""


def toml_value(value: Any) -> str:
    """A TOML literal for the option values drivers take: JSON's spelling of numbers,
    booleans and lists is TOML's; strings too, written as UTF-8 (JSON's surrogate pairs
    for characters beyond U+FFFF are not TOML) with DEL escaped (TOML refuses it raw)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return json.dumps(value)


def toml_table(name: str, values: Mapping[str, Any]) -> str:
    """``[name]`` and its ``key = value`` lines; nothing for no values."""
    if not values:
        return ""
    return f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


def sweep_file(
    directory: Path,
    name: str,
    driver: str,
    mode: str,
    trials: int = 1,
    *,
    driver_options: Mapping[str, Any],
    resources: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``<name>.toml`` and the trial script into ``directory`` (the sweep writes
    under ``directory/runs/<name>``); every trial may run at once."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kit_trial.py").write_text(TRIAL)
    text = (
        f"name = {toml_value(name)}\n"
        f"command = {toml_value([sys.executable, 'kit_trial.py'])}\n"
        f"driver = {toml_value(driver)}\n"
        f"max_concurrent = {trials}\n"
        '[metric]\nname = "loss"\n'
    )
    all_params = {
        "x": list(range(1, trials + 1)),
        "mode": mode,
        "record": str(directory / f"{name}.runs"),
        **(params or {}),
    }
    text += toml_table("params", all_params) + toml_table("resources", resources)
    for table, values in (tables or {}).items():
        text += toml_table(table, values)
    text += toml_table(f"drivers.{driver}", driver_options)
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def runs_of(directory: Path, name: str) -> list[tuple[int, int]]:
    """``(x, attempt)`` of every run of the sweep's trial command, in order."""
    path = directory / f"{name}.runs"
    if not path.exists():
        return []
    return [(int(x), int(a)) for x, a in (line.split() for line in path.read_text().splitlines())]
