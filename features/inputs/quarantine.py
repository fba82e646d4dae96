"""Validation: row problems become reasons, bad rows go to the quarantine, every table is reconciled
(rows read = rows kept + rows quarantined); the clean tables are returned in canonical dtypes."""
from __future__ import annotations

import functools
import os
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from features.inputs.config import SourceConfig, TableSource
from features.inputs.contract import (CANONICAL_DTYPES, FLAG, ID_COLUMNS, INTEGER, NUMBER, SCHEMAS, TABLES, TEXT,
                                      TIMESTAMP, ContractError, ValidatedData)
from features.inputs.files import ParquetFile, separator_hint
from features.inputs.parse import _arrow, _as_text, _one_line, _parse_table, _Parsed, type_name, unreadable_hint
from features.inputs.screen import parquet_sql, screen, unknown_customers
from features.io import write_atomic

# Row order of the reasons within one row: by column, then by stage.
_PARSE, _CHECK, _FUTURE, _UNKNOWN, _DUPLICATE = range(5)
EARLIEST = pd.Timestamp("1990-01-01")
# the rule a credit note breaks; with negative_amounts: returns it is a return instead
_NEGATIVE = ("orders", "amount", "greater_than_or_equal_to")


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
            hint = (f" (translate the export's words with source.tables.{table}.values.{column})"
                    if column_checks[check].name == "isin" else "")
            issues.append(_issue(table, column, column_checks[check].name, rows,
                                 _render(check, table, raw, rows, column) + hint, _CHECK, position))
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


def _parse_issues(table: str, parsed: _Parsed, raw: pd.DataFrame, position: dict[str, int],
                  spec: TableSource) -> list[_Issue]:
    out = []
    for name, rows in parsed.unreadable.items():
        kind = SCHEMAS[table].columns[name].metadata["kind"]
        text = _as_text(raw[name].iloc[rows]).reset_index(drop=True)
        out.append(_issue(table, name, "unreadable", rows,
                          "'" + text + "' is not " + type_name(kind, spec) + unreadable_hint(table, name, kind, spec, text), _PARSE, position))
    return out


def _future_issues(table: str, parsed: _Parsed, data_end: pd.Timestamp, position: dict[str, int],
                   earliest: pd.Timestamp = EARLIEST) -> list[_Issue]:
    """Timestamps after the extract (the future of the data) or before ``earliest`` (a
    placeholder such as 1900-01-01, not a real event)."""
    out = []
    for name, col in SCHEMAS[table].columns.items():
        if col.metadata["kind"] == TIMESTAMP and name in parsed.frame:
            rows = np.flatnonzero((parsed.frame[name] > data_end).to_numpy(bool))
            if len(rows):
                values = _timestamp_text(parsed.frame[name].iloc[rows])
                out.append(_issue(table, name, "future", rows,
                                  values + f" is in the future of the data (after {data_end})", _FUTURE, position))
            rows = np.flatnonzero((parsed.frame[name] < earliest).to_numpy(bool))
            if len(rows):
                values = _timestamp_text(parsed.frame[name].iloc[rows])
                out.append(_issue(table, name, "implausible", rows,
                                  values + f" is implausibly early (before {earliest.date()}; a placeholder date? "
                                  "set validation.earliest for an older history)", _FUTURE, position))
    return out


