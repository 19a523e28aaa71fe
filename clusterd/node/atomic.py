"""Atomic file replacement: readers see the old file or the new one, never half of one.

One way for every file of the contract: a temp file ``.<name>.<pid>.<thread>.tmp`` in the
same directory, created ``O_CREAT|O_EXCL|O_NOFOLLOW`` (a leftover of ours is unlinked
first; nothing is ever written through a planted symlink), then ``rename`` over the
target (which replaces a symlink there, never follows it). On failure the temp file is
removed.

fsync rules (``fsync=True`` syncs the file before the rename and the directory after):

- needed where a reader trusts the file after a crash of the host:
  ``status.json``, ``runner.json`` and ``params.json`` (the daemon and the next attempt
  take them as the truth; a renamed but unsynced file can come back empty after a
  power loss) and ``checkpoints/LATEST.json`` (the next attempt resumes from what it names);
- not needed where the file is rewritten or moot after a crash: ``launch.json`` (the
  attempt is resubmitted and the file rewritten), ``job.json`` (it guards against a
  *daemon* crash; after a host crash a local job is dead anyway and a batch job is found
  again by its name, ``cd.<sweep>.<hex>``, in the scheduler's records -- and one fsync per
  attempt would cost a 1,000-task array seconds on a network filesystem), the ``STOP``
  marker (best effort: the attempt is terminated after the grace period anyway), a user's
  export (made again on request), test drivers' state. An fsync costs a round trip on
  network filesystems.

Stdlib only and light at import (``os`` only): ``clusterd.trial`` uses it.
"""

from __future__ import annotations

import os
from _thread import get_ident

from clusterd.node.files import create_new, unlink_quietly

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["json_bytes", "replace", "replace_at", "replace_json"]


def replace(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644, fsync: bool) -> None:
    """Write ``name`` in the directory ``dir_fd`` by a fresh temp file and a rename."""
    _write_and_rename(dir_fd, name, _temp_name(name), data, mode, fsync)
    if fsync:
        _sync_dir(dir_fd)


def replace_at(path: str, data: bytes, *, mode: int = 0o644, fsync: bool) -> None:
    """:func:`replace` by path; directories above the file may be symlinks (the user's).
    Holds one descriptor at a time (two with ``fsync``): it must work with the last one
    free, as the daemon's writes do when a sweep has used up the others."""
    parent, base = os.path.split(path)
    _write_and_rename(None, path, os.path.join(parent, _temp_name(base)), data, mode, fsync)
    if fsync:
        dir_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _sync_dir(dir_fd)
        finally:
            os.close(dir_fd)


def _temp_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{get_ident()}.tmp"


def _write_and_rename(
    dir_fd: int | None, name: str, tmp: str, data: bytes, mode: int, fsync: bool
) -> None:
    """Create ``tmp`` exclusively (never through a symlink), write and maybe sync it, and
    rename it over ``name``; ``tmp`` is gone afterwards, whatever happened."""
    unlink_quietly(dir_fd, tmp)  # our own leftover of a crash
    try:
        fd = create_new(dir_fd, tmp, mode, data)
        try:
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        unlink_quietly(dir_fd, tmp)
        raise


def _sync_dir(dir_fd: int) -> None:
    try:  # noqa: SIM105 -- contextlib costs clusterd.trial ~1 ms to import
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory


def json_bytes(obj: Any) -> bytes:
    """The contract's JSON files: indented by one, a final newline (readable by a user)."""
    import json  # on first use: it costs ~5 ms, and clusterd.trial may never need it

    return (json.dumps(obj, indent=1) + "\n").encode()


def replace_json(dir_fd: int, name: str, obj: Any, *, mode: int = 0o644, fsync: bool) -> None:
    """:func:`replace` with ``obj`` as JSON."""
    replace(dir_fd, name, json_bytes(obj), mode=mode, fsync=fsync)
