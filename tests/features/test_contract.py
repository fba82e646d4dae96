"""The input contract: fatal problems, one specific reason per bad row, nothing lost.

Small hand-built folders written as CSV and as Parquet; every result is checked for
reconciliation (rows read = kept + quarantined) and canonical dtypes.
"""
from __future__ import annotations

import pandas as pd
import pytest

from features.inputs import (
    CANONICAL_DTYPES,
    SCHEMAS,
    TABLES,
    ContractError,
    format_summary,
    load_data,
    read_tables,
    validate_tables,
    write_quarantine,
)

END = pd.Timestamp("2025-01-01")
FORMATS = ["csv", "parquet"]


def write(folder, fmt="csv", **tables):
    """Write each table as <name>.<fmt>; a Parquet column mixing types is written as text."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame = pd.DataFrame(frame)
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            mixed = [c for c in frame if pd.api.types.infer_dtype(frame[c], skipna=True).startswith("mixed")]
            frame.astype({c: "str" for c in mixed}).to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def reasons(result, table):
    return result.quarantine[table]["reason"].tolist()


def assert_reconciled(result):
    """Nothing lost, every reason names its table, clean tables hold the canonical schema."""
    s = result.summary
    assert list(s.columns) == ["table", "rows_read", "rows_kept", "rows_quarantined"]
    assert (s["rows_read"] == s["rows_kept"] + s["rows_quarantined"]).all()
    for row in s.itertuples():
        assert len(result.tables[row.table]) == row.rows_kept
        q = result.quarantine[row.table]
        assert len(q) == row.rows_quarantined
        assert {"reason", "source_row"} <= set(q.columns)
        assert q["reason"].str.startswith(f"{row.table}.").all()
    for name, frame in result.tables.items():
        schema = SCHEMAS[name]
        for col, spec in schema.columns.items():
            if col in frame:
                assert str(frame[col].dtype) == CANONICAL_DTYPES[spec.metadata["kind"]], (name, col)
        schema.validate(frame)
        assert isinstance(frame.index, pd.RangeIndex)


CUSTOMERS = {"customer_id": ["a", "b"], "created_at": ["2023-12-01", "2023-12-02"]}
ORDERS = {"order_id": ["o1", "o2", "o3"], "customer_id": ["a", "a", "b"],
          "ordered_at": ["2024-01-01", "2024-02-01 10:00:00", "2024-03-01T12:00:00+02:00"], "amount": [10.0, 20.0, 5.0]}
INTERACTIONS = {"customer_id": ["a", "b"], "occurred_at": ["2024-01-05", "2024-01-06"],
                "channel": ["email", "call"], "direction": ["outbound", "inbound"]}
NPS = {"customer_id": ["a", "b"], "answered_at": ["2024-01-05", "2024-01-06"], "score": [9, 3]}
COMPLAINTS = {"complaint_id": ["k1", "k2"], "customer_id": ["a", "b"], "opened_at": ["2024-01-05", "2024-01-06"],
              "resolved_at": ["2024-01-07", None], "severity": ["high", "low"], "public": [True, False]}
CANCELLATIONS = {"customer_id": ["b"], "cancelled_at": ["2024-06-01"]}
BASE = {"customers": CUSTOMERS, "orders": ORDERS, "interactions": INTERACTIONS, "nps": NPS,
        "complaints": COMPLAINTS, "cancellations": CANCELLATIONS}


def with_row(table, **row):
    """customers, orders and ``table`` from BASE, one row appended to ``table`` (a column
    not given takes the first row's value; a new column is empty in the other rows)."""
    n = len(next(iter(BASE[table].values())))
    base = {k: [*v, row.get(k, v[0])] for k, v in BASE[table].items()}
    base.update({k: [None] * n + [v] for k, v in row.items() if k not in base})
    return {"customers": CUSTOMERS, "orders": ORDERS, table: base}


# -- clean data and canonical dtypes -------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_clean_orders_only_folder_derives_customers_and_converts_timezones(tmp_path, fmt):
    result = load_data(write(tmp_path, fmt, orders=ORDERS), data_end=END)
    assert_reconciled(result)
    orders = result.tables["orders"]
    assert orders["ordered_at"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01 10:00"),
                                             pd.Timestamp("2024-03-01 10:00")]  # +02:00 -> UTC, naive
    assert result.tables["customers"].to_dict("list") == {
        "customer_id": ["a", "b"], "created_at": [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-01 10:00")]}
    assert result.summary["table"].tolist() == ["orders"]  # a derived table was not read
    assert result.skipped_tables() == ["interactions", "nps", "complaints", "cancellations"]
    assert all(len(q) == 0 for q in result.quarantine.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_clean_folder_keeps_every_row_in_canonical_dtypes(tmp_path, fmt):
    result = load_data(write(tmp_path, fmt, **BASE), data_end=END)
    assert_reconciled(result)
    assert result.summary["rows_quarantined"].sum() == 0
    assert list(result.tables) == list(TABLES) and result.skipped_tables() == []
    assert result.tables["nps"]["score"].tolist() == [9, 3]
    assert result.tables["complaints"]["public"].tolist() == [True, False]


def test_typed_parquet_columns_become_canonical(tmp_path):
    orders = pd.DataFrame({
        "order_id": [1, 2], "customer_id": [17.0, 17.0],
        "ordered_at": pd.to_datetime(["2024-01-01 12:00", "2024-01-02 00:00"]).tz_localize("Europe/Paris"),
        "amount": [3, 4]})
    nps = pd.DataFrame({"customer_id": [17, 17], "answered_at": pd.to_datetime(["2024-02-01", "2024-02-02"]).astype("datetime64[ns]"),
                        "score": [7, 10]})
    complaints = pd.DataFrame({"complaint_id": ["k1", "k2"], "customer_id": ["17", "17"],
                               "opened_at": pd.to_datetime(["2024-01-05", "2024-01-06"]),
                               "resolved_at": pd.Series([None, None], dtype="datetime64[us]"),
                               "public": pd.array([True, None], dtype="boolean")})
    result = load_data(write(tmp_path, "parquet", orders=orders, nps=nps, complaints=complaints), data_end=END)
    assert_reconciled(result)
    assert result.tables["orders"]["order_id"].tolist() == ["1", "2"]
    assert result.tables["orders"]["customer_id"].tolist() == ["17", "17"]  # 17.0 -> "17", not "17.0"
    assert result.tables["orders"]["ordered_at"].tolist() == [pd.Timestamp("2024-01-01 11:00"), pd.Timestamp("2024-01-01 23:00")]
    assert result.tables["nps"]["score"].tolist() == [7, 10]
    assert result.tables["complaints"]["public"].tolist() == [True, False]  # missing = not public


def test_numeric_ids_in_csv_keep_their_text(tmp_path):
    orders = {"order_id": [1, 2], "customer_id": [17, 17], "ordered_at": ["2024-01-01", "2024-01-02"], "amount": [1, 2]}
    result = load_data(write(tmp_path, "csv", orders=orders), data_end=END)
    assert result.tables["orders"]["customer_id"].tolist() == ["17", "17"]
    assert result.tables["customers"]["customer_id"].tolist() == ["17"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_is_normalised_and_extra_columns_are_kept(tmp_path, fmt):
    tables = {
        **BASE,
        "customers": {**CUSTOMERS, "segment": [" smb", "enterprise "], "vip": ["yes", "no"]},
        "orders": {**ORDERS, "status": ["Returned ", "COMPLETED", None]},
        "interactions": {**INTERACTIONS, "channel": [" Email", "CALL"], "direction": ["Outbound", " INBOUND"]},
        "complaints": {**COMPLAINTS, "severity": ["NULL", " High"], "public": ["TRUE", None]},
    }
    result = load_data(write(tmp_path, fmt, **tables), data_end=END)
    assert_reconciled(result)
    assert result.summary["rows_quarantined"].sum() == 0
    t = result.tables
    assert t["customers"]["segment"].tolist() == ["smb", "enterprise"] and t["customers"]["vip"].tolist() == ["yes", "no"]
    assert t["orders"]["status"].tolist()[:2] == ["returned", "completed"] and pd.isna(t["orders"]["status"].iloc[2])
    assert t["interactions"][["channel", "direction"]].to_dict("list") == {"channel": ["email", "call"],
                                                                          "direction": ["outbound", "inbound"]}
    assert pd.isna(t["complaints"]["severity"].iloc[0]) and t["complaints"]["severity"].iloc[1] == "high"
    assert t["complaints"]["public"].tolist() == [True, False]


# -- fatal problems --------------------------------------------------------------------------------

def test_missing_folder_table_and_columns_are_fatal_with_one_message_each(tmp_path):
    with pytest.raises(ContractError) as err:
        load_data(tmp_path / "nowhere")
    assert len(err.value.problems) == 1 and "nowhere" in err.value.problems[0]
    with pytest.raises(ContractError) as err:
        load_data(write(tmp_path / "x", customers=CUSTOMERS))
    assert err.value.problems == [f"orders: missing required table (expected orders.csv or orders.parquet in {tmp_path / 'x'})"]
    orders = {k: v for k, v in ORDERS.items() if k != "amount"}
    nps = {"customer_id": ["a"], "answered_at": ["2024-01-01"], "Score": [3]}
    with pytest.raises(ContractError) as err:
        load_data(write(tmp_path / "y", orders=orders, nps=nps))
    assert err.value.problems == [
        "orders: missing required column 'amount' (expected amount >= 0, the order value)",
        "nps: missing required column 'score' (expected score, an integer 0..10; found 'Score': names are case- and space-sensitive)"]


def test_duplicate_and_unreadable_files_are_all_reported(tmp_path):
    folder = write(tmp_path, "csv", orders=ORDERS)
    write(folder, "parquet", orders=ORDERS)
    (folder / "nps.parquet").write_bytes(b"not parquet")
    (folder / "interactions.csv").write_text("customer_id,occurred_at,channel,direction\na,2024-01-01,email,outbound,extra\n")
    with pytest.raises(ContractError) as err:
        read_tables(folder)
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("orders: both orders.csv and orders.parquet exist")
    assert problems[1].startswith(f"interactions: cannot read {folder / 'interactions.csv'} (")
    assert problems[2].startswith(f"nps: cannot read {folder / 'nps.parquet'} (")


def test_a_column_with_no_readable_value_is_fatal_but_one_bad_value_is_not(tmp_path):
    orders = {**ORDERS, "amount": ["ten", "twenty", "5,5"], "ordered_at": ["01/02/2024", "02/02/2024", "03/02/2024"]}
    with pytest.raises(ContractError) as err:
        load_data(write(tmp_path / "a", orders=orders), data_end=END)
    assert err.value.problems == [
        "orders: column 'ordered_at' has no value readable as an ISO 8601 timestamp (expected ordered_at, when the "
        "order was placed (a timestamp); found '01/02/2024', '02/02/2024', '03/02/2024'; set "
        "source.tables.orders.timestamp_format, e.g. '%d/%m/%Y' (day and month order as in your export))",
        "orders: column 'amount' has no value readable as a number (expected amount >= 0, the order value; "
        "found 'ten', 'twenty', '5,5'; set source.tables.orders.decimal: ',' (with thousands: '.' if amounts such "
        "as 1.234,50 occur), or thousands: ',' if the comma separates thousands)"]
    single = {**ORDERS, "order_id": ["o1"], "customer_id": ["a"], "ordered_at": ["yesterday"], "amount": [1.0]}
    result = load_data(write(tmp_path / "b", orders=single), data_end=END)
    assert_reconciled(result)
    assert reasons(result, "orders") == ["orders.ordered_at: 'yesterday' is not an ISO 8601 timestamp"]


# -- row problems: one rule each ---------------------------------------------------------------------

ROW_CASES = {
    "nps score above 10": (with_row("nps", score=11), "nps", "nps.score: 11 is outside 0..10"),
    "nps score below 0": (with_row("nps", score=-1), "nps", "nps.score: -1 is outside 0..10"),
    "nps score not whole": (with_row("nps", score=4.5), "nps", "nps.score: 4.5 is not an integer"),
    "nps score text": (with_row("nps", score="ten"), "nps", "nps.score: 'ten' is not a number"),
    "negative amount": (with_row("orders", order_id="o9", amount=-5.0), "orders",
                        "orders.amount: -5 is negative (expected >= 0)"),
    "missing amount": (with_row("orders", order_id="o9", amount=None), "orders", "orders.amount: missing"),
    "order of unknown customer": (with_row("orders", order_id="o9", customer_id="zz"), "orders",
                                  "orders.customer_id: 'zz' is not in customers"),
    "interaction of unknown customer": (with_row("interactions", customer_id="zz"), "interactions",
                                        "interactions.customer_id: 'zz' is not in customers"),
    "nps of unknown customer": (with_row("nps", customer_id="zz"), "nps", "nps.customer_id: 'zz' is not in customers"),
    "complaint of unknown customer": (with_row("complaints", complaint_id="k9", customer_id="zz"), "complaints",
                                      "complaints.customer_id: 'zz' is not in customers"),
    "cancellation of unknown customer": (with_row("cancellations", customer_id="zz"), "cancellations",
                                         "cancellations.customer_id: 'zz' is not in customers"),
    "duplicate order_id": (with_row("orders", order_id="o2"), "orders",
                           "orders.order_id: 'o2' is a duplicate id (first kept at source_row 1)"),
    "duplicate complaint_id": (with_row("complaints", complaint_id="k1", severity="low"), "complaints",
                               "complaints.complaint_id: 'k1' is a duplicate id (first kept at source_row 0)"),
    "exact copy of a row": (with_row("nps"), "nps",
                            "nps.row: an exact copy of source_row 0 (every column equal: a duplicated export row)"),
    "exact copy of an order": (with_row("orders"), "orders",
                               "orders.row: an exact copy of source_row 0 (every column equal: a duplicated export row)"),
    "duplicate customer": (with_row("customers", customer_id="b"), "customers",
                           "customers.customer_id: 'b' is a duplicate id (first kept at source_row 1)"),
    "unreadable timestamp": (with_row("orders", order_id="o9", ordered_at="31/12/2024"), "orders",
                             "orders.ordered_at: '31/12/2024' is not an ISO 8601 timestamp"),
    "missing timestamp": (with_row("interactions", occurred_at=None), "interactions", "interactions.occurred_at: missing"),
    "unreadable resolved_at": (with_row("complaints", complaint_id="k9", resolved_at="soon"), "complaints",
                               "complaints.resolved_at: 'soon' is not an ISO 8601 timestamp"),
    "placeholder date": (with_row("orders", order_id="o9", ordered_at="1900-01-01"), "orders",
                         "orders.ordered_at: 1900-01-01 00:00:00 is implausibly early (before 1990-01-01; a placeholder "
                         "date? set validation.earliest for an older history)"),
    "exact copy of an interaction": (with_row("interactions"), "interactions",
                                     "interactions.row: an exact copy of source_row 0 (every column equal: a duplicated "
                                     "export row)"),
    "future order": (with_row("orders", order_id="o9", ordered_at="2025-01-01 00:00:01"), "orders",
                     "orders.ordered_at: 2025-01-01 00:00:01 is in the future of the data (after 2025-01-01 00:00:00)"),
    "future cancellation": (with_row("cancellations", cancelled_at="2025-03-01"), "cancellations",
                            "cancellations.cancelled_at: 2025-03-01 00:00:00 is in the future of the data "
                            "(after 2025-01-01 00:00:00)"),
    "future resolution": (with_row("complaints", complaint_id="k9", resolved_at="2025-02-01T00:00:00Z"), "complaints",
                          "complaints.resolved_at: 2025-02-01 00:00:00 is in the future of the data "
                          "(after 2025-01-01 00:00:00)"),
    "invalid direction": (with_row("interactions", direction="sideways"), "interactions",
                          "interactions.direction: 'sideways' is not one of outbound, inbound "
                          "(translate the export's words with source.tables.interactions.values.direction)"),
    "missing direction": (with_row("interactions", direction=None), "interactions", "interactions.direction: missing"),
    "invalid status": (with_row("orders", order_id="o9", status="lost"), "orders",
                       "orders.status: 'lost' is not one of completed, returned, cancelled, refund "
                       "(translate the export's words with source.tables.orders.values.status)"),
    "invalid severity": (with_row("complaints", complaint_id="k9", severity="urgent"), "complaints",
                         "complaints.severity: 'urgent' is not one of low, medium, high "
                         "(translate the export's words with source.tables.complaints.values.severity)"),
    "invalid public flag": (with_row("complaints", complaint_id="k9", public="maybe"), "complaints",
                            "complaints.public: 'maybe' is not true/false "
                            "(translate the export's words with source.tables.complaints.values.public)"),
    "resolved before opened": (with_row("complaints", complaint_id="k9", resolved_at="2024-01-01"), "complaints",
                               "complaints.resolved_at: 2024-01-01 is before opened_at 2024-01-05"),
    "missing order_id": (with_row("orders", order_id=None), "orders", "orders.order_id: missing"),
    "missing customer_id": (with_row("nps", customer_id=None), "nps", "nps.customer_id: missing"),
    "missing complaint_id": (with_row("complaints", complaint_id=None), "complaints", "complaints.complaint_id: missing"),
    "missing customers.customer_id": (with_row("customers", customer_id=" "), "customers",
                                      "customers.customer_id: missing"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(ROW_CASES))
def test_each_bad_row_is_quarantined_with_a_specific_reason(tmp_path, case, fmt):
    tables, table, reason = ROW_CASES[case]
    result = load_data(write(tmp_path, fmt, **tables), data_end=END)
    assert_reconciled(result)
    assert reasons(result, table) == [reason]
    bad_row = len(next(iter(tables[table].values()))) - 1
    assert result.quarantine[table]["source_row"].tolist() == [bad_row]
    others = result.summary.set_index("table").drop(index=table)
    assert others["rows_quarantined"].sum() == 0  # the other tables are untouched


@pytest.mark.parametrize("fmt", FORMATS)
def test_several_problems_on_one_row_are_joined_in_column_order(tmp_path, fmt):
    orders = {"order_id": ["o1", None], "customer_id": ["a", "zz"], "ordered_at": ["2024-01-01", "garbage"],
              "amount": [1.0, -2.0]}
    result = load_data(write(tmp_path, fmt, customers=CUSTOMERS, orders=orders), data_end=END)
    assert_reconciled(result)
    assert reasons(result, "orders") == [
        "orders.order_id: missing; orders.customer_id: 'zz' is not in customers; "
        "orders.ordered_at: 'garbage' is not an ISO 8601 timestamp; orders.amount: -2 is negative (expected >= 0)"]


def test_the_first_valid_row_of_a_repeated_id_is_kept(tmp_path):
    orders = {"order_id": ["o1", "o1", "o1", "o2"], "customer_id": ["a"] * 4,
              "ordered_at": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"], "amount": [-1.0, 2.0, 3.0, 4.0]}
    result = load_data(write(tmp_path, orders=orders), data_end=END)
    assert_reconciled(result)
    assert reasons(result, "orders") == ["orders.amount: -1 is negative (expected >= 0)",
                                         "orders.order_id: 'o1' is a duplicate id (first kept at source_row 1)"]
    assert result.tables["orders"]["amount"].tolist() == [2.0, 4.0]


def test_events_of_customers_without_a_kept_order_are_unknown_when_customers_is_derived(tmp_path):
    orders = {**ORDERS, "amount": [10.0, 20.0, -5.0]}  # b's only order is bad
    nps = {"customer_id": ["a", "b", "ghost"], "answered_at": ["2024-02-01"] * 3, "score": [9, 3, 5]}
    result = load_data(write(tmp_path, orders=orders, nps=nps), data_end=END)
    assert_reconciled(result)
    assert result.tables["customers"]["customer_id"].tolist() == ["a"]
    assert reasons(result, "nps") == [
        "nps.customer_id: 'b' has no valid order (all its orders are quarantined; customers is derived from orders)",
        "nps.customer_id: 'ghost' has no order (customers is derived from orders)"]


def test_events_of_a_quarantined_customer_are_quarantined_too(tmp_path):
    customers = {"customer_id": ["a", "b"], "created_at": ["2023-12-01", "not a date"]}
    result = load_data(write(tmp_path, customers=customers, orders=ORDERS, cancellations=CANCELLATIONS), data_end=END)
    assert_reconciled(result)
    assert reasons(result, "customers") == ["customers.created_at: 'not a date' is not an ISO 8601 timestamp"]
    expected = "'b' is not a valid customer (its customers row is quarantined)"
    assert reasons(result, "orders") == [f"orders.customer_id: {expected}"]
    assert reasons(result, "cancellations") == [f"cancellations.customer_id: {expected}"]


def test_data_end_defaults_to_now_and_tz_aware_data_end_is_utc(tmp_path):
    orders = {**ORDERS, "ordered_at": ["2024-01-01", "2024-02-01", "2999-01-01"]}
    folder = write(tmp_path, orders=orders)
    before = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    result = load_data(folder)
    assert before <= result.data_end <= pd.Timestamp.now(tz="UTC").tz_localize(None)
    assert reasons(result, "orders")[0].startswith("orders.ordered_at: 2999-01-01 00:00:00 is in the future")
    result = load_data(folder, data_end=pd.Timestamp("2024-02-01 02:00", tz="Europe/Paris"))
    assert result.data_end == pd.Timestamp("2024-02-01 01:00")
    assert result.tables["orders"]["order_id"].tolist() == ["o1", "o2"]


def test_quarantine_keeps_the_values_as_read(tmp_path):
    orders = {**ORDERS, "amount": ["10", "-1.50", "5"], "reason": ["gift", "promo", "none"]}
    result = load_data(write(tmp_path, orders=orders), data_end=END)
    q = result.quarantine["orders"]
    assert q.to_dict("list") == {
        "order_id": ["o2"], "customer_id": ["a"], "ordered_at": ["2024-02-01 10:00:00"], "amount": ["-1.50"],
        "reason_in_file": ["promo"], "reason": ["orders.amount: -1.50 is negative (expected >= 0)"], "source_row": [1]}
    assert result.tables["orders"]["reason"].tolist() == ["gift", "none"]  # other columns are kept


def test_validation_does_not_modify_its_input():
    raw = {"orders": pd.DataFrame({**ORDERS, "status": [" Completed", "lost", None]}, index=[5, 6, 7])}
    before = raw["orders"].copy()
    result = validate_tables(raw, data_end=END)
    assert_reconciled(result)
    pd.testing.assert_frame_equal(raw["orders"], before)
    assert result.quarantine["orders"]["source_row"].tolist() == [1]  # positions, not the input's labels


# -- output ----------------------------------------------------------------------------------------

def test_quarantine_files_and_summary_are_written_atomically(tmp_path):
    bad = load_data(write(tmp_path / "in", orders={**ORDERS, "amount": [10.0, -1.0, 5.0]}), data_end=END)
    out = tmp_path / "out"
    paths = write_quarantine(bad, out)
    assert set(paths) == {"orders", "summary"}
    q = pd.read_csv(paths["orders"])
    assert q["reason"].tolist() == ["orders.amount: -1 is negative (expected >= 0)"] and q["order_id"].tolist() == ["o2"]
    assert q["source_row"].tolist() == [1]
    summary = pd.read_csv(paths["summary"])
    assert summary.set_index("table").loc["orders"].tolist() == [3, 2, 1]
    clean = load_data(write(tmp_path / "clean", orders=ORDERS), data_end=END)
    paths = write_quarantine(clean, out)
    assert set(paths) == {"summary"}
    assert sorted(p.name for p in out.iterdir()) == ["validation_summary.csv"]  # stale file gone, no temp files


def test_format_summary_is_a_readable_table(tmp_path):
    result = load_data(write(tmp_path, orders={**ORDERS, "amount": [10.0, -1.0, 5.0]}), data_end=END)
    text = format_summary(result)
    lines = text.splitlines()
    assert lines[0].startswith("data_end 2025-01-01 00:00:00 (later timestamps are quarantined); the latest event kept is 2024-")
    assert lines[1].split() == ["table", "rows", "read", "kept", "quarantined"]
    assert lines[2].split() == ["orders", "3", "2", "1"]
    assert "customers: derived from orders" in text
    assert "absent optional tables: interactions, nps, complaints, cancellations" in text
    assert "orders.amount: -1 is negative (expected >= 0)" in text
