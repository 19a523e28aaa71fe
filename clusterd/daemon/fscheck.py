"""Refuse to put SQLite on a network filesystem.

SQLite relies on POSIX advisory locks and, in WAL mode, on shared memory next to
the database. Both are unreliable on NFS, Lustre, GPFS, CIFS and friends: two
login nodes can each believe they hold the write lock and corrupt the file. The
daemon's home defaults to ``~/.local/share/clusterd``, and on clusters ``$HOME``
is almost always such a filesystem, so this check matters on the first start.

Two independent opinions are consulted:

1. ``/proc/self/mountinfo``: the mount with the longest mount point that is a
   prefix of the (resolved) path gives the filesystem type by name, including
   FUSE subtypes such as ``fuse.sshfs``.
2. ``statfs(2)`` via ctypes (Linux only, optional): the superblock magic number,
   which still works where ``/proc`` is hidden or lies (some containers).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clusterd.errors import NetworkFilesystem

__all__ = [
    "ALLOW_ENV",
    "Mount",
    "filesystem_type",
    "is_network_fs",
    "network_fs_message",
    "network_fs_type",
    "parse_mountinfo",
    "refuse_network_fs",
    "statfs_type",
]

ALLOW_ENV = "CLUSTERD_ALLOW_NETWORK_FS"
MOUNTINFO = Path("/proc/self/mountinfo")

# Filesystem type names (as in mountinfo / `findmnt -o FSTYPE`) on which file
# locking across hosts is unreliable or absent.
_NETWORK_TYPES = frozenset(
    {
        "9p",  # WSL2 drive mounts, QEMU shares
        "afs",
        "beegfs",
        "ceph",
        "cifs",
        "coda",
        "davfs",
        "gfs2",
        "glusterfs",
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "ocfs2",
        "orangefs",
        "panfs",
        "pvfs2",
        "quobyte",
        "smb",
        "smb3",
        "smbfs",
        "sshfs",
        "wekafs",
    }
)

# FUSE subtypes (mountinfo shows them as "fuse.<subtype>") that are network clients.
_NETWORK_FUSE_SUBTYPES = frozenset(
    {
        "beegfs",
        "ceph-fuse",
        "gcsfuse",
        "glusterfs",
        "juicefs",
        "lizardfs",
        "mfs",
        "quobyte",
        "rclone",
        "s3fs",
        "sshfs",
        "wekafs",
    }
)

# statfs(2) f_type magic numbers of network filesystems (linux/magic.h and vendors').
# FUSE (0x65735546) is deliberately absent: it is local as often as not.
_NETWORK_MAGICS: dict[int, str] = {
    0x6969: "nfs",
    0x517B: "smbfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x00C36400: "ceph",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x73757245: "coda",
    0x564C: "ncpfs",
    0x01021997: "9p",
    0x19830326: "beegfs",
    0xAAD7AAEA: "panfs",
    0x01161970: "gfs2",
    0x7461636F: "ocfs2",
}

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo`` (see proc(5)); only the fields we use."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    fstype: str
    source: str
    options: str


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` is a space, ``\\134`` a backslash)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _parse_line(line: str) -> Mount | None:
    """Parse one mountinfo line; None for a line that does not have the documented shape."""
    fields = line.split()
    try:
        sep = fields.index("-", 6)  # optional fields sit between the 6th field and "-"
        return Mount(
            mount_id=int(fields[0]),
            parent_id=int(fields[1]),
            root=_unescape(fields[3]),
            mount_point=_unescape(fields[4]),
            fstype=fields[sep + 1],
            source=_unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
            options=fields[5],
        )
    except (ValueError, IndexError):
        return None


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of ``/proc/self/mountinfo``, in file order, skipping malformed lines."""
    return [m for m in map(_parse_line, text.splitlines()) if m is not None]


def _existing_ancestor(path: Path) -> Path:
    """The path itself or its nearest existing parent, symlinks resolved.

    The database file (and even its directory) may not exist yet on a first start;
    it will be created on the filesystem of the nearest directory that does.
    """
    path = Path(os.path.abspath(path))
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.resolve()
    return Path("/")


