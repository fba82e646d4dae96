"""The input data contract: read a data folder, validate it, quarantine the bad rows.

A data folder holds one file per table, ``<table>.parquet`` or ``<table>.csv`` (a Parquet
dataset folder named ``<table>.parquet`` also works); other files are ignored.

| table | required columns | optional columns |
|---|---|---|
| orders (required) | order_id (unique), customer_id, ordered_at, amount (>= 0) | status (completed, returned, cancelled) |
| customers | customer_id (unique), created_at | segment, acquisition_channel, region, any other (kept as read) |
| interactions | customer_id, occurred_at, channel (free text), direction (outbound, inbound) | |
| nps | customer_id, answered_at, score (integer 0..10) | comment |
| complaints | complaint_id (unique), customer_id, opened_at, resolved_at (empty while open) | severity (low, medium, high), public (true/false) |
| cancellations | customer_id, cancelled_at | |

``customers`` absent: derived from the kept orders, one row per customer with created_at =
the first ordered_at. Columns not in the contract are kept as read, in every table.

Reading: CSV cells are read as text (so a CSV id ``17`` stays ``"17"``); an empty cell is
missing. Timestamps are ISO 8601 text or Parquet timestamps, naive (taken as UTC) or with
an offset/zone (converted to UTC, then made naive). Values of the typed columns
(timestamps, numbers, flags, categories, ids) that read ``null``, ``none``, ``nan``,
``na``, ``n/a``, ``nat`` or ``<na>`` (any case) count as missing; free text keeps them.

Canonical dtypes of the clean tables: ids and text ``str`` (ids stripped; a whole
Parquet float id 17.0 becomes ``"17"``), timestamps ``datetime64[us]`` (naive UTC),
amount ``float64``, score ``int64``, public ``bool`` (empty = false), categories
(status, severity, direction) and channel stripped and lower-cased.

Fatal problems (``ContractError``; all are collected, then raised once, one line each
naming table, column and what was expected): a missing data folder, a missing orders
table, a table given both as CSV and Parquet, an unreadable file, a missing required
column, and a typed column of which not one value can be read as its type while at least
two are present (amount entirely text, dates written 03/01/2024): a format problem of the
whole column, not of single rows. A single unreadable value is a row problem.

Row problems (the row goes to the table's quarantine with a reason; several reasons are
joined with ``'; '``): a value of the wrong type, a missing required value, a value that
breaks its column's rule (amount < 0, score outside 0..10 or not whole, unknown status,
direction or severity, resolved_at before opened_at), a timestamp after ``data_end`` (in
the future of the data), an event whose customer is not among the kept customers (when
customers is derived: has no kept order), and a repeated id (order_id, complaint_id,
customers.customer_id): among the rows without other problems the first occurrence is
kept, every later row with that id is quarantined. For every table, rows read = rows
kept + rows quarantined.

The per-column rules are the pandera schemas in ``SCHEMAS`` (canonical dtypes,
nullability, checks, unique ids; ``SCHEMAS[t].validate(tables[t])`` holds for every clean
table), run with ``lazy=True`` on the parsed columns; their failure cases become the row
reasons. The rules that need other rows or tables (unknown customer, repeated id) are
DuckDB joins over the Arrow columns; the future check is a vectorised comparison. A
reason reads ``<table>.<column>: <value> <what is wrong>``, e.g. ``nps.score: 11 is
outside 0..10``; values are shown as read (text quoted).
"""
from __future__ import annotations

import errno

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow

TABLES: tuple[str, ...] = ("customers", "orders", "interactions", "nps", "complaints", "cancellations")
REQUIRED_TABLES = ("orders",)

# Column kinds (how a raw column is parsed) and their canonical dtypes.
ID, TIMESTAMP, NUMBER, INTEGER, FLAG, CATEGORY, LOWER_TEXT, TEXT = (
    "id", "timestamp", "number", "integer", "flag", "category", "lower_text", "text")
