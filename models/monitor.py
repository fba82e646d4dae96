"""Monitoring a champion: drift now, estimated performance before the labels arrive, realised
performance once they do. Pure functions of (reference, scores, outcomes); the ``monitor``
flow wires them to the scoring history and the registry.

- Drift: the population stability index (PSI) of each feature and of the score between the
  champion's training reference (``reference_profile``, stored with the model, so monitoring
  never needs the training data) and the latest scoring (``drift``). Numbers are binned on the
  reference's deciles, categories by level; missing values are a bin of their own; an empty
  bin counts as ``EPSILON`` of its side, so one unseen level gives a large but finite PSI.
- Estimated performance: from calibrated risks alone (confidence-based performance
  estimation): if the risks are calibrated, client ``i`` is a leaver with probability
  ``p_i``, so the expected confusion counts at every threshold are sums of ``p`` and
  ``1 - p`` over the clients above it, and the expected ROC and precision-recall curves
  follow (``estimate_performance``). It is only as good as the calibration, and cannot see
  a change in what drives churn (concept drift): realised performance can.
- Realised performance: once a list's horizon has closed in the data, its clients' labels
  are known (``realised_performance``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.evaluate import classification_metrics, expected_calibration_error

EPSILON = 1e-4
MISSING = "(missing)"
OTHER = "(other)"
QUANTILES = 10


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)


def column_profile(values: pd.Series, bins: int = QUANTILES) -> dict:
    """The reference distribution of one column: ``{"kind": "number", "edges": [...],
    "shares": [...]}`` (inner edges at the reference's quantiles, the last share is the missing
    values) or ``{"kind": "category", "levels": [...], "shares": [...]}`` (the last level is
    the missing values). JSON-serialisable: stored with the model."""
    n = max(len(values), 1)
    if _numeric(values):
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        finite = x[np.isfinite(x)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.zeros(0)
        counts = _number_counts(x, edges)
        return {"kind": "number", "edges": [float(e) for e in edges], "shares": [float(c / n) for c in counts]}
    text = values.astype("object").where(values.notna(), None)
    levels = sorted({str(v) for v in text.dropna().unique()})
    counts = _category_counts(text, levels)[:-1]  # no level is unseen by the reference itself
    return {"kind": "category", "levels": [*levels, MISSING], "shares": [float(c / n) for c in counts]}


def _number_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: ``len(edges) + 1`` bins of the finite values (right-closed: a value equal
    to an edge falls in the bin below it, so a column that is mostly one value keeps it in one
    bin), then the missing or infinite values."""
    finite = np.isfinite(x)
    idx = np.searchsorted(edges, x[finite], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return np.append(counts, float((~finite).sum()))


def _category_counts(text: pd.Series, levels: list[str]) -> np.ndarray:
    """Counts per reference level, then the missing values; a level the reference never saw
    is counted in an extra last bin (``OTHER``)."""
    observed = text.dropna().astype(str).value_counts()
    counts = [float(observed.get(level, 0)) for level in levels]
    unseen = float(observed[~observed.index.isin(levels)].sum())
    return np.array([*counts, float(text.isna().sum()), unseen])


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e) of the shares; a bin empty on one side counts
    as ``EPSILON`` there. 0 means the same distribution; 0.1 is a moderate shift, 0.2 a large one."""
    e = np.maximum(np.asarray(expected, dtype=float), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=float), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def column_psi(profile: dict, values: pd.Series) -> float:
    """The PSI of ``values`` against a ``column_profile``."""
    n = max(len(values), 1)
    if profile["kind"] == "number":
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        actual = _number_counts(x, np.asarray(profile["edges"], dtype=float)) / n
        expected = np.asarray(profile["shares"], dtype=float)
    else:
        levels = profile["levels"][:-1]
        text = values.astype("object").where(values.notna(), None)
        actual = _category_counts(text, levels) / n
        expected = np.append(np.asarray(profile["shares"], dtype=float), 0.0)  # no unseen level in the reference
    return population_stability_index(expected, actual)


def reference_profile(features: pd.DataFrame, risk: np.ndarray | None, *, bins: int = QUANTILES) -> dict:
    """What monitoring compares a later scoring with, computed at training time on the rows the
    model was tested on: each feature's profile, the risk's profile (None without test scores:
    a model trained without a labelled test cutoff), the rows."""
    return {"rows": int(len(features)),
            "features": {c: column_profile(features[c], bins) for c in features.columns},
            "score": None if risk is None else column_profile(pd.Series(np.asarray(risk, dtype=float)), bins)}


def retention_reference(test: pd.DataFrame, feature_cols: list[str], risk: np.ndarray | None, *, lapse,
                        contractual: bool, rule_with_cancellations: bool = False) -> dict:
    """The training reference as monitoring compares a list with it: the features of every
    client at the test cutoff (the monitor builds them for everyone at the list's date too),
    and the risk of those the lapse rule keeps on the retention list (a later list holds only
    them; the win-back list carries no risk)."""
    from models.score import split_lists

    if risk is not None and len(risk) == len(test):
        kept = pd.isna(split_lists(test, lapse, contractual=contractual, rule_with_cancellations=rule_with_cancellations))
        risk = np.asarray(risk, dtype=float)[np.asarray(kept, dtype=bool)]
    else:
        risk = None
    return reference_profile(test[feature_cols], risk)


def drift(reference: dict, features: pd.DataFrame, risk: np.ndarray, *, psi_warn: float = 0.1,
          psi_alert: float = 0.2) -> tuple[dict, dict]:
    """Per feature ``{"psi", "flag", "warn", "reference": "train", "method": "psi"}`` (``flag``:
    PSI at or above ``psi_alert``), sorted by PSI, largest first; and the same for the score.
    A feature of the reference missing from ``features`` is skipped, and so are the calendar
    features (the time of year of the date: the same for every client at a date, so they move
    with the date by construction and say nothing about the clients)."""
    from features.catalogue import feature_group

    out = {}
    for name, profile in reference["features"].items():
        if name in features.columns and feature_group(name) != "calendar":
            psi = column_psi(profile, features[name])
            out[name] = {"psi": round(psi, 6), "flag": bool(psi >= psi_alert), "warn": bool(psi >= psi_warn),
                         "reference": "train", "method": "psi"}
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]["psi"]))
    if reference.get("score") is None:
        return out, {"psi": None, "flag": False, "warn": False}
    score_psi = column_psi(reference["score"], pd.Series(np.asarray(risk, dtype=float)))
    return out, {"psi": round(score_psi, 6), "flag": bool(score_psi >= psi_alert), "warn": bool(score_psi >= psi_warn)}


def expected_roc_auc(risk) -> float:
    """The ROC-AUC the ranking would reach if each client left with probability ``risk``
    (calibrated): expected correctly ordered (leaver, stayer) pairs over expected pairs. A
    client ranked above another contributes ``p_above * (1 - p_below)``; ties count half."""
    p = np.asarray(risk, dtype=float)
    if len(p) < 2:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    # group ties: within a group of equal scores the pairs count half
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    group_pos = np.add.reduceat(ps, starts)
    group_neg = np.add.reduceat(1.0 - ps, starts)
    neg_below = np.cumsum(group_neg[::-1])[::-1] - group_neg  # stayers strictly below each group
    concordant = np.sum(group_pos * neg_below)
    # within a tie group, pairs of distinct clients: sum_i p_i * sum_{j != i} (1 - p_j), halved
    ties = np.sum(group_pos * group_neg - np.add.reduceat(ps * (1.0 - ps), starts))
    pairs = p.sum() * (1.0 - p).sum() - np.sum(p * (1.0 - p))
    return float((concordant + 0.5 * ties) / pairs) if pairs > 0 else float("nan")


def expected_pr_auc(risk) -> float:
    """The expected average precision: the precision-recall curve of the expected confusion
    counts at each threshold (the ratio of expectations, as confidence-based estimation does)."""
    p = np.asarray(risk, dtype=float)
    if not len(p) or p.sum() <= 0:
        return float("nan")
    ps = np.sort(p)[::-1]
    tp = np.cumsum(ps)
    fp = np.cumsum(1.0 - ps)
    last = np.r_[ps[1:] != ps[:-1], True]  # thresholds between distinct scores
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / p.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def estimate_performance(risk, high_tier) -> dict[str, float]:
    """Label-free estimates for one scoring: ``roc_auc``, ``pr_auc``, ``positive_rate`` (the
    expected leaver share) and ``precision_high_tier`` (expected leavers among the high tier)."""
    p = np.asarray(risk, dtype=float)
    high = np.asarray(high_tier, dtype=bool)
    return {"roc_auc": round(expected_roc_auc(p), 6), "pr_auc": round(expected_pr_auc(p), 6),
            "positive_rate": round(float(p.mean()), 6) if len(p) else float("nan"),
            "precision_high_tier": round(float(p[high].mean()), 6) if high.any() else float("nan")}


def realised_performance(listed: pd.DataFrame, labels: pd.DataFrame, touches: pd.Series | None = None) -> dict:
    """The realised figures of one past list once its horizon has closed: ``listed`` has
    customer_id, risk and tier; ``labels`` has customer_id and label (1 = became a former
    client within the horizon) for the clients the data can judge. ``touches``: outbound
    touches per customer_id during the horizon; the figures are repeated on the clients who
    received none (``untouched_*``), so a successful campaign is not mistaken for a worse model.
    Only listed clients with a label count (``rows``)."""
    frame = listed[["customer_id", "risk", "tier"]].merge(labels[["customer_id", "label"]], on="customer_id", how="inner")
    out = _figures(frame)
    if touches is not None:
        reached = frame["customer_id"].map(touches).fillna(0).to_numpy() > 0
        out["touched_rows"] = int(reached.sum())
        out |= {f"untouched_{k}": v for k, v in _figures(frame[~reached]).items()}
    return out


def _figures(frame: pd.DataFrame) -> dict:
    y = frame["label"].to_numpy(dtype=int)
    risk = frame["risk"].to_numpy(dtype=float)
    m = classification_metrics(y, risk, probabilities=True)
    high = frame["tier"].to_numpy(dtype=object) == "high"
    return {"rows": int(len(frame)), "roc_auc": _rounded(m.get("roc_auc")), "pr_auc": _rounded(m.get("pr_auc")),
            "ece": _rounded(expected_calibration_error(y, risk)) if len(y) else None,
            "precision_high_tier": _rounded(float(y[high].mean())) if high.any() else None,
            "positive_rate": _rounded(float(y.mean())) if len(y) else None}


def _rounded(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def alerts(drift_by_feature: dict, score_drift: dict, expected: dict, realised: list[dict], *,
           champion_roc_auc: float | None, max_auc_drop: float = 0.05) -> list[str]:
    """Plain sentences for what needs a person: features and score at or above the alert PSI,
    an estimated or realised ROC-AUC more than ``max_auc_drop`` below the champion's test ROC-AUC."""
    out = [f"feature {name} drifted: PSI {d['psi']:.2f} against the training data" for name, d in drift_by_feature.items()
           if d["flag"]]
    if score_drift.get("flag"):
        out.append(f"the risk distribution drifted: PSI {score_drift['psi']:.2f} against the training data")
    if champion_roc_auc is not None and np.isfinite(champion_roc_auc):
        floor = champion_roc_auc - max_auc_drop
        est = expected.get("roc_auc")
        if est is not None and np.isfinite(est) and est < floor:
            out.append(f"estimated ROC-AUC {est:.3f} is below the champion's test ROC-AUC {champion_roc_auc:.3f} "
                       f"minus {max_auc_drop:.2f}")
        for r in realised:
            auc = r.get("roc_auc")
            if auc is not None and auc < floor:
                out.append(f"realised ROC-AUC {auc:.3f} on the list of {r['as_of']} is below the champion's test "
                           f"ROC-AUC {champion_roc_auc:.3f} minus {max_auc_drop:.2f}")
    return out


# ---- the scoring history and the data: what the monitor flow reads ---------------------------

def scoring_history(lists_dir: Path) -> list[tuple[pd.Timestamp, Path]]:
    """The scorings kept under ``lists_dir`` (``OUT/history/<as_of>/at_risk.parquet``, as
    ``churn score`` keeps them), oldest first; a folder without history holds one scoring,
    ``OUT/at_risk.parquet``."""
    lists_dir = Path(lists_dir)
    found = []
    for folder in sorted((lists_dir / "history").glob("*")):
        path = folder / "at_risk.parquet"
        try:
            as_of = pd.Timestamp(folder.name)
        except ValueError:
            continue
        if path.is_file():
            found.append((as_of, path))
    if not found and (lists_dir / "at_risk.parquet").is_file():
        listed = pd.read_parquet(lists_dir / "at_risk.parquet", columns=["as_of"])
        if len(listed):
            found.append((pd.Timestamp(listed["as_of"].iloc[0]).normalize(), lists_dir / "at_risk.parquet"))
    return found


def read_list(path: Path) -> pd.DataFrame:
    """The columns of a kept list that monitoring needs: customer_id, risk, tier, model_version."""
    listed = pd.read_parquet(path)
    missing = [c for c in ("customer_id", "risk", "tier") if c not in listed.columns]
    if missing:
        raise ValueError(f"{path} is not an at-risk list written by `churn score`: it lacks {missing}")
    if "model_version" not in listed.columns:
        listed = listed.assign(model_version=None)
    return listed


def outbound_touches(tables: dict, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Outbound interactions per customer_id stamped in ``[start, end)`` (the retention team's
    contacts during a list's horizon); empty without an interactions table."""
    import duckdb

    source = tables.get("interactions") if hasattr(tables, "get") else None
    if source is None:
        return pd.Series(dtype="int64")
    with duckdb.connect() as con:
        if isinstance(source, (str, Path)):
            src = "read_parquet('" + str(source).replace("'", "''") + "')"
        else:
            con.register("interactions_frame", source[["customer_id", "occurred_at", "direction"]])
            src = "interactions_frame"
        rows = con.execute(f"SELECT customer_id, count(*) FROM {src} WHERE direction = 'outbound' "
                           "AND occurred_at >= ? AND occurred_at < ? GROUP BY customer_id",
                           [pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()]).fetchall()
    return pd.Series({cid: int(n) for cid, n in rows}, dtype="int64")


def horizon_closed(as_of: pd.Timestamp, horizon_days: int, data_end: pd.Timestamp) -> bool:
    """Whether the data covers a list's whole horizon ``[as_of, as_of + horizon]``."""
    return pd.Timestamp(as_of) + pd.Timedelta(days=horizon_days) <= pd.Timestamp(data_end)


def to_json(report: dict) -> str:
    """Strict JSON (no NaN: a missing figure is null)."""
    def clean(value):
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, (float, np.floating)):
            return None if not np.isfinite(value) else float(value)
        if isinstance(value, (np.integer,)):
            return int(value)
        if isinstance(value, (np.bool_,)):
            return bool(value)
        return value
    return json.dumps(clean(report), indent=2, allow_nan=False)


def realised_history(tables: dict, history: list[tuple[pd.Timestamp, pd.DataFrame]], *, horizon_days: int,
                     data_end: pd.Timestamp, active_window_days: int = 365) -> list[dict]:
    """For every kept list whose horizon has closed in the data: the realised figures on exactly
    its clients (``realised_performance``, with the outbound touches each received during the
    horizon), beside the label-free estimate made from its own risks. Oldest first."""
    from features.labels import build_labels

    out = []
    for as_of, listed in history:
        if not horizon_closed(as_of, horizon_days, data_end):
            continue
        labels = build_labels(tables, [as_of], horizon_days=horizon_days, active_window_days=active_window_days)
        touches = outbound_touches(tables, as_of, as_of + pd.Timedelta(days=horizon_days))
        figures = realised_performance(listed, labels, touches)
        estimate = estimate_performance(listed["risk"], listed["tier"] == "high")
        version = listed["model_version"].dropna()
        out.append({"as_of": str(pd.Timestamp(as_of).date()), "model_version": str(version.iloc[0]) if len(version) else None,
                    **figures, "expected_roc_auc": estimate["roc_auc"], "expected_pr_auc": estimate["pr_auc"],
                    "expected_positive_rate": estimate["positive_rate"]})
    return out


def monitor_report(*, as_of: pd.Timestamp, model_version: str | None, reference: dict | None, features: pd.DataFrame,
                   listed: pd.DataFrame, realised: list[dict], champion_roc_auc: float | None, psi_warn: float = 0.1,
                   psi_alert: float = 0.2, max_auc_drop: float = 0.05) -> dict:
    """The ``monitor.json`` document of one monitoring run: drift of the latest scoring
    (``features``: its feature rows; ``listed``: its list) against the model's training
    ``reference`` (no drift section without one), the label-free estimate, the realised
    history, the alerts."""
    risk = listed["risk"].to_numpy(dtype=float)
    if reference is not None:
        by_feature, score = drift(reference, features, risk, psi_warn=psi_warn, psi_alert=psi_alert)
    else:
        by_feature, score = {}, {"psi": None, "flag": False, "warn": False}
    expected = estimate_performance(risk, listed["tier"].to_numpy(dtype=object) == "high")
    lines = alerts(by_feature, score, expected, realised, champion_roc_auc=champion_roc_auc, max_auc_drop=max_auc_drop)
    if reference is None:
        lines.append(f"model version {model_version} has no stored training reference (trained before monitoring "
                     "existed): drift is not measured; retrain to store one")
    return {"as_of": str(pd.Timestamp(as_of).date()), "model_version": None if model_version is None else str(model_version),
            "drift": by_feature, "score_drift": score, "expected": expected, "realised": realised, "alerts": lines,
            "champion_test_roc_auc": champion_roc_auc, "thresholds": {"psi_warn": psi_warn, "psi_alert": psi_alert,
                                                                     "max_auc_drop": max_auc_drop}}


def select_scorings(found: list[tuple[pd.Timestamp, Path]], as_of: pd.Timestamp | None = None
                    ) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """The kept lists up to ``as_of`` (default: all), read, oldest first; the last is the one
    whose drift is measured. ValueError when there is none."""
    chosen = [(d, p) for d, p in found if as_of is None or d <= pd.Timestamp(as_of)]
    if not chosen:
        when = f" on or before {pd.Timestamp(as_of).date()}" if as_of is not None else ""
        raise ValueError(f"no at-risk list{when} in the lists folder: score first with `churn score --out DIR`, "
                         "which keeps every scoring in DIR/history/<as_of>/")
    return [(d, read_list(p)) for d, p in chosen]


def write_monitor(report: dict, lists_dir: Path) -> dict[str, Path]:
    """``monitor.json`` and ``monitor.html`` at ``lists_dir`` (the latest) and in
    ``lists_dir/history/<as_of>/`` (kept per date)."""
    from models.monitor_page import write_monitor_html
    from features.io import write_atomic

    text = to_json(report)
    out = {}
    for folder in (Path(lists_dir), Path(lists_dir) / "history" / report["as_of"]):
        folder.mkdir(parents=True, exist_ok=True)
        out[f"json:{folder}"] = write_atomic(folder / "monitor.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
        out[f"html:{folder}"] = write_monitor_html(report, folder / "monitor.html")
    return {"json": Path(lists_dir) / "monitor.json", "html": Path(lists_dir) / "monitor.html"}
