"""``clusterctl report SWEEP -o report.html``: one self-contained HTML file per sweep.

The figures need matplotlib (the ``report`` extra); that is checked first, then the
output path, then the daemon is asked (``clusterd.report.data.gather``) and the file
written through a temporary name: an error at any point leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys
from importlib.util import find_spec
from pathlib import Path

from clusterd.client import Client
from clusterd.errors import ClusterdError

__all__ = ["cmd_report"]

EXTRA = "pip install 'clusterd[report]' (or pip install matplotlib)"


def cmd_report(args: argparse.Namespace) -> int:
    missing = [m for m in ("matplotlib", "numpy") if find_spec(m) is None]
    if missing:
        raise ClusterdError(f"clusterctl report needs {' and '.join(missing)}: {EXTRA}")
    from clusterd.report import data, html

    if not 1 <= args.top <= data.MAX_TOP_K:
        raise ClusterdError(f"--top must be between 1 and {data.MAX_TOP_K}, got {args.top}")

    path = Path(args.output)
    html.check_writable(path)
    with Client() as client:  # one connection for the few requests a report makes
        gathered = data.gather(client.call, args.sweep, top_k=args.top)
    size = html.write(path, html.render(gathered))
    print(
        f"wrote the report of {args.sweep} ({len(gathered.rows)} trial(s), "
        f"{size / 1024:,.0f} KiB) to {path}",
        file=sys.stderr,
    )
    return 0
