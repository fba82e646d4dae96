"""Labels against the simulator's true churn dates; CSV and Parquet inputs give the same features."""
from __future__ import annotations

import pandas as pd
import pytest

from features.build import build_features
from features.inputs import load_data
from features.labels import build_labels, build_training_set, labelled_cutoffs
from features.simulate import simulate, write_dataset

END = pd.Timestamp("2025-12-31")


@pytest.fixture(scope="module")
def sim():
    return simulate(1500, seed=21, end=END, truth_rollouts=0)  # the truth's rows and churn dates suffice


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


def test_validated_parquet_files_read_directly_give_the_same_features(sim, tmp_path):
    """The engine reads validated Parquet files itself (large data never sits in pandas)."""
    tables = {k: v for k, v in sim.items() if k != "truth"}
    write_dataset(tables, tmp_path / "p", fmt="parquet")
    cutoffs = [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-09-01")]
    paths = {name: tmp_path / "p" / f"{name}.parquet" for name in tables}
    from_frames = build_features(load_data(tmp_path / "p", data_end=END + pd.Timedelta(days=1)).tables, cutoffs)
    pd.testing.assert_frame_equal(build_features(paths, cutoffs), from_frames)
    assert labelled_cutoffs(paths, 90) == labelled_cutoffs(tables, 90)


def test_a_cutoff_computed_alone_equals_the_same_cutoff_among_many(sim):
    """The state advanced cutoff by cutoff (sliding windows, silence, NPS change, bank
    account) gives exactly what one pass straight to that cutoff gives."""
    tables = {k: v for k, v in sim.items() if k != "truth"}
    cutoffs = list(pd.date_range("2024-10-01", "2025-09-01", freq="MS")) + [pd.Timestamp("2025-09-17 13:30")]
    many = build_features(tables, cutoffs)
    for cutoff in (cutoffs[3], cutoffs[-2], cutoffs[-1]):
        alone = build_features(tables, [cutoff], channels=[c[len("channel_"):-len("_90d")] for c in many.columns
                                                         if c.startswith("channel_")])
        among = many[many["cutoff"] == cutoff].reset_index(drop=True)
        pd.testing.assert_frame_equal(among, alone, check_exact=False, rtol=1e-9, atol=1e-9)
        assert len(alone) > 300


@pytest.mark.parametrize("contractual", [True, False])
def test_training_set_is_the_labels_joined_to_the_features(sim, contractual):
    """One pass builds labels and features; it gives the rows of the two separate steps."""
    tables = {k: v for k, v in sim.items() if k != "truth" and (contractual or k != "cancellations")}
    cutoffs = labelled_cutoffs(tables, 90)[-6:]
    observations = build_labels(tables, cutoffs, horizon_days=90)
    joined = observations.merge(build_features(tables, cutoffs, population=observations[["customer_id", "cutoff"]]),
                                on=["customer_id", "cutoff"], how="left")
    together = build_training_set(tables, cutoffs, horizon_days=90)
    pd.testing.assert_frame_equal(together, joined)
    assert together["label"].between(0, 1).all() and 0 < together["label"].mean() < 1


def test_interactions_folded_in_small_blocks_give_the_same_features(sim, monkeypatch):
    """The engine folds a span of interactions block by block (to bound its temporary
    arrays): blocks of 1,000 rows give the features of one block per span."""
    import features.build as engine

    tables = {k: v for k, v in sim.items() if k != "truth"}
    cutoffs = labelled_cutoffs(tables, 90)[-3:]
    whole = build_features(tables, cutoffs)
    monkeypatch.setattr(engine, "BLOCK", 1000)
    assert len(tables["interactions"]) > 10 * engine.BLOCK
    pd.testing.assert_frame_equal(build_features(tables, cutoffs), whole, check_exact=False, rtol=1e-12, atol=1e-12)
