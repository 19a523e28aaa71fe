"""``clusterctl report`` end to end: a real daemon runs a small local sweep (six trials,
two metrics, one stopped by hand, submitted from a dirty git checkout), the report is
written, and Debian's headless Chromium renders it: the screenshot must show figures,
which a report of a sweep without metrics (same page furniture, no figures) does not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterd.testing.daemon import short_home
from tests.conftest import Daemon, wait_for

pytest.importorskip("matplotlib")

PY = sys.executable
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

TRAIN = """
    from clusterd import trial

    p = trial.params()
    lr, width = p["lr"], p["width"]
    hold = lr == 0.3 and width == 64  # the trial the test stops by hand
    for step in range(1200 if hold else 6):  # the held one: up to 60 s to be stopped
        loss = lr * 3 / (step + 1) + width / 1000
        trial.report(step, val_loss=loss, acc=1 - loss / 2)
        if hold:
            if trial.should_stop():
                break
            import time

            time.sleep(0.05)
"""

SWEEP = """
    name = "rep"
    command = ["{py}", "train.py"]
    max_concurrent = 6

    [metric]
    name = "val_loss"
    mode = "min"

    [params]
    lr = [0.01, 0.1, 0.3]
    width = [64, 512]
    note = "fixed <b>value</b>"
"""

EMPTY = """
    name = "bare"
    command = ["{py}", "-c", "pass"]

    [params]
    seed = [1, 2]
"""

#: a line added after the commit: the dirty diff the report must show, escaped
DIRTY = '# <script>alert("diff")</script>\n'


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).replace("{py}", PY))
    return path


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """One daemon for the module: the sweeps run once, every test reads their reports."""
    d = Daemon(short_home())
    d.start()
    yield d
    d.stop()
    shutil.rmtree(d.home.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def reports(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both sweeps run; their reports written: {"rep": path, "bare": path}."""
    tmp_path = tmp_path_factory.mktemp("report")
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "train.py", TRAIN)
    _write(src / "sweep.toml", SWEEP)
    _write(src / "bare.toml", EMPTY)
    _git(src, "init", "-q")
    _git(src, "add", ".")
    _git(src, "commit", "-q", "-m", "init")
    with (src / "train.py").open("a") as fh:
        fh.write(DIRTY)
    daemon.ctl("submit", str(src / "sweep.toml"))
    daemon.ctl("submit", str(src / "bare.toml"))

    def held() -> bool:
        t = next(t for t in daemon.trials("rep") if t["params"] == {**_held_params()})
        return (t["last_step"] or 0) >= 3

    wait_for(held, 60, "the held trial to report 3 steps")
    index = next(t["index"] for t in daemon.trials("rep") if t["params"] == _held_params())
    daemon.ctl("stop", f"rep/{index}")
    daemon.wait_sweep_done("rep", timeout=90)
    daemon.wait_sweep_done("bare", timeout=60)
    out = {}
    for name in ("rep", "bare"):
        out[name] = tmp_path / f"{name}.html"
        proc = daemon.ctl("report", name, "-o", str(out[name]))
        assert f"wrote the report of {name}" in proc.stderr
    return out


def _held_params() -> dict[str, object]:
    return {"lr": 0.3, "width": 64, "note": "fixed <b>value</b>"}


def test_report_is_self_contained_escaped_and_complete(reports: dict[str, Path]) -> None:
    text = reports["rep"].read_text()
    # self-contained: no script, nothing fetched from anywhere
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", text)
    # every figure inlined: vs parameters, curves, parallel coordinates, importance
    assert len(re.findall(r"src='data:image/png;base64,", text)) == 4
    for section in ("summary", "best", "params", "curves", "parallel", "importance", "stopping"):
        assert f"<section id='{section}'>" in text
    # user strings escaped: the fixed parameter and the dirty diff
    assert "fixed &lt;b&gt;value&lt;/b&gt;" in text and "<b>value</b>" not in text
    assert "&lt;script&gt;alert(&quot;diff&quot;)&lt;/script&gt;" in text
    assert "uncommitted changes</td><td>yes" in text
    # the summary counts, the stop decision, the estimator named, no GPU on this machine
    assert "6: 5 completed, 1 stopped" in text
    assert re.search(r"<td>rep/\d+</td><td>stopped</td><td>manual</td><td class='n'>\d+", text)
    assert "one-way variance decomposition" in text
    assert "no GPU samples" in text
    # the best trial (lr=0.01, width=64) leads the table
    best = re.search(r"<td class='n'>1</td><td>(rep/\d+)</td>", text)
    assert best is not None


def test_bare_sweep_still_renders_and_says_why(reports: dict[str, Path]) -> None:
    text = reports["bare"].read_text()
    assert "no trial has reported a metric yet" in text
    assert "2: 2 completed" in text
    assert "data:image/png" not in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed here")
def test_chromium_screenshot_shows_figures(reports: dict[str, Path], tmp_path: Path) -> None:
    from matplotlib.image import imread

    def shot(page: Path) -> dict[str, int]:
        png = tmp_path / f"{page.stem}.png"
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--screenshot={png}",
                "--window-size=1280,2400",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        px = imread(png)[:, :, :3]  # floats in [0, 1]
        red = abs(px - [214 / 255, 39 / 255, 40 / 255]).max(axis=2) < 0.08  # plots.BEST
        return {
            "ink": int((px.min(axis=2) < 0.9).sum()),  # anything not (near) white
            "colour": int(((px.max(axis=2) - px.min(axis=2)) > 0.25).sum()),  # saturated
            "distinct": len({tuple(p) for p in (px[::4, ::4] * 31).astype(int).reshape(-1, 3)}),
            "best_red": int(red.sum()),  # the best trial's point and curve
        }

    full, bare = shot(reports["rep"]), shot(reports["bare"])
    assert bare["ink"] > 2_000, f"the bare report rendered as an empty page: {bare}"
    # the figures: the best trial drawn in red, many more colours than text and links
    assert bare["best_red"] == 0 and full["best_red"] > 300, (full, bare)
    assert full["distinct"] > 3 * bare["distinct"], (full, bare)
    assert full["colour"] > 2 * bare["colour"], (full, bare)
    assert full["ink"] > 1.5 * bare["ink"], (full, bare)


def test_bad_input_clear_errors_nothing_written(
    daemon: Daemon, reports: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "keep.html"
    out.write_text("untouched")
    unknown = daemon.ctl("report", "nope", "-o", str(out), check=False)
    assert unknown.returncode == 1 and "no sweep named 'nope'" in unknown.stderr
    assert out.read_text() == "untouched"
    nodir = daemon.ctl("report", "rep", "-o", str(tmp_path / "no" / "r.html"), check=False)
    assert nodir.returncode == 1 and "no directory" in nodir.stderr
    isdir = daemon.ctl("report", "rep", "-o", str(tmp_path), check=False)
    assert isdir.returncode == 1 and "it is a directory" in isdir.stderr
    top = daemon.ctl("report", "rep", "-o", str(out), "--top", "12", check=False)
    assert top.returncode == 1 and "--top must be between 1 and 9" in top.stderr
    assert out.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
