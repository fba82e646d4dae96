"""One small end-to-end run of the demo path through the Prefect flows, plus the CLI."""
from __future__ import annotations

import json

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
    from features.build import build_population
    from features.inputs import load_data
    from pipelines.flows import score_flow

    _, home = trained
    result = score_flow(data_dir, tmp_path / "out", settings, home)
    at_risk = pd.read_parquet(result.parquet)
    csv = pd.read_csv(result.csv)
    assert len(at_risk) == len(csv) == result.rows > 0
    # every client at the scoring date, once, ranked by risk; with cancellations nobody is
    # lapsed by silence, and a client who cancelled is in neither list
    tables = load_data(data_dir).tables
    population = build_population(tables, [result.as_of])
    assert set(at_risk["customer_id"]) == set(population["customer_id"]) and result.win_back_rows == 0
    cancelled = tables["cancellations"].loc[tables["cancellations"]["cancelled_at"] < result.as_of, "customer_id"]
    assert not at_risk["customer_id"].isin(cancelled).any() and len(cancelled)
    assert at_risk["customer_id"].is_unique
    assert at_risk["rank"].tolist() == list(range(1, len(at_risk) + 1))
    assert at_risk["risk"].between(0.01, 0.99).all() and (at_risk["risk"] > 0).all() and (at_risk["risk"] < 1).all()
    assert at_risk["risk_in_words"].str.fullmatch(r"\d{1,2}% within 90 days").all()
    assert (at_risk["tier"] == "high").mean() <= 0.3
    assert at_risk["model_version"].eq("1").all()
    top = at_risk.head(int(0.2 * len(at_risk)))
    assert top["reason_1"].notna().all() and top["action"].notna().all() and top["action_key"].notna().all()
    assert not at_risk["reason_group_1"].isin(["attributes"]).any() and at_risk["profile"].notna().all()
    assert not at_risk["action_key"].isin(["win_back"]).any()
    for path in (result.xlsx, result.html, result.summary, result.win_back_csv):
        assert path.stat().st_size > 0
    assert (tmp_path / "out" / "history" / result.as_of.strftime("%Y-%m-%d") / "at_risk.parquet").is_file()
    assert not list(tmp_path.glob("out/**/.*.tmp"))


def test_without_cancellations_the_lapsed_clients_are_on_the_win_back_list(trained, data_dir, settings, tmp_path):
    """The same company as a business without contracts (no cancellations table), scored twice a
    week apart: two disjoint lists that together hold every client, and what changed."""
    import shutil

    from features.build import build_population
    from features.inputs import load_data
    from pipelines.flows import score_flow

    _, home = trained
    folder = tmp_path / "no-contracts"
    shutil.copytree(data_dir, folder, ignore=shutil.ignore_patterns("cancellations.*", "truth.*"))
    out = tmp_path / "out"
    last = score_flow(folder, out, settings, home)
    earlier = score_flow(folder, out, settings, home, as_of=last.as_of - pd.Timedelta(days=7))
    assert earlier.parquet.parent.name == (last.as_of - pd.Timedelta(days=7)).strftime("%Y-%m-%d")  # kept, not the latest
    last = score_flow(folder, out, settings, home)  # the latest again: compared with the week before
    at_risk, win_back = pd.read_parquet(last.parquet), pd.read_parquet(last.win_back_parquet)
    assert last.parquet == out / "at_risk.parquet" and len(win_back) == last.win_back_rows > 0
    population = build_population(load_data(folder).tables, [last.as_of])
    assert set(at_risk["customer_id"]).isdisjoint(win_back["customer_id"])
    assert set(at_risk["customer_id"]) | set(win_back["customer_id"]) == set(population["customer_id"])
    assert (win_back["lifecycle_stage"] == "former").all() and (win_back["action_key"] == "win_back").all()
    assert win_back["value_per_year"].is_monotonic_decreasing and win_back["reason_1"].str.startswith(("No order", "Nothing")).all()
    assert at_risk["risk_change"].notna().mean() > 0.8 and at_risk["new_high_tier"].notna().all()
    summary = __import__("json").loads(last.summary.read_text())
    assert summary["previous_as_of"] == (last.as_of - pd.Timedelta(days=7)).strftime("%Y-%m-%d")
    assert summary["win_back_clients"] == len(win_back) and summary["entered_high_tier"] is not None


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
    assert "1 cutoff(s) left out (2030-01-01)" in result.output  # its label window is not observed
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
    # a config that forgot the training's horizon still scores on the model's 45 days, and says so
    forgot = settings.with_overrides(**{"labels.horizon_days": 90})
    again = score_flow(data, tmp_path / "out90", forgot, tmp_path / "home")
    assert any("trained for a 45-day horizon but labels.horizon_days is 90" in w for w in again.warnings)
    summary = json.loads(again.summary.read_text())
    assert summary["horizon_days"] == 45
    # no model was trained: the manager reads it in the summary, the report and the verb's warnings
    assert any(c.startswith("No model was trained on this data") for c in summary["cautions"])
    assert set(summary["cautions"]) <= set(again.warnings)
    assert "Before you act on this list" in again.html.read_text()
    pd.testing.assert_series_equal(pd.read_parquet(again.parquet)["risk"], at_risk["risk"])
