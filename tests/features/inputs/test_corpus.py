"""A corpus of what real exports do, each case with the behaviour we decided.

Every case is a small folder written by hand and read as a new user would, through
``load_source`` with a ``source:`` / ``validation:`` config. The decided behaviours:
``fatal`` (a ``ContractError``: exit code 2 with one line naming table, column or file
and what to fix), ``quarantine`` (the row goes to the quarantine with a reason, the rest
is used) or ``ok`` (a correct result, checked). The README's "What a real export can do"
lists the same decisions.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.inputs import ContractError, SourceConfig, ValidationConfig, load_source
from features.labels import check_as_of, data_end, default_as_of
from pipelines.settings import Settings

END = pd.Timestamp("2025-01-01")
HEADER = "order_id,customer_id,ordered_at,amount\n"
ORDERS = HEADER + "o1,a,2024-01-01,10\no2,a,2024-02-01,20\no3,b,2024-03-01,5\n"


def folder(tmp_path: Path, **files: str | bytes) -> Path:
    """Write each ``name=content`` as a file (``orders_csv`` -> ``orders.csv``)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = tmp_path / name.replace("_csv", ".csv").replace("_gz", ".gz").replace("_parquet", ".parquet")
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


def load(path: Path, source: dict | None = None, validation: dict | None = None):
    return load_source(SourceConfig.model_validate(source or {}), ValidationConfig.model_validate(validation or {}),
                       data_dir=path, data_end=END)


def fatal(path: Path, source: dict | None = None, validation: dict | None = None) -> str:
    with pytest.raises(ContractError) as err:
        load(path, source, validation)
    assert all(isinstance(p, str) and "\n" not in p for p in err.value.problems)
    return "\n".join(err.value.problems)


def reasons(result, table: str) -> list[str]:
    return result.quarantine[table]["reason"].tolist()


def reconciled(result) -> None:
    s = result.summary
    assert (s["rows_read"] == s["rows_kept"] + s["rows_quarantined"]).all()
    for row in s.itertuples():
        assert len(result.quarantine[row.table]) == row.rows_quarantined


# -- files: compressed, odd and broken ------------------------------------------------------------

def test_compressed_csv_is_read_like_plain_csv(tmp_path):
    gz = load(folder(tmp_path / "gz", orders_csv_gz=gzip.compress(ORDERS.encode())))
    plain = load(folder(tmp_path / "plain", orders_csv=ORDERS))
    pd.testing.assert_frame_equal(gz.tables["orders"], plain.tables["orders"])


def test_plain_and_compressed_copies_of_one_table_are_fatal(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=ORDERS, orders_csv_gz=gzip.compress(ORDERS.encode())))
    assert "orders: both orders.csv and orders.csv.gz exist" in text


def test_a_folder_where_the_file_should_be_is_fatal(tmp_path):
    (tmp_path / "orders.csv").mkdir()
    assert "orders.csv is a folder" in fatal(tmp_path)


def test_a_broken_symbolic_link_is_fatal_not_an_absent_table(tmp_path):
    folder(tmp_path, orders_csv=ORDERS)
    (tmp_path / "nps.csv").symlink_to(tmp_path / "gone.csv")
    text = fatal(tmp_path)
    assert "nps:" in text and "broken symbolic link" in text and "gone.csv" in text


def test_a_looping_symbolic_link_is_fatal(tmp_path):
    folder(tmp_path, orders_csv=ORDERS)
    (tmp_path / "nps.csv").symlink_to(tmp_path / "loop.csv")
    (tmp_path / "loop.csv").symlink_to(tmp_path / "nps.csv")
    assert "nps:" in fatal(tmp_path) and "loops" in fatal(tmp_path)


def test_a_symbolic_link_to_a_real_export_is_read(tmp_path):
    folder(tmp_path / "real", orders_csv=ORDERS)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").symlink_to(tmp_path / "real" / "orders.csv")
    assert len(load(tmp_path / "data").tables["orders"]) == 3


def test_the_same_column_name_twice_is_fatal(tmp_path):
    text = fatal(folder(tmp_path, orders_csv="order_id,customer_id,ordered_at,amount,amount\no1,a,2024-01-01,1,2\n"))
    assert "orders:" in text and "'amount' more than once" in text


