"""MLflow tracking and registry on PostgreSQL, as teams run it: `churn train`, `score` and
`registry list` with MLFLOW_TRACKING_URI=postgresql+psycopg2://user:PASSWORD@..., on a
database the test creates and drops; the password appears in no output, MLflow param or tag.
Skipped with its reason when the server is unreachable, a failure when CI is set."""
from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

SERVER = os.environ.get("CHURN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
PASSWORD = "NotPrinted-4242"  # trust auth ignores it; it must still never be shown


@pytest.fixture
def tracking_database():
    """A fresh database on the test server for MLflow's tables; its URL carries a password."""
    url = sa.engine.make_url(SERVER)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"churn_mlflow_{uuid.uuid4().hex[:10]}"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:
        engine.dispose()
        reason = f"PostgreSQL at {url.host}:{url.port} unreachable: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield url.set(database=name, password=PASSWORD).render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    engine.dispose()


def test_train_and_score_on_a_postgres_tracking_store(prefect_harness, tracking_database, sim_data, tmp_path,
                                                      monkeypatch):
    from mlflow import MlflowClient

    from pipelines.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_database)
    config = tmp_path / "config.yaml"
    config.write_text("train: {num_boost_round: 60, backtest_folds: 0}\nregistry: {model_name: pg-model, experiment: pg}\n")
    home = tmp_path / "home"
    runner = CliRunner()
    outputs = []
    for args in (["train", "--data", str(sim_data)], ["score", "--data", str(sim_data), "--out", str(tmp_path / "out")],
                 ["registry", "list"]):
        result = runner.invoke(app, [*args, "--config", str(config), "--home", str(home)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    text = "\n".join(outputs)
    assert "postgres:***@" in text  # where the run is, without the password
    assert PASSWORD not in text
    assert (tmp_path / "out" / "at_risk.parquet").is_file()
    client = MlflowClient(tracking_uri=tracking_database)
    runs = client.search_runs([client.get_experiment_by_name("pg").experiment_id])
    assert runs
    for run in runs:
        for value in [*run.data.params.values(), *run.data.tags.values()]:
            assert PASSWORD not in str(value)
    assert str(client.get_model_version_by_alias("pg-model", "champion").version) == "1"
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".html", ".md", ".yaml", ".txt"):
            assert PASSWORD not in path.read_text(errors="ignore"), path
