"""Backfill and lineage through the flows and the CLI: a backfilled history equals scoring
each date one by one, the monitoring then has realised figures for it, and every list and
model can be traced to its data (lineage.json, MLflow tags)."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

DATES = ["2025-06-02", "2025-06-30", "2025-07-28"]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text("registry: {model_name: e2e, experiment: e2e-backfill}\n")  # its own monitoring runs
    return path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_backfill_equals_scoring_each_date_and_feeds_the_monitoring(trained, sim_data, e2e_settings, config, tmp_path):
    from pipelines.flows import score_flow

    _, home = trained
    out = tmp_path / "lists"
    result = run("backfill", "--data", sim_data, "--out", out, "--from", DATES[0], "--to", "2025-08-10", "--every", "4w",
                 "--config", config, "--home", home)
    assert result.exit_code == 0, result.output
    assert "3 date(s) scored, 0 skipped" in result.output
    assert sorted(p.name for p in (out / "history").iterdir()) == DATES
    assert json.loads((out / "summary.json").read_text())["as_of"] == DATES[-1]  # the latest date is shown at OUT
    one_by_one = tmp_path / "one-by-one"
    for day in DATES:
        score_flow(sim_data, one_by_one, e2e_settings, home, as_of=pd.Timestamp(day))
    for day in DATES:
        a = pd.read_parquet(out / "history" / day / "at_risk.parquet")
        b = pd.read_parquet(one_by_one / "history" / day / "at_risk.parquet")
        assert len(a) > 0 and a["customer_id"].tolist() == b["customer_id"].tolist()
        pd.testing.assert_series_equal(a["risk"], b["risk"])
        pd.testing.assert_frame_equal(a, b)  # every column, the changes against the week before included
        assert (out / "history" / day / "validation" / "validation_summary.csv").is_file()
    monitored = run("monitor", "--data", sim_data, "--lists", out, "--config", config, "--home", home)
    assert monitored.exit_code in (0, 3), monitored.output
    realised = json.loads((out / "monitor.json").read_text())["realised"]
    assert [r["as_of"] for r in realised] == DATES  # every horizon closed before the data ends
    assert all(r["rows"] > 0 and r["roc_auc"] is not None for r in realised)


def test_backfill_skips_refused_dates_and_fails_when_all_are(trained, sim_data, config, tmp_path):
    _, home = trained
    result = run("backfill", "--data", sim_data, "--out", tmp_path / "old", "--from", "2019-01-07", "--to", "2019-01-21",
                 "--every", "1w", "--config", config, "--home", home)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no date could be scored (2019-01-07: date 2019-01-07 is before the first order" in result.output
    assert not (tmp_path / "old" / "history").exists()
    bad = run("backfill", "--data", sim_data, "--out", tmp_path / "x", "--from", "2025-06-02", "--to", "2025-06-30",
              "--every", "1month", "--home", home)
    assert bad.exit_code == 2 and "7d or 2w" in bad.output
    bad = run("backfill", "--data", sim_data, "--out", tmp_path / "x", "--from", "02/06/2025", "--to", "2025-06-30",
              "--home", home)
    assert bad.exit_code == 2 and "--from" in bad.output


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_list_and_its_model_are_traced_to_their_data(trained, sim_data, e2e_settings, tmp_path):
    from mlflow import MlflowClient

    from pipelines.flows import score_flow

    train, home = trained
    scored = score_flow(sim_data, tmp_path / "out", e2e_settings, home, as_of=pd.Timestamp("2025-09-01"))
    doc = json.loads((tmp_path / "out" / "lineage.json").read_text())
    kept = tmp_path / "out" / "history" / "2025-09-01"
    assert doc == json.loads((kept / "lineage.json").read_text())
    assert doc["kind"] == "score" and doc["as_of"] == "2025-09-01" and doc["run"]["prefect_flow_run_id"]
    assert doc["model"] == {"name": "e2e", "version": scored.model_version, "uri": "models:/e2e@champion",
                            "tracking_uri": doc["model"]["tracking_uri"]} and doc["model"]["tracking_uri"]
    orders = doc["read"]["tables"]["orders"]
    assert orders["file"] == str(sim_data / "orders.parquet") and orders["fingerprint"]["sha256"] == sha(sim_data / "orders.parquet")
    assert doc["settings_sha256"] == __import__("models.lineage").lineage.settings_sha256(e2e_settings.model_dump(mode="json"))
    files = {f["path"]: f["sha256"] for f in doc["wrote"]["files"]}
    assert files == {p.relative_to(kept).as_posix(): sha(p) for p in kept.rglob("*")
                     if p.is_file() and p.name != "lineage.json"}
    assert {"at_risk.parquet", "at_risk.csv", "at_risk.xlsx", "report.html", "summary.json",
            "validation/validation_summary.csv"} <= set(files)
    tags = MlflowClient().get_run(train.run_id).data.tags
    assert len(tags["lineage.settings_sha256"]) == 64 and int(tags["lineage.orders.rows"]) > 0
    artifact = json.loads(MlflowClient().download_artifacts(train.run_id, "lineage.json", str(tmp_path)) and
                          (tmp_path / "lineage.json").read_text())
    assert artifact["kind"] == "train" and artifact["model"]["version"] == train.version
    assert artifact["wrote"]["model_uri"] == train.model_uri and "model_card.md" in artifact["wrote"]["artifacts"]


def test_an_input_the_gate_stops_leaves_the_lists_and_shows_its_quarantine(trained, sim_data, config, tmp_path):
    import shutil

    _, home = trained
    out = tmp_path / "out"
    assert run("score", "--data", sim_data, "--out", out, "--as-of", "2025-09-01", "--config", config,
               "--home", home).exit_code == 0
    before = {p.relative_to(out).as_posix(): sha(p) for p in out.rglob("*") if p.is_file()}
    broken = tmp_path / "broken"
    shutil.copytree(sim_data, broken)
    orders = pd.read_parquet(broken / "orders.parquet")
    orders.loc[orders.index[: len(orders) // 2], "amount"] = -1.0  # half the orders quarantined: the gate stops it
    orders.to_parquet(broken / "orders.parquet", index=False)
    result = run("score", "--data", broken, "--out", out, "--config", config, "--home", home)
    assert result.exit_code == 2 and "validation-rejected" in result.output, result.output
    assert {p.relative_to(out).as_posix(): sha(p) for p in out.rglob("*") if p.is_file()
            and "validation-rejected" not in p.parts} == before
    assert (out / "validation-rejected" / "quarantine_orders.csv").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]
