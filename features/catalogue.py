"""The feature catalogue: every feature's group, unit, definition and the domain idea behind it.

This is the one place a feature is documented (the README's table is generated from it by
``churn catalogue``). ``features/build.py`` computes them; ``models/explain.py`` sums SHAP
contributions per ``group`` so that a reason is one idea, not five correlated columns.
The groups purchases, attention, nps, complaints and attributes match the simulator's
``contrib_<group>`` driver columns; bank and lifecycle summarise several of them.
All windows end at the cutoff (exclusive): ``orders_90d`` counts orders in [c - 90 days, c).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.groups import GROUP_NAMES

GROUPS = GROUP_NAMES  # declared with their tables, reasons and actions in features.groups
# groups that move every client's risk alike at a cutoff: they shape the risk, they are never a reason
NOT_A_REASON = ("calendar",)


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    unit: str
    definition: str
    idea: str
    categorical: bool = False


def _f(name, group, unit, definition, idea, categorical=False) -> Feature:
    return Feature(name, group, unit, definition, idea, categorical)


CATALOGUE: tuple[Feature, ...] = (
    # purchases: recency, frequency, monetary value, cadence
    _f("days_since_last_order", "purchases", "days", "days from the last order to the cutoff", "recency: a long gap since the last purchase is the plainest sign of a lapsing client"),
    _f("tenure_days", "purchases", "days", "days from the first order to the cutoff", "the first months decide whether a buyer becomes a client"),
    _f("orders_30d", "purchases", "orders", "orders in the 30 days before the cutoff", "frequency"),
    _f("amount_30d", "purchases", "currency", "order value in the 30 days before the cutoff", "monetary value"),
    _f("orders_90d", "purchases", "orders", "orders in the 90 days before the cutoff", "frequency"),
    _f("amount_90d", "purchases", "currency", "order value in the 90 days before the cutoff", "monetary value"),
    _f("orders_365d", "purchases", "orders", "orders in the 365 days before the cutoff", "frequency"),
    _f("amount_365d", "purchases", "currency", "order value in the 365 days before the cutoff (trailing-12-month revenue)", "monetary value, the base of value at risk"),
    _f("orders_total", "purchases", "orders", "all orders before the cutoff (cancelled orders excluded)", "buyer (1 order) vs regular client (2 or more)"),
    _f("amount_total", "purchases", "currency", "value of all orders before the cutoff", "lifetime value so far"),
    _f("returns_total", "purchases", "orders", "orders with status 'returned' before the cutoff", "an unmet expectation"),
    _f("returns_365d", "purchases", "orders", "returned orders in the 365 days before the cutoff", "an unmet expectation, recently"),
    _f("last_gap_days", "purchases", "days", "days between the last two orders (missing with one order)", "the latest buying rhythm"),
    _f("max_gap_days", "purchases", "days", "longest gap between consecutive orders before the cutoff (missing with one order)", "how long this client has gone quiet before and come back"),
    _f("mean_gap_days", "purchases", "days", "mean days between consecutive orders (missing with one order)", "the customer's own buying cadence"),
    _f("overdue_ratio", "purchases", "ratio", "days_since_last_order / mean_gap_days (missing with one order, or all orders on one day)", "how overdue the next order is by the customer's own rhythm"),
    _f("btyd_p_no_order", "purchases", "probability", "BG/NBD probability of no order within the label horizon after the cutoff, parameters fitted on history before the cutoff", "buy-till-you-die: the strongest classical signal of a silent non-contractual churn"),
    _f("btyd_expected_orders", "purchases", "orders", "BG/NBD expected orders within the label horizon", "buy-till-you-die expected activity"),
    _f("btyd_p_alive", "purchases", "probability", "BG/NBD probability that the customer is still active (1 for one-time buyers by construction)", "buy-till-you-die; not a churn score on its own"),
    # attention after purchase (Coleman's first 100 days) and engagement
    _f("days_to_first_outbound", "attention", "days", "days from the first order to the company's first outbound touch; while none has happened, days waited so far (see first_outbound_observed)", "Coleman: the dead zone after the sale"),
    _f("first_outbound_observed", "attention", "flag", "1 if the first outbound touch after the first order happened before the cutoff", "censoring flag of days_to_first_outbound"),
    _f("outbound_first_100d", "attention", "touches", "outbound touches in the 100 days after the first order (missing while those 100 days are not over)", "Coleman: the first 100 days decide a lifelong client"),
    _f("first_100d_observed", "attention", "flag", "1 if the customer's first 100 days ended before the cutoff", "censoring flag of outbound_first_100d"),
    _f("longest_silence_days", "attention", "days", "longest stretch with no interaction either way and no order, from the last order to the cutoff", "silence when help was needed is a withdrawal"),
    _f("days_since_last_outbound", "attention", "days", "days from the company's last outbound touch to the cutoff (missing if never)", "silence from our side"),
    _f("days_since_last_inbound", "attention", "days", "days from the customer's last inbound activity to the cutoff (missing if never)", "the customer going quiet"),
    _f("days_since_last_contact", "attention", "days", "days from the last interaction either way to the cutoff (missing if never)", "the relationship going quiet"),
    _f("outbound_30d", "attention", "touches", "outbound touches in the 30 days before the cutoff", "deposits in the emotional bank account"),
    _f("outbound_90d", "attention", "touches", "outbound touches in the 90 days before the cutoff", "deposits in the emotional bank account"),
    _f("inbound_30d", "attention", "events", "inbound activities in the 30 days before the cutoff", "engagement"),
    _f("inbound_90d", "attention", "events", "inbound activities in the 90 days before the cutoff", "engagement"),
    _f("outbound_total", "attention", "touches", "outbound touches before the cutoff", "attention received"),
    _f("inbound_total", "attention", "events", "inbound activities before the cutoff", "engagement"),
    # NPS
    _f("nps_last_score", "nps", "score 0-10", "the last NPS answer before the cutoff (missing if never answered)", "Reichheld: promoters stay, detractors leave"),
    _f("nps_last_category", "nps", "category", "promoter (9-10), passive (7-8), detractor (0-6) or none", "NPS category", True),
    _f("nps_change", "nps", "points", "last score minus the previous answer's score (missing with fewer than two answers)", "a falling score is a relationship cooling down"),
    _f("days_since_last_nps", "nps", "days", "days from the last NPS answer to the cutoff (missing if never)", "how current the NPS signal is"),
    _f("nps_answers", "nps", "answers", "NPS answers before the cutoff", "a customer who answers is still listening"),
    _f("nps_never_answered", "nps", "flag", "1 if the customer never answered an NPS survey before the cutoff", "no voice, no signal"),
    # complaints
    _f("complaints_30d", "complaints", "complaints", "complaints opened in the 30 days before the cutoff", "withdrawals from the emotional bank account"),
    _f("complaints_90d", "complaints", "complaints", "complaints opened in the 90 days before the cutoff", "withdrawals from the emotional bank account"),
    _f("complaints_365d", "complaints", "complaints", "complaints opened in the 365 days before the cutoff", "withdrawals from the emotional bank account"),
    _f("complaints_total", "complaints", "complaints", "complaints opened before the cutoff", "conflict history"),
    _f("complaints_open", "complaints", "complaints", "complaints opened before the cutoff and not resolved before it", "an unresolved conflict loses the client"),
    _f("oldest_open_complaint_days", "complaints", "days", "age at the cutoff of the oldest open complaint (missing if none open)", "a conflict left to age"),
    _f("open_complaint_days", "complaints", "days", "sum over open complaints of the days each has been open", "the cost of leaving conflicts open"),
    _f("mean_days_to_resolve", "complaints", "days", "mean days from opening to resolution of complaints resolved before the cutoff", "how fast we fix things"),
    _f("last_complaint_severity", "complaints", "category", "severity (low, medium, high) of the last complaint before the cutoff", "how bad the last failure was", True),
    _f("public_complaints_365d", "complaints", "complaints", "public complaints (reviews) opened in the 365 days before the cutoff", "a public complaint is seen by many"),
    _f("days_since_last_complaint", "complaints", "days", "days from the last complaint to the cutoff (missing if none)", "how fresh the conflict is"),
    _f("recovered_after_complaint", "complaints", "flag", "1 if the customer ordered again after a complaint was resolved", "conflict handled well turns a regular into an adherent"),
    # emotional bank account
    _f("bank_balance", "bank", "points", "decayed deposits (orders, outbound touches, resolved complaints, promoter answers) minus withdrawals (complaints, detractor answers), minus a charge per day a complaint stays open; weights and half-life in configs/default.yaml", "Covey's emotional bank account"),
    # lifecycle
    _f("lifecycle_stage", "lifecycle", "category", "buyer (one order), regular (two or more), adherent (a regular whose last NPS is a promoter)", "Efremova's client lifecycle", True),
    _f("coleman_phase", "lifecycle", "category", "admit (< 2 days since the first order), affirm (< 14), activate (< 30), acclimate (< 100), accomplish (one order after 100 days), adopt (a regular), advocate (a promoting regular)", "Coleman's eight phases", True),
    # calendar: the time of year of the cutoff, the same for every client at it
    _f("season_sin", "calendar", "-1 to 1", "sine of the cutoff's day of the year (2 pi x day / 365.25)", "seasonality: the share of clients who leave within the horizon moves with the time of year; never a reason"),
    _f("season_cos", "calendar", "-1 to 1", "cosine of the cutoff's day of the year", "seasonality, with season_sin a point on the yearly cycle"),
    # static attributes
    _f("segment", "attributes", "category", "customer segment", "static attribute", True),
    _f("acquisition_channel", "attributes", "category", "how the customer was acquired", "static attribute", True),
    _f("region", "attributes", "category", "customer region", "static attribute", True),
)

BY_NAME = {f.name: f for f in CATALOGUE}

DYNAMIC = (
    ("channel_<name>_90d", "attention", "events", "interactions on channel <name> in the 90 days before the cutoff; one column per channel holding at least features.channel_min_share of the interactions", "activity by channel"),
    ("days_since_<name>_90d", "attention", "days", "days since the last interaction on channel <name> (missing if none in the 90 days before the cutoff)", "activity by channel"),
    ("attr_<column>", "attributes", "category or number", "any other column of the customers table (text with at most 50 values, numbers, flags; the first 50 such columns of a wider table)", "static attribute"),
)


def feature_group(name: str) -> str:
    """The driver group of a feature column, including the per-channel and attribute columns."""
    feature = BY_NAME.get(name)
    if feature is not None:
        return feature.group
    if name.startswith(("channel_", "days_since_")):
        return "attention"
    if name.startswith("btyd_"):
        return "purchases"
    return "attributes"


def catalogue_frame() -> pd.DataFrame:
    """The catalogue as a table (logged with every model, printed by ``churn catalogue``)."""
    rows = [f.__dict__ for f in CATALOGUE]
    rows += [dict(name=n, group=g, unit=u, definition=d, idea=i, categorical=False) for n, g, u, d, i in DYNAMIC]
    return pd.DataFrame(rows)


def catalogue_markdown() -> str:
    """The catalogue as a markdown table (the README's copy is checked against it)."""
    lines = ["| feature | group | unit | definition | domain idea |", "|---|---|---|---|---|"]
    for row in catalogue_frame().itertuples():
        lines.append(f"| `{row.name}` | {row.group} | {row.unit} | {row.definition} | {row.idea} |")
    return "\n".join(lines)
