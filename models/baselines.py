"""Baselines scored on exactly the rows of the model's test cutoff.

- recency rule: days since the last order (longer = riskier);
- logistic regression on the same features (median-imputed with missing flags, standardised,
  categoricals one-hot), trained on the same training cutoffs;
- buy-till-you-die: the Pareto/NBD and the BG/NBD probability of no order within the
  horizon, fitted on history before each cutoff (BG/NBD is also the ``btyd_p_no_order``
  feature). Not 1 - P(alive), which calls every one-time buyer alive.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features import btyd


def recency_rule(frame: pd.DataFrame) -> np.ndarray:
    return frame["days_since_last_order"].to_numpy(dtype=float)


def btyd_no_order(frame: pd.DataFrame) -> np.ndarray | None:
    """BG/NBD probability of no order within the horizon (fitted per cutoff in the features)."""
    return frame["btyd_p_no_order"].to_numpy(dtype=float) if "btyd_p_no_order" in frame else None


def pareto_nbd_no_order(frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """Pareto/NBD probability of no order within the horizon, fitted on the rows' own history
    before their cutoff (one cutoff at a time) and applied to them."""
    if not all(c in frame for c in ("btyd_x", "btyd_t_x", "btyd_T")):
        return None
    out = np.empty(len(frame))
    for _, rows in frame.groupby("cutoff", sort=True).indices.items():
        x, t_x, T = (frame[c].to_numpy(dtype=float)[rows] for c in ("btyd_x", "btyd_t_x", "btyd_T"))
        params = btyd.fit_pareto_nbd(x, t_x, T)
        out[rows] = btyd.pnbd_p_no_purchase(params, x, t_x, T, horizon_days / 7.0)
    return out


class LogisticBaseline:
    """Logistic regression on the model's features; scikit-learn style."""

    def __init__(self, C: float = 1.0, max_iter: int = 500):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: pd.DataFrame, y) -> "LogisticBaseline":
        self.categorical_ = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        self.numeric_ = [c for c in X.columns if c not in self.categorical_]
        pre = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                  StandardScaler()), self.numeric_),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                  OneHotEncoder(handle_unknown="ignore")), self.categorical_),
        ])
        self.pipeline_ = make_pipeline(pre, LogisticRegression(C=self.C, max_iter=self.max_iter))
        self.pipeline_.fit(self._prepare(X), np.asarray(y))
        return self

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        cats = {c: X[c].astype("object").where(X[c].notna(), "missing").astype(str) for c in self.categorical_}
        return X.assign(**cats)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._prepare(X))[:, 1]
