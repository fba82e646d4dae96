"""Behaviour of the whole modelling path on simulated data: it learns, it is calibrated,
it is reproducible, and its explanations find the simulator's true drivers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, feature_columns
from features.catalogue import NOT_A_REASON, feature_group
from features.labels import build_labels, labelled_cutoffs
from features.simulate import simulate
from models.evaluate import classification_metrics
from models.explain import explain
from models.candidates import fit_evaluate
from models.reasons import actionable_reasons
from models.serving import group_contributions, top_reasons
from models.train import split_cutoffs

PARAMS = {"num_boost_round": 300, "seed": 7}


@pytest.fixture(scope="module")
def sim():
    return simulate(6000, seed=5)


@pytest.fixture(scope="module")
def training(sim):
    tables = {k: v for k, v in sim.items() if k != "truth"}
    cutoffs = labelled_cutoffs(tables, 90)
    labels = build_labels(tables, cutoffs, horizon_days=90)
    features = build_features(tables, cutoffs, population=labels[["customer_id", "cutoff"]])
    frame = labels.merge(features, on=["customer_id", "cutoff"])
    split = split_cutoffs(cutoffs, horizon_days=90, valid_cutoffs=2)
    return frame, split


@pytest.fixture(scope="module")
def report(training):
    frame, split = training
    return fit_evaluate(frame, split, feature_columns(frame), PARAMS)


def test_model_reaches_the_oracle_and_is_calibrated(sim, report):
    scores = report.test_scores.merge(sim["truth"], left_on=["customer_id", "cutoff"], right_on=["customer_id", "as_of"])
    assert len(scores) == len(report.test_scores)
    oracle = classification_metrics(scores["label"], scores["true_risk"])["roc_auc"]
    # the simulator's rolled-out probability bounds what any model of the data can reach
    assert 0.94 * oracle <= report.metrics["test_roc_auc"] <= oracle + 0.02
    assert report.metrics["test_ece"] < 0.03
    print(f"AUC {report.metrics['test_roc_auc']:.3f} vs oracle {oracle:.3f}; ECE {report.metrics['test_ece']:.4f}")
    assert report.metrics["test_roc_auc"] > report.metrics["baseline_recency_roc_auc"] + 0.1


def test_same_data_config_and_seed_give_the_same_scores(training, report):
    frame, split = training
    a = fit_evaluate(frame, split, feature_columns(frame), PARAMS, baselines=False)
    b = fit_evaluate(frame, split, feature_columns(frame), PARAMS, baselines=False)
    np.testing.assert_array_equal(a.test_scores["risk"], b.test_scores["risk"])
    assert a.model.booster_.model_to_string() == b.model.booster_.model_to_string()
    # LightGBM among the other candidates is the same model as LightGBM alone
    np.testing.assert_array_equal(report.test_scores["score_lightgbm"], a.test_scores["raw_risk"])


def test_native_treeshap_equals_the_shap_package(training):
    import shap

    frame, split = training
    cols = feature_columns(frame)
    report = fit_evaluate(frame, split, cols, {"num_boost_round": 60}, baselines=False)
    X = report.model.prepare(frame[frame["cutoff"] == split.test][cols].head(300))
    native = report.model.predict_contributions(X)
    explainer = shap.TreeExplainer(report.model.booster_)
    reference = explainer.shap_values(X)
    reference = reference[1] if isinstance(reference, list) else reference
    np.testing.assert_allclose(native.drop(columns="bias").to_numpy(), reference, atol=1e-6)


def test_reasons_find_the_true_dominant_driver(sim, training, report):
    """Among high-risk clients whose true risk is dominated by one driver group, that group
    is among the model's top two reason groups."""
    frame, split = training
    cols = feature_columns(frame)
    test = frame[frame["cutoff"] == split.test]
    reasons = explain(report.model, test).assign(customer_id=test["customer_id"].to_numpy(), cutoff=split.test)
    truth = sim["truth"][sim["truth"]["as_of"] == split.test].set_index("customer_id")
    groups = [c for c in truth.columns if c.startswith("contrib_")]
    contrib = truth[groups].clip(lower=0)
    share = contrib.max(axis=1) / contrib.sum(axis=1).replace(0, np.nan)
    dominant = contrib.idxmax(axis=1).str.removeprefix("contrib_")
    risky = truth["true_risk"] >= truth["true_risk"].quantile(0.8)
    chosen = truth.index[risky & (share >= 0.6)]
    r = reasons.set_index("customer_id").loc[chosen]
    hit = [(d in (a, b)) for d, a, b in zip(dominant.loc[chosen], r["reason_group_1"], r["reason_group_2"])]
    assert len(chosen) >= 50
    assert np.mean(hit) >= 0.8, np.mean(hit)
    print(f"dominant driver in the top two reasons: {np.mean(hit):.1%} of {len(chosen)}")


