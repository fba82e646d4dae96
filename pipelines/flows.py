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
from features.catalogue import catalogue_frame, feature_group
from features.config import FeatureConfig
from features.inputs import ValidatedData, describe_source, format_summary, gate_warnings, validate_source
from models import evaluate, registry, report, score, train
from models.card import markdown_table, model_card
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
    promoted: bool = True
    gate_reason: str = ""
    model_card: str = ""
    backtest: pd.DataFrame | None = None


@dataclass
class ScoreResult:
    parquet: Path
    csv: Path
    xlsx: Path
    html: Path
    rows: int
    as_of: pd.Timestamp
    model_version: str | None
    warnings: list[str] = field(default_factory=list)
    win_back_parquet: Path | None = None
    win_back_csv: Path | None = None
    summary: Path | None = None
    win_back_rows: int = 0


@task(cache_policy=NO_CACHE)
def validate_task(data_dir: Path | None, settings: Settings, out_dir: Path) -> ValidatedData:
    """Read, map and validate the input (``data_dir`` or the settings' source); write the
    quarantine and summary under ``out_dir``; a bad extract stops here (``ContractError``)."""
    result, _ = validate_source(settings.source, settings.validation, data_dir, Path(out_dir))
    logger = get_run_logger()
    logger.info("validated %s\n%s", describe_source(settings.source, data_dir), format_summary(result))
    for warning in gate_warnings(result):
        logger.warning(warning)
    return result


@task(cache_policy=NO_CACHE)
def features_task(tables: dict, cutoffs: list[pd.Timestamp], config: FeatureConfig,
                  population: pd.DataFrame | None = None, channels: list[str] | None = None) -> pd.DataFrame:
    return build.build_features(tables, cutoffs, config=config, population=population, channels=channels)


@task(cache_policy=NO_CACHE)
def fit_evaluate_task(frame: pd.DataFrame, split: train.CutoffSplit, feature_cols: list[str],
                      settings: Settings, params: dict) -> train.TrainingReport:
    return train.fit_evaluate(frame, split, feature_cols, params, calibration=settings.train.calibration,
                              capacity=settings.train.capacity, horizon_days=settings.labels.horizon_days)


@task(cache_policy=NO_CACHE)
def tune_task(frame: pd.DataFrame, split: train.CutoffSplit, feature_cols: list[str], settings: Settings,
              n_trials: int, home: Path) -> dict:
    """Optuna search on the validation cutoffs; the trials are logged to MLflow."""
    from models.tune import tune

    best, trials = tune(frame, split, feature_cols, settings.train.model_params(), n_trials=n_trials,
                        seed=settings.train.seed)
    registry.configure_tracking(home)
    registry.log_trials(trials, experiment=settings.registry.experiment, home=home)
    get_run_logger().info("tuning: best validation ROC-AUC %.4f over %d trials", trials["valid_roc_auc"].max(), len(trials))
    return best


@task(cache_policy=NO_CACHE)
def backtest_task(frame: pd.DataFrame, cutoffs: list[pd.Timestamp], feature_cols: list[str],
                  settings: Settings) -> pd.DataFrame:
    return train.backtest(frame, cutoffs, feature_cols, settings.train.model_params(),
                          horizon_days=settings.labels.horizon_days, valid_cutoffs=settings.train.valid_cutoffs,
                          folds=settings.train.backtest_folds, calibration=settings.train.calibration)


def data_fingerprint(validated: ValidatedData) -> dict:
    """Row counts and content hashes of the validated inputs (logged with the model)."""
    out = {}
    for name, frame in validated.tables.items():
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        out[name] = {"rows": int(len(frame)), "sha256": digest[:16]}
    return out


@flow(name="validate")
def validate_flow(data_dir: Path | None, settings: Settings, out_dir: Path) -> ValidatedData:
    """Validate the input: quarantine bad rows with reasons, write the summary."""
    return validate_task(data_dir, settings, out_dir)


@task(cache_policy=NO_CACHE)
def training_set_task(tables: dict, settings: Settings) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """Labelled cutoffs -> observation table -> features joined to it."""
    horizon = settings.labels.horizon_days
    cutoffs = labels.labelled_cutoffs(tables, horizon, freq=settings.cutoffs.frequency,
                                      max_cutoffs=settings.cutoffs.max_cutoffs)
    frame = labels.build_training_set(tables, cutoffs, horizon_days=horizon, config=settings.feature_config())
    return frame, cutoffs


