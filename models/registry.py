"""The one module that talks to MLflow: tracking runs, logging the model, the registry.

Tracking defaults to a SQLite store and an artifact folder under the run home
(``.churn/mlflow``); ``MLFLOW_TRACKING_URI`` wins when set. Nothing is configured on
import: flows call ``configure_tracking`` first.

Registry policy: every new version gets the alias ``challenger``. It becomes ``champion``
when there is no champion yet, or when it is at least as good as the current champion on
the same test cutoff (the champion is re-scored on the challenger's test rows; the metric
and the margin come from the config). The decision is recorded as version tags.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema
from sklearn.metrics import average_precision_score, roc_auc_score

import features.btyd
import models.baselines
import models.serving
from models.candidates import serving_model

CHAMPION = "champion"
CHALLENGER = "challenger"
PASS_THROUGH = ("customer_id", "cutoff", "explain")
GATE_METRICS = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score}


def configure_tracking(home: Path) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or at a SQLite store under ``home``; return the
    URI as it may be printed (``shown_uri``: a password masked)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        home = Path(home).resolve()
        (home / "mlflow").mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return shown_uri(uri)


def shown_uri(uri: str) -> str:
    """A tracking URI fit to print: ``postgresql+psycopg2://user:***@host/db`` (a user's password,
    and query parameters naming a password, secret, token or key, masked); paths as they are."""
    uri = str(uri)
    if "://" not in uri or ("@" not in uri and "?" not in uri):
        return uri
    from features.inputs.sql import redact_url

    return redact_url(uri)


def ensure_experiment(name: str, home: Path) -> str:
    """The experiment's id, creating it with its artifacts under ``home/mlflow/artifacts``."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = (Path(home).resolve() / "mlflow" / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    metric: str
    challenger_value: float
    champion_version: str | None
    champion_value: float | None
    reason: str


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str
    version: str
    aliases: tuple[str, ...]
    tracking_uri: str
    gate: GateDecision


def pip_requirements() -> list[str]:
    """What a consumer needs to load the served model (pinned to this environment)."""
    import lightgbm
    import scipy

    return [f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}", f"cloudpickle=={cloudpickle.__version__}", f"scipy=={scipy.__version__}"]


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Infer the signature; identifying columns (customer_id, cutoff) are optional pass-through."""
    inferred = infer_signature(example, output)
    inputs = Schema([ColSpec(c.type, c.name, required=c.name not in PASS_THROUGH) for c in inferred.inputs.inputs])
    outputs = Schema([ColSpec(c.type, c.name, required=False) for c in inferred.outputs.inputs])
    return ModelSignature(inputs=inputs, outputs=outputs)


def to_model_input(features: pd.DataFrame) -> pd.DataFrame:
    """A feature table as the served model's signature expects it: categoricals as text."""
    out = features.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype("object").where(out[c].notna(), "none").astype(str)
        elif c == "cutoff":
            out[c] = out[c].astype(str)
    return out


