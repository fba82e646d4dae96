"""One validated settings object for every flow and CLI verb.

Defaults live here; ``configs/default.yaml`` spells them out for people, and any YAML
file passed with ``--config`` overrides them field by field. CLI flags override the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.config import FeatureConfig
from features.inputs.config import SourceConfig, ValidationConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CutoffSettings(_Section):
    frequency: str = Field("MS", description="pandas offset alias of the training cutoffs; MS = month start")
    max_cutoffs: int = Field(24, gt=0, description="at most this many of the latest labelled cutoffs are stacked into a training set")


class LabelSettings(_Section):
    horizon_days: int = Field(90, gt=0, description="a customer who becomes a former client within this many days after the cutoff is labelled 1")


class TrainSettings(_Section):
    seed: int = 42
    valid_cutoffs: int = Field(2, ge=1, description="cutoffs before the test cutoff used for early stopping")
    num_boost_round: int = Field(400, gt=0)
    early_stopping_rounds: int = Field(30, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, gt=1)
    min_child_samples: int = Field(50, gt=0)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    lean_leaves: list[int] = Field([7, 15], description="smaller leaf counts tried beside num_leaves: the leanest model "
                                   "that validates as well is kept (TreeSHAP explains it faster); [] = num_leaves only")
    lean_tolerance: float = Field(0.001, ge=0, le=0.05, description="validation ROC-AUC a leaner model may give up "
                                  "(its log loss may be at most 0.5% above the best)")
    calibration: str = Field("isotonic", pattern="^(isotonic|platt)$", description="fitted on the validation cutoffs")
    backtest_folds: int = Field(3, ge=0, description="rolling-origin backtest over the last N labelled cutoffs (0 = off)")
    capacity: int = Field(500, gt=0, description="customers the retention team can call per cycle: recall is reported at this many")

    def model_params(self) -> dict:
        """The LightGBM classifier's hyper-parameters."""
        params = self.model_dump(exclude={"valid_cutoffs", "calibration", "backtest_folds", "capacity"})
        return params | {"lean_leaves": tuple(params["lean_leaves"])}


class RegistrySettings(_Section):
    experiment: str = "churn-risk"
    model_name: str = "churn-risk"
    gate_metric: str = Field("roc_auc", pattern="^(roc_auc|pr_auc)$", description="metric a challenger must match to become champion")
    gate_margin: float = Field(0.0, description="challenger >= champion + margin on the same test rows (negative = tolerance)")
    require_approval: bool = Field(False, description="a challenger that passes the gate waits for `churn registry approve VERSION`")


class TierSettings(_Section):
    mode: str = Field("share", pattern="^(share|capacity|thresholds)$",
                      description="share of the list (default), outreach capacity, or calibrated risk thresholds")
    high_share: float = Field(0.3, gt=0, le=1, description="share mode: the first 30% of the list are high")
    medium_share: float = Field(0.3, ge=0, le=1, description="share mode: the next 30% are medium, the rest low")
    high: float = Field(0.5, ge=0, le=1, description="risk at or above this is high (thresholds mode)")
    medium: float = Field(0.2, ge=0, le=1, description="risk at or above this is medium (thresholds mode)")
    capacity: int = Field(500, gt=0, description="clients the team can call per cycle: the report's 'call first'; "
                                                 "capacity mode: the first N are high, the next N medium")

    @model_validator(mode="after")
    def _shares(self) -> "TierSettings":
        if self.high_share + self.medium_share > 1:
            raise ValueError("tiers.high_share + tiers.medium_share must be at most 1")
        return self


class LapseSettings(_Section):
    """When a client has already lapsed (goes to the win-back list): see models.score.LapseRule."""
    enabled: bool = Field(True, description="false: every client stays on the retention list")
    order_gaps: float = Field(3.0, gt=0, description="no order for longer than max(this x their usual gap, the horizon)")
    silence_gaps: float = Field(1.0, gt=0, description="nothing from them at all for longer than max(this x their usual gap, min_silence_days)")
    min_silence_days: float = Field(30.0, ge=0)
    p_alive_below: float = Field(0.1, ge=0, le=1, description="BG/NBD probability of being alive below this (0 = off)")
    with_cancellations: bool = Field(False, description="apply the rule on data with a cancellations table too")


