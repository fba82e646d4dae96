"""The README's "Use your own data" walkthrough, run as a new user would: from a raw
invoice-line export to a first at-risk list with a mapping in the config, and the exit
codes that stop a bad extract or a date the pipeline cannot read."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def churn(*args: str):
    from pipelines.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("retail") / "exports"
    result = churn("simulate", "--layout", "online-retail", "--customers", 500, "--seed", 5, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def retail_config(tmp_path: Path, **sections) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "online-retail.yaml").read_text())
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / "retail.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_from_a_raw_invoice_export_to_a_first_at_risk_list(prefect_harness, exports, tmp_path):
    config = retail_config(tmp_path, train={"num_boost_round": 60, "backtest_folds": 0},
                           registry={"model_name": "retail", "experiment": "retail"})
    home = tmp_path / "home"
    checked = churn("validate", "--config", config, "--data", exports, "--home", home)
    assert checked.exit_code == 0, checked.output
    assert "order lines kept as" in checked.output
    summary = pd.read_csv(home / "validation" / "validation_summary.csv").set_index("table")
    assert (summary["rows_read"] == summary["rows_kept"] + summary["rows_quarantined"]).all()
    quarantine = pd.read_csv(home / "validation" / "quarantine_orders.csv", dtype=str)
    assert quarantine["reason"].str.contains("orders.customer_id: missing").any()  # guest checkouts
    assert quarantine["reason"].str.contains("exact copy").any()  # lines exported twice

    trained = churn("train", "--config", config, "--data", exports, "--home", home)
    assert trained.exit_code == 0, trained.output
    assert "ROC-AUC" in trained.output and "baseline" in trained.output

    scored = churn("score", "--config", config, "--data", exports, "--out", tmp_path / "lists", "--home", home)
    assert scored.exit_code == 0, scored.output
    at_risk = pd.read_csv(tmp_path / "lists" / "at_risk.csv", dtype={"customer_id": str})
    crm = pd.read_csv(exports / "crm_customers.csv", dtype=str)
    assert len(at_risk) > 0 and at_risk["customer_id"].isin(crm["CustomerNo"]).all()  # ids met across the files


def test_invoice_lines_read_as_orders_stop_with_the_option_that_fixes_them(exports, tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "online-retail.yaml").read_text())
    del config["source"]["tables"]["orders"]["lines"]
    path = tmp_path / "no-lines.yaml"
    path.write_text(yaml.safe_dump(config))
    result = churn("validate", "--config", path, "--data", exports, "--home", tmp_path / "home")
    assert result.exit_code == 2
    assert "look like order lines" in result.output and "lines: true" in result.output
    assert (tmp_path / "home" / "validation" / "quarantine_orders.csv").exists()


def test_ids_that_lost_their_zeros_stop_with_a_diagnosis(exports, tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "online-retail.yaml").read_text())
    config["source"]["ids"] = {"strip_leading_zeros": False}
    path = tmp_path / "zeros.yaml"
    path.write_text(yaml.safe_dump(config))
    result = churn("validate", "--config", path, "--data", exports, "--home", tmp_path / "home")
    assert result.exit_code == 2
    assert "name a customer that is not among the customers" in result.output
    assert "source.ids.strip_leading_zeros: true" in result.output


def test_date_flags_are_iso_8601_and_offsets_become_utc(sim_data, tmp_path):
    result = churn("score", "--data", sim_data, "--as-of", "09/12/2024", "--out", tmp_path / "x", "--home", tmp_path / "h")
    assert result.exit_code == 2 and "not an ISO 8601 date" in result.output
    out = tmp_path / "f.parquet"
    result = churn("features", "--data", sim_data, "--cutoff", "2025-06-01T00:00:00+05:00", "--out", out,
                   "--home", tmp_path / "h")
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["cutoff"].unique().tolist() == [pd.Timestamp("2025-05-31 19:00")]


def test_a_cutoff_years_after_the_data_is_refused(sim_data, tmp_path):
    result = churn("features", "--data", sim_data, "--cutoff", "2029-01-01", "--out", tmp_path / "f.parquet",
                   "--home", tmp_path / "h")
    assert result.exit_code == 2 and "after the end of the data" in result.output


def test_a_sql_source_through_the_command(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    with sa.create_engine(url).begin() as con:
        pd.DataFrame({"Invoice": ["1", "2"], "Client": ["a", "b"], "At": ["2024-01-01", "2024-02-01"],
                      "Total": [10.0, 5.0]}).to_sql("sales", con, index=False)
    config = tmp_path / "sql.yaml"
    config.write_text(yaml.safe_dump({"source": {"kind": "sql", "url": url, "tables": {"orders": {
        "table": "sales", "columns": {"order_id": "Invoice", "customer_id": "Client", "ordered_at": "At", "amount": "Total"}}}}}))
    result = churn("validate", "--config", config, "--home", tmp_path / "h")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "h" / "validation" / "validation_summary.csv").set_index("table")
    assert summary.loc["orders", "rows_kept"] == 2


from tests.features.inputs.test_sql import POSTGRES_URL, pg_schema, postgres_engine  # noqa: E402,F401  (fixtures)


def test_a_postgres_source_trains_and_scores_and_its_password_is_never_written(prefect_harness, postgres_engine,
                                                                                pg_schema, tmp_path, monkeypatch):
    from features.simulate import simulate

    tables = {k: v for k, v in simulate(300, seed=6, contractual=False).items() if k != "truth"}
    with postgres_engine.begin() as conn:
        for name, frame in tables.items():
            frame.rename(columns={"ordered_at": "invoice_date"}).to_sql(
                "sales" if name == "orders" else name, conn, schema=pg_schema, index=False)
    secret = "pw-" + pg_schema[-12:] + "-never-shown"
    monkeypatch.setenv("CHURN_DB_PASSWORD", secret)
    config = tmp_path / "sql.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"kind": "sql", "url": POSTGRES_URL, "password_env": "CHURN_DB_PASSWORD", "schema": pg_schema,
                   "tables": {"orders": {"table": "sales", "columns": {"ordered_at": "invoice_date"}}}},
        "train": {"num_boost_round": 40, "backtest_folds": 0},
        "registry": {"model_name": "from-postgres", "experiment": "from-postgres"}}))
    home = tmp_path / "home"
    outputs = []
    for args in (["validate"], ["train"], ["score", "--out", tmp_path / "lists"]):
        result = churn(*args, "--config", config, "--home", home)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert len(pd.read_csv(tmp_path / "lists" / "at_risk.csv")) > 0
    assert not any(secret in text for text in outputs)
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("from-postgres").experiment_id])
    assert runs and all(secret not in str(v) for r in runs for v in [*r.data.params.values(), *r.data.tags.values()])
    assert all(secret.encode() not in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