@flow(name="train")
def train_flow(data_dir: Path | None, settings: Settings, home: Path, tune_trials: int = 0) -> TrainResult:
    """validate -> labelled cutoffs -> labels -> features -> purged time split -> LightGBM ->
    calibration -> holdout metrics and baselines on the latest labelled cutoff -> backtest ->
    MLflow run + registered model (challenger; champion if it passes the gate)."""
    logger = get_run_logger()
    home = Path(home)
    validated = validate_task(data_dir, settings, home / "validation")
    tables = validated.sources  # a Parquet file clean as it is is read by the engine itself
    frame, cutoffs = training_set_task(tables, settings)
    split = train.split_cutoffs(cutoffs, horizon_days=settings.labels.horizon_days,
                                valid_cutoffs=settings.train.valid_cutoffs)
    skipped = build.skipped_groups(tables)
    for group, why in skipped.items():
        logger.warning("feature group %r skipped: %s", group, why)
    feature_cols = build.feature_columns(frame)
    params = settings.train.model_params()
    if tune_trials:
        params = tune_task(frame, split, feature_cols, settings, tune_trials, home)
    report = fit_evaluate_task(frame, split, feature_cols, settings, params)
    metrics = report.metrics
    backtest = backtest_task(frame, cutoffs, feature_cols, settings) if settings.train.backtest_folds else None
    cutoffs_used = {"train": [str(c.date()) for c in split.train], "valid": [str(c.date()) for c in split.valid],
                    "test": [str(split.test.date())]}
    logger.info("test cutoff %s: ROC-AUC %.3f, PR-AUC %.3f, ECE %.3f (BG/NBD %.3f, recency rule %.3f)",
                split.test.date(), metrics.get("test_roc_auc", float("nan")), metrics.get("test_pr_auc", float("nan")),
                metrics.get("test_ece", float("nan")), metrics.get("baseline_btyd_roc_auc", float("nan")),
                metrics.get("baseline_recency_roc_auc", float("nan")))

    test = frame[frame["cutoff"] == split.test]
    fingerprint = data_fingerprint(validated)
    plots_dir = home / "plots" / split.test.strftime("%Y-%m-%d")
    plots = evaluate.save_plots(report.test_scores["label"], report.test_scores["risk"], plots_dir,
                                baselines={k[9:]: report.test_scores[k].to_numpy() for k in report.test_scores
                                           if k in ("baseline_logistic", "baseline_btyd", "baseline_pnbd")})
    sample = test.sample(min(len(test), 2000), random_state=0)
    plots |= evaluate.save_shap_plots(report.model.predict_contributions(sample[feature_cols]), sample[feature_cols],
                                      {c: feature_group(c) for c in feature_cols}, plots_dir)
    card = model_card(model_name=settings.registry.model_name, horizon_days=settings.labels.horizon_days,
                      cutoffs=cutoffs_used, metrics=metrics, breakdowns=report.breakdowns, backtest=backtest,
                      fingerprint=fingerprint, skipped_groups=skipped, contractual=build.is_contractual(tables))
    artifacts = {"model_card.md": card, "feature_catalogue.csv": catalogue_frame(),
                 "data_fingerprint.json": json.dumps(fingerprint, indent=2), "cutoffs.json": json.dumps(cutoffs_used, indent=2),
                 "validation_summary.csv": validated.summary, **{f"{k}.png": v for k, v in plots.items()},
                 **{f"metrics_by_{k}.csv": v for k, v in report.breakdowns.items()}}
    if backtest is not None:
        artifacts["backtest.csv"] = backtest
    tracking_uri = registry.configure_tracking(home)
    logged = registry.log_training_run(
        report, experiment=settings.registry.experiment, model_name=settings.registry.model_name, home=home,
        params={**params, "tune_trials": tune_trials, "horizon_days": settings.labels.horizon_days,
                "active_window_days": settings.features.active_window_days, "features": len(feature_cols),
                "calibration": settings.train.calibration},
        config=settings.model_dump(),
        tags={"test_cutoff": str(split.test.date()), "data_dir": describe_source(settings.source, data_dir)},
        test_inputs=test[["customer_id", *feature_cols]], artifacts=artifacts, top_k=settings.score.top_reasons,
        gate_metric=settings.registry.gate_metric, gate_margin=settings.registry.gate_margin)
    logger.info("model version %s: %s", logged.version, logged.gate.reason)
    return TrainResult(run_id=logged.run_id, model_uri=logged.model_uri, version=logged.version,
                       tracking_uri=tracking_uri, metrics=metrics, cutoffs=cutoffs_used, skipped_groups=skipped,
                       promoted=logged.gate.promoted, gate_reason=logged.gate.reason, model_card=card,
                       backtest=backtest)


@task(cache_policy=NO_CACHE)
def scoring_features_task(tables: dict, as_of: pd.Timestamp, config: FeatureConfig, channels: list[str]) -> pd.DataFrame:
    return build.features_for_scoring(tables, as_of, config=config, channels=channels)


