"""source.kind: sql: a database gives the same clean tables (and features) as the same tables as files.

SQLite tests run everywhere; the PostgreSQL tests use the server at 127.0.0.1:5432 (trust
auth, user postgres, database test; CHURN_TEST_POSTGRES_URL overrides it), each test in a
schema of its own, dropped afterwards. They skip, with the reason, when the server is
unreachable, and fail instead when CI is set.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from features.build import build_features
from features.inputs import ContractError, load_data, read_sql_tables, redact_url, validate_tables
from features.inputs import sql as sql_module
from features.inputs.config import SourceConfig
from features.simulate import simulate, write_dataset

DATA_END = pd.Timestamp("2025-12-31 23:59:59")
POSTGRES_URL = os.environ.get("CHURN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def source(url: str, **settings) -> SourceConfig:
    return SourceConfig.model_validate({"kind": "sql", "url": url, **settings})


def ts(*values):
    return pd.to_datetime(list(values), format="ISO8601").astype("datetime64[us]")


@pytest.fixture
def small_tables():
    """Contract tables with the awkward values: text ids with leading zeros, an empty
    status next to a missing one, a bad row per table for the quarantine."""
    return {
        "customers": pd.DataFrame({"customer_id": ["017", "2", "3"], "created_at": ts("2024-01-01", "2024-01-02", "2024-01-03"),
                                   "segment": ["smb", None, "consumer"], "tier": [1, 2, 3]}),
        "orders": pd.DataFrame({"order_id": ["o1", "o2", "o3", "o3", "o5"], "customer_id": ["017", "2", "3", "3", "9"],
                                "ordered_at": ts("2024-02-01 10:00", "2024-02-02", "2024-02-03", "2024-02-04", "2024-02-05"),
                                "amount": [10.5, 20.0, -1.0, 5.0, 7.25],
                                "status": ["completed", None, "", "returned", "completed"]}),
        "nps": pd.DataFrame({"customer_id": ["017", "2"], "answered_at": ts("2024-03-01", "2024-03-02"), "score": [9, 11],
                             "comment": ["great", ""]}),
        "complaints": pd.DataFrame({"complaint_id": ["k1", "k2"], "customer_id": ["017", "3"],
                                    "opened_at": ts("2024-03-01", "2024-03-05"), "resolved_at": ts("2024-03-02", None),
                                    "severity": ["high", None], "public": [True, False]}),
    }


def assert_same_clean_tables(from_sql, from_files):
    assert sorted(from_sql.tables) == sorted(from_files.tables)
    for name in from_files.tables:
        pd.testing.assert_frame_equal(from_sql.tables[name], from_files.tables[name], obj=name)
    pd.testing.assert_frame_equal(from_sql.summary, from_files.summary)
    for name in from_files.quarantine:
        pd.testing.assert_series_equal(from_sql.quarantine[name]["reason"], from_files.quarantine[name]["reason"], obj=name)


# -- SQLite -------------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'crm.db'}"


def write_sql(url: str, tables: dict[str, pd.DataFrame], schema: str | None = None, names: dict[str, str] | None = None):
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, frame in tables.items():
            frame.to_sql((names or {}).get(name, name), conn, schema=schema, index=False)
    engine.dispose()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_sqlite_gives_the_same_clean_tables_as_files(tmp_path, sqlite_url, small_tables, fmt):
    write_sql(sqlite_url, small_tables)
    write_dataset(small_tables, tmp_path / "files", fmt=fmt)
    raw = read_sql_tables(source(sqlite_url))
    assert sorted(raw) == sorted(small_tables)
    assert list(raw["customers"].columns) == ["customer_id", "created_at", "segment", "tier"]  # source names, extras kept
    assert raw["orders"]["status"].isna().tolist()[1:3] == [True, False] and raw["orders"]["status"][2] == ""
    from_sql = validate_tables(raw, data_end=DATA_END)
    from_files = load_data(tmp_path / "files", data_end=DATA_END)
    if fmt == "csv":  # columns outside the contract keep their source type: the database's integer, the CSV's text
        assert from_sql.tables["customers"]["tier"].tolist() == [1, 2, 3]
        from_sql.tables["customers"]["tier"] = from_sql.tables["customers"]["tier"].astype("str")
    assert_same_clean_tables(from_sql, from_files)
    assert from_sql.tables["customers"]["customer_id"].tolist() == ["017", "2", "3"]
    assert from_sql.quarantine["orders"]["reason"].str.contains("negative").any()


def test_sqlite_simulated_company_gives_the_same_clean_tables_as_parquet(tmp_path, sqlite_url):
    tables = {k: v for k, v in simulate(200, seed=2).items() if k != "truth"}
    write_sql(sqlite_url, tables)
    write_dataset(tables, tmp_path / "files")
    assert_same_clean_tables(validate_tables(read_sql_tables(source(sqlite_url)), data_end=DATA_END),
                             load_data(tmp_path / "files", data_end=DATA_END))


def test_integer_ids_come_out_as_integers_and_parse_as_text(sqlite_url):
    write_sql(sqlite_url, {"orders": pd.DataFrame({"order_id": [17, 18], "customer_id": [3, None], "ordered_at": ["2024-01-01", "2024-01-02"],
                                                   "amount": [1, 2]})})
    raw = read_sql_tables(source(sqlite_url))["orders"]
    assert str(raw["order_id"].dtype) == "int64" and raw["order_id"].tolist() == [17, 18]
    assert str(raw["customer_id"].dtype) in ("Int64", "float64")  # pandas wrote 3.0 / NULL
    clean = validate_tables({"orders": raw}, data_end=DATA_END)
    assert clean.tables["orders"]["order_id"].tolist() == ["17"]
    assert clean.tables["orders"]["customer_id"].tolist() == ["3"]


def test_table_and_query_overrides(sqlite_url, small_tables):
    write_sql(sqlite_url, small_tables, names={"orders": "sales_orders", "nps": "survey"})
    settings = {"tables": {"orders": {"table": "sales_orders", "columns": {"order_id": "order_id"}},
                           "nps": {"query": "SELECT customer_id AS who, score FROM survey WHERE score <= 10 ;"}}}
    raw = read_sql_tables(source(sqlite_url, **settings))
    assert len(raw["orders"]) == 5
    assert list(raw["nps"].columns) == ["who", "score"] and raw["nps"]["score"].tolist() == [9]  # raw: no renaming here
    assert "customers" in raw and "complaints" in raw  # not named: read because a table of that name exists


def test_missing_orders_and_unreadable_tables_are_reported_together(sqlite_url, small_tables):
    write_sql(sqlite_url, {"nps": small_tables["nps"]})
    with pytest.raises(ContractError) as err:
        read_sql_tables(source(sqlite_url, tables={"complaints": {"table": "no_such_table"},
                                                   "cancellations": {"query": "SELECT nonsense FROM nowhere"}}))
    problems = err.value.problems
    assert problems[0].startswith("orders: missing required table (expected a table orders in the default schema of sqlite:///")
    assert "or source.tables.orders.table/query" in problems[0]
    assert problems[1].startswith("complaints: cannot read table no_such_table from sqlite:///")
    assert "no such table" in problems[1]
    assert problems[2].startswith("cancellations: cannot read source.tables.cancellations.query from ")
    assert len(problems) == 3


@pytest.mark.parametrize("settings", [{"tables": {"orders": {"table": "orders; DROP TABLE x"}}},
                                      {"tables": {"orders": {"table": 'orders" --'}}},
                                      {"schema": "sales; DROP SCHEMA sales"},
                                      {"tables": {"orders": {"table": "orders", "query": "SELECT 1"}}}])
def test_identifier_injection_is_refused_by_the_config(settings):
    with pytest.raises(ValidationError):
        source("sqlite://", **settings)


def test_a_password_in_the_url_is_refused():
    with pytest.raises(ValidationError, match="password_env"):
        source("postgresql://churn:secret@db/crm")


def test_redact_url():
    assert redact_url("postgresql+psycopg2://churn@db.internal:5432/crm") == "postgresql+psycopg2://churn:***@db.internal:5432/crm"
    url = sa.engine.make_url("postgresql://churn@db.internal:5432/crm").set(password="p@ss:w/rd")
    assert redact_url(url) == "postgresql://churn:***@db.internal:5432/crm"
    assert redact_url("sqlite:////tmp/crm.db") == "sqlite:////tmp/crm.db"
    assert redact_url("mssql+pyodbc://u@dsn?driver=X&sslpassword=hunter2") == "mssql+pyodbc://u:***@dsn?driver=X&sslpassword=***"


def test_unset_password_variable_is_named():
    with pytest.raises(ContractError, match="environment variable CHURN_TEST_NOT_SET is not set"):
        read_sql_tables(source("postgresql+psycopg2://churn@127.0.0.1:1/crm", password_env="CHURN_TEST_NOT_SET"), environ={})


def test_connection_failure_names_the_redacted_url_and_never_the_password(caplog):
    secret = "s3cr3t-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ContractError) as err:
        read_sql_tables(source("postgresql+psycopg2://churn@127.0.0.1:1/crm", password_env="CHURN_DB_PASSWORD"),
                        environ={"CHURN_DB_PASSWORD": secret})
    message = str(err.value)
    assert message.startswith("source.url: cannot connect to postgresql+psycopg2://churn:***@127.0.0.1:1/crm (OperationalError: ")
    assert "\n" not in message and secret not in message and secret not in repr(err.value)
    assert secret not in str(err.value.__context__)
    assert secret not in caplog.text


def test_a_missing_driver_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(ContractError, match=r"driver psycopg2 of postgresql\+psycopg2://churn:\*\*\*@db:5432/crm is not "
                                            r"installed \(expected it installed: pip install psycopg2-binary\)"):
        read_sql_tables(source("postgresql+psycopg2://churn@db:5432/crm"))


def test_an_unknown_dialect_is_a_contract_error():
    with pytest.raises(ContractError, match="dialect"):
        read_sql_tables(source("nosuchdb://churn@db/crm"))


# -- PostgreSQL -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_engine():
    """The test server; skipped when unreachable (with the reason), a failure when CI is set."""
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        reason = f"PostgreSQL at {redact_url(POSTGRES_URL)} unreachable: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(postgres_engine):
    """A schema of this test's own, dropped afterwards."""
    name = f"churn_test_{uuid.uuid4().hex[:12]}"
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    yield name
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")