class ScoreSettings(_Section):
    top_reasons: int = Field(3, ge=1, le=3)
    rank_by: str = Field("risk", pattern="^(risk|value_at_risk)$", description="rank the list by risk or by value at risk")
    tiers: TierSettings = TierSettings()
    lapsed: LapseSettings = LapseSettings()
    risk_floor: float = Field(0.01, gt=0, lt=0.5, description="no client reads a risk below this ...")
    risk_ceiling: float = Field(0.99, gt=0.5, lt=1, description="... or above this")
    currency: str = Field("EUR", pattern="^[A-Z]{3}$", description="ISO 4217 code of the order amounts")
    history: bool = Field(True, description="keep each scoring in OUT/history/<as_of>/ and show what changed")
    actionable_share: float = Field(0.2, gt=0, le=1, description="reasons in words for this top share of the list")
    explain_max: int = Field(100_000, gt=0, description="... for at most this many clients (TreeSHAP is the cost)")
    explain_min: int = Field(1_000, ge=0, description="... and for at least this many (every client of a small base)")
    explain_all: bool = Field(False, description="reasons in words for every client")
    actions: dict[str, str] = Field(default_factory=dict, description="overrides of the actions' words by key")
    out_dir: Optional[Path] = Field(None, description="where the scheduled scoring writes (OUT/history/<as_of>/, the latest at OUT/); relative to the folder the command runs in")

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: dict[str, str]) -> dict[str, str]:
        from features.groups import ACTION_KEYS

        unknown = sorted(set(value) - set(ACTION_KEYS))
        if unknown:
            raise ValueError(f"unknown action key(s) {', '.join(unknown)}: use {', '.join(ACTION_KEYS)}")
        empty = sorted(k for k, v in value.items() if not str(v).strip())
        if empty:
            raise ValueError(f"empty text for action key(s) {', '.join(empty)}")
        return value

    def lapse_rule(self, horizon_days: int):
        """The lapse rule of ``models.score`` with the label horizon."""
        from models.score import LapseRule

        s = self.lapsed
        return LapseRule(order_gaps=s.order_gaps, silence_gaps=s.silence_gaps, min_silence_days=s.min_silence_days,
                         p_alive_below=s.p_alive_below, horizon_days=horizon_days, enabled=s.enabled)


class ScheduleSettings(_Section):
    timezone: str = Field("UTC", description="IANA time zone the cron schedules are read in")
    train: str = Field("7 2 1 * *", description="cron of the train deployment (monthly retraining)")
    score: str = Field("17 6 * * 1", description="cron of the score deployment (weekly scoring)")
    monitor: str = Field("37 6 * * 1", description="cron of the monitor deployment (after the scoring)")

    @model_validator(mode="after")
    def _check(self) -> "ScheduleSettings":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"schedule.timezone {self.timezone!r} is not an IANA time zone (e.g. Europe/Paris)") from exc
        minutes = {}
        for name in ("train", "score", "monitor"):
            fields = getattr(self, name).split()
            if len(fields) != 5:
                raise ValueError(f"schedule.{name} {getattr(self, name)!r} is not a 5-field cron (minute hour day month weekday)")
            minutes.setdefault(fields[0], []).append(name)
        same = [names for names in minutes.values() if len(names) > 1]
        if same:  # Prefect fires schedules of one minute with different parameters once (PrefectHQ/prefect#17550)
            raise ValueError(f"schedule: {' and '.join(same[0])} start in the same minute; give each its own minute")
        return self


class MonitorSettings(_Section):
    psi_warn: float = Field(0.1, ge=0, description="population stability index from which a feature's shift is reported as moderate")
    psi_alert: float = Field(0.2, ge=0, description="PSI at or above which a feature or the score is flagged and alerted")
    max_auc_drop: float = Field(0.05, ge=0, description="alert when the estimated or realised ROC-AUC falls this far below the champion's test ROC-AUC")


