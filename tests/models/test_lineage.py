"""Lineage documents, without Prefect: what was read (files or SQL), the model, the
settings hash, what was written; never a secret."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from features.inputs import SourceConfig, validate_source
from features.simulate import simulate, write_dataset
from models import lineage


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lineage-data")
    write_dataset(simulate(150, seed=5, truth_rollouts=0), folder)
    validated, _ = validate_source(SourceConfig(), None, folder, tmp_path_factory.mktemp("validation"))
    return folder, validated


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_source_is_traced_to_its_files_rows_and_bytes(data):
    folder, validated = data
    read = lineage.inputs_read(SourceConfig(), folder, validated)
    assert read["source"] == "files" and read["location"] == str(folder)
    orders = read["tables"]["orders"]
    assert orders["file"] == str(folder / "orders.parquet")
    assert orders["fingerprint"] == {"sha256": sha(folder / "orders.parquet"), "of": "file bytes"}
    summary = validated.summary.set_index("table")
    assert orders["rows_kept"] == summary.loc["orders", "rows_kept"] and orders["rows_read"] == summary.loc["orders", "rows_read"]
    assert set(read["tables"]) >= set(summary.index)
    given = lineage.inputs_read(SourceConfig(), folder, validated, fingerprints={"orders": {"sha256": "abc", "rows": 1}})
    assert given["tables"]["orders"]["fingerprint"] == {"sha256": "abc", "of": "validated rows"}


def test_a_sql_source_names_its_query_or_table_and_never_the_password(data, monkeypatch):
    _, validated = data
    monkeypatch.setenv("SHOP_DB_PASSWORD", "s3cret")
    source = SourceConfig(kind="sql", url="postgresql+psycopg2://churn@db.internal/shop", schema="crm",
                          password_env="SHOP_DB_PASSWORD",
                          tables={"orders": {"query": "SELECT * FROM sales.orders WHERE amount > 0;"}})
    sources = {t: validated.tables[t] for t in validated.sources}
    frame_only = type(validated)(**{**validated.__dict__, "sources": sources})
    doc = lineage.lineage("score", read=lineage.inputs_read(source, None, frame_only),
                          model={"name": "m", "version": "3", "uri": "models:/m@champion"},
                          settings_hash=lineage.settings_sha256({"source": source.model_dump(mode="json")}),
                          as_of=pd.Timestamp("2025-06-02"))
    text = json.dumps(doc)
    assert "s3cret" not in text and "churn:***@db.internal" in doc["read"]["location"]
    assert doc["read"]["tables"]["orders"]["query"].startswith("SELECT * FROM sales.orders")
    assert doc["read"]["tables"]["complaints"]["table"] == "crm.complaints"
    assert doc["read"]["tables"]["orders"]["fingerprint"] == {"sha256": lineage.frame_sha256(validated.tables["orders"]),
                                                             "of": "validated rows"}
    assert doc["as_of"] == "2025-06-02" and doc["kind"] == "score"
    assert all("s3cret" not in v for v in lineage.mlflow_tags(doc).values())


def test_settings_hash_is_stable_and_changes_with_the_settings():
    from pipelines.settings import Settings

    a = Settings().model_dump(mode="json")
    assert lineage.settings_sha256(a) == lineage.settings_sha256(Settings().model_dump(mode="json"))
    b = Settings().with_overrides(**{"labels.horizon_days": 60}).model_dump(mode="json")
    assert lineage.settings_sha256(a) != lineage.settings_sha256(b)


def test_what_was_written_is_listed_with_sizes_and_hashes(tmp_path):
    (tmp_path / "validation").mkdir()
    (tmp_path / "at_risk.csv").write_text("customer_id,risk\na,0.5\n")
    (tmp_path / "validation" / "validation_summary.csv").write_text("table\norders\n")
    (tmp_path / ".at_risk.csv.x1.tmp").write_text("a temporary file is not an output")
    doc = lineage.lineage("score", read={"location": "x", "tables": {}}, model={}, settings_hash="h")
    path = lineage.write_lineage({**doc, "wrote": {"folder": "history/2025-06-02"}}, tmp_path)
    written = json.loads(path.read_text())["wrote"]
    assert written["folder"] == "history/2025-06-02"
    assert written["files"] == [
        {"path": "at_risk.csv", "bytes": 23, "sha256": sha(tmp_path / "at_risk.csv")},
        {"path": "validation/validation_summary.csv", "bytes": 13,
         "sha256": sha(tmp_path / "validation" / "validation_summary.csv")}]
    assert "at_risk.csv" in lineage.markdown(json.loads(path.read_text()))
