"""Cutoff splitting, the classifier's contract and the reason ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.serving import explain_contributions, group_contributions, group_pushes, top_reasons
from models.train import ChurnClassifier, split_cutoffs

T = pd.Timestamp


def test_split_is_purged_by_the_horizon():
    cutoffs = list(pd.date_range("2024-01-01", "2024-12-01", freq="MS"))
    split = split_cutoffs(cutoffs, horizon_days=90, valid_cutoffs=2)
    assert split.test == T("2024-12-01")
    # validation windows close by the test cutoff: 2024-09-01 + 90 days = 2024-11-30
    assert split.valid == [T("2024-08-01"), T("2024-09-01")]
    # training windows close by the first validation cutoff: 2024-05-01 + 90 days = 2024-07-30
    assert split.train == list(pd.date_range("2024-01-01", "2024-05-01", freq="MS"))


def test_split_too_short_history_says_what_to_do():
    with pytest.raises(ValueError, match="longer history or a shorter --horizon-days"):
        split_cutoffs(list(pd.date_range("2024-01-01", "2024-04-01", freq="MS")), horizon_days=90)


def synthetic(n, seed):
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60, n)
    segment = rng.choice(["smb", "consumer"], n)
    logit = -2 + recency / 30 + (segment == "smb") * 1.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"days_since_last_order": recency, "noise": rng.normal(size=n),
                      "segment": pd.Categorical(segment)})
    return X, pd.Series(label), 1 / (1 + np.exp(-logit))


def test_classifier_learns_direction_and_is_reproducible():
    X, y, true_p = synthetic(4000, 0)
    Xv, yv, _ = synthetic(1000, 1)
    m1 = ChurnClassifier(num_boost_round=100, seed=3).fit(X, y, eval_set=[(Xv, yv)])
    m2 = ChurnClassifier(num_boost_round=100, seed=3).fit(X, y, eval_set=[(Xv, yv)])
    Xt, yt, pt = synthetic(2000, 2)
    p = m1.predict_proba(Xt)[:, 1]
    np.testing.assert_array_equal(p, m2.predict_proba(Xt)[:, 1])
    assert np.corrcoef(p, pt)[0, 1] > 0.8
    recent, lapsed = Xt.assign(days_since_last_order=5.0), Xt.assign(days_since_last_order=200.0)
    assert (m1.predict_proba(lapsed)[:, 1] >= m1.predict_proba(recent)[:, 1]).mean() > 0.95
    # unseen category at scoring time is treated as missing, not an error
    assert np.isfinite(m1.predict_proba(Xt.assign(segment=pd.Categorical(["enterprise"] * len(Xt))))).all()
    contrib = m1.predict_contributions(Xt)
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(contrib.sum(axis=1), logit, atol=1e-6)


def test_leanest_model_that_validates_as_well_is_kept():
    """An additive risk needs few leaves: the capacity search keeps a leaner model than 31
    leaves, every leaner option it passed over validates worse than the tolerance allows, and
    the model it keeps is the fitted one (its contributions add up to its log-odds)."""
    X, y, _ = synthetic(6000, 0)
    Xv, yv, _ = synthetic(3000, 1)
    m = ChurnClassifier(num_boost_round=150, seed=3, lean_leaves=(3, 7, 15)).fit(X, y, eval_set=[(Xv, yv)])
    rows = pd.DataFrame(m.capacity_search_)
    assert list(rows["num_leaves"]) == [3, 7, 15, 31] and rows["chosen"].sum() == 1
    chosen = rows[rows["chosen"]].iloc[0]
    assert m.num_leaves_ == chosen["num_leaves"] < 31 and m.best_iteration_ == chosen["trees"]
    assert chosen["valid_roc_auc"] >= rows["valid_roc_auc"].max() - m.lean_tolerance
    assert chosen["valid_log_loss"] <= rows["valid_log_loss"].min() * 1.005
    cost = rows["trees"] * rows["num_leaves"]
    cheaper = rows[cost < chosen["trees"] * chosen["num_leaves"]]
    assert ((cheaper["valid_roc_auc"] < rows["valid_roc_auc"].max() - m.lean_tolerance)
            | (cheaper["valid_log_loss"] > rows["valid_log_loss"].min() * 1.005)).all()
    leaves = [t["num_leaves"] for t in m.booster_.dump_model()["tree_info"][: m.best_iteration_]]
    assert max(leaves) <= chosen["num_leaves"]
    p = m.predict_proba(Xv)[:, 1]
    np.testing.assert_allclose(m.predict_contributions(Xv).sum(axis=1), np.log(p / (1 - p)), atol=1e-6)
    # without the search (or without a validation set with both outcomes): num_leaves as configured, one fit
    plain = ChurnClassifier(num_boost_round=50, seed=3).fit(X, y, eval_set=[(Xv, yv)])
    assert plain.num_leaves_ == 31 and plain.capacity_search_ == []
    one_class = ChurnClassifier(num_boost_round=20, seed=3, lean_leaves=(7,)).fit(X, y, eval_set=[(Xv, yv * 0)])
    assert one_class.num_leaves_ == 31 and one_class.capacity_search_ == []


def test_group_sums_and_top_reasons_hand_computed():
    contrib = pd.DataFrame({"days_since_last_order": [0.5, -0.2], "orders_total": [0.3, -0.1],
                            "nps_last_score": [0.6, 0.05], "complaints_open": [-0.4, 0.0], "bias": [-2.0, -2.0]})
    groups = {"days_since_last_order": "purchases", "orders_total": "purchases", "nps_last_score": "nps",
              "complaints_open": "complaints"}
    by_group = group_contributions(contrib, groups)
    assert by_group.loc[0, "purchases"] == pytest.approx(0.8) and by_group.loc[1, "purchases"] == pytest.approx(-0.3)
    reasons = explain_contributions(contrib, groups, k=3)
    assert reasons.loc[0, ["reason_group_1", "reason_group_2"]].tolist() == ["purchases", "nps"]
    assert reasons.loc[0, "driver_1"] == "days_since_last_order" and reasons.loc[0, "driver_2"] == "nps_last_score"
    # a group that lowers the risk is never phrased as a reason
    assert pd.isna(reasons.loc[0, "reason_group_3"]) and pd.isna(reasons.loc[0, "driver_3"])
    assert reasons.loc[1, "reason_group_1"] == "nps" and pd.isna(reasons.loc[1, "reason_group_2"])
    assert list(top_reasons(by_group, 1).columns) == ["reason_group_1", "reason_group_1_contribution"]
    # fewer groups than reasons asked for: the missing ones are empty, not absent
    assert pd.isna(top_reasons(by_group[["nps"]], 2)["reason_group_2"]).all()


def test_a_group_is_a_reason_by_what_its_features_add_not_hidden_by_those_that_lower_the_risk():
    # a frequent buyer slipping behind their own rhythm: the rhythm raises the risk, the
    # frequency lowers it more; we have not called for months, the customer's visits lower it
    contrib = pd.DataFrame({"overdue_ratio": [0.4, -0.1], "orders_90d": [-0.9, -0.2],
                            "days_since_last_outbound": [0.3, 0.0], "days_since_last_inbound": [-0.5, 0.0],
                            "nps_last_score": [0.2, -0.3], "bias": [-1.0, -1.0]})
    groups = {"overdue_ratio": "purchases", "orders_90d": "purchases", "days_since_last_outbound": "attention",
              "days_since_last_inbound": "attention", "nps_last_score": "nps"}
    net = group_contributions(contrib, groups)
    assert net.loc[0].to_dict() == pytest.approx({"attention": -0.2, "nps": 0.2, "purchases": -0.5})
    pushes = group_pushes(contrib, groups)
    assert pushes.loc[0].to_dict() == pytest.approx({"attention": 0.3, "nps": 0.2, "purchases": 0.4})
    reasons = explain_contributions(contrib, groups, k=3)
    assert reasons.loc[0, ["reason_group_1", "reason_group_2", "reason_group_3"]].tolist() == ["purchases", "attention", "nps"]
    assert reasons.loc[0, "reason_group_1_contribution"] == pytest.approx(0.4)
    assert reasons.loc[0, ["driver_1", "driver_2"]].tolist() == ["overdue_ratio", "days_since_last_outbound"]
    # nothing raises the risk: no reason at all
    assert reasons.loc[1, ["reason_group_1", "reason_group_2", "reason_group_3"]].isna().all()