def test_postgres_features_equal_the_features_from_files(tmp_path, postgres_engine, pg_schema):
    tables = {k: v for k, v in simulate(300, seed=1).items() if k != "truth"}
    write_dataset(tables, tmp_path / "files")
    with postgres_engine.begin() as conn:
        for name, frame in tables.items():
            frame.to_sql(name, conn, schema=pg_schema, index=False)
    from_sql = validate_tables(read_sql_tables(source(POSTGRES_URL, schema=pg_schema)), data_end=DATA_END)
    from_files = load_data(tmp_path / "files", data_end=DATA_END)
    assert_same_clean_tables(from_sql, from_files)
    with postgres_engine.connect() as conn:  # the COPY reader and the row reader (any other database) agree
        sql_module._postgres_session(conn)
        for name in ("customers", "orders", "complaints"):
            select = f"SELECT * FROM {pg_schema}.{name}"
            pd.testing.assert_frame_equal(sql_module._read_postgres_copy(conn, select), sql_module._read_rows(conn, select))
    cutoffs = [pd.Timestamp("2025-06-01"), pd.Timestamp("2025-10-01")]
    features = build_features(from_sql.tables, cutoffs)
    assert len(features) > 100
    pd.testing.assert_frame_equal(features, build_features(from_files.tables, cutoffs))


