"""The input tables as per-customer event arrays: read once by DuckDB, then held in NumPy.

Every event table is read by one SQL query with its time bound written out (nothing at or
after the last cutoff is read, except the orders that the labels' horizon needs), keyed by
an integer per customer (numbered in ``customer_id`` order, so key order is id order) and
sorted by (customer, time). A customer's events are then one contiguous run
``[start[k], start[k + 1])`` in time order: "customer k's events before cutoff c" is a
prefix of that run, "the last one" is the prefix's last element, and "the longest gap since
the last order" is a maximum over a slice. The features at a cutoff (``features.build``)
are counts, sums and gathers over these runs: no table is re-read or re-grouped per cutoff.

Times are int64 microseconds since the epoch (UTC); ``DAY`` converts differences to days.
Inputs are validated tables (``features.contract``) as pandas frames, or paths to validated
Parquet files, which DuckDB reads directly (the tables never sit in pandas).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

DAY = 86_400_000_000  # microseconds
NEVER = np.iinfo(np.int64).max  # the time of an event that has not happened (open complaint, no cancellation)
STATIC_ATTRIBUTES = ("segment", "acquisition_channel", "region")
MAX_ATTRIBUTE_LEVELS = 50

Source = pd.DataFrame | str | Path

# Each input table as the engine reads it: canonical names, only the columns it needs.
# Orders with status 'cancelled' never happened as far as every feature is concerned.
_VIEWS = {
    "orders": "SELECT customer_id, ordered_at AS t, amount, {returned} AS returned FROM {src} WHERE {counted}",
    "interactions": "SELECT customer_id, occurred_at AS t, direction = 'outbound' AS outbound, channel FROM {src}",
    "nps": "SELECT customer_id, answered_at AS t, score FROM {src}",
    "complaints": "SELECT {complaint_id} AS complaint_id, customer_id, opened_at, resolved_at, {severity} AS severity, "
                  "{public} AS public FROM {src}",
    "cancellations": "SELECT customer_id, cancelled_at AS t FROM {src}",
    "customers": "SELECT * FROM {src}",
}


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _lit(ts: pd.Timestamp) -> str:
    return f"TIMESTAMP '{pd.Timestamp(ts).isoformat(sep=' ')}'"


def parquet_sql(path: str | Path) -> str:
    """DuckDB's reader of a Parquet file (or folder glob) as a SQL table expression."""
    return f"read_parquet({_quote(str(path))})"


def micros(ts: pd.Timestamp) -> int:
    """A timestamp as int64 microseconds since the epoch (naive = UTC)."""
    ts = pd.Timestamp(ts)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(np.datetime64(ts.to_datetime64(), "us").astype(np.int64))


def safe_name(value: str) -> str:
    """A channel's value as a column-safe name (``Phone Call`` -> ``phone_call``)."""
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in str(value).strip().lower()).strip("_")
    return cleaned[:30]


@dataclass
class Events:
    """One table's events, sorted by (customer key, time): ``t`` and named columns, and
    ``start`` (length customers + 1): customer k's events are ``[start[k], start[k + 1])``."""
    key: np.ndarray
    t: np.ndarray
    start: np.ndarray
    cols: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def sorted(cls, key: np.ndarray, t: np.ndarray, customers: int, **cols: np.ndarray) -> Events:
        key = np.asarray(key, dtype=np.int32)
        start = np.zeros(customers + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=customers), out=start[1:])
        return cls(key, np.asarray(t, dtype=np.int64), start, cols)

    def __len__(self) -> int:
        return len(self.t)

    def subset(self, mask: np.ndarray) -> Events:
        """The events where ``mask`` holds, still sorted (a boolean mask keeps the order)."""
        return Events.sorted(self.key[mask], self.t[mask], len(self.start) - 1,
                             **{name: values[mask] for name, values in self.cols.items()})

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Events per customer where ``mask`` holds (all events without a mask)."""
        customers = len(self.start) - 1
        if mask is None:
            return np.diff(self.start)
        return np.bincount(self.key[mask], minlength=customers)

    def total(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sum of ``values`` per customer over the events where ``mask`` holds."""
        return np.bincount(self.key[mask], weights=values[mask], minlength=len(self.start) - 1).astype("float64", copy=False)

    def before(self, cutoff: int) -> np.ndarray:
        """Per customer: how many of its events are stamped strictly before ``cutoff``."""
        return self.count(self.t < cutoff)

    def between(self, low: int, high: int) -> np.ndarray:
        """Per customer: events stamped in ``[low, high)``."""
        return self.count((self.t >= low) & (self.t < high))