def test_a_header_cell_without_a_name_is_fatal(tmp_path):
    text = fatal(folder(tmp_path, orders_csv="order_id,customer_id,ordered_at,amount,\no1,a,2024-01-01,1,x\n"))
    assert "column without a name" in text and "position 5" in text


def test_a_very_wide_customers_table_is_fatal_with_what_to_do(tmp_path):
    names = ["customer_id", "created_at"] + [f"x{i}" for i in range(1_200)]
    row = ["a", "2023-01-01"] + ["1"] * 1_200
    text = fatal(folder(tmp_path, orders_csv=ORDERS, customers_csv=",".join(names) + "\n" + ",".join(row) + "\n"))
    assert "customers:" in text and "1,202 columns" in text and "at most 1,000" in text


def test_a_three_megabyte_line_is_read(tmp_path):
    comment = "x" * 3_000_000
    result = load(folder(tmp_path, orders_csv=ORDERS, nps_csv=f"customer_id,answered_at,score,comment\na,2024-01-05,9,{comment}\n"))
    assert result.tables["nps"]["comment"].str.len().tolist() == [3_000_000]


def test_a_file_named_in_the_config_that_is_not_there_is_fatal(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=ORDERS), {"tables": {"orders": {"file": "sales_export.csv"}}})
    assert "orders: sales_export.csv (source.tables.orders.file) is not in" in text
    assert text.endswith("(it holds orders.csv)")  # what is there, to spot the typo


def test_a_header_only_orders_file_is_fatal(tmp_path):
    assert "orders: the table is empty" in fatal(folder(tmp_path, orders_csv=HEADER))


def test_a_zero_byte_orders_file_is_fatal(tmp_path):
    assert "orders:" in fatal(folder(tmp_path, orders_csv=""))


def test_a_semicolon_file_read_as_commas_names_the_separator(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=ORDERS.replace(",", ";")))
    assert "its fields look separated by ';': set source.tables.orders.delimiter" in text


def test_a_tab_separated_file_with_mapped_columns_names_the_separator(tmp_path):
    content = "Beleg\tKunde\tDatum\tBetrag\no1\ta\t2024-01-01\t10\n"
    text = fatal(folder(tmp_path, **{"export_csv": content}),
                 {"tables": {"orders": {"file": "export.csv",
                                        "columns": {"order_id": "Beleg", "customer_id": "Kunde", "ordered_at": "Datum",
                                                    "amount": "Betrag"}}}})
    assert text.startswith("orders: export.csv: its header is one column")
    assert "separated by '\\t' (a tab): set source.tables.orders.delimiter" in text


def test_formats_shared_by_every_table_are_set_once_and_a_table_may_differ(tmp_path):
    orders = "order_id;customer_id;ordered_at;amount\no1;a;09.12.2024 10:30;1.857,60\no2;b;10.12.2024 11:00;3,50\n"
    nps = "customer_id;answered_at;score\na;2024-12-11T10:00:00;9\n"
    source = {"defaults": {"delimiter": ";", "timestamp_format": "%d.%m.%Y %H:%M", "decimal": ",", "thousands": "."},
              "tables": {"nps": {"timestamp_format": None}}}
    result = load(folder(tmp_path, orders_csv=orders, nps_csv=nps), source)
    reconciled(result)
    assert result.tables["orders"]["amount"].tolist() == [1857.6, 3.5]
    assert result.tables["orders"]["ordered_at"].tolist() == [pd.Timestamp("2024-12-09 10:30"), pd.Timestamp("2024-12-10 11:00")]
    assert result.tables["nps"]["answered_at"].tolist() == [pd.Timestamp("2024-12-11 10:00")]  # its own: ISO 8601
    # a copy of the settings (dumped and read again, as --horizon-days does) keeps the shared formats
    again = Settings.model_validate(Settings.model_validate({"source": source}).model_dump())
    assert again.source.table("orders").delimiter == ";" and again.source.table("complaints").decimal == ","
    assert again.source.table("nps").timestamp_format is None


def test_a_decimal_comma_without_the_thousands_separator_says_to_set_it(tmp_path):
    orders = "order_id;customer_id;ordered_at;amount\no1;a;2024-01-01;23,50\no2;a;2024-02-01;1.008,25\n" + \
        "".join(f"o{i};b;2024-03-01;5,00\n" for i in range(3, 9))
    result = load(folder(tmp_path, orders_csv=orders), {"defaults": {"delimiter": ";", "decimal": ","}})
    reconciled(result)
    assert reasons(result, "orders") == ["orders.amount: '1.008,25' is not a number (decimal mark ','); "
                                         "set thousands: '.' for amounts such as 1.234,50"]