def _exact_duplicate_issue(con: duckdb.DuckDBPyConnection, table: str, raw: pd.DataFrame) -> list[_Issue]:
    """Rows equal to an earlier row in every column, as read: the later copies."""
    if not len(raw) or not len(raw.columns):
        return []
    data = pyarrow.Table.from_pandas(raw, preserve_index=False)
    names = [f"c{i}" for i in range(data.num_columns)]
    data = data.rename_columns(names).append_column("pos", pyarrow.array(np.arange(len(raw), dtype=np.int64)))
    cols = ", ".join(names)
    con.register("rows_as_read", data)
    try:
        found = con.execute(f"""
            WITH h AS (SELECT pos, hash({cols}) AS h FROM rows_as_read),
                 repeated AS (SELECT h FROM h GROUP BY h HAVING count(*) > 1),
                 candidates AS (SELECT r.* FROM rows_as_read r JOIN h USING (pos) SEMI JOIN repeated USING (h)),
                 firsts AS (SELECT pos, min(pos) OVER (PARTITION BY {cols}) AS first FROM candidates)
            SELECT pos, first FROM firsts WHERE pos > first ORDER BY pos""").fetchnumpy()
    finally:
        con.unregister("rows_as_read")
    rows = np.asarray(found["pos"], dtype=np.int64)
    if not len(rows):
        return []
    text = "an exact copy of source_row " + pd.Series(np.asarray(found["first"], dtype=np.int64)).astype("str") \
        + " (every column equal: a duplicated export row)"
    return [_issue(table, "row", "exact_duplicate", rows, text, _DUPLICATE, {"row": -1})]


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

ROW_ID_PREFIX = "row-"


def _number_orders(raw: dict, source: SourceConfig) -> tuple[dict, bool]:
    """A purchase log without order ids (CDNOW, many transaction exports: one row per
    purchase) gets ``order_id`` = ``row-<n>``, its row in the file from 1, so every row is
    one order; exact copies of a row are still found on the columns as read. Order lines
    (``lines: true``) need the real id to be summed into orders, so there it stays required."""
    orders = raw.get("orders")
    if (orders is None or "order_id" in orders.columns or source.table("orders").lines
            or _missing_columns("orders", orders, optional=("order_id",))):
        return raw, False  # (with other columns missing, those are named and the id is not asked for)
    frame = _read(orders)
    numbered = frame.reset_index(drop=True)
    numbered.insert(0, "order_id", pd.Series([f"{ROW_ID_PREFIX}{i}" for i in range(1, len(frame) + 1)], dtype="object"))
    return {**raw, "orders": numbered}, True


def _missing_columns(table: str, frame: pd.DataFrame, optional: tuple[str, ...] = ()) -> list[str]:
    """One problem per required column absent from ``frame`` (but ``optional``), with a hint
    when the name is there in another case or with spaces, or when the header looks like one
    unsplit column."""
    problems = []
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    unsplit = separator_hint(list(frame.columns), table)
    for name, col in SCHEMAS[table].columns.items():
        if col.required and name not in frame.columns and name not in optional:
            hint = ""
            if name in lowered:
                hint = f"; found '{lowered[name]}': names are case- and space-sensitive"
            elif unsplit:
                hint = f"; the header is one column '{_one_line(frame.columns[0], 60)}'{unsplit}"
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


