"""Other tools' sweep configs as sweep.toml: ``clusterctl convert`` and ``submit config.json``.

Two kinds are recognised (docs/convert.md):

- ``cluster_utils``: a ``grid_search`` or ``hp_optimization`` config, JSON or TOML
  (``cluster_utils.py``);
- ``json_grid``: a nested JSON grid ``{"args": …, "machine": …, "meta": …}``
  (``json_grid.py``).

``convert_path`` returns a :class:`Conversion`: the sweep.toml text (checked by
clusterd's own parser before it is returned), the same as a dict, and every source key
either mapped or refused with a reason. ``"{…}"`` expressions are evaluated by
``safe_expr`` (an AST whitelist), never by ``eval``. Bad input raises ``SpecError``
naming the file and the source key.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from clusterd.errors import SpecError
from clusterd.report.convert.emit import Conversion

__all__ = ["Conversion", "convert_path", "looks_convertible"]

#: a config file is read whole: bigger ones are surely no config
MAX_BYTES = 16 * 1024 * 1024
#: cluster_utils.MARKERS, here so that a native sweep.toml costs no further import
_MARKERS = ("optimization_procedure_name", "hyperparam_list", "optimized_params")


def looks_convertible(path: Path) -> str | None:
    """ "cluster_utils" or "json_grid" for a file ``convert_path`` converts; None for
    anything else (a native sweep.toml, an unreadable file: ``submit`` then reports it)."""
    path = Path(path)
    if path.suffix.lower() != ".json":  # a TOML file: parsed only if it names a marker
        try:
            with path.open("rb") as fh:
                head = fh.read(MAX_BYTES + 1)
        except OSError:
            return None
        if not any(marker.encode() in head for marker in _MARKERS):
            return None
    try:
        data = _read(path)
    except SpecError:
        return None
    return _kind(data)


def convert_path(path: Path, *, sample: int | None = None) -> Conversion:
    """Convert a cluster_utils config or a nested JSON grid (SpecError if it is neither,
    or names the key it cannot convert). ``sample``: for a JSON grid, N random
    combinations (overrides its ``meta.sample``)."""
    path = Path(path)
    source = str(path)
    data = _read(path)
    kind = _kind(data)
    if kind is None:
        raise SpecError(
            source,
            "",
            "expected a cluster_utils config (optimization_procedure_name, hyperparam_list "
            'or optimized_params) or a nested JSON grid ({"args": ..., "meta": ...})',
        )
    from clusterd.report.convert.grid import GridError

    try:
        if kind == "cluster_utils":
            from clusterd.report.convert import cluster_utils

            if sample is not None:
                raise GridError("--sample", "is for JSON grids; a cluster_utils config has samples")
            conversion = cluster_utils.convert(data, source, read=_read)
        else:
            from clusterd.report.convert import json_grid

            conversion = json_grid.convert(data, source, sample=sample)
    except GridError as exc:
        raise SpecError(source, exc.key, exc.message) from None
    _validate(conversion, path)
    return conversion


def _validate(conversion: Conversion, path: Path) -> None:
    """The converted text must be a sweep file clusterd accepts (else a bug or a value
    clusterd refuses: the parser's message names the sweep.toml key)."""
    from clusterd.spec import parse_sweep

    try:
        text = conversion.toml
    except (TypeError, ValueError) as exc:
        raise SpecError(str(path), "", f"cannot be written as sweep.toml: {exc}") from None
    try:
        parse_sweep(text, f"{path} (converted)", os.path.dirname(os.path.abspath(path)))
    except SpecError as exc:
        raise SpecError(exc.source, exc.key, exc.expected) from None


def _read(path: Path) -> Any:
    source = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError(source, "", f"expected a file of at most {MAX_BYTES >> 20} MiB")
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(source, "", f"cannot read the file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError(source, "", "expected a UTF-8 text file") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if path.suffix.lower() == ".json":
                raise SpecError(
                    source, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}"
                ) from None
        except RecursionError:
            raise SpecError(source, "", "invalid JSON: nested too deeply") from None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise SpecError(source, "", f"neither JSON nor TOML: {exc}") from None


def _kind(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if any(k in data for k in _MARKERS):
        return "cluster_utils"
    if (
        "args" in data
        and isinstance(data["args"], dict)
        and set(data) <= {"args", "machine", "meta"}
    ):
        return "json_grid"
    return None
