"""The exception tree shared by the daemon, the CLI and the drivers.

Every error that can reach a user carries a stable ``code`` (sent on the wire)
and a message that says what failed, where, and what to do next::

    ClusterdError                 code
    ├── SpecError                 invalid_spec     a sweep file is wrong (file, key, expected)
    ├── NotFound                  not_found        no such sweep / trial / attempt
    ├── Conflict                  conflict         the request clashes with existing state
    ├── InvalidRequest            bad_request      a malformed socket message
    ├── DriverError               driver_error     a scheduler command failed
    │   └── UnsupportedResource   unsupported      the driver cannot honour a resource
    ├── StorageError              storage_error    the database cannot be used
    │   ├── NetworkFilesystem     network_fs       SQLite on NFS/Lustre/... refused
    │   └── LeaseHeld             lease_held       another daemon owns this database
    └── DaemonUnreachable         unreachable      the CLI cannot reach the daemon

Only ``clusterd.cli`` turns these into exit statuses; nothing on the wire ever
carries a traceback (the daemon logs those).
"""

from __future__ import annotations

import errno

__all__ = [
    "RESOURCE_ERRNOS",
    "ClusterdError",
    "Conflict",
    "DaemonUnreachable",
    "DriverError",
    "InvalidRequest",
    "LeaseHeld",
    "NetworkFilesystem",
    "NotFound",
    "SpecError",
    "StorageError",
    "UnsupportedResource",
    "error_from_wire",
    "short_of_resources",
]


class ClusterdError(Exception):
    """Base of every error clusterd reports to a user."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class SpecError(ClusterdError):
    """A sweep file failed validation; the message names file, key and expectation."""

    code = "invalid_spec"

    def __init__(self, source: str, key: str, expected: str) -> None:
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + expected)
        self.source = source
        self.key = key
        self.expected = expected


class NotFound(ClusterdError):
    code = "not_found"


class Conflict(ClusterdError):
    code = "conflict"


class InvalidRequest(ClusterdError):
    code = "bad_request"


class DriverError(ClusterdError):
    code = "driver_error"


class UnsupportedResource(DriverError):
    code = "unsupported"


class StorageError(ClusterdError):
    code = "storage_error"


class NetworkFilesystem(StorageError):
    code = "network_fs"


class LeaseHeld(StorageError):
    code = "lease_held"


class DaemonUnreachable(ClusterdError):
    code = "unreachable"


_BY_CODE: dict[str, type[ClusterdError]] = {
    cls.code: cls
    for cls in (
        ClusterdError,
        NotFound,
        Conflict,
        InvalidRequest,
        DriverError,
        UnsupportedResource,
        StorageError,
        NetworkFilesystem,
        LeaseHeld,
        DaemonUnreachable,
    )
}


def error_from_wire(error: dict[str, str]) -> ClusterdError:
    """Rebuild an error received from the daemon (SpecError comes back as its message)."""
    cls = _BY_CODE.get(error.get("code", ""), ClusterdError)
    exc = cls(error.get("message", "unknown error"))
    exc.code = error.get("code", "error")
    return exc


#: errors that say "not now" (out of descriptors or memory), not "no such thing": a reader
#: that gets one must not conclude a file is absent or a process is gone
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN})


def short_of_resources(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS
