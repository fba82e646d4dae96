"""The Optuna search scores trials on the validation cutoffs and returns usable parameters."""
from __future__ import annotations


from models import registry
from models.train import split_cutoffs, train_model
from models.tune import tune
from tests.models.test_registry import CUTOFFS, synthetic_frame


def test_tuning_returns_the_best_trial_and_logs_every_trial(tmp_path):
    frame = synthetic_frame(n_per_cutoff=300)
    split = split_cutoffs(CUTOFFS, horizon_days=60, valid_cutoffs=2)
    cols = ["days_since_last_order", "nps_last_score", "noise", "segment"]
    best, trials = tune(frame, split, cols, {"num_boost_round": 40}, n_trials=3, seed=1)
    assert len(trials) == 3 and trials["valid_roc_auc"].between(0.5, 1).all()
    top = trials.loc[trials["valid_roc_auc"].idxmax()]
    assert best["num_leaves"] == top["num_leaves"] and best["num_boost_round"] == 40
    train_model(frame, split, cols, **best)  # the parameters fit a model
    registry.configure_tracking(tmp_path)
    parent = registry.log_trials(trials, experiment="tuning-test", home=tmp_path)
    from mlflow import MlflowClient
    children = MlflowClient().search_runs([MlflowClient().get_run(parent).info.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 3


def test_backtest_reports_one_row_per_fold_with_tuning():
    from models.candidates import backtest

    frame = synthetic_frame(n_per_cutoff=200)
    cols = ["days_since_last_order", "nps_last_score", "noise", "segment"]
    bt = backtest(frame, CUTOFFS, cols, {"num_boost_round": 30}, horizon_days=60, valid_cutoffs=2, folds=2, tune_trials=2)
    assert bt["test_cutoff"].tolist() == CUTOFFS[-2:]
    assert (bt["test_roc_auc"] > 0.7).all() and "baseline_recency_roc_auc" in bt