def validate_tables(raw: dict[str, pd.DataFrame], data_end: pd.Timestamp | None = None,
                    source: SourceConfig | None = None, earliest: pd.Timestamp | None = None) -> ValidatedData:
    """Validate raw tables (as ``read_tables`` returns them) against the contract.

    Inputs: table -> raw frame (keys outside ``TABLES`` are ignored; the frames are not
    modified; row positions, not index labels, become ``source_row``), or a ``ParquetFile``
    (``read_tables(..., lazy_parquet=True)``): one that ``screen`` finds clean as it is is
    not read into pandas, any other is read and validated row by row; ``data_end``, the
    moment the extract was taken (default: now, UTC; tz-aware values are converted to
    naive UTC; a date means its midnight): every timestamp after it is quarantined.
    Output: ``ValidatedData`` (clean tables in canonical dtypes, quarantine with a reason
    per row, reconciliation summary). ``source`` gives each table's formats (timestamps,
    zone, numbers), the id normalisation, order lines and credit notes; ``earliest`` the
    first plausible timestamp (default 1990-01-01). Raises ``ContractError`` with every
    fatal problem.

    Order lines (``source.tables.orders.lines``): the rows are lines, and the clean orders
    table has one row per order_id: amount the sum of its lines, ordered_at the earliest,
    the other columns from its first line. An order with a quarantined line, or whose lines
    name different customers or statuses, is quarantined whole (every line, with a reason);
    the summary counts lines. Credit notes (``negative_amounts: returns``): an order whose
    amount is negative becomes status ``refund`` with the amount returned (positive): a
    return, never a purchase.
    """
    source = source or SourceConfig()
    earliest = EARLIEST if earliest is None else pd.Timestamp(earliest)
    data_end = _as_data_end(data_end)
    present = [t for t in TABLES if t in raw]
    problems = [] if "orders" in raw else ["orders: missing required table (expected orders.csv or orders.parquet)"]
    raw, numbered = _number_orders(raw, source)
    for table in present:
        problems += _missing_columns(table, raw[table], optional=("order_id",) if table == "orders"
                                     and not source.table("orders").lines else ())
    if problems:
        raise ContractError(problems)
    clean_files = _screen_files(raw, present, data_end, source, earliest)
    frames = {t: _read(raw[t]).reset_index(drop=True) for t in present if t not in clean_files}
    parsed = {}
    for table in frames:
        parsed[table], fatal = _parse_table(table, frames[table], source.table(table), source.ids)
        problems += fatal
    if problems:
        raise ContractError(problems)

    derived = "customers" not in raw
    tables, quarantine, rows, counts, notes = {}, {}, [], [], []
    if numbered:
        notes.append(f"orders: the export has no order_id: each row is one order, named {ROW_ID_PREFIX}<n> by its "
                     "row in the file (n from 1); exact copies of a row are still quarantined")
    known = referenced = None  # customer ids kept / as read, once customers (or orders, if derived) is done
    with duckdb.connect() as con:
        for table in present:
            if table in clean_files:
                file, (n, checked) = raw[table], clean_files[table]
                if known is None or checked or not unknown_customers(con, parquet_sql(file.path), known):
                    tables[table], quarantine[table] = file, _quarantine_frame(file.empty, np.zeros(0, "int64"), _combine([]))
                    rows.append({"table": table, "rows_read": n, "rows_kept": n, "rows_quarantined": 0})
                    if table == "customers" or (table == "orders" and derived):
                        if derived:
                            tables["customers"] = _derive_customers(con, file.path)
                        known = referenced = _ids(tables["customers"])
                    continue
                # clean but for customers that are not kept: the row-by-row path names those rows
                frames[table] = _read(file).reset_index(drop=True)
                parsed[table], _ = _parse_table(table, frames[table], source.table(table), source.ids)
            frame, p = frames[table], parsed[table]
            spec = source.table(table)
            issues = _row_issues(con, table, frame, p, data_end, known, referenced, derived, spec, earliest,
                                 not_read=("order_id",) if table == "orders" and numbered else ())
            if table == "cancellations" and "orders" in tables:
                issues += _cancelled_before_buying(con, p, tables["orders"], {c: i for i, c in enumerate(SCHEMAS[table].columns)})
            reasons = _combine(issues)
            bad = reasons.index.to_numpy(dtype="int64")
            clean = p.frame
            if len(bad):
                keep = np.ones(len(frame), dtype=bool)
                keep[bad] = False
                # column by column: several times faster than frame[keep] on Arrow strings
                clean = pd.DataFrame({c: clean[c][keep].reset_index(drop=True) for c in clean.columns})
            if table == "orders":
                clean, kept_lines = _as_orders(con, clean, spec)
                if spec.lines:
                    notes.append(f"orders: {kept_lines:,} order lines kept as {len(clean):,} orders (source.tables.orders.lines)")
            tables[table] = _canonical(table, clean)
            quarantine[table] = _quarantine_frame(frame, bad, reasons)
            rows.append({"table": table, "rows_read": len(frame), "rows_kept": len(frame) - len(bad), "rows_quarantined": len(bad)})
            counts += [{"table": table, "column": i.column, "check": i.check, "rows": len(i.rows),
                        "example": i.messages.iloc[0]} for i in issues]
            if table == "customers" or (table == "orders" and derived):
                if derived:
                    tables["customers"] = _derive_customers(con, tables["orders"])
                known = _arrow(tables["customers"]["customer_id"])
                referenced = _arrow(p.frame["customer_id"])

    if derived:
        notes.insert(0, "customers: derived from orders (one row per customer, created_at = the first order)")
    return ValidatedData(
        tables=_CleanTables({t: tables[t] for t in TABLES if t in tables}),
        quarantine=quarantine,
        summary=pd.DataFrame(rows, columns=["table", "rows_read", "rows_kept", "rows_quarantined"]),
        data_end=data_end,
        row_problems=pd.DataFrame(counts, columns=["table", "column", "check", "rows", "example"]),
        notes=notes,
        sources={t: tables[t].path if isinstance(tables[t], ParquetFile) else tables[t] for t in TABLES if t in tables},
    )


