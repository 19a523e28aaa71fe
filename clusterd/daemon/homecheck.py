"""Refuse a ``CLUSTERD_HOME`` that someone else could tamper with (principle 6).

The home holds the socket (whoever can replace it can impersonate the daemon to
``clusterctl``), the database and the log. The socket's own 0600 mode and the peer
uid check protect nothing if another user can rename files in the directory, so
``clusterd start`` refuses a home that is group- or world-writable or that belongs
to another user, and says how to fix it. Stdlib only: runs on the CLI's cold path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from clusterd.errors import ClusterdError

__all__ = ["UnsafeHome", "check_home"]


class UnsafeHome(ClusterdError):
    code = "unsafe_home"


def _user(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_home(path: Path) -> None:
    """Raise UnsafeHome if ``path`` (when it exists) is not private to this user.

    Read and search bits for others are tolerated here (``paths.ensure_home`` tightens
    them to 0700); write bits and a foreign owner are not: fixing those is the
    user's decision, since the directory may be shared on purpose.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return  # created 0700 by paths.ensure_home
    except OSError as exc:
        raise UnsafeHome(f"cannot check CLUSTERD_HOME {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeHome(f"CLUSTERD_HOME {path} is not a directory; point CLUSTERD_HOME elsewhere.")
    me = os.geteuid()
    if info.st_uid != me:
        raise UnsafeHome(
            f"CLUSTERD_HOME {path} belongs to {_user(info.st_uid)}, not to you ({_user(me)}): "
            "its owner could replace the daemon's socket or database. Set CLUSTERD_HOME to a "
            "directory of your own."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        who = " and ".join(
            w for bit, w in ((0o020, "its group"), (0o002, "everyone")) if mode & bit
        )
        raise UnsafeHome(
            f"CLUSTERD_HOME {path} is writable by {who} (mode {mode:04o}): another user could "
            f"replace the daemon's socket or database. Run `chmod 700 {path}`, or set "
            "CLUSTERD_HOME to a private directory."
        )
