"""Holdout metrics on the test cutoff (rows never seen in training or early stopping)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def classification_metrics(y_true, score, *, prefix: str = "") -> dict[str, float]:
    """ROC-AUC, PR-AUC, log loss, Brier score, base rate and row count of one scored set."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    out = {"rows": float(len(y)), "base_rate": float(y.mean()) if len(y) else float("nan")}
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(roc_auc_score(y, s))
        out["pr_auc"] = float(average_precision_score(y, s))
        if s.min() >= 0 and s.max() <= 1:
            out["log_loss"] = float(log_loss(y, np.clip(s, 1e-6, 1 - 1e-6)))
            out["brier"] = float(brier_score_loss(y, s))
    return {f"{prefix}{k}": v for k, v in out.items()}


def recency_rule(frame: pd.DataFrame) -> np.ndarray:
    """Baseline score: days since the last order (longer = riskier)."""
    return frame["days_since_last_order"].to_numpy(dtype=float)