def log_training_run(report, *, experiment: str, model_name: str, home: Path, params: dict, config: dict,
                     tags: dict[str, str], test_inputs: pd.DataFrame, artifacts: dict[str, pd.DataFrame | str | Path] | None = None,
                     top_k: int = 3, gate_metric: str = "roc_auc", gate_margin: float = 0.0,
                     require_approval: bool = False) -> LoggedModel:
    """Log one training (a ``models.candidates.TrainingReport``) as an MLflow run, register the
    champion candidate, give it the ``challenger`` alias and apply the champion gate.

    ``test_inputs``: the test cutoff's feature rows (with customer_id), in the order of
    ``report.test_scores`` (any extra columns are ignored); used for the input example and to
    re-score the registered champion. With no labelled test cutoff, any feature rows: the gate
    then promotes only a first model. The model is a pyfunc: feature table in, calibrated
    ``risk`` and the top reason groups out. Its code (``models.serving``, and for a Pareto/NBD
    scorer ``models.baselines`` and ``features.btyd``) is pickled by value, so loading it needs
    no code from this repository.
    """
    experiment_id = ensure_experiment(experiment, home)
    served = serving_model(report, top_k=top_k)
    wanted = ["customer_id", *[c for c in served.inputs if c != "customer_id"]]
    example = to_model_input(test_inputs[[c for c in wanted if c in test_inputs.columns]].head(5)).assign(explain=True)
    metrics = {k: float(v) for k, v in report.metrics.items() if v is not None and np.isfinite(v)}
    by_value = (models.serving, models.baselines, features.btyd)
    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            mlflow.log_dict(config, "config.json")
            for name, value in (artifacts or {}).items():
                _log_artifact(name, value)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=served, signature=_signature(example, served(example)),
                input_example=example, pip_requirements=pip_requirements())
    finally:
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)
    client = MlflowClient()
    version = str(mlflow.register_model(info.model_uri, model_name).version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    labels = report.test_scores["label"].to_numpy()
    value = (float(GATE_METRICS[gate_metric](labels, report.test_scores["risk"])) if len(np.unique(labels)) == 2
             else float("nan"))
    decision = apply_gate(model_name, version, challenger_value=value,
                          test_inputs=test_inputs, labels=labels, metric=gate_metric, margin=gate_margin,
                          require_approval=require_approval)
    aliases = (CHALLENGER, CHAMPION) if decision.promoted else (CHALLENGER,)
    return LoggedModel(run_id=run.info.run_id, model_uri=info.model_uri, version=version, aliases=aliases,
                       tracking_uri=shown_uri(mlflow.get_tracking_uri()), gate=decision)


def record_lineage(run_id: str, doc: dict) -> None:
    """A run's lineage (``models.lineage``) as ``lineage.*`` tags and the artifact ``lineage.json``."""
    from models.lineage import mlflow_tags

    client = MlflowClient()
    for key, value in mlflow_tags(doc).items():
        client.set_tag(run_id, key, value)
    client.log_text(run_id, run_json(doc), "lineage.json")


def log_trials(trials: pd.DataFrame, *, experiment: str, home: Path) -> str:
    """A hyper-parameter search as a parent run with one nested run per trial; returns the parent's id."""
    experiment_id = ensure_experiment(experiment, home)
    with mlflow.start_run(experiment_id=experiment_id, run_name="tuning") as parent:
        best = trials.loc[trials["valid_roc_auc"].idxmax()]
        mlflow.log_metric("best_valid_roc_auc", float(best["valid_roc_auc"]))
        mlflow.log_params({f"best_{k}": v for k, v in best.items() if k not in ("trial", "valid_roc_auc")})
        for row in trials.to_dict("records"):
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial {row['trial']}", nested=True):
                mlflow.log_params({k: v for k, v in row.items() if k not in ("valid_roc_auc",)})
                mlflow.log_metric("valid_roc_auc", float(row["valid_roc_auc"]))
    return parent.info.run_id


def _log_artifact(name: str, value) -> None:
    if isinstance(value, Path):
        mlflow.log_artifact(str(value))
    elif isinstance(value, pd.DataFrame):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            value.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
    else:
        mlflow.log_text(value, name)


def _champion_version(model_name: str):
    try:
        return MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


AWAITING = "awaiting approval"


def apply_gate(model_name: str, version: str, *, challenger_value: float, test_inputs: pd.DataFrame, labels,
               metric: str = "roc_auc", margin: float = 0.0, require_approval: bool = False) -> GateDecision:
    """Promote ``version`` to champion if there is none, or if it scores at least the champion's
    value + ``margin`` on the same test rows. Records the decision as version tags. With
    ``require_approval``, a version that passes waits (``gate_decision`` = awaiting approval)
    until ``approve`` makes it champion."""
    client = MlflowClient()
    champion = _champion_version(model_name)
    if champion is None:
        decision = GateDecision(True, metric, challenger_value, None, None, "first model: no champion yet")
    elif not np.isfinite(challenger_value):
        decision = GateDecision(False, metric, challenger_value, str(champion.version), None,
                                f"no labelled test cutoff with both outcomes: the challenger cannot be compared with "
                                f"champion v{champion.version}, which stays")
    else:
        try:
            loaded = mlflow.pyfunc.load_model(f"models:/{model_name}/{champion.version}")
            champion_risk = loaded.predict(to_model_input(test_inputs).assign(explain=False))["risk"].to_numpy()
            champion_value = float(GATE_METRICS[metric](labels, champion_risk))
        except Exception as exc:  # the champion cannot read this feature table: it cannot defend its title
            decision = GateDecision(True, metric, challenger_value, str(champion.version), None,
                                    f"champion v{champion.version} could not score this test cutoff ({type(exc).__name__}: {exc})")
        else:
            promoted = challenger_value >= champion_value + margin
            verdict = "at least as good as" if promoted else "worse than"
            decision = GateDecision(promoted, metric, challenger_value, str(champion.version), champion_value,
                                    f"{metric} {challenger_value:.4f} is {verdict} champion v{champion.version}'s "
                                    f"{champion_value:.4f} + margin {margin} on the same test rows")
    waits = decision.promoted and require_approval
    if waits:
        decision = GateDecision(False, decision.metric, decision.challenger_value, decision.champion_version,
                                decision.champion_value, f"{decision.reason}; passed the gate, awaiting approval "
                                f"(churn registry approve {version})")
    tags = {"gate_metric": metric, "gate_challenger_value": f"{challenger_value:.6f}", "gate_decision":
            AWAITING if waits else "promoted" if decision.promoted else "refused", "gate_reason": decision.reason}
    if decision.champion_value is not None:
        tags["gate_champion_value"] = f"{decision.champion_value:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    if decision.promoted:
        promote(model_name, version, reason=decision.reason)
    return decision


def promote(model_name: str, version: str, *, reason: str = "promoted by hand") -> None:
    """Make ``version`` the champion, remembering the one it replaces (for rollback)."""
    client = MlflowClient()
    client.get_model_version(model_name, str(version))  # raises if it does not exist
    previous = _champion_version(model_name)
    if previous is not None and str(previous.version) != str(version):
        client.set_model_version_tag(model_name, str(version), "previous_champion", str(previous.version))
    client.set_model_version_tag(model_name, str(version), "champion_reason", reason)
    client.set_registered_model_alias(model_name, CHAMPION, str(version))


def approve(model_name: str, version: str) -> str:
    """Make a version that passed the gate and awaits approval the champion; returns the reason
    recorded. LookupError for an unknown version, ValueError for one that does not await approval."""
    client = MlflowClient()
    try:
        found = client.get_model_version(model_name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        raise LookupError(f"model {model_name!r} has no version {version}") from exc
    decision = found.tags.get("gate_decision")
    if decision != AWAITING:
        raise ValueError(f"version {version} does not await approval (its gate decision: {decision or 'none'}); "
                         f"`churn registry promote {version}` makes any version champion")
    reason = f"approved by hand after passing the gate ({found.tags.get('gate_reason', '')})"
    promote(model_name, str(version), reason=reason)
    client.set_model_version_tag(model_name, str(version), "gate_decision", "approved")
    return reason


def awaiting_approval(model_name: str) -> list[str]:
    """The versions that passed the gate and wait for ``approve``."""
    try:
        found = MlflowClient().search_model_versions(f"name = '{model_name}'")
    except mlflow.exceptions.MlflowException:
        return []
    return sorted((str(v.version) for v in found if v.tags.get("gate_decision") == AWAITING), key=int)


def rollback(model_name: str) -> tuple[str, str]:
    """Give the champion alias back to the version the current champion replaced.
    Returns (from_version, to_version)."""
    client = MlflowClient()
    current = _champion_version(model_name)
    if current is None:
        raise LookupError(f"model {model_name!r} has no champion to roll back")
    previous = current.tags.get("previous_champion")
    if not previous:
        raise LookupError(f"champion v{current.version} of {model_name!r} replaced no earlier champion: nothing to roll back to")
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    client.set_model_version_tag(model_name, previous, "champion_reason", f"rollback from v{current.version}")
    return str(current.version), str(previous)


def list_versions(model_name: str) -> pd.DataFrame:
    """Every version of the registered model with its aliases, test metrics and gate decision."""
    client = MlflowClient()
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(model_name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in client.search_model_versions(f"name = '{model_name}'"):
        run = client.get_run(v.run_id) if v.run_id else None
        m = run.data.metrics if run else {}
        rows.append({"version": int(v.version), "aliases": ",".join(sorted(aliases.get(str(v.version), []))),
                     "created": pd.Timestamp(v.creation_timestamp, unit="ms").strftime("%Y-%m-%d %H:%M"),
                     "test_cutoff": (run.data.tags.get("test_cutoff") if run else None),
                     "test_roc_auc": m.get("test_roc_auc"), "test_pr_auc": m.get("test_pr_auc"),
                     "gate": v.tags.get("gate_decision"), "run_id": v.run_id})
    return pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True) if rows else pd.DataFrame(rows)


def _version_run(model_name: str, version: str | None):
    """The training run (``mlflow.entities.Run``) of a registered version, or None when unknown."""
    if version is None:
        return None
    client = MlflowClient()
    try:
        run_id = client.get_model_version(model_name, str(version)).run_id
        return client.get_run(run_id) if run_id else None
    except mlflow.exceptions.MlflowException:
        return None


def version_metrics(model_name: str, version: str | None) -> dict[str, float]:
    """The training-run metrics of a registered version (empty when unknown)."""
    run = _version_run(model_name, version)
    return dict(run.data.metrics) if run else {}


def version_params(model_name: str, version: str | None) -> dict[str, str]:
    """The training-run params of a registered version (empty when unknown)."""
    run = _version_run(model_name, version)
    return dict(run.data.params) if run else {}


def trained_horizon(model_name: str, *, uri: str | None = None, version: str | None = None,
                    alias: str = CHAMPION) -> int | None:
    """The label horizon (days) a registered model was trained for: its training run's
    ``horizon_days`` param. The model is ``version``, else ``uri`` (``models:/name/3``,
    ``models:/name@alias``, ``runs:/<id>/model``), else ``models:/<model_name>@<alias>``.
    None when it cannot be told (no such model, a model logged elsewhere)."""
    if version is not None:
        value = version_params(model_name, version).get("horizon_days")
        return int(value) if value else None
    client = MlflowClient()
    try:
        if uri is None or uri.startswith("models:/"):
            name, at, rest = (uri[len("models:/"):] if uri else f"{model_name}@{alias}").partition("@")
            if at:
                run_id = client.get_model_version_by_alias(name, rest).run_id
            else:
                name, _, number = name.rstrip("/").rpartition("/")
                run_id = client.get_model_version(name, number).run_id
        elif uri.startswith("runs:/"):
            run_id = uri[len("runs:/"):].split("/", 1)[0]
        else:
            return None
        value = client.get_run(run_id).data.params.get("horizon_days") if run_id else None
        return int(value) if value else None
    except (mlflow.exceptions.MlflowException, ValueError, OSError):
        return None


def download_artifacts(model_name: str, version: str, dst: Path) -> Path:
    """The training run's artifacts (plots, model card, ...) of a registered version, copied to ``dst``."""
    run_id = MlflowClient().get_model_version(model_name, str(version)).run_id
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="", dst_path=str(dst)))


