"""The monitor flow on the small company: realised figures equal a direct computation from the
data, the untouched company does not light up, a company that stops its outbound touches does,
and `churn monitor` says so with its exit code."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

DATES = ("2025-07-01", "2025-09-01")


def _score_into_history(data_dir, settings, home, lists):
    """Two scorings into one folder: `churn score` keeps each in lists/history/<as_of>/."""
    from pipelines.flows import score_flow

    for day in DATES:
        score_flow(data_dir, lists, settings, home, as_of=pd.Timestamp(day))
    assert sorted(p.name for p in (lists / "history").iterdir()) == list(DATES)


@pytest.fixture(scope="module")
def monitored(trained, sim_data, e2e_settings, tmp_path_factory):
    from pipelines.flows import monitor_flow

    _, home = trained
    lists = tmp_path_factory.mktemp("lists")
    _score_into_history(sim_data, e2e_settings, home, lists)
    return monitor_flow(sim_data, lists, e2e_settings, home), lists


def test_monitor_json_has_the_documented_keys(monitored):
    result, lists = monitored
    text = (lists / "monitor.json").read_text()
    doc = json.loads(text)
    assert "NaN" not in text  # strict JSON (Python's json module would read NaN back without a word)
    assert {"as_of", "model_version", "drift", "score_drift", "expected", "realised", "alerts"} <= set(doc)
    assert doc["as_of"] == DATES[-1] and doc["model_version"] == "1"
    assert set(doc["expected"]) == {"roc_auc", "pr_auc", "positive_rate", "precision_high_tier"}
    some = next(iter(doc["drift"].values()))
    assert {"psi", "flag", "reference", "method"} <= set(some) and some["reference"] == "train"
    assert (lists / "history" / DATES[-1] / "monitor.json").is_file() and (lists / "monitor.html").is_file()
    # the same data and process a few months on: at most a fifth of the features flagged
    assert sum(d["flag"] for d in doc["drift"].values()) <= len(doc["drift"]) / 5


def test_realised_figures_equal_a_direct_computation(monitored, sim_data, e2e_settings):
    from features.inputs import load_data
    from features.labels import build_labels

    result, lists = monitored
    tables = load_data(sim_data).sources
    realised = {r["as_of"]: r for r in result.report["realised"]}
    assert set(realised) == set(DATES)  # both horizons close before the simulated history ends
    for day in DATES:
        listed = pd.read_parquet(lists / "history" / day / "at_risk.parquet")
        labels = build_labels(tables, [pd.Timestamp(day)], horizon_days=e2e_settings.labels.horizon_days)
        joined = listed.merge(labels, on="customer_id")
        assert realised[day]["rows"] == len(joined) > 0
        assert realised[day]["roc_auc"] == pytest.approx(roc_auc_score(joined["label"], joined["risk"]), abs=1e-6)
        assert realised[day]["positive_rate"] == pytest.approx(joined["label"].mean(), abs=1e-6)
        assert realised[day]["model_version"] == "1"
        assert 0 < realised[day]["expected_roc_auc"] < 1


def test_realised_history_is_logged_per_model_version(monitored):
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name("e2e-monitoring")
    runs = client.search_runs([experiment.experiment_id], "tags.model_version = '1'")
    assert len(runs) == 1
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "realised_roc_auc")]
    assert sorted(steps) == [20250701, 20250901]
    assert mlflow.get_tracking_uri()


def test_a_company_that_stops_calling_is_flagged(trained, sim_data, e2e_settings, tmp_path):
    from pipelines.cli import app

    _, home = trained
    data = tmp_path / "data"
    shutil.copytree(sim_data, data)
    touches = pd.read_parquet(data / "interactions.parquet")
    stopped = (touches["direction"] == "outbound") & (touches["occurred_at"] >= pd.Timestamp("2025-05-01"))
    touches[~stopped].to_parquet(data / "interactions.parquet", index=False)
    lists = tmp_path / "lists"
    _score_into_history(data, e2e_settings, home, lists)
    config = tmp_path / "config.yaml"
    config.write_text("registry: {model_name: e2e, experiment: e2e}\n")
    result = CliRunner().invoke(app, ["monitor", "--data", str(data), "--lists", str(lists), "--config", str(config),
                                      "--home", str(home)])
    assert result.exit_code == 3, result.output  # alerts
    doc = json.loads((lists / "monitor.json").read_text())
    flagged = [name for name, d in doc["drift"].items() if d["flag"]]
    assert {"outbound_90d", "days_since_last_outbound"} <= set(flagged), flagged
    assert any("outbound_90d" in a for a in doc["alerts"])


def test_monitor_without_lists_says_what_to_do(trained, sim_data, tmp_path):
    from pipelines.cli import app

    _, home = trained
    result = CliRunner().invoke(app, ["monitor", "--data", str(sim_data), "--lists", str(tmp_path / "none"),
                                      "--home", str(home)])
    assert result.exit_code == 2
    assert "churn score --out" in result.output
