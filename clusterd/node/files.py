"""Files in a sweep's output dir, created and read without trusting anyone else.

An output dir may sit under a directory other users can write (a shared ``/scratch``,
``/tmp``). There, a planted symlink would make a plain ``open`` write through to one
of our files, and a file renamed in by someone else would be read as ours. So the
daemon and the runner create what they write with ``O_CREAT|O_EXCL|O_NOFOLLOW``
(relative to a directory fd opened with ``O_NOFOLLOW``), and read launch data only
from regular files that are ours and that nobody else can write (DESIGN.md
principle 7, docs/runtime.md "Files of one trial").

Stdlib only, and nothing beyond ``os`` at import: ``clusterd.trial`` and the runner
import it inside every job.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = [
    "UnsafeFile",
    "create_new",
    "open_dir",
    "open_own_dir",
    "open_subdir",
    "read_own",
    "unlink_quietly",
    "write_all",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFile(OSError):
    """A path is a symlink, not ours, writable by others, or already there."""


def open_dir(path: str) -> int:
    """A directory fd for ``path`` (the user's own path: symlinks above it are allowed).

    The directory itself must be ours: someone else's directory lets them swap
    entries under us."""
    return _ours(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)


def open_own_dir(path: str) -> int:
    """A directory fd of ``path``, whose last component must not be a symlink (it is
    ours: the runner's attempt and trial dirs, made by the daemon)."""
    fd = os.open(path, _DIR_FLAGS)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise UnsafeFile(f"{path} does not belong to us (uid {os.geteuid()})")
    return fd


def _ours(fd: int, where: str) -> int:
    """``fd`` if its directory is ours; closed (and the reason raised) otherwise."""
    try:
        _check_ours(os.fstat(fd), where, dir_ok=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_subdir(parent_fd: int, name: str, where: str, *, create: bool, exclusive: bool) -> int:
    """``name`` in ``parent_fd`` as a directory fd, never through a symlink.

    ``create`` makes it when missing (mode 0777 less the umask); ``exclusive`` requires
    that this call made it (``FileExistsError`` otherwise). It must be ours."""
    if create:
        try:
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        except FileExistsError:
            if exclusive:
                raise
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink or a file in the way
            raise UnsafeFile(f"{where} is not a directory (a symlink?)") from None
        raise
    return _ours(fd, where)


def create_new(dir_fd: int | None, name: str, mode: int, data: bytes = b"") -> int:
    """Create ``name`` (it must not exist, symlink or not), write ``data``; the open fd."""
    fd = os.open(name, _NEW_FLAGS, mode, dir_fd=dir_fd)
    try:
        if data:
            write_all(fd, data)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_own(path: str, limit: int = 16 << 20, dir_fd: int | None = None) -> bytes:
    """Read a regular file that is ours and that group and others cannot write.

    ``UnsafeFile`` names what is wrong (a symlink, another owner, loose mode) instead
    of reading it: such a file may have been renamed in by another user."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symlink; refusing to read it") from None
        raise
    try:
        _check_ours(os.fstat(fd), path, dir_ok=False)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnsafeFile(f"{path} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_ours(st: os.stat_result, path: str, *, dir_ok: bool) -> None:
    if dir_ok:
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeFile(f"{path} is not a directory")
        if st.st_uid != os.geteuid():
            raise UnsafeFile(f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()})")
        return
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise UnsafeFile(f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()})")
    if st.st_mode & 0o022:
        raise UnsafeFile(f"{path} is writable by group or others (mode {st.st_mode & 0o777:o})")


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def unlink_quietly(dir_fd: int | None, name: str) -> None:
    """Remove ``name`` if it is there; unlinking never follows a symlink."""
    try:  # noqa: SIM105 -- contextlib costs clusterd.trial ~1 ms to import
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