def test_the_exports_own_words_are_translated_by_values(tmp_path):
    orders = HEADER.strip() + ",status\no1,a,2024-01-01,10,Abgeschlossen\no2,a,2024-02-01,20, retourniert\n" \
        "o3,b,2024-03-01,5,verloren\no4,b,2024-04-01,5,abgeschlossen\n"
    complaints = ("complaint_id,customer_id,opened_at,resolved_at,severity,public\n"
                  "k1,a,2024-01-05,,hoch,ja\nk2,b,2024-01-06,,niedrig,nein\n")
    source = {"tables": {"orders": {"values": {"status": {"abgeschlossen": "completed", "retourniert": "returned"}}},
                         "complaints": {"values": {"severity": {"niedrig": "low", "hoch": "high"},
                                                   "public": {"ja": True, "nein": False}}}}}
    result = load(folder(tmp_path, orders_csv=orders, complaints_csv=complaints), source, {"max_quarantined_share": 0.5})
    reconciled(result)
    assert result.tables["orders"]["status"].tolist() == ["completed", "returned", "completed"]
    assert reasons(result, "orders") == ["orders.status: 'verloren' is not one of completed, returned, cancelled, refund "
                                         "(translate the export's words with source.tables.orders.values.status)"]
    assert result.tables["complaints"]["severity"].tolist() == ["high", "low"]
    assert result.tables["complaints"]["public"].tolist() == [True, False]


def test_flags_in_the_exports_own_words_name_the_values_option(tmp_path):
    complaints = "complaint_id,customer_id,opened_at,resolved_at,public\nk1,a,2024-01-05,,ja\nk2,b,2024-01-06,,nein\n"
    text = fatal(folder(tmp_path, orders_csv=ORDERS, complaints_csv=complaints))
    assert "translate the export's words with source.tables.complaints.values.public: {ja: ..., nein: ...}" in text


def test_semicolons_and_decimal_commas_read_with_their_settings(tmp_path):
    result = load(folder(tmp_path, orders_csv="order_id;customer_id;ordered_at;amount\no1;a;2024-01-01;1.857,60\n"),
                  {"tables": {"orders": {"delimiter": ";", "decimal": ",", "thousands": "."}}})
    assert result.tables["orders"]["amount"].tolist() == [1857.6]


def test_text_in_another_encoding_is_fatal_with_the_option_to_set(tmp_path):
    content = (HEADER + "o1,Zoë,2024-01-01,10\n").encode("cp1252")
    text = fatal(folder(tmp_path, orders_csv=content))
    assert "orders:" in text and "encoding" in text and "cp1252" in text


def test_text_in_the_configured_encoding_is_read(tmp_path):
    content = (HEADER + "o1,Zoë,2024-01-01,10\n").encode("cp1252")
    result = load(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"encoding": "cp1252"}}})
    assert result.tables["orders"]["customer_id"].tolist() == ["Zoë"]


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    result = load(folder(tmp_path, orders_csv=b"\xef\xbb\xbf" + ORDERS.encode()))
    assert result.tables["orders"]["order_id"].tolist() == ["o1", "o2", "o3"]


def test_windows_line_endings_and_quoted_newlines_are_read(tmp_path):
    content = ORDERS.replace("\n", "\r\n") + 'o4,"b, the second",2024-03-02,7\r\n'
    nps = 'customer_id,answered_at,score,comment\na,2024-01-05,9,"two\nlines, and a comma"\n'
    result = load(folder(tmp_path, orders_csv=content, nps_csv=nps),
                  validation={"max_unknown_customer_share": 0.5})
    assert result.tables["orders"]["order_id"].tolist() == ["o1", "o2", "o3", "o4"]
    assert result.tables["nps"]["comment"].tolist() == ["two\nlines, and a comma"]


def test_a_row_with_too_many_fields_is_fatal(tmp_path):
    assert "orders: cannot read" in fatal(folder(tmp_path, orders_csv=ORDERS + "o4,b,2024-03-02,7,extra\n"))


# -- the mapping ------------------------------------------------------------------------------------

