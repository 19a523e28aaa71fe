"""The database schema, as typed SQLAlchemy 2 models.

One row per sweep, trial and attempt; metrics, checkpoints and GPU samples hang
off attempts; ``transitions`` is the state-transition log every view displays.
Changing anything here needs a new alembic revision in ``clusterd/migrations``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Attempt",
    "Base",
    "Checkpoint",
    "GpuMinute",
    "GpuSample",
    "Lease",
    "Meta",
    "Metric",
    "MetricSummary",
    "Sweep",
    "Transition",
    "Trial",
    "TrialError",
]


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    driver: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="active")  # active|cancelled|done
    spec: Mapped[dict] = mapped_column(JSON)  # SweepSpec.to_dict()
    source: Mapped[str] = mapped_column(Text)  # path of the sweep file
    output_dir: Mapped[str] = mapped_column(Text)
    metric_name: Mapped[str | None] = mapped_column(String(128))
    metric_mode: Mapped[str | None] = mapped_column(String(3))
    repro: Mapped[dict | None] = mapped_column(JSON)  # git commit, dirty, python, pip freeze path
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    uid: Mapped[str | None] = mapped_column(String(32))  # random; named by the output dir's marker
    group: Mapped[str | None] = mapped_column(String(128))  # sweep.toml ``group``: sweeps --group
    trashed_at: Mapped[float | None] = mapped_column(Float)  # rm --trash: hidden, restorable
    trash_path: Mapped[str | None] = mapped_column(Text)  # where rm --trash moved the output dir


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "index", name="uq_trials_sweep_index"),
        Index("ix_trials_sweep_state", "sweep_id", "state"),
        Index("ix_trials_sweep_params", "sweep_id", "params_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(JSON)
    params_key: Mapped[str] = mapped_column(Text)  # canonical JSON, for --extend matching
    # pending | queued | running | completed | failed | cancelled | stopped
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    last_step: Mapped[int | None] = mapped_column(Integer)
    last_value: Mapped[float | None] = mapped_column(Float)  # of the sweep's metric
    best_value: Mapped[float | None] = mapped_column(Float)
    best_step: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)  # why it is in its state
    stop_decision: Mapped[dict | None] = mapped_column(JSON)  # early stopping: rule, step, ...
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("trial_id", "number", name="uq_attempts_trial_number"),
        Index("ix_attempts_state", "state"),
        Index("ix_attempts_outcome", "outcome"),  # failing_hosts: the few failed ones
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ...
    token: Mapped[str] = mapped_column(String(128), unique=True)
    # submitting | queued | running | ended
    state: Mapped[str] = mapped_column(String(16), default="submitting")
    job_id: Mapped[str | None] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)  # pending reason / why it ended
    # completed | failed | resume | cancelled | stopped | lost | timeout
    outcome: Mapped[str | None] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[str | None] = mapped_column(String(16))
    events_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    submitted_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    # the code this attempt ran (recorded at launch): commit, dirty flag, diff file
    code_commit: Mapped[str | None] = mapped_column(String(64))
    code_dirty: Mapped[bool | None] = mapped_column(Boolean)
    code_diff: Mapped[str | None] = mapped_column(Text)
    # the idle-GPU watch: since when every GPU of the attempt stayed under the threshold
    # (None: busy or unknown), and whether the warning has fired for that stretch
    gpu_idle_since: Mapped[float | None] = mapped_column(Float)
    gpu_idle_flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_trial_name_step", "trial_id", "name", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    t: Mapped[float] = mapped_column(Float)


class MetricSummary(Base):
    """Per trial and metric name, what the views show of every value in ``metrics``: the
    last one stored (with its step and attempt), the lowest, the highest and how many.

    Kept up to date by ``Store.add_metrics`` in the transaction that stores the values,
    so ``trials``, ``export``, ``best`` and ``show`` read one row per trial and metric
    instead of every value (a 10,000-trial sweep of 5 metrics x 20 steps: 50,000 rows,
    not 1,000,000). "Last" is by arrival, as the largest ``metrics.id`` was before it.
    """

    __tablename__ = "metric_summaries"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_value: Mapped[float] = mapped_column(Float)
    last_step: Mapped[int] = mapped_column(BigInteger)
    last_attempt: Mapped[int] = mapped_column(Integer)
    lowest: Mapped[float] = mapped_column(Float)
    highest: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_trial", "trial_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    t: Mapped[float] = mapped_column(Float)


class GpuSample(Base):
    """Raw GPU samples (contract in docs/gpu.md); older ones are rolled up into ``gpu_minutes``."""

    __tablename__ = "gpu_samples"
    __table_args__ = (Index("ix_gpu_samples_trial_attempt_t", "trial_id", "attempt", "t"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[int] = mapped_column(Integer)
    util: Mapped[float | None] = mapped_column(Float)  # percent
    mem_used: Mapped[float | None] = mapped_column(Float)  # MiB
    mem_total: Mapped[float | None] = mapped_column(Float)  # MiB
    t: Mapped[float] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    temp_c: Mapped[int | None] = mapped_column(Integer)
    own_procs: Mapped[int | None] = mapped_column(Integer)  # the attempt's own processes on it
    own_mem: Mapped[int | None] = mapped_column(Integer)  # MiB those processes use


class GpuMinute(Base):
    """Per-minute aggregates of raw samples older than the raw window (one row per
    trial, attempt, GPU and minute), so a days-long sweep's GPU history stays small."""

    __tablename__ = "gpu_minutes"
    __table_args__ = (
        UniqueConstraint("trial_id", "attempt", "gpu", "minute", name="uq_gpu_minutes"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    gpu: Mapped[int] = mapped_column(Integer)
    minute: Mapped[int] = mapped_column(BigInteger)  # floor(t / 60)
    samples: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)  # time the rolled-up samples cover
    util_mean: Mapped[float | None] = mapped_column(Float)
    util_max: Mapped[float | None] = mapped_column(Float)
    mem_max: Mapped[float | None] = mapped_column(Float)  # MiB
    mem_total: Mapped[float | None] = mapped_column(Float)  # MiB
    power_mean: Mapped[float | None] = mapped_column(Float)  # W
    energy_j: Mapped[float | None] = mapped_column(Float)
    own_mem_max: Mapped[int | None] = mapped_column(Integer)  # MiB


class TrialError(Base):
    """Problems found while ingesting a trial's events (malformed lines, ...)."""

    __tablename__ = "trial_errors"
    __table_args__ = (Index("ix_trial_errors_trial", "trial_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    t: Mapped[float] = mapped_column(Float)


class Transition(Base):
    """The state-transition log: one row per trial state change, same transaction."""

    __tablename__ = "transitions"
    __table_args__ = (
        Index("ix_transitions_trial", "trial_id"),
        Index("ix_transitions_sweep", "sweep_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    attempt: Mapped[int | None] = mapped_column(Integer)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    t: Mapped[float] = mapped_column(Float)


class Lease(Base):
    """Who schedules from this database (one row): principle 5, one scheduler per database."""

    __tablename__ = "lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))  # "host:pid:nonce"
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)


class Meta(Base):
    """Facts about the database itself (key/value): ``database_id``, a random identity
    that output-directory markers name, so that another database's sweep is told apart."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