class CacheSettings(_Section):
    features: bool = Field(True, description="keep built feature tables under <home>/cache/features/ and reuse them "
                                             "when the inputs, the feature config and the code are the same")
    keep: int = Field(10, ge=1, description="at most this many feature tables are kept (the most recently used)")

    def feature_cache(self, home: Path):
        """The feature cache of the run folder ``home`` (``features.cache.FeatureCache``; off when disabled)."""
        from features.cache import FeatureCache

        return FeatureCache(Path(home) / "cache" / "features" if self.features else None, keep=self.keep)


class RetrySettings(_Section):
    attempts: int = Field(3, ge=1, description="tries of a step that reads an external input (files, the SQL "
                                               "database, the MLflow registry) when it fails for a transient reason")
    base_delay_seconds: float = Field(1.0, ge=0, description="wait before the second try; doubled before each next one")
    max_delay_seconds: float = Field(30.0, ge=0, description="longest wait between two tries")
    jitter: float = Field(0.5, ge=0, le=1, description="each wait spread at random by up to this share of itself")

    def options(self) -> dict:
        """Keyword arguments of ``pipelines.orchestration.retrying``."""
        return {"attempts": self.attempts, "base": self.base_delay_seconds, "cap": self.max_delay_seconds,
                "jitter": self.jitter}


class EngineSettings(_Section):
    """Where the per-customer work runs: ``local`` (one process, the default) or ``dask``
    (the customers split into ``shards`` by a stable hash of customer_id, each shard's
    validation, features, labels, scores and reasons a task on a Dask cluster)."""
    kind: str = Field("local", pattern="^(local|dask)$", description="local: one machine; dask: shards on a Dask cluster")
    scheduler: Optional[str] = Field(None, description="address of an existing Dask scheduler (tcp://host:8786); "
                                                       "empty: start a LocalCluster of `workers` processes on 127.0.0.1")
    workers: int = Field(2, gt=0, description="worker processes of the LocalCluster (one thread each)")
    shards: int = Field(8, gt=0, description="shards the customers are split into (a shard is the unit of work and of a worker's memory)")
    threads: int = Field(1, gt=0, description="threads of DuckDB and NumPy inside one shard's task (workers x threads <= cores)")
    memory_limit: str = Field("auto", description="memory limit of each LocalCluster worker (e.g. 4GB; auto: the machine's memory / workers; 0: none)")
    dataset: Optional[str] = Field(None, description="an input already sharded by this project's hash: a folder or fsspec URL "
                                                     "with shard=0/, shard=1/, ... each holding <table>.parquet")
    train_sample: int = Field(1_000_000, gt=0, description="rows of the stacked training set the model is trained on: "
                                                           "a sample stratified by cutoff and label when the set is larger")
    seed: int = Field(0, description="seed of the training sample")


class SimulateSettings(_Section):
    customers: int = Field(20_000, gt=0)
    seed: int = 7


class Settings(_Section):
    source: SourceConfig = SourceConfig()
    validation: ValidationConfig = ValidationConfig()
    features: FeatureConfig = FeatureConfig()
    cutoffs: CutoffSettings = CutoffSettings()
    labels: LabelSettings = LabelSettings()
    train: TrainSettings = TrainSettings()
    registry: RegistrySettings = RegistrySettings()
    score: ScoreSettings = ScoreSettings()
    monitor: MonitorSettings = MonitorSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    cache: CacheSettings = CacheSettings()
    retries: RetrySettings = RetrySettings()
    demo: SimulateSettings = SimulateSettings()
    engine: EngineSettings = EngineSettings()

    def with_overrides(self, **dotted: Any) -> "Settings":
        """Return a copy with ``section.field`` values replaced, skipping None (flags not given)."""
        data = self.model_dump()
        for key, value in dotted.items():
            if value is None:
                continue
            *path, field = key.split(".")
            target = data
            for part in path:
                target = target[part]
            target[field] = value
        return Settings.model_validate(data)

    def feature_config(self) -> FeatureConfig:
        """The feature builder's settings, with the BG/NBD horizon set to the label horizon."""
        return self.features.model_copy(update={"btyd_horizon_days": self.labels.horizon_days})


class SettingsError(ValueError):
    """A config file that cannot be read or does not match the settings schema."""


def load_settings(path: Path | None = None) -> Settings:
    """Read settings from a YAML file (``None``: the built-in defaults)."""
    if path is None:
        return Settings()
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("\n".join(lines)) from exc
