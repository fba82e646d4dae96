"""The input data contract: reading a data folder, validating it, quarantining bad rows.

A data folder holds one Parquet or CSV file per table (``orders.csv`` or ``orders.parquet``).
``orders`` is required; ``customers``, ``interactions``, ``nps``, ``complaints`` and
``cancellations`` are optional. Timestamps are naive UTC or tz-aware (converted to UTC).

Two kinds of problems:
- fatal (``ContractError``, one message per problem naming table, column and what was
  expected): a missing folder or required table, a missing required column, an unreadable
  file, a table given twice (CSV and Parquet);
- row problems: the row goes to the table's quarantine with a reason; nothing is silently
  dropped: for every table, rows read = rows kept + rows quarantined.

Column parsing (ids, timestamps, numbers, flags, allowed values) is done here; the value
rules are pandera schemas (``SCHEMAS``) declared below, applied to the parsed columns with
``lazy=True``; their failure cases become per-row reasons. Cross-table rules (unknown
customer, duplicate id, timestamp in the future of the data) follow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow_
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from features.io import write_frame

TABLES: tuple[str, ...] = ("customers", "orders", "interactions", "nps", "complaints", "cancellations")
REQUIRED_TABLES = ("orders",)


@dataclass(frozen=True)
class Column:
    kind: str  # id | ts | float | int | bool | text | enum
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] = ()
    expected: str = ""


CONTRACT: dict[str, dict[str, Column]] = {
    "customers": {
        "customer_id": Column("id", expected="a unique customer identifier"),
        "created_at": Column("ts", expected="when the customer was created (a timestamp)"),
        "segment": Column("text", required=False, nullable=True),
        "acquisition_channel": Column("text", required=False, nullable=True),
        "region": Column("text", required=False, nullable=True),
    },
    "orders": {
        "order_id": Column("id", expected="a unique order identifier"),
        "customer_id": Column("id", expected="the customer who ordered"),
        "ordered_at": Column("ts", expected="when the order was placed (a timestamp)"),
        "amount": Column("float", expected="the order value, a number >= 0"),
        "status": Column("enum", required=False, nullable=True, allowed=("completed", "returned", "cancelled")),
    },
    "interactions": {
        "customer_id": Column("id", expected="the customer concerned"),
        "occurred_at": Column("ts", expected="when it happened (a timestamp)"),
        "channel": Column("text", expected="email, call, meeting, chat, visit, login, ..."),
        "direction": Column("enum", allowed=("outbound", "inbound"),
                            expected="outbound (the company reached out) or inbound (the customer did something)"),
    },
    "nps": {
        "customer_id": Column("id", expected="the customer who answered"),
        "answered_at": Column("ts", expected="when the answer was given (a timestamp)"),
        "score": Column("int", expected="the answer, an integer 0-10"),
        "comment": Column("text", required=False, nullable=True),
    },
    "complaints": {
        "complaint_id": Column("id", expected="a unique complaint identifier"),
        "customer_id": Column("id", expected="the customer who complained"),
        "opened_at": Column("ts", expected="when the complaint was opened (a timestamp)"),
        "resolved_at": Column("ts", nullable=True, expected="when it was resolved (empty while open)"),
        "severity": Column("enum", required=False, nullable=True, allowed=("low", "medium", "high")),
        "public": Column("bool", required=False, nullable=True),
    },
    "cancellations": {
        "customer_id": Column("id", expected="the customer who cancelled"),
        "cancelled_at": Column("ts", expected="when the contract was cancelled (a timestamp)"),
    },
}

ID_COLUMNS = {"customers": "customer_id", "orders": "order_id", "complaints": "complaint_id"}
TIME_COLUMNS = {"customers": ["created_at"], "orders": ["ordered_at"], "interactions": ["occurred_at"],
                "nps": ["answered_at"], "complaints": ["opened_at", "resolved_at"], "cancellations": ["cancelled_at"]}

# Value rules on parsed columns. Nulls are handled by parsing (a required value that is
# missing or unparsable is reported there), so every column is nullable here.
SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "orders": pa.DataFrameSchema({
        "amount": pa.Column(float, pa.Check.ge(0, error="amount: {value} is negative (expected >= 0)"), nullable=True),
    }),
    "nps": pa.DataFrameSchema({
        "score": pa.Column(float, [pa.Check.in_range(0, 10, error="score: {value} is outside 0..10"),
                                   pa.Check(lambda s: s == np.round(s), element_wise=False,
                                            error="score: {value} is not an integer")], nullable=True),
    }),
    "complaints": pa.DataFrameSchema(
        {"opened_at": pa.Column("datetime64[us]", nullable=True), "resolved_at": pa.Column("datetime64[us]", nullable=True)},
        checks=[pa.Check(lambda d: ~(d["resolved_at"] < d["opened_at"]),
                         error="resolved_at: before opened_at")]),
}


class ContractError(Exception):
    """Fatal contract problems; ``problems`` holds one line each, naming table, column and what was expected."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class ValidatedData:
    tables: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    data_end: pd.Timestamp
    notes: list[str] = field(default_factory=list)

    def skipped_tables(self) -> list[str]:
        """Optional tables the folder did not have (customers is derived when absent)."""
        return [t for t in TABLES if t not in self.tables]


