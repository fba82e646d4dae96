"""The candidates for champion, compared on the validation cutoffs only.

Every candidate follows scikit-learn's estimator contract (hyper-parameters in ``__init__``,
``fit(X, y, eval_set=...)``, ``predict_proba`` with both classes, ``decision_function`` in
log-odds) and scores through a ``models.serving`` scorer, so the registered model computes
exactly what was measured:

- ``lightgbm``: LightGBM at a capacity suited to the data's size (``train.size_aware_params``);
- ``lightgbm_monotone``: the same, with the risk never falling as ``days_since_last_order``
  grows (the domain: silence beyond a client's rhythm is the plainest sign of leaving);
- ``logistic``: a logistic regression on the same features;
- ``recency``: the recency rule, days since the last order, as days / (days + horizon);
- ``btyd``: the BG/NBD probability of no order within the horizon (the ``btyd_p_no_order``
  feature, fitted at each cutoff on the history before it);
- ``pnbd``: the Pareto/NBD probability of no order, fitted at each cutoff on its clients' history;
- ``stack``: a logistic regression on the other candidates' log-odds, fitted on the validation
  cutoffs; its validation score is cross-fitted (each fold of customers scored by a stack fitted
  on the others), so it competes on equal terms.

``recency``, ``btyd`` and ``pnbd`` learn nothing from labels: they are the candidates left when
the history gives no training cutoff. ``choose_champion`` is the one comparison; it sees the
validation scores only. The test cutoff measures every candidate afterwards, never chooses.
A candidate that cannot be fitted or gives non-finite scores is reported with its reason and
left out; it never stops the training.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from features.build import BTYD_INPUTS
from features.catalogue import NOT_A_REASON, feature_group
from models import baselines as bl
from models.calibrate import RiskCalibrator
from models.evaluate import classification_metrics, metrics_by
from models.serving import ChurnRiskServing, ColumnScorer, FunctionScorer, LinearScorer, _text, sigmoid
from models.train import ChurnClassifier, CutoffSplit, risk_of, size_aware_params

RECENCY = "days_since_last_order"
CALENDAR = ("season_sin", "season_cos")
CALENDAR_MIN_SPAN_DAYS = 330  # the training cutoffs must cover about a year to learn the seasons
BGNBD = "btyd_p_no_order"
BASELINES = ("recency", "btyd", "pnbd", "logistic")
LABELS = {
    "lightgbm": "LightGBM", "lightgbm_monotone": "LightGBM, monotone in days since the last order",
    "logistic": "logistic regression", "recency": "recency rule (days since the last order)",
    "btyd": "BG/NBD P(no order)", "pnbd": "Pareto/NBD P(no order)", "stack": "logistic stack of the candidates",
}
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
MIN_ISOTONIC_ROWS = 5_000  # below, isotonic steps on a few clients: Platt scaling instead
# on an exact tie, and when there is no validation cutoff to choose on, the simpler candidate wins
SIMPLEST_FIRST = ("recency", "btyd", "pnbd", "logistic", "lightgbm", "lightgbm_monotone", "stack")


class _ScorerClassifier(ClassifierMixin, BaseEstimator):
    """The predicting half shared by the candidates whose fitted state is one ``scorer_``."""

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of becoming a former client (non-finite values are left for the caller to see)."""
        return self.scorer_.logit(X, strict=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict_contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.scorer_.contributions(X)

    def scorer(self):
        return self.scorer_


class LogisticCandidate(_ScorerClassifier):
    """Logistic regression on the model's features: numeric columns median-imputed with a
    missing flag and standardised, categories one-hot (``models.serving.LinearScorer``)."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: pd.DataFrame, y, eval_set=None) -> "LogisticCandidate":
        categorical = {c: sorted(set(_text(X[c]))) for c in X.columns
                       if isinstance(X[c].dtype, pd.CategoricalDtype) or X[c].dtype == object
                       or pd.api.types.is_string_dtype(X[c].dtype)}
        numeric = [c for c in X.columns if c not in categorical]
        scorer = LinearScorer(numeric, categorical).learn_scaling(X)
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(scorer.design(X), np.asarray(y))
        self.scorer_ = scorer.set_coefficients(lr.coef_[0], lr.intercept_[0])
        self.classes_ = np.array([0, 1])
        return self


class ColumnCandidate(_ScorerClassifier):
    """One column read as the risk: ``transform="log_days"`` for the recency rule (days /
    (days + ``scale``)), ``"logit"`` for a probability column (BG/NBD P(no order)). Learns no
    label: ``fit`` only records the mean log-odds, the neutral value of its contributions."""

    def __init__(self, column: str = RECENCY, transform: str = "log_days", scale: float = 90.0):
        self.column = column
        self.transform = transform
        self.scale = scale

    def fit(self, X: pd.DataFrame, y=None, eval_set=None) -> "ColumnCandidate":
        scorer = ColumnScorer(self.column, self.transform, self.scale)
        z = scorer.logit(X, strict=True)
        if not np.isfinite(z).any():
            raise ValueError(f"{self.column} has no finite value")
        scorer.center = float(np.mean(z[np.isfinite(z)]))
        self.scorer_ = scorer
        self.classes_ = np.array([0, 1])
        return self


class ParetoNbdCandidate(_ScorerClassifier):
    """The Pareto/NBD probability of no order within ``horizon_days``, its parameters fitted at
    each cutoff on the history of that cutoff's clients (``models.baselines.pareto_nbd_no_order``;
    rows without a cutoff form one). Learns no label. Reads ``cutoff`` and the buy-till-you-die
    inputs; the fits are remembered per cutoff, so scoring the same rows twice fits once."""

    columns = ("cutoff", *BTYD_INPUTS)

    def __init__(self, horizon_days: int = 90):
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame, y=None, eval_set=None) -> "ParetoNbdCandidate":
        self._memo: dict = {}
        self.scorer_ = FunctionScorer(self._score, list(BTYD_INPUTS), "btyd_pnbd_p_no_order", self.horizon_days)
        latest = X[X["cutoff"] == X["cutoff"].max()] if "cutoff" in X.columns else X
        z = self.decision_function(latest)
        self.scorer_.center = float(np.mean(z))
        self.classes_ = np.array([0, 1])
        return self

    def _score(self, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
        out = np.empty(len(frame))
        for cutoff, rows in frame.groupby("cutoff", sort=True).indices.items():
            part = frame.iloc[rows]
            key = (str(cutoff), len(part), float(np.nansum(part["btyd_T"])), float(np.nansum(part["btyd_x"])))
            if key not in self._memo:
                p = bl.pareto_nbd_no_order(part, horizon_days)
                if p is None:
                    raise ValueError("Pareto/NBD gave no scores (its inputs are missing or the fit failed)")
                self._memo[key] = np.asarray(p, dtype=float)
            out[rows] = self._memo[key]
        return out

    def scorer(self) -> FunctionScorer:
        """For serving: the Pareto/NBD fitted on the scored clients' own history, without the memo."""
        return FunctionScorer(bl.pareto_nbd_no_order, list(BTYD_INPUTS), self.scorer_.name, self.horizon_days,
                              center=self.scorer_.center)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_memo"] = {}
        return state