def input_columns(loaded) -> list[str]:
    """The column names of a loaded pyfunc's input signature."""
    return loaded.metadata.get_input_schema().input_names()


def load_model(model_name: str, *, alias: str = CHAMPION, uri: str | None = None):
    """Load the registered pyfunc (``models:/<name>@<alias>``, or an explicit ``uri``) and its version."""
    uri = uri or f"models:/{model_name}@{alias}"
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        pending = awaiting_approval(model_name) if alias == CHAMPION and not uri.startswith(("runs:", "/")) else []
        if pending:
            raise LookupError(f"no champion yet: version(s) {', '.join(pending)} passed the gate and await approval "
                              f"(churn registry approve {pending[-1]})") from exc
        raise LookupError(f"no model at {uri} in {shown_uri(mlflow.get_tracking_uri())}: train one first with "
                          f"`churn train --data DIR` ({exc.message})") from exc
    version = None
    if uri.startswith("models:/") and "@" in uri:
        version = str(MlflowClient().get_model_version_by_alias(model_name, alias).version)
    elif uri.startswith("models:/"):
        version = uri.rsplit("/", 1)[-1]
    return loaded, version


def run_json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)


REFERENCE_ARTIFACT = "monitoring_reference.json"


def load_reference(model_name: str, version: str | None) -> dict | None:
    """The monitoring reference stored with a registered version at training time
    (``models.monitor.reference_profile``); None when the version has none."""
    if version is None:
        return None
    client = MlflowClient()
    try:
        run_id = client.get_model_version(model_name, str(version)).run_id
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_ARTIFACT}")
    except (mlflow.exceptions.MlflowException, OSError, ValueError):
        return None


