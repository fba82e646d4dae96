"""Read the contract tables from a SQL database, as they are (no mapping, no parsing, no validation).

``source.kind: sql``: ``source.url`` is a SQLAlchemy URL without the password; the password
is read from the environment variable ``source.password_env`` and put into the URL object
(never into a string). Every message names the database by ``redact_url``.

Two readers give the same raw frames:

- PostgreSQL through psycopg2: ``COPY (<select>) TO STDOUT`` (CSV) streamed through a pipe
  into Arrow's multi-threaded CSV reader, typed from the result's column types (found by
  running the select with ``LIMIT 0``). The CSV text is never held whole; NULL and the empty
  string stay distinct (CSV writes NULL bare, '' quoted).
- any other SQLAlchemy database: the rows streamed (``stream_results``) in chunks of
  ``CHUNK_ROWS`` into Arrow arrays, typed from the values the driver returns.

Both run in one read-only transaction (on PostgreSQL: REPEATABLE READ, so every table is
read from one snapshot) and return, per table, a frame with the source's column names and
faithful types: integers ``int64`` (``Int64`` when there are NULLs), other numbers
``float64`` (``numeric`` too), booleans ``bool``, timestamps ``datetime64[us]`` (tz-aware
ones as ``datetime64[us, UTC]``; ``date`` as midnight), everything else ``str``. A value an
Arrow type cannot hold (PostgreSQL's ``'infinity'`` timestamp) leaves its column as text, for
the parser to quarantine the row. SQLite has no date type: its timestamps come out as the
ISO text they are stored as, which the parser reads the same way.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping

import pandas as pd
import pyarrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.inputs.config import SourceConfig, TableSource
from features.inputs.contract import REQUIRED_TABLES, TABLES, ContractError, network_os_error

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
CONNECT_TIMEOUT_SECONDS = 10
_CSV_BLOCK_BYTES = 16 << 20
# the package that provides a driver module SQLAlchemy could not import
_DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "pg8000": "pg8000",
                    "asyncpg": "asyncpg", "pymysql": "PyMySQL", "MySQLdb": "mysqlclient", "mysql": "mysql-connector-python",
                    "pyodbc": "pyodbc", "pymssql": "pymssql", "oracledb": "oracledb", "cx_Oracle": "cx_Oracle",
                    "snowflake": "snowflake-sqlalchemy", "duckdb_engine": "duckdb-engine"}
_SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)


def redact_url(url) -> str:
    """``url`` (a string or a SQLAlchemy ``URL``) fit to print: ``postgresql+psycopg2://churn:***@host:5432/db``.

    The driver part is kept as given. A URL with a user name always shows ``user:***@``,
    whether it holds a password or not, so a message never tells whether one was set; query
    parameters whose name mentions a password, secret, token or key show ``***`` too.
    """
    from sqlalchemy.engine import URL, make_url

    try:
        parsed = url if isinstance(url, URL) else make_url(str(url))
    except Exception:
        return "<a database URL that is not a SQLAlchemy URL>"
    if parsed.username is not None:
        parsed = parsed.set(password="***")
    query = {k: ("***" if _SECRET_QUERY_KEY.search(k) else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def read_sql_tables(source: SourceConfig, environ: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """Read every contract table the database has, as it is.

    Input: the ``source:`` section (``kind: sql``); ``environ`` holds ``source.password_env``
    (default ``os.environ``). A table is read from ``source.tables.<t>.query`` (run as given),
    else ``source.tables.<t>.table``, else the table (or view) of the contract's name when
    ``source.schema`` (default: the connection's default schema) has one. Output: table ->
    raw frame, source column names, types as in the module docstring. Raises
    ``ContractError`` listing every problem, one line each, the URL redacted: no url, an unset
    password variable, a missing driver, a failed connection (with the driver's first error
    line), a missing orders table, a table or query that cannot be read.
    """
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    if not source.url:
        raise ContractError(["source.url: missing (expected a SQLAlchemy URL such as "
                             "postgresql+psycopg2://user@host:5432/db for source.kind: sql)"])
    url = make_url(source.url)
    password = None
    if source.password_env:
        environ = os.environ if environ is None else environ
        password = environ.get(source.password_env)
        if password is None:
            raise ContractError([f"source.password_env: the environment variable {source.password_env} is not set "
                                 f"(expected the password of {redact_url(url)})"])
        url = url.set(password=password)
    shown = redact_url(url)
    try:
        engine = _engine(url)
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        raise ContractError([f"source.url: the database driver {module} of {shown} is not installed "
                             f"(expected it installed: pip install {package})"]) from None
    except sa.exc.NoSuchModuleError:
        raise ContractError([f"source.url: {shown} names a database dialect SQLAlchemy does not know "
                             "(expected e.g. postgresql+psycopg2://, mysql+pymysql://, sqlite:///)"]) from None
    try:
        return _read_all(engine, source, shown, password)
    except ContractError:
        raise
    except Exception as exc:  # e.g. the connection lost while the transaction ends
        raise ContractError([f"source.url: reading from {shown} failed ({_first_line(exc, password)})"],
                            transient=_unanswered(exc)) from None
    finally:
        engine.dispose()


# -- connection ---------------------------------------------------------------------------------

def _engine(url):
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if url.get_driver_name() == "psycopg2" else {}
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)


NOT_TRANSIENT = ("password authentication failed", "does not exist", "no such table", "unable to open database file",
                 "syntax error", "permission denied", "access denied", "role ")


def _unanswered(exc: BaseException) -> bool:
    """The database refused, dropped or timed out the connection (worth trying again), as
    opposed to a wrong password, database or query."""
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.DisconnectionError) or network_os_error(exc):
        return True
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        text = str(getattr(exc, "orig", None) or exc).lower()
        return not any(words in text for words in NOT_TRANSIENT)
    return False


def _first_line(exc: BaseException, password: str | None) -> str:
    """``Type: first line`` of the driver's error (SQLAlchemy's wrapper unwrapped), password scrubbed."""
    inner = getattr(exc, "orig", None) or exc
    line = next((s.strip() for s in str(inner).splitlines() if s.strip()), "")[:300]
    if password:
        line = line.replace(password, "***")
    return f"{type(inner).__name__}: {line}" if line else type(inner).__name__


def _read_all(engine, source: SourceConfig, shown: str, password: str | None) -> dict[str, pd.DataFrame]:
    import sqlalchemy as sa

    postgres_copy = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2"
    options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True} if engine.dialect.name == "postgresql" else {}
    try:
        conn = engine.connect().execution_options(**options)
    except Exception as exc:
        raise ContractError([f"source.url: cannot connect to {shown} ({_first_line(exc, password)})"],
                            transient=_unanswered(exc)) from None
    raw, problems = {}, []
    where = f"schema {source.schema_}" if source.schema_ else "the default schema"
    with conn, conn.begin():
        if postgres_copy:
            _postgres_session(conn)
        inspector = sa.inspect(conn)
        for table in TABLES:
            spec = source.tables.get(table)
            if spec is None or not (spec.table or spec.query):
                try:
                    present = inspector.has_table(table, schema=source.schema_)
                except Exception as exc:
                    problems.append(f"{table}: cannot look up table {table} in {where} of {shown} ({_first_line(exc, password)})")
                    continue
                if not present:
                    if table in REQUIRED_TABLES:
                        problems.append(f"{table}: missing required table (expected a table {table} in {where} of {shown}, "
                                        f"or source.tables.{table}.table/query)")
                    continue
            select, what = _select(conn, table, spec or TableSource(), source.schema_)
            started = time.perf_counter()
            try:
                with conn.begin_nested():  # a failed read leaves the transaction usable for the next table
                    raw[table] = (_read_postgres_copy(conn, select) if postgres_copy else _read_rows(conn, select))
            except Exception as exc:
                problems.append(f"{table}: cannot read {what} from {shown} ({_first_line(exc, password)})")
                continue
            log.info("read %s: %d rows from %s of %s in %.1f s", table, len(raw[table]), what, shown,
                     time.perf_counter() - started)
    if problems:
        raise ContractError(problems)
    return raw


def _postgres_session(conn) -> None:
    """Text output that Arrow reads back exactly: ISO dates, UTC offsets, floats that round-trip."""
    for setting in ("SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL TimeZone = 'UTC'",
                    "SET LOCAL IntervalStyle = 'iso_8601'", "SET LOCAL extra_float_digits = 3"):
        conn.exec_driver_sql(setting)


def _select(conn, table: str, spec: TableSource, schema: str | None) -> tuple[str, str]:
    """The SELECT that gives ``table`` and how to name it in a message. Identifiers are
    quoted by the dialect's preparer (the config allows plain identifiers only); a query is
    the user's own, trailing semicolons removed."""
    if spec.query:
        return spec.query.strip().rstrip(";").strip(), "source.tables." + table + ".query"
    name = spec.table or table
    prep = conn.dialect.identifier_preparer
    qualified = (prep.quote_schema(schema) + "." if schema else "") + prep.quote(name)
    return f"SELECT * FROM {qualified}", f"table {schema + '.' if schema else ''}{name}"