class StackCandidate(ClassifierMixin, BaseEstimator):
    """Logistic regression on fitted candidates' log-odds (``bases``: (name, fitted estimator,
    its input columns)), fitted on the rows given to ``fit`` (the validation cutoffs). The
    candidates are fitted already (scikit-learn's ``cv="prefit"``). ``oof_logit_``: each
    ``fit`` row scored by a stack fitted on the other folds of customers (``folds``, grouped by
    ``customer_id``), the honest validation score of the stack."""

    def __init__(self, bases: list[tuple[str, object, list[str]]] | None = None, C: float = 1.0, folds: int = 5):
        self.bases = bases
        self.C = C
        self.folds = folds

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([est.decision_function(X[cols]) for _, est, cols in self.bases])

    def fit(self, X: pd.DataFrame, y, eval_set=None) -> "StackCandidate":
        y = np.asarray(y).astype(int)
        Z = self._z(X)
        if not np.isfinite(Z).all():
            raise ValueError("a stacked candidate gave non-finite scores")
        fold = (pd.util.hash_pandas_object(X["customer_id"].astype(str), index=False).to_numpy() % self.folds).astype(int)
        self.oof_logit_ = np.full(len(y), np.nan)
        for k in range(self.folds):
            out = fold == k
            if out.any() and len(np.unique(y[~out])) == 2:
                lr = LogisticRegression(C=self.C, max_iter=1000).fit(Z[~out], y[~out])
                self.oof_logit_[out] = lr.decision_function(Z[out])
        if not np.isfinite(self.oof_logit_).all():
            raise ValueError("too few validation rows of each label to cross-fit the stack")
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(Z, y)
        self.weights_ = {name: float(w) for (name, _, _), w in zip(self.bases, lr.coef_[0])}
        self.intercept_ = float(lr.intercept_[0])
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.intercept_ + self._z(X) @ np.array([self.weights_[name] for name, _, _ in self.bases])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def serving_parts(self) -> tuple[dict, dict[str, float], float]:
        return {name: est.scorer() for name, est, _ in self.bases}, dict(self.weights_), self.intercept_

    def predict_contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        scorers, weights, intercept = self.serving_parts()
        return ChurnRiskServing(scorers, {}, weights=weights, intercept=intercept).contributions(X)