def _screen_files(raw: dict, present: list[str], data_end: pd.Timestamp, source: SourceConfig,
                  earliest: pd.Timestamp) -> dict[str, tuple[int, bool]]:
    """The tables given as ``ParquetFile`` whose every row is clean as it is (``screen``):
    table -> (rows, whether their customers were checked against customers too). Customers
    comes first: when its file is clean, its ids are the kept customers, and the other
    tables' screens check their customer_id against them in the same pass. A table read
    with options (a format, a zone, order lines, credit notes, id normalisation) is changed
    by validation, so it is never clean as it is. Cancellations are clean as they are only
    when the orders are too and no cancellation precedes its customer's first order."""
    files = read_as_is(raw, present, source)
    out = {}
    if files:
        with duckdb.connect() as con:
            known = None
            for table, file in files.items():
                joined = known if table != "customers" else None
                try:
                    rows = screen(con, table, parquet_sql(file.path), list(file.columns), data_end, earliest, joined)
                except duckdb.Error:  # a file DuckDB cannot read: pandas' reader names the problem
                    rows = None
                if rows is not None:
                    out[table] = (rows, joined is not None)
                    if table == "customers":
                        known = _ids(file)
            if "cancellations" in out and ("orders" not in out or _cancels_before_buying(
                    con, parquet_sql(files["cancellations"].path), parquet_sql(files["orders"].path))):
                del out["cancellations"]  # the row-by-row path names those rows
    return out


def read_as_is(raw: dict, present: list[str], source: SourceConfig) -> dict[str, ParquetFile]:
    """The tables given as ``ParquetFile`` and read with no option that changes them (a format,
    a zone, order lines, credit notes, id normalisation): the ones that may be clean as they are."""
    where = {"file", "table", "query"}
    default = TableSource().model_dump(exclude=where)
    plain = not (source.ids.strip_leading_zeros or source.ids.lower_case or source.ids.strip_decimal_zero)
    return {t: raw[t] for t in present if isinstance(raw[t], ParquetFile) and plain
            and source.table(t).model_dump(exclude=where) == default}


_FIRST_ORDERS = """SELECT customer_id AS id, min(ordered_at) AS first FROM {orders}
                   WHERE {bought} GROUP BY customer_id"""


def _bought(columns) -> str:
    """The orders that are purchases (not cancelled, not a credit note), as a SQL condition."""
    return "status IS NULL OR status NOT IN ('cancelled', 'refund')" if "status" in columns else "TRUE"


def _cancels_before_buying(con: duckdb.DuckDBPyConnection, cancellations: str, orders: str) -> int:
    """How many cancellations (a table expression) precede their customer's first order."""
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {orders}").fetchall()]
    first = _FIRST_ORDERS.format(orders=orders, bought=_bought(columns))
    return con.execute(f"SELECT count(*) FROM {cancellations} c JOIN ({first}) o ON c.customer_id = o.id "
                       "WHERE c.cancelled_at < o.first").fetchall()[0][0]


def _read(source: pd.DataFrame | ParquetFile) -> pd.DataFrame:
    """A raw table as a frame (a ``ParquetFile`` is read into pandas)."""
    if not isinstance(source, ParquetFile):
        return source
    try:
        return source.read()
    except Exception as exc:  # as read_tables reports an unreadable file
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ContractError([f"{source.path.stem}: cannot read {source.path} ({type(exc).__name__}: {detail})"]) from exc


