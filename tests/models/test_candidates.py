"""The candidates and the champion: cutoffs that adapt to the history, failing baselines that
are reported and not fatal, a choice made on the validation cutoffs only, any champion served
through the registry, and the horizon warnings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models import registry
from models.candidates import Candidate, ColumnCandidate, ParetoNbdCandidate, choose_champion, fit_evaluate
from models.card import model_card
from models.evaluate import horizon_check
from models.train import (ChurnClassifier, CutoffPlan, CutoffSplit, adapt_split, baseline_split, plan_cutoffs,
                          size_aware_params)

T = pd.Timestamp
MONTHS = list(pd.date_range("2024-01-01", "2024-12-01", freq="MS"))


def orders_between(start: str, end: str, n: int = 400, seed: int = 0) -> dict[str, pd.DataFrame]:
    """An orders table with ``n`` orders spread from ``start`` to ``end`` (both present)."""
    rng = np.random.default_rng(seed)
    lo, hi = T(start).value, T(end).value
    stamps = np.sort(np.r_[lo, hi, rng.integers(lo, hi, n - 2)])
    return {"orders": pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n)], "customer_id": [f"c{i % 97}" for i in range(n)],
        "ordered_at": pd.to_datetime(stamps).astype("datetime64[us]"), "amount": 10.0})}


# -- cutoffs that adapt to the history -------------------------------------------------------------

def test_two_years_keep_month_starts():
    plan = plan_cutoffs(orders_between("2024-01-01", "2025-12-31"), 90, frequency="MS")
    assert plan.frequency == "MS" and plan.split.complete and not plan.notes
    assert all(c.day == 1 for c in plan.cutoffs)


def test_six_months_fall_back_to_mondays_and_say_so():
    plan = plan_cutoffs(orders_between("2025-07-01", "2025-12-31"), 45, frequency="MS")
    assert plan.frequency == "W-MON" and plan.split.complete and not plan.baseline_only
    assert all(c.dayofweek == 0 for c in plan.cutoffs)
    assert plan.split.test == T("2025-11-10") and plan.split.valid == [T("2025-09-15"), T("2025-09-22")]
    # purged: every training window closes by the first validation cutoff
    assert max(plan.split.train) + pd.Timedelta(days=45) <= plan.split.valid[0]
    assert any("Mondays instead of month starts" in n for n in plan.notes)


def test_three_months_leave_only_a_baseline_split():
    plan = plan_cutoffs(orders_between("2025-10-01", "2025-12-31"), 45, frequency="MS")
    assert plan.baseline_only and plan.split.train == [] and plan.split.test == T("2025-11-10")
    assert plan.split.valid == []  # no window closes by the test cutoff
    assert any("no purged train / validation / test split" in n for n in plan.notes)
    # a month of history: no labelled cutoff at all
    none = plan_cutoffs(orders_between("2025-12-01", "2025-12-31"), 45, frequency="MS")
    assert none.split.test is None and none.cutoffs == []


def test_a_horizon_too_long_for_the_history_names_the_longest_that_trains():
    six_months = orders_between("2025-07-01", "2025-12-31")
    plan = plan_cutoffs(six_months, 90, frequency="MS")
    assert plan.baseline_only
    assert any("a 45-day horizon (--horizon-days 45" in n for n in plan.notes)
    # the advice holds: 45 days splits (the test above), 60 does not
    assert plan_cutoffs(six_months, 45, frequency="MS").split.complete
    assert plan_cutoffs(six_months, 60, frequency="MS").baseline_only
    three_weeks = orders_between("2025-12-10", "2025-12-31")
    assert any("no horizon of a week or more gives one" in n for n in plan_cutoffs(three_weeks, 14).notes)


def test_a_training_split_with_too_few_rows_becomes_a_baseline_split():
    cutoffs = list(pd.date_range("2025-08-04", "2025-11-10", freq="W-MON"))
    split = CutoffSplit(train=[cutoffs[0]], valid=[T("2025-09-22")], test=cutoffs[-1])
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": cutoffs[0], "label": [0, 1, 1]})
    adapted = adapt_split(frame, CutoffPlan(cutoffs, "W-MON", split, ["1 validation cutoff instead of 2: ..."]), 45)
    assert adapted.baseline_only and adapted.split == baseline_split(cutoffs, 45)
    assert adapted.split.valid == [c for c in cutoffs if c + pd.Timedelta(days=45) <= cutoffs[-1]]
    assert len(adapted.notes) == 1 and "too few to learn from" in adapted.notes[0]


# -- the classifier's contract and its size ----------------------------------------------------------

def test_classifier_follows_the_scikit_learn_contract():
    est = ChurnClassifier(num_leaves=7, num_boost_round=20, monotone_increasing=("days_since_last_order",))
    assert clone(est).get_params() == est.get_params()
    frame = synthetic_frame(n_per_cutoff=200)
    X, y = frame[["days_since_last_order", "noise"]], frame["label"]
    fitted = est.fit(X, y, eval_set=[(X.head(500), y.head(500))])
    assert fitted is est and list(est.classes_) == [0, 1]
    p = est.predict_proba(X)
    assert p.shape == (len(X), 2) and np.allclose(p.sum(axis=1), 1)
    # monotone: more days since the last order never lowers the risk
    grid = pd.DataFrame({"days_since_last_order": np.linspace(0, 400, 50), "noise": 0.0})
    assert (np.diff(est.predict_proba(grid)[:, 1]) >= -1e-12).all()


def test_capacity_shrinks_with_the_number_of_customers():
    base = {"num_leaves": 31, "min_child_samples": 50, "lambda_l2": 1.0, "learning_rate": 0.05}
    small, medium, large = (size_aware_params(base, n) for n in (600, 5_000, 50_000))
    assert small["num_leaves"] < medium["num_leaves"] < large["num_leaves"] == 31
    assert small["lambda_l2"] > medium["lambda_l2"] > large["lambda_l2"]
    assert large == base


# -- synthetic data -----------------------------------------------------------------------------------

def synthetic_frame(n_per_cutoff=400, seed=0, cutoffs=MONTHS):
    """Labelled rows over ``cutoffs``: risk rises with recency, falls with NPS; buy-till-you-die
    inputs consistent with the recency (weeks)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, cutoff in enumerate(cutoffs):
        n = n_per_cutoff
        days = rng.exponential(60, n)
        T_weeks = days / 7 + rng.uniform(4, 40, n)
        f = pd.DataFrame({
            "customer_id": [f"c{j}" for j in range(n)], "cutoff": cutoff,
            "days_since_last_order": days, "nps_last_score": rng.integers(0, 11, n).astype(float),
            "noise": rng.normal(size=n), "segment": pd.Categorical(rng.choice(["smb", "consumer"], n)),
            "btyd_x": rng.poisson(3, n).astype(float), "btyd_T": T_weeks,
        })
        f["btyd_t_x"] = np.where(f["btyd_x"] > 0, T_weeks - days / 7, 0.0)
        logit = -1.5 + f["days_since_last_order"] / 40 - (f["nps_last_score"] - 5) / 2
        f["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


FEATURES = ["days_since_last_order", "nps_last_score", "noise", "segment"]
SPLIT = CutoffSplit(train=MONTHS[:8], valid=MONTHS[9:11], test=MONTHS[11])


# -- a failing baseline is reported, never fatal ---------------------------------------------------------

def test_a_baseline_that_fails_or_gives_non_finite_scores_is_reported_not_fatal():
    frame = synthetic_frame().drop(columns=["btyd_x"])  # the Pareto/NBD cannot be fitted without it
    p = 1 / (1 + np.exp(-frame["days_since_last_order"] / 60))
    frame["btyd_p_no_order"] = np.where(frame.index % 50 == 0, np.nan, p)  # non-finite for some clients
    cols = [*FEATURES, "btyd_p_no_order"]
    report = fit_evaluate(frame, SPLIT, cols, {"num_boost_round": 40}, horizon_days=60)
    status = report.candidates.set_index("candidate")["status"]
    assert status["pnbd"].startswith("failed") and status["btyd"].startswith("failed: ValueError")
    assert "non-finite" in status["btyd"]
    assert report.metrics["candidate_pnbd_failed"] == 1 and report.metrics["candidates_failed"] == 2
    assert report.champion not in ("pnbd", "btyd") and report.metrics["test_roc_auc"] > 0.7
    card = model_card(model_name="m", horizon_days=60, cutoffs=SPLIT.as_strings(), metrics=report.metrics,
                      breakdowns={}, backtest=None, fingerprint={"orders": {"rows": 1}}, skipped_groups={},
                      contractual=False, champion=report.champion_label, choice=report.choice,
                      candidates=report.candidates)
    assert "| pnbd |" in card and "failed" in card and "could not be fitted or gave non-finite scores" in card


def test_every_candidate_failing_is_a_clear_error():
    def broken():
        raise RuntimeError("boom")

    frame = synthetic_frame(n_per_cutoff=100)
    with pytest.raises(ValueError, match="no candidate could be fitted: a failed: RuntimeError: boom"):
        fit_evaluate(frame, SPLIT, FEATURES, {}, candidates=[Candidate("a", broken, FEATURES, True, False)])


# -- the champion is chosen on the validation cutoffs only ----------------------------------------------

def test_the_champion_is_chosen_on_validation_never_on_test():
    """Two scores that each know the label on one part only: ``knows_valid`` on the validation
    cutoffs, ``knows_test`` on the test cutoff. A choice that looked at the test cutoff would
    take ``knows_test``."""
    frame = synthetic_frame(n_per_cutoff=300)
    rng = np.random.default_rng(1)
    on_valid, on_test = frame["cutoff"].isin(SPLIT.valid), frame["cutoff"] == SPLIT.test
    noise = rng.uniform(0.05, 0.95, len(frame))
    knowing = np.where(frame["label"] == 1, 0.8, 0.2) + rng.normal(0, 0.05, len(frame))
    frame["knows_valid"] = np.where(on_valid, knowing, noise)
    frame["knows_test"] = np.where(on_test, knowing, noise)
    specs = [Candidate(name, lambda name=name: ColumnCandidate(name, "logit"), [name], False, True)
             for name in ("knows_test", "knows_valid")]
    report = fit_evaluate(frame, SPLIT, FEATURES, {}, candidates=specs)
    table = report.candidates.set_index("candidate")
    assert table.loc["knows_test", "test_roc_auc"] > 0.95 > 0.6 > table.loc["knows_valid", "test_roc_auc"]
    assert table.loc["knows_valid", "valid_roc_auc"] > 0.95 > 0.6 > table.loc["knows_test", "valid_roc_auc"]
    assert report.champion == "knows_valid" and "validation" in report.choice


def test_choose_champion_sees_only_what_it_is_given():
    y = np.array([0, 0, 1, 1])
    champion, table, why = choose_champion({"recency": np.array([0.1, 0.2, 0.3, 0.4]),
                                            "stack": np.array([0.4, 0.1, 0.3, 0.2])}, y)
    assert champion == "recency" and table.set_index("candidate").loc["recency", "valid_roc_auc"] == 1.0
    # an exact tie goes to the simpler candidate
    assert choose_champion({"stack": y * 0.5, "btyd": y * 0.3}, y)[0] == "btyd"
    # nothing to choose on: the baseline that fits the business
    empty = {"recency": np.array([]), "btyd": np.array([])}
    assert choose_champion(empty, [], contractual=False)[0] == "btyd"
    assert choose_champion(empty, [], contractual=True)[0] == "recency"


def test_the_full_comparison_is_at_or_above_the_best_baseline_on_synthetic_data():
    frame = synthetic_frame()
    report = fit_evaluate(frame, SPLIT, FEATURES, {"num_boost_round": 60}, horizon_days=60)
    names = set(report.candidates["candidate"])
    assert {"lightgbm", "lightgbm_monotone", "logistic", "recency", "pnbd", "stack"} <= names
    assert (report.candidates["status"] == "ok").all()
    assert report.candidates["champion"].sum() == 1
    assert report.metrics["champion_margin_roc_auc"] >= -0.01
    assert abs(report.metrics["test_calibration_in_the_large"]) < 0.05


# -- any champion is registered, loadable with mlflow.pyfunc and scores -----------------------------------

def baseline_report():
    """No training cutoff: the buy-till-you-die baselines only, chosen on the validation cutoffs."""
    frame = synthetic_frame(n_per_cutoff=300, cutoffs=MONTHS[-5:])
    frame["btyd_p_no_order"] = 1 / (1 + np.exp(1.5 - frame["days_since_last_order"] / 40))
    split = baseline_split(MONTHS[-5:], 60)
    return frame, split, fit_evaluate(frame, split, [*FEATURES, "btyd_p_no_order"], {}, horizon_days=60)


def test_baseline_champion_is_registered_loadable_and_scores(tmp_path):
    import mlflow

    frame, split, report = baseline_report()
    status = report.candidates.set_index("candidate")["status"]
    assert status["lightgbm"].startswith("skipped") and status["logistic"].startswith("skipped")
    assert report.champion in ("btyd", "pnbd") and "stack" not in set(report.candidates["candidate"])
    test = frame[frame["cutoff"] == split.test]
    registry.configure_tracking(tmp_path)
    logged = registry.log_training_run(report, experiment="baseline", model_name="baseline-champion", home=tmp_path,
                                       params={}, config={}, tags={}, test_inputs=test.drop(columns="label"))
    assert logged.gate.promoted
    loaded = mlflow.pyfunc.load_model(logged.model_uri)
    served = loaded.predict(registry.to_model_input(test.drop(columns="label")))
    np.testing.assert_allclose(served["risk"], report.test_scores["risk"], rtol=1e-9)
    assert {"risk", "reason_group_1", "reason_group_2", "reason_group_3"} <= set(served.columns)
    # a buy-till-you-die champion has one reason: the purchases group, for the clients it puts above average
    assert set(served["reason_group_1"].dropna()) == {"purchases"} and served["reason_group_2"].isna().all()
    assert served["reason_group_1"].notna().mean() > 0.2


BLOCKED_IMPORT = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("models", "features", "pipelines"):
            raise ModuleNotFoundError(f"{name} is not available to a consumer of the model")
sys.meta_path.insert(0, Block())
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
out = mlflow.pyfunc.load_model(sys.argv[2]).predict(pd.read_parquet(sys.argv[3]))
out.to_parquet(sys.argv[4])
"""


def test_pareto_nbd_champion_serves_without_this_repository(tmp_path):
    """A Pareto/NBD champion refits at the scoring date on the scored clients' history: its code
    (models.baselines, features.btyd) travels by value inside the MLflow model, so a process that
    cannot import this repository loads and scores it."""
    import subprocess
    import sys

    import mlflow

    frame = synthetic_frame(n_per_cutoff=150, cutoffs=MONTHS[-4:])
    split = baseline_split(MONTHS[-4:], 60)
    spec = Candidate("pnbd", lambda: ParetoNbdCandidate(60), list(ParetoNbdCandidate.columns), False, True)
    report = fit_evaluate(frame, split, FEATURES, {}, horizon_days=60, candidates=[spec])
    assert report.champion == "pnbd" and report.inputs == ["cutoff", "btyd_x", "btyd_t_x", "btyd_T"]
    test = frame[frame["cutoff"] == split.test].drop(columns="label")
    registry.configure_tracking(tmp_path)
    logged = registry.log_training_run(report, experiment="pnbd", model_name="pnbd-champion", home=tmp_path,
                                       params={}, config={}, tags={}, test_inputs=test)
    registry.to_model_input(test).to_parquet(tmp_path / "inputs.parquet")
    subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, mlflow.get_tracking_uri(), logged.model_uri,
                    str(tmp_path / "inputs.parquet"), str(tmp_path / "out.parquet")], check=True, cwd=tmp_path)
    served = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_allclose(served["risk"], report.test_scores["risk"], rtol=1e-9)
    assert set(served["reason_group_1"].dropna()) == {"purchases"}


def test_stack_champion_serves_what_was_measured(tmp_path):
    frame = synthetic_frame()
    report = fit_evaluate(frame, SPLIT, FEATURES, {"num_boost_round": 60}, horizon_days=60,
                          candidates=None)
    served = registry.serving_model(report)
    test = frame[frame["cutoff"] == SPLIT.test]
    out = served(registry.to_model_input(test.drop(columns="label")))
    np.testing.assert_allclose(out["risk"], report.test_scores["risk"], rtol=1e-9)
    contrib = served.contributions(registry.to_model_input(test.drop(columns="label")))
    np.testing.assert_allclose(contrib.sum(axis=1), served.logit(registry.to_model_input(test)), atol=1e-8)


# -- choosing the horizon ---------------------------------------------------------------------------------

def horizon_frame(share: float, gap: float = 30.0) -> pd.DataFrame:
    n = 200
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "cutoff": T("2025-01-01"),
                         "label": (np.arange(n) < share * n).astype(int),
                         "mean_gap_days": np.where(np.arange(n) % 4 == 0, np.nan, gap)})


def test_the_horizon_check_reports_and_warns():
    ok = horizon_check(horizon_frame(0.3, gap=21), 90)
    assert ok.leaver_share == pytest.approx(0.3) and ok.median_gap_days == 21 and ok.warnings == []
    assert "30.0% of the clients labelled as leavers" in ok.summary() and "21 days" in ok.summary()
    most = horizon_check(horizon_frame(0.8, gap=40), 30)
    assert len(most.warnings) == 1 and "80%" in most.warnings[0] and "above 60%" in most.warnings[0]
    assert "80-120 days" in most.warnings[0]  # two to three times the median gap
    # already three gaps long: the leavers are the clients who rarely buy again, not a short horizon
    rare = horizon_check(horizon_frame(0.7, gap=32), 90)
    assert len(rare.warnings) == 1 and "already 2.8 times the median gap" in rare.warnings[0]
    assert "64-96 days" not in rare.warnings[0]
    few = horizon_check(horizon_frame(0.01), 14)
    assert len(few.warnings) == 1 and "below 2%" in few.warnings[0]
    unlabelled = horizon_check(horizon_frame(0.3).drop(columns="label"), 90)
    assert np.isnan(unlabelled.leaver_share) and unlabelled.warnings == []
