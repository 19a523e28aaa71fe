"""GPU utilisation and memory sparklines of one attempt, one pair of lines per GPU."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

__all__ = ["GpuPanel"]


class GpuPanel(Vertical):
    """Rebuilt from each ``gpu_samples`` reply (a handful of widgets at most)."""

    DEFAULT_CSS = """
    GpuPanel { height: auto; max-height: 9; }
    GpuPanel Horizontal { height: 1; }
    GpuPanel Label { width: 26; }
    GpuPanel Sparkline { width: 1fr; height: 1; }
    GpuPanel .none { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Static("GPU: no samples yet", classes="none")

    async def show(self, reply: dict[str, Any]) -> None:
        await self.remove_children()
        gpus = reply.get("gpus") or []
        if not gpus:
            await self.mount(
                Static(
                    "GPU: no samples (the runner samples GPUs when pynvml is installed)",
                    classes="none",
                )
            )
            return
        rows = []
        for g in gpus:
            util = [u for u in g["util"] if u is not None]
            mem = [m for m in g["mem_used"] if m is not None]
            total = g.get("mem_total")
            util_label = f"gpu{g['gpu']} util {util[-1]:3.0f}%" if util else f"gpu{g['gpu']} util -"
            mem_label = f"     mem {_gib(mem[-1] if mem else None)}/{_gib(total)} GiB"
            rows.append(Horizontal(Label(util_label), Sparkline(util or [0])))
            rows.append(Horizontal(Label(mem_label), Sparkline(mem or [0])))
        await self.mount_all(rows)


def _gib(mib: float | None) -> str:
    return "-" if mib is None else f"{mib / 1024:.1f}"
