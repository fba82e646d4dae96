"""Training: the cutoffs (adapted to the history), the purged split, LightGBM.

The split is purged: a row at cutoff ``c`` has a label window ``(c, c + horizon]``, so a
training cutoff must end its window on or before the first validation cutoff, and a
validation cutoff on or before the test cutoff. No customer's future leaks into an
earlier fold.

``plan_cutoffs`` adapts the cutoffs to the history: month starts when they give a purged
train / validation / test split, else Mondays, else a split without training cutoffs, where
only the candidates that learn nothing from labels (the buy-till-you-die probabilities, the
recency rule) can be champion (``models.candidates``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from models.serving import BoosterScorer, prepare_features


@dataclass(frozen=True)
class CutoffSplit:
    """Training, validation and test cutoffs. ``train`` is empty when the history cannot give a
    purged split (only candidates that learn nothing from labels are fitted); ``valid`` may be
    empty too; ``test`` is None when no cutoff is labelled at all."""
    train: list[pd.Timestamp]
    valid: list[pd.Timestamp]
    test: pd.Timestamp | None

    @property
    def complete(self) -> bool:
        return bool(self.train) and bool(self.valid) and self.test is not None

    def as_strings(self) -> dict[str, list[str]]:
        return {"train": [str(c.date()) for c in self.train], "valid": [str(c.date()) for c in self.valid],
                "test": [str(self.test.date())] if self.test is not None else []}


def split_cutoffs(cutoffs: list[pd.Timestamp], *, horizon_days: int, valid_cutoffs: int = 2) -> CutoffSplit:
    """Test = the latest cutoff; validation = the ``valid_cutoffs`` latest cutoffs whose label
    window closes by the test cutoff; training = every cutoff whose window closes by the first
    validation cutoff. Raises ValueError when the history is too short for all three."""
    split = partial_split(cutoffs, horizon_days=horizon_days, valid_cutoffs=valid_cutoffs)
    if not split.complete:
        given = [str(c.date()) for c in sorted(pd.to_datetime(cutoffs))]
        if split.test is None:
            raise ValueError("no labelled cutoffs: the data is shorter than the label horizon")
        raise ValueError(
            f"need at least {valid_cutoffs + 1} cutoffs spaced by the {horizon_days}-day horizon before the "
            f"test cutoff {split.test.date()}; the data has labelled cutoffs {given}. "
            "Provide a longer history or a shorter --horizon-days.")
    return split


def partial_split(cutoffs: list[pd.Timestamp], *, horizon_days: int, valid_cutoffs: int = 2) -> CutoffSplit:
    """The purged split as far as the cutoffs allow it (``train`` and ``valid`` possibly empty)."""
    cutoffs = sorted(pd.to_datetime(cutoffs))
    horizon = pd.Timedelta(days=horizon_days)
    if not cutoffs:
        return CutoffSplit(train=[], valid=[], test=None)
    test = cutoffs[-1]
    valid = [c for c in cutoffs if c + horizon <= test][-valid_cutoffs:]
    train = [c for c in cutoffs if valid and c + horizon <= valid[0]]
    return CutoffSplit(train=train, valid=valid, test=test)


@dataclass
class CutoffPlan:
    """Which cutoffs to label and how to split them, and what was decided on the way."""
    cutoffs: list[pd.Timestamp]
    frequency: str
    split: CutoffSplit
    notes: list[str] = field(default_factory=list)

    @property
    def baseline_only(self) -> bool:
        """No purged training split: the champion is a candidate that learns nothing from labels."""
        return not self.split.complete


FREQUENCY_NAMES = {"MS": "month starts", "W-MON": "Mondays", "W": "weeks", "QS": "quarter starts", "D": "days"}


def plan_cutoffs(tables: dict, horizon_days: int, *, frequency: str = "MS", max_cutoffs: int | None = None,
                 valid_cutoffs: int = 2) -> CutoffPlan:
    """Labelled cutoffs at ``frequency``; when they cannot give a purged train / validation / test
    split, the next finer frequency (``features.labels.finer_frequency``: month starts ->
    Mondays), with one validation cutoff if two leave no training cutoff; when even that fails,
    the finest cutoffs with no training cutoffs (a baseline champion). Every fallback is said
    in ``notes``."""
    from features.labels import finer_frequency, labelled_cutoffs

    notes: list[str] = []
    tried: list[tuple[str, list[pd.Timestamp]]] = []
    freq: str | None = frequency
    while freq is not None:
        cutoffs = labelled_cutoffs(tables, horizon_days, freq=freq, max_cutoffs=max_cutoffs)
        tried.append((freq, cutoffs))
        for n_valid in dict.fromkeys((valid_cutoffs, 1)):
            split = partial_split(cutoffs, horizon_days=horizon_days, valid_cutoffs=n_valid)
            if split.complete:
                if freq != frequency:
                    notes.append(f"cutoffs at {_name(freq)} instead of {_name(frequency)}: {_name(frequency)} gave "
                                 f"{len(tried[0][1])} labelled cutoff(s), too few for a purged train / validation / "
                                 f"test split with a {horizon_days}-day horizon")
                if n_valid != valid_cutoffs:
                    notes.append(f"{n_valid} validation cutoff instead of {valid_cutoffs}: the history leaves no "
                                 f"training cutoff {horizon_days} days before the earlier one")
                return CutoffPlan(cutoffs=cutoffs, frequency=freq, split=split, notes=notes)
        freq = finer_frequency(freq)
    freq, cutoffs = max(tried, key=lambda t: len(t[1]))
    split = baseline_split(cutoffs, horizon_days)
    counts = " and ".join(f"{len(c)} at {_name(f)}" for f, c in tried)
    shorter = horizon_that_splits(tables, horizon_days, frequency=frequency, valid_cutoffs=valid_cutoffs)
    advice = (f"; on this history a {shorter}-day horizon (--horizon-days {shorter}, if leaving within {shorter} days "
              "means something to the business) gives a trained model" if shorter else
              "; no horizon of a week or more gives one on this history: a longer history gives a trained model")
    notes.append(f"no purged train / validation / test split: the history gives {counts} labelled cutoff(s) for a "
                 f"{horizon_days}-day horizon (a split needs about three horizons of labelled history){advice}. "
                 + BASELINE_CHAMPION.split(";")[0])
    return CutoffPlan(cutoffs=cutoffs, frequency=freq, split=split, notes=notes)


SHORTER_HORIZONS = (60, 45, 30, 21, 14, 7)


def horizon_that_splits(tables: dict, horizon_days: int, *, frequency: str = "MS", valid_cutoffs: int = 2) -> int | None:
    """The longest of ``SHORTER_HORIZONS`` below ``horizon_days`` whose labelled cutoffs (at
    ``frequency`` or the finer ones ``plan_cutoffs`` falls back on) give a purged train /
    validation / test split on this history; None when none does. Dates only: whether the
    split then holds enough rows to learn from is ``adapt_split``'s to say."""
    from features.labels import finer_frequency, labelled_cutoffs

    for horizon in (h for h in SHORTER_HORIZONS if h < horizon_days):
        freq: str | None = frequency
        while freq is not None:
            cutoffs = labelled_cutoffs(tables, horizon, freq=freq)
            if any(partial_split(cutoffs, horizon_days=horizon, valid_cutoffs=n).complete
                   for n in dict.fromkeys((valid_cutoffs, 1))):
                return horizon
            freq = finer_frequency(freq)
    return None


