"""The validated, normalised form of a sweep.toml (stdlib only).

``SweepSpec`` is what the parser returns, what the daemon persists (as
``to_dict()`` JSON) and what drivers read. Every field has its default here,
so a spec restored from the database means the same thing as the file did.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CodeConfig",
    "Distribution",
    "EarlyStopping",
    "EnvConfig",
    "GpuConfig",
    "Limits",
    "Metric",
    "ParamValue",
    "Resources",
    "ResumePolicy",
    "RetryPolicy",
    "Search",
    "SweepSpec",
]

# A parameter value as it reaches the trial: a TOML scalar or a list of them.
ParamValue = str | int | float | bool | list[Any]


@dataclass(frozen=True)
class Metric:
    name: str
    mode: Literal["min", "max"] = "min"


#: words in a metric's name that mean "higher is better" when no mode is declared
#: (``val_acc``, ``test_auc``, ``f1_macro``, ``mean_reward``): see ``metric_mode``
MAX_WORDS = ("acc", "auc", "f1", "precision", "recall", "score", "reward", "iou", "map", "r2")
_WORD_RE = re.compile(r"[a-z0-9]+")


def guessed_mode(name: str) -> Literal["min", "max"]:
    """ "max" for a name with a word of ``MAX_WORDS`` (``val_acc``, ``top5_accuracy``,
    ``mAP``), else "min" (losses, errors, perplexity): a default, never a silent one --
    ``[metrics.<name>] mode`` declares it."""
    words = _WORD_RE.findall(name.lower())
    hit = any(
        w.startswith(m) if m in ("acc", "precision", "recall") else w == m
        for w in words
        for m in MAX_WORDS
    )
    return "max" if hit else "min"


@dataclass(frozen=True)
class Resources:
    cpus: int | None = None
    gpus: int = 0
    memory: str | None = None  # as written, e.g. "16G"
    memory_mb: int | None = None  # parsed, for drivers that need a number
    time: str | None = None  # as written, e.g. "04:00:00"
    time_seconds: int | None = None  # parsed
    partition: str | None = None
    pack: int = 1


@dataclass(frozen=True)
class ResumePolicy:
    exit_code: int = 3
    max_resumes: int = 50
    signal: str = "USR1"  # without the SIG prefix
    signal_lead: int = 120  # seconds before the time limit


@dataclass(frozen=True)
class RetryPolicy:
    max_failures: int = 0
    #: a host on which this many of the sweep's attempts failed gets no more of them (0: never)
    exclude_host_after: int = 3


@dataclass(frozen=True)
class EarlyStopping:
    rule: str = "none"  # median | asha | hyperband | none | a plugin's name
    min_steps: int = 5
    options: dict[str, Any] = field(default_factory=dict)  # rule-specific keys


@dataclass(frozen=True)
class Distribution:
    kind: Literal["uniform", "loguniform", "randint", "choice"]
    args: tuple[Any, ...]  # (low, high) for numeric kinds, the values for choice


@dataclass(frozen=True)
class Search:
    method: str = "grid"  # grid | random | tpe | cem | ...
    samples: int | None = None
    seed: int = 0
    space: dict[str, Distribution] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # method-specific keys


@dataclass(frozen=True)
class CodeConfig:
    snapshot: Literal["none", "git"] = "none"


@dataclass(frozen=True)
class GpuConfig:
    interval: float = 10.0
    #: ``idle_warning``: None = not set (the user's config file may set it), 0 = "off"
    idle_warning_seconds: float | None = None
    #: ``idle_threshold``: a GPU under this utilisation (percent) is idle; None = not set
    idle_threshold: float | None = None
    #: ``idle_action``: "warn" (flag it) or "stop" (stop the trial); None = not set
    idle_action: Literal["warn", "stop"] | None = None


@dataclass(frozen=True)
class EnvConfig:
    vars: dict[str, str] = field(default_factory=dict)
    setup: str | None = None
    #: "submit": trials run with the submitting shell's interpreter and environment (the
    #: variables of ``daemon.environment.CAPTURED`` plus ``pass``), as ``sbatch`` does;
    #: "daemon": with the daemon's own environment
    inherit: Literal["submit", "daemon"] = "submit"
    #: further variables of the submitting shell to carry over (never secrets unless named)
    pass_vars: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Caps that keep one sweep file from exhausting the daemon (docs/sweep-file.md)."""

    max_trials: int = 100_000  # trials one sweep may plan (grid size or samples)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    command: tuple[str, ...]  # argv template; strings were shlex-split
    source: str  # the file it came from (for messages), "<string>" if none
    output_dir: str  # absolute
    driver: str = "local"
    max_concurrent: int = 4
    metric: Metric | None = None
    #: ``[metrics.<name>] mode``: the direction of metrics other than ``[metric]``'s
    metric_modes: dict[str, Literal["min", "max"]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the [params] tree as validated
    search: Search = field(default_factory=Search)
    resources: Resources = field(default_factory=Resources)
    resume: ResumePolicy = field(default_factory=ResumePolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    code: CodeConfig = field(default_factory=CodeConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    driver_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    group: str | None = None  # ``clusterctl sweeps --group``: a label, nothing else

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    def metric_mode(self, name: str) -> Literal["min", "max"]:
        """Whether lower or higher ``name`` is better: ``[metric]``'s mode for its own
        name, ``[metrics.<name>] mode`` where declared, else ``guessed_mode(name)``."""
        if self.metric is not None and self.metric.name == name:
            return self.metric.mode
        return self.metric_modes.get(name) or guessed_mode(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, restored by ``from_dict``."""
        data = asdict(self)
        data["command"] = list(self.command)
        data["search"]["space"] = {
            k: {"kind": d.kind, "args": list(d.args)} for k, d in self.search.space.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        d = dict(data)
        search = dict(d.get("search") or {})
        search["space"] = {
            k: Distribution(kind=v["kind"], args=tuple(v["args"]))
            for k, v in (search.get("space") or {}).items()
        }
        return cls(
            name=d["name"],
            command=tuple(d["command"]),
            source=d.get("source", "<db>"),
            output_dir=d["output_dir"],
            driver=d.get("driver", "local"),
            max_concurrent=d.get("max_concurrent", 4),
            metric=Metric(**d["metric"]) if d.get("metric") else None,
            metric_modes=d.get("metric_modes") or {},
            params=d.get("params") or {},
            search=Search(**search),
            resources=Resources(**(d.get("resources") or {})),
            resume=ResumePolicy(**(d.get("resume") or {})),
            retry=RetryPolicy(**(d.get("retry") or {})),
            early_stopping=EarlyStopping(**(d.get("early_stopping") or {})),
            code=CodeConfig(**(d.get("code") or {})),
            gpu=GpuConfig(**(d.get("gpu") or {})),
            env=_env_config(d.get("env") or {}),
            driver_options=d.get("driver_options") or {},
            limits=Limits(**(d.get("limits") or {})),
            group=d.get("group"),
        )


def _env_config(data: dict[str, Any]) -> EnvConfig:
    """``EnvConfig`` from its JSON form (lists for tuples; older records lack new keys)."""
    data = dict(data)
    data["pass_vars"] = tuple(data.get("pass_vars") or ())
    return EnvConfig(**data)
