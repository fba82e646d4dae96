"""A broken setup gets exit 2 and one line saying what is wrong and what to do, at once, and
the previous outputs stay as they were."""
from __future__ import annotations

import errno

import pytest
from typer.testing import CliRunner

from pipelines.cli import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_out_that_is_a_file(sim_data, tmp_path):
    (tmp_path / "taken").write_text("a file")
    result = run("score", "--data", sim_data, "--out", tmp_path / "taken", "--home", tmp_path / "home")
    assert result.exit_code == 2
    assert "is a file, not a folder" in one_line(result)
    result = run("features", "--data", sim_data, "--cutoff", "2025-06-01", "--out", tmp_path / "taken" / "f.parquet",
                 "--home", tmp_path / "home")
    assert result.exit_code == 2 and "cannot be written" in one_line(result)


def test_corrupt_mlflow_store_is_named(sim_data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "home" / "mlflow").mkdir(parents=True)
    (tmp_path / "home" / "mlflow" / "mlflow.db").write_text("not a database at all" * 100)
    result = run("train", "--data", sim_data, "--home", tmp_path / "home")
    assert result.exit_code == 2
    line = one_line(result)
    assert "mlflow.db cannot be read" in line and "move it aside" in line


def test_corrupt_prefect_database_is_named(sim_data, tmp_path, monkeypatch):
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "prefect.db").write_bytes(b"\x00garbage" * 500)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("CHURN_ORCHESTRATION", raising=False)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # no server, not even the session's test harness
        # a verb without a server does not use Prefect's database: the monitor goes on to its own error
        result = run("monitor", "--data", sim_data, "--lists", tmp_path / "no-lists", "--home", tmp_path / "home")
        assert result.exit_code == 2 and "Prefect" not in result.output and "cannot monitor" in result.output
        # on Prefect's temporary local server (CHURN_ORCHESTRATION=prefect) it would time out on it
        monkeypatch.setenv("CHURN_ORCHESTRATION", "prefect")
        result = run("train", "--data", sim_data, "--home", tmp_path / "home")
    assert result.exit_code == 2
    assert "Prefect's local database" in one_line(result)


def test_an_unknown_orchestration_mode(sim_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_ORCHESTRATION", "always")
    result = run("train", "--data", sim_data, "--home", tmp_path / "home")
    assert result.exit_code == 2
    assert "CHURN_ORCHESTRATION='always': expected one of auto, prefect, off" in one_line(result)


def test_unreachable_tracking_server(sim_data, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://churn:secret@127.0.0.1:{port}")
    result = run("score", "--data", sim_data, "--out", tmp_path / "out", "--home", tmp_path / "home")
    assert result.exit_code == 2
    line = one_line(result)
    assert "does not answer" in line and "secret" not in line and "churn:***@" in line


def test_missing_database_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mysql+nosuchdriver://churn:pw@db.internal/mlflow")
    result = run("registry", "list", "--home", tmp_path / "home")
    assert result.exit_code == 2
    line = one_line(result)
    assert "'nosuchdriver'" in line and "pw@" not in line


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only")])
def test_full_or_read_only_disk_keeps_the_previous_list(trained, sim_data, tmp_path, monkeypatch, code, words):
    import features.io

    _, home = trained
    config = tmp_path / "config.yaml"
    config.write_text("registry: {model_name: e2e, experiment: e2e}\n")
    out = tmp_path / "out"
    assert run("score", "--data", sim_data, "--out", out, "--config", config, "--home", home).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.glob("at_risk.*")}
    real = features.io.write_atomic

    def failing(path, write):
        if path.name.startswith("at_risk"):
            raise OSError(code, "simulated", str(path))
        return real(path, write)
    monkeypatch.setattr(features.io, "write_atomic", failing)
    import models.report
    monkeypatch.setattr(models.report, "write_atomic", failing, raising=False)
    result = run("score", "--data", sim_data, "--out", out, "--as-of", "2025-10-01", "--config", config, "--home", home)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in out.glob("at_risk.*")} == before
