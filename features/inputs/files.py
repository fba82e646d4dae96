"""Read a folder of exports: one file per table, as it is (no parsing, no validation).

A table is ``<table>.parquet`` (a file, or a Parquet dataset folder), ``<table>.csv`` or
``<table>.csv.gz`` in the folder, or the file ``source.tables.<table>.file`` names.
Everything that makes a file unusable is a fatal problem naming the table, the file and
what to fix: a missing required table, two files for one table, a folder where a file
should be, a broken or looping symbolic link, a file that cannot be parsed, a header with
the same column name twice, text in another encoding than the one configured.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.inputs.config import SourceConfig, TableSource
from features.inputs.contract import REQUIRED_TABLES, TABLES, ContractError, network_os_error

SUFFIXES = (".csv", ".csv.gz", ".parquet")
# A CSV row may be long (a free-text comment, a wide customers table): Arrow's reader must
# hold a whole row in one block.
_BLOCK_BYTES = 64 << 20
MAX_COLUMNS = 1_000


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


def read_tables(data_dir: Path, source: SourceConfig | None = None, *,
                lazy_parquet: bool = False) -> dict[str, pd.DataFrame | ParquetFile]:
    """Read every contract table present in ``data_dir``, as it is.

    Input: a folder of exports; ``source`` (optional) names files and CSV formats per table.
    Output: table -> raw frame (CSV cells as ``str``, empty cells missing; Parquet with its
    own types); with ``lazy_parquet``, a Parquet file is a ``ParquetFile`` (only its schema
    read): ``validate_tables`` checks it with DuckDB and reads it into pandas only if it
    must. Raises ``ContractError`` listing every problem.
    """
    source = source or SourceConfig()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContractError([f"data folder {data_dir} does not exist or is not a folder "
                             "(expected a folder with orders.csv or orders.parquet)"])
    raw, problems, unanswered = {}, [], 0
    for table in TABLES:
        spec = source.table(table)
        path, problem = _locate(data_dir, table, spec)
        if problem:
            problems.append(problem)
            continue
        if path is None:
            if table in REQUIRED_TABLES:
                problems.append(f"{table}: missing required table (expected {table}.csv or {table}.parquet in {data_dir})")
            continue
        try:
            frame = _read_file(path, spec, lazy_parquet, table)
        except ContractError as exc:
            problems += [f"{table}: {p}" for p in exc.problems]
            continue
        except Exception as exc:  # any reader error makes the file unusable: say which and why
            problems.append(f"{table}: cannot read {path} ({_reader_error(exc, spec)})".replace("<table>", table))
            unanswered += network_os_error(exc)
            continue
        if len(frame.columns) > MAX_COLUMNS:
            problems.append(f"{table}: {path.name} has {len(frame.columns):,} columns (at most {MAX_COLUMNS:,} are "
                            "read: export the columns the pipeline needs and at most a few hundred attributes)")
            continue
        raw[table] = frame
    if problems:  # only files a network share did not serve: worth trying again
        raise ContractError(problems, transient=unanswered == len(problems))
    return raw


def _locate(data_dir: Path, table: str, spec: TableSource) -> tuple[Path | None, str | None]:
    """The file of ``table`` (None when absent), or a problem."""
    if spec.file:
        path = data_dir / spec.file
        problem = _unusable(path, table)
        if problem:
            return None, problem
        if not (path.exists() or path.is_symlink()):
            return None, (f"{table}: {spec.file} (source.tables.{table}.file) is not in {data_dir}{_files_in(data_dir)}")
        return path, None
    candidates = [data_dir / f"{table}{suffix}" for suffix in SUFFIXES]
    found = [p for p in candidates if p.exists() or p.is_symlink()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        return None, f"{table}: both {names} exist in {data_dir} (expected one file per table)"
    if not found:
        return None, None
    return found[0], _unusable(found[0], table)


def _files_in(data_dir: Path, limit: int = 12) -> str:
    """' (it holds a.csv, b.csv, ...)': what the folder has, for a name that is not there."""
    try:
        names = sorted(p.name for p in data_dir.iterdir() if not p.name.startswith("."))
    except OSError:
        return ""
    if not names:
        return " (the folder is empty)"
    return f" (it holds {', '.join(names[:limit])}{', ...' if len(names) > limit else ''})"


def _unusable(path: Path, table: str) -> str | None:
    """Why ``path`` cannot be read as a table file, or None."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return f"{table}: {path} is a symbolic link that loops (point it at the export file)"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"{table}: {path} is a symbolic link that loops (point it at the export file)"
            return f"{table}: {path} is a broken symbolic link (its target {os.readlink(path)} does not exist)"
    if path.is_dir() and not path.name.endswith(".parquet"):
        return f"{table}: {path} is a folder (expected a CSV file; only a Parquet dataset may be a folder)"
    return None


