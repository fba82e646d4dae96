"""Reasons in plain words, actions and the at-risk list's ranking and tiers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.reasons import reason_sentence, recommended_action
from models.score import LIST_COLUMNS, assign_tiers, build_at_risk

AS_OF = pd.Timestamp("2025-10-20")


def test_sentences_use_the_customers_own_numbers_and_dates():
    row = {"tenure_days": 63.0, "first_outbound_observed": 0.0, "orders_total": 1.0, "days_since_last_order": 63.0,
           "nps_last_score": 4.0, "nps_change": -5.0, "days_since_last_nps": 8.0,
           "complaints_open": 2.0, "oldest_open_complaint_days": 19.0}
    assert reason_sentence("attention", row, AS_OF) == "No contact from us for 63 days since the first order on 18 Aug 2025"
    assert reason_sentence("nps", row, AS_OF) == "Detractor: NPS 4 on 12 Oct 2025, down from 9"
    assert reason_sentence("complaints", row, AS_OF) == "2 complaints open, the oldest for 19 days"
    assert reason_sentence("purchases", row, AS_OF) == "Bought once, 63 days ago (18 Aug 2025), no second order yet"
    regular = {"orders_total": 6.0, "days_since_last_order": 90.0, "mean_gap_days": 30.0, "overdue_ratio": 3.0}
    assert reason_sentence("purchases", regular, AS_OF) == "No order for 90 days since 22 Jul 2025: 3.0x their usual 30 days between orders"
    assert reason_sentence(None, row, AS_OF) is None


def test_actions_fit_the_leading_reason_and_are_configurable():
    assert recommended_action("complaints", {}).startswith("Service-recovery call")
    assert recommended_action("purchases", {"orders_total": 1}).startswith("Onboarding call")
    assert recommended_action("purchases", {"orders_total": 5}).startswith("Loyalty gesture")
    assert recommended_action("nps", {}, {"nps": "Call from the founder"}) == "Call from the founder"


def test_tiers_by_threshold_and_by_capacity():
    risk = pd.Series([0.9, 0.6, 0.3, 0.1])
    rank = pd.Series([1, 2, 3, 4])
    assert assign_tiers(risk, rank).tolist() == ["high", "high", "medium", "low"]
    assert assign_tiers(risk, rank, mode="capacity", capacity=1).tolist() == ["high", "medium", "low", "low"]


def test_list_ranked_by_risk_or_value_at_risk_with_reasons_for_the_actionable_part():
    scored = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "risk": [0.2, 0.8, 0.5, 0.1],
                           "reason_group_1": ["nps", "complaints", "purchases", None],
                           "reason_group_2": [None, "nps", None, None], "reason_group_3": [None] * 4})
    features = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "amount_365d": [1000.0, 10.0, 100.0, 0.0],
                             "days_since_last_order": [10.0, 20.0, 30.0, 40.0], "orders_total": [3.0, 2.0, 1.0, 1.0],
                             "tenure_days": [100.0] * 4, "nps_last_score": [3.0, 5.0, np.nan, np.nan],
                             "days_since_last_nps": [5.0, 6.0, np.nan, np.nan], "complaints_open": [0.0, 1.0, 0.0, 0.0],
                             "oldest_open_complaint_days": [np.nan, 12.0, np.nan, np.nan],
                             "lifecycle_stage": ["regular", "regular", "buyer", "buyer"]})
    by_risk = build_at_risk(scored, features, as_of=AS_OF, model_version="3", actionable_share=0.5)
    assert list(by_risk.columns) == LIST_COLUMNS
    assert by_risk["customer_id"].tolist() == ["b", "c", "a", "d"] and by_risk["rank"].tolist() == [1, 2, 3, 4]
    assert by_risk.loc[0, "reason_1"] == "1 complaint open for 12 days"
    assert by_risk.loc[0, "reason_2"].startswith("Detractor: NPS 5")
    assert by_risk["reason_1"].notna().tolist() == [True, True, False, False]  # top half explained
    assert by_risk.loc[0, "value_at_risk"] == 8.0 and by_risk.loc[0, "last_order_at"] == AS_OF - pd.Timedelta(days=20)
    by_value = build_at_risk(scored, features, as_of=AS_OF, model_version="3", rank_by="value_at_risk", explain_all=True)
    assert by_value["customer_id"].tolist()[:2] == ["a", "c"] and by_value["reason_1"].iloc[:3].notna().all()
