"""Leakage as a property: facts at or after the cutoff never change a feature at that cutoff."""
from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features

CUTOFF = pd.Timestamp("2024-06-01")
CUSTOMERS = ["a", "b", "c"]


def ts(values):
    return pd.to_datetime(list(values)).astype("datetime64[us]")


def base_tables():
    return {
        "orders": pd.DataFrame({"order_id": ["o1", "o2", "o3", "o4"], "customer_id": ["a", "a", "b", "c"],
                                "ordered_at": ts(["2024-01-03", "2024-04-20", "2024-05-02", "2023-11-11"]),
                                "amount": [12.0, 30.0, 8.0, 5.0], "status": ["completed"] * 4}),
        "interactions": pd.DataFrame({"customer_id": ["a", "b", "c"], "channel": ["email", "login", "call"],
                                      "occurred_at": ts(["2024-01-10", "2024-05-20", "2024-02-01"]),
                                      "direction": ["outbound", "inbound", "outbound"]}),
        "nps": pd.DataFrame({"customer_id": ["a", "b"], "answered_at": ts(["2024-02-01", "2024-05-25"]),
                             "score": [3, 9]}),
        "complaints": pd.DataFrame({"complaint_id": ["k1"], "customer_id": ["b"],
                                    "opened_at": ts(["2024-05-10"]), "resolved_at": ts(["2024-07-01"])}),
        "customers": pd.DataFrame({"customer_id": CUSTOMERS, "created_at": ts(["2024-01-01", "2024-05-01", "2023-11-01"]),
                                   "segment": ["smb", "smb", "consumer"]}),
    }


later = st.integers(min_value=0, max_value=400).map(lambda d: CUTOFF + pd.Timedelta(days=d))
customer = st.sampled_from(CUSTOMERS)

future_event = st.one_of(
    st.tuples(st.just("orders"), customer, later, st.floats(0, 500)),
    st.tuples(st.just("refunds"), customer, later, st.floats(0, 500)),  # credit notes
    st.tuples(st.just("interactions"), customer, later, st.sampled_from(["inbound", "outbound"])),
    st.tuples(st.just("nps"), customer, later, st.integers(0, 10)),
    st.tuples(st.just("complaints"), customer, later, st.booleans()),
)


def add_event(tables, event, i):
    table, cust, when, value = event
    if table in ("orders", "refunds"):  # a refund is a credit note: an orders row, never a purchase
        new = {"order_id": [f"x{i}"], "customer_id": [cust], "ordered_at": ts([when]), "amount": [value],
               "status": ["completed" if table == "orders" else "refund"]}
        return {**tables, "orders": pd.concat([tables["orders"], pd.DataFrame(new)], ignore_index=True)}
    frame = tables[table]
    if table == "interactions":
        new = {"customer_id": [cust], "channel": ["email"], "occurred_at": ts([when]), "direction": [value]}
    elif table == "nps":
        new = {"customer_id": [cust], "answered_at": ts([when]), "score": [value]}
    else:
        resolved = ts([when + pd.Timedelta(days=3)]) if value else pd.Series([pd.NaT]).astype("datetime64[us]")
        new = {"complaint_id": [f"x{i}"], "customer_id": [cust], "opened_at": ts([when]), "resolved_at": resolved}
    return {**tables, table: pd.concat([frame, pd.DataFrame(new)], ignore_index=True)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(future_event, min_size=1, max_size=5))
def test_events_at_or_after_the_cutoff_change_nothing(events):
    before = build_features(base_tables(), [CUTOFF])
    tables = base_tables()
    for i, event in enumerate(events):
        tables = add_event(tables, event, i)
    after = build_features(tables, [CUTOFF])
    pd.testing.assert_frame_equal(before, after)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_deleting_or_moving_a_past_event_changes_the_features_that_read_it(data):
    table = data.draw(st.sampled_from(["orders", "interactions", "nps"]))
    tables = base_tables()
    frame = tables[table]
    i = data.draw(st.integers(0, len(frame) - 1))
    time_col = {"orders": "ordered_at", "interactions": "occurred_at", "nps": "answered_at"}[table]
    if data.draw(st.booleans()):
        moved = frame.drop(index=i).reset_index(drop=True)
    else:
        moved = frame.copy()
        moved.loc[i, time_col] = CUTOFF + pd.Timedelta(days=data.draw(st.integers(0, 100)))
    before = build_features(tables, [CUTOFF])
    after = build_features({**tables, table: moved}, [CUTOFF])
    readers = {"orders": ["orders_total"], "interactions": ["outbound_90d", "inbound_90d", "days_since_last_outbound",
                                                           "days_since_last_inbound"],
               "nps": ["nps_answers"]}[table]
    cust = frame.loc[i, "customer_id"]
    b = before.set_index("customer_id")
    a = after.set_index("customer_id")
    if cust not in a.index:  # the customer's only order is gone: no longer in the population
        assert table == "orders" and cust in b.index
        return
    assert not b.loc[cust, readers].equals(a.loc[cust, readers])


