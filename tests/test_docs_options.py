"""Every option a built-in driver declares is documented where its users look.

The declaration (``Driver.option_specs``) is the one source: ``validate`` checks sweeps
against it and ``clusterctl drivers --options`` prints it; this keeps the prose in step.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clusterd.drivers.base import Driver
from clusterd.drivers.htcondor import HTCondorDriver
from clusterd.drivers.local import LocalDriver
from clusterd.drivers.pbs import PbsDriver
from clusterd.drivers.sge import SgeDriver
from clusterd.drivers.slurm import SlurmDriver

ROOT = Path(__file__).resolve().parent.parent

#: (driver, the page its users read) for every built-in driver
PAGES = [
    (SlurmDriver, "docs/slurm.md"),
    (HTCondorDriver, "docs/htcondor.md"),
    (PbsDriver, "docs/pbs.md"),
    (SgeDriver, "docs/sge.md"),
]


@pytest.mark.parametrize(
    ("driver", "page"),
    [*PAGES, (LocalDriver, "README.md")],
    ids=[d.name for d, _ in PAGES] + ["local"],
)
def test_every_declared_option_is_documented(driver: type[Driver], page: str) -> None:
    text = (ROOT / page).read_text()
    missing = [o.name for o in driver.option_specs if not re.search(rf"`{o.name}`", text)]
    assert not missing, f"{page} does not mention {driver.name} options {missing}"


@pytest.mark.parametrize(("driver", "page"), PAGES, ids=[d.name for d, _ in PAGES])
def test_the_options_table_lists_no_option_the_driver_lacks(
    driver: type[Driver], page: str
) -> None:
    """A row for an option the driver no longer takes would send users into an error."""
    text = (ROOT / page).read_text()
    heading = f"## `[drivers.{driver.name}]` options"
    assert heading in text, f"{page} has no section {heading!r}"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    declared = {o.name for o in driver.option_specs}
    assert rows and set(rows) <= declared, set(rows) - declared
