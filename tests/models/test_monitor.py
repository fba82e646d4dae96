"""Monitoring's pure functions: PSI on hand-computed cases, drift that lights up only when the
data changes, label-free estimates against simulated outcomes, realised figures against a
direct computation."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models import monitor


def test_psi_by_hand():
    # shares (0.5, 0.5) -> (0.25, 0.75): 0.25 ln 2 + 0.25 ln(1.5)... computed term by term
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert monitor.population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert monitor.population_stability_index([0.3, 0.7], [0.3, 0.7]) == 0.0
    # an empty bin is floored, so the PSI is large but finite
    psi = monitor.population_stability_index([1.0, 0.0], [0.5, 0.5])
    assert np.isfinite(psi) and psi > 1


def test_profile_is_json_and_same_data_has_no_drift():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"days": rng.exponential(30, 5000), "stage": rng.choice(["new", "regular"], 5000),
                          "nps": np.where(rng.random(5000) < 0.3, np.nan, rng.integers(0, 11, 5000))})
    ref = monitor.reference_profile(frame, rng.random(5000))
    json.dumps(ref)  # stored with the model
    assert ref["features"]["days"]["kind"] == "number" and ref["features"]["stage"]["kind"] == "category"
    assert sum(ref["features"]["nps"]["shares"]) == pytest.approx(1.0)
    later = pd.DataFrame({"days": rng.exponential(30, 5000), "stage": rng.choice(["new", "regular"], 5000),
                          "nps": np.where(rng.random(5000) < 0.3, np.nan, rng.integers(0, 11, 5000))})
    by_feature, score = monitor.drift(ref, later, rng.random(5000))
    assert not any(d["flag"] for d in by_feature.values()) and not score["flag"]
    assert all(d["psi"] < 0.02 for d in by_feature.values())


def test_shifted_feature_is_flagged_first():
    rng = np.random.default_rng(1)
    ref = monitor.reference_profile(pd.DataFrame({"a": rng.normal(0, 1, 4000), "b": rng.normal(0, 1, 4000)}),
                                    rng.random(4000))
    later = pd.DataFrame({"a": rng.normal(0, 1, 4000), "b": rng.normal(1.0, 1, 4000)})
    by_feature, _ = monitor.drift(ref, later, rng.random(4000), psi_alert=0.2)
    assert list(by_feature) == ["b", "a"]  # sorted by PSI
    assert by_feature["b"]["flag"] and not by_feature["a"]["flag"]
    assert by_feature["b"] | {"psi": 0} == {"psi": 0, "flag": True, "warn": True, "reference": "train", "method": "psi"}


def test_calendar_features_are_not_monitored_for_drift():
    # the time of year is one value per date: a later list always has another one
    ref = monitor.reference_profile(pd.DataFrame({"season_sin": np.full(500, 0.5), "tenure_days": np.arange(500.0)}), None)
    later = pd.DataFrame({"season_sin": np.full(500, -0.9), "tenure_days": np.arange(500.0)})
    by_feature, _ = monitor.drift(ref, later, np.zeros(500))
    assert list(by_feature) == ["tenure_days"]


def test_unseen_level_and_missing_values_count():
    ref = monitor.column_profile(pd.Series(["a", "b", "a", "b"]))
    assert monitor.column_psi(ref, pd.Series(["a", "b", "a", "b"])) == pytest.approx(0.0)
    assert monitor.column_psi(ref, pd.Series(["a", "b", "c", "c"])) > 0.5  # a level the reference never saw
    assert monitor.column_psi(ref, pd.Series(["a", None, None, "b"])) > 0.5  # missing values appear
    num = monitor.column_profile(pd.Series([1.0, 2.0, 3.0, 4.0] * 25))
    assert monitor.column_psi(num, pd.Series([np.nan] * 100)) > 1


def test_constant_column_keeps_one_bin():
    ref = monitor.column_profile(pd.Series(np.zeros(1000)))
    assert monitor.column_psi(ref, pd.Series(np.zeros(300))) == pytest.approx(0.0)
    assert monitor.column_psi(ref, pd.Series(np.ones(300))) > 1


def test_expected_auc_matches_simulated_outcomes():
    """With calibrated risks, the label-free estimate equals the mean realised ROC-AUC and
    average precision of outcomes drawn from those risks."""
    rng = np.random.default_rng(2)
    p = rng.beta(1.2, 4, 3000)
    p[:300] = 0.2  # ties
    aucs, aps = [], []
    for _ in range(200):
        y = rng.random(len(p)) < p
        aucs.append(roc_auc_score(y, p))
        aps.append(average_precision_score(y, p))
    est = monitor.estimate_performance(p, p > 0.5)
    assert est["roc_auc"] == pytest.approx(np.mean(aucs), abs=0.005)
    assert est["pr_auc"] == pytest.approx(np.mean(aps), abs=0.01)
    assert est["positive_rate"] == pytest.approx(p.mean(), abs=1e-6)
    assert est["precision_high_tier"] == pytest.approx(p[p > 0.5].mean(), abs=1e-6)


def test_expected_auc_edges():
    assert monitor.expected_roc_auc(np.full(10, 0.3)) == pytest.approx(0.5)  # all tied: no information
    assert np.isnan(monitor.expected_roc_auc([0.4]))
    assert monitor.expected_roc_auc([0.999999, 0.000001]) == pytest.approx(1.0, abs=1e-5)


def test_realised_performance_equals_direct_computation():
    rng = np.random.default_rng(3)
    n = 400
    listed = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "risk": rng.random(n),
                           "tier": np.where(np.arange(n) < 100, "high", "low")})
    labels = pd.DataFrame({"customer_id": listed["customer_id"][::-1].to_numpy(),
                           "label": (rng.random(n) < listed["risk"][::-1].to_numpy()).astype(int)})
    labels = labels.iloc[:-20]  # 20 listed clients the data cannot judge
    touches = pd.Series({f"C{i}": 2 for i in range(0, n, 4)})
    out = monitor.realised_performance(listed, labels, touches)
    joined = listed.merge(labels, on="customer_id")
    assert out["rows"] == n - 20 == len(joined)
    assert out["roc_auc"] == pytest.approx(roc_auc_score(joined["label"], joined["risk"]), abs=1e-6)
    assert out["pr_auc"] == pytest.approx(average_precision_score(joined["label"], joined["risk"]), abs=1e-6)
    assert out["precision_high_tier"] == pytest.approx(joined.loc[joined["tier"] == "high", "label"].mean(), abs=1e-6)
    untouched = joined[~joined["customer_id"].isin(touches.index)]
    assert out["touched_rows"] == len(joined) - len(untouched)
    assert out["untouched_rows"] == len(untouched)
    assert out["untouched_roc_auc"] == pytest.approx(roc_auc_score(untouched["label"], untouched["risk"]), abs=1e-6)


def test_alerts_name_what_is_wrong():
    lines = monitor.alerts({"days_since_last_order": {"psi": 0.4, "flag": True}, "x": {"psi": 0.01, "flag": False}},
                           {"psi": 0.05, "flag": False}, {"roc_auc": 0.70},
                           [{"as_of": "2025-12-01", "roc_auc": 0.81}, {"as_of": "2026-01-05", "roc_auc": 0.72}],
                           champion_roc_auc=0.80, max_auc_drop=0.05)
    assert len(lines) == 3
    assert "days_since_last_order" in lines[0] and "estimated ROC-AUC 0.700" in lines[1] and "2026-01-05" in lines[2]
    assert monitor.alerts({}, {"psi": 0.0, "flag": False}, {"roc_auc": 0.79}, [], champion_roc_auc=0.80) == []
