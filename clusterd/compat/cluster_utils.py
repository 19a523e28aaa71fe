"""cluster_utils' client API over clusterd's trial API, so its job scripts run unchanged.

The functions, signatures and files are cluster_utils 3.0.0's
(``src/cluster_utils/client/__init__.py`` of the PyPI sdist); what changes is where
the parameters come from and where the results go:

- ``initialize_job()`` returns the trial's parameters (``$CLUSTERD_PARAMS``) as a
  nested, read-only attribute dict, as cluster_utils' ``smart_settings.AttributeDict``:
  dotted names (``fn_args.x``, what converted configs use) become nested tables
  (``params.fn_args.x``). ``working_dir`` is the trial's directory (kept across
  resumes, so a checkpoint written there is found again); ``id`` the trial's index. It
  creates the working dir and writes ``settings.json`` there, as cluster_utils does.
  Outside clusterd it reads cluster_utils' own command line (a JSON parameter file, or
  ``--parameter-dict "{...}"``, then ``key=value`` overrides; values are Python
  literals, read with ``ast.literal_eval``, never evaluated).
- ``finalize_job(metrics, params)`` writes ``param_choice.csv`` and ``metrics.csv``
  into the working dir (adding ``time_elapsed``, as cluster_utils does) and reports
  the metrics to clusterd as the trial's final step (``trial.main`` does the same).
- ``announce_early_results(metrics)`` reports them as the next step, which is what
  clusterd's early stopping ranks; a trial clusterd stopped then exits at once.
- ``exit_for_resume()`` exits with the resume exit code under clusterd; outside it
  returns, as cluster_utils does without its server.
- ``cluster_main`` decorates ``main(**params) -> metrics`` with the two above.
- ``announce_fraction_finished`` is accepted and does nothing (clusterd shows progress
  from the reported steps).

Stdlib only, like ``clusterd.trial``: it runs in the job's own environment.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from clusterd import trial

__all__ = [
    "AttributeDict",
    "announce_early_results",
    "announce_fraction_finished",
    "cluster_main",
    "exit_for_resume",
    "finalize_job",
    "initialize_job",
    "read_params_from_cmdline",
    "save_metrics_params",
]

#: file names of cluster_utils 3.0.0 (``cluster_utils.base.constants``)
CLUSTER_PARAM_FILE = "param_choice.csv"
CLUSTER_METRIC_FILE = "metrics.csv"
JSON_SETTINGS_FILE = "settings.json"
WORKING_DIR = "working_dir"
OBJECT_SEPARATOR = "."

_start_time: float | None = None


class AttributeDict(dict[str, Any]):
    """A read-only dict whose keys are also attributes (``params.fn_args.x``), nested:
    what cluster_utils' scripts get from smart_settings. ``dict(params)`` is a copy."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r} (have: {', '.join(self)})") from None

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("the parameters are read-only (as in cluster_utils); copy: dict(params)")

    __setattr__ = __setitem__ = __delitem__ = __delattr__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (AttributeDict, (dict(self),))


def nest(flat: Mapping[str, Any]) -> AttributeDict:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}`` as AttributeDicts. A name
    that is both a value and a table (``a`` and ``a.b``) is an error naming both."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(OBJECT_SEPARATOR)
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = OBJECT_SEPARATOR.join(parts[: i + 1])
                raise ValueError(f"parameter {key!r} lies under {where!r}, which has a value")
            node = child
        if parts[-1] in node and isinstance(node[parts[-1]], dict):
            raise ValueError(f"parameter {key!r} is also a table of other parameters")
        node[parts[-1]] = value
    return _frozen(tree)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return AttributeDict({k: _frozen(v) for k, v in value.items()})
    return value


def flatten(nested: Mapping[str, Any], prepend: str = "") -> Iterator[tuple[str, Any]]:
    """cluster_utils' ``flatten_nested_string_dict``: nested tables -> dotted names."""
    for key, value in nested.items():
        if not isinstance(key, str):
            raise TypeError("Only strings as keys expected")
        if isinstance(value, Mapping):
            yield from flatten(value, prepend + key + OBJECT_SEPARATOR)
        else:
            yield prepend + key, value


# -- parameters -------------------------------------------------------------------------


def initialize_job(
    cmd_line: list[str] | None = None, verbose: bool = True, dynamic: bool = True
) -> AttributeDict:
    """The job's parameters (module docstring); call it first, as in cluster_utils.

    ``dynamic`` (smart_settings' expression evaluation) is accepted for compatibility;
    under clusterd the converter has already worked out every ``"{...}"`` value.
    """
    global _start_time
    flat = _params_under_clusterd() if trial.trial_id() is not None else None
    if flat is None:
        flat = _params_from_cmdline(cmd_line or sys.argv)
    params = nest(flat)
    if verbose:
        print(json.dumps(params, indent=2, sort_keys=True, default=str))
    _start_time = time.time()
    if WORKING_DIR in params:
        os.makedirs(params[WORKING_DIR], exist_ok=True)
        path = os.path.join(params[WORKING_DIR], JSON_SETTINGS_FILE)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(params, fh, sort_keys=True, indent=4, default=str)
    return params