# -- the candidate list ---------------------------------------------------------------------------

@dataclass
class Candidate:
    """One entry of the comparison: how to make the estimator and which columns it reads."""
    name: str
    make: Callable[[], object]
    columns: list[str]
    learns_from_labels: bool
    baseline: bool

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


def default_candidates(feature_cols: list[str], params: dict, *, horizon_days: int, n_customers: int,
                       size_aware: bool = True, baselines: bool = True) -> list[Candidate]:
    """The candidates for these features (the stack is added by ``fit_evaluate`` from those
    that succeed). ``baselines=False``: LightGBM alone."""
    lgb_params = size_aware_params(params, n_customers) if size_aware else dict(params)
    made: dict[str, ChurnClassifier] = {}

    def plain() -> ChurnClassifier:
        made["lightgbm"] = ChurnClassifier(**lgb_params)
        return made["lightgbm"]

    def monotone() -> ChurnClassifier:
        """The monotone variant at the leaf count the capacity search chose for ``lightgbm``
        (fitted just before it), or with its own search when that one failed."""
        leaves = getattr(made.get("lightgbm"), "num_leaves_", None)
        own = {**lgb_params, "num_leaves": leaves, "lean_leaves": ()} if leaves else lgb_params
        return ChurnClassifier(**own, monotone_increasing=(RECENCY,))

    out = [Candidate("lightgbm", plain, list(feature_cols), True, False)]
    if not baselines:
        return out
    if RECENCY in feature_cols:
        out.append(Candidate("lightgbm_monotone", monotone, list(feature_cols), True, False))
        out.append(Candidate("recency", lambda: ColumnCandidate(RECENCY, "log_days", float(horizon_days)),
                             [RECENCY], False, True))
    out.append(Candidate("logistic", LogisticCandidate, list(feature_cols), True, True))
    if BGNBD in feature_cols:
        out.append(Candidate("btyd", lambda: ColumnCandidate(BGNBD, "logit"), [BGNBD], False, True))
    out.append(Candidate("pnbd", lambda: ParetoNbdCandidate(horizon_days), list(ParetoNbdCandidate.columns), False, True))
    return out


