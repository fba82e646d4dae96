"""The input side: where the data comes from (a folder of files or a SQL database), how its
columns map onto the contract, the contract itself, and the validation that quarantines bad
rows and stops a bad extract. Everything downstream sees validated tables only.

- ``files``: a folder of exports; ``sql``: a database through SQLAlchemy;
- ``mapping``: source column names onto the contract's;
- ``contract``: the tables, columns and rules; ``parse``: raw values into canonical dtypes;
- ``quarantine``: bad rows with a reason each, reconciliation, the clean tables;
- ``gate``: the thresholds that make a bad extract fatal; ``dates``: ISO 8601 dates.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from features.inputs.config import SourceConfig, TableSource, ValidationConfig
from features.inputs.contract import CANONICAL_DTYPES, SCHEMAS, TABLES, ContractError, ValidatedData
from features.inputs.dates import parse_iso
from features.inputs.files import ParquetFile, read_tables
from features.inputs.gate import gate_problems, gate_warnings
from features.inputs.mapping import map_columns
from features.inputs.quarantine import format_summary, validate_tables, write_quarantine
from features.inputs.sql import read_sql_tables, redact_url

__all__ = ["CANONICAL_DTYPES", "SCHEMAS", "TABLES", "ContractError", "SourceConfig", "TableSource", "ValidatedData",
           "ValidationConfig", "format_summary", "gate_problems", "gate_warnings", "load_data", "load_source",
           "parse_iso", "read_source", "read_sql_tables", "read_tables", "redact_url", "same_sources", "sources_if_clean",
           "validate_source", "validate_tables", "write_quarantine"]


def load_data(data_dir: Path, data_end: pd.Timestamp | None = None) -> ValidatedData:
    """``read_tables(data_dir)`` then ``validate_tables(raw, data_end)``; raises ``ContractError``.

    Parquet files are read lazily: a typed file that is clean as it is is checked by DuckDB
    and not read into pandas (``ValidatedData.sources`` names it; ``tables`` reads it on
    first access)."""
    return validate_tables(read_tables(data_dir, lazy_parquet=True), data_end=data_end)


def describe_source(source: SourceConfig, data_dir: Path | None = None) -> str:
    """Where the data comes from, for messages (a SQL URL with its password masked)."""
    if source.kind == "sql":
        from features.inputs.sql import redact_url

        return redact_url(source.url or "")
    return str(data_dir or source.path)


def read_source(source: SourceConfig, data_dir: Path | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The raw tables of ``source`` with the contract's column names (``source.tables.<t>.columns``
    applied): a folder of files (``data_dir`` overrides ``source.path``) or a SQL database."""
    if source.kind == "sql":
        from features.inputs.sql import read_sql_tables

        raw = read_sql_tables(source, environ)
        where = {t: f"the {t} table read from {describe_source(source)}" for t in raw}
    else:
        folder = data_dir if data_dir is not None else source.path
        if folder is None:
            raise ContractError(["no data: give --data DIR or source.path in the config"])
        raw = read_tables(Path(folder), source, lazy_parquet=True)
        where = {t: f"{t} in {folder}" for t in raw}
    mapped, problems = {}, []
    for table, frame in raw.items():
        spec = source.table(table)
        if spec.columns and isinstance(frame, ParquetFile):  # renamed columns: read it (never clean as it is)
            frame = frame.read()
        try:
            mapped[table] = map_columns(table, frame, spec, where[table])
        except ContractError as exc:
            problems += exc.problems
    if problems:
        raise ContractError(problems)
    return mapped


def load_source(source: SourceConfig, validation: ValidationConfig | None = None, data_dir: Path | None = None,
                data_end: pd.Timestamp | None = None, environ: Mapping[str, str] | None = None) -> ValidatedData:
    """Read, map and validate ``source``, then apply the gate: ``ContractError`` for any fatal
    problem (when the gate stops a validated extract, ``error.result`` holds the validation,
    so its quarantine can still be written for people to inspect)."""
    validation = validation or ValidationConfig()
    raw = read_source(source, data_dir, environ)
    result = validate_tables(raw, data_end=data_end, source=source, earliest=parse_iso(validation.earliest, "validation.earliest"))
    problems = gate_problems(result, validation)
    if problems:
        raise ContractError(problems, result=result)
    return result


def sources_if_clean(source: SourceConfig, data_dir: Path | None = None) -> dict[str, Path] | None:
    """What ``validate_source(...).sources`` will be if every table turns out clean as it is:
    the Parquet files themselves. None when that cannot happen (a SQL source, a CSV file, an
    option that changes a table, a derived customers table, an unreadable folder). A caller
    may start reading these files while the validation runs, and must use what it read only
    when the validation's ``sources`` equal them (``same_sources``)."""
    from features.inputs.quarantine import read_as_is

    folder = data_dir if data_dir is not None else source.path
    if source.kind != "files" or folder is None:
        return None
    try:
        raw = read_tables(Path(folder), source, lazy_parquet=True)
    except (ContractError, OSError):
        return None
    present = [t for t in TABLES if t in raw]
    as_is = read_as_is(raw, present, source)
    if "customers" not in raw or "orders" not in raw or len(as_is) != len(present):
        return None
    return {t: as_is[t].path for t in present}


def same_sources(sources: Mapping, guess: Mapping | None) -> bool:
    """Whether validated ``sources`` are exactly the files of ``guess`` (``sources_if_clean``)."""
    return (guess is not None and set(sources) == set(guess)
            and all(isinstance(sources[t], (str, Path)) and Path(sources[t]) == Path(guess[t]) for t in guess))


def validate_source(source: SourceConfig, validation: ValidationConfig | None, data_dir: Path | None, out_dir: Path,
                    data_end: pd.Timestamp | None = None,
                    environ: Mapping[str, str] | None = None) -> tuple[ValidatedData, dict[str, Path]]:
    """``load_source`` and the quarantine written to ``out_dir`` (``write_quarantine``),
    also when the gate stops the extract (then ``ContractError`` is raised afterwards)."""
    try:
        result = load_source(source, validation, data_dir, data_end=data_end, environ=environ)
    except ContractError as exc:
        if exc.result is not None:
            write_quarantine(exc.result, Path(out_dir))
        raise
    return result, write_quarantine(result, Path(out_dir))
