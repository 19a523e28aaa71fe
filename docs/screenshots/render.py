"""Render the TUI screenshots in this folder: ``python docs/screenshots/render.py``.

Each screen is drawn from ``FakeBackend``'s fixed data (the snapshot tests use
the same), saved as SVG with Textual's ``save_screenshot`` and, when cairosvg is
installed (``pip install cairosvg``), converted to PNG. The SVGs name the Fira
Code web font, which cairosvg cannot fetch, so the conversion swaps in DejaVu
Sans Mono (any installed monospace font with box-drawing glyphs works).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from clusterd.tui.app import ClusterApp  # noqa: E402
from clusterd.tui.fake import NOW, FakeBackend  # noqa: E402

SIZE = (120, 34)
MONO = os.environ.get("SCREENSHOT_FONT", "DejaVu Sans Mono")

#: file name -> (app arguments, keys pressed once the first screen has loaded)
SHOTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "sweeps": ({}, []),
    "trials": ({"sweep": "lr-depth"}, []),
    "trials-light": ({"sweep": "lr-depth", "theme": "textual-light"}, ["f", "3"]),
    "trial-overview": ({"sweep": "lr-depth", "trial": 25}, []),
    "trial-stopped": ({"sweep": "lr-depth", "trial": 2}, []),
    "trial-plot": ({"sweep": "lr-depth", "trial": 25}, ["2"]),
    "trial-log": ({"sweep": "lr-depth", "trial": 25}, ["3"]),
    "help": ({"sweep": "lr-depth"}, ["question_mark"]),
}


async def _settle(pilot: Any) -> None:
    app, quiet, deadline = pilot.app, 0, time.monotonic() + 15
    while quiet < 3 and time.monotonic() < deadline:
        await pilot.pause(0.05)
        busy = any(w.group != "feed" and not w.is_finished for w in app.workers)
        ok = not busy and getattr(app.screen_stack[-1], "loaded", True)
        quiet = quiet + 1 if ok else 0


async def shoot(name: str, args: dict[str, Any], keys: list[str]) -> Path:
    app = ClusterApp(FakeBackend(), clock=lambda: NOW, **args)
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        for key in keys:
            await pilot.press(key)
            await _settle(pilot)
        return Path(app.save_screenshot(f"{name}.svg", str(HERE)))


def to_png(svg: Path) -> Path | None:
    try:
        import cairosvg
    except ImportError:
        return None
    text = svg.read_text(encoding="utf-8")
    for family in ("font-family: Fira Code, monospace;", 'font-family: "Fira Code";'):
        text = text.replace(family, f'font-family: "{MONO}";')
    png = svg.with_suffix(".png")
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(png), output_width=1440)
    return png


def main() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()
    for name, (args, keys) in SHOTS.items():
        svg = asyncio.run(shoot(name, args, keys))
        png = to_png(svg)
        print(svg.relative_to(Path.cwd()) if svg.is_relative_to(Path.cwd()) else svg, png or "")


if __name__ == "__main__":
    main()