@dataclass
class TrainingReport:
    """The champion (a fitted candidate), its calibration, and every candidate's measurements.

    ``test_scores``: one row per client at the test cutoff: label, the champion's calibrated
    ``risk`` and ``raw_risk``, and each candidate's raw score (``score_<name>``; the baselines
    also as ``baseline_<name>``). ``candidates``: one row per candidate: status (``ok``,
    ``skipped: ...``, ``failed: ...``), validation and test ROC-AUC / PR-AUC, champion flag.
    ``choice``: why the champion was chosen, in words."""
    model: object
    calibrator: RiskCalibrator
    split: CutoffSplit
    metrics: dict[str, float]
    test_scores: pd.DataFrame
    breakdowns: dict[str, pd.DataFrame]
    champion: str = "lightgbm"
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    choice: str = ""
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    @property
    def champion_label(self) -> str:
        return LABELS.get(self.champion, self.champion)


def choose_champion(valid_scores: dict[str, np.ndarray], labels, *, metric: str = "roc_auc",
                    contractual: bool = False, eligible: set[str] | None = None) -> tuple[str, pd.DataFrame, str]:
    """THE comparison: each candidate's ``metric`` on the validation rows (``valid_scores``: the
    candidates' scores on the same validation rows, nothing else), the champion the best of the
    ``eligible`` ones (default: all), an exact tie going to the simpler one. Without validation
    labels of both kinds, the candidate that fits the business: the BG/NBD probability where
    there are no cancellations, the recency rule where there are. Returns (champion, table, why)."""
    y = np.asarray(labels).astype(int)
    rows = []
    for name, score in valid_scores.items():
        m = classification_metrics(y, score, probabilities=False) if len(y) else {}
        rows.append({"candidate": name, "valid_roc_auc": m.get("roc_auc", np.nan), "valid_pr_auc": m.get("pr_auc", np.nan)})
    table = pd.DataFrame(rows, columns=["candidate", "valid_roc_auc", "valid_pr_auc"])
    if not valid_scores:
        raise ValueError("no candidate could be fitted")
    eligible = set(valid_scores) if eligible is None else set(eligible) & set(valid_scores)
    if not eligible:
        eligible = set(valid_scores)
    order = {name: i for i, name in enumerate(SIMPLEST_FIRST)}
    key = f"valid_{metric}"
    pool = table[table["candidate"].isin(eligible)]
    if pool[key].notna().any():
        ranked = pool.assign(_o=pool["candidate"].map(order).fillna(len(order))).sort_values(
            [key, "_o"], ascending=[False, True])
        best = ranked.iloc[0]
        runner = ranked.iloc[1] if len(ranked) > 1 else None
        why = (f"best validation {METRIC_NAMES.get(metric, metric)} {best[key]:.4f}" + (f" (next: {runner['candidate']} {runner[key]:.4f})" if runner is not None else "")
               + "; chosen on the validation cutoffs only")
        return str(best["candidate"]), table, why
    preference = ("recency", "btyd", "pnbd") if contractual else ("btyd", "pnbd", "recency")
    for name in (*preference, *SIMPLEST_FIRST, *valid_scores):
        if name in eligible:
            return name, table, ("nothing to choose on (no earlier cutoff whose label window closes by the test "
                                 "cutoff, or none with both outcomes among its clients): the "
                                 f"{LABELS.get(name, name)} by default for a "
                                 f"{'contractual' if contractual else 'non-contractual'} business")
    raise AssertionError("unreachable")


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ValueError(f"{bad:,} non-finite score(s) of {len(values):,}")
    return values