def _ids(customers: pd.DataFrame | ParquetFile) -> pyarrow.ChunkedArray:
    """The customer_id column of clean customers, as Arrow (from the file without pandas)."""
    if isinstance(customers, ParquetFile):
        return pq.read_table(customers.path, columns=["customer_id"]).column(0)
    return _arrow(customers["customer_id"])


def _read_clean(table: str, file: ParquetFile) -> pd.DataFrame:
    """The clean frame of a file that is clean as it is: what the row-by-row path returns for it."""
    parsed, _ = _parse_table(table, _read(file).reset_index(drop=True))
    return _canonical(table, parsed.frame)


class _CleanTables(Mapping):
    """table -> clean frame (``ValidatedData.tables``); a table whose file is clean as it is
    is read into pandas on first access only (``churn features`` never asks: the engine reads
    the file)."""

    def __init__(self, tables: dict[str, pd.DataFrame | ParquetFile]):
        self._tables = tables

    def __getitem__(self, table: str) -> pd.DataFrame:
        value = self._tables[table]
        if isinstance(value, ParquetFile):
            value = self._tables[table] = _read_clean(table, value)
        return value

    def __contains__(self, table) -> bool:
        return table in self._tables

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


def _row_issues(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, parsed: _Parsed,
                data_end: pd.Timestamp, known, referenced, derived: bool, spec: TableSource,
                earliest: pd.Timestamp = EARLIEST, not_read: tuple[str, ...] = ()) -> list[_Issue]:
    """Every row problem of one table: unreadable values, the pandera rules, implausible
    times, unknown customers, exact copies of earlier rows, then repeated ids (decided among
    the rows without other problems) or, for order lines, incomplete and inconsistent orders.
    ``not_read``: columns the validation added (derived order ids), left out of the exact-copy
    comparison."""
    position = {c: i for i, c in enumerate(SCHEMAS[table].columns)}
    issues = _parse_issues(table, parsed, frame, position, spec)
    schema_issues, fatal = _schema_issues(table, parsed, frame, position)
    if fatal:
        raise ContractError(fatal)
    if table == "orders" and (spec.lines or spec.negative_amounts == "returns"):
        # a negative line is judged by its order's total (lines) or read as a credit note (returns)
        schema_issues = [i for i in schema_issues if (table, i.column, i.check) != _NEGATIVE]
    issues += schema_issues + _future_issues(table, parsed, data_end, position, earliest)
    if known is not None:
        issues += _unknown_issue(con, table, parsed, known, referenced, derived, position)
    copies = _exact_duplicate_issue(con, table, frame.drop(columns=list(not_read)) if not_read else frame)
    issues += copies
    flagged = np.zeros(len(frame), dtype=bool)
    for issue in issues:
        flagged[issue.rows] = True
    if table == "orders" and spec.lines:  # a copied line is dropped; its order keeps the original line
        broken = flagged.copy()
        if copies:
            broken[copies[0].rows] = False
            for issue in issues:
                if issue is not copies[0]:
                    broken[issue.rows] = True
        issues += _line_issues(con, parsed, broken, flagged & ~broken, spec, position)
    else:  # an exact copy says so; its repeated id is not a second reason
        for issue in _duplicate_issues(con, table, parsed, flagged, position):
            if copies:
                keep = ~np.isin(issue.rows, copies[0].rows)
                issue = _Issue(issue.rows[keep], issue.messages[keep].reset_index(drop=True), issue.order,
                               issue.column, issue.check)
            issues.append(issue)
    return [i for i in issues if len(i.rows)]


