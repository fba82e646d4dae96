"""Baseline scores: the simple rules every model must beat (``models.candidates`` turns them
into candidates for champion, with the logistic regression).

- recency rule: days since the last order (longer = riskier);
- buy-till-you-die: the Pareto/NBD and the BG/NBD probability of no order within the
  horizon, fitted on history before each cutoff (BG/NBD is also the ``btyd_p_no_order``
  feature). Not 1 - P(alive), which calls every one-time buyer alive.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

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
