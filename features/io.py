"""Atomic file output: write to a temporary name in the target folder, then rename.

A crash mid-write leaves the previous file intact, never half a file.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the result onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet or CSV (by the file's suffix), atomically. Categorical columns
    are written as text (missing stays missing): a reader gets strings, which is what the
    served model's signature expects (MLflow refuses pandas categoricals for a string column,
    mlflow/mlflow#12910)."""
    path = Path(path)
    cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if cats:
        frame = frame.assign(**{c: frame[c].astype("object").where(frame[c].notna(), None) for c in cats})
    if path.suffix == ".parquet":
        # dictionary encoding only for text and categories: on float columns it costs half the write
        coded = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
                 and not pd.api.types.is_datetime64_any_dtype(frame[c])]
        return write_atomic(path, lambda p: frame.to_parquet(p, index=False, use_dictionary=coded))
    if path.suffix == ".csv":
        return write_atomic(path, lambda p: frame.to_csv(p, index=False))
    raise ValueError(f"cannot write {path}: use a .parquet or .csv file name")
