"""GPU use of one attempt: per GPU a line of figures, then utilisation and memory sparklines.

The figures are what ``clusterctl show`` gives for the GPU (mean and peak utilisation,
peak memory, energy), taken from the ``show`` reply the trial screen holds
(``gpu_list``: the whole attempt, raw samples and per-minute rollups together). Without
them (an older daemon) they are worked out from the samples on screen, and say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

__all__ = ["GpuPanel", "figures_from_samples", "figures_text"]


class GpuPanel(Vertical):
    """Rebuilt from each ``gpu_samples`` reply (a handful of widgets at most)."""

    DEFAULT_CSS = """
    GpuPanel { height: auto; max-height: 13; }
    GpuPanel Horizontal { height: 1; }
    GpuPanel Label { width: 26; }
    GpuPanel Sparkline { width: 1fr; height: 1; }
    GpuPanel .none { color: $text-muted; }
    GpuPanel .figures { height: 1; color: $text-muted; }
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
        stored = self._stored_figures(reply.get("attempt"))
        rows: list[Any] = []
        for g in gpus:
            util = [u for u in g["util"] if u is not None]
            mem = [m for m in g["mem_used"] if m is not None]
            total = g.get("mem_total")
            figures = stored.get(g["gpu"])
            note = ""
            if figures is None:
                figures = figures_from_samples(g)
                note = f" (last {len(g['t']) or len(g['util'])} samples)"
            rows.append(Static(figures_text(g["gpu"], figures) + note, classes="figures"))
            util_label = f"gpu{g['gpu']} util {util[-1]:3.0f}%" if util else f"gpu{g['gpu']} util -"
            mem_label = f"     mem {_gib(mem[-1] if mem else None)}/{_gib(total)} GiB"
            rows.append(Horizontal(Label(util_label), Sparkline(util or [0])))
            rows.append(Horizontal(Label(mem_label), Sparkline(mem or [0])))
        await self.mount_all(rows)

    def _stored_figures(self, attempt: Any) -> dict[int, dict[str, Any]]:
        """The daemon's figures per GPU of ``attempt``, from the screen's ``show`` reply."""
        show = getattr(self.screen, "show", None)
        entries = show.get("gpu_list") if isinstance(show, dict) else None
        return {
            int(e["gpu"]): e
            for e in entries or ()
            if isinstance(e, dict) and e.get("attempt") == attempt and "gpu" in e
        }


def figures_from_samples(g: dict[str, Any]) -> dict[str, Any]:
    """Mean and peak utilisation, peak memory and energy of the samples of one GPU
    (energy: each sample's power held until the next one; the last counts for none)."""
    util = [u for u in g.get("util") or () if u is not None]
    mem = [m for m in g.get("mem_used") or () if m is not None]
    return {
        "util_mean": sum(util) / len(util) if util else None,
        "util_peak": max(util) if util else None,
        "mem_peak_mib": max(mem) if mem else None,
        "mem_total_mib": g.get("mem_total"),
        "energy_wh": _energy_wh(g.get("t") or [], g.get("power_w") or []),
    }


def _energy_wh(t: Sequence[float], power: Sequence[float | None]) -> float | None:
    joules, seen = 0.0, False
    for i in range(min(len(t), len(power)) - 1):
        p = power[i]
        if p is not None:
            joules += p * max(0.0, t[i + 1] - t[i])
            seen = True
    return joules / 3600 if seen else None


def figures_text(gpu: int, f: dict[str, Any]) -> str:
    """``gpu0  mean 63% · peak 97% · mem peak 9.0/10.0 GiB · 12.3 Wh``."""
    parts = [
        f"mean {_pct(f.get('util_mean'))}",
        f"peak {_pct(f.get('util_peak'))}",
        f"mem peak {_gib(f.get('mem_peak_mib'))}/{_gib(f.get('mem_total_mib'))} GiB",
    ]
    energy = f.get("energy_wh")
    parts.append("energy -" if energy is None else f"{energy:.3g} Wh")
    return f"gpu{gpu}  " + " · ".join(parts)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _gib(mib: float | None) -> str:
    return "-" if mib is None else f"{mib / 1024:.1f}"
