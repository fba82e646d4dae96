"""Parse raw columns into the contract's canonical dtypes, keeping the rows whose value could not be read."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

from features.inputs.contract import (CATEGORY, FLAG, FALSE_TOKENS, ID, INTEGER, LOWER_TEXT, NUMBER, SCHEMAS,
                                      TIMESTAMP, TRUE_TOKENS, _NULL_VARIANTS, _TYPE_NAMES)


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




def _one_line(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


