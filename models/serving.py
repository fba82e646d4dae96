"""The model as served: feature table in, risk and top reason groups out.

This module is pickled *by value* into the MLflow model (see ``models.registry``), so a
consumer of ``models:/churn-risk@champion`` needs only pandas, numpy and lightgbm, never
this repository. Keep it free of imports from the rest of the project.
"""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd


def prepare_features(X: pd.DataFrame, feature_names: list[str], categories: dict[str, list[str]], *,
                     errors: str = "coerce") -> pd.DataFrame:
    """The model's columns in its order: categoricals with the categories frozen at fit time
    (an unseen value becomes missing), everything else as float."""
    missing = [c for c in feature_names if c not in X.columns]
    if missing:
        raise ValueError(f"the feature table lacks columns the model was trained on: {missing}")
    cols = {c: (pd.Categorical(X[c].astype("object"), categories=categories[c]) if c in categories
                else pd.to_numeric(X[c], errors=errors).astype("float64")) for c in feature_names}
    return pd.DataFrame(cols, index=X.index)


def apply_calibration(raw_risk, x, y) -> np.ndarray:
    """Map raw model probabilities through a fitted monotone calibration curve (x -> y)."""
    return np.interp(np.asarray(raw_risk, dtype=float), x, y)


def group_contributions(contrib: pd.DataFrame, feature_groups: dict[str, str]) -> pd.DataFrame:
    """Sum per-feature log-odds contributions into one column per driver group."""
    cols = [c for c in contrib.columns if c != "bias"]
    names = np.asarray([feature_groups.get(c, "attributes") for c in cols], dtype=object)
    groups = sorted(set(names))
    onehot = (names[:, None] == np.asarray(groups, dtype=object)[None, :]).astype(float)
    return pd.DataFrame(contrib[cols].to_numpy(dtype=float) @ onehot, index=contrib.index, columns=groups)


def top_reasons(contrib: pd.DataFrame, k: int = 3, *, prefix: str = "reason_group") -> pd.DataFrame:
    """The ``k`` largest positive contributions per row: ``<prefix>_i`` (column name) and
    ``<prefix>_i_contribution``. Columns that lower the risk are never named as a reason."""
    values = contrib.to_numpy(dtype=float)
    names = np.asarray(contrib.columns, dtype=object)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    top_vals = np.take_along_axis(values, order, axis=1)
    out = {}
    for i in range(k):  # always k reasons; fewer groups than k leave the rest empty
        if i < order.shape[1]:
            positive = top_vals[:, i] > 0
            out[f"{prefix}_{i + 1}"] = np.where(positive, names[order[:, i]], None)
            out[f"{prefix}_{i + 1}_contribution"] = np.where(positive, top_vals[:, i], np.nan)
        else:
            out[f"{prefix}_{i + 1}"] = np.full(len(values), None, dtype=object)
            out[f"{prefix}_{i + 1}_contribution"] = np.full(len(values), np.nan)
    return pd.DataFrame(out, index=contrib.index)


def explain_contributions(contrib: pd.DataFrame, feature_groups: dict[str, str], k: int = 3) -> pd.DataFrame:
    """Top ``k`` risk-raising driver groups per row (reason_group_i, reason_group_i_contribution in
    log-odds) and, within each, the single feature that pushes most (driver_i)."""
    features = contrib.drop(columns="bias", errors="ignore")
    reasons = top_reasons(group_contributions(features, feature_groups), k)
    values = features.to_numpy(dtype=float)
    names = np.asarray(features.columns, dtype=object)
    col_groups = np.asarray([feature_groups.get(c, "attributes") for c in features.columns], dtype=object)
    out = {}
    for i in range(1, k + 1):
        group = reasons[f"reason_group_{i}"].to_numpy(dtype=object)
        masked = np.where(col_groups[None, :] == group[:, None], values, -np.inf)
        best = masked.argmax(axis=1)
        out[f"driver_{i}"] = np.where(pd.notna(group), names[best], None)
    return reasons.assign(**out)


class ChurnRiskServing:
    """Callable pyfunc body: ``model(features) -> DataFrame(risk, reason_group_1..k, ...)``.

    ``risk`` is the calibrated probability of becoming a former client within the horizon;
    reasons come from TreeSHAP on the raw model (calibration is monotone, so it does not
    change which drivers push a customer's risk up).

    ``features``: one row per customer with the training feature columns; customer_id and
    cutoff are passed through when present; an optional boolean ``explain`` column asks for
    reasons on those rows only (TreeSHAP is the expensive part).
    """

    def __init__(self, booster_model: str, feature_names: list[str], categories: dict[str, list[str]],
                 feature_groups: dict[str, str], num_iteration: int, top_k: int = 3,
                 calibration: tuple[list[float], list[float]] | None = None):
        self.booster_model = booster_model
        self.feature_names = feature_names
        self.categories = categories
        self.feature_groups = feature_groups
        self.num_iteration = num_iteration
        self.top_k = top_k
        self.calibration = calibration
        self._booster = None

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(X, self.feature_names, self.categories, errors="coerce")

    def __call__(self, model_input: pd.DataFrame) -> pd.DataFrame:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self.booster_model)
        X = self._prepare(model_input)
        risk = self._booster.predict(X, num_iteration=self.num_iteration)
        if self.calibration is not None:
            risk = apply_calibration(risk, *self.calibration)
        # TreeSHAP is the cost of scoring: an optional boolean `explain` column limits it to the
        # rows that need reasons (all rows when the column is absent)
        wanted = (model_input["explain"].fillna(False).astype(bool).to_numpy() if "explain" in model_input.columns
                  else np.ones(len(X), bool))
        subset = X[wanted]
        contrib = pd.DataFrame(self._booster.predict(subset, num_iteration=self.num_iteration, pred_contrib=True)
                               if len(subset) else np.empty((0, len(self.feature_names) + 1)),
                               index=subset.index, columns=[*self.feature_names, "bias"])
        reasons = explain_contributions(contrib, self.feature_groups, self.top_k)
        out = pd.DataFrame({"risk": risk}, index=X.index).join(reasons)  # rows not explained: empty reasons
        keys = [c for c in ("customer_id", "cutoff") if c in model_input.columns]
        return pd.concat([model_input[keys], out], axis=1).reset_index(drop=True)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_booster"] = None
        return state
