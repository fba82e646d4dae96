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
import numpy as np
import pandas as pd

from features.build import build_features, build_population, parquet_sql
from features.config import FeatureConfig

TIME_COLUMNS = {
    "orders": "ordered_at", "interactions": "occurred_at", "nps": "answered_at",
    "complaints": "opened_at", "cancellations": "cancelled_at",
}


def _query(source, col: str, sql: str) -> list[tuple]:
    """Run ``sql`` (``{src}`` is the table, ``{col}`` the column) over a frame's column or a Parquet file."""
    con = duckdb.connect()
    if isinstance(source, (str, Path)):
        src = parquet_sql(source)
    else:
        con.register("events", source[[col]])
        src = "events"
    return con.execute(sql.format(src=src, col=col)).fetchall()


def _range(source, col: str) -> tuple:
    """(min, max) of a timestamp column of a frame or a Parquet file (None when empty)."""
    if isinstance(source, (str, Path)):
        return _query(source, col, "SELECT min({col}), max({col}) FROM {src}")[0]
    return (source[col].min(), source[col].max()) if len(source) else (None, None)


STRAY_GAP_DAYS = 30
STRAY_SHARE = 0.005


_TAILS: dict[tuple, tuple] = {}  # a few recent answers: several steps of one run ask about the same tables


def stray_tail(tables: dict) -> tuple[pd.Timestamp | None, int]:
    """Events that lie far beyond the rest of the data: after the first silence of more than
    ``STRAY_GAP_DAYS`` days (no event in any table) that is followed by fewer than
    ``STRAY_SHARE`` of all events. Returns (the last timestamp before that silence, the
    number of events after it), or (None, 0) when there is no stray tail. One mistyped
    order in 2031 must not move everyone's scoring date."""
    present = [(t, col) for t, col in TIME_COLUMNS.items() if t in tables]
    # the key holds the frames themselves, so an id is never reused while it is cached
    key = tuple((t, str(tables[t]) if isinstance(tables[t], (str, Path)) else id(tables[t])) for t, _ in present)
    if key in _TAILS:
        return _TAILS[key][0]
    counts = [pd.DataFrame(_query(tables[t], col, """SELECT CAST(floor(epoch_us({col}) / 86400000000) AS BIGINT) AS day,
                                                         count(*) AS n FROM {src} WHERE {col} IS NOT NULL GROUP BY day"""),
                           columns=["day", "n"]) for t, col in present]
    days = pd.concat(counts).groupby("day", as_index=False)["n"].sum().sort_values("day")
    answer = (None, 0)
    if len(days):
        d, n = days["day"].to_numpy(), days["n"].to_numpy()
        total = n.sum()
        after = total - np.cumsum(n)  # events after each day
        for i in np.flatnonzero(np.diff(d) > STRAY_GAP_DAYS):
            if after[i] < STRAY_SHARE * total:
                bound = f"TIMESTAMP '{pd.Timestamp(int(d[i] + 1), unit='D')}'"
                latest = [_query(tables[t], col, f"SELECT max({{col}}) FROM {{src}} WHERE {{col}} < {bound}")[0][0]
                          for t, col in present]
                answer = (pd.Timestamp(max(v for v in latest if v is not None)), int(after[i]))
                break
    if len(_TAILS) >= 4:
        _TAILS.pop(next(iter(_TAILS)))
    _TAILS[key] = (answer, [tables[t] for t, _ in present])
    return answer


def data_end(tables: dict) -> pd.Timestamp:
    """The end of what has been observed: the latest event timestamp, ignoring a stray tail
    (``stray_tail``). ``tables`` holds validated frames or paths to validated Parquet files."""
    end, _ = stray_tail(tables)
    if end is not None:
        return end
    latest = latest_event(tables)
    if latest is None:
        raise ValueError("no event timestamp in the data")
    return latest


def latest_event(tables: dict) -> pd.Timestamp | None:
    """The latest timestamp of any table's event column, a stray tail included (None: no event)."""
    ends = [_range(tables[t], col)[1] for t, col in TIME_COLUMNS.items() if t in tables]
    ends = [e for e in ends if e is not None and not pd.isna(e)]
    return pd.Timestamp(max(ends)) if ends else None


def default_as_of(tables: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """The scoring date by default: the end of the last day in the data (every fact is known)."""
    return (data_end(tables) + pd.Timedelta(days=1)).normalize()


def check_as_of(tables: dict, as_of: pd.Timestamp, horizon_days: int, name: str = "--as-of") -> list[str]:
    """Whether the data can describe its clients at ``as_of``: ``ValueError`` before the first
    order or more than one horizon after the end of the data; a warning (returned) more than
    7 days after it, or when a stray tail was set aside."""
    as_of = pd.Timestamp(as_of)
    first = _range(tables["orders"], "ordered_at")[0]
    if first is None or pd.isna(first):
        raise ValueError("orders: no order to score from")
    if as_of <= pd.Timestamp(first):
        raise ValueError(f"{name} {as_of.date()} is before the first order ({pd.Timestamp(first).date()}): "
                         "nobody was a client yet")
    end = data_end(tables)
    warnings = []
    stray_end, stray = stray_tail(tables)
    if stray_end is not None:
        warnings.append(f"{stray:,} event(s) lie more than {STRAY_GAP_DAYS} days after the rest of the data "
                        f"(which ends {stray_end.date()}): they are set aside for the default date and the labels; "
                        "check their timestamps in the export")
    late = (as_of - end) / pd.Timedelta(days=1)
    if late > horizon_days:
        raise ValueError(f"{name} {as_of.date()} is {late:.0f} days after the end of the data ({end.date()}), more "
                         f"than the {horizon_days}-day horizon: every client would look gone; refresh the extract "
                         "or score an earlier date")
    if late > 7:
        warnings.append(f"{name} {as_of.date()} is {late:.0f} days after the end of the data ({end.date()}): "
                        "recent orders may be missing from the extract, and the silence since then counts as risk")
    return warnings


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


FINER_FREQUENCY = {"QS": "MS", "QS-JAN": "MS", "MS": "W-MON", "ME": "W-MON", "M": "W-MON", "SMS": "W-MON"}


def finer_frequency(freq: str) -> str | None:
    """The next finer cutoff frequency to fall back on when ``freq`` gives too few labelled
    cutoffs (month starts -> Mondays), or None when there is none."""
    return FINER_FREQUENCY.get(freq)


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
