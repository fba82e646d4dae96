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


def test_attention_nps_complaints_bank_and_lifecycle_hand_computed(tables):
    f = build_features(tables, [T("2024-03-01")])
    a, b = row(f, "a"), row(f, "b")
    # purchases
    assert a["last_gap_days"] == 31 and a["max_gap_days"] == 31 and np.isnan(b["last_gap_days"])
    # attention: first touch 4 days after the first order; b is still waiting (censored at 15 days)
    assert (a["days_to_first_outbound"], a["first_outbound_observed"]) == (4, 1)
    assert (b["days_to_first_outbound"], b["first_outbound_observed"]) == (15, 0)
    # a's first 100 days (to 2024-04-10) are not over at the cutoff: missing, not zero
    assert np.isnan(a["outbound_first_100d"]) and a["first_100d_observed"] == 0
    # silence since the last order (02-01): 19 days to the login on 02-20, then 10 to the cutoff
    assert a["longest_silence_days"] == 19 and b["longest_silence_days"] == 15
    assert a["days_since_last_contact"] == 10
    assert (a["outbound_30d"], a["outbound_90d"], a["inbound_30d"], a["outbound_total"]) == (0, 2, 1, 2)
    assert a["channel_call_90d"] == 1 and a["days_since_call_90d"] == 41 and a["channel_login_90d"] == 1
    assert b["channel_call_90d"] == 0 and np.isnan(b["days_since_call_90d"])
    # NPS
    assert a["nps_change"] == -5 and a["nps_never_answered"] == 0 and b["nps_never_answered"] == 1
    # complaints
    assert (a["complaints_total"], a["complaints_30d"], a["complaints_90d"], a["complaints_open"]) == (1, 0, 1, 0)
    assert a["mean_days_to_resolve"] == 10 and a["days_since_last_complaint"] == 46
    assert a["recovered_after_complaint"] == 1 and b["recovered_after_complaint"] == 0
    assert b["open_complaint_days"] == 10 and np.isnan(b["mean_days_to_resolve"])
    # emotional bank account: weight * 0.5 ** (age / 90) per event, minus 0.05 per open-complaint day
    d = lambda w, age: w * 0.5 ** (age / 90)  # noqa: E731
    bank_a = d(1, 60) + d(1, 29) + d(0.5, 56) + d(0.5, 41) + d(-2, 46) + d(1, 36) + d(2, 51) + d(-2, 20)
    assert a["bank_balance"] == pytest.approx(bank_a)
    assert b["bank_balance"] == pytest.approx(d(1, 15) + d(-2, 10) - 0.05 * 10)
    # lifecycle: a regular whose last NPS is a detractor (60 days: acclimate); b bought 15 days ago
    assert (a["lifecycle_stage"], a["coleman_phase"]) == ("regular", "acclimate")
    assert (b["lifecycle_stage"], b["coleman_phase"]) == ("buyer", "activate")  # 15 days
    assert 0 <= a["btyd_p_no_order"] <= 1 and a["btyd_expected_orders"] >= 0


def test_bgnbd_recovers_known_parameters():
    from features import btyd

    rng = np.random.default_rng(0)
    n, (r, alpha, a, b) = 5000, (0.25, 4.0, 0.8, 2.5)
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    T = np.full(n, 39.0)
    x, t_x = np.zeros(n), np.zeros(n)
    alive, t = np.ones(n, bool), np.zeros(n)
    for _ in range(200):  # vectorised over customers: next purchase, then a coin for dropping out
        t = t + rng.exponential(1 / lam)
        buy = alive & (t <= T)
        x[buy] += 1
        t_x[buy] = t[buy]
        alive = buy & (rng.random(n) >= p)
    fitted = btyd.fit_bgnbd(x, t_x, T)
    assert fitted.r == pytest.approx(r, rel=0.2) and fitted.alpha == pytest.approx(alpha, rel=0.3)
    no_buy = btyd.p_no_purchase(fitted, x, t_x, T, 13)
    assert ((no_buy >= 0) & (no_buy <= 1)).all()
    # one-time buyers are 'alive' by construction, but the chance they stay silent is high
    assert (btyd.p_alive(fitted, x, t_x, T)[x == 0] == 1).all()
    assert no_buy[x == 0].mean() > no_buy[x >= 3].mean()


def test_pareto_nbd_recovers_known_parameters_and_predicts_silence():
    from features import btyd

    rng = np.random.default_rng(3)
    n, (r, alpha, s, beta) = 6000, (0.55, 10.58, 0.61, 11.67)  # the published CDNOW estimates
    lam, mu = rng.gamma(r, 1 / alpha, n), rng.gamma(s, 1 / beta, n)
    death = rng.exponential(1 / mu)
    T, horizon = 39.0, 13.0

    def purchases(start, end):
        count, last, t = np.zeros(n), np.zeros(n), np.full(n, start)
        for _ in range(400):  # vectorised over customers: Poisson purchases until dropout
            t = t + rng.exponential(1 / lam)
            ok = t <= np.minimum(end, death)
            count[ok] += 1
            last[ok] = t[ok]
        return count, last

    x, t_x = purchases(0.0, T)
    future, _ = purchases(T, T + horizon)
    fitted = btyd.fit_pareto_nbd(x, t_x, np.full(n, T))
    assert fitted.r == pytest.approx(r, rel=0.25) and fitted.s == pytest.approx(s, rel=0.35)
    p = btyd.pnbd_p_no_purchase(fitted, x, t_x, np.full(n, T), horizon)
    assert ((p >= 0) & (p <= 1)).all()
    # calibrated against what the simulated customers then did, overall and for buyers
    assert p.mean() == pytest.approx((future == 0).mean(), abs=0.03)
    assert p[x >= 2].mean() == pytest.approx((future[x >= 2] == 0).mean(), abs=0.05)