def test_postgres_types_are_faithful(postgres_engine, pg_schema):
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql(f"""
            CREATE TABLE {pg_schema}."Orders" (order_id bigint, customer_id text, ordered_at timestamptz, amount numeric(10, 2),
                                               status varchar(20), express boolean, note text, day date);
            INSERT INTO {pg_schema}."Orders" VALUES
                (17, '017', '2024-03-01 12:00:00+02', 129.90, 'completed', true, 'a "quoted", multi
            line note', '2024-03-01'),
                (18, '2', '2024-03-02 00:00:00+00', 5, '', false, NULL, NULL),
                (19, NULL, NULL, NULL, NULL, NULL, '', NULL);
            CREATE TABLE {pg_schema}.nps (customer_id text, answered_at timestamp, score int);
            INSERT INTO {pg_schema}.nps VALUES ('017', '2024-03-01 10:00:00.123456', 9), ('2', 'infinity', 4), ('3', NULL, NULL);
        """)
    raw = read_sql_tables(source(POSTGRES_URL, schema=pg_schema, tables={"orders": {"table": "Orders"}}))
    orders = raw["orders"]
    assert list(orders.columns) == ["order_id", "customer_id", "ordered_at", "amount", "status", "express", "note", "day"]
    assert orders["order_id"].dtype == "int64" and orders["order_id"].tolist() == [17, 18, 19]
    assert orders["customer_id"].dtype == "str" and orders["customer_id"].tolist()[:2] == ["017", "2"]
    assert str(orders["ordered_at"].dtype) == "datetime64[us, UTC]"
    assert orders["ordered_at"][0] == pd.Timestamp("2024-03-01 10:00:00", tz="UTC")
    assert orders["amount"].dtype == "float64" and orders["amount"].tolist()[:2] == [129.9, 5.0]
    assert orders["status"].tolist()[1] == "" and pd.isna(orders["status"][2])  # '' and NULL stay distinct
    assert orders["note"].tolist()[0] == 'a "quoted", multi\n            line note' and orders["note"][2] == ""
    assert orders["express"].tolist()[:2] == [True, False]
    assert str(orders["day"].dtype) == "datetime64[us]" and orders["day"][0] == pd.Timestamp("2024-03-01")
    nps = raw["nps"]
    assert str(nps["score"].dtype) == "Int64"
    assert nps["answered_at"].tolist()[:2] == ["2024-03-01 10:00:00.123456", "infinity"]  # 'infinity': the column stays text
    clean = validate_tables(raw, data_end=DATA_END)
    assert clean.tables["orders"]["order_id"].tolist() == ["17", "18"]
    assert clean.tables["orders"]["ordered_at"][0] == pd.Timestamp("2024-03-01 10:00:00")
    assert clean.tables["nps"]["answered_at"].tolist() == [pd.Timestamp("2024-03-01 10:00:00.123456")]
    assert "nps.answered_at: 'infinity'" in " ".join(clean.quarantine["nps"]["reason"])


