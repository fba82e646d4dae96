"""Reasons in plain words and the action that fits: every template lives here.

A reason is one driver group that pushes this customer's risk up (``models.serving``);
its sentence uses the customer's own numbers and dates, read from the feature row as of
the scoring date. Groups that lower the risk are never phrased as risks.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

DEFAULT_ACTIONS = {
    "attention": "Activation call: a personal check-in from the account owner",
    "purchases_buyer": "Onboarding call: help them to a second order",
    "purchases_regular": "Loyalty gesture for a lapsing regular",
    "nps": "NPS follow-up conversation: ask what went wrong and agree a fix",
    "complaints": "Service-recovery call with the complaint owner",
    "bank": "Service-recovery call: acknowledge the problems and make a visible repair",
    "lifecycle": "Onboarding call: confirm the choice was right and explain the next steps",
    "attributes": "Win-back offer suited to the segment",
    "none": "No action: keep the regular rhythm of contact",
}


def _num(row, col):
    value = row.get(col) if hasattr(row, "get") else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _date(as_of: pd.Timestamp, days_before: float | None) -> str:
    if days_before is None:
        return "?"
    day = as_of - pd.Timedelta(days=days_before)
    return f"{day.day} {day.strftime('%b %Y')}"


def _plural(n: float, word: str) -> str:
    n = int(round(n))
    return f"{n} {word}" + ("" if n == 1 else "s")


def purchases_reason(row, as_of) -> str:
    days, orders = _num(row, "days_since_last_order"), _num(row, "orders_total") or 0
    gap, ratio = _num(row, "mean_gap_days"), _num(row, "overdue_ratio")
    if orders <= 1:
        return f"Bought once, {int(days or 0)} days ago ({_date(as_of, days)}), no second order yet"
    if ratio is not None and ratio >= 1.2 and gap:
        return (f"No order for {int(days)} days since {_date(as_of, days)}: {ratio:.1f}x their usual "
                f"{int(round(gap))} days between orders")
    recent = _num(row, "orders_90d")
    if recent is not None and (_num(row, "orders_365d") or 0) > 0 and recent == 0:
        return f"No order in the last 90 days (last on {_date(as_of, days)}), after {_plural(orders, 'order')} before"
    return f"Last order {int(days or 0)} days ago ({_date(as_of, days)}); {_plural(orders, 'order')} in all"


def attention_reason(row, as_of) -> str:
    tenure = _num(row, "tenure_days")
    if _num(row, "first_outbound_observed") == 0 and tenure is not None:
        return f"No contact from us for {int(tenure)} days since the first order on {_date(as_of, tenure)}"
    first100 = _num(row, "outbound_first_100d")
    if first100 is not None and first100 <= 1 and _num(row, "first_100d_observed") == 1:
        return f"Only {_plural(first100, 'touch')} from us in their first 100 days"
    silence = _num(row, "longest_silence_days")
    out = _num(row, "days_since_last_outbound")
    if out is not None and out >= 45:
        return f"No contact from us for {int(out)} days (last on {_date(as_of, out)})"
    inbound = _num(row, "days_since_last_inbound")
    if inbound is not None and inbound >= 45:
        return f"No activity from the customer for {int(inbound)} days (last on {_date(as_of, inbound)})"
    if silence is not None:
        return f"A silence of {int(silence)} days with no contact either way since the last order"
    return "Little contact from us since the last order"


def nps_reason(row, as_of) -> str:
    score, change, days = _num(row, "nps_last_score"), _num(row, "nps_change"), _num(row, "days_since_last_nps")
    if score is None:
        return "Never answered an NPS survey: we do not know how they feel"
    kind = "Detractor" if score <= 6 else "Passive" if score <= 8 else "Promoter"
    text = f"{kind}: NPS {int(score)} on {_date(as_of, days)}"
    if change is not None and change < 0:
        text += f", down from {int(score - change)}"
    return text


def complaints_reason(row, as_of) -> str:
    n_open, oldest = _num(row, "complaints_open") or 0, _num(row, "oldest_open_complaint_days")
    if n_open >= 1:
        lead = "1 complaint open" if n_open == 1 else f"{int(n_open)} complaints open"
        return f"{lead}, the oldest for {int(oldest or 0)} days" if n_open > 1 else f"{lead} for {int(oldest or 0)} days"
    public = _num(row, "public_complaints_365d") or 0
    recent = _num(row, "complaints_90d") or 0
    if public:
        return f"{_plural(public, 'public complaint')} (a review) in the last year"
    if recent:
        return f"{_plural(recent, 'complaint')} in the last 90 days"
    last = _num(row, "days_since_last_complaint")
    return f"A complaint on {_date(as_of, last)}" if last is not None else "Complaint history"


def bank_reason(row, as_of) -> str:
    balance = _num(row, "bank_balance")
    if balance is not None and balance < 0:
        return f"Relationship in the red ({balance:+.1f}): recent complaints or low scores outweigh what we gave"
    return f"Few recent deposits in the relationship (balance {balance or 0:+.1f})"


def lifecycle_reason(row, as_of) -> str:
    stage, phase, tenure = row.get("lifecycle_stage"), row.get("coleman_phase"), _num(row, "tenure_days")
    if phase in ("admit", "affirm", "activate", "acclimate") and tenure is not None:
        return f"New {stage or 'client'} on day {int(tenure)} of the first 100 ({phase} phase)"
    return f"A {stage or 'client'} in the {phase or 'current'} phase"


def attributes_reason(row, as_of) -> str:
    parts = [str(row.get(c)) for c in ("segment", "acquisition_channel", "region")
             if isinstance(row.get(c), str) and row.get(c) not in ("none", "")]
    return ("Profile (" + ", ".join(parts) + ") leaves more often") if parts else "Customer profile leaves more often"


TEMPLATES: dict[str, Callable] = {
    "purchases": purchases_reason, "attention": attention_reason, "nps": nps_reason,
    "complaints": complaints_reason, "bank": bank_reason, "lifecycle": lifecycle_reason,
    "attributes": attributes_reason,
}


def reason_sentence(group: str | None, row, as_of: pd.Timestamp) -> str | None:
    """One sentence for a reason group, from the customer's own feature row."""
    if group is None or (isinstance(group, float) and math.isnan(group)):
        return None
    return TEMPLATES.get(group, attributes_reason)(row, as_of)


def recommended_action(group: str | None, row, actions: dict[str, str] | None = None) -> str:
    """The action that fits the leading reason (``actions`` overrides DEFAULT_ACTIONS by key)."""
    table = {**DEFAULT_ACTIONS, **(actions or {})}
    if group is None or (isinstance(group, float) and math.isnan(group)):
        return table["none"]
    if group == "purchases":
        key = "purchases_buyer" if (_num(row, "orders_total") or 0) <= 1 else "purchases_regular"
        return table[key]
    return table.get(group, table["attributes"])