CANONICAL_DTYPES = {ID: "str", TIMESTAMP: "datetime64[us]", NUMBER: "float64", INTEGER: "int64", FLAG: "bool",
                    CATEGORY: "str", LOWER_TEXT: "str", TEXT: "str"}
_TYPE_NAMES = {TIMESTAMP: "an ISO 8601 timestamp", NUMBER: "a number", INTEGER: "a number", FLAG: "true/false"}
NULL_TOKENS = ("null", "none", "nan", "na", "n/a", "nat", "<na>")
_NULL_VARIANTS = pyarrow.array(sorted({"".join(v) for t in NULL_TOKENS
                                       for v in itertools.product(*({c.lower(), c.upper()} for c in t))}))
TRUE_TOKENS = ("true", "t", "yes", "y", "1")
FALSE_TOKENS = ("false", "f", "no", "n", "0")


def _col(kind: str, expected: str, checks: list[pa.Check] | None = None, *, required: bool = True,
         nullable: bool = False, unique: bool = False) -> pa.Column:
    """A contract column: ``expected`` completes 'missing required column ... (expected ...)'."""
    return pa.Column(CANONICAL_DTYPES[kind], checks or [], nullable=nullable, unique=unique, required=required,
                     report_duplicates="exclude_first", description=expected, metadata={"kind": kind})


def _one_of(*values: str) -> pa.Check:
    return pa.Check.isin(values, error="{value} is not one of " + ", ".join(values))


# Check errors are templates: '{value}' is the offending value as read; in a table-wide
# check, '{column}' is that column's value. A row's reason is '<table>.<column>: <error>'.
SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "customers": pa.DataFrameSchema({
        "customer_id": _col(ID, "customer_id, the customer's unique id", unique=True),
        "created_at": _col(TIMESTAMP, "created_at, when the customer was created (a timestamp)"),
        "segment": _col(TEXT, "segment, the customer's segment", required=False, nullable=True),
        "acquisition_channel": _col(TEXT, "acquisition_channel, how the customer was won", required=False, nullable=True),
        "region": _col(TEXT, "region, the customer's region", required=False, nullable=True),
    }, name="customers"),
    "orders": pa.DataFrameSchema({
        "order_id": _col(ID, "order_id, the order's unique id", unique=True),
        "customer_id": _col(ID, "customer_id, the customer who ordered"),
        "ordered_at": _col(TIMESTAMP, "ordered_at, when the order was placed (a timestamp)"),
        "amount": _col(NUMBER, "amount >= 0, the order value", [
            pa.Check(np.isfinite, name="finite", error="{value} is not a finite number"),
            pa.Check.ge(0, error="{value} is negative (expected >= 0)")]),
        "status": _col(CATEGORY, "status, one of completed, returned, cancelled, refund (a credit note: a return, "
                       "never a purchase)", [_one_of("completed", "returned", "cancelled", "refund")],
                       required=False, nullable=True),
    }, name="orders"),
    "interactions": pa.DataFrameSchema({
        "customer_id": _col(ID, "customer_id, the customer concerned"),
        "occurred_at": _col(TIMESTAMP, "occurred_at, when the interaction happened (a timestamp)"),
        "channel": _col(LOWER_TEXT, "channel, free text such as email, call, meeting", nullable=True),
        "direction": _col(CATEGORY, "direction, outbound (the company reached out) or inbound (the customer did)",
                          [_one_of("outbound", "inbound")]),
    }, name="interactions"),
    "nps": pa.DataFrameSchema({
        "customer_id": _col(ID, "customer_id, the customer who answered"),
        "answered_at": _col(TIMESTAMP, "answered_at, when the answer was given (a timestamp)"),
        "score": _col(INTEGER, "score, an integer 0..10", [
            pa.Check(lambda s: s % 1 == 0, name="integer", error="{value} is not an integer"),
            pa.Check.in_range(0, 10, error="{value} is outside 0..10")]),
        "comment": _col(TEXT, "comment, free text", required=False, nullable=True),
    }, name="nps"),
    "complaints": pa.DataFrameSchema({
        "complaint_id": _col(ID, "complaint_id, the complaint's unique id", unique=True),
        "customer_id": _col(ID, "customer_id, the customer who complained"),
        "opened_at": _col(TIMESTAMP, "opened_at, when the complaint was opened (a timestamp)"),
        "resolved_at": _col(TIMESTAMP, "resolved_at, when it was resolved (a timestamp, empty while open)", nullable=True),
        "severity": _col(CATEGORY, "severity, one of low, medium, high", [_one_of("low", "medium", "high")],
                         required=False, nullable=True),
        "public": _col(FLAG, "public, true for a public complaint (a review)", required=False),
    }, checks=[pa.Check(lambda d: ~(d["resolved_at"] < d["opened_at"]), name="resolved_after_opened",
                        error="resolved_at: {resolved_at} is before opened_at {opened_at}")], name="complaints"),
    "cancellations": pa.DataFrameSchema({
        "customer_id": _col(ID, "customer_id, the customer who cancelled"),
        "cancelled_at": _col(TIMESTAMP, "cancelled_at, when the contract was cancelled (a timestamp)"),
    }, name="cancellations"),
}

