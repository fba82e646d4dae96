"""Prefect flows: each task calls one library function; the logic lives in features/ and models/.

Flows return plain results (paths, metrics) so the CLI and tests can read them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features import build, labels
from features.catalogue import catalogue_frame
from features.config import FeatureConfig
from features.contract import ValidatedData, format_summary, load_data, write_quarantine
from features.io import write_frame
from models import evaluate, registry, score, train
from pipelines.settings import Settings


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    version: str
    tracking_uri: str
    metrics: dict[str, float]
    cutoffs: dict[str, list[str]]
    skipped_groups: dict[str, str] = field(default_factory=dict)


@dataclass
class ScoreResult:
    parquet: Path
    csv: Path
    rows: int
    as_of: pd.Timestamp
    model_version: str | None


@task(cache_policy=NO_CACHE)
def validate_task(data_dir: Path, out_dir: Path) -> ValidatedData:
    """Read and validate the input folder; write the quarantine and summary under ``out_dir``."""
    result = load_data(Path(data_dir))
    write_quarantine(result, Path(out_dir))
    get_run_logger().info("validated %s\n%s", data_dir, format_summary(result))
    return result


@task(cache_policy=NO_CACHE)
def features_task(tables: dict, cutoffs: list[pd.Timestamp], config: FeatureConfig,
                  population: pd.DataFrame | None = None, channels: list[str] | None = None) -> pd.DataFrame:
    return build.build_features(tables, cutoffs, config=config, population=population, channels=channels)


@task(cache_policy=NO_CACHE)
def labels_task(tables: dict, cutoffs: list[pd.Timestamp], horizon_days: int, active_window_days: int) -> pd.DataFrame:
    return labels.build_labels(tables, cutoffs, horizon_days=horizon_days, active_window_days=active_window_days)


@task(cache_policy=NO_CACHE)
def train_task(frame: pd.DataFrame, split: train.CutoffSplit, feature_cols: list[str], params: dict) -> train.ChurnClassifier:
    return train.train_model(frame, split, feature_cols, **params)


def data_fingerprint(validated: ValidatedData) -> dict:
    """Row counts and content hashes of the validated inputs (logged with the model)."""
    out = {}
    for name, frame in validated.tables.items():
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        out[name] = {"rows": int(len(frame)), "sha256": digest[:16]}
    return out


@flow(name="validate")
def validate_flow(data_dir: Path, out_dir: Path) -> ValidatedData:
    """Validate an input folder: quarantine bad rows with reasons, write the summary."""
    return validate_task(data_dir, out_dir)


@flow(name="train")
def train_flow(data_dir: Path, settings: Settings, home: Path) -> TrainResult:
    """validate -> labelled cutoffs -> labels -> features -> purged time split -> LightGBM ->
    holdout metrics on the latest labelled cutoff -> MLflow run + registered model."""
    logger = get_run_logger()
    home = Path(home)
    validated = validate_task(data_dir, home / "validation")
    tables = validated.tables
    horizon = settings.labels.horizon_days
    cutoffs = labels.labelled_cutoffs(tables, horizon, freq=settings.cutoffs.frequency,
                                      max_cutoffs=settings.cutoffs.max_cutoffs)
    split = train.split_cutoffs(cutoffs, horizon_days=horizon, valid_cutoffs=settings.train.valid_cutoffs)
    used = [*split.train, *split.valid, split.test]
    observations = labels_task(tables, used, horizon, settings.features.active_window_days)
    features = features_task(tables, used, settings.feature_config(),
                             population=observations[["customer_id", "cutoff"]])
    frame = observations.merge(features, on=["customer_id", "cutoff"], how="left", validate="one_to_one")
    skipped = build.skipped_groups(tables)
    for group, why in skipped.items():
        logger.warning("feature group %r skipped: %s", group, why)
    feature_cols = build.feature_columns(frame)
    params = settings.train.model_dump(exclude={"valid_cutoffs"})
    model = train_task(frame, split, feature_cols, params)

    test = frame[frame["cutoff"] == split.test]
    metrics = evaluate.classification_metrics(test["label"], model.predict_proba(test[feature_cols]), prefix="test_")
    metrics |= evaluate.classification_metrics(test["label"], evaluate.recency_rule(test), prefix="baseline_recency_")
    metrics = {k: v for k, v in metrics.items() if not k.startswith("baseline_recency_") or k.endswith(("roc_auc", "pr_auc"))}
    metrics["best_iteration"] = float(model.best_iteration_)
    metrics["train_rows"] = float(frame["cutoff"].isin(split.train).sum())
    cutoffs_used = {"train": [str(c.date()) for c in split.train], "valid": [str(c.date()) for c in split.valid],
                    "test": [str(split.test.date())]}
    logger.info("test cutoff %s: ROC-AUC %.3f, PR-AUC %.3f (recency rule %.3f)", split.test.date(),
                metrics.get("test_roc_auc", float("nan")), metrics.get("test_pr_auc", float("nan")),
                metrics.get("baseline_recency_roc_auc", float("nan")))

    tracking_uri = registry.configure_tracking(home)
    logged = registry.log_training_run(
        model, experiment=settings.registry.experiment, model_name=settings.registry.model_name, home=home,
        params={**params, "horizon_days": horizon, "active_window_days": settings.features.active_window_days,
                "features": len(feature_cols)},
        metrics=metrics, config=settings.model_dump(),
        tags={"test_cutoff": str(split.test.date()), "data_dir": str(Path(data_dir).resolve())},
        input_example=frame[["customer_id", *feature_cols]].head(5),
        artifacts={"feature_catalogue.csv": catalogue_frame(),
                   "data_fingerprint.json": json.dumps(data_fingerprint(validated), indent=2),
                   "cutoffs.json": json.dumps(cutoffs_used, indent=2),
                   "validation_summary.csv": validated.summary},
        top_k=settings.score.top_reasons)
    return TrainResult(run_id=logged.run_id, model_uri=logged.model_uri, version=logged.version,
                       tracking_uri=tracking_uri, metrics=metrics, cutoffs=cutoffs_used, skipped_groups=skipped)


def default_as_of(tables: dict) -> pd.Timestamp:
    """The end of the last day in the data: every recorded fact is known."""
    return (labels.data_end(tables) + pd.Timedelta(days=1)).normalize()


@flow(name="score")
def score_flow(data_dir: Path, out_dir: Path, settings: Settings, home: Path,
               as_of: pd.Timestamp | None = None, model_uri: str | None = None) -> ScoreResult:
    """validate -> features as of ``as_of`` -> registered model -> ranked at-risk list (Parquet + CSV)."""
    home, out_dir = Path(home), Path(out_dir)
    validated = validate_task(data_dir, out_dir / "validation")
    tables = validated.tables
    as_of = pd.Timestamp(as_of) if as_of is not None else default_as_of(tables)
    registry.configure_tracking(home)
    model, version = registry.load_model(settings.registry.model_name, uri=model_uri)
    channels = build.channel_list(registry.input_columns(model))
    features = features_task(tables, [as_of], settings.feature_config(), channels=channels)
    scored = model.predict(features)
    at_risk = score.rank_at_risk(scored, features, as_of=as_of, model_version=version)
    parquet = write_frame(at_risk, out_dir / "at_risk.parquet")
    csv = write_frame(at_risk, out_dir / "at_risk.csv")
    get_run_logger().info("scored %d clients as of %s -> %s", len(at_risk), as_of.date(), parquet)
    return ScoreResult(parquet=parquet, csv=csv, rows=len(at_risk), as_of=as_of, model_version=version)


@task(cache_policy=NO_CACHE)
def simulate_task(customers: int, seed: int, out_dir: Path) -> dict[str, Path]:
    from features.simulate import simulate, write_dataset

    return write_dataset(simulate(customers, seed), Path(out_dir))


@flow(name="demo")
def demo_flow(settings: Settings, home: Path) -> tuple[TrainResult, ScoreResult]:
    """simulate -> train (validate, features, labels, LightGBM, MLflow) -> score the latest date."""
    home = Path(home)
    data_dir = home / "demo" / "data"
    simulate_task(settings.demo.customers, settings.demo.seed, data_dir)
    trained = train_flow(data_dir, settings, home)
    scored = score_flow(data_dir, home / "demo" / "at_risk", settings, home)
    return trained, scored
