"""Baselines scored on exactly the rows of the model's test cutoff.

- recency rule: days since the last order (longer = riskier);
- logistic regression on the same features (median-imputed with missing flags, standardised,
  categoricals one-hot), trained on the same training cutoffs;
- buy-till-you-die: the Pareto/NBD and the BG/NBD probability of no order within the
  horizon, fitted on history before each cutoff (BG/NBD is also the ``btyd_p_no_order``
  feature). Not 1 - P(alive), which calls every one-time buyer alive. A buy-till-you-die
  baseline that cannot be fitted or scores a row non-finite is unavailable (None, and a
  reason from ``*_scores``); it never raises.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features import btyd

log = logging.getLogger(__name__)


def recency_rule(frame: pd.DataFrame) -> np.ndarray:
    return frame["days_since_last_order"].to_numpy(dtype=float)


def btyd_scores(frame: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """BG/NBD probability of no order within the horizon (fitted per cutoff in the features):
    ``(scores, None)``, or ``(None, reason)`` when the column is absent or not finite on every
    row (a cutoff whose fit failed, clients without a purchase history)."""
    if "btyd_p_no_order" not in frame:
        return None, "no btyd_p_no_order feature"
    scores = frame["btyd_p_no_order"].to_numpy(dtype=float)
    bad = int((~np.isfinite(scores)).sum())
    return (None, f"BG/NBD P(no order) missing on {bad} of {len(scores)} rows") if bad else (scores, None)


def btyd_no_order(frame: pd.DataFrame) -> np.ndarray | None:
    """``btyd_scores`` without the reason (None: baseline unavailable, with a logged warning)."""
    scores, reason = btyd_scores(frame)
    if reason is not None and "btyd_p_no_order" in frame:
        log.warning("BG/NBD baseline unavailable: %s", reason)
    return scores


def pareto_nbd_scores(frame: pd.DataFrame, horizon_days: int) -> tuple[np.ndarray | None, str | None]:
    """Pareto/NBD probability of no order within the horizon, fitted on the rows' own history
    before their cutoff (one cutoff at a time) and applied to them: ``(scores, None)``, or
    ``(None, reason)`` when a cutoff's fit fails or a score is not finite. Never raises for
    data reasons."""
    if not all(c in frame for c in ("btyd_x", "btyd_t_x", "btyd_T")):
        return None, "no btyd_x, btyd_t_x, btyd_T columns"
    out = np.empty(len(frame))
    for cutoff, rows in frame.groupby("cutoff", sort=True).indices.items():
        x, t_x, T = (frame[c].to_numpy(dtype=float)[rows] for c in ("btyd_x", "btyd_t_x", "btyd_T"))
        try:
            params = btyd.fit_pareto_nbd(x, t_x, T)
            out[rows] = btyd.pnbd_p_no_purchase(params, x, t_x, T, horizon_days / 7.0)
        except (ValueError, ArithmeticError) as error:  # BtydFitError, inputs it cannot take, numerical failure
            return None, f"Pareto/NBD fit failed at cutoff {pd.Timestamp(cutoff).date()}: {error}"
        bad = int((~np.isfinite(out[rows])).sum())
        if bad:
            return None, f"Pareto/NBD P(no order) missing on {bad} of {len(rows)} rows at cutoff {pd.Timestamp(cutoff).date()}"
    return out, None


def pareto_nbd_no_order(frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """``pareto_nbd_scores`` without the reason (None: baseline unavailable, with a logged warning)."""
    scores, reason = pareto_nbd_scores(frame, horizon_days)
    if reason is not None and all(c in frame for c in ("btyd_x", "btyd_t_x", "btyd_T")):
        log.warning("Pareto/NBD baseline unavailable: %s", reason)
    return scores


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