def test_a_mapped_column_that_is_not_in_the_file_is_fatal_and_lists_what_is(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=ORDERS), {"tables": {"orders": {"columns": {"amount": "Amount"}}}})
    assert "orders: column 'Amount' (source.tables.orders.columns.amount) is not in" in text
    assert "found 'order_id', 'customer_id', 'ordered_at', 'amount'" in text


def test_a_source_column_named_like_a_mapped_contract_column_is_kept_aside(tmp_path):
    content = "order_id,customer_id,ordered_at,amount,Net\no1,a,2024-01-01,99,10\n"
    result = load(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"columns": {"amount": "Net"}}}})
    orders = result.tables["orders"]
    assert orders["amount"].tolist() == [10.0] and orders["amount_in_file"].tolist() == ["99"]


@pytest.mark.parametrize("config, message", [
    ({"source": {"tables": {"order": {}}}}, "unknown table 'order'"),
    ({"source": {"tables": {"orders": {"columns": {"price": "Price"}}}}}, "'price' is not a column of the contract's orders"),
    ({"source": {"url": "postgresql://churn:secret@db/crm"}}, "must not hold the password"),
    ({"source": {"tables": {"nps": {"lines": True}}}}, "apply to orders only"),
    ({"source": {"tables": {"orders": {"timezone": "Mars/Olympus"}}}}, "unknown time zone"),
    ({"source": {"tables": {"orders": {"table": "orders; DROP TABLE x"}}}}, "not a plain table name"),
    ({"validation": {"earliest": "01/01/1990"}}, "not an ISO 8601 date"),
    ({"source": {"tables": {"orders": {"values": {"state": {"ok": "completed"}}}}}}, "'state' is not a column of the contract's orders"),
    ({"source": {"defaults": {"decimal": ","}, "tables": {"orders": {"thousands": ","}}}}, "defaults with tables.orders"),
])
def test_a_config_that_cannot_be_right_is_refused_with_its_key(config, message):
    with pytest.raises(ValueError, match=message):
        Settings.model_validate(config)


# -- values: dates, zones, numbers ------------------------------------------------------------------

def test_day_first_dates_read_with_their_format(tmp_path):
    content = HEADER + "o1,a,09/12/2024 10:30,10\n"
    result = load(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"timestamp_format": "%d/%m/%Y %H:%M"}}})
    assert result.tables["orders"]["ordered_at"].tolist() == [pd.Timestamp("2024-12-09 10:30")]


def test_day_first_dates_without_a_format_are_fatal_with_the_format_to_set(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=HEADER + "o1,a,09/12/2024,10\no2,a,13/12/2024,10\n"))
    assert "no value readable as an ISO 8601 timestamp" in text and "timestamp_format, e.g. '%d/%m/%Y'" in text


def test_day_and_month_swapped_in_the_format_are_named(tmp_path):
    content = HEADER + "o1,a,07/12/2024 10:30,10\no2,a,13/07/2024 14:12,10\no3,b,31/07/2024 09:00,5\n"
    text = fatal(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"timestamp_format": "%m/%d/%Y %H:%M"}}})
    assert "'13/07/2024 14:12' is not a timestamp in the format %m/%d/%Y %H:%M; day and month look swapped: " \
           "timestamp_format '%d/%m/%Y %H:%M'?" in text


def test_one_date_that_breaks_the_format_is_quarantined(tmp_path):
    content = HEADER + "o1,a,09/12/2024 10:30,10\no2,a,2024-12-10,10\n"
    result = load(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"timestamp_format": "%d/%m/%Y %H:%M"}}},
                  {"max_quarantined_share": 0.5})
    assert reasons(result, "orders") == ["orders.ordered_at: '2024-12-10' is not a timestamp in the format %d/%m/%Y %H:%M"]


def test_naive_times_are_read_in_their_zone_and_stored_in_utc(tmp_path):
    content = HEADER + "o1,a,2024-07-01 10:00,10\no2,a,2024-01-15 10:00,10\no3,a,2024-07-01T10:00:00+02:00,10\n"
    result = load(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"timezone": "Europe/London"}}})
    assert result.tables["orders"]["ordered_at"].tolist() == [  # summer time, winter time, its own offset
        pd.Timestamp("2024-07-01 09:00"), pd.Timestamp("2024-01-15 10:00"), pd.Timestamp("2024-07-01 08:00")]