def fit_evaluate(frame: pd.DataFrame, split: CutoffSplit, feature_cols: list[str], params: dict, *,
                 calibration: str = "isotonic", capacity: int | None = None, baselines: bool = True,
                 horizon_days: int = 90, contractual: bool = False, gate_metric: str = "roc_auc",
                 size_aware: bool = True, candidates: list[Candidate] | None = None, stack: bool = True,
                 calibration_cutoffs: int = 2) -> TrainingReport:
    """Fit every candidate, choose the champion on the validation cutoffs, calibrate it there, and
    measure every candidate on the test cutoff (the same rows for all).

    Candidates that learn from labels are fitted on the training cutoffs (LightGBM early-stops
    on the validation cutoffs); the others need no training cutoff. Without training cutoffs
    only the baseline that fits the business is eligible (BG/NBD or Pareto/NBD without
    cancellations, the recency rule with). ``baselines=False``: LightGBM alone. ``candidates``:
    replace the default list (tests). A candidate that fails is reported in ``candidates`` and
    in the metrics (``candidate_<name>_failed``) and left out. The champion is calibrated on the
    latest ``calibration_cutoffs`` validation cutoffs (the most recent season seen)."""
    train = frame[frame["cutoff"].isin(split.train)]
    valid = frame[frame["cutoff"].isin(split.valid)]
    test = frame[frame["cutoff"] == split.test] if split.test is not None else frame.iloc[:0]
    notes = []
    span = (max(split.train) - min(split.train)).days if split.train else 0
    if any(c in feature_cols for c in CALENDAR) and span < CALENDAR_MIN_SPAN_DAYS:
        feature_cols = [c for c in feature_cols if c not in CALENDAR]
        if split.train:
            notes.append(f"calendar features (season_sin, season_cos) left out: the training cutoffs span {span} days, "
                         "less than a year, so no season could be learned")
    specs = candidates if candidates is not None else default_candidates(
        feature_cols, params, horizon_days=horizon_days, n_customers=int(train["customer_id"].nunique()),
        size_aware=size_aware, baselines=baselines)
    fitted, status, valid_raw, test_raw = _fit_candidates(specs, frame, train, valid, test)
    if stack and baselines and candidates is None and len(train) and len(valid) and valid["label"].nunique() == 2:
        _fit_stack(fitted, status, valid, test, valid_raw, test_raw)
    if not fitted:
        raise ValueError("no candidate could be fitted: " + "; ".join(f"{k} {v}" for k, v in status.items()))
    eligible = set(fitted)
    if not len(train):  # no trained model: the baseline that fits the business, as the README documents
        eligible = {n for n in fitted if n in (("recency",) if contractual else ("btyd", "pnbd"))} or set(fitted)
        for name in set(fitted) - eligible:
            status[name] = (f"ok; not eligible without training cutoffs for a "
                            f"{'contractual' if contractual else 'non-contractual'} business")

    labels_valid = valid["label"].to_numpy() if len(valid) and valid["label"].nunique() == 2 else np.array([])
    champion, table, why = choose_champion({k: valid_raw.get(k, np.array([])) for k in fitted} if len(labels_valid)
                                           else {k: np.array([]) for k in fitted},
                                           labels_valid, metric=gate_metric, contractual=contractual,
                                           eligible=eligible)
    model, cols = fitted[champion]
    latest = (valid["cutoff"].isin(sorted(split.valid)[-calibration_cutoffs:]).to_numpy() if len(labels_valid)
              else np.array([], bool))
    if len(labels_valid) and len(np.unique(labels_valid[latest])) == 2:
        method = calibration
        if calibration == "isotonic" and latest.sum() < MIN_ISOTONIC_ROWS:
            method = "platt"
            notes.append(f"calibrated by Platt scaling instead of isotonic regression: {int(latest.sum()):,} calibration "
                         f"rows (isotonic needs {MIN_ISOTONIC_ROWS:,} not to jump to 0 or 1 on a few clients)")
        calibrator = RiskCalibrator(method).fit(valid_raw[champion][latest], labels_valid[latest])
    else:
        calibrator = RiskCalibrator("none").fit([0.0], [0.0])

    scores, metrics, breakdowns = _holdout(test, test_raw, champion, calibrator, capacity)
    cand = _candidate_table(specs, status, table, champion, scores, test_raw, capacity)
    metrics |= _candidate_metrics(cand, metrics)
    if isinstance(model, ChurnClassifier):
        metrics["best_iteration"] = float(model.best_iteration_)
    lgbm = fitted.get("lightgbm", (None, None))[0]  # the LightGBM candidate (the stack's too): its leaves
    if isinstance(lgbm, ChurnClassifier):
        metrics["num_leaves"] = float(lgbm.num_leaves_)
        if len(getattr(lgbm, "capacity_search_", [])) > 1:  # how the candidate was made: part of the choice, not a warning
            why = f"{why}. {lean_note(lgbm.capacity_search_)}"
    metrics["train_rows"] = float(len(train))
    metrics["candidates_failed"] = float(sum(s.startswith("failed") for s in status.values()))
    return TrainingReport(model=model, calibrator=calibrator, split=split, metrics=metrics, test_scores=scores,
                          breakdowns=breakdowns, champion=champion, candidates=cand,
                          choice=f"{LABELS.get(champion, champion)}: {why}", notes=notes,
                          inputs=list(dict.fromkeys(c for c in ("cutoff", *cols) if c in frame.columns)))


