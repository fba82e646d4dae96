"""Optional hyper-parameter search with Optuna (``churn train --tune N``).

Each trial fits on the training cutoffs and is scored by ROC-AUC on the validation cutoffs;
the test cutoff is never looked at, so the holdout metrics stay honest. The trials are
returned for logging (``models.registry.log_trials`` makes them visible in MLflow).
"""
from __future__ import annotations

import logging

import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.train import CutoffSplit, risk_of, train_model


def tune(frame: pd.DataFrame, split: CutoffSplit, feature_cols: list[str], base_params: dict, *,
         n_trials: int, seed: int = 42) -> tuple[dict, pd.DataFrame]:
    """Search learning rate, leaves, leaf size, feature/bagging fractions and L2 with a seeded
    TPE sampler. Returns the best parameters (merged into ``base_params``) and one row per trial."""
    valid = frame[frame["cutoff"].isin(split.valid)]
    optuna.logging.set_verbosity(logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        params = {**base_params, "lean_leaves": (),  # the search sets the leaves itself
                  "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
                  "num_leaves": trial.suggest_int("num_leaves", 8, 96, log=True),
                  "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
                  "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
                  "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
                  "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True)}
        model = train_model(frame, split, feature_cols, **params)
        trial.set_user_attr("best_iteration", int(model.best_iteration_))
        return float(roc_auc_score(valid["label"], risk_of(model, valid[feature_cols])))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    trials = pd.DataFrame([{"trial": t.number, "valid_roc_auc": t.value, **t.params,
                            "best_iteration": t.user_attrs.get("best_iteration")} for t in study.trials])
    return {**base_params, **study.best_params, "lean_leaves": ()}, trials