BASELINE_CHAMPION = ("The champion is the best of the candidates that learn nothing from labels (buy-till-you-die "
                     "probabilities, the recency rule), chosen on every cutoff whose label window closes by the test "
                     "cutoff and calibrated on the latest of them; a longer history or a shorter --horizon-days gives "
                     "a trained model")


def baseline_split(cutoffs: list[pd.Timestamp], horizon_days: int) -> CutoffSplit:
    """No training cutoff: test = the latest cutoff; validation = every cutoff whose label window
    closes by it (none of the remaining candidates learns from labels, so all of them are fair
    ground for choosing)."""
    cutoffs = sorted(pd.to_datetime(cutoffs))
    if not cutoffs:
        return CutoffSplit(train=[], valid=[], test=None)
    test = cutoffs[-1]
    return CutoffSplit(train=[], valid=[c for c in cutoffs if c + pd.Timedelta(days=horizon_days) <= test], test=test)


MIN_TRAIN_ROWS = 200
MIN_TRAIN_EACH = 20


def adapt_split(frame: pd.DataFrame, plan: CutoffPlan, horizon_days: int, *, min_rows: int = MIN_TRAIN_ROWS,
                min_each: int = MIN_TRAIN_EACH) -> CutoffPlan:
    """A planned split whose training cutoffs hold fewer than ``min_rows`` labelled rows, or fewer
    than ``min_each`` of either label, has nothing to learn from: it becomes the baseline split
    (``baseline_split``), said in the notes."""
    if not plan.split.complete:
        return plan
    labels = frame.loc[frame["cutoff"].isin(plan.split.train), "label"]
    each = int(min(labels.sum(), len(labels) - labels.sum())) if len(labels) else 0
    if len(labels) >= min_rows and each >= min_each:
        return plan
    note = (f"the training cutoffs hold {len(labels):,} labelled rows ({each:,} of the rarer label), too few to learn "
            f"from (at least {min_rows:,} and {min_each:,} of each). " + BASELINE_CHAMPION)
    kept = [n for n in plan.notes if "validation cutoff instead of" not in n]
    return CutoffPlan(cutoffs=plan.cutoffs, frequency=plan.frequency,
                      split=baseline_split(plan.cutoffs, horizon_days), notes=[*kept, note])