# -- PostgreSQL: COPY ... TO STDOUT into Arrow's CSV reader ----------------------------------------

# PostgreSQL type OIDs -> the Arrow type the CSV column is read as (anything else: text)
_PG_TYPES = {16: pyarrow.bool_(), 20: pyarrow.int64(), 21: pyarrow.int64(), 23: pyarrow.int64(), 26: pyarrow.int64(),
             700: pyarrow.float64(), 701: pyarrow.float64(), 1700: pyarrow.float64(),
             1082: pyarrow.timestamp("us"), 1114: pyarrow.timestamp("us"), 1184: pyarrow.timestamp("us", "UTC")}
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")


def _read_postgres_copy(conn, select: str) -> pd.DataFrame:
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(f"SELECT * FROM (\n{select}\n) AS churn_source LIMIT 0")  # newlines: a query may end in a -- comment
        names = [d.name for d in cursor.description]
        types = [_PG_TYPES.get(d.type_code, pyarrow.string()) for d in cursor.description]
        while True:
            try:
                return _frame(_copy_csv(cursor, select, names, types))
            except pyarrow.ArrowInvalid as exc:  # a value the Arrow type cannot hold: read that column as text
                found = _CSV_COLUMN.search(str(exc))
                if not found or types[int(found.group(1))] == pyarrow.string():
                    raise
                types[int(found.group(1))] = pyarrow.string()
                cursor.execute("SELECT 1")  # the aborted COPY is over; the transaction goes on
    finally:
        cursor.close()