def test_thousands_separators_read_with_their_setting(tmp_path):
    content = HEADER + 'o1,a,2024-01-01,"1,857.60"\no2,a,2024-01-02,"12,000"\n'
    result = load(folder(tmp_path, orders_csv=content), {"tables": {"orders": {"thousands": ","}}})
    assert result.tables["orders"]["amount"].tolist() == [1857.6, 12000.0]


def test_thousands_separators_without_the_setting_are_fatal_with_the_setting_to_use(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=HEADER + 'o1,a,2024-01-01,"1,857.60"\no2,a,2024-01-02,"2,000.10"\n'))
    assert "no value readable as a number" in text and "thousands: ','" in text


def test_placeholder_dates_from_1900_are_quarantined(tmp_path):
    result = load(folder(tmp_path, orders_csv=ORDERS + "o4,b,1900-01-01,7\n"), validation={"max_quarantined_share": 0.5})
    assert reasons(result, "orders") == [
        "orders.ordered_at: 1900-01-01 00:00:00 is implausibly early (before 1990-01-01; a placeholder date? "
        "set validation.earliest for an older history)"]


def test_an_older_history_is_kept_with_an_earlier_bound(tmp_path):
    result = load(folder(tmp_path, orders_csv=ORDERS + "o4,b,1985-06-01,7\n"), validation={"earliest": "1980-01-01"})
    assert len(result.tables["orders"]) == 4


def test_dates_in_2100_are_in_the_future_of_the_data(tmp_path):
    result = load(folder(tmp_path, orders_csv=ORDERS + "o4,b,2100-01-01,7\n"), validation={"max_quarantined_share": 0.5})
    assert reasons(result, "orders")[0].startswith("orders.ordered_at: 2100-01-01 00:00:00 is in the future of the data")


def test_infinite_and_missing_spelled_amounts(tmp_path):
    result = load(folder(tmp_path, orders_csv=ORDERS + "o4,b,2024-03-02,inf\no5,b,2024-03-03,N/A\n"),
                  validation={"max_quarantined_share": 0.5})
    assert reasons(result, "orders") == ["orders.amount: inf is not a finite number", "orders.amount: missing"]


def test_spreadsheet_serial_numbers_as_dates_are_not_guessed(tmp_path):
    text = fatal(folder(tmp_path, orders_csv=HEADER + "o1,a,45292,10\no2,a,45293,10\n"))
    assert "column 'ordered_at' has no value readable as an ISO 8601 timestamp" in text


# -- ids that do not meet -----------------------------------------------------------------------------

CUSTOMERS = "customer_id,created_at\n17,2023-01-01\n18,2023-01-01\n"


@pytest.mark.parametrize("ids, option", [
    (["00017", "00018"], "source.ids.strip_leading_zeros: true"),
    (["17.0", "18.0"], "source.ids.strip_decimal_zero: true"),
])
def test_ids_that_differ_by_their_shape_are_fatal_with_the_option_that_fixes_them(tmp_path, ids, option):
    orders = HEADER + f"o1,{ids[0]},2024-01-01,10\no2,{ids[1]},2024-02-01,20\n"
    path = folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=orders)
    text = fatal(path)
    assert "orders: 2 of 2 rows (100%) name a customer that is not among the customers" in text and option in text
    fixed = load(path, {"ids": {option.split(".")[2].split(":")[0]: True}})
    assert fixed.tables["orders"]["customer_id"].tolist() == ["17", "18"]


def test_ids_that_differ_by_case_name_lower_case(tmp_path):
    path = folder(tmp_path, customers_csv="customer_id,created_at\nab1,2023-01-01\n",
                  orders_csv=HEADER + "o1,AB1,2024-01-01,10\n")
    assert "source.ids.lower_case: true" in fatal(path)
    assert load(path, {"ids": {"lower_case": True}}).tables["orders"]["customer_id"].tolist() == ["ab1"]


def test_ids_from_another_system_are_named_as_such(tmp_path):
    path = folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=HEADER + "o1,X-99,2024-01-01,10\n")
    assert "do not meet in any normalised form (e.g. 'X-99' in orders, '17' in customers)" in fatal(path)


def test_a_few_unknown_customers_are_quarantined_not_fatal(tmp_path):
    orders = HEADER + "".join(f"o{i},17,2024-01-{i + 1:02d},10\n" for i in range(25)) + "o99,42,2024-02-01,1\n"
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=orders))
    assert reasons(result, "orders") == ["orders.customer_id: '42' is not in customers"]


