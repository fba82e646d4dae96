"""The feature catalogue: every feature's group, unit, definition and the domain idea behind it.

This is the one place a feature is documented. ``features/build.py`` computes them,
``models/explain.py`` sums SHAP contributions per ``group`` so that a reason is one idea.
Groups match the simulator's ``contrib_<group>`` driver columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

GROUPS = ("purchases", "attention", "nps", "complaints", "attributes")


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    unit: str
    definition: str
    idea: str
    categorical: bool = False


CATALOGUE: tuple[Feature, ...] = (
    # purchases: recency, frequency, monetary value
    Feature("days_since_last_order", "purchases", "days", "days from the last order to the cutoff", "a long gap since the last purchase is the plainest sign of a lapsing client"),
    Feature("tenure_days", "purchases", "days", "days from the first order to the cutoff", "buyer vs regular: the first months are the riskiest"),
    Feature("orders_30d", "purchases", "orders", "orders in the 30 days before the cutoff", "frequency"),
    Feature("orders_90d", "purchases", "orders", "orders in the 90 days before the cutoff", "frequency"),
    Feature("orders_365d", "purchases", "orders", "orders in the 365 days before the cutoff", "frequency"),
    Feature("orders_total", "purchases", "orders", "all orders before the cutoff", "buyer (1 order) vs regular client (2 or more)"),
    Feature("amount_90d", "purchases", "currency", "order value in the 90 days before the cutoff", "monetary value"),
    Feature("amount_365d", "purchases", "currency", "order value in the 365 days before the cutoff", "monetary value, the base of value at risk"),
    Feature("mean_gap_days", "purchases", "days", "mean days between consecutive orders before the cutoff (missing with one order)", "the customer's own buying cadence"),
    Feature("overdue_ratio", "purchases", "ratio", "days_since_last_order / mean_gap_days (missing with one order)", "how overdue the next order is by the customer's own rhythm"),
    # attention after purchase
    Feature("days_to_first_outbound", "attention", "days", "days from the first order to the company's first outbound touch after it (missing if none yet)", "Coleman: the dead zone after the sale"),
    Feature("days_since_last_outbound", "attention", "days", "days from the company's last outbound touch to the cutoff (missing if never)", "silence from our side"),
    Feature("days_since_last_inbound", "attention", "days", "days from the customer's last inbound activity to the cutoff (missing if never)", "the customer going quiet"),
    Feature("outbound_90d", "attention", "touches", "outbound touches in the 90 days before the cutoff", "deposits in the emotional bank account"),
    Feature("inbound_90d", "attention", "events", "inbound activities in the 90 days before the cutoff", "engagement"),
    # NPS
    Feature("nps_last_score", "nps", "score 0-10", "the last NPS answer before the cutoff (missing if never answered)", "Reichheld: promoters stay, detractors leave"),
    Feature("nps_last_category", "nps", "category", "promoter (9-10), passive (7-8), detractor (0-6) or none", "NPS category", categorical=True),
    Feature("nps_answers", "nps", "answers", "NPS answers before the cutoff", "a customer who answers is still listening"),
    Feature("days_since_last_nps", "nps", "days", "days from the last NPS answer to the cutoff (missing if never)", "how current the NPS signal is"),
    # complaints
    Feature("complaints_open", "complaints", "complaints", "complaints opened before the cutoff and not resolved before it", "an unresolved conflict loses the client"),
    Feature("oldest_open_complaint_days", "complaints", "days", "age at the cutoff of the oldest open complaint (missing if none open)", "a conflict left to age"),
    Feature("complaints_365d", "complaints", "complaints", "complaints opened in the 365 days before the cutoff", "withdrawals from the emotional bank account"),
    # static attributes
    Feature("segment", "attributes", "category", "customer segment", "static attribute", categorical=True),
    Feature("acquisition_channel", "attributes", "category", "how the customer was acquired", "static attribute", categorical=True),
    Feature("region", "attributes", "category", "customer region", "static attribute", categorical=True),
)

BY_NAME = {f.name: f for f in CATALOGUE}


def feature_group(name: str) -> str:
    """The driver group of a feature column (unknown columns are static attributes)."""
    feature = BY_NAME.get(name)
    return feature.group if feature else "attributes"


def catalogue_frame() -> pd.DataFrame:
    """The catalogue as a table (logged with every model)."""
    return pd.DataFrame([f.__dict__ for f in CATALOGUE])
