"""The model as served: feature table in, risk and top reason groups out.

This module is pickled *by value* into the MLflow model (see ``models.registry``), so a
consumer of ``models:/churn-risk@champion`` needs only pandas, numpy and lightgbm (and scipy
for a Pareto/NBD champion), never this repository. Keep it free of imports from the rest of
the project.
"""
from __future__ import annotations

import warnings

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
    """Sum per-feature log-odds contributions into one column per driver group (the net effect)."""
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


def group_pushes(contrib: pd.DataFrame, feature_groups: dict[str, str]) -> pd.DataFrame:
    """What each driver group's features add to the risk: the sum of their positive log-odds
    contributions, one column per group. A feature of the group that lowers the risk does not
    cancel one that raises it: a client's frequent orders do not hide that they are slipping
    behind their own rhythm, nor a recent visit of theirs four months without a call from us."""
    return group_contributions(contrib.drop(columns="bias", errors="ignore").clip(lower=0.0), feature_groups)


def explain_contributions(contrib: pd.DataFrame, feature_groups: dict[str, str], k: int = 3) -> pd.DataFrame:
    """Top ``k`` driver groups per row by what their features add to the risk (``group_pushes``:
    reason_group_i, reason_group_i_contribution in log-odds) and, within each, the single feature
    that pushes most (driver_i). A group none of whose features raises the risk is never a reason."""
    features = contrib.drop(columns="bias", errors="ignore")
    reasons = top_reasons(group_pushes(features, feature_groups), k)
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


def sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=float), -700, 700)))


def logit(p, eps: float = 1e-9) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


def _logit_keep_nan(p) -> np.ndarray:
    """Log-odds of probabilities; values that are not probabilities (NaN, inf, outside [0, 1])
    become NaN so that the caller sees them."""
    p = np.asarray(p, dtype=float)
    ok = np.isfinite(p) & (p >= 0) & (p <= 1)
    return np.where(ok, logit(np.where(ok, p, 0.5)), np.nan)


# -- scorers: one fitted candidate each, logit and log-odds contributions per input column ----------
# Every scorer has ``inputs`` (the columns it reads), ``logit(X)`` (its log-odds risk, one value
# per row) and ``contributions(X)`` (one column per feature it explains plus ``bias``; each
# row sums to the logit). The candidates of ``models.candidates`` score through these very
# objects, so the served model computes what was measured.

class BoosterScorer:
    """A LightGBM booster: raw score and TreeSHAP contributions (``pred_contrib``)."""

    kind = "lightgbm"

    def __init__(self, booster_model: str, feature_names: list[str], categories: dict[str, list[str]],
                 num_iteration: int):
        self.booster_model = booster_model
        self.feature_names = feature_names
        self.categories = categories
        self.num_iteration = num_iteration
        self._booster = None

    @property
    def inputs(self) -> list[str]:
        return list(self.feature_names)

    @property
    def booster(self) -> lgb.Booster:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self.booster_model)
        return self._booster

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(X, self.feature_names, self.categories, errors="coerce")

    @property
    def contribution_columns(self) -> list[str]:
        return list(self.feature_names)

    def logit(self, X: pd.DataFrame, strict: bool = False) -> np.ndarray:
        return self.booster.predict(self.prepare(X), num_iteration=self.num_iteration, raw_score=True)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        values = (self.booster.predict(self.prepare(X), num_iteration=self.num_iteration, pred_contrib=True)
                  if len(X) else np.empty((0, len(self.feature_names) + 1)))
        return pd.DataFrame(values, index=X.index, columns=[*self.feature_names, "bias"])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_booster"] = None
        return state


def _text(values: pd.Series) -> np.ndarray:
    """Category values as text; missing (NaN, or the served table's "none") as "none"."""
    out = values.astype("object").where(values.notna(), "none").astype(str).to_numpy(dtype=object)
    return np.where(out == "nan", "none", out)