# -- order lines and credit notes -------------------------------------------------------------------

LINES = ("Invoice,Customer ID,InvoiceDate,Amount,StockCode\n"
         "536365,17,2024-01-01 10:00,10.00,A\n536365,17,2024-01-01 10:01,5.50,B\n536366,18,2024-01-03 09:00,7.00,A\n"
         "C536367,17,2024-01-10 12:00,-5.50,B\n")
LINE_MAP = {"columns": {"order_id": "Invoice", "customer_id": "Customer ID", "ordered_at": "InvoiceDate", "amount": "Amount"}}


def test_invoice_lines_read_as_orders_are_fatal_and_named_as_order_lines(tmp_path):
    lines = LINES.replace("C536367", "536366")
    text = fatal(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=lines), {"tables": {"orders": LINE_MAP}})
    assert "orders: 2 of 4 rows (50%) are quarantined" in text and "lines: true" in text


def test_a_purchase_log_without_order_ids_numbers_its_rows(tmp_path):
    # CDNOW-like: customer, day (YYYYMMDD), quantity, amount; one row per purchase, no order id
    log = "CustID,Date,Qty,Amount\n00001,19970101,1,11.77\n00002,19970112,1,12.00\n00001,19970102,2,29.33\n" \
          "00001,19970102,2,29.33\n"
    result = load(folder(tmp_path, orders_csv=log),
                  {"tables": {"orders": {"columns": {"customer_id": "CustID", "ordered_at": "Date", "amount": "Amount"},
                                         "timestamp_format": "%Y%m%d"}}}, {"max_quarantined_share": 0.5})
    reconciled(result)
    orders = result.tables["orders"]
    assert orders["order_id"].tolist() == ["row-1", "row-2", "row-3"]
    assert orders["customer_id"].tolist() == ["00001", "00002", "00001"]
    assert orders["ordered_at"].tolist() == [pd.Timestamp("1997-01-01"), pd.Timestamp("1997-01-12"), pd.Timestamp("1997-01-02")]
    # the copy of a row is still an exact copy: the derived id is not part of the comparison
    assert reasons(result, "orders") == ["orders.row: an exact copy of source_row 2 (every column equal: a duplicated export row)"]
    assert any("no order_id" in note for note in result.notes)


def test_order_lines_without_an_order_id_are_fatal(tmp_path):
    text = fatal(folder(tmp_path, orders_csv="customer_id,ordered_at,amount\na,2024-01-01,10\n"),
                 {"tables": {"orders": {"lines": True}}})
    assert "orders: missing required column 'order_id'" in text


def test_order_lines_are_summed_into_orders(tmp_path):
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=LINES),
                  {"tables": {"orders": {**LINE_MAP, "lines": True, "negative_amounts": "returns"}}})
    reconciled(result)
    orders = result.tables["orders"]
    assert orders["order_id"].tolist() == ["536365", "536366", "C536367"]
    assert orders["amount"].tolist() == [15.5, 7.0, 5.5]
    assert orders["ordered_at"].iloc[0] == pd.Timestamp("2024-01-01 10:00")  # the earliest line
    assert orders["status"].tolist()[2] == "refund"
    assert "orders: 4 order lines kept as 3 orders" in " ".join(result.notes)


def test_an_order_whose_lines_name_two_customers_is_quarantined_whole(tmp_path):
    lines = LINES + "536366,17,2024-01-03 09:00,1.00,C\n"
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=lines),
                  {"tables": {"orders": {**LINE_MAP, "lines": True, "negative_amounts": "returns"}}},
                  {"max_quarantined_share": 0.5})
    assert reasons(result, "orders") == ["orders.customer_id: the lines of order '536366' name different customers ('17', '18')"] * 2
    assert result.tables["orders"]["order_id"].tolist() == ["536365", "C536367"]


def test_a_copied_line_is_dropped_and_its_order_kept(tmp_path):
    lines = LINES + "536365,17,2024-01-01 10:01,5.50,B\n"
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=lines),
                  {"tables": {"orders": {**LINE_MAP, "lines": True, "negative_amounts": "returns"}}})
    assert reasons(result, "orders") == ["orders.row: an exact copy of source_row 1 (every column equal: a duplicated export row)"]
    assert result.tables["orders"]["amount"].tolist()[0] == 15.5