# -- reading ---------------------------------------------------------------------------------

def read_tables(data_dir: Path) -> dict[str, pd.DataFrame]:
    """Read every contract table present in ``data_dir`` as it is (CSV cells as text)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContractError([f"data folder {data_dir} does not exist (expected a folder with orders.csv or orders.parquet)"])
    raw, problems = {}, []
    for table in TABLES:
        found = [p for p in (data_dir / f"{table}.parquet", data_dir / f"{table}.csv") if p.is_file()]
        if len(found) > 1:
            problems.append(f"{table}: both {found[0].name} and {found[1].name} exist (expected one file per table)")
            continue
        if not found:
            if table in REQUIRED_TABLES:
                problems.append(f"{table}: missing required table (expected {table}.csv or {table}.parquet in {data_dir})")
            continue
        path = found[0]
        try:
            if path.suffix == ".parquet":
                raw[table] = pd.read_parquet(path)
            else:
                raw[table] = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except Exception as exc:  # any reader error makes the file unusable; say which and why
            problems.append(f"{table}: cannot read {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
    if problems:
        raise ContractError(problems)
    return raw


# -- parsing -----------------------------------------------------------------------------------

def _as_id(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna().eq(series.dropna().round()).all()
        if whole:
            series = series.astype("Int64")
    text = series.astype("str").str.strip() if not pd.api.types.is_string_dtype(series) else series.str.strip()
    return text.where(series.notna() & (text != ""), None).astype("str")


def _as_timestamp(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        text = series.astype("object").where(series.notna(), None)
        try:
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f"}


def _as_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean")
    text = series.astype("str").str.strip().str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(TRUE)] = True
    out[text.isin(FALSE)] = False
    return out


def _parse(table: str, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[pd.Series, pd.Series]]]:
    """Typed columns and (mask, reason) pairs for values that are missing or unparsable."""
    parsed, issues = {}, []
    for name, spec in CONTRACT[table].items():
        if name not in raw.columns:
            continue
        col = raw[name]
        if col.dtype.kind in "Mfib":
            present = col.notna()
        elif pd.api.types.is_string_dtype(col):
            present = col.notna() & (col != "")
        else:
            present = col.notna() & (col.astype("str") != "")
        if spec.kind == "id":
            value = _as_id(col)
            bad = value.isna()
        elif spec.kind == "ts":
            value = _as_timestamp(col)
            bad = present & value.isna()
            issues.append((bad, _Msg(f"{table}.{name}: ", col, " is not a timestamp")))
            bad = pd.Series(False, index=col.index)
            if not spec.nullable:
                issues.append((~present, f"{table}.{name}: missing"))
            parsed[name] = value
            continue
        elif spec.kind in ("float", "int"):
            value = pd.to_numeric(col, errors="coerce").astype("float64")
            bad = present & value.isna()
            issues.append((bad, _Msg(f"{table}.{name}: ", col, " is not a number")))
            bad = ~present
        elif spec.kind == "bool":
            value = _as_bool(col)
            bad = present & value.isna()
            issues.append((bad, _Msg(f"{table}.{name}: ", col, " is not true/false")))
            bad = pd.Series(False, index=col.index)
        elif spec.kind == "enum":
            value = col.astype("str").str.strip().str.lower().where(present, None)
            bad = present & ~value.isin(spec.allowed)
            issues.append((bad, _Msg(f"{table}.{name}: ", col, f" is not one of {', '.join(spec.allowed)}")))
            bad = ~present if not spec.nullable else pd.Series(False, index=col.index)
        else:  # text
            value = col.astype("str").str.strip().where(present, None)
            if name == "channel":
                value = value.str.lower()
            bad = ~present if not spec.nullable else pd.Series(False, index=col.index)
        if not spec.nullable:
            issues.append((bad, f"{table}.{name}: missing"))
        parsed[name] = value
    extras = {c: raw[c] for c in raw.columns if c not in CONTRACT[table]}
    return pd.DataFrame({**parsed, **extras}, index=raw.index), issues


def _schema_issues(table: str, frame: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """Run the table's pandera schema; each failure case becomes a reason on its row."""
    schema = SCHEMAS.get(table)
    if schema is None:
        return []
    try:
        schema.validate(frame, lazy=True)
        return []
    except SchemaErrors as exc:
        cases = exc.failure_cases
    cases = cases[cases["index"].notna()]
    issues = []
    for check, part in cases.groupby("check", sort=False):
        mask = pd.Series(False, index=frame.index)
        idx = part["index"].astype("int64").to_numpy()
        mask.loc[idx] = True
        head, placeholder, tail = str(check).partition("{value}")
        if not placeholder:  # a rule across columns: the message says it all
            issues.append((mask, f"{table}.{head}"))
            continue
        values = pd.Series("", index=frame.index, dtype="object")
        values.loc[idx] = part["failure_case"].astype("str").str.removesuffix(".0").to_numpy()
        issues.append((mask, _Msg(f"{table}.{head}", values, tail)))
    return issues


