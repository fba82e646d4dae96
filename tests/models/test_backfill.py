"""The backfill's dates and loop, without Prefect."""
from __future__ import annotations

import pandas as pd
import pytest

from models.backfill import backfill_dates, parse_every, run_backfill

T = pd.Timestamp


@pytest.mark.parametrize("text, days", [("7d", 7), ("2w", 14), (" 1D ", 1), ("3W", 21)])
def test_every_reads_days_and_weeks(text, days):
    assert parse_every(text) == pd.Timedelta(days=days)


@pytest.mark.parametrize("text", ["0d", "7", "1m", "P7D", "-7d", "7 days"])
def test_every_refuses_anything_else(text):
    with pytest.raises(ValueError, match="7d or 2w"):
        parse_every(text)


def test_dates_run_oldest_first_and_include_the_end_on_a_step():
    assert backfill_dates(T("2025-06-02"), T("2025-06-30"), "2w") == [T("2025-06-02"), T("2025-06-16"), T("2025-06-30")]
    assert backfill_dates(T("2025-06-02"), T("2025-06-10"), "7d") == [T("2025-06-02"), T("2025-06-09")]
    assert backfill_dates(T("2025-06-02"), T("2025-06-02"), "7d") == [T("2025-06-02")]
    with pytest.raises(ValueError, match="before --from"):
        backfill_dates(T("2025-06-02"), T("2025-05-01"), "7d")


def check(day):
    if day < T("2025-01-01"):
        raise ValueError(f"{day.date()} is before the first order")
    return ["late"] if day > T("2025-12-01") else []


def test_refused_dates_are_skipped_with_their_reason_and_the_rest_scored_in_order():
    seen, scored = [], []
    outcomes = run_backfill([T("2025-03-01"), T("2024-12-01"), T("2025-12-15")], check=check,
                            score=lambda d: scored.append(d) or f"list {d.date()}",
                            progress=lambda i, n, o: seen.append((i, n, o.as_of, o.scored)))
    assert scored == [T("2025-03-01"), T("2025-12-15")]
    assert [(o.as_of, o.scored) for o in outcomes] == [(T("2024-12-01"), False), (T("2025-03-01"), True),
                                                        (T("2025-12-15"), True)]
    assert outcomes[0].reason == "2024-12-01 is before the first order" and outcomes[0].result is None
    assert outcomes[1].result == "list 2025-03-01" and outcomes[2].warnings == ["late"]
    assert seen == [(1, 3, T("2024-12-01"), False), (2, 3, T("2025-03-01"), True), (3, 3, T("2025-12-15"), True)]


def test_a_backfill_where_every_date_is_refused_fails_naming_each_reason():
    with pytest.raises(ValueError, match=r"no date could be scored \(2024-01-01: 2024-01-01 is before.*2024-02-01: "):
        run_backfill([T("2024-01-01"), T("2024-02-01")], check=check, score=lambda d: pytest.fail("scored"))


def test_other_errors_are_not_taken_for_a_refused_date():
    def broken(day):
        raise OSError("disk full")
    with pytest.raises(OSError):
        run_backfill([T("2025-03-01")], check=check, score=broken)