def training_data(tables: dict, *, horizon_days: int, frequency: str = "MS", max_cutoffs: int | None = None,
                  valid_cutoffs: int = 2, config=None, cache=None) -> tuple[pd.DataFrame, CutoffPlan]:
    """The labelled feature table at the planned cutoffs (``plan_cutoffs``, then ``adapt_split``:
    too few training rows to learn from make it a baseline split) and the plan. When no
    cutoff can be labelled (the history is shorter than one horizon), the clients' unlabelled
    features at the end of the data instead, for a champion that learns nothing from labels.
    ``cache`` (a ``features.cache.FeatureCache``) reads the table back when the same inputs,
    cutoffs and config built it before."""
    from features.build import build_features
    from features.cache import FeatureCache
    from features.labels import build_training_set, default_as_of

    cache = cache or FeatureCache.off()
    plan = plan_cutoffs(tables, horizon_days, frequency=frequency, max_cutoffs=max_cutoffs,
                        valid_cutoffs=valid_cutoffs)
    frame = cache.cached(build_training_set, tables, plan.cutoffs, horizon_days=horizon_days, config=config)
    plan = adapt_split(frame, plan, horizon_days)
    if not len(frame):
        as_of = default_as_of(tables)
        frame = cache.cached(build_features, tables, [as_of], config=config)
        plan.notes.append(f"no cutoff can be labelled with a {horizon_days}-day horizon: the champion is set on the "
                          f"clients as of {as_of.date()} without any outcome to calibrate or measure it on")
    return frame, plan


def _name(freq: str) -> str:
    return FREQUENCY_NAMES.get(freq, freq)


