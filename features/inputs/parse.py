"""Parse raw columns into the contract's canonical dtypes, keeping the rows whose value could not be read."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

from features.inputs.config import IdOptions, TableSource
from features.inputs.contract import (CATEGORY, FLAG, FALSE_TOKENS, ID, INTEGER, LOWER_TEXT, NUMBER, SCHEMAS,
                                      TIMESTAMP, TRUE_TOKENS, _NULL_VARIANTS, _TYPE_NAMES)

_DEFAULT = TableSource()
_AWARE = r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"  # an ISO 8601 text with its own offset


def type_name(kind: str, spec: TableSource = _DEFAULT) -> str:
    """How a value of ``kind`` must be written, for messages ('an ISO 8601 timestamp')."""
    if kind == TIMESTAMP and spec.timestamp_format:
        return f"a timestamp in the format {spec.timestamp_format}"
    if kind in (NUMBER, INTEGER) and (spec.decimal != "." or spec.thousands):
        marks = f"decimal mark '{spec.decimal}'" + (f", thousands separator '{spec.thousands}'" if spec.thousands else "")
        return f"a number ({marks})"
    return _TYPE_NAMES[kind]


def format_hint(table: str, column: str, kind: str, examples: list[str]) -> str:
    """The option that would read a column none of whose values could be read, or ''."""
    key = f"source.tables.{table}"
    if kind == TIMESTAMP:
        for fmt in ("%d/%m/%Y %H:%M", "%d/%m/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y",
                    "%Y%m%d", "%d-%m-%Y %H:%M", "%d-%m-%Y"):
            if all(pd.notna(pd.to_datetime(e.strip(), format=fmt, errors="coerce")) for e in examples):
                return f"; set {key}.timestamp_format, e.g. '{fmt}' (day and month order as in your export)"
        return f"; set {key}.timestamp_format to the strptime format of these dates"
    if kind in (NUMBER, INTEGER):
        joined = "".join(examples)
        if "," in joined and "." in joined:
            return (f"; set {key}.thousands: ',' (1,857.60) or {key}.decimal: ',' with thousands: '.' (1.857,60)")
        if "," in joined:
            return (f"; set {key}.decimal: ',' (with thousands: '.' if amounts such as 1.234,50 occur), or "
                    "thousands: ',' if the comma separates thousands")
        if " " in joined.strip():
            return f"; set {key}.thousands: ' '"
    if kind in (FLAG, CATEGORY):
        words = ", ".join(f"{_one_word(e)}: ..." for e in dict.fromkeys(examples))
        return f"; translate the export's words with {key}.values.{column}: {{{words}}}"
    return ""


def unreadable_hint(table: str, column: str, kind: str, spec: TableSource, text: pd.Series) -> pd.Series | str:
    """What to set so a value that did not parse is read, per row or for all: a thousands
    separator when a decimal comma is set and a number also holds a dot ('1.234,50'); the
    ``values`` option for a flag written in the export's words; the swapped format when a
    timestamp reads with day and month exchanged; '' otherwise."""
    if kind in (NUMBER, INTEGER) and spec.decimal == "," and not spec.thousands:
        return pd.Series(np.where(text.str.contains(".", regex=False).fillna(False).to_numpy(bool),
                                  "; set thousands: '.' for amounts such as 1.234,50", ""), index=text.index)
    if kind == FLAG:
        return f" (translate the export's words with source.tables.{table}.values.{column})"
    fmt = spec.timestamp_format
    if kind == TIMESTAMP and fmt and "%d" in fmt and "%m" in fmt:
        swapped = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
        reads = pd.to_datetime(text.str.strip(), format=swapped, errors="coerce").notna().to_numpy(bool)
        if reads.any():  # e.g. '13/07/2025' under %m/%d/%Y: the export writes the day first
            return pd.Series(np.where(reads, f"; day and month look swapped: timestamp_format '{swapped}'?", ""),
                             index=text.index)
    return ""


def _one_word(text: str) -> str:
    text = " ".join(str(text).split())[:30]
    return text if text.replace("_", "").replace("-", "").isalnum() else '"' + text.replace('"', "'") + '"'


def translate(series: pd.Series, mapping: dict) -> pd.Series:
    """``series`` with the export's words replaced by the contract's values (``values:``),
    matched ignoring case and surrounding space; other values are kept as they are."""
    if not mapping or pd.api.types.is_bool_dtype(series):
        return series
    lookup = {_key(k): _token(v) for k, v in mapping.items()}
    text = _as_text(series)
    keys = text.str.strip().str.lower()
    hit = keys.isin(list(lookup)).to_numpy(bool) & series.notna().to_numpy(bool)
    if not hit.any():
        return series
    out = text.astype(object).where(series.notna(), None)
    out[hit] = keys[hit].map(lookup)
    return pd.Series(out, index=series.index, dtype="str")


def _key(value) -> str:
    return _token(value).strip().lower()


def _token(value) -> str:
    """A configured value as the export's text: YAML's true/false as 'true'/'false', 1.0 as '1'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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


def _parse_id(series: pd.Series, ids: IdOptions | None = None) -> pd.Series:
    value = _read_id(series)
    if ids is not None and (ids.strip_leading_zeros or ids.lower_case or ids.strip_decimal_zero):
        value = normalise_ids(value, ids)
    return value


