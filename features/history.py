"""The input tables as per-customer event arrays: read by DuckDB, held in NumPy.

Every table is read by one SQL query with its time bound written out (nothing at or after
the last cutoff is read, except the orders that the labels' horizon needs) and keyed by an
integer per customer, numbered in ``customer_id`` order (so key order is id order).

- Orders, NPS answers and complaints come sorted by (customer, time) as ``Runs``: a
  customer's events are one contiguous run ``[start[k], start[k + 1])`` in time order, so
  "customer k's events before cutoff c" is a prefix of the run, "the last one" its last
  element, and "the longest gap between orders" a maximum over the slice.
- Interactions, the big table, are read span by span (``interactions(low, high)``: the
  events between two cutoffs, in no particular order) on a second connection, so that the
  next span is read while the caller computes; ``gaps`` finds the longest silence in them
  without sorting.

Times are int64 microseconds since the epoch (UTC); ``DAY`` converts differences to days.
Inputs are validated tables (``features.inputs``) as pandas frames, or paths to validated
Parquet files, which DuckDB reads directly (the tables never sit in pandas).
"""
from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

DAY = 86_400_000_000  # microseconds
NEVER = np.iinfo(np.int64).max  # the time of an event that has not happened (open complaint, no cancellation)
PAST = -(2 ** 62)  # the time of the latest event when there is none (loses every max, no overflow in differences)
STATIC_ATTRIBUTES = ("segment", "acquisition_channel", "region")
MAX_ATTRIBUTE_LEVELS = 50
MAX_ATTRIBUTE_COLUMNS = 50  # other customers columns beyond these (in file order) are not read

Source = pd.DataFrame | str | Path

# Each input table as the engine reads it: canonical names, only the columns it needs.
# Orders with status 'cancelled' never happened as far as every feature is concerned; a
# 'refund' (a credit note) is a return, never a purchase: only the returns features read it.
_VIEWS = {
    "orders": "SELECT customer_id, ordered_at AS t, amount, {returned} AS returned, {refund} AS refund FROM {src} WHERE {counted}",
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
    """One table's events in any order: the customer ``key`` (int64), the time ``t`` and
    named columns. Per-customer counts and sums are ``bincount`` over a mask."""
    key: np.ndarray
    t: np.ndarray
    customers: int
    cols: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.key = np.asarray(self.key, dtype=np.int64)
        self.t = np.asarray(self.t, dtype=np.int64)
        self.latest = int(self.t.max()) if len(self.t) else PAST

    def __len__(self) -> int:
        return len(self.t)

    def before(self, cutoff: int) -> np.ndarray | None:
        """Mask of the events stamped strictly before ``cutoff``; None when every event is."""
        return None if self.latest < cutoff else self.t < cutoff

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Events per customer where ``mask`` holds (every event for None)."""
        return np.bincount(self.key if mask is None else self.key[mask], minlength=self.customers)

    def total(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Sum of ``values`` per customer over the events where ``mask`` holds."""
        if mask is not None:
            values = values[mask]
        return np.bincount(self.key if mask is None else self.key[mask], weights=values,
                           minlength=self.customers).astype("float64", copy=False)

    def between(self, low: int, high: int) -> np.ndarray:
        """Mask of the events stamped in ``[low, high)``."""
        return (self.t >= low) & (self.t < high)

    def where(self, mask: np.ndarray) -> Events:
        """The events where ``mask`` holds."""
        return Events(self.key[mask], self.t[mask], self.customers, {n: v[mask] for n, v in self.cols.items()})


@dataclass
class Runs(Events):
    """Events sorted by (customer key, time), with ``start`` (length customers + 1):
    customer k's events are ``[start[k], start[k + 1])``, in time order, so the events
    before a cutoff are a prefix of the run and the last of them ends it."""
    start: np.ndarray = field(default=None)

    def __post_init__(self):
        super().__post_init__()
        self.start = np.zeros(self.customers + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.key, minlength=self.customers), out=self.start[1:])

    def last_before(self, counts: np.ndarray) -> np.ndarray:
        """Index of each customer's last event among its first ``counts`` (clipped to 0)."""
        return np.maximum(self.start[:-1] + counts - 1, 0)


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