#: the converter's helper params (``clusterd.report.convert``: ``_zipN`` zips tuple
#: params, ``_restart`` numbers ``restarts``): cluster_utils never handed them to a job
_HELPER_PARAM = re.compile(r"_zip\d+|_restart")


def _params_under_clusterd() -> dict[str, Any]:
    flat: dict[str, Any] = {
        k: v for k, v in trial.params().items() if not _HELPER_PARAM.fullmatch(k)
    }
    trial_dir = os.environ.get("CLUSTERD_TRIAL_DIR")
    flat.setdefault(WORKING_DIR, trial_dir or os.getcwd())
    trial_id = trial.trial_id() or ""
    index = trial_id.rpartition("/")[2]
    if index.isdigit():
        flat.setdefault("id", int(index))
    return flat


def _params_from_cmdline(argv: list[str]) -> dict[str, Any]:
    """cluster_utils' job command line: ``script PARAMS [key=value ...]``, where PARAMS
    is a JSON file or (with ``--parameter-dict``) a dict literal."""
    import argparse

    parser = argparse.ArgumentParser(prog=os.path.basename(argv[0]) if argv else None)
    parser.add_argument("parameter_file_or_dict")
    parser.add_argument("parameter_overwrites", nargs="*", default=[], metavar="<key>=<value>")
    parser.add_argument("--parameter-dict", action="store_true")
    parser.add_argument("--job-id", type=int)
    parser.add_argument("--cluster-utils-server")
    args = parser.parse_args(argv[1:])
    if args.parameter_dict:
        data = _literal(args.parameter_file_or_dict, "the parameter dict")
        if not isinstance(data, dict):
            raise ValueError("'parameter_file_or_dict' must be a dictionary (`--parameter-dict`)")
    else:
        path = args.parameter_file_or_dict
        if not os.path.isfile(path):
            raise FileNotFoundError(f"'{path}' does not exist or is not a file.")
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    flat = dict(flatten(data))
    for item in args.parameter_overwrites:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected <key>=<value>, got {item!r}")
        flat[key] = _literal(text, key)
    return flat


def _literal(text: str, what: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{what}: {text!r} is not a Python literal") from None


read_params_from_cmdline = initialize_job


# -- results ----------------------------------------------------------------------------


def _sanitize(value: Any) -> Any:
    """numpy/torch scalars -> float, as cluster_utils' ``_sanitize_numpy_torch``."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _one_line_csv(row: Mapping[str, Any], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)


def finalize_job(metrics: MutableMapping[str, Any], params: Mapping[str, Any]) -> None:
    """Save ``param_choice.csv`` and ``metrics.csv`` in the working dir and report the
    metrics as the trial's final step (call it at the end, as in cluster_utils)."""
    working_dir = params[WORKING_DIR]
    os.makedirs(working_dir, exist_ok=True)
    _one_line_csv(dict(flatten(params)), os.path.join(working_dir, CLUSTER_PARAM_FILE))
    if "time_elapsed" not in metrics:
        metrics["time_elapsed"] = time.time() - (_start_time or time.time())
    else:
        print("WARNING: 'time_elapsed' metric already taken. Automatic time saving failed.")
    for key in list(metrics):
        metrics[key] = _sanitize(metrics[key])
    _one_line_csv(metrics, os.path.join(working_dir, CLUSTER_METRIC_FILE))
    trial._report_final(dict(metrics))


save_metrics_params = finalize_job


def announce_early_results(metrics: Mapping[str, Any]) -> None:
    """Report intermediate metrics (the next step); exit if clusterd stopped the trial."""
    values = {str(k): _sanitize(v) for k, v in metrics.items()}
    trial._report_final(values)  # at the step after the last one reported
    if trial.should_stop():
        print("clusterd stopped this trial early", file=sys.stderr)
        trial._flush_std()
        sys.exit(0)


def announce_fraction_finished(fraction_finished: float) -> None:
    """Accepted for compatibility; clusterd shows progress from the reported steps."""


def exit_for_resume() -> None:
    """Exit with the resume exit code: clusterd runs the trial again in the same
    working dir. Outside clusterd it returns, as cluster_utils does without a server."""
    if trial.trial_id() is None:
        return
    trial.exit_for_resume()


def cluster_main(main_func: Callable[..., Any] | None = None, **read_params_args: Any) -> Any:
    """Decorate ``main(**params) -> metrics``: ``initialize_job`` before, ``finalize_job``
    after, as cluster_utils' ``cluster_main``."""
    if main_func is None:
        return functools.partial(cluster_main, **read_params_args)

    @functools.wraps(main_func)
    def wrapper() -> Any:
        params = initialize_job(**read_params_args)
        metrics = main_func(**params)
        finalize_job(metrics, params)
        return metrics

    return wrapper
