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
