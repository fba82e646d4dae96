"""Labels against the simulator's true churn dates; CSV and Parquet inputs give the same features."""
from __future__ import annotations

import pandas as pd
import pytest

from features.build import build_features
from features.contract import load_data
from features.labels import build_labels, labelled_cutoffs
from features.simulate import simulate, write_dataset

END = pd.Timestamp("2025-12-31")


@pytest.fixture(scope="module")
def sim():
    return simulate(1500, seed=21, end=END)


def test_labels_agree_with_the_true_churn_dates(sim):
    tables = {k: v for k, v in sim.items() if k != "truth"}
    cutoffs = labelled_cutoffs(tables, 90)[-6:]
    labels = build_labels(tables, cutoffs, horizon_days=90)
    churned = sim["truth"].groupby("customer_id")["churned_at"].first()
    when = labels["customer_id"].map(churned)
    expected = (when >= labels["cutoff"]) & (when <= labels["cutoff"] + pd.Timedelta(days=90))
    assert len(labels) > 1000
    assert (labels["label"] == expected.astype(int)).all()
    # the population is the simulator's clients at each month start
    truth = sim["truth"][sim["truth"]["as_of"].isin(cutoffs)]
    assert set(zip(labels["customer_id"], labels["cutoff"])) == set(zip(truth["customer_id"], truth["as_of"]))


def test_non_contractual_labels_are_silence(sim):
    tables = {k: v for k, v in sim.items() if k not in ("truth", "cancellations")}
    cutoff = pd.Timestamp("2025-06-01")
    labels = build_labels(tables, [cutoff], horizon_days=90).set_index("customer_id")["label"]
    orders = tables["orders"]
    window = orders[(orders["ordered_at"] >= cutoff) & (orders["ordered_at"] <= cutoff + pd.Timedelta(days=90))]
    bought = labels.index.isin(window["customer_id"])
    assert (labels.to_numpy() == (~bought).astype(int)).all()


def test_csv_and_parquet_inputs_give_identical_features(sim, tmp_path):
    tables = {k: v for k, v in sim.items() if k != "truth"}
    write_dataset(tables, tmp_path / "p", fmt="parquet")
    write_dataset(tables, tmp_path / "c", fmt="csv")
    cutoffs = [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-09-01")]
    end = END + pd.Timedelta(days=1)
    from_parquet = build_features(load_data(tmp_path / "p", data_end=end).tables, cutoffs)
    from_csv = build_features(load_data(tmp_path / "c", data_end=end).tables, cutoffs)
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert len(from_parquet) > 1000
