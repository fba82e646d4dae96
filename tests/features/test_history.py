"""The engine's array primitives against plain sorted computations, and how it keys customers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.history import NEVER, gaps, segment_max


def _gaps_by_sorting(key, t, since):
    """The longest gap between consecutive points and the latest point, by sorting each customer."""
    longest, latest = np.zeros(len(since), dtype=np.int64), since.copy()
    for k in range(len(since)):
        points = np.sort(np.r_[since[k], t[key == k]])
        longest[k] = np.diff(points).max() if len(points) > 1 else 0
        latest[k] = points[-1]
    return longest, latest


customers_and_events = st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 10 ** 15), min_size=n, max_size=n),  # since, in microseconds: up to 30 years
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 10 ** 15), st.booleans()), max_size=40)))


@settings(max_examples=300, deadline=None)
@given(customers_and_events)
def test_gaps_without_sorting_equal_gaps_after_sorting(data):
    """The bucket argument is exact: ties, one event, events on ``since``, spans of decades."""
    since, events = data
    since = np.array(since, dtype=np.int64)
    key = np.array([k for k, _d, _tie in events], dtype=np.int64)
    # an event at `since` itself, or a later one (offsets drawn on a log-like scale)
    t = np.array([since[k] + (0 if tie else d // (10 ** (d % 13))) for k, d, tie in events], dtype=np.int64)
    got = gaps(key, t, since.copy())
    expected = _gaps_by_sorting(key, t, since)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_gaps_of_a_customer_without_events_is_zero_and_latest_is_since():
    longest, latest = gaps(np.array([1], dtype=np.int64), np.array([50], dtype=np.int64), np.array([7, 10], dtype=np.int64))
    assert longest.tolist() == [0, 40] and latest.tolist() == [7, 50]
    longest, latest = gaps(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.array([NEVER], dtype=np.int64))
    assert longest.tolist() == [0] and latest.tolist() == [NEVER]


def test_segment_max_ignores_missing_values_and_empty_slices():
    values = np.array([1.0, np.nan, 5.0, 2.0, np.nan, np.nan])  # the last NaN is the spare element
    got = segment_max(values, np.array([0, 2, 4, 5]), np.array([2, 4, 5, 5]))
    assert got[0] == 1.0 and got[1] == 5.0 and np.isnan(got[2]) and np.isnan(got[3])


def _ts(*values):
    return pd.to_datetime(list(values)).astype("datetime64[us]")


def test_an_order_from_a_customer_missing_in_customers_still_counts():
    """Unvalidated frames: a customer known only from orders is keyed too (attributes missing)."""
    tables = {
        "orders": pd.DataFrame({"order_id": ["1", "2", "3"], "customer_id": ["a", "z", "z"],
                                "ordered_at": _ts("2024-01-05", "2024-01-10", "2024-02-01"), "amount": [1.0, 2.0, 3.0]}),
        "customers": pd.DataFrame({"customer_id": ["a"], "created_at": _ts("2024-01-01"), "segment": ["smb"]}),
        "interactions": pd.DataFrame({"customer_id": ["z"], "occurred_at": _ts("2024-02-10"), "channel": ["call"],
                                      "direction": ["outbound"]}),
    }
    f = build_features(tables, [pd.Timestamp("2024-03-01")]).set_index("customer_id")
    assert list(f.index) == ["a", "z"]
    assert f.loc["z", "orders_total"] == 2 and f.loc["z", "outbound_total"] == 1 and f.loc["z", "amount_total"] == 5.0
    assert f.loc["a", "segment"] == "smb" and pd.isna(f.loc["z", "segment"])


def test_a_given_population_with_an_unknown_customer_is_refused():
    orders = pd.DataFrame({"order_id": ["1"], "customer_id": ["a"], "ordered_at": _ts("2024-01-05"), "amount": [1.0]})
    population = pd.DataFrame({"customer_id": ["a", "nobody"], "cutoff": _ts("2024-02-01", "2024-02-01")})
    with pytest.raises(ValueError, match="1 customer_ids that are in neither customers nor orders"):
        build_features({"orders": orders}, [], population=population)


def test_gaps_over_centuries_take_the_sorting_path_and_agree():
    rng = np.random.default_rng(5)
    since = np.array([0, 10 ** 17], dtype=np.int64)  # about 3,000 years in microseconds
    key = rng.integers(0, 2, 200)
    t = since[key] + rng.integers(0, 10 ** 17, 200)
    got, expected = gaps(key, t, since.copy()), _gaps_by_sorting(key, t, since)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_customer_attributes_numbers_flags_and_few_valued_text():
    """Numbers and flags become numbers (missing = NaN); text with at most 50 values becomes a
    category; text with more values (free notes) and timestamps are left out."""
    n = 60
    ids = [f"c{i:02d}" for i in range(n)]
    customers = pd.DataFrame({
        "customer_id": ids, "created_at": _ts(*["2024-01-01"] * n), "segment": ["smb", "enterprise", None] * 20,
        "employees": [float(i) if i % 7 else np.nan for i in range(n)], "vip": [i % 2 == 0 for i in range(n)],
        "notes": [f"note {i}" for i in range(n)], "renewal_at": _ts(*["2025-01-01"] * n)})
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(n)], "customer_id": ids,
                           "ordered_at": _ts(*["2024-01-05"] * n), "amount": [1.0] * n})
    f = build_features({"orders": orders, "customers": customers}, [pd.Timestamp("2024-02-01")]).set_index("customer_id")
    assert "attr_notes" not in f and "attr_renewal_at" not in f
    assert list(f["segment"].cat.categories) == ["enterprise", "smb"]
    assert f.loc["c00", "segment"] == "smb" and f.loc["c01", "segment"] == "enterprise" and pd.isna(f.loc["c02", "segment"])
    assert f.loc["c03", "attr_employees"] == 3.0 and np.isnan(f.loc["c07", "attr_employees"])
    assert f.loc["c00", "attr_vip"] == 1.0 and f.loc["c01", "attr_vip"] == 0.0


def test_bgnbd_gradient_matches_finite_differences():
    """The BG/NBD fit uses the analytic gradient of its log-likelihood: checked numerically."""
    from scipy.optimize import approx_fprime

    from features import btyd

    rng = np.random.default_rng(2)
    n = 2000
    T = rng.uniform(1, 100, n)
    x = np.floor(rng.exponential(3, n))
    t_x = np.where(x > 0, T * rng.uniform(0, 1, n), 0.0)
    weight = rng.integers(1, 4, n).astype(float)
    for point in (np.log([0.3, 5.0, 0.8, 2.5]), np.log([2.0, 0.5, 3.0, 10.0]), np.array([-2.0, 1.0, 4.0, 5.0])):
        value, gradient = btyd._log_likelihood_and_gradient(point, x, t_x, T, weight)
        assert value == pytest.approx(btyd._log_likelihood(point, x, t_x, T, weight), rel=1e-12)
        numeric = approx_fprime(point, lambda p: btyd._log_likelihood(p, x, t_x, T, weight), 1e-7)
        assert gradient == pytest.approx(numeric, rel=1e-4, abs=1e-3)


def test_empty_event_tables_give_features_without_errors():
    """Tables present but empty (a new business, or an extract with no complaints yet)."""
    orders = pd.DataFrame({"order_id": ["1", "2"], "customer_id": ["a", "a"], "ordered_at": _ts("2024-01-05", "2024-02-05"),
                           "amount": [1.0, 2.0]})
    empty = {
        "interactions": pd.DataFrame({"customer_id": pd.Series(dtype="str"), "occurred_at": _ts(),
                                      "channel": pd.Series(dtype="str"), "direction": pd.Series(dtype="str")}),
        "nps": pd.DataFrame({"customer_id": pd.Series(dtype="str"), "answered_at": _ts(), "score": pd.Series(dtype="int64")}),
        "complaints": pd.DataFrame({"complaint_id": pd.Series(dtype="str"), "customer_id": pd.Series(dtype="str"),
                                    "opened_at": _ts(), "resolved_at": _ts()}),
    }
    f = build_features({"orders": orders, **empty}, [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-04-01")])
    assert len(f) == 2 and (f["orders_total"] == 2).all()
    assert (f["outbound_total"] == 0).all() and f["days_since_last_contact"].isna().all()
    assert (f["longest_silence_days"] == [25.0, 56.0]).all()  # from the last order (02-05) to each cutoff
    assert (f["nps_never_answered"] == 1).all() and (f["complaints_total"] == 0).all()