def lean_note(rows: list[dict]) -> str:
    """The capacity search of the LightGBM candidate (``ChurnClassifier.capacity_search_``) in words."""
    chosen = next(r for r in rows if r["chosen"])
    others = "; ".join(f"{r['num_leaves']} leaves: {r['trees']} trees, ROC-AUC {r['valid_roc_auc']:.4f}, "
                       f"log loss {r['valid_log_loss']:.4f}" for r in rows if not r["chosen"])
    return (f"LightGBM with {chosen['num_leaves']} leaves per tree ({chosen['trees']} trees) kept: the leanest that "
            f"validates as well (validation ROC-AUC {chosen['valid_roc_auc']:.4f}, log loss {chosen['valid_log_loss']:.4f}; "
            f"{others}); TreeSHAP's cost grows with trees x leaves")


def _fit_candidates(specs: list[Candidate], frame: pd.DataFrame, train: pd.DataFrame, valid: pd.DataFrame,
                    test: pd.DataFrame) -> tuple[dict, dict, dict, dict]:
    """Fit each candidate and score the validation and test rows: (fitted {name: (estimator,
    columns)}, status {name: text}, validation scores, test scores). A failure of any kind, or a
    non-finite score, is the candidate's status, never an exception."""
    fitted: dict[str, tuple[object, list[str]]] = {}
    status: dict[str, str] = {}
    valid_raw: dict[str, np.ndarray] = {}
    test_raw: dict[str, np.ndarray] = {}
    reference = next((part for part in (train, valid, test) if len(part)), frame)  # unlabelled: the frame itself
    for spec in specs:
        cols = [c for c in spec.columns if c in frame.columns]
        if spec.learns_from_labels and (not len(train) or train["label"].nunique() < 2):
            status[spec.name] = ("skipped: no training cutoff before the validation cutoffs" if not len(train)
                                 else "skipped: the training cutoffs hold one label value")
            continue
        try:
            est = spec.make()
            if spec.learns_from_labels:
                eval_set = [(valid[cols], valid["label"])] if len(valid) else None
                est.fit(train[cols], train["label"], eval_set=eval_set)
            else:
                est.fit(reference[cols], reference["label"] if "label" in reference else None)
            scored_valid = _finite(sigmoid(est.decision_function(valid[cols]))) if len(valid) else None
            scored_test = _finite(risk_of(est, test[cols])) if len(test) else None
        except Exception as exc:  # noqa: BLE001 - one candidate's failure must not stop the training
            status[spec.name] = f"failed: {type(exc).__name__}: {exc}"
            continue
        if scored_valid is not None:
            valid_raw[spec.name] = scored_valid
        if scored_test is not None:
            test_raw[spec.name] = scored_test
        fitted[spec.name] = (est, cols)
        status[spec.name] = "ok"
    return fitted, status, valid_raw, test_raw


