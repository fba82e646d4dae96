"""Per-customer explanations: log-odds contributions gathered into driver groups.

A reason is one idea (purchases, attention after purchase, NPS, complaints, attributes),
not five correlated columns: the contributions of the features in one group that raise the
risk are summed (``models.serving.group_pushes``), so that features of the same group that
lower it (frequent orders, the customer's own visits) do not hide them. For
LightGBM the contributions are TreeSHAP values; for the linear and single-column candidates
they are exact (``models.serving``). The computation itself lives in ``models.serving`` so
the registered model explains exactly as the at-risk list does.
"""
from __future__ import annotations

import pandas as pd

from features.catalogue import NOT_A_REASON, feature_group
from models.serving import explain_contributions


def explain(model, features: pd.DataFrame, *, top_k: int = 3) -> pd.DataFrame:
    """reason_group_i, reason_group_i_contribution and driver_i for each row of ``features``,
    indexed like it (see ``models.serving.explain_contributions``). ``model``: any fitted
    candidate with ``predict_contributions`` (``models.candidates``, ``models.train.ChurnClassifier``)."""
    contrib = model.predict_contributions(features)
    groups = {c: feature_group(c) for c in contrib.columns if c != "bias" and feature_group(c) not in NOT_A_REASON}
    return explain_contributions(contrib[[*groups, "bias"]], groups, top_k)