def _read_file(path: Path, spec: TableSource, lazy_parquet: bool = False,
               table: str = "<table>") -> pd.DataFrame | ParquetFile:
    if path.name.endswith(".parquet"):
        if lazy_parquet and path.is_file():
            file = ParquetFile.open(path)
            _check_names(pq.read_schema(path).names, path)
            return file
        table = pq.read_table(path)
        _check_names(table.column_names, path)
        return table.to_pandas()
    # Arrow's reader: an order of magnitude faster than pandas' C engine, and it rejects a
    # row with too many fields instead of silently shifting it into the index.
    names = _header(path, spec)
    _check_separator(names, path, spec, table)
    _check_names(names, path)
    table = pacsv.read_csv(
        pyarrow.input_stream(str(path), compression="detect"),
        read_options=pacsv.ReadOptions(encoding=spec.encoding, block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=spec.delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={n: pyarrow.string() for n in names},
                                             strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True))
    return table.to_pandas(types_mapper={pyarrow.string(): pd.StringDtype(na_value=float("nan"))}.get)


def _header(path: Path, spec: TableSource) -> list[str]:
    """The column names of a CSV file (its first row)."""
    import csv
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding=spec.encoding, newline="", errors="strict") as handle:
        csv.field_size_limit(1 << 30)
        row = next(csv.reader(handle, delimiter=spec.delimiter), [])
    return [name.lstrip("\ufeff") if i == 0 else name for i, name in enumerate(row)]


_SEPARATORS = {";": "';'", "\t": "'\\t' (a tab)", "|": "'|'", ",": "','"}


def separator_hint(names, table: str = "<table>", configured: str = ",") -> str:
    """'; set ...delimiter: ...' when a header read as one column holds another separator, else ''."""
    if len(names) != 1:
        return ""
    counts = {sep: str(names[0]).count(sep) for sep in _SEPARATORS if sep != configured}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    if not n:
        return ""
    return f"; its fields look separated by {_SEPARATORS[sep]}: set source.tables.{table}.delimiter (or source.defaults.delimiter)"


def _check_separator(names: list[str], path: Path, spec: TableSource, table: str) -> None:
    """A header that is one column holding another separator: the export is not comma-separated."""
    hint = separator_hint(names, table, spec.delimiter)
    if hint:
        from features.inputs.parse import _one_line

        raise ContractError([f"{path.name}: its header is one column '{_one_line(names[0], 60)}'{hint}"])


def _check_names(names: list[str], path: Path) -> None:
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        listed = ", ".join(f"'{n}'" for n in repeated)
        raise ContractError([f"{path.name} has the column name {listed} more than once in its header "
                             "(expected one column per name: rename or drop the copies)"])
    if "" in names:
        raise ContractError([f"{path.name} has a column without a name in its header (position "
                             f"{names.index('') + 1}; expected a name for every column)"])


def _reader_error(exc: Exception, spec: TableSource) -> str:
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in detail or "UTF-8" in detail:
        return (f"its text is not {spec.encoding}: set source.tables.<table>.encoding to the export's encoding, "
                f"e.g. cp1252 ({type(exc).__name__}: {detail})")
    return f"{type(exc).__name__}: {detail}"
