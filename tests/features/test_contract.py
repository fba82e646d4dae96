"""The input contract: fatal problems, one quarantine reason per bad row, nothing lost."""
from __future__ import annotations

import pandas as pd
import pytest

from features.contract import ContractError, load_data, write_quarantine

END = pd.Timestamp("2025-01-01")


def write(folder, fmt="csv", **tables):
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame = pd.DataFrame(frame)
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


ORDERS = {"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "a", "b"],
          "ordered_at": ["2024-01-01", "2024-02-01 10:00:00", "2024-03-01T12:00:00+02:00"], "amount": [10.0, 20.0, 5.0]}


def reasons(result, table):
    return result.quarantine[table]["reason"].tolist()


def assert_reconciled(result):
    s = result.summary
    assert (s["rows_read"] == s["rows_kept"] + s["rows_quarantined"]).all()
    for row in s.itertuples():
        assert len(result.tables[row.table]) == row.rows_kept
        assert len(result.quarantine[row.table]) == row.rows_quarantined


def test_clean_orders_only_folder_derives_customers_and_converts_timezones(tmp_path):
    result = load_data(write(tmp_path, orders=ORDERS), data_end=END)
    assert_reconciled(result)
    orders = result.tables["orders"]
    assert str(orders["ordered_at"].dtype) == "datetime64[us]"
    assert orders["ordered_at"].iloc[2] == pd.Timestamp("2024-03-01 10:00:00")  # +02:00 converted to UTC
    customers = result.tables["customers"]
    assert customers.set_index("customer_id")["created_at"].to_dict() == {
        "a": pd.Timestamp("2024-01-01"), "b": pd.Timestamp("2024-03-01 10:00:00")}
    assert "interactions" in result.skipped_tables()


def test_missing_table_column_and_duplicate_files_are_fatal_with_one_message_each(tmp_path):
    with pytest.raises(ContractError) as err:
        load_data(write(tmp_path / "x", customers={"customer_id": ["a"], "created_at": ["2024-01-01"]}))
    assert err.value.problems == [f"orders: missing required table (expected orders.csv or orders.parquet in {tmp_path / 'x'})"]
    bad = {k: v for k, v in ORDERS.items() if k != "amount"}
    nps = {"customer_id": ["a"], "answered_at": ["2024-01-01"]}
    with pytest.raises(ContractError) as err:
        load_data(write(tmp_path / "y", orders=bad, nps=nps))
    assert err.value.problems == [
        "orders: missing required column 'amount' (expected the order value, a number >= 0)",
        "nps: missing required column 'score' (expected the answer, an integer 0-10)"]
    folder = write(tmp_path / "z", orders=ORDERS)
    write(folder, fmt="parquet", orders=ORDERS)
    (folder / "nps.parquet").write_bytes(b"not parquet")
    with pytest.raises(ContractError) as err:
        load_data(folder)
    assert err.value.problems[0].startswith("orders: both orders.parquet and orders.csv exist")
    assert err.value.problems[1].startswith(f"nps: cannot read {folder / 'nps.parquet'}")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_each_bad_row_is_quarantined_with_its_reason(tmp_path, fmt):
    folder = write(
        tmp_path, fmt=fmt,
        customers={"customer_id": ["a", "b", "b"], "created_at": ["2023-12-01", "2023-12-02", "2023-12-03"]},
        orders={"order_id": ["o1", "o2", "o2", "o4", "o5", "o6"], "customer_id": ["a", "a", "b", "b", "zz", "a"],
                "ordered_at": ["2024-01-01", "2024-02-01", "2024-02-02", "not a date", "2024-01-01", "2026-01-01"],
                "amount": [10.0, -5.0, 3.0, 4.0, 1.0, 2.0]},
        nps={"customer_id": ["a", "a", "b"], "answered_at": ["2024-01-05"] * 3, "score": [11.0, 4.5, 7.0]},
        interactions={"customer_id": ["a", "a"], "occurred_at": ["2024-01-05", "2024-01-06"],
                      "channel": [" Email", "call"], "direction": ["outbound", "sideways"]},
        complaints={"complaint_id": ["k1", "k2"], "customer_id": ["a", "b"], "opened_at": ["2024-01-05", "2024-01-05"],
                    "resolved_at": ["2024-01-01", None], "severity": ["high", "HIGH"]},
    )
    result = load_data(folder, data_end=END)
    assert_reconciled(result)
    assert reasons(result, "customers") == ["customers.customer_id: duplicate b (the first row with this id is kept)"]
    assert reasons(result, "orders") == [
        "orders.amount: -5 is negative (expected >= 0)",
        "orders.ordered_at: not a date is not a timestamp",
        "orders.customer_id: zz is an unknown customer (not in customers)",
        "orders.ordered_at: 2026-01-01 is in the future of the data (after 2025-01-01 00:00:00)",
    ]
    # the first o2 was bad, so the later o2 is the one kept
    assert result.tables["orders"]["order_id"].tolist() == ["o1", "o2"]
    assert reasons(result, "nps") == ["nps.score: 11 is outside 0..10", "nps.score: 4.5 is not an integer"]
    assert reasons(result, "interactions") == ["interactions.direction: sideways is not one of outbound, inbound"]
    assert result.tables["interactions"]["channel"].tolist() == ["email"]
    assert reasons(result, "complaints") == ["complaints.resolved_at: before opened_at"]
    assert result.tables["complaints"]["severity"].tolist() == ["high"]
    assert result.quarantine["orders"]["source_row"].tolist() == [1, 3, 4, 5]


def test_several_problems_on_one_row_are_all_named(tmp_path):
    orders = {"order_id": ["o1", None], "customer_id": ["a", "a"], "ordered_at": ["2024-01-01", "garbage"],
              "amount": [1.0, -2.0]}
    result = load_data(write(tmp_path, orders=orders), data_end=END)
    assert reasons(result, "orders") == [
        "orders.order_id: missing; orders.ordered_at: garbage is not a timestamp; orders.amount: -2 is negative (expected >= 0)"]


def test_events_of_customers_without_orders_are_unknown_when_customers_is_derived(tmp_path):
    nps = {"customer_id": ["a", "ghost"], "answered_at": ["2024-02-01", "2024-02-01"], "score": [9, 3]}
    result = load_data(write(tmp_path, orders=ORDERS, nps=nps), data_end=END)
    assert reasons(result, "nps") == ["nps.customer_id: ghost is an unknown customer (has no valid order (and no customers table))"]
    assert result.tables["nps"]["score"].tolist() == [9.0]


def test_quarantine_files_and_summary_are_written(tmp_path):
    orders = {**ORDERS, "amount": [10.0, -1.0, 5.0]}
    result = load_data(write(tmp_path / "in", orders=orders), data_end=END)
    paths = write_quarantine(result, tmp_path / "out")
    q = pd.read_csv(paths["orders"])
    assert q["reason"].tolist() == ["orders.amount: -1 is negative (expected >= 0)"] and q["order_id"].tolist() == ["o2"]
    summary = pd.read_csv(paths["summary"])
    assert summary.set_index("table").loc["orders"].tolist() == [3, 2, 1]


def test_numeric_ids_in_csv_stay_whole(tmp_path):
    orders = {"order_id": [1, 2], "customer_id": [17, 17], "ordered_at": ["2024-01-01", "2024-01-02"], "amount": [1, 2]}
    result = load_data(write(tmp_path, fmt="parquet", orders={**orders, "customer_id": [17.0, 17.0]}), data_end=END)
    assert result.tables["orders"]["customer_id"].tolist() == ["17", "17"]
