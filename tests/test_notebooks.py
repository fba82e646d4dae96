"""The two notebooks run top to bottom on a small simulated company and the trained champion."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return book


def outputs(book) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", []))


def test_01_explore_the_data(sim_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_DATA", str(sim_data))
    text = outputs(run("01-explore-the-data.ipynb", tmp_path))
    assert "orders" in text and "interactions" in text and "complaints" in text
    assert "churn_rate" in text and "lifecycle_stage" in text and "NPS" in text


def test_02_model_and_drivers(trained, sim_data, tmp_path, monkeypatch):
    result, home = trained
    monkeypatch.setenv("CHURN_DATA", str(sim_data))
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.setenv("CHURN_MODEL_NAME", "e2e")
    book = run("02-model-and-drivers.ipynb", tmp_path)
    text = outputs(book)
    assert "e2e version" in text and "test_roc_auc" in text
    images = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    assert "reason_1" in text


def test_01_never_writes_into_the_folder_it_is_pointed_at(tmp_path, monkeypatch):
    """CHURN_DATA is the user's folder: a folder without an orders table is an error, never a
    place to simulate a company into."""
    import pytest
    from nbclient.exceptions import CellExecutionError

    mine = tmp_path / "exports"
    mine.mkdir()
    (mine / "sales_export.csv").write_text("Invoice,Customer ID\n1,2\n")
    monkeypatch.setenv("CHURN_DATA", str(mine))
    with pytest.raises(CellExecutionError, match="orders: missing required table"):
        run("01-explore-the-data.ipynb", tmp_path)
    assert sorted(p.name for p in mine.iterdir()) == ["sales_export.csv"]