def _line_issues(con: duckdb.DuckDBPyConnection, parsed: _Parsed, broken: np.ndarray, copied: np.ndarray,
                 spec: TableSource, position: dict[str, int]) -> list[_Issue]:
    """Order lines that cannot form a correct order: the other lines of an order with a
    quarantined line (its total would be wrong), every line of an order whose lines name
    different customers or statuses, and (unless credit notes are returns) every line of an
    order whose total is negative."""
    f = parsed.frame
    cols = {"id": _arrow(f["order_id"]), "pos": np.arange(len(f), dtype=np.int64), "bad": broken, "copy": copied,
            "customer": _arrow(f["customer_id"]), "amount": f["amount"].to_numpy(dtype="float64", na_value=np.nan),
            "status": _arrow(f["status"]) if "status" in f else pyarrow.nulls(len(f), pyarrow.string())}
    found = _sql(con, """
        WITH o AS (SELECT id, min(CASE WHEN bad THEN pos END) AS bad_line, count(DISTINCT customer) AS customers,
                          count(DISTINCT status) AS statuses, sum(CASE WHEN NOT bad AND NOT copy THEN amount END) AS total,
                          string_agg(DISTINCT '''' || customer || '''', ', ' ORDER BY '''' || customer || '''') AS names
                   FROM ev WHERE id IS NOT NULL GROUP BY id
                   HAVING bad_line IS NOT NULL OR customers > 1 OR statuses > 1 OR total < 0)
        SELECT ev.pos, ev.bad, o.bad_line, o.customers, o.statuses, o.total, o.names
        FROM ev JOIN o USING (id) ORDER BY ev.pos""", ev=cols)
    rows, out = np.asarray(found["pos"], dtype=np.int64), []
    if not len(rows):
        return out
    ids = f["order_id"].iloc[rows].reset_index(drop=True)
    bad_line = pd.Series(found["bad_line"]).astype("Int64")
    incomplete = (~np.asarray(found["bad"], dtype=bool)) & bad_line.notna().to_numpy()
    mixed = np.asarray(found["customers"]) > 1
    statuses = np.asarray(found["statuses"]) > 1
    negative = (np.asarray(found["total"], dtype=float) < 0) & (spec.negative_amounts != "returns")
    if incomplete.any():
        msg = ("'" + ids[incomplete] + "' has a quarantined line (source_row "
               + bad_line[incomplete].astype("str") + "): the order's total would be wrong")
        out.append(_issue("orders", "order_id", "incomplete_order", rows[incomplete], msg, _DUPLICATE, position))
    if mixed.any():
        names = pd.Series(found["names"], dtype="str")[mixed]
        msg = "the lines of order '" + ids[mixed] + "' name different customers (" + names + ")"
        out.append(_issue("orders", "customer_id", "mixed_order", rows[mixed], msg, _DUPLICATE, position))
    if statuses.any():
        msg = "the lines of order '" + ids[statuses] + "' have different statuses"
        out.append(_issue("orders", "status", "mixed_order", rows[statuses], msg, _DUPLICATE, position))
    if negative.any():
        totals = pd.Series(np.asarray(found["total"], dtype=float)[negative]).round(2).astype("str")
        msg = ("order '" + ids[negative].reset_index(drop=True) + "' sums to " + totals
               + " (expected >= 0; a credit note? set source.tables.orders.negative_amounts: returns)")
        out.append(_issue("orders", "amount", "negative_order", rows[negative], msg, _CHECK, position))
    return out


def _as_orders(con: duckdb.DuckDBPyConnection, clean: pd.DataFrame, spec: TableSource) -> tuple[pd.DataFrame, int]:
    """The clean orders: order lines summed into orders (``spec.lines``), negative amounts as
    credit notes (status ``refund``, the amount returned) under ``negative_amounts: returns``.
    Also returns how many rows (lines) went in."""
    lines = len(clean)
    if spec.lines and lines:
        found = _sql(con, """SELECT min(pos) AS first, min(t) AS t, sum(amount) AS amount FROM ev
                             GROUP BY id ORDER BY first""",
                     ev={"id": _arrow(clean["order_id"]), "pos": np.arange(lines, dtype=np.int64),
                         "t": _arrow(clean["ordered_at"]), "amount": clean["amount"].to_numpy(dtype="float64")})
        first = np.asarray(found["first"], dtype=np.int64)
        clean = pd.DataFrame({c: clean[c].iloc[first].reset_index(drop=True) for c in clean.columns})
        clean = clean.assign(ordered_at=pd.Series(found["t"]).astype("datetime64[us]"),
                             amount=np.asarray(found["amount"], dtype="float64"))
    if spec.negative_amounts == "returns" and len(clean):
        credit = (clean["amount"] < 0).to_numpy(bool)
        if credit.any():
            status = clean["status"] if "status" in clean else pd.Series(None, index=clean.index, dtype="str")
            clean = clean.assign(status=status.mask(credit, "refund"), amount=clean["amount"].abs())
    return clean, lines