def gaps(key: np.ndarray, t: np.ndarray, since: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per customer k, over the points ``since[k]`` and the times ``t`` of k's events (each
    at or after ``since[k]``, in any order): the longest gap between consecutive points (0
    with no events) and the latest point.

    Exact and without sorting (the maximum-gap bucket argument): a customer with m events,
    the latest at L, gets m equal buckets over ``[since, L]`` (width w = (L - since) / m).
    The m gaps add up to L - since, so the longest is at least w, while two points in one
    bucket are less than w apart (at most w in the last, closed bucket). So the longest gap
    is the largest step from one non-empty bucket's latest point to the next one's earliest,
    the first step taken from ``since``; if it lay inside a bucket it would equal w, all gaps
    would equal w, and so would the first step. Bucket numbers are integer arithmetic; data
    whose spans times events overflow 62 bits take a sort instead."""
    customers = len(since)
    latest = since.copy()
    np.maximum.at(latest, key, t)
    buckets = np.bincount(key, minlength=customers)
    span = latest - since
    if len(key) and float(np.max(span.astype("float64") * buckets)) >= 2.0 ** 62:
        return _gaps_by_sorting(key, t, since, latest)
    offset = np.zeros(customers + 1, dtype=np.int64)
    np.cumsum(buckets, out=offset[1:])
    # the bucket of an event: floor((t - since) * m / (L - since)), the latest in the last one
    slot = t - since[key]
    slot *= buckets[key]
    slot //= np.maximum(span, 1)[key]
    np.minimum(slot, buckets[key] - 1, out=slot)
    slot += offset[key]
    low = np.full(offset[-1], NEVER, dtype=np.int64)
    high = np.full(offset[-1], PAST, dtype=np.int64)
    np.minimum.at(low, slot, t)
    np.maximum.at(high, slot, t)
    del slot
    used = np.flatnonzero(high != PAST)  # ascending: by customer, then bucket
    owner = np.repeat(np.arange(customers), buckets)[used]
    previous = np.empty(len(used), dtype=np.int64)
    previous[1:] = high[used[:-1]]
    first = first_in_run(owner)
    previous[first] = since[owner[first]]
    step = low[used]
    step -= previous
    longest = np.zeros(customers, dtype=np.int64)
    np.maximum.at(longest, owner, step)
    return longest, latest


def _gaps_by_sorting(key: np.ndarray, t: np.ndarray, since: np.ndarray, latest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gaps`` by sorting each customer's events (for spans too long for the buckets' integers)."""
    order = np.lexsort((t, key))
    key, t = key[order], t[order]
    previous = np.empty(len(t), dtype=np.int64)
    previous[1:] = t[:-1]
    first = first_in_run(key)
    previous[first] = since[key[first]]
    longest = np.zeros(len(since), dtype=np.int64)
    np.maximum.at(longest, key, t - previous)
    return longest, latest


