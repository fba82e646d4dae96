"""One validated settings object for every flow and CLI verb.

Defaults live here; ``configs/default.yaml`` spells them out for people, and any YAML
file passed with ``--config`` overrides them field by field. CLI flags override the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    calibration: str = Field("isotonic", pattern="^(isotonic|platt)$", description="fitted on the validation cutoffs")
    backtest_folds: int = Field(3, ge=0, description="rolling-origin backtest over the last N labelled cutoffs (0 = off)")
    capacity: int = Field(500, gt=0, description="customers the retention team can call per cycle: recall is reported at this many")

    def model_params(self) -> dict:
        """The LightGBM classifier's hyper-parameters."""
        return self.model_dump(exclude={"valid_cutoffs", "calibration", "backtest_folds", "capacity"})


class RegistrySettings(_Section):
    experiment: str = "churn-risk"
    model_name: str = "churn-risk"
    gate_metric: str = Field("roc_auc", pattern="^(roc_auc|pr_auc)$", description="metric a challenger must match to become champion")
    gate_margin: float = Field(0.0, description="challenger >= champion + margin on the same test rows (negative = tolerance)")
    require_approval: bool = Field(False, description="a challenger that passes the gate waits for `churn registry approve VERSION`")


class TierSettings(_Section):
    mode: str = Field("thresholds", pattern="^(thresholds|capacity)$", description="by calibrated risk, or by outreach capacity")
    high: float = Field(0.5, ge=0, le=1, description="risk at or above this is high (thresholds mode)")
    medium: float = Field(0.2, ge=0, le=1, description="risk at or above this is medium (thresholds mode)")
    capacity: int = Field(500, gt=0, description="capacity mode: the first N are high, the next N medium")


class ScoreSettings(_Section):
    top_reasons: int = Field(3, ge=1, le=3)
    rank_by: str = Field("risk", pattern="^(risk|value_at_risk)$", description="rank the list by risk or by value at risk")
    tiers: TierSettings = TierSettings()
    actionable_share: float = Field(0.2, gt=0, le=1, description="reasons in words for this top share of the list")
    explain_all: bool = Field(False, description="reasons in words for every client")
    actions: dict[str, str] = Field(default_factory=dict, description="overrides of models.reasons.DEFAULT_ACTIONS by reason key")
    out_dir: Optional[Path] = Field(None, description="where the scheduled scoring writes (OUT/history/<as_of>/, the latest at OUT/); relative to the folder the command runs in")


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
    demo: SimulateSettings = SimulateSettings()

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
