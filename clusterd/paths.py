"""Where clusterd keeps its files (stdlib only: used by the CLI and the daemon).

``CLUSTERD_HOME`` (default ``~/.local/share/clusterd``, mode 0700) holds the
database, the socket, the log and the pid file. ``CLUSTERD_DB_URL`` overrides
the database URL.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["db_url", "ensure_home", "home", "log_path", "pid_path", "socket_path"]


def home() -> Path:
    raw = os.environ.get("CLUSTERD_HOME")
    if raw:
        return Path(raw).expanduser().absolute()
    return Path.home() / ".local" / "share" / "clusterd"


def ensure_home() -> Path:
    """Create ``CLUSTERD_HOME`` with mode 0700 (tightening it if it exists)."""
    path = home()
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def socket_path() -> Path:
    return home() / "clusterd.sock"


def pid_path() -> Path:
    return home() / "clusterd.pid"


def log_path() -> Path:
    return home() / "clusterd.log"


def db_url() -> str:
    return os.environ.get("CLUSTERD_DB_URL") or f"sqlite:///{home() / 'clusterd.db'}"