def first_in_run(*keys: np.ndarray) -> np.ndarray:
    """For rows sorted by ``keys``: True at the first row of each distinct combination
    (a row where any of the keys differs from the row before)."""
    first = np.ones(len(keys[0]), dtype=bool)
    for k in keys:
        first[1:] &= k[1:] == k[:-1]
    first[1:] = ~first[1:]
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
                 order_horizon_days: int | None = None, need: set[str] | None = None,
                 first_span: pd.Timestamp | None = None):
        """``first_span``: start reading the interactions before this time at once, in the
        background (see ``prefetch``), while the other tables are read."""
        self._pool: ThreadPoolExecutor | None = None
        self._main_pool: ThreadPoolExecutor | None = None
        self._rest = None
        self._pending = None
        self._channel_job = self._cancel_job = None
        self._first_cancel: np.ndarray | None = None
        self.con = duckdb.connect()
        # the interactions are read on a second connection to the same database, so that one
        # span can be read while the main connection reads the other tables
        self.reader = self.con.cursor()
        for con in (self.con, self.reader):
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET preserve_insertion_order = false")
            try:  # no progress bar on the terminal (in Jupyter DuckDB refuses the setting without ipywidgets)
                con.execute("SET enable_progress_bar = false")
            except duckdb.InvalidInputException:
                pass
        self.columns: dict[str, list[str]] = {}
        try:
            for name, source in tables.items():
                if name in _VIEWS and (need is None or name in need):
                    self._register(name, source)
            self.has = set(self.columns)
            self.last_cutoff = micros(last_cutoff)
            self._read(pd.Timestamp(last_cutoff), order_horizon_days, first_span)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for pool in (self._pool, self._main_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self.reader.close()
        self.con.close()

    def _register(self, name: str, source: Source) -> None:
        con = self.reader if name == "interactions" else self.con
        if isinstance(source, (str, Path)):
            src = parquet_sql(source)
        else:
            con.register(f"input_{name}", source)
            src = f"input_{name}"
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        self.columns[name] = cols
        sql = _VIEWS[name].format(
            src=src,
            counted="status IS DISTINCT FROM 'cancelled'" if "status" in cols else "TRUE",
            refund="coalesce(status = 'refund', FALSE)" if "status" in cols else "FALSE",
            returned="coalesce(status = 'returned', FALSE)" if "status" in cols else "FALSE",
            complaint_id="CAST(complaint_id AS VARCHAR)" if "complaint_id" in cols else "NULL::VARCHAR",
            severity="severity" if "severity" in cols else "NULL::VARCHAR",
            public="coalesce(public, FALSE)" if "public" in cols else "FALSE")
        con.execute(f"CREATE TEMP VIEW {name} AS {sql}")

    def _channels(self, c: str) -> tuple[list[str], np.ndarray]:
        """The interaction channels and how often each was used before the last cutoff (the
        channel features are chosen from these); run on the reader before the first span."""
        counts = self.reader.execute(f"""SELECT channel, count(*) FROM interactions WHERE channel IS NOT NULL AND t < {c}
                                         GROUP BY channel ORDER BY channel""").fetchall()
        values = [v for v, _n in counts]
        self._channel_list = "[" + ", ".join(_quote(v) for v in values) + "]::VARCHAR[]"
        return values, np.array([n for _v, n in counts], dtype=np.int64)

    @property
    def channel_values(self) -> list[str]:
        """The distinct interaction channels (``interactions()`` codes index into this list)."""
        return self._channel_job.result()[0] if self._channel_job is not None else []

    @property
    def channel_counts(self) -> np.ndarray:
        """Interactions per channel before the last cutoff."""
        return self._channel_job.result()[1] if self._channel_job is not None else np.zeros(0, dtype=np.int64)

    @property
    def first_cancel(self) -> np.ndarray:
        """Each customer's first cancellation (NEVER without one): the population reads it."""
        if self._cancel_job is not None:
            self._first_cancel, self._cancel_job = self._cancel_job.result(), None
        return self._first_cancel

    def _read_cancellations(self) -> np.ndarray:
        first = np.full(self.customers, NEVER, dtype=np.int64)
        if "cancellations" in self.has:
            r = self._fetch("""SELECT d.k, epoch_us(min(x.t)) AS t FROM cancellations x JOIN ids d ON d.id = x.customer_id
                               WHERE x.t IS NOT NULL GROUP BY d.k""")
            first[np.asarray(r["k"], dtype=np.int64)] = r["t"]
        return first

    def _key_customers(self, tables: list[str]) -> None:
        """Key the customers of ``tables`` 0..n-1 in customer_id order (so key order is the
        output's id order): the table ``ids`` and the array ``self.ids`` (id by key)."""
        known = " UNION ALL ".join(f"SELECT customer_id FROM {t}" for t in tables)
        self.con.execute(f"""CREATE OR REPLACE TABLE ids AS
                             SELECT customer_id AS id, CAST(row_number() OVER (ORDER BY customer_id) - 1 AS INTEGER) AS k
                             FROM (SELECT DISTINCT customer_id FROM ({known}) WHERE customer_id IS NOT NULL)""")
        self.ids: pa.Array = self.con.sql("SELECT id FROM ids ORDER BY k").to_arrow_table().column(0).combine_chunks()
        self.customers = len(self.ids)

    def _fetch(self, sql: str, con: duckdb.DuckDBPyConnection | None = None) -> dict[str, np.ndarray]:
        """A query's columns as NumPy arrays (text with None where missing)."""
        out = (con or self.con).execute(sql).fetchnumpy()
        for name, values in out.items():
            if np.ma.isMaskedArray(values) and values.dtype == object:
                out[name] = values.filled(None)
        return out

    def _read(self, last_cutoff: pd.Timestamp, order_horizon_days: int | None, first_span: pd.Timestamp | None) -> None:
        c = _lit(last_cutoff)
        # orders: everything before the last cutoff, and the label window after it
        bound = (f"t <= {c} + INTERVAL {int(order_horizon_days)} DAY" if order_horizon_days is not None else f"t < {c}")
        orders = f"""SELECT d.k, epoch_us(o.t) AS t, o.amount, o.returned, o.refund
                     FROM orders o LEFT JOIN ids d ON d.id = o.customer_id WHERE {bound} ORDER BY d.k, o.t"""
        # validated data has every ordering customer in customers: key those; if an order's
        # customer is missing there (unvalidated frames), key the union of both tables
        reads_first_span = first_span is not None and "interactions" in self.has
        self._key_customers(["customers"] if "customers" in self.has else ["orders"])
        if "interactions" in self.has:  # on the reader, ahead of the first span
            self._channel_job = self._reader_pool().submit(self._channels, c)
        if reads_first_span:
            self.prefetch(None, first_span)
        r = self._fetch(orders)
        if np.ma.isMaskedArray(r["k"]) and r["k"].mask.any():
            self._drop_pending()  # it was read with the old keys
            self._key_customers(["customers", "orders"])
            if reads_first_span:
                self.prefetch(None, first_span)
            r = self._fetch(orders)
        n = self.customers
        refund = np.asarray(r["refund"], dtype=bool)
        if refund.any():  # credit notes: returns, never purchases
            self.refunds = Events(np.asarray(r["k"])[refund], np.asarray(r["t"])[refund], n)
            r = {name: np.asarray(v)[~refund] for name, v in r.items()}
        else:
            self.refunds = Events(np.zeros(0, np.int64), np.zeros(0, np.int64), n)
        self.orders = Runs(r["k"], r["t"], n, dict(amount=np.asarray(r["amount"], dtype=float),
                                                   returned=np.asarray(r["returned"], dtype=bool)))
        del r
        # the other tables are read in the background on the main connection, while the
        # caller prepares the orders (see ``wait``); the cancellations first (``first_cancel``)
        self._main_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tables")
        self._cancel_job = self._main_pool.submit(self._read_cancellations)
        self._rest = self._main_pool.submit(self._read_rest, c)

    def wait(self) -> History:
        """Wait until the NPS answers, complaints and customer attributes are read (``nps``,
        ``complaints``, ``attributes()``); the main connection is free again afterwards."""
        if self._rest is not None:
            rest, self._rest = self._rest, None
            rest.result()
        return self

    def _read_rest(self, c: str) -> None:
        n = self.customers
        if "nps" in self.has:
            r = self._fetch(f"""SELECT d.k, epoch_us(a.t) AS t, a.score FROM nps a JOIN ids d ON d.id = a.customer_id
                                WHERE a.t < {c} ORDER BY d.k, a.t, a.score""")
            self.nps = Runs(r["k"], r["t"], n, dict(score=np.asarray(r["score"], dtype=float)))
        if "complaints" in self.has:
            r = self._fetch(f"""SELECT d.k, epoch_us(x.opened_at) AS t, coalesce(epoch_us(x.resolved_at), {NEVER}) AS resolved,
                                       x.severity, x.public
                                FROM complaints x JOIN ids d ON d.id = x.customer_id
                                WHERE x.opened_at < {c} ORDER BY d.k, x.opened_at, x.complaint_id""")
            severity = pd.Categorical(pd.Series(r["severity"], dtype="object"))
            self.severity_levels = [str(v) for v in severity.categories]
            self.complaints = Runs(r["k"], r["t"], n, dict(resolved=np.asarray(r["resolved"], dtype=np.int64),
                                                           severity=np.asarray(severity.codes, dtype=np.int16),
                                                           public=np.asarray(r["public"], dtype=bool)))
        self._attributes = self._read_attributes()

    def prefetch(self, low: pd.Timestamp | None, high: pd.Timestamp) -> None:
        """Start reading ``interactions(low, high)`` in a background thread (DuckDB works
        while the caller computes other features in NumPy); no other query may run meanwhile."""
        self._pending = ((low, high), self._reader_pool().submit(self._interactions, low, high))

    def _reader_pool(self) -> ThreadPoolExecutor:
        """The one thread that uses the reader connection (its jobs run in submission order)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interactions")
        return self._pool

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].result()

    def interactions(self, low: pd.Timestamp | None, high: pd.Timestamp) -> Events:
        """The interactions stamped in ``[low, high)`` (see ``_interactions``), prefetched or read now."""
        pending, self._pending = self._pending, None
        if pending is not None:
            events = pending[1].result()
            if pending[0] == (low, high):
                return events
        return self._interactions(low, high)

    def _interactions(self, low: pd.Timestamp | None, high: pd.Timestamp) -> Events:
        """The interactions stamped in ``[low, high)`` (everything before ``high`` without
        ``low``), in no particular order: every interaction feature is a count, a sum, a
        latest time or a longest gap, none of which needs the events sorted. Columns:
        ``slot`` (2 * key, + 1 when outbound) and ``channel`` (index into ``channel_values``,
        -1 where missing)."""
        bound = (f"i.t >= {_lit(low)} AND " if low is not None else "") + f"i.t < {_lit(high)}"
        self._channel_job.result()  # the channel list the codes index into
        r = self._fetch(f"""SELECT d.k, 2 * d.k::BIGINT + i.outbound::BIGINT AS slot, epoch_us(i.t) AS t, i.outbound,
                                   CAST(coalesce(list_position({self._channel_list}, i.channel), 0) - 1 AS SMALLINT) AS channel
                            FROM interactions i JOIN ids d ON d.id = i.customer_id WHERE {bound}""", self.reader)
        return Events(r["k"], r["t"], self.customers, dict(slot=np.asarray(r["slot"], dtype=np.int64),
                                                            outbound=np.asarray(r["outbound"], dtype=bool),
                                                            channel=np.asarray(r["channel"], dtype=np.int16)))

    def keys_of(self, customer_ids: pd.Series) -> np.ndarray:
        """Integer keys of customer ids (ValueError naming how many are unknown)."""
        self.wait()
        frame = pd.DataFrame({"i": np.arange(len(customer_ids)), "id": customer_ids.astype("str").to_numpy()})
        self.con.register("asked_ids", frame)
        r = self._fetch("SELECT d.k FROM asked_ids a LEFT JOIN ids d USING (id) ORDER BY a.i")
        keys = r["k"]
        if np.ma.isMaskedArray(keys) and keys.mask.any():
            raise ValueError(f"population holds {int(keys.mask.sum())} customer_ids that are in neither customers nor orders")
        return np.asarray(keys, dtype=np.int64)

    def attributes(self) -> dict[str, tuple[np.ndarray, list[str] | None]]:
        """Static attributes by key (see ``_read_attributes``)."""
        return self.wait()._attributes

    def _read_attributes(self) -> dict[str, tuple[np.ndarray, list[str] | None]]:
        """Static attributes by key: segment, acquisition_channel, region, and other
        low-cardinality or numeric customer columns (named ``attr_<column>``). Numbers come
        as float64 (missing = NaN); text as (codes, levels) with -1 for missing."""
        if "customers" not in self.has:
            return {}
        con = self.con
        cols, text = {}, {}
        described = con.execute("SELECT column_name, column_type FROM (DESCRIBE customers)").fetchall()
        others = [c for c, _ in described if c not in ("customer_id", "created_at", *STATIC_ATTRIBUTES)]
        skipped = set(others[MAX_ATTRIBUTE_COLUMNS:])  # a very wide export: its first columns only
        for col, dtype in described:
            if col in ("customer_id", "created_at") or col in skipped:
                continue
            name = col if col in STATIC_ATTRIBUTES else f"attr_{safe_name(col)}"
            quoted = '"' + col.replace('"', '""') + '"'
            if dtype in ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE") or dtype.startswith("DECIMAL"):
                cols[name] = (f"CAST(c.{quoted} AS DOUBLE)", None)
            elif not dtype.startswith(("TIMESTAMP", "DATE")):
                text[name] = quoted
        if text:  # text columns with few enough values to be categories: coded by DuckDB, 10 columns a query
            quoted_text, found = list(text.values()), []
            for i in range(0, len(quoted_text), 10):
                found += con.execute("SELECT " + ", ".join(
                    f"count(DISTINCT {q}), CASE WHEN count(DISTINCT {q}) <= {MAX_ATTRIBUTE_LEVELS} THEN list(DISTINCT CAST({q} AS VARCHAR)) END"
                    for q in quoted_text[i:i + 10]) + " FROM customers").fetchall()[0]
            for i, (name, quoted) in enumerate(text.items()):
                levels = found[2 * i + 1]
                if levels is not None:
                    values = "[" + ", ".join(_quote(v) for v in levels) + "]::VARCHAR[]"
                    cols[name] = (f"CAST(coalesce(list_position({values}, CAST(c.{quoted} AS VARCHAR)), 0) - 1 AS SMALLINT)",
                                  [str(v) for v in levels])
        if not cols:
            return {}
        select = ", ".join(f'{expr} AS "{name}"' for name, (expr, _levels) in cols.items())
        # one row per key, in key order (customers only known from orders get missing attributes)
        rows = f"SELECT {select} FROM ids d LEFT JOIN {{customers}} c ON c.customer_id = d.id ORDER BY d.k"
        r = self._fetch(rows.format(customers="customers"))
        if len(next(iter(r.values()))) != self.customers:  # a repeated customer_id (unvalidated): its first row
            r = self._fetch(rows.format(customers="(SELECT DISTINCT ON (customer_id) * FROM customers)"))
        out = {}
        for name, (_expr, levels) in cols.items():
            values = r[name]
            if levels is None:  # numbers, missing = NaN
                out[name] = (np.ma.filled(values.astype("float64"), np.nan) if np.ma.isMaskedArray(values)
                             else np.asarray(values, dtype="float64"), None)
            else:
                out[name] = (np.asarray(values, dtype=np.int32), levels)
        return out
