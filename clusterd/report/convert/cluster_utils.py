"""cluster_utils configs (``grid_search`` and ``hp_optimization``, JSON or TOML) -> sweep.toml.

The keys are those of cluster_utils 3.0's docs/configuration.rst and its examples; each
is either mapped (``Conversion.mapped``: what it became) or refused with the reason
(``Conversion.refused``), never dropped. What each becomes is documented in
docs/convert.md; in short:

- ``optimization_procedure_name`` -> ``name``; ``results_dir`` -> ``output_dir``
  (``~/<results_dir>/<name>``, as cluster_utils puts it);
- ``script_relative_path`` -> ``command = ["python3", <script>]`` (``-m`` with
  ``environment_setup.run_as_module``), the script found from the project root (the
  git work tree holding the config, else the config's directory);
- ``hyperparam_list`` -> ``[params]`` axes (tuple params and ``"{…}"`` expressions
  through ``grid.build_params``); ``restarts`` > 1 -> a ``_restart`` axis first (each
  pass over the grid is one value); ``samples`` -> ``method = "random"``;
- ``optimized_params`` -> ``[search.space]``: TruncatedNormal -> uniform,
  TruncatedLogNormal -> loguniform, IntNormal/IntLogNormal -> randint, Discrete ->
  choice; ``optimizer_str`` cem_metaoptimizer -> ``cem``, nevergrad -> ``nevergrad``
  (``opt_alg`` -> ``[search.options] optimizer``), ``optimization_setting`` -> ``[metric]``,
  ``samples``, ``max_concurrent`` (and cem's ``population``);
- ``cluster_requirements`` -> ``[resources]``; ``environment_setup`` -> ``[env]``;
  ``git_params`` -> ``[code] snapshot = "git"``; ``fixed_params`` -> fixed params.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clusterd.report.convert.emit import Conversion
from clusterd.report.convert.grid import Axis, GridError, build_params
from clusterd.report.convert.safe_expr import UnsafeExpression, has_fields, parse_template, render

__all__ = ["MARKERS", "convert"]

#: keys only a cluster_utils config has (how ``looks_convertible`` recognises one)
MARKERS = ("optimization_procedure_name", "hyperparam_list", "optimized_params")

_NAME_BAD_RE = re.compile(r"[^A-Za-z0-9._-]+")

#: cluster_utils' nevergrad ``opt_alg`` names -> nevergrad's optimizer names
NG_OPTIMIZERS = {
    "twopointsde": "TwoPointsDE",
    "oneplusone": "OnePlusOne",
    "cma": "CMA",
    "tbpsa": "TBPSA",
    "pso": "PSO",
    "randomsearch": "RandomSearch",
}

#: keys with no clusterd equivalent because clusterd already does what they ask for
_NOT_NEEDED = {
    "generate_report": "clusterd makes a report on demand: clusterctl report SWEEP",
    "remove_jobs_dir": "clusterd keeps each trial's files in its output dir; rm --trash removes",
    "remove_working_dirs": "clusterd keeps each trial's files in its output dir",
    "num_best_jobs_whose_data_is_kept": "clusterd keeps every trial's files",
    "load_existing_results": "submit --extend adds only the trials not run yet",
    "no_user_interaction": "clusterd asks nothing while a sweep runs",
    "run_in_working_dir": "trials run the script where it is (no copy of the project)",
    "local_run": 'driver = "local" runs on this machine; set driver in the sweep file',
    "kill_bad_jobs_early": "set [early_stopping] rule (median, asha, hyperband) instead",
    "early_killing_params": "set [early_stopping] rule (median, asha, hyperband) instead",
    "singularity": "clusterd runs no container itself: put it in command or [env] setup",
}

_REQUIREMENTS = {
    "bid": "HTCondor's bid has no clusterd equivalent",
    "cuda_requirement": "no clusterd equivalent: pick the partition or node type with "
    "[drivers.<name>] options",
    "gpu_memory_mb": "no clusterd equivalent: pick the partition or node type with "
    "[drivers.<name>] options",
    "hostname_list": "clusterd does not pin hosts; use [drivers.slurm] options",
    "forbidden_hostnames": "clusterd excludes hosts where attempts failed "
    "([retry] exclude_host_after); no fixed list",
    "concurrency_limit": "set max_concurrent in the sweep file",
    "concurrency_limit_tag": "set max_concurrent in the sweep file",
    "extra_submission_options": "put the scheduler's own options under [drivers.<name>]",
    "signal_seconds_to_timeout": "mapped only via [resume] signal_lead (set it by hand)",
}


def unpack_imports(
    data: Mapping[str, Any], path: Path, read: Any, seen: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """``"__import__": "base.json"`` (or a list): smart_settings' config inheritance. The
    imported files' keys are merged under this file's (this file wins; later imports win
    over earlier ones), recursively. Paths are taken from the project root (see
    ``_project_root``), else from the config's directory. ``read(path)`` loads a file."""
    out = dict(data)
    imports = out.pop("__import__", None)
    if imports is None:
        return out, []
    files = [imports] if isinstance(imports, str) else imports
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise GridError("__import__", f"expected a file name or a list of them, got {imports!r}")
    merged: list[str] = []
    for name in files:
        found = None
        for base in (_root_of(path), path.resolve().parent):
            if (base / name).is_file():
                found = (base / name).resolve()
                break
        if found is None:
            raise GridError(
                "__import__",
                f"cannot find {name!r} (looked in the project root "
                f"{_root_of(path)} and next to the config)",
            )
        if str(found) in seen or len(seen) > 16:
            raise GridError(
                "__import__", f"the imports form a cycle: {' -> '.join([*seen, str(found)])}"
            )
        loaded = read(found)
        if not isinstance(loaded, Mapping):
            raise GridError("__import__", f"{name!r} holds no table of settings")
        loaded, more = unpack_imports(loaded, found, read, (*seen, str(found)))
        out = _merge(loaded, out)
        merged += [*more, str(found)]
    return out, merged


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _root_of(path: Path) -> Path:
    here = path.resolve().parent
    for d in (here, *here.parents):
        if (d / ".git").exists():
            return d
    return here


