"""The lifecycle simulator: deterministic, contract-valid, plausible, and driven by its drivers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.inputs import load_data
from features.simulate import DRIVER_GROUPS, simulate, write_dataset

END = pd.Timestamp("2025-12-31")


@pytest.fixture(scope="module")
def sim():
    return simulate(2000, seed=11, end=END)


def test_same_seed_same_frames_and_same_bytes(sim, tmp_path):
    again = simulate(2000, seed=11, end=END)
    for name in sim:
        pd.testing.assert_frame_equal(sim[name], again[name])
    a, b = write_dataset(sim, tmp_path / "a"), write_dataset(again, tmp_path / "b")
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    other = simulate(2000, seed=12, end=END)
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
    assert list(truth.columns) == ["customer_id", "as_of", "true_risk", *[f"contrib_{g}" for g in DRIVER_GROUPS], "churned_at"]
    assert truth["true_risk"].between(0, 1).all()
    assert (truth["as_of"].dt.day == 1).all()
    # a client at a month start has not churned yet
    assert not (truth["churned_at"] < truth["as_of"]).any()
    observed = truth[truth["as_of"] <= END - pd.Timedelta(days=90)]
    left = observed["churned_at"].notna() & (observed["churned_at"] <= observed["as_of"] + pd.Timedelta(days=90))
    assert 0.10 <= left.mean() <= 0.35
    ever = sim["cancellations"]["customer_id"].nunique() / len(sim["customers"])
    assert 0.3 <= ever <= 0.7
    # the true risk ranks who leaves
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(left, observed["true_risk"]) > 0.7


def test_risk_rises_with_each_driver(sim):
    truth = sim["truth"]
    base = truth["true_risk"].mean()
    for group in ("purchases", "attention", "nps", "complaints"):
        top = truth[truth[f"contrib_{group}"] >= truth[f"contrib_{group}"].quantile(0.9)]
        assert top["true_risk"].mean() > base, group
    # the hazard is sigmoid(base + sum of contributions): the contributions carry all the variation
    logit = np.log(1 - (1 - truth["true_risk"].clip(1e-12, 1 - 1e-12)) ** (1 / 90))
    total = truth[[f"contrib_{g}" for g in DRIVER_GROUPS]].sum(axis=1)
    assert np.corrcoef(total, logit)[0, 1] > 0.99


def test_events_per_customer_in_a_realistic_range(sim):
    events = sum(len(sim[t]) for t in ("orders", "interactions", "nps", "complaints"))
    assert 15 <= events / len(sim["customers"]) <= 40