def log_monitoring(report: dict, *, experiment: str, model_name: str, home: Path) -> None:
    """The realised figures of each closed list, as metric histories against the model version
    that made the list (one run per version in ``<experiment>-monitoring``, tagged with the
    version; the step is the list's date as YYYYMMDD, logged once per date), and the latest
    estimate and drift against the latest list's version."""
    experiment_id = ensure_experiment(f"{experiment}-monitoring", home)
    client = MlflowClient()

    def run_of(version: str) -> str:
        found = client.search_runs([experiment_id], f"tags.model_version = '{version}' and tags.model_name = '{model_name}'",
                                   max_results=1)
        if found:
            return found[0].info.run_id
        return client.create_run(experiment_id, tags={"model_version": version, "model_name": model_name,
                                                      "mlflow.runName": f"monitor {model_name} v{version}"}).info.run_id

    def log(run_id: str, step: int, values: dict) -> None:
        marker = next(iter(values))  # a date already logged is not logged again
        if step in {m.step for m in client.get_metric_history(run_id, marker)}:
            return
        for key, value in values.items():
            if value is not None and np.isfinite(value):
                client.log_metric(run_id, key, float(value), step=step)

    step = lambda as_of: int(str(as_of).replace("-", ""))  # noqa: E731
    for r in report["realised"]:
        if r.get("model_version") is not None:
            log(run_of(str(r["model_version"])), step(r["as_of"]),
                {f"realised_{k}": r.get(k) for k in ("rows", "roc_auc", "pr_auc", "ece", "precision_high_tier", "positive_rate",
                                                     "untouched_roc_auc")} | {"estimated_roc_auc": r.get("expected_roc_auc")})
    if report.get("model_version") is not None:
        drifted = sum(1 for d in report["drift"].values() if d["flag"])
        log(run_of(str(report["model_version"])), step(report["as_of"]),
            {f"expected_{k}": v for k, v in report["expected"].items()} | {"drifted_features": drifted,
                                                                            "score_psi": report["score_drift"].get("psi")})
