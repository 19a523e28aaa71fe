"""A blocking client for the daemon's socket (stdlib only; pandas only for ``results``).

Used by ``clusterctl``, the TUI and notebooks::

    from clusterd.client import Client, results
    with Client() as c:
        print(c.call("sweeps"))
    df = results("lr-depth")          # pandas DataFrame of the sweep's trials
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterd import paths
from clusterd.errors import DaemonUnreachable, InvalidRequest, error_from_wire
from clusterd.protocol import encode

if TYPE_CHECKING:
    import pandas

__all__ = ["Client", "results"]


class Client:
    """One connection to the daemon; requests are answered in order."""

    def __init__(self, socket_path: str | Path | None = None, timeout: float | None = 60.0):
        self.path = Path(socket_path) if socket_path else paths.socket_path()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._next_id = 1
        self.hello: dict[str, Any] = {}

    def connect(self) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonUnreachable(
                f"cannot reach the clusterd daemon at {self.path} ({exc.strerror}). "
                "Is it running? Start it with `clusterd start`."
            ) from None
        except OSError as exc:
            sock.close()
            raise DaemonUnreachable(
                f"cannot reach the clusterd daemon at {self.path}: {exc}"
            ) from None
        self._sock = sock
        self._file = sock.makefile("rb")
        self.hello = self._read()
        if self.hello.get("ok") is False and isinstance(self.hello.get("error"), dict):
            self.close()
            raise error_from_wire(self.hello["error"])  # e.g. forbidden: not the owner's uid
        if self.hello.get("hello") != "clusterd":
            raise DaemonUnreachable(f"{self.path} is not a clusterd socket")
        return self

    def __enter__(self) -> Client:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._file.close()
            self._sock.close()
            self._sock = None

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline()  # replies are not capped: an export can be large
        except TimeoutError:
            raise DaemonUnreachable(
                f"the daemon at {self.path} did not answer within {self.timeout:g} s; it may "
                "be busy or its database locked (see `clusterd status` and its log)"
            ) from None
        except OSError as exc:  # ECONNRESET and friends: the daemon died mid-request
            raise DaemonUnreachable(
                f"lost the connection to the daemon at {self.path}: {exc.strerror or exc}"
            ) from None
        if not line:
            raise DaemonUnreachable("the daemon closed the connection")
        try:
            obj = json.loads(line)
        except ValueError:
            raise InvalidRequest("the daemon sent a line that is not JSON") from None
        if not isinstance(obj, dict):
            raise InvalidRequest("the daemon sent a line that is not a JSON object")
        return obj

    def send(self, op: str, **args: Any) -> int:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        req_id = self._next_id
        self._next_id += 1
        try:
            self._sock.sendall(encode({"id": req_id, "op": op, "args": args}))
        except OSError as exc:
            raise DaemonUnreachable(f"lost the connection to the daemon: {exc}") from None
        return req_id

    def call(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; raise the daemon's error if any."""
        req_id = self.send(op, **args)
        reply = self._read()
        if reply.get("id") != req_id:
            raise InvalidRequest(f"reply id {reply.get('id')!r} does not match request {req_id}")
        if not reply.get("ok"):
            raise error_from_wire(reply.get("error") or {})
        return reply.get("result")

    def subscribe(self, **args: Any) -> Iterator[dict[str, Any]]:
        """Subscribe now; the returned iterator yields change events until the connection
        closes (use ``timeout=None`` to wait for events indefinitely)."""
        self.call("subscribe", **args)
        return self._events()

    def _events(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                msg = self._read()
            except DaemonUnreachable:
                return
            event = msg.get("event")
            if isinstance(event, dict):
                yield event


def results(sweep: str, socket_path: str | Path | None = None) -> pandas.DataFrame:
    """The sweep's trials as a DataFrame: one row per trial, the columns of ``clusterctl
    export`` (``<metric>_last`` and ``<metric>_best`` for every reported metric, best by
    its own direction; then the parameters, swept ones first).

    The metrics' directions are in ``df.attrs["metrics"]`` (``{"val_acc": "max", ...}``),
    the swept parameters in ``df.attrs["swept"]``. Needs pandas (``pip install
    'clusterd[pandas]'``); ``Client().call("export", sweep=...)`` gives the same rows
    without it.
    """
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "clusterd.client.results() needs pandas: pip install 'clusterd[pandas]' "
            "(or pip install pandas); without it, "
            "Client().call('export', sweep=...)['rows'] gives the same rows as dicts"
        ) from None
    with Client(socket_path) as client:
        data = client.call("export", sweep=sweep)
    frame = pandas.DataFrame(data["rows"], columns=data["columns"])
    frame.attrs["metrics"] = data.get("metrics", {})
    frame.attrs["swept"] = data.get("swept", [])
    return frame
