"""Each scoring into an output folder is kept: ``OUT/history/<as_of>/`` (as_of written
YYYY-MM-DD) holds its files, and the files at ``OUT/`` are those of the latest as_of in the
folder. What changed since the previous scoring is read from the history.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from features.io import copy_atomic

HISTORY = "history"
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def history_dir(out_dir: Path, as_of: pd.Timestamp) -> Path:
    return Path(out_dir) / HISTORY / pd.Timestamp(as_of).strftime("%Y-%m-%d")


def scorings(out_dir: Path) -> list[str]:
    """The as_of days kept in ``out_dir``'s history (each with its retention list), oldest first."""
    root = Path(out_dir) / HISTORY
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if DAY.match(p.name) and (p / "at_risk.parquet").is_file())


def previous_scoring(out_dir: Path, as_of: pd.Timestamp) -> Path | None:
    """The folder of the latest scoring before ``as_of`` (None if there is none)."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    earlier = [d for d in scorings(out_dir) if d < day]
    return Path(out_dir) / HISTORY / earlier[-1] if earlier else None


def read_lists(folder: Path | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(at_risk, win_back) of a kept scoring (an empty win-back list when it had none)."""
    if folder is None:
        return None
    at_risk = pd.read_parquet(Path(folder) / "at_risk.parquet")
    wb = Path(folder) / "win_back.parquet"
    win_back = pd.read_parquet(wb) if wb.is_file() else pd.DataFrame({"customer_id": pd.Series(dtype="object")})
    return at_risk, win_back


def is_latest(out_dir: Path, as_of: pd.Timestamp) -> bool:
    """True unless the folder already holds a scoring of a later date."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    return all(d <= day for d in scorings(out_dir))


def publish_latest(files: dict[str, Path], out_dir: Path) -> dict[str, Path]:
    """Copy a scoring's files from its history folder to ``out_dir`` (each atomically)."""
    return {name: copy_atomic(path, Path(out_dir) / Path(path).name) for name, path in files.items()}