def _cancelled_before_buying(con: duckdb.DuckDBPyConnection, parsed: _Parsed, orders: pd.DataFrame | ParquetFile,
                             position: dict[str, int]) -> list[_Issue]:
    """Cancellations dated before the customer's first kept order: a client cannot leave
    before becoming one (such a row would hide a customer who then orders for years)."""
    f = parsed.frame
    if isinstance(orders, ParquetFile):  # read by DuckDB from the file
        src, extra = parquet_sql(orders.path), {}
    else:
        cols = {"customer_id": _arrow(orders["customer_id"]), "ordered_at": _arrow(orders["ordered_at"])}
        if "status" in orders:
            cols["status"] = _arrow(orders["status"])
        src, extra = "orders", {"orders": cols}
    first = _FIRST_ORDERS.format(orders=src, bought=_bought(orders.columns))
    found = _sql(con, f"""SELECT ev.pos, o.first FROM ev JOIN ({first}) o USING (id)
                          WHERE ev.t < o.first ORDER BY ev.pos""",
                 ev={"id": _arrow(f["customer_id"]), "t": _arrow(f["cancelled_at"]), "pos": np.arange(len(f), dtype=np.int64)},
                 **extra)
    rows = np.asarray(found["pos"], dtype=np.int64)
    if not len(rows):
        return []
    msg = (_timestamp_text(f["cancelled_at"].iloc[rows]) + " is before the customer's first order ("
           + _timestamp_text(pd.Series(found["first"]).astype("datetime64[us]")) + "): a client cannot leave before buying")
    return [_issue("cancellations", "cancelled_at", "before_first_order", rows, msg, _CHECK, position)]


def _derive_customers(con: duckdb.DuckDBPyConnection, orders: pd.DataFrame | Path) -> pd.DataFrame:
    """customers from clean orders (a frame, or a Parquet file clean as it is): one row per
    customer_id (sorted), created_at = its first ordered_at."""
    if isinstance(orders, Path):
        src = parquet_sql(orders)
    else:
        con.register("clean_orders", pyarrow.table({"customer_id": _arrow(orders["customer_id"]),
                                                    "ordered_at": _arrow(orders["ordered_at"])}))
        src = "clean_orders"
    try:
        first = con.sql(f"SELECT customer_id, min(ordered_at) AS created_at FROM {src} "
                        "GROUP BY customer_id ORDER BY customer_id").to_arrow_table().to_pandas()
    finally:
        if src == "clean_orders":
            con.unregister("clean_orders")
    return first.astype({"customer_id": "str", "created_at": "datetime64[us]"})


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


def _latest_event(result: ValidatedData) -> str:
    """'; the latest event kept is ...': data_end is when the extract was checked (the clock, or
    --data-end), which says nothing about where the history ends."""
    from features.labels import latest_event

    try:
        latest = latest_event(result.sources)
    except Exception:  # noqa: BLE001 - a summary line, never a reason to fail
        return ""
    return f"; the latest event kept is {latest}" if latest is not None else ""


def format_summary(result: ValidatedData) -> str:
    """A plain-text report for humans (a ``str``, printable as is): the data_end, the
    reconciliation table, notes, the absent optional tables, then per broken rule its row
    count and one example reason."""
    lines = [f"data_end {result.data_end} (later timestamps are quarantined){_latest_event(result)}",
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
