"""The Python API, and a blocking client for the daemon's socket (stdlib only at import).

From a notebook or a script::

    from clusterd import client
    name = client.submit("sweep.toml")        # or a dict: a sweep.toml as a dict
    client.wait(name)                         # progress bar with tqdm, in a notebook too
    df = client.results(name)                 # one row per trial (pandas)
    curves = client.metrics(name)             # long: trial, attempt, step, name, value
    client.sweeps()                           # what `clusterctl sweeps --json` lists

``Client`` is one socket connection (``clusterctl`` and the TUI use it). pandas is
imported only by the functions that return a DataFrame, tqdm only by ``wait``.

With the daemon down (nothing listens on the socket), ``sweeps``, ``results`` and
``metrics`` read the database itself, read-only (``clusterd.daemon.readonly``: SQLite
opened ``mode=ro``, no migration, nothing written) and say so with a
``ReadOnlyWarning``; ``submit`` and ``wait`` need the daemon. docs/python-api.md.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterd import paths
from clusterd.errors import DaemonUnreachable, InvalidRequest, error_from_wire
from clusterd.protocol import encode

if TYPE_CHECKING:
    import pandas

__all__ = ["Client", "metrics", "results", "submit", "sweeps", "wait"]

SocketPath = str | Path | None


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


# -- the Python API ------------------------------------------------------------------


def submit(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
    *,
    extend: bool = False,
    socket_path: SocketPath = None,
) -> str:
    """Submit a sweep file (or a sweep.toml as a dict) and return the sweep's name.

    A dict is written out as TOML text and sent as if it were a file ``<name>.toml`` in
    the current directory: relative paths in it (``output_dir``, default
    ``runs/<name>``) are taken from there. ``extend`` adds only the new trials to an
    existing sweep, as ``clusterctl submit --extend``. Trials run with this Python
    (``sys.executable``) and this process's environment, as from the shell.
    """
    args: dict[str, Any] = {
        "extend": extend,
        "python": sys.executable,
        "environ": dict(os.environ),
    }
    if isinstance(path_or_dict, Mapping):
        name = path_or_dict.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest('a sweep given as a dict needs a "name" (a string)')
        path = os.path.join(os.getcwd(), f"{name}.toml")
        args.update(path=path, display=f"<dict {name!r}>", text=toml_text(path_or_dict))
    else:
        path = os.path.abspath(os.fspath(path_or_dict))
        args.update(path=path, display=os.fspath(path_or_dict))
    with Client(socket_path) as client:
        result = client.call("submit", **args)
    return str(result["name"])


#: trial states that may still change
_UNFINISHED = ("pending", "queued", "running")


def _progress(sweep: Mapping[str, Any]) -> tuple[int, int]:
    return int(sweep.get("finished") or 0), int(sweep.get("planned") or sweep.get("trials") or 0)


def _ended(sweep: Mapping[str, Any]) -> bool:
    counts = sweep.get("counts") or {}
    return sweep.get("state") != "active" and not any(counts.get(s) for s in _UNFINISHED)


def wait(
    sweep: str,
    timeout: float | None = None,
    *,
    progress: bool | None = None,
    socket_path: SocketPath = None,
) -> dict[str, Any]:
    """Return when every trial of ``sweep`` has ended (its ``sweeps()`` entry).

    ``progress``: a tqdm bar of finished trials (``tqdm.auto``: a widget in Jupyter);
    by default (None) when tqdm is installed and this runs in a notebook or on a
    terminal; True: whenever tqdm is installed; False: never.
    ``timeout`` (seconds) raises TimeoutError saying how far the sweep got.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = None if progress is False else _bar(sweep, force=bool(progress))
    pause = 0.2
    try:
        with Client(socket_path) as client:
            while True:
                entry = _sweep_entry(client.call("sweeps"), sweep)
                done, total = _progress(entry)
                if bar is not None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()
                if _ended(entry):
                    return entry
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"sweep {sweep!r} has not ended after {timeout:g} s "
                        f"({done} of {total} trial(s) finished)"
                    )
                left = None if deadline is None else deadline - time.monotonic()
                time.sleep(pause if left is None else max(0.0, min(pause, left)))
                pause = min(pause * 1.5, 2.0)  # fast for short sweeps, cheap for long ones
    finally:
        if bar is not None:
            bar.close()


def _bar(sweep: str, force: bool) -> Any:
    """A tqdm bar when tqdm is installed and someone can see it (a notebook or a
    terminal; ``force``: anyway)."""
    if not (force or "ipykernel" in sys.modules or sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=0, desc=sweep, unit="trial")


