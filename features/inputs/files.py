"""Read a folder of exports: one file per table, as it is (no parsing, no validation)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features.inputs.contract import REQUIRED_TABLES, TABLES, ContractError


@dataclass(frozen=True)
class ParquetFile:
    """A Parquet table not read yet: its ``path``, and ``empty``, the frame pandas reads
    without its rows (so ``columns`` and dtypes are those of ``read()``)."""
    path: Path
    empty: pd.DataFrame

    @classmethod
    def open(cls, path: Path) -> ParquetFile:
        """Read the file's schema only (raises the reader's error for a file that is not Parquet)."""
        return cls(Path(path), pq.read_schema(path).empty_table().to_pandas())

    @property
    def columns(self) -> pd.Index:
        return self.empty.columns

    def read(self) -> pd.DataFrame:
        return pd.read_parquet(self.path)


def read_tables(data_dir: Path, *, lazy_parquet: bool = False) -> dict[str, pd.DataFrame | ParquetFile]:
    """Read every contract table present in ``data_dir``, as it is.

    Input: a folder with ``<table>.parquet`` or ``<table>.csv`` per table. Output: table ->
    raw frame (CSV cells as ``str``, empty cells missing; Parquet with its own types); with
    ``lazy_parquet``, a Parquet file is a ``ParquetFile`` (only its schema read):
    ``validate_tables`` checks it with DuckDB and reads it into pandas only if it must.
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
                raw[table] = _read_file(found[0], lazy_parquet)
            except Exception as exc:  # any reader error makes the file unusable: say which and why
                detail = (str(exc).strip().splitlines() or [""])[0][:300]
                problems.append(f"{table}: cannot read {found[0]} ({type(exc).__name__}: {detail})")
    if problems:
        raise ContractError(problems)
    return raw


def _read_file(path: Path, lazy_parquet: bool = False) -> pd.DataFrame | ParquetFile:
    if path.suffix == ".parquet":
        return ParquetFile.open(path) if lazy_parquet and path.is_file() else pd.read_parquet(path)
    # Arrow's reader: an order of magnitude faster than pandas' C engine, and it rejects a
    # row with too many fields instead of silently shifting it into the index.
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], engine="pyarrow")