def segment_max(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``max(values[low[i]:high[i]])`` for each i, ignoring NaN; NaN for an empty slice.

    ``values`` must end with one spare NaN element (so ``high`` may equal the events' count).
    The slices must be disjoint and in increasing order (customers' runs are)."""
    out = np.full(len(low), np.nan)
    some = high > low
    if some.any():
        bounds = np.empty(2 * int(some.sum()), dtype=np.int64)
        bounds[0::2], bounds[1::2] = low[some], high[some]
        out[some] = np.fmax.reduceat(values, bounds)[0::2]
    return out


def first_in_run(keys: np.ndarray) -> np.ndarray:
    """For rows sorted by key: True at the first row of each key."""
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def last_in_run(keys: np.ndarray) -> np.ndarray:
    """For rows sorted by key: True at the last row of each key."""
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    return last


class History:
    """The tables needed for features at cutoffs up to ``last_cutoff`` (and, with
    ``order_horizon_days``, the orders of the label window after it), as ``Events``."""

    def __init__(self, tables: Mapping[str, Source], last_cutoff: pd.Timestamp, *,
                 order_horizon_days: int | None = None, need: set[str] | None = None):
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET preserve_insertion_order = false")
        self.columns: dict[str, list[str]] = {}
        try:
            for name, source in tables.items():
                if name in _VIEWS and (need is None or name in need):
                    self._register(name, source)
            self.has = set(self.columns)
            self.last_cutoff = micros(last_cutoff)
            self._read(pd.Timestamp(last_cutoff), order_horizon_days)
        except BaseException:
            self.con.close()
            raise

    def close(self) -> None:
        self.con.close()

    def _register(self, name: str, source: Source) -> None:
        if isinstance(source, (str, Path)):
            src = parquet_sql(source)
        else:
            self.con.register(f"input_{name}", source)
            src = f"input_{name}"
        cols = [r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        self.columns[name] = cols
        sql = _VIEWS[name].format(
            src=src,
            counted="status IS DISTINCT FROM 'cancelled'" if "status" in cols else "TRUE",
            returned="coalesce(status = 'returned', FALSE)" if "status" in cols else "FALSE",
            complaint_id="CAST(complaint_id AS VARCHAR)" if "complaint_id" in cols else "NULL::VARCHAR",
            severity="severity" if "severity" in cols else "NULL::VARCHAR",
            public="coalesce(public, FALSE)" if "public" in cols else "FALSE")
        self.con.execute(f"CREATE VIEW {name} AS {sql}")

    def _fetch(self, sql: str) -> dict[str, np.ndarray]:
        """A query's columns as NumPy arrays (text with None where missing)."""
        out = self.con.execute(sql).fetchnumpy()
        for name, values in out.items():
            if np.ma.isMaskedArray(values) and values.dtype == object:
                out[name] = values.filled(None)
        return out

    def _read(self, last_cutoff: pd.Timestamp, order_horizon_days: int | None) -> None:
        con, c = self.con, _lit(last_cutoff)
        known = " UNION ".join(f"SELECT customer_id FROM {t}" for t in ("customers", "orders") if t in self.has)
        # customers are keyed 0..n-1 in customer_id order, so key order is the output's id order
        con.execute(f"""CREATE TEMP TABLE ids AS
                        SELECT customer_id AS id, CAST(row_number() OVER (ORDER BY customer_id) - 1 AS INTEGER) AS k
                        FROM (SELECT DISTINCT customer_id FROM ({known}) WHERE customer_id IS NOT NULL)""")
        self.ids: pa.Array = con.sql("SELECT id FROM ids ORDER BY k").to_arrow_table().column(0).combine_chunks()
        n = self.customers = len(self.ids)

        # orders: everything before the last cutoff, and the label window after it
        bound = (f"t <= {c} + INTERVAL {int(order_horizon_days)} DAY" if order_horizon_days is not None else f"t < {c}")
        r = self._fetch(f"""SELECT d.k, epoch_us(o.t) AS t, o.amount, o.returned
                            FROM orders o JOIN ids d ON d.id = o.customer_id WHERE {bound} ORDER BY d.k, o.t""")
        self.orders = Events.sorted(r["k"], r["t"], n, amount=np.asarray(r["amount"], dtype=float),
                                    returned=np.asarray(r["returned"], dtype=bool))
        del r

        self.channel_values: list[str] = []
        if "interactions" in self.has:
            self.channel_values = [v for (v,) in con.execute(
                "SELECT DISTINCT channel FROM interactions WHERE channel IS NOT NULL ORDER BY channel").fetchall()]
            values = "[" + ", ".join(_quote(v) for v in self.channel_values) + "]::VARCHAR[]"
            r = self._fetch(f"""SELECT d.k, epoch_us(i.t) AS t, i.outbound,
                                       CAST(coalesce(list_position({values}, i.channel), 0) - 1 AS SMALLINT) AS channel
                                FROM interactions i JOIN ids d ON d.id = i.customer_id WHERE i.t < {c} ORDER BY d.k, i.t""")
            # channel: index into channel_values, -1 where missing
            self.interactions = Events.sorted(r["k"], r["t"], n, outbound=np.asarray(r["outbound"], dtype=bool),
                                              channel=np.asarray(r["channel"], dtype=np.int16))
            del r
        if "nps" in self.has:
            r = self._fetch(f"""SELECT d.k, epoch_us(a.t) AS t, a.score FROM nps a JOIN ids d ON d.id = a.customer_id
                                WHERE a.t < {c} ORDER BY d.k, a.t, a.score""")
            self.nps = Events.sorted(r["k"], r["t"], n, score=np.asarray(r["score"], dtype=float))
        if "complaints" in self.has:
            r = self._fetch(f"""SELECT d.k, epoch_us(x.opened_at) AS t, coalesce(epoch_us(x.resolved_at), {NEVER}) AS resolved,
                                       x.severity, x.public
                                FROM complaints x JOIN ids d ON d.id = x.customer_id
                                WHERE x.opened_at < {c} ORDER BY d.k, x.opened_at, x.complaint_id""")
            severity = pd.Categorical(pd.Series(r["severity"], dtype="object"))
            self.severity_levels = [str(v) for v in severity.categories]
            self.complaints = Events.sorted(r["k"], r["t"], n, resolved=np.asarray(r["resolved"], dtype=np.int64),
                                            severity=np.asarray(severity.codes, dtype=np.int16),
                                            public=np.asarray(r["public"], dtype=bool))
        self.first_cancel = np.full(n, NEVER, dtype=np.int64)
        if "cancellations" in self.has:
            r = self._fetch("""SELECT d.k, epoch_us(min(x.t)) AS t FROM cancellations x JOIN ids d ON d.id = x.customer_id
                               WHERE x.t IS NOT NULL GROUP BY d.k""")
            self.first_cancel[np.asarray(r["k"], dtype=np.int64)] = r["t"]

    def keys_of(self, customer_ids: pd.Series) -> np.ndarray:
        """Integer keys of customer ids (ValueError naming how many are unknown)."""
        frame = pd.DataFrame({"i": np.arange(len(customer_ids)), "id": customer_ids.astype("str").to_numpy()})
        self.con.register("asked_ids", frame)
        r = self._fetch("SELECT d.k FROM asked_ids a LEFT JOIN ids d USING (id) ORDER BY a.i")
        keys = r["k"]
        if np.ma.isMaskedArray(keys) and keys.mask.any():
            raise ValueError(f"population holds {int(keys.mask.sum())} customer_ids that are in neither customers nor orders")
        return np.asarray(keys, dtype=np.int64)

    def attributes(self) -> dict[str, tuple[np.ndarray, list[str] | None]]:
        """Static attributes by key: segment, acquisition_channel, region, and other
        low-cardinality or numeric customer columns (named ``attr_<column>``). Numbers come
        as float64 (missing = NaN); text as (codes, levels) with -1 for missing."""
        if "customers" not in self.has:
            return {}
        con = self.con
        cols = {}
        for col, dtype in con.execute("SELECT column_name, column_type FROM (DESCRIBE customers)").fetchall():
            if col in ("customer_id", "created_at"):
                continue
            name = col if col in STATIC_ATTRIBUTES else f"attr_{safe_name(col)}"
            quoted = '"' + col.replace('"', '""') + '"'
            if dtype in ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE") or dtype.startswith("DECIMAL"):
                cols[name] = (f"CAST(c.{quoted} AS DOUBLE)", True)
            elif dtype.startswith(("TIMESTAMP", "DATE")):
                continue
            elif con.execute(f"SELECT count(DISTINCT {quoted}) FROM customers").fetchall()[0][0] <= MAX_ATTRIBUTE_LEVELS:
                cols[name] = (f"CAST(c.{quoted} AS VARCHAR)", False)
        if not cols:
            return {}
        select = ", ".join(f'{expr} AS "{name}"' for name, (expr, _n) in cols.items())
        # one row per key, in key order (customers only known from orders get missing attributes)
        table = con.sql(f"""SELECT {select} FROM ids d LEFT JOIN (SELECT DISTINCT ON (customer_id) * FROM customers) c
                                ON c.customer_id = d.id ORDER BY d.k""").to_arrow_table()
        out = {}
        for name, (_expr, numeric) in cols.items():
            column = table.column(name)
            if numeric:
                out[name] = (column.to_numpy(zero_copy_only=False).astype("float64"), None)
            else:
                values = pd.Categorical(column.to_pandas())
                out[name] = (np.asarray(values.codes, dtype=np.int32), [str(v) for v in values.categories])
        return out
