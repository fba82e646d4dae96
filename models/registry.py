"""The one module that talks to MLflow: tracking runs, logging the model, the registry.

Tracking defaults to a SQLite store and an artifact folder under the run home
(``.churn/mlflow``); ``MLFLOW_TRACKING_URI`` wins when set. Nothing is configured on
import: flows call ``configure_tracking`` first.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema

import models.serving
from models.explain import serving_model
from models.train import ChurnClassifier

CHAMPION = "champion"
CHALLENGER = "challenger"
PASS_THROUGH = ("customer_id", "cutoff")


def configure_tracking(home: Path) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or at a SQLite store under ``home``; return the URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        home = Path(home).resolve()
        (home / "mlflow").mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str, home: Path) -> str:
    """The experiment's id, creating it with its artifacts under ``home/mlflow/artifacts``."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = (Path(home).resolve() / "mlflow" / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str
    version: str
    aliases: tuple[str, ...]
    tracking_uri: str


def pip_requirements() -> list[str]:
    """What a consumer needs to load the served model (pinned to this environment)."""
    import lightgbm
    import numpy
    import pandas

    return [f"lightgbm=={lightgbm.__version__}", f"pandas=={pandas.__version__}",
            f"numpy=={numpy.__version__}", f"cloudpickle=={cloudpickle.__version__}"]


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Infer the signature; identifying columns (customer_id, cutoff) are optional pass-through."""
    inferred = infer_signature(example, output)
    inputs = Schema([ColSpec(c.type, c.name, required=c.name not in PASS_THROUGH) for c in inferred.inputs.inputs])
    outputs = Schema([ColSpec(c.type, c.name, required=False) for c in inferred.outputs.inputs])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_training_run(model: ChurnClassifier, *, experiment: str, model_name: str, home: Path,
                     params: dict, metrics: dict[str, float], config: dict, tags: dict[str, str],
                     input_example: pd.DataFrame, artifacts: dict[str, pd.DataFrame | str] | None = None,
                     top_k: int = 3) -> LoggedModel:
    """Log one training as an MLflow run, register the model and give it its aliases.

    The model is a pyfunc: feature table in, ``risk`` and the top reason groups out. Its code
    (``models.serving``) is pickled by value, so loading it needs no code from this repository.
    The new version is ``challenger``; it becomes ``champion`` (this foundation has no gate yet:
    the latest trained model serves).
    """
    experiment_id = ensure_experiment(experiment, home)
    served = serving_model(model, top_k=top_k)
    cloudpickle.register_pickle_by_value(models.serving)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            mlflow.log_dict(config, "config.json")
            for name, value in (artifacts or {}).items():
                if isinstance(value, pd.DataFrame):
                    with tempfile.TemporaryDirectory() as tmp:
                        path = Path(tmp) / name
                        value.to_csv(path, index=False)
                        mlflow.log_artifact(str(path))
                else:
                    mlflow.log_text(value, name)
            example = input_example.copy()
            for c in example.columns:
                if isinstance(example[c].dtype, pd.CategoricalDtype):
                    example[c] = example[c].astype("object").fillna("none").astype(str)
            signature = _signature(example, served(example))
            info = mlflow.pyfunc.log_model(
                name="model", python_model=served, signature=signature, input_example=example,
                pip_requirements=pip_requirements())
    finally:
        cloudpickle.unregister_pickle_by_value(models.serving)
    client = MlflowClient()
    version = mlflow.register_model(info.model_uri, model_name).version
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    client.set_registered_model_alias(model_name, CHAMPION, version)
    return LoggedModel(run_id=run.info.run_id, model_uri=info.model_uri, version=str(version),
                       aliases=(CHALLENGER, CHAMPION), tracking_uri=mlflow.get_tracking_uri())


def input_columns(loaded) -> list[str]:
    """The column names of a loaded pyfunc's input signature."""
    return loaded.metadata.get_input_schema().input_names()


def load_model(model_name: str, *, alias: str = CHAMPION, uri: str | None = None):
    """Load the registered pyfunc (``models:/<name>@<alias>``, or an explicit ``uri``) and its version."""
    uri = uri or f"models:/{model_name}@{alias}"
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise LookupError(f"no model at {uri} in {mlflow.get_tracking_uri()}: train one first with "
                          f"`churn train --data DIR` ({exc.message})") from exc
    version = None
    if uri.startswith("models:/") and "@" in uri:
        version = str(MlflowClient().get_model_version_by_alias(model_name, alias).version)
    return loaded, version
