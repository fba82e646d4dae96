"""The clean path: a typed Parquet file clean as it is is checked by DuckDB, not read into
pandas; whatever the path, the validation's outcome is the row-by-row path's."""
from __future__ import annotations

import pandas as pd
import pytest

from features.inputs import load_data, read_tables, validate_tables
from tests.features.test_contract import BASE, END, ROW_CASES, assert_reconciled, write


def row_by_row(folder, data_end=END):
    """The validation of the tables read into pandas (no file is screened)."""
    return validate_tables(read_tables(folder), data_end=data_end)


def assert_same(result, expected):
    assert list(result.tables) == list(expected.tables)
    for name in expected.tables:
        pd.testing.assert_frame_equal(result.tables[name], expected.tables[name])
        pd.testing.assert_frame_equal(result.quarantine[name], expected.quarantine[name])
    assert set(result.quarantine) == set(expected.quarantine)
    pd.testing.assert_frame_equal(result.summary, expected.summary)
    pd.testing.assert_frame_equal(result.row_problems, expected.row_problems)
    assert result.notes == expected.notes and result.data_end == expected.data_end


def test_a_clean_typed_folder_is_read_by_the_engine_from_its_files(tmp_path):
    tables = {**BASE, "customers": {**BASE["customers"], "segment": ["smb", None]}}
    typed = {name: pd.DataFrame(t) for name, t in tables.items()}
    for frame in typed.values():
        for col in frame:
            if col.endswith("_at"):
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").dt.tz_localize(None).astype("datetime64[us]")
    folder = write(tmp_path, "parquet", **typed)
    result = load_data(folder, data_end=END)
    assert_reconciled(result)
    assert result.sources == {name: folder / f"{name}.parquet" for name in result.tables}
    assert_same(result, row_by_row(folder))


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_a_file_with_a_bad_row_gives_what_the_row_by_row_path_gives(tmp_path, case):
    tables, table, _reason = ROW_CASES[case]
    folder = write(tmp_path, "parquet", **tables)
    result = load_data(folder, data_end=END)
    assert not isinstance(result.sources[table], type(folder))  # validated row by row
    assert_same(result, row_by_row(folder))


@pytest.mark.parametrize("column, value", [("customer_id", " a"), ("customer_id", "NULL"), ("channel", "Email"),
                                           ("channel", "email "), ("direction", "Outbound"), ("channel", "e-mail\u00e9")])
def test_values_not_yet_canonical_take_the_row_by_row_path(tmp_path, column, value):
    interactions = {**BASE["interactions"], column: [value, BASE["interactions"][column][1]]}
    folder = write(tmp_path, "parquet", **{**BASE, "interactions": interactions})
    result = load_data(folder, data_end=END)
    assert isinstance(result.sources["interactions"], pd.DataFrame)
    assert_same(result, row_by_row(folder))


def test_events_of_a_quarantined_customer_are_found_after_a_clean_screen(tmp_path):
    customers = {"customer_id": ["a", "b"], "created_at": ["2023-12-01", "not a date"]}
    folder = write(tmp_path, "parquet", **{**BASE, "customers": customers})
    result = load_data(folder, data_end=END)
    assert result.summary.set_index("table")["rows_quarantined"].to_dict()["cancellations"] == 1
    assert_same(result, row_by_row(folder))


def test_a_cancellation_before_the_first_order_sends_a_clean_file_down_the_row_path(tmp_path):
    tables = {name: pd.DataFrame(t) for name, t in BASE.items()}
    for frame in tables.values():
        for col in frame:
            if col.endswith("_at"):
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").dt.tz_localize(None).astype("datetime64[us]")
    tables["cancellations"] = pd.DataFrame({"customer_id": ["a"], "cancelled_at": pd.to_datetime(["2023-12-15"]).astype("datetime64[us]")})
    folder = write(tmp_path, "parquet", **tables)
    result = load_data(folder, data_end=END)
    assert isinstance(result.sources["cancellations"], pd.DataFrame)
    assert result.quarantine["cancellations"]["reason"].str.contains("before the customer's first order").all()
    assert_same(result, row_by_row(folder))


def _typed(tables: dict) -> dict[str, pd.DataFrame]:
    typed = {name: pd.DataFrame(t) for name, t in tables.items()}
    for frame in typed.values():
        for col in frame:
            if col.endswith("_at"):
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").dt.tz_localize(None).astype("datetime64[us]")
    return typed


def test_the_files_read_ahead_are_the_sources_only_when_every_file_is_clean(tmp_path):
    from features.inputs import SourceConfig, same_sources, sources_if_clean

    clean = write(tmp_path / "clean", "parquet", **_typed(BASE))
    guess = sources_if_clean(SourceConfig(), clean)
    assert guess == {name: clean / f"{name}.parquet" for name in BASE}
    assert same_sources(load_data(clean, data_end=END).sources, guess)
    tables, _table, _reason = ROW_CASES["negative amount"]
    bad = write(tmp_path / "bad", "parquet", **_typed({**BASE, **tables}))
    guess = sources_if_clean(SourceConfig(), bad)
    assert guess is not None and not same_sources(load_data(bad, data_end=END).sources, guess)
    assert sources_if_clean(SourceConfig(), write(tmp_path / "csv", "csv", **BASE)) is None
    assert sources_if_clean(SourceConfig(), write(tmp_path / "no-customers", "parquet", orders=BASE["orders"])) is None


@pytest.mark.parametrize("case", ["clean", "negative amount"])
def test_churn_features_gives_the_features_of_what_the_validation_kept(tmp_path, case):
    # the verb starts the engine on the files while they are validated: the table it writes is
    # the engine's on the validated tables either way
    from typer.testing import CliRunner

    from features.build import build_features
    from features.inputs import SourceConfig, ValidationConfig, validate_source
    from pipelines.cli import app

    tables = BASE if case == "clean" else {**BASE, **ROW_CASES[case][0]}
    folder = write(tmp_path / "data", "parquet", **_typed(tables))
    config = tmp_path / "config.yaml"
    config.write_text("validation: {max_quarantined_share: 0.5}\n")
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(app, ["features", "--data", str(folder), "--cutoff", "2024-06-01", "--out", str(out),
                                      "--config", str(config), "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    validated, _ = validate_source(SourceConfig(), ValidationConfig(max_quarantined_share=0.5), folder, tmp_path / "v")
    expected = build_features(validated.sources, [pd.Timestamp("2024-06-01")])
    written = pd.read_parquet(out)
    assert len(written) and list(written.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False, check_categorical=False)
    if case != "clean":  # the quarantined order is not counted
        assert (validated.summary.set_index("table").loc["orders", "rows_quarantined"]) == 1