def test_a_line_with_a_bad_amount_takes_its_order_to_the_quarantine(tmp_path):
    lines = LINES + "536366,18,2024-01-03 09:00,lots,C\n"
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=lines),
                  {"tables": {"orders": {**LINE_MAP, "lines": True, "negative_amounts": "returns"}}},
                  {"max_quarantined_share": 0.5})
    assert reasons(result, "orders") == [
        "orders.order_id: '536366' has a quarantined line (source_row 4): the order's total would be wrong",
        "orders.amount: 'lots' is not a number"]


def test_a_credit_note_is_quarantined_by_default_with_the_option_named(tmp_path):
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=LINES), {"tables": {"orders": {**LINE_MAP, "lines": True}}},
                  {"max_quarantined_share": 0.5})
    assert reasons(result, "orders") == ["orders.amount: order 'C536367' sums to -5.5 (expected >= 0; a credit note? "
                                         "set source.tables.orders.negative_amounts: returns)"]


def test_a_credit_note_is_a_return_never_a_purchase(tmp_path):
    orders = HEADER + "o1,17,2024-01-01,10\no2,17,2024-03-01,20\nc1,17,2024-06-01,-20\n"
    result = load(folder(tmp_path, customers_csv=CUSTOMERS, orders_csv=orders), {"tables": {"orders": {"negative_amounts": "returns"}}})
    f = build_features(result.tables, [pd.Timestamp("2024-07-01")], config=None).set_index("customer_id").loc["17"]
    assert f["orders_total"] == 2 and f["amount_total"] == 30 and f["returns_total"] == 1 and f["returns_365d"] == 1
    assert f["days_since_last_order"] == (pd.Timestamp("2024-07-01") - pd.Timestamp("2024-03-01")).days


def test_an_exact_copy_of_an_interaction_is_quarantined(tmp_path):
    interactions = "customer_id,occurred_at,channel,direction\na,2024-01-05,call,outbound\na,2024-01-05,call,outbound\n" \
                   "a,2024-01-06,call,outbound\na,2024-01-07,call,outbound\na,2024-01-08,call,outbound\n"
    result = load(folder(tmp_path, orders_csv=ORDERS, interactions_csv=interactions))
    assert reasons(result, "interactions") == [
        "interactions.row: an exact copy of source_row 0 (every column equal: a duplicated export row)"]


# -- the gate -----------------------------------------------------------------------------------------

def test_a_table_with_too_many_quarantined_rows_is_fatal_with_its_leading_reasons(tmp_path):
    orders = ORDERS + "o4,b,2024-03-02,-1\no5,b,2024-03-03,-2\n"
    text = fatal(folder(tmp_path, orders_csv=orders))
    assert "orders: 2 of 5 rows (40%) are quarantined (more than validation.max_quarantined_share 20%)" in text
    assert "2 x orders.amount: -1 is negative" in text
    assert len(load(folder(tmp_path, orders_csv=orders), validation={"max_quarantined_share": 0.5}).tables["orders"]) == 3


def test_the_gate_still_leaves_the_quarantine_for_people_to_read(tmp_path):
    from features.inputs import validate_source

    path = folder(tmp_path / "in", orders_csv=ORDERS + "o4,b,2024-03-02,-1\no5,b,2024-03-03,-2\n")
    with pytest.raises(ContractError):
        validate_source(SourceConfig(), ValidationConfig(), path, tmp_path / "out")
    assert len(pd.read_csv(tmp_path / "out" / "quarantine_orders.csv")) == 2


# -- degenerate companies -------------------------------------------------------------------------------

def test_one_customer_with_one_order_gets_its_features(tmp_path):
    result = load(folder(tmp_path, orders_csv=HEADER + "o1,a,2024-01-01,10\n"))
    f = build_features(result.tables, [pd.Timestamp("2024-02-01")])
    assert f["customer_id"].tolist() == ["a"] and f["days_since_last_order"].tolist() == [31]


def test_all_orders_on_one_day(tmp_path):
    orders = HEADER + "".join(f"o{i},c{i % 7},2024-01-01 10:{i:02d},5\n" for i in range(40))
    result = load(folder(tmp_path, orders_csv=orders))
    f = build_features(result.tables, [pd.Timestamp("2024-02-01")])
    assert len(f) == 7 and f["overdue_ratio"].isna().all() and np.isfinite(f["btyd_p_alive"]).all()


