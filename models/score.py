"""The ranked at-risk list: risk, rank and the top reasons for every client as of a date."""
from __future__ import annotations

import pandas as pd

LIST_COLUMNS = ["customer_id", "risk", "rank", "lifecycle_stage"]


def rank_at_risk(scored: pd.DataFrame, features: pd.DataFrame, *, as_of: pd.Timestamp,
                 model_version: str | None) -> pd.DataFrame:
    """Join the model's output (customer_id, risk, reasons...) to the customers' facts and rank.

    ``scored``: output of the served model; ``features``: the feature table it was computed
    from (one row per customer at ``as_of``). Rank 1 = highest risk; ties broken by customer_id.
    """
    facts = features[["customer_id"]].assign(
        lifecycle_stage=lambda d: features["orders_total"].map(lambda n: "regular" if n >= 2 else "buyer"),
        days_since_last_order=features["days_since_last_order"],
    )
    out = scored.drop(columns=[c for c in ("cutoff",) if c in scored.columns]).merge(facts, on="customer_id", how="left")
    out = out.sort_values(["risk", "customer_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.insert(2, "rank", range(1, len(out) + 1))
    k = sum(1 for c in out.columns if c.startswith("driver_"))
    reason_cols = [col for i in range(1, k + 1)
                   for col in (f"reason_group_{i}", f"driver_{i}", f"reason_group_{i}_contribution")]
    out = out[LIST_COLUMNS + ["days_since_last_order"] + reason_cols]
    return out.assign(model_version=model_version, as_of=pd.Timestamp(as_of))