ID_COLUMNS = {t: [c for c, col in s.columns.items() if col.unique] for t, s in SCHEMAS.items()}


class ContractError(Exception):
    """Fatal contract problems; ``problems`` holds one line each, naming table, column and what was expected.

    ``transient``: every problem is a source that did not answer (a database connection
    refused, dropped or timed out, a file on a network share that timed out), not the data:
    trying again may succeed (``pipelines.orchestration.retrying``). Otherwise never retried."""

    def __init__(self, problems: list[str], result: ValidatedData | None = None, transient: bool = False):
        self.problems = list(problems)
        self.result = result  # the validation outcome when the gate stopped a validated extract
        self.transient = transient
        super().__init__("\n".join(self.problems))


NETWORK_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "EHOSTDOWN", "ENETUNREACH",
    "ENETDOWN", "ENETRESET", "EPIPE", "ESTALE", "EAGAIN", "EBUSY", "ENOLINK", "ECOMM", "EREMOTEIO")
    if hasattr(errno, name))


def network_os_error(exc: BaseException) -> bool:
    """An ``OSError`` of the kinds a network (a server, a network share) gives and may not
    give on a second try: refused, reset, timed out, unreachable, a stale file handle."""
    return isinstance(exc, (ConnectionError, TimeoutError)) or (isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS)


@dataclass(frozen=True)
class ValidatedData:
    """The outcome of validation.

    tables: clean rows only, canonical dtypes, fresh RangeIndex; an absent optional table is
        an absent key, except customers (derived from orders when absent).
    quarantine: for each table read, the offending rows as read (same dtypes as the raw frame), a
        ``reason`` and ``source_row`` (0-based data row in the file, header not counted); an
        empty frame for a clean table. A column of the input that is itself called reason or
        source_row is renamed ``<name>_in_file``.
    summary: table, rows_read, rows_kept, rows_quarantined; one row per table read (a
        derived customers table has none); rows_read == rows_kept + rows_quarantined.
    data_end: the extract time; timestamps after it were quarantined.
    row_problems: table, column, check, rows, example: how many rows broke each rule
        (a row with several problems counts once per rule).
    notes: plain sentences, e.g. that customers was derived.
    sources: the clean tables as the feature engine reads them: the path of a Parquet file
        that is clean as it is (it was checked by DuckDB and is read into ``tables`` only
        on first access), else the frame of ``tables``.
    """

    tables: Mapping[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    data_end: pd.Timestamp
    row_problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["table", "column", "check", "rows", "example"]))
    notes: list[str] = field(default_factory=list)
    sources: dict = field(default_factory=dict)

    def skipped_tables(self) -> list[str]:
        """Optional tables the input did not have (customers never: it is derived when absent)."""
        return [t for t in TABLES if t not in self.tables]


