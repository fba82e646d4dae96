"""Prefect flows: each task calls one library function; the logic lives in features/ and models/.

The flows and steps are those of ``pipelines.orchestration``: Prefect flow and task runs where
there is an orchestrator, plain Python in a verb run from a terminal without a server.

Flows return plain results (paths, metrics) so the CLI and tests can read them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features import build, labels
from features.cache import FeatureCache
from features.config import FeatureConfig
from features.inputs import (ContractError, ValidatedData, describe_source, format_summary, gate_warnings,
                             validate_source, write_quarantine)
from models import backfill, candidates, evaluate, history, lineage, monitor, registry, report, score, train
from models.card import markdown_table, training_artifacts
from pipelines.orchestration import flow, orchestrated, retrying, run_flow, run_logger, step
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
    champion: str = "lightgbm"
    choice: str = ""
    candidates: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    horizon: evaluate.HorizonCheck | None = None
    frequency: str = "MS"


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


@step
def validate_task(data_dir: Path | None, settings: Settings, out_dir: Path) -> ValidatedData:
    """Read, map and validate the input (``data_dir`` or the settings' source); write the
    quarantine and summary under ``out_dir``; a bad extract stops here (``ContractError``)."""
    result, _ = retrying(validate_source, settings.source, settings.validation, data_dir, Path(out_dir),
                         what=f"reading {describe_source(settings.source, data_dir)}", **settings.retries.options())
    logger = run_logger()
    logger.info("validated %s\n%s", describe_source(settings.source, data_dir), format_summary(result))
    for warning in gate_warnings(result):
        logger.warning(warning)
    return result


@step
def features_task(tables: dict, cutoffs: list[pd.Timestamp], config: FeatureConfig,
                  population: pd.DataFrame | None = None, channels: list[str] | None = None) -> pd.DataFrame:
    return build.build_features(tables, cutoffs, config=config, population=population, channels=channels)


@step
def fit_evaluate_task(frame: pd.DataFrame, split: train.CutoffSplit, feature_cols: list[str],
                      settings: Settings, params: dict, contractual: bool, tuned: bool) -> candidates.TrainingReport:
    """Every candidate fitted, the champion chosen on the validation cutoffs, all measured on the test cutoff."""
    return candidates.fit_evaluate(frame, split, feature_cols, params, calibration=settings.train.calibration,
                                   capacity=settings.train.capacity, horizon_days=settings.labels.horizon_days,
                                   contractual=contractual, gate_metric=settings.registry.gate_metric,
                                   size_aware=not tuned)


@step
def tune_task(frame: pd.DataFrame, split: train.CutoffSplit, feature_cols: list[str], settings: Settings,
              n_trials: int, home: Path) -> dict:
    """Optuna search on the validation cutoffs; the trials are logged to MLflow."""
    from models.tune import tune

    best, trials = tune(frame, split, feature_cols, settings.train.model_params(), n_trials=n_trials,
                        seed=settings.train.seed)
    registry.configure_tracking(home)
    registry.log_trials(trials, experiment=settings.registry.experiment, home=home)
    run_logger().info("tuning: best validation ROC-AUC %.4f over %d trials", trials["valid_roc_auc"].max(), len(trials))
    return best


@step
def backtest_task(frame: pd.DataFrame, cutoffs: list[pd.Timestamp], feature_cols: list[str],
                  settings: Settings, contractual: bool) -> pd.DataFrame:
    return candidates.backtest(frame, cutoffs, feature_cols, settings.train.model_params(),
                               horizon_days=settings.labels.horizon_days, valid_cutoffs=settings.train.valid_cutoffs,
                               folds=settings.train.backtest_folds, calibration=settings.train.calibration,
                               contractual=contractual)


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


@step
def training_set_task(tables: dict, settings: Settings, home: Path | None = None) -> tuple[pd.DataFrame, train.CutoffPlan]:
    """Cutoffs adapted to the history -> observation table -> features joined to it (read
    from ``home``'s feature cache when the same inputs and config built it)."""
    return train.training_data(tables, horizon_days=settings.labels.horizon_days, frequency=settings.cutoffs.frequency,
                               max_cutoffs=settings.cutoffs.max_cutoffs, valid_cutoffs=settings.train.valid_cutoffs,
                               config=settings.feature_config(),
                               cache=settings.cache.feature_cache(home) if home is not None else None)


@flow(name="train")
def train_flow(data_dir: Path | None, settings: Settings, home: Path, tune_trials: int = 0) -> TrainResult:
    """validate -> cutoffs adapted to the history -> labels -> features -> purged time split ->
    every candidate (LightGBM, logistic regression, buy-till-you-die, recency, their stack) ->
    champion chosen on the validation cutoffs, calibrated there -> holdout metrics of every
    candidate on the latest labelled cutoff -> backtest -> MLflow run + registered champion
    (challenger; champion alias if it passes the gate)."""
    logger = run_logger()
    home = Path(home)
    fingerprint = None
    if settings.engine.kind == "dask":  # the same steps shard by shard on a Dask cluster
        from pipelines import engine

        validated, tables, frame, plan, fingerprint = engine.train_inputs(data_dir, settings, home)
    else:
        validated = validate_task(data_dir, settings, home / "validation")
        tables = validated.sources  # a Parquet file clean as it is is read by the engine itself
        frame, plan = training_set_task(tables, settings, home)
    split = plan.split
    for note in plan.notes:
        logger.warning(note)
    skipped = build.skipped_groups(tables)
    for group, why in skipped.items():
        logger.warning("feature group %r skipped: %s", group, why)
    contractual = build.is_contractual(tables)
    feature_cols = build.feature_columns(frame)
    horizon = evaluate.horizon_check(frame, settings.labels.horizon_days, test_cutoff=split.test)
    logger.info(horizon.summary())
    for warning in horizon.warnings:
        logger.warning(warning)
    params = settings.train.model_params()
    if tune_trials and split.complete:
        params = tune_task(frame, split, feature_cols, settings, tune_trials, home)
    report = fit_evaluate_task(frame, split, feature_cols, settings, params, contractual, bool(tune_trials and split.complete))
    metrics = report.metrics
    backtest = (backtest_task(frame, plan.cutoffs, feature_cols, settings, contractual)
                if settings.train.backtest_folds and split.complete else None)
    cutoffs_used = split.as_strings()
    logger.info("champion %s: %s", report.champion, report.choice)
    for note in report.notes:
        logger.warning(note)
    logger.info("test cutoff %s: ROC-AUC %.3f, PR-AUC %.3f, ECE %.3f (best baseline %.3f)", cutoffs_used["test"] or "none",
                metrics.get("test_roc_auc", float("nan")), metrics.get("test_pr_auc", float("nan")),
                metrics.get("test_ece", float("nan")), metrics.get("best_baseline_test_roc_auc", float("nan")))

    test = frame[frame["cutoff"] == split.test] if split.test is not None else frame
    fingerprint = fingerprint or data_fingerprint(validated)
    card, artifacts = training_artifacts(
        report, test, feature_cols, plots_dir=home / "plots" / (split.test.strftime("%Y-%m-%d") if split.test is not None
                                                                else "unlabelled"),
        model_name=settings.registry.model_name, horizon_days=settings.labels.horizon_days, cutoffs=cutoffs_used,
        backtest=backtest, fingerprint=fingerprint, skipped_groups=skipped, contractual=contractual,
        notes=[*plan.notes, *report.notes], horizon=horizon,
        frequency=train.FREQUENCY_NAMES.get(plan.frequency, plan.frequency), validation_summary=validated.summary,
        lapse=settings.score.lapse_rule(settings.labels.horizon_days),
        rule_with_cancellations=settings.score.lapsed.with_cancellations)
    tracking_uri = registry.configure_tracking(home)
    logged = registry.log_training_run(
        report, experiment=settings.registry.experiment, model_name=settings.registry.model_name, home=home,
        params={**params, "tune_trials": tune_trials, "horizon_days": settings.labels.horizon_days,
                "active_window_days": settings.features.active_window_days, "features": len(feature_cols),
                "calibration": settings.train.calibration, "champion": report.champion,
                "cutoff_frequency": plan.frequency},
        config=settings.model_dump(),
        tags={"test_cutoff": (cutoffs_used["test"] or [""])[0], "data_dir": describe_source(settings.source, data_dir),
              "champion": report.champion, "champion_choice": report.choice[:5000]},
        test_inputs=test.drop(columns=["label"], errors="ignore"), artifacts=artifacts, top_k=settings.score.top_reasons,
        gate_metric=settings.registry.gate_metric, gate_margin=settings.registry.gate_margin,
        require_approval=settings.registry.require_approval)
    logger.info("model version %s: %s", logged.version, logged.gate.reason)
    registry.record_lineage(logged.run_id, lineage.lineage(
        "train", read=lineage.inputs_read(settings.source, data_dir, validated, fingerprints=fingerprint),
        model={"name": settings.registry.model_name, "version": logged.version, "uri": logged.model_uri,
               "tracking_uri": tracking_uri}, settings_hash=lineage.settings_sha256(settings.model_dump(mode="json")),
        run={"mlflow_run_id": logged.run_id, "prefect_flow_run_id": _flow_run_id()},
        wrote={"model_uri": logged.model_uri, "version": logged.version, "artifacts": sorted(artifacts)}))
    return TrainResult(run_id=logged.run_id, model_uri=logged.model_uri, version=logged.version,
                       tracking_uri=tracking_uri, metrics=metrics, cutoffs=cutoffs_used, skipped_groups=skipped,
                       promoted=logged.gate.promoted, gate_reason=logged.gate.reason, model_card=card,
                       backtest=backtest, champion=report.champion, choice=report.choice,
                       candidates=report.candidates, notes=[*plan.notes, *report.notes], horizon=horizon,
                       frequency=plan.frequency)


@step
def scoring_features_task(tables: dict, as_of: pd.Timestamp, config: FeatureConfig, channels: list[str],
                          cache: FeatureCache | None = None) -> pd.DataFrame:
    """The features of everyone scored at ``as_of`` (read from ``cache`` when the same inputs
    and config built them)."""
    return (cache or FeatureCache.off()).cached(build.features_for_scoring, tables, as_of, config=config,
                                                channels=channels)


@step
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
        actionable_share=s.actionable_share, explain_max=s.explain_max, explain_min=s.explain_min,
        explain_all=s.explain_all, actions=s.actions,
        top_k=s.top_reasons,
        risk_bounds=(s.risk_floor, s.risk_ceiling))


def with_model_horizon(settings: Settings, model_uri: str | None = None,
                       version: str | None = None) -> tuple[Settings, list[str]]:
    """``settings`` with the label horizon of the model that scores (its training run's), and a
    note when the config says otherwise: the features (the buy-till-you-die probabilities over
    the horizon), the lapse rule and every "within N days" must be the model's, or its risks
    are read on the wrong scale."""
    trained = registry.trained_horizon(settings.registry.model_name, uri=model_uri, version=version)
    configured = settings.labels.horizon_days
    if trained is None or trained == configured:
        return settings, []
    return settings.with_overrides(**{"labels.horizon_days": trained}), [
        f"the model was trained for a {trained}-day horizon but labels.horizon_days is {configured}: scored with "
        f"the model's {trained} days (set labels.horizon_days: {trained} in the config to match)"]


@flow(name="score")
def score_flow(data_dir: Path | None, out_dir: Path, settings: Settings, home: Path,
               as_of: pd.Timestamp | None = None, model_uri: str | None = None,
               validated: ValidatedData | None = None) -> ScoreResult:
    """validate -> champion model -> features as of ``as_of`` -> the retention list (clients who can
    still be kept: risk, reasons, actions) and the win-back list (lapsed clients) -> Parquet, CSV,
    Excel, summary.json, the HTML report, lineage.json and the validation report, published
    as one set into ``out_dir/history/<as_of>/`` and shown at ``out_dir`` when it is the latest
    scoring there (``models.history``) -> Prefect artifacts. ``validated``: an input
    already validated (a backfill validates once), its report copied into the set."""
    home, out_dir = Path(home), Path(out_dir)
    registry.configure_tracking(home)
    settings, horizon_notes = with_model_horizon(settings, model_uri)
    staging = history.open_staging(out_dir)  # the set is built here and published as one
    try:
        if settings.engine.kind == "dask":  # the same steps shard by shard on a Dask cluster
            from pipelines import engine

            as_of, warnings, version, (at_risk, win_back, drivers), validated = engine.score_lists(
                data_dir, settings, home, staging, as_of, model_uri)
        elif validated is None:
            validated = validate_task(data_dir, settings, staging / "validation")
        else:
            write_quarantine(validated, staging / "validation")
    except ContractError:
        history.keep_rejected(staging, out_dir)
        raise
    tracking_uri = registry.configure_tracking(home)
    if settings.engine.kind != "dask":
        tables = validated.sources  # a Parquet file clean as it is is read by the engine itself
        as_of = pd.Timestamp(as_of) if as_of is not None else labels.default_as_of(tables)
        warnings = labels.check_as_of(tables, as_of, settings.labels.horizon_days)
        model, version = retrying(registry.load_model, settings.registry.model_name, uri=model_uri,
                                  what="loading the model", **settings.retries.options())
        channels = build.channel_list(registry.input_columns(model))
        features = scoring_features_task(tables, as_of, settings.feature_config(), channels,
                                         settings.cache.feature_cache(home))
        at_risk, win_back, drivers = lists_task(model, features, as_of, version, settings, build.is_contractual(tables))
    metrics = registry.version_metrics(settings.registry.model_name, version)
    cautions = report.model_cautions(metrics, registry.version_params(settings.registry.model_name, version).get("champion"))
    warnings = [*horizon_notes, *warnings, *cautions]
    s = settings.score
    paths = report.write_outputs(at_risk, out_dir, model_version=version, metrics=metrics, as_of=as_of,
                                 win_back=win_back, drivers=drivers, horizon_days=settings.labels.horizon_days, currency=s.currency,
                                 capacity=s.tiers.capacity, keep_history=s.history, staging=staging, cautions=cautions,
                                 lineage=lineage.score_lineage(
                                     settings.source, data_dir, validated, settings=settings.model_dump(mode="json"),
                                     model_name=settings.registry.model_name, model_uri=model_uri, version=version,
                                     tracking_uri=tracking_uri, as_of=as_of, run={"prefect_flow_run_id": _flow_run_id()}))
    publish_artifacts(at_risk, win_back, as_of, version, s.currency)
    publish_lineage(paths["lineage"])
    run_logger().info("scored %d clients as of %s (%d on the win-back list) -> %s", len(at_risk), as_of.date(),
                      len(win_back), paths["html"].parent)
    for warning in warnings:
        run_logger().warning(warning)
    return ScoreResult(parquet=paths["parquet"], csv=paths["csv"], xlsx=paths["xlsx"], html=paths["html"],
                       rows=len(at_risk), as_of=as_of, model_version=version, warnings=warnings,
                       win_back_parquet=paths["win_back_parquet"], win_back_csv=paths["win_back_csv"],
                       summary=paths["summary"], win_back_rows=len(win_back))


def publish_artifacts(at_risk: pd.DataFrame, win_back: pd.DataFrame, as_of: pd.Timestamp, version: str | None,
                      currency: str, top: int = 20) -> None:
    """The top of the list and a summary as Prefect artifacts (visible in the Prefect UI);
    nothing outside a flow run (a verb run as plain Python has no server to publish to)."""
    if not orchestrated():
        return
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


@dataclass
class BackfillResult:
    outcomes: list[backfill.DateOutcome]

    @property
    def scored(self) -> list[ScoreResult]:
        return [o.result for o in self.outcomes if o.scored]

    @property
    def skipped(self) -> dict[str, str]:
        return {str(o.as_of.date()): o.reason for o in self.outcomes if not o.scored}


@flow(name="backfill")
def backfill_flow(data_dir: Path | None, out_dir: Path, settings: Settings, home: Path, dates: list[pd.Timestamp],
                  model_uri: str | None = None) -> BackfillResult:
    """validate once -> each date oldest first (``models.backfill.run_backfill``): the as-of
    rules (a refused date is skipped with its reason), then the score flow's steps with the
    validated input (features as of the date, lists, the set into ``out_dir/history/<as_of>/``;
    the latest date ends at ``out_dir``)."""
    home, out_dir = Path(home), Path(out_dir)
    validated = validate_task(data_dir, settings, home / "validation" / "backfill")
    logger = run_logger()

    def progress(i: int, n: int, o: backfill.DateOutcome) -> None:
        if o.scored:
            logger.info("backfill %d/%d: %s scored, %d clients -> %s", i, n, o.as_of.date(), o.result.rows,
                        o.result.parquet.parent)
        else:
            logger.warning("backfill %d/%d: %s skipped: %s", i, n, o.as_of.date(), o.reason)
    outcomes = backfill.run_backfill(
        dates,
        check=lambda day: labels.check_as_of(validated.sources, day, settings.labels.horizon_days, name="date"),
        score=lambda day: score_flow.fn(data_dir, out_dir, settings, home, as_of=day, model_uri=model_uri,
                                        validated=validated),
        progress=progress)
    return BackfillResult(outcomes)


def _flow_run_id() -> str | None:
    if not orchestrated():
        return None
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def publish_lineage(path: Path) -> None:
    """The scoring's lineage.json as a Prefect artifact (key ``lineage``), inside a flow run."""
    if not orchestrated():
        return
    from prefect.artifacts import create_markdown_artifact

    doc = lineage.read_lineage(Path(path).parent)
    if doc is not None:
        create_markdown_artifact(key="lineage", markdown=lineage.markdown(doc))


@step
def simulate_task(customers: int, seed: int, out_dir: Path) -> dict[str, Path]:
    from features.simulate import simulate, write_dataset

    return write_dataset(simulate(customers, seed), Path(out_dir))


@flow(name="demo")
def demo_flow(settings: Settings, home: Path) -> tuple[TrainResult, ScoreResult]:
    """simulate -> train (validate, features, labels, LightGBM, MLflow) -> score the latest date."""
    home = Path(home)
    data_dir = home / "demo" / "data"
    simulate_task(settings.demo.customers, settings.demo.seed, data_dir)
    trained = run_flow(train_flow, data_dir, settings, home)
    scored = run_flow(score_flow, data_dir, home / "demo" / "at_risk", settings, home)
    return trained, scored


@dataclass
class MonitorResult:
    json: Path
    html: Path
    as_of: pd.Timestamp
    model_version: str | None
    alerts: list[str]
    report: dict


@step
def realised_task(tables: dict, scorings: list, horizon_days: int, active_window_days: int) -> list[dict]:
    return monitor.realised_history(tables, scorings, horizon_days=horizon_days, data_end=labels.data_end(tables),
                                    active_window_days=active_window_days)


@flow(name="monitor")
def monitor_flow(data_dir: Path | None, lists_dir: Path, settings: Settings, home: Path,
                 as_of: pd.Timestamp | None = None) -> MonitorResult:
    """validate -> the kept lists (``lists_dir/history``) -> drift of the latest scoring against
    its model's training reference, label-free estimate, realised figures of every list whose
    horizon has closed -> MLflow metric histories per model version -> monitor.json / .html;
    alerts as a Prefect event and artifact."""
    home, lists_dir = Path(home), Path(lists_dir)
    validated = validate_task(data_dir, settings, home / "validation" / "monitor")
    tables = validated.sources
    scorings = monitor.select_scorings(monitor.scoring_history(lists_dir), as_of)
    latest_as_of, latest = scorings[-1]
    versions = latest["model_version"].dropna()
    version = str(versions.iloc[0]) if len(versions) else None
    registry.configure_tracking(home)
    settings, _ = with_model_horizon(settings, version=version)  # the horizon of the lists' model
    name = settings.registry.model_name
    reference = registry.load_reference(name, version)
    channels = build.channel_list(reference["features"]) if reference else None
    features = features_task(tables, [latest_as_of], settings.feature_config(), channels=channels)
    realised = realised_task(tables, scorings, settings.labels.horizon_days, settings.features.active_window_days)
    m = settings.monitor
    doc = monitor.monitor_report(as_of=latest_as_of, model_version=version, reference=reference, features=features,
                                 listed=latest, realised=realised,
                                 champion_roc_auc=registry.version_metrics(name, version).get("test_roc_auc"),
                                 psi_warn=m.psi_warn, psi_alert=m.psi_alert, max_auc_drop=m.max_auc_drop)
    registry.log_monitoring(doc, experiment=settings.registry.experiment, model_name=name, home=home)
    paths = monitor.write_monitor(doc, lists_dir)
    publish_monitoring(doc)
    return MonitorResult(json=paths["json"], html=paths["html"], as_of=latest_as_of, model_version=version,
                         alerts=doc["alerts"], report=doc)


def publish_monitoring(doc: dict) -> None:
    """The alerts as a Prefect event (``churn.monitor.alert``, for automations) and the
    summary as a Prefect artifact; nothing outside a flow run (the alerts are in monitor.json
    and printed by the verb)."""
    if not orchestrated():
        return
    from prefect.artifacts import create_markdown_artifact
    from prefect.events import emit_event

    lines = [f"# Monitoring as of {doc['as_of']} (model version {doc['model_version']})", ""]
    lines += [f"- ALERT: {a}" for a in doc["alerts"]] or ["- no alert"]
    e = doc["expected"]
    lines += ["", f"- estimated ROC-AUC {e['roc_auc']}, PR-AUC {e['pr_auc']}, leaver share {e['positive_rate']}",
              f"- features with a large shift: {sum(1 for d in doc['drift'].values() if d['flag'])} of {len(doc['drift'])}"]
    create_markdown_artifact(key="monitoring", markdown="\n".join(lines))
    if doc["alerts"]:
        emit_event(event="churn.monitor.alert", resource={"prefect.resource.id": f"churn.model.version.{doc['model_version']}"},
                   payload={"as_of": doc["as_of"], "alerts": doc["alerts"]})
