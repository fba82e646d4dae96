"""Backfill: score past dates into an output folder's history, oldest first, so the
history (and with it the monitoring's realised performance) covers them.

The dates run from ``start`` to ``end`` by a fixed step; a date the as-of rules refuse
(before the first order, more than one horizon after the data) is reported with the reason
and skipped; the backfill fails only when every date is refused.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

EVERY = re.compile(r"^\s*(\d+)\s*([dw])\s*$", re.IGNORECASE)


def parse_every(text: str) -> pd.Timedelta:
    """``Nd`` (days) or ``Nw`` (weeks), N >= 1, as a Timedelta; ValueError otherwise."""
    match = EVERY.match(str(text))
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"--every {text!r} is not a step: write a number of days or weeks such as 7d or 2w")
    n = int(match.group(1))
    return pd.Timedelta(days=n * (7 if match.group(2).lower() == "w" else 1))


def backfill_dates(start: pd.Timestamp, end: pd.Timestamp, every: str | pd.Timedelta) -> list[pd.Timestamp]:
    """``start``, ``start + every``, ... up to ``end`` included, oldest first. ValueError when
    ``end`` is before ``start``."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    step = parse_every(every) if isinstance(every, str) else pd.Timedelta(every)
    if end < start:
        raise ValueError(f"--to {end.date()} is before --from {start.date()}: give the earlier date to --from")
    return list(pd.date_range(start, end, freq=step))


@dataclass
class DateOutcome:
    as_of: pd.Timestamp
    scored: bool
    reason: str = ""          # why a date was skipped
    result: Any = None        # what ``score`` returned
    warnings: list[str] | None = None


def run_backfill(dates: list[pd.Timestamp], *, check: Callable[[pd.Timestamp], list[str]],
                 score: Callable[[pd.Timestamp], Any],
                 progress: Callable[[int, int, DateOutcome], None] | None = None) -> list[DateOutcome]:
    """For each date, oldest first: ``check(date)`` (the as-of rules: ValueError refuses the
    date, its message is the reason; a returned list holds warnings), then ``score(date)``.
    ``progress(i, n, outcome)`` is called after each date (i from 1). Returns one outcome per
    date; ValueError naming every reason when no date could be scored."""
    dates = sorted(pd.Timestamp(d) for d in dates)
    outcomes = []
    for i, day in enumerate(dates, start=1):
        try:
            warnings = check(day)
        except ValueError as exc:
            outcome = DateOutcome(day, False, reason=str(exc))
        else:
            outcome = DateOutcome(day, True, result=score(day), warnings=list(warnings or []))
        outcomes.append(outcome)
        if progress is not None:
            progress(i, len(dates), outcome)
    if dates and not any(o.scored for o in outcomes):
        reasons = "; ".join(f"{o.as_of.date()}: {o.reason}" for o in outcomes)
        raise ValueError(f"no date could be scored ({reasons})")
    if not dates:
        raise ValueError("no date to score between --from and --to")
    return outcomes
