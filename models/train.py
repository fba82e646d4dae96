"""Training: split by cutoff time, fit LightGBM with early stopping.

The split is purged: a row at cutoff ``c`` has a label window ``(c, c + horizon]``, so a
training cutoff must end its window on or before the first validation cutoff, and a
validation cutoff on or before the test cutoff. No customer's future leaks into an
earlier fold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.serving import prepare_features

if TYPE_CHECKING:
    from models.calibrate import RiskCalibrator


@dataclass(frozen=True)
class CutoffSplit:
    train: list[pd.Timestamp]
    valid: list[pd.Timestamp]
    test: pd.Timestamp


def split_cutoffs(cutoffs: list[pd.Timestamp], *, horizon_days: int, valid_cutoffs: int = 2) -> CutoffSplit:
    """Test = the latest cutoff; validation = the ``valid_cutoffs`` latest cutoffs whose label
    window closes by the test cutoff; training = every cutoff whose window closes by the first
    validation cutoff. Raises ValueError when the history is too short for all three."""
    cutoffs = sorted(pd.to_datetime(cutoffs))
    horizon = pd.Timedelta(days=horizon_days)
    if not cutoffs:
        raise ValueError("no labelled cutoffs: the data is shorter than the label horizon")
    test = cutoffs[-1]
    valid = [c for c in cutoffs if c + horizon <= test][-valid_cutoffs:]
    train = [c for c in cutoffs if valid and c + horizon <= valid[0]]
    if not valid or not train:
        raise ValueError(
            f"need at least {valid_cutoffs + 1} cutoffs spaced by the {horizon_days}-day horizon before the "
            f"test cutoff {test.date()}; the data has labelled cutoffs {[str(c.date()) for c in cutoffs]}. "
            "Provide a longer history or a shorter --horizon-days.")
    return CutoffSplit(train=train, valid=valid, test=test)


class ChurnClassifier:
    """LightGBM binary classifier of 'becomes a former client within the horizon'.

    scikit-learn style: hyper-parameters in ``__init__``, data only through ``fit``,
    fitted state ends in ``_``. Categorical columns (pandas ``category``) are handled
    natively; their categories are frozen at fit time so scoring data maps identically.
    """

    def __init__(self, *, learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 50,
                 feature_fraction: float = 0.9, bagging_fraction: float = 0.9, bagging_freq: int = 1,
                 lambda_l2: float = 1.0, num_boost_round: int = 400, early_stopping_rounds: int = 30,
                 seed: int = 42):
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.bagging_freq = bagging_freq
        self.lambda_l2 = lambda_l2
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    def lgb_params(self) -> dict:
        return {
            "objective": "binary", "metric": "binary_logloss", "verbosity": -1,
            "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction, "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2, "seed": self.seed, "deterministic": True,
            "force_row_wise": True, "num_threads": 2,
        }

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """Select the fitted feature columns and apply the frozen categories."""
        return prepare_features(X, self.feature_names_, self.categories_, errors="raise")

    def fit(self, X: pd.DataFrame, y: pd.Series, X_valid: pd.DataFrame, y_valid: pd.Series) -> "ChurnClassifier":
        self.feature_names_ = list(X.columns)
        self.categories_ = {c: [str(v) for v in X[c].astype("object").dropna().unique()]
                            for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype) or X[c].dtype == object
                            or pd.api.types.is_string_dtype(X[c].dtype)}
        for c in self.categories_:
            self.categories_[c] = sorted(set(self.categories_[c]))
        train = lgb.Dataset(self.prepare(X), label=np.asarray(y), free_raw_data=False)
        valid = lgb.Dataset(self.prepare(X_valid), label=np.asarray(y_valid), reference=train)
        self.booster_ = lgb.train(
            self.lgb_params(), train, num_boost_round=self.num_boost_round, valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
        self.best_iteration_ = self.booster_.best_iteration or self.num_boost_round
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Risk of becoming a former client within the horizon, one value per row."""
        return self.booster_.predict(self.prepare(X), num_iteration=self.best_iteration_)

    def predict_contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP log-odds contributions per feature (LightGBM ``pred_contrib``), plus ``bias``."""
        values = self.booster_.predict(self.prepare(X), num_iteration=self.best_iteration_, pred_contrib=True)
        return pd.DataFrame(values, index=X.index, columns=[*self.feature_names_, "bias"])


def train_model(frame: pd.DataFrame, split: CutoffSplit, feature_cols: list[str], **params) -> ChurnClassifier:
    """Fit on the training cutoffs of a labelled feature table, early-stopping on the validation cutoffs."""
    train = frame[frame["cutoff"].isin(split.train)]
    valid = frame[frame["cutoff"].isin(split.valid)]
    if train["label"].nunique() < 2:
        raise ValueError("the training cutoffs hold only one label value; the model cannot learn from them")
    return ChurnClassifier(**params).fit(train[feature_cols], train["label"], valid[feature_cols], valid["label"])


@dataclass
class TrainingReport:
    """A fitted, calibrated model and its holdout evaluation on the test cutoff."""
    model: ChurnClassifier
    calibrator: "RiskCalibrator"
    split: CutoffSplit
    metrics: dict[str, float]
    test_scores: pd.DataFrame
    breakdowns: dict[str, pd.DataFrame]


def fit_evaluate(frame: pd.DataFrame, split: CutoffSplit, feature_cols: list[str], params: dict, *,
                 calibration: str = "isotonic", capacity: int | None = None,
                 baselines: bool = True, horizon_days: int = 90) -> TrainingReport:
    """Fit on the training cutoffs, early-stop and calibrate on the validation cutoffs, evaluate
    the model and the baselines on the test cutoff (the same rows for all)."""
    from models import baselines as bl
    from models.calibrate import RiskCalibrator
    from models.evaluate import classification_metrics, metrics_by

    model = train_model(frame, split, feature_cols, **params)
    valid = frame[frame["cutoff"].isin(split.valid)]
    calibrator = RiskCalibrator(calibration).fit(model.predict_proba(valid[feature_cols]), valid["label"])
    test = frame[frame["cutoff"] == split.test]
    raw = model.predict_proba(test[feature_cols])
    scores = test[["customer_id", "cutoff", "label"]].assign(risk=calibrator.transform(raw), raw_risk=raw)
    metrics = classification_metrics(scores["label"], scores["risk"], prefix="test_", capacity=capacity)
    metrics |= {k: v for k, v in classification_metrics(scores["label"], raw, prefix="test_raw_").items()
                if k in ("test_raw_ece", "test_raw_log_loss")}
    if baselines:
        train = frame[frame["cutoff"].isin(split.train)]
        scores["baseline_recency"] = bl.recency_rule(test)
        scores["baseline_logistic"] = bl.LogisticBaseline().fit(train[feature_cols], train["label"]).predict_proba(test[feature_cols])
        btyd = bl.btyd_no_order(test)
        if btyd is not None:
            scores["baseline_btyd"] = btyd
        pnbd = bl.pareto_nbd_no_order(test, horizon_days)
        if pnbd is not None:
            scores["baseline_pnbd"] = pnbd
        for name in [c for c in scores.columns if c.startswith("baseline_")]:
            m = classification_metrics(scores["label"], scores[name], capacity=capacity, probabilities=False)
            for key in ("roc_auc", "pr_auc", "lift_top10"):
                if key in m:
                    metrics[f"{name}_{key}"] = m[key]
                    metrics[f"lift_over_{name[9:]}_{key}"] = metrics[f"test_{key}"] - m[key]
    metrics["best_iteration"] = float(model.best_iteration_)
    metrics["train_rows"] = float(frame["cutoff"].isin(split.train).sum())
    breakdowns = {}
    for col in ("lifecycle_stage", "segment"):
        if col in test.columns:
            part = scores.assign(**{col: test[col].to_numpy()})
            breakdowns[col] = metrics_by(part, "risk", col, capacity=None)
    return TrainingReport(model=model, calibrator=calibrator, split=split, metrics=metrics, test_scores=scores,
                          breakdowns=breakdowns)


def backtest(frame: pd.DataFrame, cutoffs: list[pd.Timestamp], feature_cols: list[str], params: dict, *,
             horizon_days: int, valid_cutoffs: int, folds: int, calibration: str = "isotonic",
             tune_trials: int = 0) -> pd.DataFrame:
    """Rolling-origin backtest: each of the last ``folds`` cutoffs in turn is the test cutoff,
    with a model trained only on what was labelled before it (and, with ``tune_trials``, its
    hyper-parameters searched on that fold's validation cutoffs). One row of metrics per fold."""
    rows = []
    cutoffs = sorted(pd.to_datetime(cutoffs))
    for test in cutoffs[-folds:]:
        try:
            split = split_cutoffs([c for c in cutoffs if c <= test], horizon_days=horizon_days, valid_cutoffs=valid_cutoffs)
        except ValueError:
            continue
        fold_params = params
        if tune_trials:
            from models.tune import tune

            fold_params, _ = tune(frame, split, feature_cols, params, n_trials=tune_trials, seed=params.get("seed", 42))
        report = fit_evaluate(frame, split, feature_cols, fold_params, calibration=calibration, horizon_days=horizon_days)
        keep = {k: v for k, v in report.metrics.items() if k.startswith(("test_", "baseline_"))}
        rows.append({"test_cutoff": test, "train_cutoffs": len(split.train), **keep})
    return pd.DataFrame(rows)