@task(cache_policy=NO_CACHE)
def lists_task(model, features: pd.DataFrame, as_of: pd.Timestamp, version: str | None, settings: Settings,
               contractual: bool) -> score.Lists:
    """The retention and win-back lists and the drivers across the base (``models.score.make_lists``)."""
    s, horizon = settings.score, settings.labels.horizon_days
    wanted = set(registry.input_columns(model)) | {"customer_id", "explain"}
    return score.make_lists(
        lambda frame: model.predict(registry.to_model_input(frame[[c for c in frame.columns if c in wanted]])),
        features.drop(columns="cutoff"), as_of=as_of,
        model_version=version, horizon_days=horizon, contractual=contractual, lapse=s.lapse_rule(horizon),
        rule_with_cancellations=s.lapsed.with_cancellations, rank_by=s.rank_by, tiers=s.tiers.model_dump(),
        actionable_share=s.actionable_share, explain_max=s.explain_max, explain_all=s.explain_all, actions=s.actions,
        top_k=s.top_reasons,
        risk_bounds=(s.risk_floor, s.risk_ceiling))


@flow(name="score")
def score_flow(data_dir: Path | None, out_dir: Path, settings: Settings, home: Path,
               as_of: pd.Timestamp | None = None, model_uri: str | None = None) -> ScoreResult:
    """validate -> champion model -> features as of ``as_of`` -> the retention list (clients who can
    still be kept: risk, reasons, actions) and the win-back list (lapsed clients) -> Parquet, CSV,
    Excel, summary.json and the HTML report under ``out_dir/history/<as_of>/``, copied to
    ``out_dir`` when it is the latest scoring there -> Prefect artifacts."""
    home, out_dir = Path(home), Path(out_dir)
    validated = validate_task(data_dir, settings, out_dir / "validation")
    tables = validated.sources  # a Parquet file clean as it is is read by the engine itself
    as_of = pd.Timestamp(as_of) if as_of is not None else labels.default_as_of(tables)
    warnings = labels.check_as_of(tables, as_of, settings.labels.horizon_days)
    registry.configure_tracking(home)
    model, version = registry.load_model(settings.registry.model_name, uri=model_uri)
    channels = build.channel_list(registry.input_columns(model))
    features = scoring_features_task(tables, as_of, settings.feature_config(), channels)
    at_risk, win_back, drivers = lists_task(model, features, as_of, version, settings, build.is_contractual(tables))
    metrics = registry.version_metrics(settings.registry.model_name, version)
    s = settings.score
    paths = report.write_outputs(at_risk, out_dir, model_version=version, metrics=metrics, as_of=as_of,
                                 win_back=win_back, drivers=drivers, horizon_days=settings.labels.horizon_days, currency=s.currency,
                                 capacity=s.tiers.capacity, keep_history=s.history)
    publish_artifacts(at_risk, win_back, as_of, version, s.currency)
    get_run_logger().info("scored %d clients as of %s (%d on the win-back list) -> %s", len(at_risk), as_of.date(),
                          len(win_back), paths["html"].parent)
    for warning in warnings:
        get_run_logger().warning(warning)
    return ScoreResult(parquet=paths["parquet"], csv=paths["csv"], xlsx=paths["xlsx"], html=paths["html"],
                       rows=len(at_risk), as_of=as_of, model_version=version, warnings=warnings,
                       win_back_parquet=paths["win_back_parquet"], win_back_csv=paths["win_back_csv"],
                       summary=paths["summary"], win_back_rows=len(win_back))


def publish_artifacts(at_risk: pd.DataFrame, win_back: pd.DataFrame, as_of: pd.Timestamp, version: str | None,
                      currency: str, top: int = 20) -> None:
    """The top of the list and a summary as Prefect artifacts (visible in the Prefect UI)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    head = at_risk.head(top)[["rank", "customer_id", "risk_in_words", "tier", "reason_1", "action_key"]]
    rows = [{k: ("" if v is None or v is pd.NA else str(v)) for k, v in r.items()} for r in head.to_dict("records")]
    create_table_artifact(key="at-risk-top", table=rows, description=f"Top {top} clients at risk as of {as_of.date()}")
    stages = report.stage_summary(at_risk, win_back).fillna("")
    lines = [f"# Retention list as of {as_of.date()} (model version {version})", "",
             f"- clients who can still be kept: {len(at_risk):,}",
             f"- high tier: {int((at_risk['tier'] == 'high').sum()):,}",
             f"- expected to leave within the horizon: {at_risk['risk'].sum():,.0f}",
             f"- value at risk: {report.money(float(at_risk['value_at_risk'].sum()), currency)}",
             f"- win-back list (lapsed clients): {len(win_back):,}", "", markdown_table(stages)]
    create_markdown_artifact(key="at-risk-summary", markdown="\n".join(lines))


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