def test_postgres_query_with_percent_and_an_empty_result(postgres_engine, pg_schema):
    with postgres_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {pg_schema}.crm_orders AS SELECT 'O' || g AS order_id, 'C' || (g %% 7) AS customer_id, "
                             f"timestamp '2024-01-01' + g * interval '1 hour' AS ordered_at, g * 1.5 AS amount "
                             f"FROM generate_series(1, 50) g")
    settings = {"tables": {"orders": {"query": f"SELECT * FROM {pg_schema}.crm_orders WHERE customer_id LIKE 'C1%';"},
                           "nps": {"query": "SELECT 'x'::text AS customer_id, now() AS answered_at, 1 AS score WHERE false -- none"}}}
    raw = read_sql_tables(source(POSTGRES_URL, schema=pg_schema, **settings))
    assert len(raw["orders"]) == 8 and set(raw["orders"]["customer_id"]) == {"C1"}
    assert raw["nps"].empty and list(raw["nps"].columns) == ["customer_id", "answered_at", "score"]
    assert str(raw["nps"]["answered_at"].dtype) == "datetime64[us, UTC]"


def test_postgres_missing_orders_names_the_schema(postgres_engine, pg_schema):
    with pytest.raises(ContractError) as err:
        read_sql_tables(source(POSTGRES_URL, schema=pg_schema))
    assert err.value.problems == [
        f"orders: missing required table (expected a table orders in schema {pg_schema} of "
        f"postgresql+psycopg2://postgres:***@127.0.0.1:5432/test, or source.tables.orders.table/query)"]


def test_postgres_with_a_password_works_and_never_shows_it(postgres_engine, pg_schema, small_tables, caplog):
    """Trust auth accepts any password: the run works, and neither logs nor errors show it."""
    secret = "pw-" + uuid.uuid4().hex
    write_sql(POSTGRES_URL, {"orders": small_tables["orders"]}, schema=pg_schema)
    caplog.set_level(logging.DEBUG)
    settings = {"password_env": "CHURN_DB_PASSWORD", "schema": pg_schema}
    raw = read_sql_tables(source(POSTGRES_URL, **settings), environ={"CHURN_DB_PASSWORD": secret})
    assert len(raw["orders"]) == 5
    with pytest.raises(ContractError) as err:
        read_sql_tables(source(POSTGRES_URL, tables={"nps": {"query": "SELECT * FROM nowhere"}}, **settings),
                        environ={"CHURN_DB_PASSWORD": secret})
    assert "nps: cannot read source.tables.nps.query from postgresql+psycopg2://postgres:***@127.0.0.1:5432/test" in str(err.value)
    assert secret not in str(err.value) and secret not in caplog.text
    assert "postgres:***@127.0.0.1" in caplog.text


def test_the_readme_example_is_a_valid_source_section():
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### A SQL database as the source", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)
    config = SourceConfig.model_validate(yaml.safe_load(block)["source"])
    assert config.kind == "sql" and config.password_env == "CHURN_DB_PASSWORD" and config.schema_ == "sales"
