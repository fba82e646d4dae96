"""The two lists: the lapse rule, bounded risk, tiers, the win-back list and what changed."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.score import (LIST_COLUMNS, WIN_BACK_COLUMNS, LapseRule, assign_tiers, bound_risk, build_at_risk,
                          build_win_back, compare_with_previous, high_tier_changes, lapse_rule, make_lists,
                          risk_in_words, split_lists, value_per_year)

AS_OF = pd.Timestamp("2025-10-20")


def _clients() -> pd.DataFrame:
    """Five clients; the median usual gap of the regulars is 20 days."""
    return pd.DataFrame({
        "customer_id": ["on_rhythm", "silent_regular", "old_buyer", "quiet_but_visiting", "gone_quiet"],
        "days_since_last_order": [70.0, 100.0, 95.0, 40.0, 40.0],
        "mean_gap_days": [20.0, 20.0, np.nan, 30.0, 10.0],
        "days_since_last_inbound": [5.0, np.nan, np.nan, 3.0, 35.0],
        "inbound_total": [4.0, 0.0, 0.0, 9.0, 9.0],
        "btyd_p_alive": [0.8, 0.5, 1.0, 0.9, 0.9],
    })


def test_lapse_rule_reads_each_clients_own_rhythm():
    rule = LapseRule(order_gaps=3, silence_gaps=1, min_silence_days=30, p_alive_below=0.1, horizon_days=90)
    # on_rhythm: 70 days < max(3 x 20, 90); silent_regular: 100 > 90; old_buyer: one order, the median gap
    # (20) x 3 < the horizon 90 < 95; quiet_but_visiting: visits 3 days ago; gone_quiet: nothing for 35 days
    # > max(1 x 10, 30)
    assert lapse_rule(_clients(), rule).tolist() == [None, "no order", "no order", None, "no sign of life"]
    # BG/NBD below the threshold
    alive = _clients().assign(btyd_p_alive=[0.05, 0.5, 1.0, 0.9, 0.9])
    assert lapse_rule(alive, rule)[0] == "BG/NBD"
    # a longer horizon keeps them; the rule switched off keeps everyone
    assert lapse_rule(_clients(), LapseRule(horizon_days=120)).tolist()[:3] == [None, None, None]
    assert pd.isna(lapse_rule(_clients(), LapseRule(enabled=False))).all()
    # data with cancellations: a contract that was not cancelled is still a client
    assert pd.isna(split_lists(_clients(), rule, contractual=True)).all()
    assert split_lists(_clients(), rule, contractual=True, rule_with_cancellations=True)[1] == "no order"


def test_risk_is_strictly_between_zero_and_one_and_read_with_the_horizon():
    assert bound_risk([0.0, 0.5, 1.0]).tolist() == [0.01, 0.5, 0.99]
    assert risk_in_words(np.array([0.3801, 0.99, 0.01]), 90).tolist() == [
        "38% within 90 days", "99% within 90 days", "1% within 90 days"]


def test_tiers_by_share_by_capacity_and_by_threshold():
    risk = pd.Series(np.linspace(0.9, 0.05, 10))
    rank = pd.Series(np.arange(1, 11))
    share = assign_tiers(risk, rank)
    assert share.tolist() == ["high"] * 3 + ["medium"] * 3 + ["low"] * 4
    assert (share == "high").mean() <= 0.3
    assert assign_tiers(risk, rank, mode="capacity", capacity=2).tolist() == ["high"] * 2 + ["medium"] * 2 + ["low"] * 6
    assert assign_tiers(pd.Series([0.9, 0.6, 0.3, 0.1]), pd.Series([1, 2, 3, 4]), mode="thresholds").tolist() == \
        ["high", "high", "medium", "low"]


def _scored_and_features():
    scored = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "risk": [0.2, 1.0, 0.5, 0.0],
                           "reason_group_1": ["attributes", "complaints", "purchases", None],
                           "reason_group_2": ["nps", "nps", None, None], "reason_group_3": [None, "attributes", None, None]})
    features = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "amount_365d": [1000.0, 10.0, 100.0, 0.0],
                             "days_since_last_order": [10.0, 20.0, 30.0, 40.0], "orders_total": [3.0, 2.0, 1.0, 1.0],
                             "tenure_days": [400.0, 300.0, 50.0, 120.0], "nps_last_score": [3.0, 5.0, np.nan, np.nan],
                             "days_since_last_nps": [5.0, 6.0, np.nan, np.nan], "complaints_open": [0.0, 1.0, 0.0, 0.0],
                             "oldest_open_complaint_days": [np.nan, 12.0, np.nan, np.nan],
                             "lifecycle_stage": ["regular", "regular", "buyer", "buyer"],
                             "segment": ["trade", "smb", "smb", "trade"], "region": ["north", "south", "east", "west"]})
    return scored, features


def test_retention_list_ranked_with_reasons_actions_and_profile():
    scored, features = _scored_and_features()
    by_risk = build_at_risk(scored, features, as_of=AS_OF, model_version="3", actionable_share=0.75)
    assert list(by_risk.columns) == LIST_COLUMNS
    assert by_risk["customer_id"].tolist() == ["b", "c", "a", "d"] and by_risk["rank"].tolist() == [1, 2, 3, 4]
    assert by_risk["risk"].tolist() == [0.99, 0.5, 0.2, 0.01]  # never 0% or 100%
    assert by_risk.loc[0, "risk_in_words"] == "99% within 90 days"
    b = by_risk.iloc[0]
    assert b["reason_1"] == "1 complaint open for 12 days" and b["reason_2"].startswith("Detractor: NPS 5")
    assert b["action_key"] == "service_recovery" and b["action"].startswith("Service-recovery call")
    assert pd.isna(b["reason_group_3"])  # the profile is never a reason ...
    assert b["profile"] == "segment: smb; region: south"  # ... it is context
    a = by_risk.set_index("customer_id").loc["a"]
    assert a["reason_group_1"] == "nps" and a["action_key"] == "nps_follow_up"  # 'attributes' dropped, nps moved up
    c = by_risk.set_index("customer_id").loc["c"]
    assert c["action_key"] == "onboarding"  # a buyer in the first 100 days
    assert by_risk["reason_1"].notna().tolist() == [True, True, True, False]  # the top 75% explained
    assert pd.isna(by_risk.loc[3, "action_key"])
    assert by_risk.loc[0, "value_at_risk"] == 0.99 * 10.0
    assert by_risk.loc[0, "last_order_at"] == AS_OF - pd.Timedelta(days=20)
    by_value = build_at_risk(scored, features, as_of=AS_OF, model_version="3", rank_by="value_at_risk", explain_all=True)
    assert by_value["customer_id"].tolist()[:2] == ["a", "c"] and by_value["action_key"].notna().all()


def test_an_open_complaint_among_the_reasons_is_dealt_with_first():
    scored, features = _scored_and_features()
    # c, in its first 100 days, led by its purchases, also has a complaint open that the model names second;
    # a, led by nps, has one open that the model does not name
    scored.loc[2, "reason_group_2"] = "complaints"
    features.loc[[0, 2], "complaints_open"] = 1.0
    features.loc[[0, 2], "oldest_open_complaint_days"] = [40.0, 30.0]
    out = build_at_risk(scored, features, as_of=AS_OF, model_version="3", explain_all=True).set_index("customer_id")
    assert out.loc["c", "reason_group_1"] == "purchases" and out.loc["c", "reason_2"] == "1 complaint open for 30 days"
    assert out.loc["c", "action_key"] == "service_recovery"  # not onboarding over an open complaint
    assert out.loc["a", "action_key"] == "nps_follow_up"  # its reasons do not name the complaint: the lead decides
    assert out.loc["b", "action_key"] == "service_recovery"


def test_win_back_list_ranked_by_what_they_brought_with_their_own_reasons():
    features = pd.DataFrame({
        "customer_id": ["small", "big", "once"],
        "days_since_last_order": [150.0, 284.0, 200.0], "tenure_days": [400.0, 284.0 + 730.0, 200.0],
        "mean_gap_days": [30.0, 21.0, np.nan], "orders_total": [9.0, 35.0, 1.0],
        "amount_total": [900.0, 7000.0, 80.0], "complaints_open": [0.0, 1.0, 0.0], "complaints_365d": [0.0, 1.0, 0.0],
        "oldest_open_complaint_days": [np.nan, 300.0, np.nan], "nps_last_score": [9.0, 4.0, np.nan],
        "days_since_last_nps": [200.0, 290.0, np.nan], "segment": ["smb", "trade", "smb"]})
    wb = build_win_back(features, np.array(["no order", "no order", "no order"], dtype=object), as_of=AS_OF)
    assert list(wb.columns) == WIN_BACK_COLUMNS
    assert wb["customer_id"].tolist() == ["big", "small", "once"]
    assert wb["value_per_year"].round(2).tolist() == [3500.0, 900.0, 80.0]  # 7000 over two years of buying
    assert (wb["lifecycle_stage"] == "former").all() and (wb["action_key"] == "win_back").all()
    big = wb.iloc[0]
    assert big["reason_1"] == "No order for 284 days; bought every 21 days for 2 years"
    assert big["reason_2"] == "1 complaint open for 300 days" and big["reason_3"].startswith("Detractor: NPS 4")
    assert wb.iloc[2]["reason_1"] == "No order for 200 days since their only order on 3 Apr 2025"
    assert value_per_year(features.head(1)).tolist() == [900.0]  # under a year of buying: what they bought


def test_make_lists_scores_and_explains_only_the_clients_who_can_still_be_kept():
    clients = _clients().assign(amount_365d=[100.0, 200.0, 50.0, 300.0, 10.0], orders_total=[5.0, 4.0, 1.0, 6.0, 8.0],
                                tenure_days=[400.0, 400.0, 95.0, 400.0, 400.0], amount_total=1000.0)
    calls = []

    def predict(frame):
        calls.append((frame["customer_id"].tolist(), frame["explain"].tolist()))
        return pd.DataFrame({"customer_id": frame["customer_id"], "risk": np.linspace(0.9, 0.1, len(frame)),
                             "reason_group_1": np.where(frame["explain"], "purchases", None),
                             "reason_group_2": None, "reason_group_3": None})

    at_risk, win_back, drivers = make_lists(predict, clients, as_of=AS_OF, model_version="1", actionable_share=0.5,
                                            driver_sample=0)
    assert at_risk["customer_id"].tolist() == ["on_rhythm", "quiet_but_visiting"]
    assert set(win_back["customer_id"]) == {"silent_regular", "old_buyer", "gone_quiet"}
    assert calls[0] == (["on_rhythm", "quiet_but_visiting"], [False, False])  # the lapsed are never scored
    assert calls[1] == (["on_rhythm"], [True])  # TreeSHAP only for the rows shown with reasons
    assert at_risk["reason_1"].notna().tolist() == [True, False]
    assert drivers["top_of_list"].tolist() == [1.0]


def test_what_changed_since_the_previous_scoring():
    scored, features = _scored_and_features()
    now = build_at_risk(scored, features, as_of=AS_OF, model_version="3", tiers={"high_share": 0.5})
    before = now.assign(risk=[0.4, 0.5, 0.9, 0.5], tier=["medium", "high", "high", "low"]).iloc[1:]  # b was not there
    win_back = build_win_back(features.head(0), np.array([], dtype=object), as_of=AS_OF)
    gone = pd.DataFrame({"customer_id": ["e"], "risk": [0.7], "tier": ["high"], "rank": [1]})
    previous = (pd.concat([before, gone]), win_back)
    at_risk, wb = compare_with_previous(now, win_back, previous)
    by_id = at_risk.set_index("customer_id")
    assert by_id.loc["a", "risk_change"] == -0.7 and pd.isna(by_id.loc["b", "risk_change"])
    assert by_id["new_high_tier"].tolist() == [True, False, False, False]  # b is high and new; c was high already
    assert by_id["new_on_list"].tolist() == [True, False, False, False]
    entered, left = high_tier_changes(at_risk, wb, previous)
    assert entered["customer_id"].tolist() == ["b"]
    assert left.set_index("customer_id")["now"].to_dict() == {"a": "now medium", "e": "no longer a client"}
    # the first scoring in a folder: nothing to compare with, the columns stay empty
    first, _ = compare_with_previous(now, win_back, None)
    assert first["risk_change"].isna().all() and first["new_high_tier"].isna().all()


def test_the_lapse_rule_finds_the_former_clients_of_a_simulated_company():
    """A non-contractual company where nobody announces leaving: the simulator's truth says who
    had already gone before the date; the rule reads only the features."""
    from features.build import build_features
    from features.simulate import simulate

    sim = simulate(3000, 11, contractual=False)
    as_of = sim["truth"]["as_of"].max()
    features = build_features({k: v for k, v in sim.items() if k != "truth"}, [as_of])
    churned = sim["truth"].drop_duplicates("customer_id").set_index("customer_id")["churned_at"]
    gone = churned.reindex(features["customer_id"]).lt(as_of).to_numpy()
    lapsed = pd.notna(lapse_rule(features, LapseRule()))
    assert gone.mean() > 0.25  # a third of the clients at the date had already left
    assert gone[lapsed].mean() > 0.75  # the win-back list is mostly former clients (84% on this seed)
    assert lapsed[gone].mean() > 0.85  # and holds most of them (93%)
    assert gone[~lapsed].mean() < 0.08  # the retention list is mostly clients who can still be kept (4%)


def test_a_client_who_cancelled_is_on_neither_list_unless_they_still_order():
    from features.build import build_population, features_for_scoring, returning_customers

    day = lambda d: pd.Timestamp("2025-01-01") + pd.Timedelta(days=d)  # noqa: E731
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(7)],
                           "customer_id": ["stays", "stays", "left", "left", "back", "back", "back"],
                           "ordered_at": [day(0), day(100), day(0), day(50), day(0), day(60), day(150)],
                           "amount": 10.0, "status": ["completed"] * 6 + ["completed"]})
    cancellations = pd.DataFrame({"customer_id": ["left", "back"], "cancelled_at": [day(80), day(90)]})
    tables = {"orders": orders, "cancellations": cancellations}
    as_of = day(200)
    assert set(build_population(tables, [as_of])["customer_id"]) == {"stays"}
    assert returning_customers(tables, as_of) == ["back"]
    assert returning_customers(tables.copy() | {"orders": orders.assign(status=["completed"] * 6 + ["refund"])},
                               as_of) == []  # a credit note is not a purchase
    assert set(features_for_scoring(tables, as_of)["customer_id"]) == {"stays", "back"}
    assert returning_customers({"orders": orders}, as_of) == []


def test_reasons_for_the_actionable_share_at_most_explain_max():
    from models.score import rows_to_explain

    risk = pd.Series(np.linspace(0.9, 0.1, 100))
    assert rows_to_explain(risk, pd.Series(0.0, index=risk.index)).sum() == 20
    assert rows_to_explain(risk, pd.Series(0.0, index=risk.index), min_rows=30).sum() == 30  # a small base: more
    assert rows_to_explain(risk, pd.Series(0.0, index=risk.index), min_rows=1000).sum() == len(risk)  # all of it
    capped = rows_to_explain(risk, pd.Series(0.0, index=risk.index), max_rows=5)
    assert capped.tolist() == [True] * 5 + [False] * 95
    keep = np.arange(100) % 2 == 0  # only the clients who can still be kept
    assert rows_to_explain(risk, pd.Series(0.0, index=risk.index), keep=keep, explain_all=True).tolist() == keep.tolist()


def test_a_client_whose_risk_only_the_profile_raises_gets_a_check_in_not_no_action():
    scored = pd.DataFrame({"customer_id": ["profile_only", "nothing"], "risk": [0.6, 0.1],
                           "reason_group_1": ["attributes", None], "reason_group_2": None, "reason_group_3": None})
    features = pd.DataFrame({"customer_id": ["profile_only", "nothing"], "tenure_days": [400.0, 400.0],
                             "segment": ["trade", "smb"]})
    out = build_at_risk(scored, features, as_of=AS_OF, model_version="1", explain_all=True)
    assert out["action_key"].tolist() == ["check_in", "none"]
    assert out["reason_1"].isna().all() and out["profile"].tolist() == ["segment: trade", "segment: smb"]
