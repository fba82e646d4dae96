"""Atomic file output: write to a temporary name in the target folder, then rename.

A crash mid-write leaves the previous file intact, never half a file. Files get the mode a
plain ``open()`` would give them under the user's umask (0644 under the usual 022), not the
0600 of a temporary file, so colleagues can open a list that was shared with them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else
    by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the result onto ``path``, with mode 0666 & ~umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def copy_atomic(source: Path, path: Path) -> Path:
    """Copy a file onto ``path`` atomically (the same mode rule as ``write_atomic``)."""
    return write_atomic(Path(path), lambda tmp: shutil.copyfile(source, tmp))


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
