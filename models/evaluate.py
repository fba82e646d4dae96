"""Holdout evaluation on the test cutoff (rows never seen in training, early stopping or
calibration): discrimination, calibration, what the retention team gets from its call list,
broken down by lifecycle stage and segment; plus the plots logged with the model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve, precision_recall_curve


def expected_calibration_error(y_true, risk, bins: int = 10) -> float:
    """Mean |observed rate - mean risk| over equal-width risk bins, weighted by bin size."""
    y, p = np.asarray(y_true, float), np.asarray(risk, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(y)) if len(y) else float("nan")


def top_share_metrics(y_true, score, share: float) -> dict[str, float]:
    """Precision and lift in the top ``share`` of customers by score."""
    y, s = np.asarray(y_true, float), np.asarray(score, float)
    k = max(1, int(round(share * len(y))))
    top = np.argsort(-s, kind="stable")[:k]
    precision = float(y[top].mean())
    base = float(y.mean()) if len(y) else float("nan")
    return {"precision": precision, "lift": precision / base if base > 0 else float("nan")}


def classification_metrics(y_true, score, *, prefix: str = "", capacity: int | None = None,
                           probabilities: bool | None = None) -> dict[str, float]:
    """Metrics of one scored set. Probability metrics (log loss, Brier, ECE) only when the score
    is a probability. ``capacity``: how many customers the team can call: recall in that many."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    out = {"rows": float(len(y)), "base_rate": float(y.mean()) if len(y) else float("nan")}
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(roc_auc_score(y, s))
        out["pr_auc"] = float(average_precision_score(y, s))
        is_prob = probabilities if probabilities is not None else bool(s.min() >= 0 and s.max() <= 1)
        if is_prob:
            out["log_loss"] = float(log_loss(y, np.clip(s, 1e-6, 1 - 1e-6)))
            out["brier"] = float(brier_score_loss(y, s))
            out["ece"] = expected_calibration_error(y, s)
        for share in (0.05, 0.10):
            top = top_share_metrics(y, s, share)
            out[f"precision_top{int(share * 100)}"] = top["precision"]
            out[f"lift_top{int(share * 100)}"] = top["lift"]
        if capacity:
            k = min(capacity, len(y))
            top = np.argsort(-s, kind="stable")[:k]
            out["recall_at_capacity"] = float(y[top].sum() / max(y.sum(), 1))
    return {f"{prefix}{k}": v for k, v in out.items()}


def metrics_by(frame: pd.DataFrame, score_col: str, by: str, **kwargs) -> pd.DataFrame:
    """classification_metrics per value of ``by`` (e.g. lifecycle_stage, segment)."""
    rows = []
    for value, part in frame.groupby(by, observed=True, sort=True):
        rows.append({by: value, **classification_metrics(part["label"], part[score_col], **kwargs)})
    return pd.DataFrame(rows)


@dataclass
class HorizonCheck:
    """How the label horizon cuts this base: the share of clients labelled as leavers (over every
    labelled cutoff, and at the test cutoff), the median gap between a client's orders, and the
    warnings when the horizon makes most of the base leavers or almost none."""
    horizon_days: int
    leaver_share: float
    test_leaver_share: float
    median_gap_days: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        gap = f"{self.median_gap_days:.0f} days" if np.isfinite(self.median_gap_days) else "unknown (one order each)"
        share = (f"{self.leaver_share:.1%} of the clients labelled as leavers" if np.isfinite(self.leaver_share)
                 else "no labelled cutoff, so no share of leavers")
        return f"{self.horizon_days}-day horizon: {share}; median gap between a client's orders {gap}"


HIGH_LEAVER_SHARE = 0.60
LOW_LEAVER_SHARE = 0.02


def horizon_check(frame: pd.DataFrame, horizon_days: int, *, test_cutoff: pd.Timestamp | None = None) -> HorizonCheck:
    """The leaver share of a labelled feature table and the median over clients at its latest
    cutoff of their mean gap between orders (``mean_gap_days``; clients with one order have
    none); warnings above ``HIGH_LEAVER_SHARE`` and below ``LOW_LEAVER_SHARE``."""
    labelled = frame["label"].dropna() if "label" in frame.columns else pd.Series(dtype=float)
    share = float(labelled.mean()) if len(labelled) else float("nan")
    test_share = (float(frame.loc[frame["cutoff"] == test_cutoff, "label"].mean())
                  if test_cutoff is not None and "label" in frame.columns else float("nan"))
    gap = float("nan")
    if "mean_gap_days" in frame.columns and len(frame):
        latest = frame.loc[frame["cutoff"] == frame["cutoff"].max(), "mean_gap_days"].dropna()
        gap = float(latest.median()) if len(latest) else float("nan")
    suggestion = (f" The median gap between a client's orders is {gap:.0f} days: a horizon of about two to three "
                  f"times it ({2 * gap:.0f}-{3 * gap:.0f} days) separates leaving from a client's ordinary pause"
                  if np.isfinite(gap) else "")
    warnings = []
    if np.isfinite(share) and share > HIGH_LEAVER_SHARE and np.isfinite(gap) and horizon_days >= 2 * gap:
        # the horizon already spans two or more of the usual gaps: the share comes from the clients
        # who rarely or never buy again, not from a horizon shorter than the rhythm
        warnings.append(f"the {horizon_days}-day horizon makes {share:.0%} of the clients leavers (above "
                        f"{HIGH_LEAVER_SHARE:.0%}), although it is already {horizon_days / gap:.1f} times the median "
                        f"gap between a client's orders ({gap:.0f} days): most of this base buys once or rarely, so "
                        f"the list ranks who is least likely to buy again; a longer horizon (--horizon-days) lowers "
                        f"the share. See 'Choosing the horizon' in README.md.")
    elif np.isfinite(share) and share > HIGH_LEAVER_SHARE:
        warnings.append(f"the {horizon_days}-day horizon makes {share:.0%} of the clients leavers (above "
                        f"{HIGH_LEAVER_SHARE:.0%}): most of the base goes {horizon_days} days without what counts as "
                        f"staying, so the list cannot tell leaving from an ordinary pause; consider a longer horizon "
                        f"(--horizon-days).{suggestion}. See 'Choosing the horizon' in README.md.")
    elif np.isfinite(share) and share < LOW_LEAVER_SHARE:
        warnings.append(f"the {horizon_days}-day horizon makes only {share:.1%} of the clients leavers (below "
                        f"{LOW_LEAVER_SHARE:.0%}): too few to learn from or to fill a call list; consider a longer "
                        f"horizon (--horizon-days).{suggestion}. See 'Choosing the horizon' in README.md.")
    return HorizonCheck(horizon_days, share, test_share, gap, warnings)