def _holdout(test: pd.DataFrame, test_raw: dict, champion: str, calibrator: RiskCalibrator,
             capacity: int | None) -> tuple[pd.DataFrame, dict, dict]:
    """The test cutoff's scores (the champion's calibrated risk, every candidate's raw score),
    the champion's metrics and its breakdowns by lifecycle stage and segment."""
    if not len(test):
        empty = pd.DataFrame({"customer_id": pd.Series(dtype=str), "cutoff": pd.Series(dtype="datetime64[us]"),
                              "label": pd.Series(dtype="int8")})
        return empty, {}, {}
    raw = test_raw[champion]
    scores = test[["customer_id", "cutoff", "label"]].assign(risk=calibrator.transform(raw), raw_risk=raw)
    for name, values in test_raw.items():
        scores[f"score_{name}"] = values
        if name in BASELINES:
            scores[f"baseline_{name}"] = values
    metrics = classification_metrics(scores["label"], scores["risk"], prefix="test_", capacity=capacity)
    metrics |= {k: v for k, v in classification_metrics(scores["label"], raw, prefix="test_raw_").items()
                if k in ("test_raw_ece", "test_raw_log_loss")}
    metrics["test_mean_risk"] = float(scores["risk"].mean())
    metrics["test_calibration_in_the_large"] = float(scores["risk"].mean() - scores["label"].mean())
    breakdowns = {col: metrics_by(scores.assign(**{col: test[col].to_numpy()}), "risk", col, capacity=None)
                  for col in ("lifecycle_stage", "segment") if col in test.columns}
    return scores, metrics, breakdowns