@dataclass(frozen=True)
class _Msg:
    """A reason '<prefix><value><suffix>', rendered only for the rows that need it
    (building strings for tens of millions of clean rows would cost more than the checks)."""
    prefix: str
    values: pd.Series
    suffix: str = ""

    def render(self, mask: pd.Series) -> pd.Series:
        return self.prefix + self.values[mask].astype("str") + self.suffix


def _isin(values: pd.Series, known: pd.Index) -> pd.Series:
    """values.isin(known) for string ids, with Arrow's hash kernel (an order of magnitude
    faster than pandas on tens of millions of rows)."""
    mask = pc.is_in(pyarrow_.array(values.astype("str"), from_pandas=True),
                    value_set=pyarrow_.array(known.astype("str"), from_pandas=True))
    return pd.Series(mask.to_numpy(zero_copy_only=False), index=values.index).fillna(False).astype(bool)


def _combine(index: pd.Index, issues: list[tuple[pd.Series, pd.Series | str | _Msg]]) -> pd.Series:
    """The reasons of the rows with at least one problem (indexed by row), joined with '; '.
    Clean rows cost nothing: no string is built for them."""
    parts = []
    for mask, text in issues:
        mask = pd.Series(mask, index=index).fillna(False).astype(bool)
        if not mask.any():
            continue
        if isinstance(text, _Msg):
            add = text.render(mask)
        elif isinstance(text, pd.Series):
            add = text[mask].astype("str")
        else:
            add = pd.Series(text, index=index[mask.to_numpy()], dtype="object")
        parts.append(add.astype("object"))
    if not parts:
        return pd.Series([], index=index[:0], dtype="object")
    stacked = pd.concat(parts)
    return stacked.groupby(level=0, sort=True).agg("; ".join)


# -- validation --------------------------------------------------------------------------------

def _check_columns(raw: dict[str, pd.DataFrame]) -> list[str]:
    problems = []
    for table, frame in raw.items():
        for name, spec in CONTRACT[table].items():
            if spec.required and name not in frame.columns:
                problems.append(f"{table}: missing required column '{name}' (expected {spec.expected})")
    return problems