@pytest.fixture(scope="module")
def silent(sim):
    """The same company without a cancellations table: the label is no order within the horizon."""
    tables = {k: v for k, v in sim.items() if k not in ("truth", "cancellations")}
    cutoffs = labelled_cutoffs(tables, 90)
    labels = build_labels(tables, cutoffs, horizon_days=90)
    features = build_features(tables, cutoffs, population=labels[["customer_id", "cutoff"]])
    frame = labels.merge(features, on=["customer_id", "cutoff"])
    split = split_cutoffs(cutoffs, horizon_days=90, valid_cutoffs=2)
    return frame, split, fit_evaluate(frame, split, feature_columns(frame), PARAMS, baselines=False)


def _true_driver_hits(truth, reasons, customer_ids) -> pd.Series:
    """Per single-driver high-risk client (true risk in the top 20%, one group with at least 60%
    of the positive log-odds, not the profile): is the true group among the first two reasons."""
    contrib = truth[[c for c in truth.columns if c.startswith("contrib_")]].clip(lower=0)
    share = contrib.max(axis=1) / contrib.sum(axis=1).replace(0, np.nan)
    dominant = contrib.idxmax(axis=1).str.removeprefix("contrib_")
    chosen = truth.index[(truth["true_risk"] >= truth["true_risk"].quantile(0.8)) & (share >= 0.6)]
    dom = dominant.loc[chosen.intersection(pd.Index(customer_ids))]
    dom = dom[dom != "attributes"]
    r = reasons.set_axis(customer_ids).loc[dom.index]
    return pd.Series([(d in (a, b)) for d, a, b in zip(dom, r["reason_group_1"], r["reason_group_2"])],
                     index=dom.index).groupby(dom.to_numpy())


def test_reasons_find_the_true_driver_without_cancellations(sim, silent):
    """Without cancellations the model learns 'no order within the horizon': a frequent buyer
    slipping behind their rhythm, or a client we have not called for months who still visits,
    has features of the same group that lower the risk. A group is ranked by what its features
    add, so those do not hide the true driver; the net group sums lose the lack of attention."""
    frame, split, report = silent
    test = frame[frame["cutoff"] == split.test].reset_index(drop=True)
    truth = sim["truth"][sim["truth"]["as_of"] == split.test].set_index("customer_id")
    ids = test["customer_id"].to_numpy()
    listed = actionable_reasons(explain(report.model, test)[["reason_group_1", "reason_group_2", "reason_group_3"]]
                                .astype("object"), test)
    hits = _true_driver_hits(truth, listed, ids)
    overall = pd.concat([h for _, h in hits])
    print(f"without cancellations: {overall.mean():.1%} of {len(overall)}; " + ", ".join(
        f"{g} {h.mean():.0%} of {len(h)}" for g, h in hits))
    assert len(overall) >= 100 and hits.size()["attention"] >= 30
    assert overall.mean() >= 0.9 and hits.mean()["attention"] >= 0.9
    # the net group sums of the same contributions: the customer's own activity and frequent orders hide the drivers
    contrib = report.model.predict_contributions(test)
    groups = {c: feature_group(c) for c in contrib.columns if c != "bias" and feature_group(c) not in NOT_A_REASON}
    net = top_reasons(group_contributions(contrib[list(groups)], groups), 3)
    net = actionable_reasons(net[["reason_group_1", "reason_group_2", "reason_group_3"]].astype("object"), test)
    assert pd.concat([h for _, h in _true_driver_hits(truth, net, ids)]).mean() < overall.mean() - 0.05
