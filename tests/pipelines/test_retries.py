"""Retries with exponential backoff and jitter on the steps that read external inputs: a
transient failure (a database that refused the connection, a network share that timed out,
an MLflow server that did not answer) is tried again; a contract error never is."""
from __future__ import annotations

import errno
import logging
import random

import pytest

from features.inputs import ContractError
from pipelines.orchestration import backoff_delays, is_transient, retrying


class FailsTwice:
    def __init__(self, error: BaseException, failures: int = 2):
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value * 2


def test_a_call_that_fails_twice_then_succeeds_is_retried_with_growing_waits(caplog):
    waits = []
    fn = FailsTwice(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    with caplog.at_level(logging.WARNING, logger="churn"):
        assert retrying(fn, 21, attempts=3, base=1.0, cap=30.0, jitter=0.5, sleep=waits.append, what="reading x") == 42
    assert fn.calls == 3 and len(waits) == 2
    assert 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0
    assert "reading x failed (ConnectionResetError" in caplog.text and "attempt 3 of 3" in caplog.text


def test_a_contract_error_is_raised_at_once():
    waits = []
    fn = FailsTwice(ContractError(["orders: missing required column amount"]))
    with pytest.raises(ContractError, match="missing required column amount"):
        retrying(fn, 1, attempts=5, base=0.01, sleep=waits.append)
    assert fn.calls == 1 and waits == []
    for error in (FileNotFoundError(errno.ENOENT, "no such file"), PermissionError(errno.EACCES, "denied"),
                  ValueError("bad value"), LookupError("no model")):
        fn = FailsTwice(error)
        with pytest.raises(type(error)):
            retrying(fn, 1, attempts=5, base=0.01, sleep=waits.append)
        assert fn.calls == 1 and waits == []


def test_the_last_transient_error_is_raised_when_the_attempts_run_out():
    waits = []
    fn = FailsTwice(TimeoutError("timed out"), failures=10)
    with pytest.raises(TimeoutError):
        retrying(fn, 1, attempts=4, base=2.0, cap=5.0, jitter=0.0, sleep=waits.append)
    assert fn.calls == 4 and waits == [2.0, 4.0, 5.0]  # doubled, capped


def test_backoff_delays_spread_within_the_jitter():
    delays = [backoff_delays(6, 1.0, 10.0, 0.25, random.Random(seed)) for seed in range(50)]
    for i, nominal in enumerate([1, 2, 4, 8, 10]):
        values = [d[i] for d in delays]
        assert all(0.75 * nominal <= v <= 1.25 * nominal for v in values) and len(set(values)) > 40
    assert backoff_delays(1, 1.0, 10.0, 0.5) == []


def test_what_counts_as_transient():
    import requests
    import sqlalchemy as sa
    from mlflow.exceptions import MlflowException

    assert is_transient(sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")))
    assert is_transient(OSError(errno.ESTALE, "Stale file handle")) and is_transient(ConnectionRefusedError())
    assert not is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_transient(sa.exc.OperationalError("SELECT 1", {}, Exception("unable to open database file")))
    assert not is_transient(sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")))
    # what MLflow's REST client raises when the tracking server does not answer, and the
    # LookupError the registry makes of it
    try:
        try:
            raise requests.exceptions.ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/...")
        except requests.exceptions.ConnectionError as exc:
            raise MlflowException(f"API request to http://mlflow:5000/api failed with exception {exc}") from None
    except MlflowException as exc:
        unanswered = exc
    assert is_transient(unanswered)
    try:
        raise LookupError("no model at models:/churn-risk@champion") from unanswered
    except LookupError as exc:
        assert is_transient(exc)
    assert not is_transient(MlflowException("Registered model alias champion not found."))
    assert is_transient(ContractError(["source.url: cannot connect"], transient=True))


def test_a_retried_error_never_logs_a_password(caplog):
    fn = FailsTwice(ConnectionRefusedError("connecting to postgresql://churn:hunter2@db:5432/crm refused"))
    with caplog.at_level(logging.WARNING, logger="churn"):
        retrying(fn, 1, attempts=3, base=0.0, sleep=lambda _: None)
    assert "hunter2" not in caplog.text and "churn:***@db" in caplog.text


# -- the steps --------------------------------------------------------------------------------------

def test_the_validate_step_retries_a_file_share_that_timed_out(sim_data, tmp_path, monkeypatch):
    import features.inputs.files as files
    from pipelines.flows import validate_task
    from pipelines.settings import Settings

    real, calls = files._read_file, []

    def flaky(path, *args, **kwargs):
        if path.stem == "orders":
            calls.append(path)
            if len(calls) <= 2:
                raise OSError(errno.ETIMEDOUT, "Connection timed out", str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(files, "_read_file", flaky)
    settings = Settings().with_overrides(**{"retries.base_delay_seconds": 0.01})
    result = validate_task(sim_data, settings, tmp_path / "validation")  # plain Python here: no flow run
    assert len(calls) == 3 and len(result.tables["orders"]) > 0
    calls.clear()
    with pytest.raises(ContractError) as err:
        validate_task(sim_data, settings.with_overrides(**{"retries.attempts": 2}), tmp_path / "validation")
    assert len(calls) == 2 and err.value.transient and "orders: cannot read" in str(err.value)


def test_the_validate_step_does_not_retry_a_broken_contract(tmp_path, monkeypatch):
    import pandas as pd

    import features.inputs.files as files
    from pipelines.flows import validate_task
    from pipelines.settings import Settings

    pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"]}).to_csv(tmp_path / "orders.csv", index=False)
    real, calls = files._read_file, []
    monkeypatch.setattr(files, "_read_file", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(ContractError) as err:
        validate_task(tmp_path, Settings().with_overrides(**{"retries.base_delay_seconds": 0.01}), tmp_path / "v")
    assert len(calls) == 1 and not err.value.transient and "ordered_at" in str(err.value)


def test_a_database_that_refuses_twice_is_read_on_the_third_try(tmp_path, monkeypatch):
    import pandas as pd
    import sqlalchemy as sa

    from features.inputs import sql as sql_module
    from features.inputs.config import SourceConfig
    from features.inputs.contract import ContractError

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        pd.DataFrame({"order_id": ["o1"], "customer_id": ["c1"], "ordered_at": ["2024-01-01"],
                      "amount": [1.0]}).to_sql("orders", conn, index=False)
    engine.dispose()
    real, calls = sql_module._engine, []

    def engine_for(u):  # the first two connections go to a port nobody listens on: refused
        calls.append(1)
        return real(sa.engine.make_url("postgresql+psycopg2://churn@127.0.0.1:1/crm") if len(calls) <= 2 else u)
    monkeypatch.setattr(sql_module, "_engine", engine_for)
    source = SourceConfig.model_validate({"kind": "sql", "url": url})
    raw = retrying(sql_module.read_sql_tables, source, attempts=3, base=0.0, sleep=lambda _: None)
    assert len(calls) == 3 and len(raw["orders"]) == 1
    calls.clear()
    with pytest.raises(ContractError, match="cannot connect") as err:
        retrying(sql_module.read_sql_tables, source, attempts=2, base=0.0, sleep=lambda _: None)
    assert err.value.transient and len(calls) == 2
    wrong = SourceConfig.model_validate({"kind": "sql", "url": url, "tables": {"orders": {"table": "no_such_table"}}})
    calls.clear()
    monkeypatch.setattr(sql_module, "_engine", lambda u: calls.append(1) or real(u))
    with pytest.raises(ContractError) as err:
        retrying(sql_module.read_sql_tables, wrong, attempts=3, base=0.0, sleep=lambda _: None)
    assert not err.value.transient and len(calls) == 1


def test_retry_settings():
    from pipelines.settings import Settings

    assert Settings().retries.options() == {"attempts": 3, "base": 1.0, "cap": 30.0, "jitter": 0.5}
    with pytest.raises(ValueError):
        Settings().with_overrides(**{"retries.attempts": 0})