def convert(
    data: Mapping[str, Any],
    source: str,
    *,
    env: Mapping[str, str] | None = None,
    read: Any = None,
) -> Conversion:
    """``data``: the config as read from JSON or TOML; ``source``: its path; ``read``:
    how to load a file named by ``__import__``."""
    env = dict(os.environ if env is None else env)
    conv = Conversion(kind="cluster_utils", spec_dict={}, source=source)
    if "__import__" in data:
        if read is None:
            raise GridError("__import__", "imports need the config's own file")
        data, merged = unpack_imports(data, Path(source), read)
        conv.mapped.append(("__import__", "merged " + ", ".join(merged)))
    c = _Converter(data, Path(source), env, conv)
    c.run()
    return conv


class _Converter:
    def __init__(self, data: Mapping[str, Any], path: Path, env: dict[str, str], conv: Conversion):
        self.data = dict(data)
        self.path = path
        self.env = env
        self.conv = conv
        self.spec: dict[str, Any] = conv.spec_dict
        self.done: set[str] = set()

    # -- bookkeeping -----------------------------------------------------------

    def mapped(self, key: str, what: str) -> None:
        self.conv.mapped.append((key, what))

    def refused(self, key: str, why: str) -> None:
        self.conv.refused.append((key, why))

    def take(self, key: str) -> Any:
        self.done.add(key)
        return self.data.get(key)

    def fail(self, key: str, message: str) -> GridError:
        return GridError(key, message)

    def text(self, key: str, value: Any) -> str:
        """A string value, its ``{$VAR}`` / ``{expr}`` fields filled in (no params here)."""
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        if not has_fields(value):
            return value
        try:
            out = render(parse_template(value), _no_params, self.env)
        except UnsafeExpression as exc:
            raise self.fail(key, f"refused expression: {exc}") from None
        return str(out)

    # -- the config -------------------------------------------------------------

    def run(self) -> None:
        data, spec = self.data, self.spec
        hp = "optimized_params" in data
        if hp and "hyperparam_list" in data:
            raise self.fail(
                "optimized_params",
                "expected hyperparam_list (grid_search) or optimized_params "
                "(hp_optimization), got both",
            )
        name = self.text("optimization_procedure_name", self.take("optimization_procedure_name"))
        clean = _NAME_BAD_RE.sub("-", name).strip("-.")[:64] or "converted"
        spec["name"] = clean
        self.mapped("optimization_procedure_name", f"name = {clean!r}")
        self._command()
        self._output_dir()
        if hp:
            self._hp_optimization()
        else:
            self._grid_search()
        self._requirements()
        self._environment()
        self._git()
        for key in self.data:
            if key in self.done:
                continue
            if key in _NOT_NEEDED:
                self.refused(key, _NOT_NEEDED[key])
            else:
                self.refused(key, "not a cluster_utils key clusterd knows")

    def _project_root(self) -> Path:
        return _root_of(self.path)

    def _command(self) -> None:
        script = self.text("script_relative_path", self.take("script_relative_path"))
        setup = self.data.get("environment_setup") or {}
        if not isinstance(setup, Mapping):
            raise self.fail("environment_setup", f"expected a table, got {setup!r}")
        root = self._project_root()
        if setup.get("run_as_module"):
            self.spec["command"] = ["python3", "-m", script]
            self.mapped("script_relative_path", f"command = python3 -m {script}")
            return
        if setup.get("is_python_script", True) is False:
            target = str(root / script)
            self.spec["command"] = [target]
            self.mapped("script_relative_path", f"command = {target} (not a Python script)")
            return
        target = str(root / os.path.expanduser(script))
        self.spec["command"] = ["python3", target]
        self.mapped("script_relative_path", f"command = python3 {target} (from {root})")

    def _output_dir(self) -> None:
        raw = self.take("results_dir")
        if raw is None:
            self.refused("results_dir", "missing: clusterd's default runs/<name> is used")
            return
        results = self.text("results_dir", raw)
        out = os.path.join(str(Path.home()), os.path.expanduser(results), self.spec["name"])
        self.spec["output_dir"] = out
        self.mapped("results_dir", f"output_dir = {out!r} (results_dir/name, as cluster_utils)")

    # -- what runs ----------------------------------------------------------------

    def _fixed(self) -> dict[str, Any]:
        fixed = self.take("fixed_params") or {}
        if not isinstance(fixed, Mapping):
            raise self.fail("fixed_params", f"expected a table, got {fixed!r}")
        flat: dict[str, Any] = {}
        for key, value in _flatten(fixed):
            where = f"fixed_params.{key}"
            if key.startswith("__import"):
                self.refused(where, "imports of other config files are not converted")
            elif value is None:
                self.refused(where, "null has no sweep.toml form: give a value or leave it out")
            elif value == {}:
                self.refused(where, "an empty table sets nothing")
            else:
                flat[key] = value
        if fixed:
            self.mapped("fixed_params", f"{len(flat)} fixed param(s) in [params]")
        return flat

    def _grid_search(self) -> None:
        items = self.take("hyperparam_list")
        if items is None:
            raise self.fail(
                "hyperparam_list", "expected hyperparam_list (grid_search) or optimized_params"
            )
        if not isinstance(items, list):
            raise self.fail(
                "hyperparam_list", f"expected a list of {{param, values}}, got {items!r}"
            )
        axes: list[Axis] = []
        for i, item in enumerate(items):
            where = f"hyperparam_list[{i}]"
            if not isinstance(item, Mapping) or "param" not in item or "values" not in item:
                raise self.fail(where, f"expected {{param = ..., values = [...]}}, got {item!r}")
            extra = sorted(set(item) - {"param", "values"})
            for k in extra:
                self.refused(f"{where}.{k}", "not a hyperparam_list key")
            param, values = item["param"], item["values"]
            if isinstance(values, str):
                values = self._axis_expression(f"{where}.values", values)
            if not isinstance(values, list):
                raise self.fail(f"{where}.values", f"expected a list of values, got {values!r}")
            if isinstance(param, list):
                if not param or not all(isinstance(p, str) and p for p in param):
                    raise self.fail(f"{where}.param", f"expected param names, got {param!r}")
                axes.append(Axis(tuple(param), values, where))
            elif isinstance(param, str) and param:
                axes.append(Axis((param,), values, where))
            else:
                raise self.fail(f"{where}.param", f"expected a param name, got {param!r}")
        restarts = self.take("restarts")
        if restarts is None:
            restarts = 1
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
            raise self.fail("restarts", f"expected an integer >= 1, got {restarts!r}")
        samples = self.take("samples")
        fixed = self._fixed()
        helpers: list[str] = []
        if restarts > 1 and not samples:
            axes.insert(0, Axis(("_restart",), list(range(restarts)), "restarts"))
            helpers.append("_restart")
        params, zips = self._params(axes, fixed)
        helpers += zips
        self.spec["params"] = params
        self.mapped("hyperparam_list", f"{len(items)} axis/axes in [params]")
        for h in zips:
            self.mapped(h, "zipped or derived params varying together (a conditional param)")
        if restarts > 1 and not samples:
            self.mapped("restarts", f"_restart = {list(range(restarts))} (each run of the grid)")
        elif restarts == 1:
            self.mapped("restarts", "1: each combination once")
        if samples:
            if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
                raise self.fail("samples", f"expected an integer >= 1 or null, got {samples!r}")
            total = samples * restarts
            self.spec["search"] = {"method": "random", "samples": total, "seed": 0}
            why = f" ({samples} x restarts {restarts})" if restarts > 1 else ""
            self.mapped("samples", f'[search] method = "random", samples = {total}{why}')
        elif "samples" in self.data:
            self.mapped("samples", "null: the whole grid")
        self.conv.helper_params = helpers

    def _axis_expression(self, where: str, text: str) -> Any:
        try:
            value = render(parse_template(text), _fixed_lookup(self.data), self.env)
        except UnsafeExpression as exc:
            raise self.fail(where, f"refused expression: {exc}") from None
        self.mapped(where, f"{text} = {value!r}")
        return value

    def _params(self, axes: list[Axis], fixed: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        return build_params(axes, fixed, self.env)

    def _hp_optimization(self) -> None:
        items = self.take("optimized_params")
        if not isinstance(items, list) or not items:
            raise self.fail("optimized_params", f"expected a list of distributions, got {items!r}")
        space: dict[str, Any] = {}
        for i, item in enumerate(items):
            where = f"optimized_params[{i}]"
            if not isinstance(item, Mapping) or "param" not in item or "distribution" not in item:
                raise self.fail(where, f"expected {{param, distribution, bounds}}, got {item!r}")
            name, dist = item["param"], item["distribution"]
            space[name] = self._distribution(where, dist, item)
            for k in sorted(set(item) - {"param", "distribution", "bounds", "options"}):
                self.refused(f"{where}.{k}", "not an optimized_params key")
        fixed = self._fixed()
        params, zips = self._params([], fixed)
        if zips:
            raise self.fail("fixed_params", "expressions over optimized params are not converted")
        setting = self.take("optimization_setting") or {}
        if not isinstance(setting, Mapping):
            raise self.fail("optimization_setting", f"expected a table, got {setting!r}")
        metric = setting.get("metric_to_optimize")
        if not isinstance(metric, str) or not metric:
            raise self.fail(
                "optimization_setting.metric_to_optimize", f"expected a metric name, got {metric!r}"
            )
        minimize = setting.get("minimize", True)
        self.spec["metric"] = {"name": metric, "mode": "min" if minimize else "max"}
        self.mapped("optimization_setting.metric_to_optimize", f"[metric] name = {metric!r}")
        self.mapped(
            "optimization_setting.minimize", f"[metric] mode = {'min' if minimize else 'max'!r}"
        )
        samples = setting.get("number_of_samples")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise self.fail(
                "optimization_setting.number_of_samples",
                f"expected an integer >= 1, got {samples!r}",
            )
        per_iteration = setting.get("n_jobs_per_iteration")
        search: dict[str, Any] = {"method": "cem", "samples": samples, "seed": 0}
        self.mapped("optimization_setting.number_of_samples", f"[search] samples = {samples}")
        if (
            isinstance(per_iteration, int)
            and not isinstance(per_iteration, bool)
            and per_iteration > 0
        ):
            self.spec["max_concurrent"] = per_iteration
            self.mapped(
                "optimization_setting.n_jobs_per_iteration", f"max_concurrent = {per_iteration}"
            )
        for k in sorted(
            set(setting)
            - {"metric_to_optimize", "minimize", "number_of_samples", "n_jobs_per_iteration"}
        ):
            self.refused(
                f"optimization_setting.{k}",
                "clusterd proposes a trial whenever a slot is free"
                if k == "n_completed_jobs_before_resubmit"
                else "not an optimization_setting key clusterd knows",
            )
        self._optimizer(search, per_iteration)
        search["space"] = space
        self.spec["search"] = search
        self.spec["params"] = params

    def _distribution(self, where: str, dist: Any, item: Mapping[str, Any]) -> dict[str, Any]:
        if dist == "Discrete":
            options = item.get("options", item.get("bounds"))
            if not isinstance(options, list) or not options:
                raise self.fail(f"{where}.options", f"expected a list of options, got {options!r}")
            self.mapped(where, f"{item['param']}: Discrete -> choice")
            return {"choice": list(options)}
        kinds = {
            "TruncatedNormal": "uniform",
            "TruncatedLogNormal": "loguniform",
            "IntNormal": "randint",
            "IntLogNormal": "randint",
        }
        if dist not in kinds:
            raise self.fail(
                f"{where}.distribution",
                f"expected one of {', '.join([*kinds, 'Discrete'])}, got {dist!r}",
            )
        bounds = item.get("bounds", item.get("options"))
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise self.fail(f"{where}.bounds", f"expected [low, high], got {bounds!r}")
        lo, hi = bounds
        kind = kinds[dist]
        if kind == "randint":
            lo, hi = int(lo), int(hi)
        note = ""
        if dist == "IntLogNormal":
            note = " (uniform over the integers: clusterd has no log-scaled integer distribution)"
        self.mapped(where, f"{item['param']}: {dist} -> {kind} [{lo}, {hi}]{note}")
        return {kind: [lo, hi]}

    def _optimizer(self, search: dict[str, Any], per_iteration: Any) -> None:
        name = self.take("optimizer_str")
        settings = self.take("optimizer_settings") or {}
        if not isinstance(settings, Mapping):
            raise self.fail("optimizer_settings", f"expected a table, got {settings!r}")
        if name in (None, "cem_metaoptimizer"):
            search["method"] = "cem"
            options: dict[str, Any] = {}
            if isinstance(per_iteration, int) and per_iteration >= 2:
                options["population"] = per_iteration
            elite = settings.get("num_jobs_in_elite")
            if isinstance(elite, int) and options.get("population") and 0 < elite <= per_iteration:
                options["elite_fraction"] = elite / per_iteration
                self.mapped(
                    "optimizer_settings.num_jobs_in_elite",
                    f"elite_fraction = {elite}/{per_iteration}",
                )
            elif elite is not None:
                self.refused(
                    "optimizer_settings.num_jobs_in_elite",
                    "needs n_jobs_per_iteration >= 2 and >= num_jobs_in_elite (cem's population)",
                )
            if options:
                search["options"] = options
            self.mapped(
                "optimizer_str", 'method = "cem"' + (" (the default)" if name is None else "")
            )
            for k in sorted(set(settings) - {"num_jobs_in_elite"}):
                self.refused(
                    f"optimizer_settings.{k}",
                    "clusterd's cem never re-runs a setting"
                    if k == "with_restarts"
                    else "not a cem setting clusterd knows",
                )
        elif name == "nevergrad":
            alg = settings.get("opt_alg")
            if not isinstance(alg, str) or alg.lower() not in NG_OPTIMIZERS:
                raise self.fail(
                    "optimizer_settings.opt_alg",
                    f"expected one of {', '.join(NG_OPTIMIZERS)}, got {alg!r}",
                )
            search["method"] = "nevergrad"
            search["options"] = {"optimizer": NG_OPTIMIZERS[alg.lower()]}
            self.mapped("optimizer_str", 'method = "nevergrad"')
            self.mapped(
                "optimizer_settings.opt_alg",
                f"[search.options] optimizer = {NG_OPTIMIZERS[alg.lower()]!r}",
            )
            for k in sorted(set(settings) - {"opt_alg"}):
                self.refused(f"optimizer_settings.{k}", "not a nevergrad setting clusterd knows")
        elif name == "gridsearch":
            raise self.fail(
                "optimizer_str", "gridsearch belongs in a grid_search config (hyperparam_list)"
            )
        else:
            raise self.fail(
                "optimizer_str", f'expected "cem_metaoptimizer" or "nevergrad", got {name!r}'
            )

    # -- how it runs ------------------------------------------------------------

    def _requirements(self) -> None:
        req = self.take("cluster_requirements")
        if req is None:
            return
        if not isinstance(req, Mapping):
            raise self.fail("cluster_requirements", f"expected a table, got {req!r}")
        res: dict[str, Any] = {}
        for key, value in req.items():
            where = f"cluster_requirements.{key}"
            if key == "request_cpus" and _positive(value):
                res["cpus"] = value
                self.mapped(where, f"resources.cpus = {value}")
            elif (
                key == "request_gpus"
                and isinstance(value, int)
                and not isinstance(value, bool)
                and value >= 0
            ):
                res["gpus"] = value
                self.mapped(where, f"resources.gpus = {value}")
            elif key == "memory_in_mb" and _positive(value):
                res["memory"] = f"{value}M"
                self.mapped(where, f'resources.memory = "{value}M"')
            elif (
                key == "request_time"
                and isinstance(value, str | int)
                and not isinstance(value, bool)
            ):
                res["time"] = value
                self.mapped(where, f"resources.time = {value!r}")
            elif key == "partition" and isinstance(value, str) and value:
                res["partition"] = value
                self.mapped(where, f"resources.partition = {value!r}")
            elif key in ("cuda_requirement", "hostname_list", "forbidden_hostnames") and not value:
                self.mapped(where, f"{json.dumps(value)}: nothing to set")
            elif key in _REQUIREMENTS:
                self.refused(where, _REQUIREMENTS[key])
            elif key in (
                "request_cpus",
                "request_gpus",
                "memory_in_mb",
                "request_time",
                "partition",
            ):
                raise self.fail(where, f"expected a positive number or a string, got {value!r}")
            else:
                self.refused(where, "not a cluster_requirements key clusterd knows")
        if res:
            self.spec["resources"] = res

    def _environment(self) -> None:
        setup = self.take("environment_setup")
        if setup is None:
            return
        assert isinstance(setup, Mapping)  # checked by _command
        root = self._project_root()
        lines: list[str] = []
        env: dict[str, Any] = {}
        for key, value in setup.items():
            where = f"environment_setup.{key}"
            if key == "virtual_env_path" and isinstance(value, str) and value:
                path = root / os.path.expanduser(self.text(where, value))
                lines.append("source " + shlex.quote(str(path / "bin" / "activate")))
                self.mapped(where, f"[env] setup: source {path}/bin/activate")
            elif key == "pre_job_script" and isinstance(value, str) and value:
                path = root / os.path.expanduser(self.text(where, value))
                lines.append(shlex.quote(str(path)))
                self.mapped(where, f"[env] setup: run {path} first")
            elif key == "variables" and isinstance(value, Mapping):
                for var, v in value.items():
                    env.setdefault("vars", {})[var] = v if isinstance(v, str) else str(v)
                self.mapped(where, f"[env] vars: {', '.join(value)}")
            elif key in ("is_python_script", "run_as_module"):
                self.mapped(where, "command")
            elif key == "conda_env_path" and isinstance(value, str) and value:
                lines.append("conda activate " + shlex.quote(value))
                self.mapped(where, f"[env] setup: conda activate {value}")
            else:
                self.refused(where, "not an environment_setup key clusterd knows")
        if lines:
            env["setup"] = " && ".join(lines)
        if env:
            self.spec["env"] = env

    def _git(self) -> None:
        git = self.take("git_params")
        if git is None:
            return
        if not isinstance(git, Mapping):
            raise self.fail("git_params", f"expected a table, got {git!r}")
        self.spec["code"] = {"snapshot": "git"}
        self.mapped("git_params", '[code] snapshot = "git" (the commit and diff are recorded)')
        for key, value in git.items():
            if value is None:
                continue
            self.refused(
                f"git_params.{key}",
                "clusterd runs the working tree as it is and records its commit; it does not "
                "clone or check out",
            )


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _no_params(name: str) -> Any:
    raise KeyError(name)


def _fixed_lookup(data: Mapping[str, Any]) -> Any:
    fixed = dict(_flatten(data.get("fixed_params") or {}))

    def lookup(name: str) -> Any:
        value = fixed[name]
        if isinstance(value, str) and has_fields(value):
            raise KeyError(name)
        return value

    return lookup