def size_aware_params(params: dict, n_customers: int) -> dict:
    """LightGBM's capacity scaled to the data: rows of one customer at several cutoffs are far
    from independent, so the size is the number of distinct customers in the training
    cutoffs. Below 2,000 customers: at most 7 leaves, leaves of at least 2% of the rows' customers
    (min 40), L2 of 10 and a slower learning rate; below 10,000: at most 15 leaves and L2 of 5;
    above, the configured parameters."""
    p = dict(params)
    if n_customers < 2_000:
        p.update(num_leaves=min(p.get("num_leaves", 31), 7),
                 min_child_samples=max(p.get("min_child_samples", 50), 40, n_customers // 50),
                 lambda_l2=max(p.get("lambda_l2", 1.0), 10.0), learning_rate=min(p.get("learning_rate", 0.05), 0.03),
                 feature_fraction=min(p.get("feature_fraction", 0.9), 0.8))
    elif n_customers < 10_000:
        p.update(num_leaves=min(p.get("num_leaves", 31), 15), min_child_samples=max(p.get("min_child_samples", 50), 50),
                 lambda_l2=max(p.get("lambda_l2", 1.0), 5.0))
    return p


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM binary classifier of 'becomes a former client within the horizon'.

    scikit-learn's estimator contract: hyper-parameters in ``__init__``, data only through
    ``fit(X, y, eval_set=[(X_valid, y_valid)])`` (early stopping on the validation set),
    fitted state ends in ``_``, ``predict_proba`` returns both classes' probabilities.
    Categorical columns (pandas ``category``) are handled natively; their categories are frozen
    at fit time so scoring data maps identically. ``monotone_increasing``: features whose
    rise may never lower the risk (e.g. ``days_since_last_order``).

    ``lean_leaves``: smaller leaf counts tried beside ``num_leaves`` when there is a validation
    set with both outcomes. Each is fitted (early-stopping on the validation set) and the
    leanest (fewest trees x leaves: what TreeSHAP's cost grows with) whose validation ROC-AUC
    is within ``lean_tolerance`` of the best one and whose log loss is within 0.5% of the best
    is kept; the comparison is ``capacity_search_`` (one row per leaf count, ``chosen``).
    A leaner model explains the at-risk list several times faster, and on churn data a few
    leaves per tree often validate as well as many.
    """

    def __init__(self, *, learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 50,
                 feature_fraction: float = 0.9, bagging_fraction: float = 0.9, bagging_freq: int = 1,
                 lambda_l2: float = 1.0, num_boost_round: int = 400, early_stopping_rounds: int = 30,
                 seed: int = 42, monotone_increasing: tuple[str, ...] = (), lean_leaves: tuple[int, ...] = (),
                 lean_tolerance: float = 0.001):
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
        self.monotone_increasing = monotone_increasing
        self.lean_leaves = lean_leaves
        self.lean_tolerance = lean_tolerance

    def lgb_params(self) -> dict:
        params = {
            "objective": "binary", "metric": "binary_logloss", "verbosity": -1,
            "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction, "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2, "seed": self.seed, "deterministic": True,
            "force_row_wise": True, "num_threads": 2,
        }
        if self.monotone_increasing and hasattr(self, "feature_names_"):
            params["monotone_constraints"] = [int(c in self.monotone_increasing) for c in self.feature_names_]
        return params

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """Select the fitted feature columns and apply the frozen categories."""
        return prepare_features(X, self.feature_names_, self.categories_, errors="raise")

    def fit(self, X: pd.DataFrame, y, eval_set: list[tuple[pd.DataFrame, object]] | None = None) -> "ChurnClassifier":
        options = sorted({int(n) for n in self.lean_leaves if 1 < int(n) < self.num_leaves} | {self.num_leaves})
        if len(options) > 1 and eval_set and len(np.unique(np.asarray(eval_set[0][1]))) == 2:
            return self._fit_leanest(X, y, eval_set, options)
        self.num_leaves_ = self.num_leaves
        self.capacity_search_ = []
        self.feature_names_ = list(X.columns)
        self.categories_ = {c: sorted({str(v) for v in X[c].astype("object").dropna().unique()})
                            for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype) or X[c].dtype == object
                            or pd.api.types.is_string_dtype(X[c].dtype)}
        self.classes_ = np.array([0, 1])
        train = lgb.Dataset(self.prepare(X), label=np.asarray(y), free_raw_data=False)
        callbacks, valid_sets = [], []
        if eval_set:
            X_valid, y_valid = eval_set[0]
            valid_sets = [lgb.Dataset(self.prepare(X_valid), label=np.asarray(y_valid), reference=train)]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(self.lgb_params(), train, num_boost_round=self.num_boost_round,
                                  valid_sets=valid_sets, callbacks=callbacks)
        self.best_iteration_ = self.booster_.best_iteration or self.num_boost_round
        return self

    def _fit_leanest(self, X: pd.DataFrame, y, eval_set, options: list[int]) -> "ChurnClassifier":
        """Fit each leaf count in ``options`` and keep the leanest that validates as well (see the class)."""
        from sklearn.metrics import log_loss, roc_auc_score

        X_valid, y_valid = eval_set[0]
        y_valid = np.asarray(y_valid)
        fits, rows = {}, []
        for leaves in options:
            est = ChurnClassifier(**{**self.get_params(), "num_leaves": leaves, "lean_leaves": ()})
            est.fit(X, y, eval_set=eval_set)
            p = est.predict_proba(X_valid)[:, 1]
            fits[leaves] = est
            rows.append({"num_leaves": leaves, "trees": int(est.best_iteration_),
                         "valid_roc_auc": float(roc_auc_score(y_valid, p)),
                         "valid_log_loss": float(log_loss(y_valid, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))})
        best_auc = max(r["valid_roc_auc"] for r in rows)
        best_loss = min(r["valid_log_loss"] for r in rows)
        good = [r for r in rows if r["valid_roc_auc"] >= best_auc - self.lean_tolerance
                and r["valid_log_loss"] <= best_loss * 1.005]
        chosen = (min(good, key=lambda r: (r["trees"] * r["num_leaves"], r["num_leaves"])) if good
                  else max(rows, key=lambda r: r["valid_roc_auc"]))
        for r in rows:
            r["chosen"] = r is chosen
        kept = fits[chosen["num_leaves"]]
        for name in ("feature_names_", "categories_", "classes_", "booster_", "best_iteration_", "num_leaves_"):
            setattr(self, name, getattr(kept, name))
        self.capacity_search_ = rows
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, 2): probabilities of staying and of becoming a former client within the horizon."""
        p = self.booster_.predict(self.prepare(X), num_iteration=self.best_iteration_)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of becoming a former client (the booster's raw score)."""
        return self.booster_.predict(self.prepare(X), num_iteration=self.best_iteration_, raw_score=True)

    def predict_contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP log-odds contributions per feature (LightGBM ``pred_contrib``), plus ``bias``."""
        values = self.booster_.predict(self.prepare(X), num_iteration=self.best_iteration_, pred_contrib=True)
        return pd.DataFrame(values, index=X.index, columns=[*self.feature_names_, "bias"])

    def scorer(self) -> BoosterScorer:
        """The fitted booster as the served model's scorer (``models.serving``)."""
        return BoosterScorer(self.booster_.model_to_string(), self.feature_names_, self.categories_,
                             int(self.best_iteration_))


def train_model(frame: pd.DataFrame, split: CutoffSplit, feature_cols: list[str], **params) -> ChurnClassifier:
    """Fit on the training cutoffs of a labelled feature table, early-stopping on the validation cutoffs."""
    train = frame[frame["cutoff"].isin(split.train)]
    valid = frame[frame["cutoff"].isin(split.valid)]
    if train["label"].nunique() < 2:
        raise ValueError("the training cutoffs hold only one label value; the model cannot learn from them")
    return ChurnClassifier(**params).fit(train[feature_cols], train["label"],
                                         eval_set=[(valid[feature_cols], valid["label"])] if len(valid) else None)


def risk_of(estimator, X: pd.DataFrame) -> np.ndarray:
    """The probability of the positive class (becoming a former client) of any fitted candidate."""
    return np.asarray(estimator.predict_proba(X))[:, 1]