def validate_tables(raw: dict[str, pd.DataFrame], data_end: pd.Timestamp | None = None) -> ValidatedData:
    """Validate raw tables (as read by ``read_tables``) against the contract.

    ``data_end``: when the extract was taken (default: now, UTC); a timestamp after it is in
    the future of the data. Returns the clean tables in canonical dtypes, the quarantined
    rows with a reason each, and the per-table reconciliation summary.
    """
    if "orders" not in raw:
        raise ContractError(["orders: missing required table (expected orders.csv or orders.parquet)"])
    problems = _check_columns(raw)
    if problems:
        raise ContractError(problems)
    data_end = pd.Timestamp(data_end) if data_end is not None else pd.Timestamp.now(tz="UTC").floor("s")
    if data_end.tzinfo is not None:
        data_end = data_end.tz_convert("UTC").tz_localize(None)
    order = [t for t in TABLES if t in raw]
    clean, quarantine, rows = {}, {}, []
    known: pd.Index | None = None
    for table in order:
        frame = raw[table].reset_index(drop=True)
        parsed, issues = _parse(table, frame)
        issues += _schema_issues(table, parsed)
        for col in TIME_COLUMNS[table]:
            if col in parsed:
                issues.append((parsed[col] > data_end, _Msg(f"{table}.{col}: ", parsed[col],
                                                             f" is in the future of the data (after {data_end:%Y-%m-%d %H:%M:%S})")))
        if table != "customers" and known is not None:
            unknown = parsed["customer_id"].notna() & ~_isin(parsed["customer_id"], known)
            where = "not in customers" if "customers" in raw else "has no valid order (and no customers table)"
            issues.append((unknown, _Msg(f"{table}.customer_id: ", parsed["customer_id"], f" is an unknown customer ({where})")))
        reason = _combine(parsed.index, issues)
        id_col = ID_COLUMNS.get(table)
        if id_col:
            ok = ~parsed.index.isin(reason.index)
            dup = pd.Series(ok, index=parsed.index) & parsed[id_col].where(ok).duplicated(keep="first") & parsed[id_col].notna()
            if dup.any():
                message = _Msg(f"{table}.{id_col}: duplicate ", parsed[id_col], " (the first row with this id is kept)")
                reason = pd.concat([reason, message.render(dup).astype("object")]).sort_index()
        bad = parsed.index.isin(reason.index)
        kept = parsed[~bad].reset_index(drop=True)
        clean[table] = kept
        quarantine[table] = frame[bad].astype("str").assign(reason=reason.to_numpy(), source_row=np.flatnonzero(bad))
        rows.append({"table": table, "rows_read": len(frame), "rows_kept": len(kept), "rows_quarantined": int(bad.sum())})
        if table == "customers":
            known = pd.Index(kept["customer_id"])
        if table == "orders" and "customers" not in raw:
            known = pd.Index(kept["customer_id"].unique())
            first = kept.groupby("customer_id", sort=True)["ordered_at"].min()
            clean["customers"] = pd.DataFrame({"customer_id": first.index.astype("str"), "created_at": first.to_numpy()})
    notes = [] if "customers" in raw else ["customers: derived from orders (created_at = the first order)"]
    tables = {t: clean[t] for t in TABLES if t in clean}
    summary = pd.DataFrame(rows, columns=["table", "rows_read", "rows_kept", "rows_quarantined"])
    return ValidatedData(tables=tables, quarantine=quarantine, summary=summary, data_end=data_end, notes=notes)


def load_data(data_dir: Path, data_end: pd.Timestamp | None = None) -> ValidatedData:
    """Read and validate a data folder."""
    return validate_tables(read_tables(data_dir), data_end=data_end)


def write_quarantine(result: ValidatedData, out_dir: Path) -> dict[str, Path]:
    """quarantine_<table>.csv for each table with quarantined rows, and validation_summary.csv.
    Stale quarantine files of tables now clean are removed."""
    out_dir = Path(out_dir)
    paths = {}
    for table in TABLES:
        path = out_dir / f"quarantine_{table}.csv"
        frame = result.quarantine.get(table)
        if frame is not None and len(frame):
            paths[table] = write_frame(frame, path)
        else:
            path.unlink(missing_ok=True)
    paths["summary"] = write_frame(result.summary, out_dir / "validation_summary.csv")
    return paths


def format_summary(result: ValidatedData) -> str:
    """The reconciliation as a small plain-text table, plus notes and the main reasons."""
    lines = [f"{'table':<14}{'read':>12}{'kept':>12}{'quarantined':>13}"]
    for r in result.summary.itertuples():
        lines.append(f"{r.table:<14}{r.rows_read:>12,}{r.rows_kept:>12,}{r.rows_quarantined:>13,}")
    for table, frame in result.quarantine.items():
        if len(frame):
            examples = frame["reason"].head(3).tolist()
            lines.append(f"  {table}: {len(frame):,} quarantined, e.g. " + " | ".join(examples))
    lines += [f"note: {n}" for n in result.notes]
    skipped = [t for t in result.skipped_tables()]
    if skipped:
        lines.append("absent optional tables: " + ", ".join(skipped))
    return "\n".join(lines)