any_time = st.integers(min_value=0, max_value=500 * 24).map(lambda h: pd.Timestamp("2023-10-01") + pd.Timedelta(hours=h))
any_event = st.one_of(
    st.tuples(st.just("orders"), customer, any_time, st.floats(0, 500)),
    st.tuples(st.just("refunds"), customer, any_time, st.floats(0, 500)),
    st.tuples(st.just("interactions"), customer, any_time, st.sampled_from(["inbound", "outbound"])),
    st.tuples(st.just("nps"), customer, any_time, st.integers(0, 10)),
    st.tuples(st.just("complaints"), customer, any_time, st.booleans()),
    st.tuples(st.just("cancellations"), customer, any_time, st.none()),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_event, max_size=10), st.lists(any_time, min_size=2, max_size=4, unique=True),
       st.sampled_from([365, 20]))
def test_a_cutoff_among_many_equals_the_same_cutoff_alone(events, cutoffs, active_window_days):
    """The engine's state, advanced from cutoff to cutoff (interaction counts and latest
    touches, the silence followed for the clients only, windows, first touch, bank balance),
    at any cutoff (any hour, ties with events) equals a single pass straight to that cutoff,
    and equals the same rows asked for as a given population (the silence then followed for
    everyone): so no event at or after a cutoff reaches it in a multi-cutoff run either. A
    short active window makes non-contractual clients lapse and return between cutoffs."""
    tables = base_tables()
    for i, event in enumerate(events):
        if event[0] == "cancellations":
            frame = tables.get("cancellations", pd.DataFrame({"customer_id": pd.Series(dtype="str"),
                                                              "cancelled_at": pd.Series(dtype="datetime64[us]")}))
            new = pd.DataFrame({"customer_id": [event[1]], "cancelled_at": ts([event[2]])})
            tables = {**tables, "cancellations": pd.concat([frame, new], ignore_index=True)}
        else:
            tables = add_event(tables, event, i)
    many = build_features(tables, cutoffs, active_window_days=active_window_days)
    channels = [c[len("channel_"):-len("_90d")] for c in many.columns if c.startswith("channel_")]
    if len(many):  # (a given population without rows has no cutoffs either)
        given_population = build_features(tables, cutoffs, population=many[["customer_id", "cutoff"]], channels=channels,
                                          active_window_days=active_window_days)
        # category levels are those present in the frame: compare the values
        pd.testing.assert_frame_equal(_plain(given_population), _plain(many), check_exact=False, rtol=1e-9, atol=1e-9)
    for cutoff in cutoffs:
        alone = build_features(tables, [cutoff], channels=channels, active_window_days=active_window_days)
        among = many[many["cutoff"] == cutoff].reset_index(drop=True)
        pd.testing.assert_frame_equal(_plain(among), _plain(alone), check_exact=False, rtol=1e-9, atol=1e-9)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({c: "object" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)})


def test_a_credit_note_counts_as_a_return_only_once_it_has_happened():
    def with_refund(when):
        return add_event(base_tables(), ("refunds", "a", pd.Timestamp(when), 30.0), 0)

    def row(tables):
        return build_features(tables, [CUTOFF]).set_index("customer_id").loc["a"]

    base, before, at = row(base_tables()), row(with_refund("2024-05-01")), row(with_refund(CUTOFF))
    assert before["returns_total"] == base["returns_total"] + 1 and before["returns_365d"] == base["returns_365d"] + 1
    assert at["returns_total"] == base["returns_total"]
    # never a purchase: the order counts and recency are those without it
    assert before[["orders_total", "amount_total", "days_since_last_order"]].equals(
        base[["orders_total", "amount_total", "days_since_last_order"]])