def test_a_cancellation_before_the_first_order_is_quarantined_and_the_customer_stays_a_client(tmp_path):
    orders = HEADER + "".join(f"o{m},a,2024-{m:02d}-05,10\n" for m in range(2, 13))
    cancellations = "customer_id,cancelled_at\na,2024-01-10\n"
    result = load(folder(tmp_path, orders_csv=orders, cancellations_csv=cancellations), validation={"max_quarantined_share": 1})
    assert reasons(result, "cancellations") == [
        "cancellations.cancelled_at: 2024-01-10 00:00:00 is before the customer's first order (2024-02-05 00:00:00): "
        "a client cannot leave before buying"]
    assert build_features(result.tables, [pd.Timestamp("2024-12-01")])["customer_id"].tolist() == ["a"]


def test_one_stray_late_order_does_not_move_everyones_date(tmp_path):
    orders = HEADER + "".join(f"o{i},c{i % 30},2024-{1 + i % 6:02d}-{1 + i % 28:02d},5\n" for i in range(600)) \
        + "stray,c1,2024-12-20,5\n"
    result = load(folder(tmp_path, orders_csv=orders), validation={"max_quarantined_share": 1})
    end = result.tables["orders"]["ordered_at"].sort_values().iloc[-2]
    assert data_end(result.tables) == end and default_as_of(result.tables) == (end + pd.Timedelta(days=1)).normalize()
    warnings = check_as_of(result.tables, default_as_of(result.tables), 90)
    assert any("1 event(s) lie more than 30 days after the rest of the data" in w for w in warnings)


def test_a_scoring_date_the_data_cannot_describe_is_refused_or_warned(tmp_path):
    result = load(folder(tmp_path, orders_csv=ORDERS))
    with pytest.raises(ValueError, match="before the first order"):
        check_as_of(result.tables, pd.Timestamp("2023-06-01"), 90)
    with pytest.raises(ValueError, match="more than the 90-day horizon"):
        check_as_of(result.tables, pd.Timestamp("2024-07-01"), 90)
    assert "days after the end of the data" in check_as_of(result.tables, pd.Timestamp("2024-03-20"), 90)[0]
    assert check_as_of(result.tables, pd.Timestamp("2024-03-02"), 90) == []


def test_an_answer_before_the_customer_was_created_is_kept(tmp_path):
    """A CRM's created_at is often later than the first contact: decided, not an error."""
    customers = "customer_id,created_at\na,2024-01-15\nb,2024-01-01\n"
    nps = "customer_id,answered_at,score\na,2024-01-02,9\n"
    result = load(folder(tmp_path, orders_csv=ORDERS, customers_csv=customers, nps_csv=nps))
    assert len(result.tables["nps"]) == 1


def test_rows_read_equal_kept_plus_quarantined_on_a_messy_export(tmp_path):
    from features.exports import write_online_retail
    from features.simulate import simulate

    write_online_retail(simulate(150, seed=4, contractual=False), tmp_path)
    settings = Settings.model_validate(__import__("yaml").safe_load(
        (Path(__file__).resolve().parents[3] / "configs" / "online-retail.yaml").read_text()))
    result = load_source(settings.source, settings.validation, data_dir=tmp_path, data_end=pd.Timestamp("2026-01-01"))
    reconciled(result)
    read = pd.read_csv(tmp_path / "sales_export.csv", dtype=str)
    assert result.summary.set_index("table").loc["orders", "rows_read"] == len(read)
    credit = read["Invoice"].str.startswith("C")
    kept = result.tables["orders"]
    assert (kept["status"] == "refund").sum() == read.loc[credit, "Invoice"].nunique()
    assert not os.path.exists(tmp_path / "orders.csv")


def test_a_wide_customers_table_gives_features_from_its_first_fifty_attributes(tmp_path):
    names = ["customer_id", "created_at"] + [f"x{i}" for i in range(900)]
    rows = [",".join([c, "2023-01-01"] + [str((i + j) % 3) for j in range(900)]) for i, c in enumerate("ab")]
    result = load(folder(tmp_path, orders_csv=ORDERS, customers_csv=",".join(names) + "\n" + "\n".join(rows) + "\n"))
    f = build_features(result.tables, [pd.Timestamp("2024-04-01")])
    assert [c for c in f if c.startswith("attr_")] == [f"attr_x{i}" for i in range(50)]