class LinearScorer:
    """A logistic regression in numpy: numeric columns imputed with the training median plus a
    missing flag (optionally ``log1p`` of the value first), standardised; categories one-hot.
    Contributions are exact for a linear model: coefficient x (value - training mean), the
    training means folded into ``bias``."""

    kind = "linear"

    def __init__(self, numeric: list[str], categorical: dict[str, list[str]], log_columns: list[str] | None = None):
        self.numeric = list(numeric)
        self.categorical = {c: list(v) for c, v in categorical.items()}
        self.log_columns = list(log_columns or [])
        self.intercept = 0.0

    @property
    def inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def _numeric(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = np.column_stack([pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float) for c in self.numeric]) \
            if self.numeric else np.empty((len(X), 0))
        missing = np.isnan(values)
        for j, c in enumerate(self.numeric):
            if c in self.log_columns:
                values[:, j] = np.log1p(np.maximum(values[:, j], 0.0))
        return values, missing

    def learn_scaling(self, X: pd.DataFrame) -> "LinearScorer":
        """Medians, means and scales of the design's columns from the training rows."""
        values, missing = self._numeric(X)
        with warnings.catch_warnings():  # an all-missing column has no median: 0 then
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(np.where(missing, np.nan, values), axis=0) if len(values) else np.zeros(values.shape[1])
        self.medians = np.where(np.isfinite(med), med, 0.0)
        filled = np.where(missing, self.medians, values)
        self.means, self.scales = filled.mean(axis=0), filled.std(axis=0)
        self.scales = np.where(self.scales > 0, self.scales, 1.0)
        self.flag_means = missing.mean(axis=0)
        std = missing.std(axis=0)
        self.flag_scales = np.where(std > 0, std, 1.0)
        self.category_freq = {c: [float(np.mean(_text(X[c]) == v)) for v in levels] for c, levels in self.categorical.items()}
        return self

    def design(self, X: pd.DataFrame) -> np.ndarray:
        """The standardised design matrix: numeric, missing flags, one-hot categories (centred)."""
        values, missing = self._numeric(X)
        parts = [(np.where(missing, self.medians, values) - self.means) / self.scales,
                 (missing - self.flag_means) / self.flag_scales]
        for c, levels in self.categorical.items():
            text = _text(X[c])
            parts.append((text[:, None] == np.asarray(levels, dtype=object)[None, :]) - np.asarray(self.category_freq[c]))
        return np.column_stack(parts) if parts else np.empty((len(X), 0))

    def owners(self) -> list[str]:
        """The input column each design column belongs to."""
        return [*self.numeric, *self.numeric, *[c for c, levels in self.categorical.items() for _ in levels]]

    def set_coefficients(self, coef, intercept: float) -> "LinearScorer":
        self.coef = np.asarray(coef, dtype=float).ravel()
        self.intercept = float(intercept)
        return self

    @property
    def contribution_columns(self) -> list[str]:
        return self.inputs

    def logit(self, X: pd.DataFrame, strict: bool = False) -> np.ndarray:
        return self.design(X) @ self.coef + self.intercept

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        terms = self.design(X) * self.coef[None, :]
        owners = np.asarray(self.owners(), dtype=object)
        cols = {c: terms[:, owners == c].sum(axis=1) for c in self.inputs}
        return pd.DataFrame({**cols, "bias": np.full(len(X), self.intercept)}, index=X.index)


class ColumnScorer:
    """One column read as a risk: a probability (``transform="logit"``: log-odds of the column)
    or days of silence (``transform="log_days"``: log(days / scale), so risk = days / (days +
    scale) before calibration: the recency rule as a probability). Missing values are neutral
    (the training mean). Its contribution is the column's, centred on the training mean."""

    kind = "column"

    def __init__(self, column: str, transform: str = "logit", scale: float = 1.0, center: float = 0.0):
        self.column = column
        self.transform = transform
        self.scale = scale
        self.center = center

    @property
    def inputs(self) -> list[str]:
        return [self.column]

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        v = pd.to_numeric(X[self.column], errors="coerce").to_numpy(dtype=float)
        if self.transform == "log_days":
            with np.errstate(invalid="ignore"):
                return np.log(np.maximum(v, 0.5) / self.scale)
        return _logit_keep_nan(v)

    @property
    def contribution_columns(self) -> list[str]:
        return [self.column]

    def logit(self, X: pd.DataFrame, strict: bool = False) -> np.ndarray:
        """Log-odds; ``strict``: non-finite values stay (to be reported), else they are neutral."""
        z = self._raw(X)
        return z if strict else np.where(np.isfinite(z), z, self.center)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        z = self.logit(X)
        return pd.DataFrame({self.column: z - self.center, "bias": np.full(len(X), self.center)}, index=X.index)