def _candidate_table(specs: list[Candidate], status: dict, table: pd.DataFrame, champion: str,
                     scores: pd.DataFrame, test_raw: dict, capacity: int | None) -> pd.DataFrame:
    """One row per candidate: status, validation metrics (from the comparison) and test metrics."""
    rows = []
    valid = table.set_index("candidate")
    for name in [*[s.name for s in specs], *(["stack"] if "stack" in status else [])]:
        row = {"candidate": name, "label": LABELS.get(name, name), "status": status.get(name, ""),
               "baseline": name in BASELINES, "champion": name == champion,
               "valid_roc_auc": float(valid.loc[name, "valid_roc_auc"]) if name in valid.index else np.nan,
               "valid_pr_auc": float(valid.loc[name, "valid_pr_auc"]) if name in valid.index else np.nan,
               "test_roc_auc": np.nan, "test_pr_auc": np.nan, "test_lift_top10": np.nan}
        if name in test_raw and len(scores):
            m = classification_metrics(scores["label"], test_raw[name], capacity=capacity, probabilities=False)
            row["test_roc_auc"], row["test_pr_auc"] = m.get("roc_auc", np.nan), m.get("pr_auc", np.nan)
            row["test_lift_top10"] = m.get("lift_top10", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _candidate_metrics(cand: pd.DataFrame, metrics: dict) -> dict[str, float]:
    """Flat metrics for MLflow: each candidate's validation and test figures, failures, the
    baselines' test figures and the champion's margin over each and over the best."""
    out: dict[str, float] = {}
    for r in cand.to_dict("records"):
        name = r["candidate"]
        if r["status"].startswith("failed"):
            out[f"candidate_{name}_failed"] = 1.0
        for key in ("valid_roc_auc", "valid_pr_auc", "test_roc_auc", "test_pr_auc"):
            if np.isfinite(r[key]):
                out[f"candidate_{name}_{key}"] = float(r[key])
        if r["baseline"] and np.isfinite(r["test_roc_auc"]):
            out[f"baseline_{name}_roc_auc"] = float(r["test_roc_auc"])
            out[f"baseline_{name}_pr_auc"] = float(r["test_pr_auc"])
            out[f"baseline_{name}_lift_top10"] = float(r["test_lift_top10"])
            if "test_roc_auc" in metrics:
                out[f"lift_over_{name}_roc_auc"] = metrics["test_roc_auc"] - float(r["test_roc_auc"])
                out[f"lift_over_{name}_pr_auc"] = metrics["test_pr_auc"] - float(r["test_pr_auc"])
    base = cand[cand["baseline"] & cand["test_roc_auc"].notna()]
    if len(base) and "test_roc_auc" in metrics:
        out["best_baseline_test_roc_auc"] = float(base["test_roc_auc"].max())
        out["best_baseline_test_pr_auc"] = float(base["test_pr_auc"].max())
        out["champion_margin_roc_auc"] = metrics["test_roc_auc"] - out["best_baseline_test_roc_auc"]
        out["champion_margin_pr_auc"] = metrics["test_pr_auc"] - out["best_baseline_test_pr_auc"]
    return out


def _fit_stack(fitted: dict, status: dict, valid: pd.DataFrame, test: pd.DataFrame,
               valid_raw: dict, test_raw: dict) -> None:
    """Add the logistic stack of the fitted candidates (cross-fitted on the validation rows)."""
    bases = [(name, est, cols) for name, (est, cols) in fitted.items()]
    if len(bases) < 2:
        return
    try:
        est = StackCandidate(bases).fit(valid, valid["label"])
        valid_raw["stack"] = _finite(sigmoid(est.oof_logit_))
        if len(test):
            test_raw["stack"] = _finite(risk_of(est, test))
    except Exception as exc:  # noqa: BLE001
        status["stack"] = f"failed: {type(exc).__name__}: {exc}"
        valid_raw.pop("stack", None), test_raw.pop("stack", None)
        return
    cols = list(dict.fromkeys(c for _, _, cs in bases for c in cs))
    fitted["stack"] = (est, ["customer_id", *cols])
    status["stack"] = "ok"


def reason_groups(columns) -> dict[str, str | None]:
    """Each contribution column's driver group; None for the groups that are never a reason (the
    calendar: the season moves every client's risk alike)."""
    return {c: (None if feature_group(c) in NOT_A_REASON else feature_group(c)) for c in sorted(columns)}


def serving_parts(model, name: str) -> tuple[dict, dict[str, float], float]:
    """(scorers, weights, intercept) of a fitted candidate, as ``ChurnRiskServing`` takes them."""
    if hasattr(model, "serving_parts"):
        return model.serving_parts()
    return {name: model.scorer()}, {name: 1.0}, 0.0


def serving_model(report: TrainingReport, *, top_k: int = 3) -> ChurnRiskServing:
    """The self-contained callable logged to MLflow for the report's calibrated champion."""
    scorers, weights, intercept = serving_parts(report.model, report.champion)
    columns = {c for s in scorers.values() for c in s.contribution_columns}
    calibration = (report.calibrator.x_.tolist(), report.calibrator.y_.tolist())
    return ChurnRiskServing(scorers, reason_groups(columns), weights=weights,
                            intercept=intercept, top_k=top_k, calibration=calibration, name=report.champion)


def backtest(frame: pd.DataFrame, cutoffs: list[pd.Timestamp], feature_cols: list[str], params: dict, *,
             horizon_days: int, valid_cutoffs: int, folds: int, calibration: str = "isotonic",
             tune_trials: int = 0, baselines: bool = True, contractual: bool = False) -> pd.DataFrame:
    """Rolling-origin backtest: each of the last ``folds`` cutoffs in turn is the test cutoff,
    with the candidates fitted and the champion chosen only on what was labelled before it
    (and, with ``tune_trials``, LightGBM's hyper-parameters searched on that fold's validation
    cutoffs). One row of metrics per fold."""
    from models.train import split_cutoffs
    from models.tune import tune

    rows = []
    cutoffs = sorted(pd.to_datetime(cutoffs))
    for test in cutoffs[-folds:]:
        try:
            split = split_cutoffs([c for c in cutoffs if c <= test], horizon_days=horizon_days, valid_cutoffs=valid_cutoffs)
        except ValueError:
            continue
        fold_params = params
        if tune_trials:
            fold_params, _ = tune(frame, split, feature_cols, params, n_trials=tune_trials, seed=params.get("seed", 42))
        report = fit_evaluate(frame, split, feature_cols, fold_params, calibration=calibration, horizon_days=horizon_days,
                              baselines=baselines, contractual=contractual, size_aware=not tune_trials)
        keep = {k: v for k, v in report.metrics.items()
                if k.startswith(("test_", "baseline_", "candidate_", "best_baseline_", "champion_margin_"))}
        rows.append({"test_cutoff": test, "train_cutoffs": len(split.train), "champion": report.champion, **keep})
    return pd.DataFrame(rows)
