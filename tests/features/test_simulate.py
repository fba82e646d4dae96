"""The lifecycle simulator: deterministic, contract-valid, plausible, driven by its drivers, with
a truth that matches what really happens, and the data shapes it can take."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.inputs import load_data
from features.simulate import DRIVER_GROUPS, simulate, truth_outcomes, write_dataset

END = pd.Timestamp("2025-12-31")
ROLLOUT_COLUMNS = ["true_risk", "true_risk_se", "true_no_order_risk", "true_no_order_risk_se"]


@pytest.fixture(scope="module")
def sim():
    return simulate(2000, seed=11, end=END, truth_rollouts=4)


def realised(sim: dict, end: pd.Timestamp = END) -> pd.DataFrame:
    return truth_outcomes(sim["truth"], sim["orders"], end, 90)


def test_truth_outcomes_by_hand():
    t = pd.Timestamp
    truth = pd.DataFrame({"customer_id": ["A", "A", "B", "C", "C", "D"],
                          "as_of": [t("2025-01-01"), t("2025-02-01"), t("2025-01-01"), t("2025-01-01"), t("2025-03-01"),
                                    t("2025-01-01")],
                          "churned_at": [t("2025-04-01 03:00"), t("2025-04-01 03:00"), pd.NaT, t("2025-04-02 03:00"), pd.NaT,
                                         pd.NaT]})
    orders = pd.DataFrame({"customer_id": ["A", "B", "C", "D"],
                           "ordered_at": [t("2024-12-31 10:00"), t("2025-03-31 23:59"), t("2025-04-01"), t("2025-01-01")]})
    out = truth_outcomes(truth, orders, t("2025-05-15"), 90)
    # 2025-01-01 + 90 days = 2025-04-01 00:00, the window's last instant (an order then counts, a
    # churn at 03:00 does not); A's February window ends 2025-05-02; C's March one after the end
    assert list(zip(out["customer_id"], out["as_of"].dt.month)) == [("A", 1), ("A", 2), ("B", 1), ("C", 1), ("D", 1)]
    assert out["left"].tolist() == [False, True, False, False, False]
    assert out["silent"].tolist() == [True, True, False, False, False]


def test_same_seed_same_frames_and_same_bytes(sim, tmp_path):
    again = simulate(2000, seed=11, end=END, truth_rollouts=4)
    for name in sim:
        pd.testing.assert_frame_equal(sim[name], again[name])
    a, b = write_dataset(sim, tmp_path / "a"), write_dataset(again, tmp_path / "b")
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    other = simulate(2000, seed=12, end=END, truth_rollouts=0)
    assert not other["orders"]["amount"].equals(sim["orders"]["amount"])


def test_output_meets_the_contract(sim, tmp_path):
    result = load_data(write_dataset(sim, tmp_path)["orders"].parent, data_end=END + pd.Timedelta(days=1))
    assert result.summary["rows_quarantined"].sum() == 0
    assert set(result.tables) == {"customers", "orders", "interactions", "nps", "complaints", "cancellations"}
    for name in ("orders", "complaints"):
        id_col = "order_id" if name == "orders" else "complaint_id"
        assert sim[name][id_col].is_unique
    assert sim["customers"]["customer_id"].is_unique
    assert set(sim["interactions"]["direction"]) == {"inbound", "outbound"}
    assert sim["nps"]["score"].between(0, 10).all()


def test_nothing_after_the_end_or_after_churn(sim):
    churned = sim["cancellations"].set_index("customer_id")["cancelled_at"]
    for name, col in (("orders", "ordered_at"), ("interactions", "occurred_at"), ("nps", "answered_at"),
                      ("complaints", "opened_at")):
        frame = sim[name]
        assert (frame[col] < END + pd.Timedelta(days=1)).all()
        when = frame["customer_id"].map(churned)
        assert not (frame[col] > when).any(), name
    resolved = sim["complaints"]["resolved_at"].dropna()
    assert (resolved < END + pd.Timedelta(days=1)).all()


def test_truth_rows_and_plausible_churn(sim):
    truth = sim["truth"]
    assert list(truth.columns) == ["customer_id", "as_of", *ROLLOUT_COLUMNS, "frozen_hazard_risk",
                                   *[f"contrib_{g}" for g in DRIVER_GROUPS], "churned_at"]
    for col in ("true_risk", "true_no_order_risk", "frozen_hazard_risk"):
        assert truth[col].between(0, 1).all(), col
    assert (truth["as_of"].dt.day == 1).all()
    # a client at a month start has not churned yet
    assert not (truth["churned_at"] < truth["as_of"]).any()
    observed = realised(sim)
    assert 0.10 <= observed["left"].mean() <= 0.35
    ever = sim["cancellations"]["customer_id"].nunique() / len(sim["customers"])
    assert 0.3 <= ever <= 0.7
    # the true risk ranks who leaves, better than the hazard frozen at the month start
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(observed["left"], observed["true_risk"]) > 0.8
    assert roc_auc_score(observed["left"], observed["true_risk"]) > roc_auc_score(observed["left"], observed["frozen_hazard_risk"]) + 0.03


def test_risk_rises_with_each_driver(sim):
    truth = sim["truth"]
    base = truth["true_risk"].mean()
    for group in ("purchases", "attention", "nps", "complaints"):
        top = truth[truth[f"contrib_{group}"] >= truth[f"contrib_{group}"].quantile(0.9)]
        assert top["true_risk"].mean() > base, group
    # the hazard at as_of is sigmoid(base + sum of contributions): the contributions carry all its variation
    logit = np.log(1 - (1 - truth["frozen_hazard_risk"].clip(1e-12, 1 - 1e-12)) ** (1 / 90))
    total = truth[[f"contrib_{g}" for g in DRIVER_GROUPS]].sum(axis=1)
    assert np.corrcoef(total, logit)[0, 1] > 0.99


def test_true_risk_matches_the_realised_share_at_month_starts():
    """The truth's mean at each month start against the share of those clients who really leave
    (and who really place no order) within the horizon. A month start holds 90 to 1,900 clients
    here, so its realised share alone is off by up to 0.05 by chance: each month start is held to
    4 binomial standard errors, and all 21 month starts together (21,500 client-months) to 0.01
    (the acceptance is 0.02; pooled over five seeds the gap was at most 0.005, and a rollout
    hazard 15% too low makes it 0.016). The hazard frozen at the month start misses by 0.09."""
    observed = realised(simulate(4000, seed=0, end=END, truth_rollouts=4))
    by_month = observed.groupby("as_of")
    assert len(by_month) == 21
    for risk, outcome in (("true_risk", "left"), ("true_no_order_risk", "silent")):
        predicted, share, clients = by_month[risk].mean(), by_month[outcome].mean(), by_month.size()
        noise = np.sqrt(share * (1 - share) / clients)
        assert ((predicted - share).abs() < 4 * noise).all(), (risk, (predicted - share).round(3).to_dict())
        assert abs(observed[risk].mean() - observed[outcome].mean()) < 0.01, risk
    assert observed["left"].mean() - observed["frozen_hazard_risk"].mean() > 0.05


def test_standard_error_is_positive_and_shrinks_with_rollouts():
    few, many = (simulate(400, seed=4, end=END, history_months=8, truth_rollouts=r)["truth"] for r in (4, 16))
    assert (few["true_risk_se"] >= 0).all() and (few["true_risk_se"] > 0).mean() > 0.95
    ratio = many["true_risk_se"].mean() / few["true_risk_se"].mean()
    assert 0.35 < ratio < 0.65  # 1 / sqrt(4)
    # the two estimates of the same probabilities agree within their errors
    gap = (many["true_risk"] - few["true_risk"]) / np.hypot(many["true_risk_se"], few["true_risk_se"]).clip(1e-9)
    assert gap.abs().median() < 1.0
    one = simulate(400, seed=4, end=END, history_months=8, truth_rollouts=1)["truth"]
    assert one["true_risk"].notna().all() and one["true_risk_se"].isna().all()


def test_rollouts_leave_the_simulated_data_unchanged():
    """The rollouts draw from their own random streams: the same seed writes the same tables
    with or without them, and only the rollout columns of the truth differ."""
    without, with_ = (simulate(600, seed=8, end=END, history_months=10, truth_rollouts=r) for r in (0, 3))
    assert set(without) == set(with_)
    for name in without:
        if name != "truth":
            pd.testing.assert_frame_equal(without[name], with_[name])
    assert without["truth"][ROLLOUT_COLUMNS].isna().all().all()
    assert with_["truth"][ROLLOUT_COLUMNS[0]].notna().all()
    pd.testing.assert_frame_equal(without["truth"].drop(columns=ROLLOUT_COLUMNS), with_["truth"].drop(columns=ROLLOUT_COLUMNS))


def test_events_per_customer_in_a_realistic_range(sim):
    events = sum(len(sim[t]) for t in ("orders", "interactions", "nps", "complaints"))
    assert 15 <= events / len(sim["customers"]) <= 40


def _monthly(frame: pd.DataFrame, col: str) -> pd.Series:
    return frame.groupby(frame[col].dt.month).size()


def test_seasonality_peaks_in_november_and_december():
    """Orders and acquisitions per calendar month, seasonal over plain (the same company and
    seed, so the slow growth of the base cancels): high in November-December, low in May-July."""
    plain, seasonal = (simulate(3000, seed=2, end=END, history_years=3, seasonality=a, truth_rollouts=0)
                       for a in (0.0, 0.5))
    for table, col in (("orders", "ordered_at"), ("customers", "created_at")):
        lift = _monthly(seasonal[table], col) / _monthly(plain[table], col)
        lift = lift / lift.mean()
        assert lift[[11, 12]].min() > 1.2 and lift[[5, 6, 7]].max() < 0.85, (table, lift.round(2).to_dict())
        assert lift.idxmax() in (11, 12, 1), table


def test_low_purchase_rate_spaces_the_orders():
    plain, rare = (simulate(1500, seed=2, end=END, purchase_rate=r, truth_rollouts=0) for r in (1.0, 0.3))
    per_customer = {k: len(s["orders"]) / len(s["customers"]) for k, s in (("plain", plain), ("rare", rare))}
    assert per_customer["rare"] < 0.6 * per_customer["plain"]

    def median_gap(orders):
        return orders.sort_values("ordered_at").groupby("customer_id")["ordered_at"].diff().dt.days.median()

    assert median_gap(rare["orders"]) > 2.0 * median_gap(plain["orders"])


def test_short_history_spans_its_months():
    short = simulate(800, seed=2, end=END, history_months=5, truth_rollouts=2)
    first = short["customers"]["created_at"].min()
    assert first >= pd.Timestamp("2025-08-01") and (short["orders"]["ordered_at"] >= first).all()
    span = (short["orders"]["ordered_at"].max() - short["orders"]["ordered_at"].min()).days
    assert 140 <= span <= 153
    assert sorted(short["truth"]["as_of"].unique()) == list(pd.date_range("2025-09-01", "2025-12-01", freq="MS"))
    with pytest.raises(ValueError, match="at least 60 days"):
        simulate(100, end=END, history_months=1)


def test_a_small_base_without_cancellations_meets_the_contract(tmp_path):
    small = simulate(600, seed=2, end=END, contractual=False, truth_rollouts=2)
    assert "cancellations" not in small
    assert len(small["customers"]) == 600 and small["truth"]["churned_at"].notna().any()
    result = load_data(write_dataset(small, tmp_path)["orders"].parent, data_end=END + pd.Timedelta(days=1))
    assert result.summary["rows_quarantined"].sum() == 0
    assert set(result.tables) == {"customers", "orders", "interactions", "nps", "complaints"}


def test_no_nps_sends_no_survey_and_orders_only_writes_orders():
    quiet = simulate(600, seed=2, end=END, nps=False, truth_rollouts=0)
    assert "nps" not in quiet and (quiet["truth"]["contrib_nps"] == 0).all()
    assert len(quiet["interactions"]) and len(quiet["complaints"])
    bare = simulate(600, seed=2, end=END, orders_only=True, truth_rollouts=0)
    assert set(bare) == {"orders", "cancellations", "truth"}
    pd.testing.assert_frame_equal(bare["orders"], simulate(600, seed=2, end=END, truth_rollouts=0)["orders"])