class FunctionScorer:
    """A probability computed from several input columns by a function of the rows, one
    cutoff at a time (``fn(frame, horizon_days) -> array | None``; the Pareto/NBD fits its
    parameters on the rows' own history). Rows without a ``cutoff`` column form one cutoff.
    When the function fails or returns non-finite values, those rows get the training mean
    (neutral). The contribution is reported under ``name``."""

    kind = "function"

    def __init__(self, fn, columns: list[str], name: str, horizon_days: int, center: float = 0.0):
        self.fn = fn
        self.columns = list(columns)
        self.name = name
        self.horizon_days = horizon_days
        self.center = center

    @property
    def inputs(self) -> list[str]:
        return list(self.columns)

    @property
    def contribution_columns(self) -> list[str]:
        return [self.name]

    def logit(self, X: pd.DataFrame, strict: bool = False) -> np.ndarray:
        """Log-odds; ``strict``: a failure raises and non-finite values stay (to be reported),
        else both give the neutral value."""
        frame = pd.DataFrame({c: pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float) for c in self.columns},
                             index=X.index)
        frame["cutoff"] = X["cutoff"].astype(str).to_numpy() if "cutoff" in X.columns else "scoring"
        if strict:
            p = self.fn(frame, self.horizon_days)
            if p is None:
                raise ValueError(f"{self.name}: no scores")
            return _logit_keep_nan(p)
        keys = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        p = self._remembered(keys)
        if p is None:
            try:
                p = self.fn(frame, self.horizon_days)
            except Exception:  # noqa: BLE001 - a failed fit must not stop the scoring: neutral risk
                p = None
            if p is not None:
                self._remember(keys, np.asarray(p, dtype=float))
        z = _logit_keep_nan(p) if p is not None else np.full(len(X), np.nan)
        return np.where(np.isfinite(z), z, self.center)

    # The function fits on the rows it is given (the Pareto/NBD on the scored clients' history),
    # so the same client would get another score in a smaller batch: the explained top of a list,
    # the drivers' sample. The scores of the last batch are kept by row (a row is its inputs and
    # cutoff, so equal rows have equal scores): a batch whose every row was in it reads them, and
    # its scores and reasons are those of the whole list. A batch with a new row (another date,
    # another base) is fitted afresh. Never pickled with the model.
    def _remembered(self, keys: np.ndarray) -> np.ndarray | None:
        last = self.__dict__.get("_last")
        if last is None or not len(keys):
            return None
        known, scores = last
        if not len(known):
            return None
        at = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        return scores[at] if bool((known[at] == keys).all()) else None

    def _remember(self, keys: np.ndarray, scores: np.ndarray) -> None:
        if not len(keys) or len(scores) != len(keys):
            return
        known, first = np.unique(keys, return_index=True)
        self._last = (known, scores[first])

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_last"}

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        z = self.logit(X)
        return pd.DataFrame({self.name: z - self.center, "bias": np.full(len(X), self.center)}, index=X.index)


