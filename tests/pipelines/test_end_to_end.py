"""One small end-to-end run of the demo path through the Prefect flows, plus the CLI."""
from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner



@pytest.fixture(scope="module")
def data_dir(sim_data):
    return sim_data


@pytest.fixture(scope="module")
def settings(e2e_settings):
    return e2e_settings


def test_training_learns_and_registers_a_champion(trained):
    result, _ = trained
    m = result.metrics
    assert m["test_roc_auc"] > 0.7, m
    assert m["test_roc_auc"] > m["baseline_recency_roc_auc"]
    assert result.promoted and result.version == "1"
    assert result.cutoffs["test"][0] > max(result.cutoffs["valid"]) > max(result.cutoffs["train"])
    assert "## Holdout metrics" in result.model_card
    assert len(result.backtest) == 1


def test_scoring_writes_a_ranked_complete_list(trained, data_dir, settings, tmp_path):
    from pipelines.flows import score_flow

    _, home = trained
    result = score_flow(data_dir, tmp_path / "out", settings, home)
    at_risk = pd.read_parquet(result.parquet)
    csv = pd.read_csv(result.csv)
    assert len(at_risk) == len(csv) == result.rows > 0
    # every client at the scoring date, once, ranked by risk
    assert at_risk["customer_id"].is_unique
    assert at_risk["rank"].tolist() == list(range(1, len(at_risk) + 1))
    assert at_risk["risk"].is_monotonic_decreasing and at_risk["risk"].between(0, 1).all()
    assert at_risk["model_version"].eq("1").all()
    top = at_risk.head(int(0.2 * len(at_risk)))
    assert top["reason_1"].notna().all() and top["action"].notna().all()
    for path in (result.xlsx, result.html):
        assert path.stat().st_size > 0
    assert not list(tmp_path.glob("out/.*.tmp"))


def test_cli_validate_reports_fatal_problems_with_exit_code_2(tmp_path):
    from pipelines.cli import app

    (tmp_path / "data").mkdir()
    pd.DataFrame({"order_id": ["1"], "customer_id": ["a"], "ordered_at": ["2024-01-01"]}).to_csv(
        tmp_path / "data" / "orders.csv", index=False)
    result = CliRunner().invoke(app, ["validate", "--data", str(tmp_path / "data"), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "orders: missing required column 'amount'" in result.output


def test_cli_features_writes_one_row_per_client(data_dir, tmp_path):
    from pipelines.cli import app

    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(app, ["features", "--data", str(data_dir), "--cutoff", "2025-06-01", "--out", str(out),
                                      "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert table["customer_id"].is_unique and (table["cutoff"] == pd.Timestamp("2025-06-01")).all()


def test_cli_features_with_labels_writes_a_training_set(data_dir, tmp_path):
    from pipelines.cli import app

    out = tmp_path / "training.csv"
    result = CliRunner().invoke(app, ["features", "--data", str(data_dir), "--cutoff", "2025-03-01", "--cutoff", "2025-04-01",
                                      "--cutoff", "2030-01-01", "--labels", "--out", str(out), "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert "1 cutoff(s) left out" in result.output  # 2030: its label window is not observed
    table = pd.read_csv(out, parse_dates=["cutoff"])
    assert sorted(table["cutoff"].unique()) == [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-04-01")]
    assert set(table["label"]) == {0, 1} and list(table.columns[:3]) == ["customer_id", "cutoff", "label"]


def test_a_very_short_history_still_trains_registers_and_lists(prefect_harness, e2e_settings, tmp_path):
    """Five months of a small non-contractual business with a 45-day horizon: month starts give
    no purged split, Mondays do not leave enough to train on, so the champion is a baseline that
    learns nothing from labels; it is registered and the at-risk list is written."""
    from features.simulate import simulate, write_dataset
    from pipelines.flows import score_flow, train_flow

    data = tmp_path / "data"
    write_dataset(simulate(400, seed=4, contractual=False, history_years=5 / 12), data)
    settings = e2e_settings.with_overrides(**{"labels.horizon_days": 45, "registry.model_name": "short",
                                              "registry.experiment": "short"})
    result = train_flow(data, settings, tmp_path / "home")
    assert any("Mondays instead of month starts" in n for n in result.notes)
    assert result.champion in ("btyd", "pnbd") and result.promoted
    assert result.candidates.set_index("candidate").loc["lightgbm", "status"].startswith("skipped")
    assert "## Candidates" in result.model_card and "Mondays" in result.model_card
    scored = score_flow(data, tmp_path / "out", settings, tmp_path / "home")
    at_risk = pd.read_parquet(scored.parquet)
    assert scored.rows == len(at_risk) > 0 and at_risk["risk"].between(0, 1).all()
    assert at_risk["reason_group_1"].dropna().eq("purchases").all() and at_risk["reason_1"].notna().any()
