"""Point-in-time features and labels on tiny hand-built tables with hand-computed values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, build_population, skipped_groups
from features.labels import build_labels, data_end, labelled_cutoffs

T = pd.Timestamp


def ts(*values):
    return pd.to_datetime(list(values)).astype("datetime64[us]")


@pytest.fixture
def tables():
    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o5"],
        "customer_id": ["a", "a", "b", "a", "c"],
        "ordered_at": ts("2024-01-01", "2024-02-01", "2024-02-15", "2024-03-01", "2024-03-05"),
        "amount": [10.0, 20.0, 5.0, 7.0, 3.0],
    })
    interactions = pd.DataFrame({
        "customer_id": ["a", "a", "b", "a"],
        "occurred_at": ts("2024-01-05", "2024-02-20", "2024-03-01", "2024-01-20"),
        "channel": ["email", "login", "call", "call"],
        "direction": ["outbound", "inbound", "outbound", "outbound"],
    })
    nps = pd.DataFrame({"customer_id": ["a", "a", "b"], "answered_at": ts("2024-01-10", "2024-02-10", "2024-03-01"),
                        "score": [9, 4, 10]})
    complaints = pd.DataFrame({
        "complaint_id": ["k1", "k2"], "customer_id": ["b", "a"],
        "opened_at": ts("2024-02-20", "2024-01-15"),
        "resolved_at": ts("2024-03-01", "2024-01-25"),  # k1 resolved exactly at the cutoff: still open
    })
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "created_at": ts("2024-01-01", "2024-02-15", "2024-03-05"),
                              "segment": ["smb", "consumer", "smb"]})
    return {"orders": orders, "interactions": interactions, "nps": nps, "complaints": complaints, "customers": customers}


def row(frame, customer):
    return frame.set_index("customer_id").loc[customer]


def test_features_hand_computed(tables):
    f = build_features(tables, [T("2024-03-01")])
    # c's first order is after the cutoff: not a client yet; the order on the cutoff itself does not count
    assert list(f["customer_id"]) == ["a", "b"]
    a, b = row(f, "a"), row(f, "b")
    assert a["days_since_last_order"] == 29  # 2024-02-01 -> 2024-03-01 (leap year)
    assert a["tenure_days"] == 60
    assert (a["orders_30d"], a["orders_90d"], a["orders_total"]) == (1, 2, 2)
    assert a["amount_90d"] == 30.0
    assert a["mean_gap_days"] == 31 and a["overdue_ratio"] == pytest.approx(29 / 31)
    assert a["days_to_first_outbound"] == 4
    assert a["days_since_last_outbound"] == 41  # 2024-01-20
    assert a["days_since_last_inbound"] == 10
    assert (a["outbound_90d"], a["inbound_90d"]) == (2, 1)
    assert a["nps_last_score"] == 4 and a["nps_last_category"] == "detractor" and a["nps_answers"] == 2
    assert a["days_since_last_nps"] == 20
    assert a["complaints_open"] == 0 and np.isnan(a["oldest_open_complaint_days"]) and a["complaints_365d"] == 1
    # one order only: no gap; no interactions before the cutoff; NPS answered on the cutoff does not exist yet
    assert b["orders_total"] == 1 and np.isnan(b["mean_gap_days"]) and np.isnan(b["overdue_ratio"])
    assert np.isnan(b["days_since_last_outbound"]) and b["outbound_90d"] == 0
    assert np.isnan(b["nps_last_score"]) and b["nps_last_category"] == "none" and b["nps_answers"] == 0
    assert b["complaints_open"] == 1 and b["oldest_open_complaint_days"] == 10
    assert a["segment"] == "smb" and b["segment"] == "consumer"


def test_tied_timestamps_and_several_cutoffs(tables):
    tables = dict(tables)
    tables["orders"] = pd.concat([tables["orders"], pd.DataFrame({
        "order_id": ["o6"], "customer_id": ["a"], "ordered_at": ts("2024-02-01"), "amount": [1.0]})])
    f = build_features(tables, [T("2024-02-01"), T("2024-02-02")])
    assert row(f[f["cutoff"] == T("2024-02-01")], "a")["orders_total"] == 1
    later = row(f[f["cutoff"] == T("2024-02-02")], "a")
    assert later["orders_total"] == 3 and later["amount_90d"] == 31.0 and later["days_since_last_order"] == 1


def test_orders_only_data_skips_groups_and_still_builds(tables):
    orders_only = {"orders": tables["orders"]}
    f = build_features(orders_only, [T("2024-03-02")])
    assert "days_since_last_order" in f and "nps_last_score" not in f
    assert set(skipped_groups(orders_only)) == {"attention", "nps", "complaints", "bank", "attributes"}


def test_population_active_window_and_cancellations(tables):
    pop = build_population({"orders": tables["orders"]}, [T("2024-03-10")], active_window_days=20)
    assert list(pop["customer_id"]) == ["a", "c"]  # b's last order (02-15) is 24 days before the cutoff
    contractual = {"orders": tables["orders"],
                   "cancellations": pd.DataFrame({"customer_id": ["a"], "cancelled_at": ts("2024-03-05")})}
    pop = build_population(contractual, [T("2024-03-05"), T("2024-03-10")], active_window_days=20)
    # a cancellation ends the relationship from the next cutoff on; recency does not matter then
    assert sorted(pop[pop["cutoff"] == T("2024-03-05")]["customer_id"]) == ["a", "b"]
    assert sorted(pop[pop["cutoff"] == T("2024-03-10")]["customer_id"]) == ["b", "c"]


def test_labels_no_order_within_horizon(tables):
    assert data_end(tables) == T("2024-03-05")
    labels = build_labels(tables, [T("2024-01-15"), T("2024-02-01"), T("2024-02-25")], horizon_days=14)
    # 2024-02-25 + 14 days runs past the end of the data: no labels for that cutoff
    assert labels["cutoff"].unique().tolist() == [T("2024-01-15"), T("2024-02-01")]
    got = {(r.customer_id, r.cutoff): r.label for r in labels.itertuples()}
    # a: nothing in [01-15, 01-29] -> former; the order stamped at the 02-01 cutoff is in [02-01, 02-15]
    assert got == {("a", T("2024-01-15")): 1, ("a", T("2024-02-01")): 0}
    labels = build_labels(tables, [T("2024-02-01")], horizon_days=30)
    assert labels["label"].tolist() == [0]  # a orders on 03-01, inside (02-01, 03-02]


def test_labels_cancellation_within_horizon(tables):
    orders = pd.concat([tables["orders"], pd.DataFrame({"order_id": ["o9"], "customer_id": ["c"],
                                                         "ordered_at": ts("2024-04-30"), "amount": [1.0]})])
    contractual = {"orders": orders,
                   "cancellations": pd.DataFrame({"customer_id": ["a"], "cancelled_at": ts("2024-03-05")})}
    labels = build_labels(contractual, [T("2024-03-01")], horizon_days=30)
    assert dict(zip(labels["customer_id"], labels["label"])) == {"a": 1, "b": 0}


def test_labelled_cutoffs_are_month_starts_with_a_full_horizon(tables):
    orders = pd.DataFrame({"order_id": ["1", "2"], "customer_id": ["a", "a"],
                           "ordered_at": ts("2024-01-10", "2024-06-20"), "amount": [1.0, 1.0]})
    cutoffs = labelled_cutoffs({"orders": orders}, horizon_days=60)
    assert cutoffs == [T("2024-02-01"), T("2024-03-01"), T("2024-04-01")]
    assert labelled_cutoffs({"orders": orders}, horizon_days=60, max_cutoffs=2) == [T("2024-03-01"), T("2024-04-01")]
