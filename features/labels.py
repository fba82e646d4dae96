"""Labels: which clients become former clients within the horizon after each cutoff.

The observation table is ``(customer_id, cutoff, label)`` over the population at each
cutoff (``features.build.build_population``); features are joined to it, never the reverse.

- Contractual data (a cancellations table): label 1 = a cancellation in ``[c, c + horizon]``.
- Otherwise: label 1 = no order in ``[c, c + horizon]`` (the customer goes silent).
The window includes ``c`` itself: a fact stamped exactly at the cutoff is not known at the
cutoff (features read strictly before it), so it belongs to the future being predicted.
A cutoff whose window runs past the end of the data (the latest timestamp in any table)
gets no labels.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import pandas as pd

from features.build import build_features, build_population, parquet_sql
from features.config import FeatureConfig

TIME_COLUMNS = {
    "orders": "ordered_at", "interactions": "occurred_at", "nps": "answered_at",
    "complaints": "opened_at", "cancellations": "cancelled_at",
}


def _range(source, col: str) -> tuple:
    """(min, max) of a timestamp column of a frame or a Parquet file (None when empty)."""
    if isinstance(source, (str, Path)):
        return duckdb.connect().execute(f"SELECT min({col}), max({col}) FROM {parquet_sql(source)}").fetchone()
    return (source[col].min(), source[col].max()) if len(source) else (None, None)


def data_end(tables: dict) -> pd.Timestamp:
    """The latest event timestamp in the data: the end of what has been observed. ``tables``
    holds validated frames or paths to validated Parquet files."""
    ends = [_range(tables[t], col)[1] for t, col in TIME_COLUMNS.items() if t in tables]
    return pd.Timestamp(max(e for e in ends if e is not None and not pd.isna(e)))


def default_as_of(tables: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """The scoring date by default: the end of the last day in the data (every fact is known)."""
    return (data_end(tables) + pd.Timedelta(days=1)).normalize()


def labelled_cutoffs(tables: dict[str, pd.DataFrame], horizon_days: int, *, freq: str = "MS",
                     max_cutoffs: int | None = None) -> list[pd.Timestamp]:
    """Cutoffs (every ``freq`` period start) whose label window ends within the data.

    The first cutoff is the first period start after the first order.
    """
    start = pd.Timestamp(_range(tables["orders"], "ordered_at")[0])
    last = data_end(tables) - pd.Timedelta(days=horizon_days)
    cutoffs = list(pd.date_range(start, last, freq=freq, normalize=True))
    cutoffs = [c for c in cutoffs if c > start]
    if max_cutoffs is not None:
        cutoffs = cutoffs[-max_cutoffs:]
    return cutoffs


def build_labels(tables: dict[str, pd.DataFrame], cutoffs: Iterable[pd.Timestamp], *, horizon_days: int = 90,
                 active_window_days: int = 365) -> pd.DataFrame:
    """Observation table (customer_id, cutoff, label) for the population at each labelled cutoff.

    Cutoffs whose ``[c, c + horizon]`` window is not fully observed are left out.
    """
    cutoffs = _observed(tables, cutoffs, horizon_days)
    if not cutoffs:
        return _no_labels()
    labels = build_population(tables, cutoffs, active_window_days=active_window_days, horizon_days=horizon_days)
    return labels.assign(label=labels["label"].astype("int8"))


def build_training_set(tables: dict, cutoffs: Iterable[pd.Timestamp], *, horizon_days: int = 90,
                       config: FeatureConfig | None = None, progress: bool = False) -> pd.DataFrame:
    """The training set: one row per client and labelled cutoff, ``(customer_id, cutoff,
    label, features...)``, labels and features from one pass over the history (the same
    rows as ``build_labels`` joined to ``build_features``). Cutoffs whose label window is
    not fully observed are left out."""
    cutoffs = _observed(tables, cutoffs, horizon_days)
    if not cutoffs:
        return _no_labels()
    return build_features(tables, cutoffs, config=config, label_horizon_days=horizon_days, progress=progress)


def _observed(tables: dict, cutoffs: Iterable[pd.Timestamp], horizon_days: int) -> list[pd.Timestamp]:
    """The cutoffs whose label window ``[c, c + horizon]`` ends within the data."""
    end = data_end(tables)
    return [c for c in pd.to_datetime(list(cutoffs)) if c + pd.Timedelta(days=horizon_days) <= end]


def _no_labels() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[us]"),
                         "label": pd.Series(dtype="int8")})
