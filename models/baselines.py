"""Baseline scores: the simple rules every model must beat (``models.candidates`` turns them
into candidates for champion, with the logistic regression).

- recency rule: days since the last order (longer = riskier);
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

