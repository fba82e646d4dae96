"""The input side: where the data comes from (a folder of files or a SQL database), how its
columns map onto the contract, the contract itself, and the validation that quarantines bad
rows and stops a bad extract. Everything downstream sees validated tables only."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.inputs.contract import (CANONICAL_DTYPES, SCHEMAS, TABLES, ContractError, ValidatedData)
from features.inputs.files import read_tables
from features.inputs.quarantine import format_summary, validate_tables, write_quarantine

__all__ = ["CANONICAL_DTYPES", "SCHEMAS", "TABLES", "ContractError", "ValidatedData", "format_summary", "load_data",
           "read_tables", "validate_tables", "write_quarantine"]


def load_data(data_dir: Path, data_end: pd.Timestamp | None = None) -> ValidatedData:
    """``read_tables(data_dir)`` then ``validate_tables(raw, data_end)``; raises ``ContractError``.

    Parquet files are read lazily: a typed file that is clean as it is is checked by DuckDB
    and not read into pandas (``ValidatedData.sources`` names it; ``tables`` reads it on
    first access)."""
    return validate_tables(read_tables(data_dir, lazy_parquet=True), data_end=data_end)