def normalise_ids(value: pd.Series, ids: IdOptions) -> pd.Series:
    """Apply ``source.ids`` to parsed id text (missing stays missing)."""
    arr = _arrow(value)
    if ids.strip_decimal_zero:
        arr = pc.replace_substring_regex(arr, pattern=r"^(\d+)\.0+$", replacement=r"\1")
    if ids.strip_leading_zeros:
        arr = pc.replace_substring_regex(arr, pattern=r"^0+(.)", replacement=r"\1")
    if ids.lower_case:
        arr = pc.utf8_lower(arr)
    return pd.Series(arr.to_pandas(), index=value.index).astype("str")


def _read_id(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series):
        whole = (series % 1 == 0).to_numpy(dtype=bool, na_value=False) & (series.abs() < 2**53).to_numpy(bool, na_value=False)
        text = series.astype("str")
        if whole.any():
            text = text.mask(whole, series.where(whole).astype("Int64").astype("str"))
        return text
    text = _strip(_as_text(series))
    return _mask(text, _null_tokens(text))


def _parse_timestamp(series: pd.Series, spec: TableSource = _DEFAULT) -> tuple[pd.Series, np.ndarray | None]:
    """Timestamps as naive UTC: tz-aware values converted, naive ones read in ``spec.timezone``;
    text in ISO 8601 or in ``spec.timestamp_format``."""
    zone = spec.timezone
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        value = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(series):
        value = _from_zone(series, zone)
    elif pd.api.types.is_numeric_dtype(series):  # epoch numbers are ambiguous (s? ms?): not read
        value = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    else:
        source = _as_text(series) if pd.api.types.is_string_dtype(series) else series
        if spec.timestamp_format:
            value = _strptime(source.str.strip(), spec.timestamp_format, zone)
        else:
            value = _iso(source, zone)
            failed = (value.isna() & series.notna()).to_numpy(bool)
            if failed.any() and pd.api.types.is_string_dtype(source):  # a second chance with surrounding space stripped
                value = value.copy()
                value[failed] = _iso(source[failed].str.strip(), zone)
    value = value.astype("datetime64[us]")
    return value, _unreadable(series, value)


def _iso(text: pd.Series, zone: str) -> pd.Series:
    """ISO 8601 text as naive UTC; text without an offset is in ``zone``."""
    value = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
    if zone == "UTC" or not len(text):
        return value
    naive = ~text.str.strip().str.contains(_AWARE, regex=True).fillna(True).to_numpy(bool)
    if naive.any():
        value = value.copy()
        value[naive] = _from_zone(value[naive], zone)
    return value


def _strptime(text: pd.Series, fmt: str, zone: str) -> pd.Series:
    if "%z" in fmt or "%Z" in fmt:
        return pd.to_datetime(text, errors="coerce", format=fmt, utc=True).dt.tz_localize(None)
    return _from_zone(pd.to_datetime(text, errors="coerce", format=fmt), zone)


def _from_zone(value: pd.Series, zone: str) -> pd.Series:
    """Naive wall-clock times in ``zone`` as naive UTC (the repeated hour of a daylight-saving
    change reads as standard time, the skipped hour moves forward)."""
    if zone == "UTC":
        return value
    return (value.dt.tz_localize(zone, ambiguous=np.zeros(len(value), dtype=bool), nonexistent="shift_forward")
            .dt.tz_convert("UTC").dt.tz_localize(None))


def _parse_number(series: pd.Series, spec: TableSource = _DEFAULT) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype("float64"), None
    text = _as_text(series)
    if spec.thousands:
        text = text.str.replace(spec.thousands, "", regex=False)
    if spec.decimal != ".":
        text = text.str.replace(".", "\0", regex=False).str.replace(spec.decimal, ".", regex=False)
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


def _parse_table(table: str, raw: pd.DataFrame, spec: TableSource = _DEFAULT,
                 ids: IdOptions | None = None) -> tuple[_Parsed, list[str]]:
    """Parse the contract columns of ``raw`` (formats from ``spec``, ids normalised by
    ``ids``); fatal problems for columns with no readable value."""
    columns, unreadable, problems = {}, {}, []
    for name, col in SCHEMAS[table].columns.items():
        if name not in raw.columns:
            continue
        kind, series, bad = col.metadata["kind"], raw[name], None
        if name in spec.values:
            series = translate(series, spec.values[name])
        if kind == ID:
            value = _parse_id(series, ids)
        elif kind == TIMESTAMP:
            value, bad = _parse_timestamp(series, spec)
        elif kind in (NUMBER, INTEGER):
            value, bad = _parse_number(series, spec)
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
                shown = list(_as_text(series.iloc[unreadable[name][:3]]))
                examples = ", ".join(f"'{_one_line(v)}'" for v in shown)
                problems.append(f"{table}: column '{name}' has no value readable as {type_name(kind, spec)} "
                                f"(expected {col.description}; found {examples}{format_hint(table, name, kind, shown)})")
        columns[name] = value
    extras = {c: raw[c] for c in raw.columns if c not in columns}
    return _Parsed(pd.DataFrame({**columns, **extras}, index=raw.index), unreadable), problems




def _one_line(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