def _sweep_entry(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for entry in entries:
        if entry.get("name") == name:
            return entry
    raise error_from_wire({"code": "not_found", "message": f"no sweep named {name!r}"})


def sweeps(*, group: str | None = None, socket_path: SocketPath = None) -> list[dict[str, Any]]:
    """Every sweep (not those in the trash), as ``clusterctl sweeps --json`` lists them:
    name, state, counts per state, best value, output dir, ...; ``group``: only the
    sweeps whose sweep.toml says ``group = ...``. ``pandas.DataFrame(sweeps())`` makes a
    table of it."""
    result: list[dict[str, Any]] = _read(
        socket_path, "sweeps", **({"group": group} if group else {})
    )
    return result


def results(sweep: str, socket_path: SocketPath = None) -> pandas.DataFrame:
    """The sweep's trials as a DataFrame: one row per trial, the columns of ``clusterctl
    export``: ``trial``, ``state``, ``attempts`` (and failures, resumes), ``last_step``,
    ``<metric>_last`` and ``<metric>_best`` for every reported metric (best by its own
    direction), ``best_step``, ``stopped_at_step``, ``runtime_s``, ``git``, the GPU
    figures where the sweep has GPU samples (``gpu_util_mean``, ``gpu_mem_peak_mib``,
    ``gpu_energy_wh``), then the parameters with dotted names (``optimizer.lr``), the
    swept ones first.

    The metrics' directions are in ``df.attrs["metrics"]`` (``{"val_acc": "max", ...}``),
    the swept parameters in ``df.attrs["swept"]``. Needs pandas (``pip install
    'clusterd[pandas]'``); ``Client().call("export", sweep=...)`` gives the same rows
    without it.
    """
    pandas = _pandas("results")
    data = _read(socket_path, "export", sweep=sweep)
    rows, columns = _flatten_rows(data["rows"], data["columns"], set(data.get("params", [])))
    frame = pandas.DataFrame(rows, columns=columns)
    frame.attrs["metrics"] = data.get("metrics", {})
    frame.attrs["swept"] = data.get("swept", [])
    return frame


def metrics(
    sweep: str, name: str | None = None, socket_path: SocketPath = None
) -> pandas.DataFrame:
    """Every reported metric value of the sweep, long form: columns ``trial``
    (``sweep/index``), ``index``, ``attempt``, ``step``, ``name``, ``value``; ``name``
    keeps one metric. Pivot it for curves: ``df.pivot_table(index="step",
    columns="trial", values="value")``. Needs pandas."""
    pandas = _pandas("metrics")
    data = _read(socket_path, "metric_table", sweep=sweep, **({"name": name} if name else {}))
    return pandas.DataFrame(data["rows"], columns=data["columns"])


def _pandas(what: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            f"clusterd.client.{what}() needs pandas: pip install 'clusterd[pandas]' "
            "(or pip install pandas); without it, "
            "Client().call('export', sweep=...)['rows'] gives the same rows as dicts"
        ) from None
    return pandas


def _read(socket_path: SocketPath, op: str, **args: Any) -> Any:
    """Ask the daemon; if nothing listens on its socket, read the database read-only."""
    client = Client(socket_path)
    try:
        client.connect()
    except DaemonUnreachable:
        return _offline_call(socket_path)(op, **args)
    with client:
        return client.call(op, **args)


def _offline_call(socket_path: SocketPath) -> Callable[..., Any]:
    from clusterd.daemon.readonly import Reader

    if socket_path is None:
        home, url = paths.home(), paths.db_url()
    else:  # the database beside that socket (tests, several homes)
        home = Path(socket_path).parent
        url = f"sqlite:///{home / 'clusterd.db'}"
    reader = Reader(url, home)

    def call(op: str, **args: Any) -> Any:
        with reader:
            return reader.call(op, **args)

    return call


def _flatten_rows(
    rows: list[dict[str, Any]], columns: list[str], params: set[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """A parameter whose value is a table becomes one column per leaf, named with dots
    (``model`` = ``{"width": 64}`` -> ``model.width``); other columns are kept as is."""
    nested = [c for c in columns if c in params and any(isinstance(r.get(c), dict) for r in rows)]
    if not nested:
        return rows, columns
    out_cols: list[str] = []
    leaves: dict[str, list[str]] = {}
    flat_rows = []
    for r in rows:
        flat = dict(r)
        for c in nested:
            value = flat.pop(c, None)
            for leaf, v in _leaves(c, value):
                flat[leaf] = v
                names = leaves.setdefault(c, [])
                if leaf not in names:
                    names.append(leaf)
        flat_rows.append(flat)
    for c in columns:
        out_cols.extend(leaves.get(c, [c]) if c in nested else [c])
    return flat_rows, out_cols


def _leaves(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(f"{prefix}.{k}", v)
    else:
        yield prefix, value


# -- a sweep.toml from a dict --------------------------------------------------------


def toml_text(spec: Mapping[str, Any]) -> str:
    """TOML text for a sweep given as a dict: one ``key = value`` line per top-level key,
    tables written inline (``params = {lr = [0.1, 0.01]}``), strings as TOML basic
    strings. Raises InvalidRequest naming a value TOML cannot hold (None, an object)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v, str(k))}\n" for k, v in spec.items())


def _toml_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidRequest(f"sweep dict keys must be non-empty strings, got {key!r}")
    bare = key.replace("_", "").replace("-", "")
    return key if bare.isascii() and bare.isalnum() else _toml_string(key)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v, f'{where}.{k}')}" for k, v in value.items()
        )
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise InvalidRequest(f"sweep dict: {where} = {value!r} cannot be written as TOML")