def _is_under(path: str, mount_point: str) -> bool:
    return (
        mount_point == "/" or path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
    )


def _read_mountinfo() -> str | None:
    try:
        return MOUNTINFO.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def filesystem_type(path: str | os.PathLike[str], mountinfo_text: str | None = None) -> str:
    """The filesystem type holding ``path`` according to mountinfo, or ``"unknown"``.

    Takes the mount whose mount point is the longest prefix of the path, with the
    symlinks of its existing part resolved (a file yet to be created lands on its
    nearest existing parent's filesystem, and no mount point can lie below that);
    among equal mount points the last one listed wins, since it hides the others.
    """
    text = _read_mountinfo() if mountinfo_text is None else mountinfo_text
    if text is None:
        return "unknown"
    target = str(Path(os.path.abspath(path)).resolve(strict=False))
    best: Mount | None = None
    for mount in parse_mountinfo(text):
        if _is_under(target, mount.mount_point) and (
            best is None or len(mount.mount_point) >= len(best.mount_point)
        ):
            best = mount
    return best.fstype if best else "unknown"


def is_network_fs(fstype: str) -> bool:
    """Whether a filesystem type name denotes a network/cluster filesystem."""
    name = fstype.lower()
    if name in _NETWORK_TYPES or name.startswith(("nfs", "smb", "cifs")):
        return True
    kind, _, subtype = name.partition(".")
    return kind in ("fuse", "fuseblk") and subtype in _NETWORK_FUSE_SUBTYPES


class _StatfsBuffer(ctypes.Structure):
    # struct statfs on 64-bit Linux starts with `__fsword_t f_type` (a long); the
    # rest is padding large enough for every architecture's layout.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def statfs_type(path: str | os.PathLike[str]) -> str | None:
    """Second opinion from ``statfs(2)``: a network filesystem's name, else None.

    Returns None on non-Linux systems, when libc cannot be loaded, or when the magic
    number is not one of a known network filesystem.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        statfs = ctypes.CDLL(None, use_errno=True).statfs  # libc is already loaded: no lookup
    except (OSError, AttributeError):
        return None
    buf = _StatfsBuffer()
    target = os.fsencode(str(_existing_ancestor(Path(path))))
    if statfs(target, ctypes.byref(buf)) != 0:
        return None
    return _NETWORK_MAGICS.get(buf.f_type & 0xFFFFFFFF)


def network_fs_type(path: str | os.PathLike[str], mountinfo_text: str | None = None) -> str | None:
    """The network filesystem type under ``path``, or None when it looks local.

    With ``mountinfo_text`` given (tests), only that text is consulted; otherwise
    ``statfs`` is asked too, in case mountinfo is unavailable or misleading.
    """
    fstype = filesystem_type(path, mountinfo_text)
    if is_network_fs(fstype):
        return fstype
    return statfs_type(path) if mountinfo_text is None else None


def network_fs_message(db_path: str | os.PathLike[str], fstype: str) -> str:
    """The refusal message: what is wrong, why it matters, and the three ways out."""
    return (
        f"the database {db_path} is on a network filesystem ({fstype}); "
        "SQLite locking is unreliable there. Set CLUSTERD_HOME to a local disk "
        "(e.g. /tmp or /var/tmp/$USER) or CLUSTERD_DB_URL to a PostgreSQL server; "
        f"{ALLOW_ENV}=1 overrides."
    )


def _override(environ: Mapping[str, str]) -> bool:
    return environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def refuse_network_fs(
    db_path: str | os.PathLike[str],
    *,
    mountinfo_text: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Raise NetworkFilesystem if ``db_path`` is on a network filesystem and not overridden."""
    if _override(os.environ if environ is None else environ):
        return
    fstype = network_fs_type(db_path, mountinfo_text)
    if fstype is not None:
        raise NetworkFilesystem(network_fs_message(db_path, fstype))
