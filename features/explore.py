"""Summaries for exploring an input data set (used by notebooks/01-explore-the-data.ipynb)."""
from __future__ import annotations

import pandas as pd

from features.build import nps_category
from features.labels import TIME_COLUMNS


def table_overview(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows, customers and time span of every table."""
    rows = []
    for name, frame in tables.items():
        col = TIME_COLUMNS.get(name, "created_at" if name == "customers" else None)
        rows.append({"table": name, "rows": len(frame), "customers": frame["customer_id"].nunique(),
                     "from": frame[col].min() if col in frame else None, "to": frame[col].max() if col in frame else None})
    return pd.DataFrame(rows)


def churn_by(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Clients and the share becoming former clients within the horizon, by a column of a
    labelled feature table (e.g. lifecycle_stage, coleman_phase, nps_last_category)."""
    out = frame.groupby(by, observed=True).agg(clients=("label", "size"), churn_rate=("label", "mean"))
    return out.reset_index().sort_values("churn_rate", ascending=False, ignore_index=True)


def nps_summary(nps: pd.DataFrame) -> pd.DataFrame:
    """Answers per category and the Net Promoter Score (% promoters - % detractors)."""
    cat = nps_category(nps["score"])
    counts = cat.value_counts().reindex(["promoter", "passive", "detractor"], fill_value=0)
    share = counts / max(len(nps), 1)
    out = pd.DataFrame({"answers": counts, "share": share})
    out.loc["NPS"] = [float("nan"), 100 * (share["promoter"] - share["detractor"])]
    return out


def complaint_summary(complaints: pd.DataFrame) -> pd.DataFrame:
    """By severity: complaints, share still open, median days to resolve, share public."""
    frame = complaints.assign(
        open=complaints["resolved_at"].isna(),
        days_to_resolve=(complaints["resolved_at"] - complaints["opened_at"]).dt.total_seconds() / 86400)
    by = "severity" if "severity" in frame else frame.assign(severity="all")["severity"]
    agg = {"complaints": ("open", "size"), "share_open": ("open", "mean"), "median_days_to_resolve": ("days_to_resolve", "median")}
    if "public" in frame:
        agg["share_public"] = ("public", "mean")
    return frame.groupby(by).agg(**agg).reset_index()
