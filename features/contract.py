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

import functools
import itertools
import os
import string
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from features.io import write_atomic

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
        "status": _col(CATEGORY, "status, one of completed, returned, cancelled",
                       [_one_of("completed", "returned", "cancelled")], required=False, nullable=True),
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
# Row order of the reasons within one row: by column, then by stage.
_PARSE, _CHECK, _FUTURE, _UNKNOWN, _DUPLICATE = range(5)


class ContractError(Exception):
    """Fatal contract problems; ``problems`` holds one line each, naming table, column and what was expected."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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
    """

    tables: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    data_end: pd.Timestamp
    row_problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["table", "column", "check", "rows", "example"]))
    notes: list[str] = field(default_factory=list)

    def skipped_tables(self) -> list[str]:
        """Optional tables the input did not have (customers never: it is derived when absent)."""
        return [t for t in TABLES if t not in self.tables]


# -- reading ------------------------------------------------------------------------------------

def read_tables(data_dir: Path) -> dict[str, pd.DataFrame]:
    """Read every contract table present in ``data_dir``, as it is.

    Input: a folder with ``<table>.parquet`` or ``<table>.csv`` per table. Output: table ->
    raw frame (CSV cells as ``str``, empty cells missing; Parquet with its own types).
    Raises ``ContractError`` listing every problem: a missing folder, a missing orders
    table, a table present as both CSV and Parquet, an unreadable file (with the reader's
    error).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContractError([f"data folder {data_dir} does not exist or is not a folder "
                             "(expected a folder with orders.csv or orders.parquet)"])
    raw, problems = {}, []
    for table in TABLES:
        found = [p for p in (data_dir / f"{table}.csv", data_dir / f"{table}.parquet") if p.exists()]
        if len(found) > 1:
            problems.append(f"{table}: both {found[0].name} and {found[1].name} exist in {data_dir} "
                            "(expected one file per table)")
        elif not found:
            if table in REQUIRED_TABLES:
                problems.append(f"{table}: missing required table (expected {table}.csv or {table}.parquet in {data_dir})")
        else:
            try:
                raw[table] = _read_file(found[0])
            except Exception as exc:  # any reader error makes the file unusable: say which and why
                detail = (str(exc).strip().splitlines() or [""])[0][:300]
                problems.append(f"{table}: cannot read {found[0]} ({type(exc).__name__}: {detail})")
    if problems:
        raise ContractError(problems)
    return raw


def _read_file(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    # Arrow's reader: an order of magnitude faster than pandas' C engine, and it rejects a
    # row with too many fields instead of silently shifting it into the index.
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], engine="pyarrow")


# -- parsing: raw columns -> canonical dtypes, with the values that could not be read ------------

def _as_text(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.na_value is np.nan:
        return series
    return series.astype("str")


def _arrow(series: pd.Series) -> pyarrow.Array | pyarrow.ChunkedArray:
    """A column as Arrow data (zero-copy for pandas' Arrow-backed ``str``)."""
    return pyarrow.array(series, from_pandas=True)


def _mask(series: pd.Series, mask: pd.Series | np.ndarray) -> pd.Series:
    """Set ``mask`` rows missing, without copying the column when there are none."""
    mask = np.asarray(mask, dtype=bool)
    return series.mask(mask) if mask.any() else series


def _text_bytes(arr: pyarrow.Array | pyarrow.ChunkedArray) -> int:
    """Bytes of string data (from the offsets: no pass over the values)."""
    total = 0
    for c in arr.chunks if isinstance(arr, pyarrow.ChunkedArray) else [arr]:
        if len(c):
            width = np.int64 if pyarrow.types.is_large_string(c.type) else np.int32
            offsets = np.frombuffer(c.buffers()[1], dtype=width)
            total += int(offsets[c.offset + len(c)]) - int(offsets[c.offset])
    return total


def _strip(text: pd.Series) -> pd.Series:
    """Strip surrounding space ('' -> missing); the column is copied only if some value needs it."""
    arr = _arrow(text)
    if _text_bytes(pc.utf8_trim_whitespace(arr)) != _text_bytes(arr):
        text = text.str.strip()
        arr = _arrow(text)
    if pc.any(pc.equal(arr, "")).as_py():
        text = text.mask((text == "").to_numpy(bool, na_value=False))
    return text


def _null_tokens(text: pd.Series) -> np.ndarray:
    """Values that spell a missing value (null, None, NaN, N/A, ...; any case), as a mask."""
    mask = pc.is_in(_arrow(text), value_set=_NULL_VARIANTS)
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _parse_id(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series):
        whole = (series % 1 == 0).to_numpy(dtype=bool, na_value=False) & (series.abs() < 2**53).to_numpy(bool, na_value=False)
        text = series.astype("str")
        if whole.any():
            text = text.mask(whole, series.where(whole).astype("Int64").astype("str"))
        return text
    text = _strip(_as_text(series))
    return _mask(text, _null_tokens(text))


def _parse_timestamp(series: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        value = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(series):
        value = series
    elif pd.api.types.is_numeric_dtype(series):  # epoch numbers are ambiguous (s? ms?): not read
        value = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    else:
        source = _as_text(series) if pd.api.types.is_string_dtype(series) else series
        value = pd.to_datetime(source, errors="coerce", utc=True, format="ISO8601")
        failed = (value.isna() & series.notna()).to_numpy(bool)
        if failed.any() and pd.api.types.is_string_dtype(source):  # a second chance with surrounding space stripped
            retry = pd.to_datetime(source[failed].str.strip(), errors="coerce", utc=True, format="ISO8601")
            value = value.copy()
            value[failed] = retry
        value = value.dt.tz_localize(None)
    value = value.astype("datetime64[us]")
    return value, _unreadable(series, value)


def _parse_number(series: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype("float64"), None
    text = _as_text(series)
    try:  # Arrow's cast is exact and fast; it refuses the whole column if one value is bad
        value = pd.Series(pc.cast(pyarrow.array(text, from_pandas=True), pyarrow.float64()).to_numpy(zero_copy_only=False),
                          index=series.index)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        value = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
    return value, _unreadable(series, value)


def _parse_flag(series: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """Nullable ``boolean`` (missing stays missing here; the canonical bool reads it as false)."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean"), None
    if pd.api.types.is_numeric_dtype(series):
        value = series.map({1: True, 0: False}).astype("boolean")
    else:
        text = _as_text(series).str.strip().str.lower()
        value = pd.Series(pd.NA, index=series.index, dtype="boolean")
        value = value.mask(text.isin(TRUE_TOKENS).to_numpy(bool), True).mask(text.isin(FALSE_TOKENS).to_numpy(bool), False)
    return value, _unreadable(series, value)


def _parse_text(series: pd.Series, lower: bool) -> pd.Series:
    text = _strip(_as_text(series))
    return text.str.lower() if lower else text


def _unreadable(raw: pd.Series, value: pd.Series) -> np.ndarray | None:
    """Rows with a value present in ``raw`` that did not parse (null tokens count as missing)."""
    bad = (value.isna() & raw.notna()).to_numpy(bool, copy=True)
    if not bad.any():
        return None
    if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw)):
        pos = np.flatnonzero(bad)
        text = _as_text(raw.iloc[pos]).str.strip()
        empty = _null_tokens(text) | (text == "").to_numpy(bool, na_value=True)
        bad[pos[empty]] = False
    return bad if bad.any() else None


@dataclass
class _Parsed:
    frame: pd.DataFrame               # contract columns parsed (canonical dtypes, score as float64) + extras as read
    unreadable: dict[str, np.ndarray]  # column -> rows whose value is present but not of the column's type


def _parse_table(table: str, raw: pd.DataFrame) -> tuple[_Parsed, list[str]]:
    """Parse the contract columns of ``raw``; fatal problems for columns with no readable value."""
    columns, unreadable, problems = {}, {}, []
    for name, col in SCHEMAS[table].columns.items():
        if name not in raw.columns:
            continue
        kind, series, bad = col.metadata["kind"], raw[name], None
        if kind == ID:
            value = _parse_id(series)
        elif kind == TIMESTAMP:
            value, bad = _parse_timestamp(series)
        elif kind in (NUMBER, INTEGER):
            value, bad = _parse_number(series)
        elif kind == FLAG:
            value, bad = _parse_flag(series)
        elif kind == CATEGORY:
            value = _parse_text(series, lower=True)
            value = _mask(value, _null_tokens(value))
        else:
            value = _parse_text(series, lower=kind == LOWER_TEXT)
        if bad is not None:
            unreadable[name] = np.flatnonzero(bad)
            if len(unreadable[name]) > 1 and not value.notna().any():
                examples = ", ".join(f"'{_one_line(v)}'" for v in _as_text(series.iloc[unreadable[name][:3]]))
                problems.append(f"{table}: column '{name}' has no value readable as {_TYPE_NAMES[kind]} "
                                f"(expected {col.description}; found {examples})")
        columns[name] = value
    extras = {c: raw[c] for c in raw.columns if c not in columns}
    return _Parsed(pd.DataFrame({**columns, **extras}, index=raw.index), unreadable), problems


# -- reasons ------------------------------------------------------------------------------------

@dataclass
class _Issue:
    """Rows breaking one rule and their messages (built only for those rows)."""
    rows: np.ndarray      # positions, int64
    messages: pd.Series   # str, aligned with rows
    order: int            # sort key of this reason within a row
    column: str
    check: str


def _timestamp_text(series: pd.Series) -> pd.Series:
    """'2024-03-01 10:00:00' (fractions of a second only when present), with Arrow's
    cast: pandas' formatting is ten times slower, which counts for millions of rows."""
    text = pc.replace_substring_regex(pc.cast(_arrow(series), pyarrow.string()), r"\.000000$", "")
    return text.to_pandas().astype("str")


def _shown(table: str, raw: pd.DataFrame, column: str, rows: np.ndarray) -> pd.Series:
    """The values of ``column`` at ``rows`` as read, as text: numbers and timestamps bare
    (11.0 shows as 11), ids and text quoted."""
    series = raw[column].iloc[rows]
    if pd.api.types.is_datetime64_any_dtype(series):
        return _timestamp_text(series)
    text = series.astype("str").reset_index(drop=True)
    kind = SCHEMAS[table].columns[column].metadata["kind"] if column in SCHEMAS[table].columns else TEXT
    if kind in (NUMBER, INTEGER):
        text = text.str.strip().str.removesuffix(".0")
    return text if kind in (TIMESTAMP, NUMBER, INTEGER, FLAG) else "'" + text + "'"


def _render(template: str, table: str, raw: pd.DataFrame, rows: np.ndarray, value_column: str | None) -> pd.Series:
    """Fill '{value}' / '{column}' placeholders with the values as read at ``rows``."""
    out = pd.Series("", index=range(len(rows)), dtype="str")
    for literal, name, _, _ in string.Formatter().parse(template):
        out = out + literal
        if name is not None:
            out = out + _shown(table, raw, value_column if name == "value" else name, rows)
    return out


def _issue(table: str, column: str, check: str, rows: np.ndarray, messages: pd.Series | str, stage: int,
           position: dict[str, int]) -> _Issue:
    prefix = f"{table}.{column}: "
    if isinstance(messages, str):
        messages = pd.Series(prefix + messages, index=range(len(rows)), dtype="str")
    else:
        messages = prefix + messages.reset_index(drop=True)
    return _Issue(np.asarray(rows, dtype="int64"), messages, position.get(column, 99) * 10 + stage, column, check)


def _schema_issues(table: str, parsed: _Parsed, raw: pd.DataFrame, position: dict[str, int]) -> tuple[list[_Issue], list[str]]:
    """Run the table's pandera schema (lazy) on the parsed columns; failure cases -> issues."""
    schema = _row_schema(table, frozenset(SCHEMAS[table].columns).intersection(parsed.frame.columns))
    frame = parsed.frame[list(schema.columns)]
    try:
        schema.validate(frame, lazy=True)
        return [], []
    except SchemaErrors as exc:
        cases = exc.failure_cases
    issues, problems = [], []
    whole = cases[cases["index"].isna()]
    for row in whole.itertuples():  # failures of a whole column (its dtype): a bug in parsing or odd Parquet types
        problems.append(f"{table}: column '{row.column}' failed {row.check} ({row.failure_case})")
    cases = cases[cases["index"].notna()]
    column_checks = {(ck.error or ck.name): ck for col in schema.columns.values() for ck in col.checks}
    frame_checks = {(ck.error or ck.name): ck for ck in schema.checks}
    # a table-wide check lists a failing row once per column: group those by check only
    is_frame = cases["schema_context"].eq("DataFrameSchema") & cases["check"].isin(list(frame_checks))
    for check, part in cases[is_frame].groupby("check", sort=False):
        rows = np.unique(part["index"].astype("int64").to_numpy())
        column, _, template = check.partition(": ")  # the template starts with the column it is about
        issues.append(_issue(table, column, frame_checks[check].name, rows,
                             _render(template, table, raw, rows, None), _CHECK, position))
    for (column, check), part in cases[~is_frame].groupby(["column", "check"], sort=False):
        rows = np.unique(part["index"].astype("int64").to_numpy())
        if check == "not_nullable":  # unreadable values are null after parsing: already named
            if column in parsed.unreadable:
                rows = np.setdiff1d(rows, parsed.unreadable[column], assume_unique=True)
            if len(rows):
                issues.append(_issue(table, column, "missing", rows, "missing", _CHECK, position))
        elif check in column_checks:
            issues.append(_issue(table, column, column_checks[check].name, rows,
                                 _render(check, table, raw, rows, column), _CHECK, position))
        else:
            problems.append(f"{table}: column '{column}' failed {check} on {len(rows)} rows")
    return issues, problems


@functools.lru_cache(maxsize=64)
def _row_schema(table: str, columns: frozenset[str]) -> pa.DataFrameSchema:
    """``SCHEMAS[table]`` as run on the parsed ``columns`` present: score is still float64
    (to name a 4.5), a flag still nullable ``boolean``, and repeated ids are left to
    ``_duplicate_issues`` (the first *valid* row is kept)."""
    schema = SCHEMAS[table]
    updates = {name: {"unique": False} for name in ID_COLUMNS[table]}
    for name, col in schema.columns.items():
        if col.metadata["kind"] == INTEGER:
            updates[name] = {"dtype": "float64"}
        elif col.metadata["kind"] == FLAG:
            updates[name] = {"dtype": "boolean", "nullable": True}
    schema = schema.update_columns(updates) if updates else schema
    absent = [c for c in schema.columns if c not in columns]
    return schema.remove_columns(absent) if absent else schema


def _parse_issues(table: str, parsed: _Parsed, raw: pd.DataFrame, position: dict[str, int]) -> list[_Issue]:
    out = []
    for name, rows in parsed.unreadable.items():
        kind = SCHEMAS[table].columns[name].metadata["kind"]
        text = _as_text(raw[name].iloc[rows]).reset_index(drop=True)
        out.append(_issue(table, name, "unreadable", rows, "'" + text + "' is not " + _TYPE_NAMES[kind], _PARSE, position))
    return out


def _future_issues(table: str, parsed: _Parsed, data_end: pd.Timestamp, position: dict[str, int]) -> list[_Issue]:
    out = []
    for name, col in SCHEMAS[table].columns.items():
        if col.metadata["kind"] == TIMESTAMP and name in parsed.frame:
            rows = np.flatnonzero((parsed.frame[name] > data_end).to_numpy(bool))
            if len(rows):
                values = _timestamp_text(parsed.frame[name].iloc[rows])
                out.append(_issue(table, name, "future", rows,
                                  values + f" is in the future of the data (after {data_end})", _FUTURE, position))
    return out


def _sql(con: duckdb.DuckDBPyConnection, query: str, **tables: dict) -> dict[str, np.ndarray]:
    """Run ``query`` over the given column dicts (Arrow or numpy, scanned zero-copy) in the
    validation's private in-memory DuckDB: its hash joins and aggregates are parallel and
    several times faster than Arrow's single-threaded kernels on tens of millions of ids."""
    try:
        for name, columns in tables.items():
            con.register(name, pyarrow.table(columns))
        return con.execute(query).fetchnumpy()
    finally:
        for name in tables:
            con.unregister(name)


def _rows_not_in(con: duckdb.DuckDBPyConnection, ids: pd.Series, pool: pyarrow.Array | pyarrow.ChunkedArray) -> np.ndarray:
    """Sorted positions of the non-missing ``ids`` absent from ``pool``."""
    return _sql(con, "SELECT pos FROM ev ANTI JOIN pool ON ev.id = pool.id WHERE ev.id IS NOT NULL ORDER BY pos",
                ev={"id": _arrow(ids), "pos": np.arange(len(ids), dtype=np.int64)}, pool={"id": pool})["pos"]


def _unknown_issue(con: duckdb.DuckDBPyConnection, table: str, parsed: _Parsed, known: pyarrow.Array,
                   referenced: pyarrow.Array, derived: bool, position: dict[str, int]) -> list[_Issue]:
    """Events whose customer is not among the kept customers (``known``); the reason says
    whether that customer was never there or its rows (``referenced``: the customer ids
    as read) were all quarantined."""
    ids = parsed.frame["customer_id"]
    rows = _rows_not_in(con, ids, known)
    if not len(rows):
        return []
    unknown = ids.iloc[rows].reset_index(drop=True)
    never = np.zeros(len(rows), dtype=bool)
    never[_rows_not_in(con, unknown, referenced)] = True
    if derived:
        was, never_text = (" has no valid order (all its orders are quarantined; customers is derived from orders)",
                           " has no order (customers is derived from orders)")
    else:
        was, never_text = " is not a valid customer (its customers row is quarantined)", " is not in customers"
    why = pd.Series(was, index=unknown.index, dtype="str").mask(never, never_text)
    return [_issue(table, "customer_id", "unknown_customer", rows, "'" + unknown + "'" + why, _UNKNOWN, position)]


def _duplicate_issues(con: duckdb.DuckDBPyConnection, table: str, parsed: _Parsed, flagged: np.ndarray,
                      position: dict[str, int]) -> list[_Issue]:
    """Repeated ids: the first row of each id among the rows without other problems is kept;
    every later row with that id (with or without other problems) is a duplicate."""
    out = []
    for name in ID_COLUMNS[table]:
        ids = parsed.frame[name]
        found = _sql(con, """
            WITH repeated AS (SELECT id FROM ev WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1),
                 r AS (SELECT ev.* FROM ev SEMI JOIN repeated USING (id)),
                 kept AS (SELECT id, min(pos) AS kept_at FROM r WHERE ok GROUP BY id)
            SELECT r.pos, kept.kept_at FROM r JOIN kept USING (id) WHERE r.pos > kept.kept_at ORDER BY r.pos""",
                     ev={"id": _arrow(ids), "pos": np.arange(len(ids), dtype=np.int64), "ok": ~flagged})
        rows = found["pos"]
        if len(rows):
            text = ("'" + ids.iloc[rows].reset_index(drop=True) + "' is a duplicate id (first kept at source_row "
                    + pd.Series(found["kept_at"], dtype="int64").astype("str") + ")")
            out.append(_issue(table, name, "duplicate", rows, text, _DUPLICATE, position))
    return out


def _combine(issues: list[_Issue]) -> pd.Series:
    """Row position -> its reasons joined with '; ' (rows without problems are absent)."""
    issues = [i for i in issues if len(i.rows)]
    if not issues:
        return pd.Series([], index=pd.Index([], dtype="int64"), dtype="str")
    rows = np.concatenate([i.rows for i in issues])
    order = np.concatenate([np.full(len(i.rows), i.order) for i in issues])
    messages = pd.concat([i.messages for i in issues], ignore_index=True)
    sort = np.lexsort((order, rows))
    rows = rows[sort]
    flat = _arrow(messages).take(pyarrow.array(sort))
    flat = flat.combine_chunks() if isinstance(flat, pyarrow.ChunkedArray) else flat
    uniq, start = np.unique(rows, return_index=True)
    if len(uniq) < len(rows):  # some rows have several reasons: join each row's list in Arrow
        lists = pyarrow.LargeListArray.from_arrays(pyarrow.array(np.append(start, len(rows)), pyarrow.int64()), flat)
        flat = pc.binary_join(lists, pyarrow.scalar("; ", flat.type))
    return flat.to_pandas().astype("str").set_axis(uniq)


# -- validation ---------------------------------------------------------------------------------

def _one_line(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _missing_columns(table: str, frame: pd.DataFrame) -> list[str]:
    """One problem per required column absent from ``frame``, with a hint when the name is
    there in another case or with spaces, or when the header looks like one unsplit column."""
    problems = []
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    unsplit = len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";\t|")
    for name, col in SCHEMAS[table].columns.items():
        if col.required and name not in frame.columns:
            hint = ""
            if name in lowered:
                hint = f"; found '{lowered[name]}': names are case- and space-sensitive"
            elif unsplit:
                hint = f"; the header is one column '{_one_line(frame.columns[0], 60)}': expected comma-separated values"
            problems.append(f"{table}: missing required column '{name}' (expected {col.description}{hint})")
    return problems


def _as_data_end(data_end) -> pd.Timestamp:
    if data_end is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s").as_unit("us")
    data_end = pd.Timestamp(data_end)
    if data_end.tzinfo is not None:
        data_end = data_end.tz_convert("UTC").tz_localize(None)
    return data_end.as_unit("us")


def _quarantine_frame(raw: pd.DataFrame, rows: np.ndarray, reasons: pd.Series) -> pd.DataFrame:
    taken = raw.iloc[rows].reset_index(drop=True)
    taken = taken.rename(columns={c: f"{c}_in_file" for c in ("reason", "source_row") if c in taken.columns})
    return taken.assign(reason=reasons.reset_index(drop=True), source_row=rows.astype("int64"))


def _canonical(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Cast the contract columns to their canonical dtypes (score float -> int64; a missing
    public flag -> false)."""
    flags = {n: frame[n].fillna(False) for n, c in SCHEMAS[table].columns.items()
             if n in frame and c.metadata["kind"] == FLAG}
    frame = frame.assign(**flags) if flags else frame
    casts = {name: CANONICAL_DTYPES[col.metadata["kind"]] for name, col in SCHEMAS[table].columns.items()
             if name in frame and str(frame[name].dtype) != CANONICAL_DTYPES[col.metadata["kind"]]}
    return frame.astype(casts) if casts else frame


def validate_tables(raw: dict[str, pd.DataFrame], data_end: pd.Timestamp | None = None) -> ValidatedData:
    """Validate raw tables (as ``read_tables`` returns them) against the contract.

    Inputs: table -> raw frame (keys outside ``TABLES`` are ignored; the frames are not
    modified; row positions, not index labels, become ``source_row``); ``data_end``, the
    moment the extract was taken (default: now, UTC; tz-aware values are converted to
    naive UTC; a date means its midnight): every timestamp after it is quarantined.
    Output: ``ValidatedData`` (clean tables in canonical dtypes, quarantine with a reason
    per row, reconciliation summary). Raises ``ContractError`` with every fatal problem.
    """
    data_end = _as_data_end(data_end)
    present = [t for t in TABLES if t in raw]
    problems = [] if "orders" in raw else ["orders: missing required table (expected orders.csv or orders.parquet)"]
    for table in present:
        problems += _missing_columns(table, raw[table])
    if problems:
        raise ContractError(problems)
    frames = {t: raw[t].reset_index(drop=True) for t in present}
    parsed = {}
    for table in present:
        parsed[table], fatal = _parse_table(table, frames[table])
        problems += fatal
    if problems:
        raise ContractError(problems)

    derived = "customers" not in raw
    tables, quarantine, rows, counts = {}, {}, [], []
    known = referenced = None  # customer ids kept / as read, once customers (or orders, if derived) is done
    with duckdb.connect() as con:
        for table in present:
            frame, p = frames[table], parsed[table]
            issues = _row_issues(con, table, frame, p, data_end, known, referenced, derived)
            reasons = _combine(issues)
            bad = reasons.index.to_numpy(dtype="int64")
            clean = p.frame
            if len(bad):
                keep = np.ones(len(frame), dtype=bool)
                keep[bad] = False
                # column by column: several times faster than frame[keep] on Arrow strings
                clean = pd.DataFrame({c: clean[c][keep].reset_index(drop=True) for c in clean.columns})
            tables[table] = _canonical(table, clean)
            quarantine[table] = _quarantine_frame(frame, bad, reasons)
            rows.append({"table": table, "rows_read": len(frame), "rows_kept": len(clean), "rows_quarantined": len(bad)})
            counts += [{"table": table, "column": i.column, "check": i.check, "rows": len(i.rows),
                        "example": i.messages.iloc[0]} for i in issues]
            if table == "customers" or (table == "orders" and derived):
                if derived:
                    tables["customers"] = _derive_customers(con, tables["orders"])
                known = _arrow(tables["customers"]["customer_id"])
                referenced = _arrow(p.frame["customer_id"])

    notes = ["customers: derived from orders (one row per customer, created_at = the first order)"] if derived else []
    return ValidatedData(
        tables={t: tables[t] for t in TABLES if t in tables},
        quarantine=quarantine,
        summary=pd.DataFrame(rows, columns=["table", "rows_read", "rows_kept", "rows_quarantined"]),
        data_end=data_end,
        row_problems=pd.DataFrame(counts, columns=["table", "column", "check", "rows", "example"]),
        notes=notes,
    )


def _row_issues(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, parsed: _Parsed,
                data_end: pd.Timestamp, known, referenced, derived: bool) -> list[_Issue]:
    """Every row problem of one table: unreadable values, the pandera rules, the future,
    unknown customers, then repeated ids (decided among the rows without other problems)."""
    position = {c: i for i, c in enumerate(SCHEMAS[table].columns)}
    issues = _parse_issues(table, parsed, frame, position)
    schema_issues, fatal = _schema_issues(table, parsed, frame, position)
    if fatal:
        raise ContractError(fatal)
    issues += schema_issues + _future_issues(table, parsed, data_end, position)
    if known is not None:
        issues += _unknown_issue(con, table, parsed, known, referenced, derived, position)
    flagged = np.zeros(len(frame), dtype=bool)
    for issue in issues:
        flagged[issue.rows] = True
    issues += _duplicate_issues(con, table, parsed, flagged, position)
    return [i for i in issues if len(i.rows)]


def _derive_customers(con: duckdb.DuckDBPyConnection, orders: pd.DataFrame) -> pd.DataFrame:
    """customers from clean orders: one row per customer_id (sorted), created_at = its first ordered_at."""
    con.register("clean_orders", pyarrow.table({"customer_id": _arrow(orders["customer_id"]),
                                                "ordered_at": _arrow(orders["ordered_at"])}))
    try:
        first = con.sql("SELECT customer_id, min(ordered_at) AS created_at FROM clean_orders "
                        "GROUP BY customer_id ORDER BY customer_id").to_arrow_table().to_pandas()
    finally:
        con.unregister("clean_orders")
    return first.astype({"customer_id": "str", "created_at": "datetime64[us]"})


def load_data(data_dir: Path, data_end: pd.Timestamp | None = None) -> ValidatedData:
    """``read_tables(data_dir)`` then ``validate_tables(raw, data_end)``; raises ``ContractError``."""
    return validate_tables(read_tables(data_dir), data_end=data_end)


# -- output -------------------------------------------------------------------------------------

def write_quarantine(result: ValidatedData, out_dir: Path) -> dict[str, Path]:
    """Write ``quarantine_<table>.csv`` for each table with quarantined rows and
    ``validation_summary.csv`` into ``out_dir`` (created if needed), each atomically (a
    temporary file in ``out_dir``, then ``os.replace``). A quarantine file left by an
    earlier run for a table that is now clean is removed. Returns table -> path, plus
    ``"summary"`` -> the summary's path.
    """
    out_dir = Path(out_dir)
    paths = {}
    for table in TABLES:
        path = out_dir / f"quarantine_{table}.csv"
        frame = result.quarantine.get(table)
        if frame is not None and len(frame):
            paths[table] = write_atomic(path, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
        elif path.exists():
            os.remove(path)
    paths["summary"] = write_atomic(out_dir / "validation_summary.csv",
                                    lambda tmp: result.summary.to_csv(tmp, index=False))
    return paths


def format_summary(result: ValidatedData) -> str:
    """A plain-text report for humans (a ``str``, printable as is): the data_end, the
    reconciliation table, notes, the absent optional tables, then per broken rule its row
    count and one example reason."""
    lines = [f"data_end {result.data_end} (later timestamps are quarantined)",
             f"{'table':<14}{'rows read':>12}{'kept':>12}{'quarantined':>13}"]
    for r in result.summary.itertuples():
        lines.append(f"{r.table:<14}{r.rows_read:>12,}{r.rows_kept:>12,}{r.rows_quarantined:>13,}")
    lines += [f"note: {n}" for n in result.notes]
    if result.skipped_tables():
        lines.append("absent optional tables: " + ", ".join(result.skipped_tables()))
    if len(result.row_problems):
        lines.append("quarantine reasons (rows, rule, example):")
        for r in result.row_problems.itertuples():
            lines.append(f"  {r.rows:>10,}  {r.table}.{r.column} {r.check}: e.g. {r.example}")
    return "\n".join(lines)