class ChurnRiskServing:
    """Callable pyfunc body: ``model(features) -> DataFrame(risk, reason_group_1..k, ...)``.

    The model is one scorer (LightGBM, a logistic regression, a buy-till-you-die probability,
    the recency rule) or a logistic stack of several: log-odds = ``intercept`` + sum of
    ``weights[name]`` x scorer log-odds. ``risk`` is its probability through the calibration
    map fitted on the validation cutoffs. Reasons: the scorers' log-odds contributions
    (TreeSHAP for LightGBM, exact for the linear and single-column scorers) weighted like the
    scorers; a group's weight as a reason is the sum of its features' positive contributions
    (``group_pushes``; calibration is monotone, so it does not change which drivers push a
    customer's risk up). Groups mapped to None in ``feature_groups`` (the
    calendar) move the risk of everyone alike and are never named as reasons.

    ``features``: one row per customer with the model's input columns; customer_id and cutoff
    are passed through when present; an optional boolean ``explain`` column asks for reasons on
    those rows only (TreeSHAP is the expensive part).
    """

    def __init__(self, scorers: dict, feature_groups: dict[str, str | None], *, weights: dict[str, float] | None = None,
                 intercept: float = 0.0, top_k: int = 3, calibration: tuple[list[float], list[float]] | None = None,
                 name: str = "lightgbm"):
        self.scorers = scorers
        self.weights = weights or {k: 1.0 for k in scorers}
        self.intercept = intercept
        self.feature_groups = feature_groups
        self.top_k = top_k
        self.calibration = calibration
        self.name = name

    @property
    def inputs(self) -> list[str]:
        seen: dict[str, None] = {}
        for scorer in self.scorers.values():
            seen.update(dict.fromkeys(scorer.inputs))
        return list(seen)

    def logit(self, X: pd.DataFrame) -> np.ndarray:
        z = np.full(len(X), float(self.intercept))
        for name, scorer in self.scorers.items():
            z = z + self.weights[name] * scorer.logit(X)
        return z

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        total: dict[str, np.ndarray] = {}
        for name, scorer in self.scorers.items():
            part = scorer.contributions(X)
            for col in part.columns:
                total[col] = total.get(col, 0.0) + self.weights[name] * part[col].to_numpy(dtype=float)
        bias = total.pop("bias", 0.0) + self.intercept
        return pd.DataFrame({**total, "bias": np.broadcast_to(bias, (len(X),))}, index=X.index)

    def risk(self, X: pd.DataFrame) -> np.ndarray:
        p = sigmoid(self.logit(X))
        return apply_calibration(p, *self.calibration) if self.calibration is not None else p

    def _single_driver(self, reasons: pd.DataFrame, contrib: pd.DataFrame, groups: dict) -> pd.DataFrame:
        """A champion that is one rule (the recency rule, a buy-till-you-die probability) ranks by
        one driver: it is every explained client's reason, also where the client sits below the
        training average (the only thing that orders the list is still that driver)."""
        scorer = next(iter(self.scorers.values())) if len(self.scorers) == 1 else None
        if scorer is None or scorer.kind not in ("column", "function") or not len(reasons):
            return reasons
        column = scorer.contribution_columns[0]
        group = groups.get(column)
        if group is None or column not in contrib.columns:
            return reasons
        empty = reasons["reason_group_1"].isna().to_numpy()
        if not empty.any():
            return reasons
        out = reasons.copy()
        out["reason_group_1"] = np.where(empty, group, out["reason_group_1"].to_numpy(dtype=object))
        out["reason_group_1_contribution"] = np.where(empty, contrib[column].to_numpy(dtype=float),
                                                      out["reason_group_1_contribution"].to_numpy(dtype=float))
        if "driver_1" in out:
            out["driver_1"] = np.where(empty, column, out["driver_1"].to_numpy(dtype=object))
        return out

    def __call__(self, model_input: pd.DataFrame) -> pd.DataFrame:
        X = model_input.reset_index(drop=True)
        risk = self.risk(X)
        # the contributions are the cost of scoring: an optional boolean `explain` column limits
        # them to the rows that need reasons (all rows when the column is absent)
        wanted = (X["explain"].fillna(False).astype(bool).to_numpy() if "explain" in X.columns
                  else np.ones(len(X), bool))
        subset = X[wanted]
        contrib = self.contributions(subset)
        groups = {c: g for c, g in self.feature_groups.items() if g is not None}
        contrib = contrib[[c for c in contrib.columns if c == "bias" or c in groups or c not in self.feature_groups]]
        reasons = explain_contributions(contrib, groups, self.top_k)
        reasons = self._single_driver(reasons, contrib, groups)
        out = pd.DataFrame({"risk": risk}, index=X.index).join(reasons)  # rows not explained: empty reasons
        keys = [c for c in ("customer_id", "cutoff") if c in X.columns]
        return pd.concat([X[keys], out], axis=1).reset_index(drop=True)
