"""The retention manager's at-risk list: risk, rank, tier, value at risk, reasons in plain
words and the action that fits, for every client as of a date."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.reasons import reason_sentence, recommended_action

LIST_COLUMNS = [
    "customer_id", "risk", "rank", "tier", "lifecycle_stage", "value_at_risk",
    "reason_1", "reason_2", "reason_3", "reason_group_1", "reason_group_2", "reason_group_3", "action",
    "last_order_at", "last_contact_at", "last_nps", "open_complaints", "model_version", "as_of",
]


def assign_tiers(risk: pd.Series, rank: pd.Series, *, mode: str = "thresholds", high: float = 0.5,
                 medium: float = 0.2, capacity: int = 500) -> pd.Series:
    """high / medium / low by calibrated risk thresholds, or by outreach capacity (the first
    ``capacity`` in rank order are high, the next ``capacity`` medium)."""
    if mode == "capacity":
        r = rank.to_numpy()
        return pd.Series(np.select([r <= capacity, r <= 2 * capacity], ["high", "medium"], "low"), index=risk.index)
    p = risk.to_numpy()
    return pd.Series(np.select([p >= high, p >= medium], ["high", "medium"], "low"), index=risk.index)


def rows_to_explain(risk: pd.Series, revenue: pd.Series, *, rank_by: str = "risk", actionable_share: float = 0.2,
                    explain_all: bool = False) -> np.ndarray:
    """Which rows get reasons: the actionable top ``actionable_share`` of the list in
    ``rank_by`` order (or all rows). TreeSHAP is the cost of scoring, so only they pay it."""
    if explain_all:
        return np.ones(len(risk), bool)
    key = risk.to_numpy(dtype=float) * (revenue.fillna(0.0).to_numpy(dtype=float) if rank_by == "value_at_risk" else 1.0)
    n = int(np.ceil(actionable_share * len(key)))
    wanted = np.zeros(len(key), bool)
    wanted[np.argsort(-key, kind="stable")[:n]] = True
    return wanted


def build_at_risk(scored: pd.DataFrame, features: pd.DataFrame, *, as_of: pd.Timestamp, model_version: str | None,
                  rank_by: str = "risk", tiers: dict | None = None, actionable_share: float = 0.2,
                  explain_all: bool = False, actions: dict[str, str] | None = None, top_k: int = 3) -> pd.DataFrame:
    """Join the served model's output (customer_id, risk, reason_group_i ...) to the customers'
    facts and rank them.

    ``features``: the feature table the scores came from (one row per customer at ``as_of``).
    ``rank_by``: 'risk' or 'value_at_risk' (risk x trailing-12-month revenue). Reasons in words
    are written for the actionable top ``actionable_share`` of the list, or for everyone with
    ``explain_all``; the reason groups are always there.
    """
    if rank_by not in ("risk", "value_at_risk"):
        raise ValueError(f"rank_by must be 'risk' or 'value_at_risk', not {rank_by!r}")
    as_of = pd.Timestamp(as_of)
    facts = features.drop(columns=[c for c in ("cutoff",) if c in features.columns])
    out = scored.drop(columns=[c for c in ("cutoff",) if c in scored.columns]).merge(facts, on="customer_id", how="left")
    revenue = out["amount_365d"] if "amount_365d" in out else pd.Series(0.0, index=out.index)
    out["value_at_risk"] = out["risk"] * revenue.fillna(0.0)
    out = out.sort_values([rank_by, "customer_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["tier"] = assign_tiers(out["risk"], out["rank"], **(tiers or {}))
    n_explained = len(out) if explain_all else int(np.ceil(actionable_share * len(out)))
    records = out.head(n_explained).to_dict("records")
    for i in range(1, top_k + 1):
        col = f"reason_group_{i}"
        words = [reason_sentence(rec.get(col), rec, as_of) for rec in records]
        out[f"reason_{i}"] = pd.Series(words + [None] * (len(out) - n_explained), dtype="object")
    out["action"] = [recommended_action(rec.get("reason_group_1"), rec, actions) for rec in records] + \
        [None] * (len(out) - n_explained)
    days = lambda col: pd.to_timedelta(out[col], unit="D") if col in out else pd.NaT  # noqa: E731
    out["last_order_at"] = (as_of - days("days_since_last_order")).dt.floor("s")
    out["last_contact_at"] = (as_of - days("days_since_last_outbound")).dt.floor("s") if "days_since_last_outbound" in out else pd.NaT
    out["last_nps"] = out["nps_last_score"] if "nps_last_score" in out else np.nan
    out["open_complaints"] = out["complaints_open"] if "complaints_open" in out else np.nan
    out["model_version"] = model_version
    out["as_of"] = as_of
    for i in range(1, 4):  # the list always has three reason slots
        for col in (f"reason_{i}", f"reason_group_{i}"):
            if col not in out:
                out[col] = None
    out["lifecycle_stage"] = out["lifecycle_stage"].astype("object") if "lifecycle_stage" in out else None
    return out[LIST_COLUMNS]