def _copy_csv(cursor, select: str, names: list[str], types: list) -> pyarrow.Table:
    """Stream ``COPY (select) TO STDOUT`` through a pipe into ``pyarrow.csv.read_csv``."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce():
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
                cursor.copy_expert(f"COPY (\n{select}\n) TO STDOUT WITH (FORMAT csv)", sink)
        except BaseException as exc:  # BrokenPipeError when the reader gave up: its error is the one raised
            failure.append(exc)

    producer = threading.Thread(target=produce, name="copy-to-stdout", daemon=True)
    producer.start()
    source = os.fdopen(read_fd, "rb", buffering=0)
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(len(names))], block_size=_CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={f"c{i}": t for i, t in enumerate(types)}, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]))
    except pyarrow.ArrowInvalid as exc:
        source.close()  # the producer's next write fails and COPY stops
        producer.join()
        if str(exc) != "Empty CSV file" or failure:
            raise
        table = pyarrow.table({f"c{i}": pyarrow.array([], t) for i, t in enumerate(types)})  # an empty result
    except BaseException:
        source.close()
        producer.join()
        raise
    else:
        source.close()
        producer.join()
    if failure:
        raise failure[0]
    return table.rename_columns(names)


# -- any other database: rows in chunks into Arrow arrays ---------------------------------------------

def _read_rows(conn, select: str) -> pd.DataFrame:
    if conn.dialect.paramstyle in ("format", "pyformat"):  # the driver would read '%' as a placeholder
        select = select.replace("%", "%%")
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).exec_driver_sql(select)
    names = list(result.keys())
    chunks: list[list[pyarrow.Array]] = [[] for _ in names]
    for rows in result.partitions(CHUNK_ROWS):
        for i, values in enumerate(zip(*rows)):
            chunks[i].append(_array(values))
    columns = [_unify(c) for c in chunks]
    return _frame(pyarrow.table(columns, names=[f"c{i}" for i in range(len(names))]).rename_columns(names))


def _array(values) -> pyarrow.Array:
    """One chunk of one column; values of mixed kinds (SQLite allows them) as text."""
    try:
        arr = pyarrow.array(values)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, OverflowError):
        return pyarrow.array([None if v is None else v if isinstance(v, str) else str(v) for v in values], pyarrow.string())
    if pyarrow.types.is_decimal(arr.type):
        return pc.cast(arr, pyarrow.float64())
    if pyarrow.types.is_date(arr.type):
        return pc.cast(arr, pyarrow.timestamp("us"))
    if pyarrow.types.is_timestamp(arr.type):
        return pc.cast(arr, pyarrow.timestamp("us", "UTC" if arr.type.tz else None))
    if pyarrow.types.is_binary(arr.type) or pyarrow.types.is_large_binary(arr.type):
        return pyarrow.array([None if v is None else "\\x" + bytes(v).hex() for v in values], pyarrow.string())
    return arr


def _unify(chunks: list[pyarrow.Array]) -> pyarrow.ChunkedArray:
    """One type for a column whose chunks disagree: numbers as float64, anything else as text."""
    kinds = {c.type for c in chunks if not pyarrow.types.is_null(c.type)}
    if not kinds:  # no value at all: a text column of NULLs
        return pyarrow.chunked_array([pyarrow.nulls(sum(len(c) for c in chunks), pyarrow.string())])
    if len(kinds) == 1:
        target = kinds.pop()
    elif all(pyarrow.types.is_integer(t) or pyarrow.types.is_floating(t) for t in kinds):
        target = pyarrow.float64()
    else:
        target = pyarrow.string()
    return pyarrow.chunked_array([c if c.type == target else pc.cast(c, target) for c in chunks], target)


# -- Arrow -> pandas -------------------------------------------------------------------------------

def _frame(table: pyarrow.Table) -> pd.DataFrame:
    """The Arrow table as pandas, one column at a time (each Arrow column is freed once
    converted): integers with NULLs as ``Int64``, text as ``str``."""
    names = table.column_names
    columns = []
    for i in range(table.num_columns):
        column = table.column(0)
        table = table.remove_column(0)
        if pyarrow.types.is_integer(column.type) and column.null_count:
            series = pd.Series(pd.array(column, dtype="Int64"))
        elif pyarrow.types.is_null(column.type):
            series = pd.Series(column.cast(pyarrow.string()).to_pandas(), dtype="str")
        else:
            series = column.to_pandas()
            if pyarrow.types.is_string(column.type) or pyarrow.types.is_large_string(column.type):
                series = series.astype("str")
        columns.append(series.rename(names[i]))
        del column
    if not columns:
        return pd.DataFrame()
    frame = pd.concat(columns, axis=1, copy=False) if len(columns) > 1 else columns[0].to_frame()
    frame.columns = names
    return frame
