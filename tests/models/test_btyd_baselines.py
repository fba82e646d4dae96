"""The buy-till-you-die baselines on degenerate frames: finite scores or None with a reason,
never an exception that would stop the training."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from features import btyd
from models import baselines as bl


def frame(x, t_x, T, cutoffs=("2024-03-01",)):
    n = len(x)
    cutoff = np.resize(pd.to_datetime(list(cutoffs)).to_numpy(), n)
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "cutoff": cutoff,
                         "btyd_x": np.asarray(x, dtype=float), "btyd_t_x": np.asarray(t_x, dtype=float),
                         "btyd_T": np.asarray(T, dtype=float)})


DEGENERATE = {
    "one order each": frame(np.zeros(30), np.zeros(30), np.linspace(1, 20, 30)),
    "all orders on one day": frame(np.zeros(10), np.zeros(10), np.zeros(10)),
    "one customer": frame([2.0], [3.0], [4.0]),
    "identical customers, two cutoffs": frame(np.full(40, 3.0), np.full(40, 6.0), np.full(40, 9.0),
                                              cutoffs=("2024-02-01", "2024-03-01")),
    "very large frequencies": frame([5000.0, 12000.0, 300.0, 0.0], [51.9, 52.0, 50.0, 0.0], [52.0, 52.0, 52.0, 30.0]),
}


@pytest.mark.parametrize("case", DEGENERATE)
def test_pareto_nbd_baseline_scores_degenerate_frames(case):
    scores, reason = bl.pareto_nbd_scores(DEGENERATE[case], horizon_days=90)
    assert reason is None and np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(bl.pareto_nbd_no_order(DEGENERATE[case], 90), scores)


def test_an_unfittable_cutoff_makes_the_baseline_unavailable_with_a_reason(caplog):
    no_history = frame([np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan])
    scores, reason = bl.pareto_nbd_scores(no_history, 90)
    assert scores is None and "Pareto/NBD fit failed at cutoff 2024-03-01" in reason and "at least one customer" in reason
    with caplog.at_level(logging.WARNING, logger="models.baselines"):
        assert bl.pareto_nbd_no_order(no_history, 90) is None
    assert "Pareto/NBD baseline unavailable" in caplog.text
    # a client without a purchase history among others: no score for that row, so no baseline
    partial = frame([1.0, np.nan], [2.0, np.nan], [3.0, np.nan])
    scores, reason = bl.pareto_nbd_scores(partial, 90)
    assert scores is None and "missing on 1 of 2 rows" in reason
    assert bl.pareto_nbd_scores(pd.DataFrame({"cutoff": []}), 90) == (None, "no btyd_x, btyd_t_x, btyd_T columns")


def test_an_optimiser_failure_makes_the_baseline_unavailable(monkeypatch):
    def fail(*args, **kwargs):
        raise btyd.BtydFitError("Pareto/NBD fit failed: ABNORMAL")

    monkeypatch.setattr(btyd, "fit_pareto_nbd", fail)
    scores, reason = bl.pareto_nbd_scores(DEGENERATE["one customer"], 90)
    assert scores is None and "ABNORMAL" in reason


def test_bgnbd_baseline_is_unavailable_where_its_feature_is_missing():
    f = frame([1.0, 2.0], [1.0, 2.0], [3.0, 3.0])
    assert bl.btyd_scores(f) == (None, "no btyd_p_no_order feature") and bl.btyd_no_order(f) is None
    scores, reason = bl.btyd_scores(f.assign(btyd_p_no_order=[0.2, np.nan]))
    assert scores is None and "missing on 1 of 2 rows" in reason
    scores, reason = bl.btyd_scores(f.assign(btyd_p_no_order=[0.2, 0.7]))
    assert reason is None and scores.tolist() == [0.2, 0.7]


def test_a_scorer_fitted_on_its_batch_gives_a_client_the_same_score_in_a_smaller_batch():
    """The Pareto/NBD fits on the rows it scores: the explained top of a list and the drivers'
    sample read the scores of the whole list (fitted once), and another base is fitted afresh."""
    import cloudpickle

    from models.serving import FunctionScorer

    fits = []

    def fit_on_batch(frame, horizon_days):  # a score that depends on the whole batch, like a fit does
        fits.append(len(frame))
        x = frame["btyd_x"].to_numpy()
        return 1 / (1 + np.exp(-(x - x.mean())))

    scorer = FunctionScorer(fit_on_batch, ["btyd_x"], "pnbd", 90)
    everyone = pd.DataFrame({"btyd_x": [0.0, 1.0, 2.0, 3.0, 10.0, 1.0]})
    full = scorer.logit(everyone)
    top = everyone.iloc[[4, 1]]
    np.testing.assert_allclose(scorer.logit(top), full[[4, 1]])
    np.testing.assert_allclose(scorer.contributions(top)["pnbd"] + scorer.center, full[[4, 1]])
    assert fits == [6]  # the smaller batches were not fitted again
    other = pd.DataFrame({"btyd_x": [2.0, 5.0]})  # a row the list did not have: a new base, fitted on its own
    np.testing.assert_allclose(scorer.logit(other), np.log(np.exp([-1.5, 1.5])))
    assert fits == [6, 2]
    assert "_last" not in cloudpickle.loads(cloudpickle.dumps(scorer)).__dict__  # never stored with the model
