"""The column mapping: a source's own column names onto the contract's (``source.tables.<t>.columns``).

``columns`` maps contract column -> source column. Unmapped contract columns keep their
names; other source columns are ignored by the contract (customers: kept as attributes). A
source column that is itself named like a mapped contract column is kept as
``<name>_in_file``, so nothing is silently overwritten.
"""
from __future__ import annotations

import pandas as pd

from features.inputs.config import TableSource
from features.inputs.contract import ContractError
from features.inputs.files import separator_hint


def map_columns(table: str, frame: pd.DataFrame, spec: TableSource, where: str) -> pd.DataFrame:
    """``frame`` with its columns renamed to the contract's (a new frame; the input is not
    modified). ``where`` names the file or database table in messages. Raises
    ``ContractError`` when a mapped source column is absent."""
    if not spec.columns:
        return frame
    found = [str(c) for c in frame.columns]
    missing = [(target, name) for target, name in spec.columns.items() if name not in frame.columns]
    if missing:
        shown = ", ".join(f"'{c}'" for c in found[:20]) + (", ..." if len(found) > 20 else "")
        hint = separator_hint(found, table)
        raise ContractError([f"{table}: column '{name}' (source.tables.{table}.columns.{target}) is not in {where} "
                             f"(found {shown}{hint})" for target, name in missing])
    mapped = {}
    for target, name in spec.columns.items():
        mapped[target] = frame[name]
    sources = set(spec.columns.values())
    rest = {}
    for column in frame.columns:
        if column in sources:
            continue
        rest[f"{column}_in_file" if column in mapped else column] = frame[column]
    return pd.DataFrame({**mapped, **rest}, index=frame.index)