def save_explanation_plots(model, rows: pd.DataFrame, out_dir: Path, *, sample: int = 2000, seed: int = 0) -> dict[str, Path]:
    """SHAP plots (``save_shap_plots``) of a fitted candidate on a seeded sample of ``rows`` (at
    most ``sample``). Contribution columns that are not inputs (a Pareto/NBD score) are plotted
    without values. Nothing when ``rows`` is empty."""
    from features.catalogue import feature_group

    if not len(rows):
        return {}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    part = rows.sample(min(len(rows), sample), random_state=seed)
    contrib = model.predict_contributions(part)
    cols = [c for c in contrib.columns if c != "bias"]
    values = part.reindex(columns=cols)
    return save_shap_plots(contrib, values, {c: feature_group(c) for c in cols}, out_dir)


def gains_curve(y_true, score) -> pd.DataFrame:
    """Cumulative share of former clients found when calling customers in score order."""
    y = np.asarray(y_true, float)[np.argsort(-np.asarray(score, float), kind="stable")]
    n = len(y)
    return pd.DataFrame({"share_called": np.arange(1, n + 1) / n, "share_found": np.cumsum(y) / max(y.sum(), 1)})


def save_plots(y_true, risk, out_dir: Path, *, baselines: dict[str, np.ndarray] | None = None,
               champion: str = "champion") -> dict[str, Path]:
    """ROC, precision-recall, calibration and cumulative gains plots as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true, int)
    scores = {f"{champion} (calibrated)": np.asarray(risk, float), **(baselines or {})}
    paths = {}

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test cutoff")
    ax.legend(fontsize=7)
    paths["roc"] = _save(fig, out_dir / "roc.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.axhline(y.mean(), color="k", ls=":", lw=1)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test cutoff")
    ax.legend(fontsize=7)
    paths["precision_recall"] = _save(fig, out_dir / "precision_recall.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    p = np.asarray(risk, float)
    edges = np.quantile(p, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    mean_p = [p[idx == b].mean() for b in range(10) if (idx == b).any()]
    rate = [y[idx == b].mean() for b in range(10) if (idx == b).any()]
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(mean_p, rate, "o-")
    ax.set(xlabel="predicted risk (decile mean)", ylabel="observed share leaving", title="Calibration, test cutoff")
    paths["calibration"] = _save(fig, out_dir / "calibration.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        g = gains_curve(y, s)
        ax.plot(g["share_called"], g["share_found"], label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="share of customers called (by score)", ylabel="share of former clients found", title="Cumulative gains")
    ax.legend(fontsize=7)
    paths["gains"] = _save(fig, out_dir / "gains.png")
    return paths


def save_shap_plots(contrib: pd.DataFrame, features: pd.DataFrame, groups: dict[str, str], out_dir: Path) -> dict[str, Path]:
    """SHAP summary (beeswarm) of the top features and mean |SHAP| per feature group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    out_dir = Path(out_dir)
    cols = [c for c in contrib.columns if c != "bias"]
    values = contrib[cols].to_numpy()
    numeric = features[cols].apply(lambda s: s.cat.codes.astype(float) if isinstance(s.dtype, pd.CategoricalDtype) else s.astype(float))
    explanation = shap.Explanation(values=values, base_values=contrib["bias"].to_numpy(), data=numeric.to_numpy(), feature_names=cols)
    plt.figure()
    shap.plots.beeswarm(explanation, max_display=15, show=False)
    paths = {"shap_summary": _save(plt.gcf(), out_dir / "shap_summary.png")}
    by_group = pd.Series(np.abs(values).mean(axis=0), index=cols).groupby(pd.Series(groups)).sum().sort_values()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    by_group.plot.barh(ax=ax)
    ax.set(xlabel="mean |SHAP| (log-odds), summed within the group", title="Drivers by feature group")
    paths["shap_groups"] = _save(fig, out_dir / "shap_groups.png")
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
