"""Point-in-time features and the population at each cutoff, computed with DuckDB.

Time semantics, held everywhere:
- a feature at cutoff ``c`` reads only facts strictly before ``c``: an order, NPS answer,
  interaction or complaint stamped at or after ``c`` does not exist yet; a complaint
  opened before ``c`` and resolved at or after ``c`` is open at ``c``;
- the population at ``c``: customers with at least one order before ``c`` who are still
  clients at ``c``: no cancellation before ``c`` when the data has cancellations
  (a contractual business), otherwise an order within ``active_window_days`` before ``c``.

Engine: the history is read once, in time order, whatever the number of cutoffs. The
engine keeps a small per-customer state (order counts and sums, first and last order, the
last and longest gap, last touches, the silence since the last order, the last two NPS
answers, the emotional bank account's decayed balance ...) and advances it cutoff by
cutoff: from ``c[k-1]`` to ``c[k]`` it reads only the events in ``[c[k-1], c[k])`` and
folds them into the state (one SQL query per table, time bounds written out). Windowed
counts (orders in the last 30/90/365 days, touches and channels in the last 30/90 days)
slide: an event is added when it enters a window and taken away when it leaves it.
Complaints, a small table, are aggregated directly at each cutoff. A single cutoff is one
pass over its history; twelve monthly cutoffs read the history once, not twelve times
(first copied into DuckDB sorted by time and keyed by an integer per customer, so each
span is found from block min/max values).

Inputs: validated tables (``features.contract``) as pandas frames, or paths to validated
Parquet files (DuckDB reads them directly, so the tables never have to fit in pandas).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import btyd
from features.catalogue import BY_NAME
from features.config import FeatureConfig

KEYS = ["customer_id", "cutoff"]
STATIC_ATTRIBUTES = ("segment", "acquisition_channel", "region")
ORDER_WINDOWS = (30, 90, 365)
INTERACTION_WINDOWS = (30, 90)
CHANNEL_WINDOW = 90
FIRST_DAYS = 100  # Coleman: the first 100 days after the first order
MAX_ATTRIBUTE_LEVELS = 50
# buy-till-you-die inputs at the cutoff, in weeks: repeat order days, age at the last and at
# the cutoff, all from the first order. They ride along in the feature table for the
# Pareto/NBD baseline; they are not model features.
BTYD_INPUTS = ("btyd_x", "btyd_t_x", "btyd_T")

# Each input table as the engine reads it: canonical names, only the columns it needs.
# Orders with status 'cancelled' never happened as far as every feature is concerned.
_VIEWS = {
    "orders": "SELECT customer_id, ordered_at AS t, amount, {returned} AS returned FROM {src} WHERE {counted}",
    "interactions": "SELECT customer_id, occurred_at AS t, direction = 'outbound' AS outbound, channel FROM {src}",
    "nps": "SELECT customer_id, answered_at AS t, score FROM {src}",
    "complaints": "SELECT customer_id, opened_at, resolved_at, {severity} AS severity, {public} AS public FROM {src}",
    "cancellations": "SELECT customer_id, cancelled_at AS t FROM {src}",
    "customers": "SELECT * FROM {src}",
}

Source = pd.DataFrame | str | Path


def is_contractual(tables: Mapping[str, Source]) -> bool:
    """A business with a cancellations table ends relationships by cancellation."""
    return "cancellations" in tables


def _days(later: str, earlier: str) -> str:
    return f"((epoch({later}) - epoch({earlier})) / 86400.0)"


def _lit(ts: pd.Timestamp) -> str:
    return f"TIMESTAMP '{pd.Timestamp(ts).isoformat(sep=' ')}'"


def _ts(values) -> pd.Series:
    return pd.Series(pd.to_datetime(values)).astype("datetime64[us]")


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def parquet_sql(path: str | Path) -> str:
    """DuckDB's reader of a Parquet file (or folder glob) as a SQL table expression."""
    return f"read_parquet({_quote(str(path))})"


class _Engine:
    """A DuckDB connection over the input tables and the per-customer state at one cutoff."""

    def __init__(self, tables: Mapping[str, Source], config: FeatureConfig):
        self.config = config
        self.members: dict[str, str] = {}  # channel name -> SQL list of its raw values
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET preserve_insertion_order = false")
        self.columns: dict[str, list[str]] = {}
        for name, source in tables.items():
            if name in _VIEWS:
                self._register(name, source)
        self.has = set(self.columns)
        self.state_at: pd.Timestamp | None = None
        self.windows: dict[str, list[tuple[str, int, str, str]]] = {}
        self.latest: dict[str, list[tuple[str, str]]] = {}
        self.keyed = False  # customer_id is an integer key (see materialize)
        w = config.bank
        self.bank_lambda = math.log(2) / w.half_life_days
        self._create_state()
        self.set_channels([])

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
            severity="severity" if "severity" in cols else "NULL::VARCHAR",
            public="coalesce(public, FALSE)" if "public" in cols else "FALSE")
        self.con.execute(f"CREATE VIEW {name} AS {sql}")

    # -- the state -------------------------------------------------------------------------
    @property
    def key_type(self) -> str:
        """SQL type of the state tables' customer key: the id itself, or its integer (materialize)."""
        return "INTEGER" if self.keyed else "VARCHAR"

    def _create_state(self) -> None:
        con, key = self.con, self.key_type
        con.execute(f"""CREATE OR REPLACE TEMP TABLE order_state (customer_id {key}, n BIGINT, amount DOUBLE, returns BIGINT,
            order_days BIGINT, first_t TIMESTAMP, last_t TIMESTAMP, last_gap DOUBLE, max_gap DOUBLE)""")
        self._window_table("orders", [(f"{k}_{w}d", w, e, "TRUE") for w in ORDER_WINDOWS for k, e in (("orders", "1"), ("amount", "amount"))]
                           + [("returns_365d", 365, "1", "returned")])
        # touch_state and the interaction windows are created by set_channels (their columns
        # depend on the channels)
        if "nps" in self.has:
            con.execute(f"""CREATE OR REPLACE TEMP TABLE nps_state (customer_id {key}, n BIGINT, last_t TIMESTAMP,
                last_score DOUBLE, prev_score DOUBLE)""")
        if self.bank_supported():
            con.execute(f"CREATE OR REPLACE TEMP TABLE bank_state (customer_id {key}, s DOUBLE)")
        if "cancellations" in self.has:
            con.execute("CREATE OR REPLACE TEMP TABLE first_cancel AS SELECT customer_id, min(t) AS t FROM cancellations GROUP BY ALL")

    def materialize(self, until: pd.Timestamp) -> None:
        """For many cutoffs: copy the history before ``until`` into DuckDB once, sorted by time
        (so each cutoff's slice is found from the blocks' min/max, not by a full scan) and
        keyed by an integer per customer (cheaper joins). Call before ``set_channels``."""
        if self.state_at is not None:
            raise RuntimeError("materialize must come before the first cutoff")
        known = " UNION ".join(f"SELECT customer_id FROM {t}" for t in ("customers", "orders") if t in self.has)
        self.con.execute(f"""CREATE TEMP TABLE ids AS SELECT customer_id AS id, CAST(row_number() OVER (ORDER BY customer_id) AS INTEGER) AS k
                             FROM (SELECT DISTINCT customer_id FROM ({known}))""")
        for name in sorted(self.has):
            if name == "customers":
                order = ""
            else:
                order = "ORDER BY opened_at" if name == "complaints" else "ORDER BY v.t"
            bound = f"WHERE v.t < {_lit(until)}" if name in ("orders", "interactions", "nps") else ""
            self.con.execute(f"""CREATE TEMP TABLE {name}_sorted AS SELECT d.k AS customer_id, v.* EXCLUDE (customer_id)
                                 FROM {name} v JOIN ids d ON d.id = v.customer_id {bound} {order}""")
            self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_sorted")
        self.keyed = True
        self._create_state()
        self.set_channels([])

    def set_channels(self, names: Sequence[str]) -> None:
        """The interaction channels that get their own features; call before the first advance."""
        if self.state_at is not None:
            raise RuntimeError("set_channels must come before the first cutoff")
        if "interactions" not in self.has:
            return
        raw = [r[0] for r in self.con.execute("SELECT DISTINCT channel FROM interactions WHERE channel IS NOT NULL").fetchall()
               ] if names else []  # no scan of the interactions when no channel is asked for
        self.members = {name: ", ".join(_quote(ch) for ch in raw if _safe_name(ch) == name) or "NULL" for name in sorted(names)}
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE touch_state (customer_id {self.key_type}, n_out BIGINT, n_in BIGINT,
            last_out TIMESTAMP, last_in TIMESTAMP, first_out TIMESTAMP, out_first_days BIGINT,
            silence_from TIMESTAMP, silence_max DOUBLE)""")
        touches = [(f"{d}bound_{w}d", w, "1", "outbound" if d == "out" else "NOT outbound")
                   for d in ("out", "in") for w in INTERACTION_WINDOWS]
        touches += [(f"channel_{n}_{CHANNEL_WINDOW}d", CHANNEL_WINDOW, "1", f"channel IN ({m})") for n, m in self.members.items()]
        # the last event on each channel: only ever read while the channel's window count is
        # positive, and then that event is inside the window, so it is taken from the events
        # entering the window (not from the whole history)
        self._window_table("interactions", touches, [(n, f"channel IN ({m})") for n, m in self.members.items()])

    def _window_table(self, table: str, cols: list[tuple[str, int, str, str]],
                      latest: list[tuple[str, str]] = ()) -> None:
        """Windowed sums of ``table``: (column, window days, expression summed, condition);
        ``latest`` (interactions only: its conditions are on ``channel``): (name, condition) of
        the times ``last_<name>`` of the latest matching event that entered a window."""
        self.windows[table] = cols
        self.latest[table] = list(latest)
        types = ", ".join([f"{name} {'BIGINT' if expr == '1' else 'DOUBLE'}" for name, _w, expr, _c in cols]
                          + [f"last_{name} TIMESTAMP" for name, _c in latest])
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table}_window (customer_id {self.key_type}, {types})")

    def _advance_windows(self, table: str, start: pd.Timestamp | None, cutoff: pd.Timestamp) -> None:
        """Slide the windowed sums from [start - w, start) to [cutoff - w, cutoff): add the
        events of [max(start, cutoff - w), cutoff), take away those of [start - w,
        min(start, cutoff - w)). Each event is read when it enters a window and when it
        leaves it, never once per cutoff. Customers whose sums are all zero are dropped."""
        cols = self.windows.get(table)
        if not cols:
            return
        c = _lit(cutoff)
        widest = max(w for _n, w, _e, _c in cols)
        low = f"{c} - INTERVAL {widest} DAY"
        if start is not None:
            low = f"greatest({_lit(start)}, {low})"
        slices = [f"SELECT *, 1 AS sign, 0 AS w FROM {table} WHERE t >= {low} AND t < {c}"]
        if start is not None:
            for w in sorted({w for _n, w, _e, _c in cols}):
                slices.append(f"SELECT *, -1, {w} FROM {table} WHERE t >= {_lit(start)} - INTERVAL {w} DAY "
                              f"AND t < least({_lit(start)}, {c} - INTERVAL {w} DAY)")
        # in_<w>: +1 for an event entering window w, -1 for one leaving it, 0 otherwise
        weights = ", ".join(f"CASE WHEN w = {w} OR (w = 0 AND t >= {c} - INTERVAL {w} DAY) THEN sign ELSE 0 END AS in_{w}"
                            for w in sorted({w for _n, w, _e, _c in cols}))
        sums = ", ".join(f"sum({expr} * in_{w}) FILTER (WHERE {cond}) AS {name}" for name, w, expr, cond in cols)
        latest = self.latest.get(table, [])
        merged = ", ".join([f"coalesce(s.{name}, 0) + coalesce(d.{name}, 0) AS {name}" for name, _w, _e, _c in cols]
                           + [f"greatest(s.last_{name}, m.last_{name}) AS last_{name}" for name, _c in latest])
        latest_join = ""
        if latest:  # the latest entering event per channel: first per raw value, then per name
            per_name = ", ".join(f"max(t) FILTER (WHERE {cond}) AS last_{name}" for name, cond in latest)
            self.con.execute(f"""CREATE OR REPLACE TEMP TABLE {table}_latest AS
                SELECT customer_id, {per_name} FROM (
                    SELECT customer_id, channel, max(t) AS t FROM {table} WHERE t >= {low} AND t < {c} GROUP BY ALL
                ) GROUP BY customer_id""")
            latest_join = f"LEFT JOIN {table}_latest m USING (customer_id)"
        nonzero = " OR ".join(f"{name} <> 0" for name, _w, _e, _c in cols)
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE {table}_delta AS
            SELECT customer_id, {sums} FROM (SELECT *, {weights} FROM ({' UNION ALL '.join(slices)})) GROUP BY customer_id""")
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {table}_window AS
            SELECT * FROM (SELECT customer_id, {merged} FROM {table}_window s FULL OUTER JOIN {table}_delta d USING (customer_id)
                           {latest_join})
            WHERE {nonzero}
        """)

    def bank_supported(self) -> bool:
        return bool(self.has & {"interactions", "nps", "complaints"})

    def advance(self, cutoff: pd.Timestamp, *, orders_only: bool = False) -> None:
        """Fold the events in [previous cutoff, cutoff) into the state: afterwards the state
        describes every customer as of ``cutoff`` (facts strictly before it)."""
        cutoff = pd.Timestamp(cutoff)
        if self.state_at is not None and cutoff < self.state_at:
            raise ValueError("cutoffs must be visited in increasing order")
        start = self.state_at

        def span(col: str = "t") -> str:
            return (f"{col} >= {_lit(start)} AND " if start is not None else "") + f"{col} < {_lit(cutoff)}"

        self._advance_orders(span)
        if not orders_only:
            self._advance_windows("orders", start, cutoff)
            if "interactions" in self.has:
                self._advance_touches(span)
                self._advance_windows("interactions", start, cutoff)
            if "nps" in self.has:
                self._advance_nps(span)
            if self.bank_supported():
                self._advance_bank(span, start, cutoff)
        self.state_at = cutoff

    def _advance_orders(self, span) -> None:
        # orders at one timestamp form one step (ties never split a gap); a step's gap is
        # measured from the previous step, the first one of this span from the state's last order
        gap = _days("s.t", "coalesce(s.prev_t, o.last_t)")
        new_day = "CASE WHEN date_trunc('day', s.t) = date_trunc('day', coalesce(s.prev_t, o.last_t)) THEN 0 ELSE 1 END"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE order_step AS
            WITH steps AS (
                SELECT customer_id, t, count(*) AS n, sum(amount) AS amount, count(*) FILTER (WHERE returned) AS returns
                FROM orders WHERE {span()} GROUP BY customer_id, t
            ), seq AS (SELECT *, lag(t) OVER (PARTITION BY customer_id ORDER BY t) AS prev_t FROM steps)
            SELECT s.customer_id, sum(s.n) AS n, sum(s.amount) AS amount, sum(s.returns) AS returns,
                   sum({new_day}) AS new_days, min(s.t) AS first_t, max(s.t) AS last_t,
                   max({gap}) AS max_gap, arg_max_null({gap}, s.t) AS last_gap
            FROM seq s LEFT JOIN order_state o USING (customer_id) GROUP BY s.customer_id
        """)
        self.con.execute("""
            CREATE OR REPLACE TEMP TABLE order_state AS
            SELECT customer_id,
                coalesce(o.n, 0) + coalesce(i.n, 0) AS n, coalesce(o.amount, 0) + coalesce(i.amount, 0) AS amount,
                coalesce(o.returns, 0) + coalesce(i.returns, 0) AS returns,
                coalesce(o.order_days, 0) + coalesce(i.new_days, 0) AS order_days,
                coalesce(o.first_t, i.first_t) AS first_t, coalesce(i.last_t, o.last_t) AS last_t,
                CASE WHEN i.customer_id IS NULL THEN o.last_gap ELSE i.last_gap END AS last_gap,
                greatest(o.max_gap, i.max_gap) AS max_gap
            FROM order_state o FULL OUTER JOIN order_step i USING (customer_id)
        """)

    def _advance_touches(self, span) -> None:
        """Touch counts and times, the first touch after the first order, and the silence:
        the longest gap with no interaction either way since the last order (a new order
        restarts it). ``order_state`` is already advanced; ``touch_state`` is not yet."""
        last_touch = "greatest(s.last_out, s.last_in)"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE silence_step AS
            WITH since_order AS (
                SELECT i.customer_id, i.t, o.last_t AS since, greatest(o.last_t, {last_touch}) AS before_first
                FROM interactions i JOIN order_state o USING (customer_id) LEFT JOIN touch_state s USING (customer_id)
                WHERE {span('i.t')} AND i.t >= o.last_t
            ), gaps AS (
                SELECT customer_id, since,
                       {_days('t', 'coalesce(lag(t) OVER (PARTITION BY customer_id ORDER BY t), before_first)')} AS gap
                FROM since_order
            )
            SELECT customer_id, any_value(since) AS since, max(gap) AS gap FROM gaps GROUP BY customer_id
        """)
        first_days = f"i.t >= o.first_t AND i.t < o.first_t + INTERVAL {FIRST_DAYS} DAY"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE touch_step AS
            SELECT i.customer_id,
                count(*) FILTER (WHERE i.outbound) AS n_out, count(*) FILTER (WHERE NOT i.outbound) AS n_in,
                max(i.t) FILTER (WHERE i.outbound) AS last_out, max(i.t) FILTER (WHERE NOT i.outbound) AS last_in,
                min(i.t) FILTER (WHERE i.outbound AND i.t >= o.first_t) AS first_out,
                count(*) FILTER (WHERE i.outbound AND {first_days}) AS out_first_days
            FROM interactions i LEFT JOIN order_state o USING (customer_id)
            WHERE {span('i.t')} GROUP BY i.customer_id
        """)
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE touch_state AS
            SELECT customer_id,
                coalesce(s.n_out, 0) + coalesce(i.n_out, 0) AS n_out, coalesce(s.n_in, 0) + coalesce(i.n_in, 0) AS n_in,
                greatest(s.last_out, i.last_out) AS last_out, greatest(s.last_in, i.last_in) AS last_in,
                coalesce(s.first_out, i.first_out) AS first_out,
                coalesce(s.out_first_days, 0) + coalesce(i.out_first_days, 0) AS out_first_days,
                coalesce(g.since, s.silence_from) AS silence_from,
                CASE WHEN g.customer_id IS NULL THEN s.silence_max
                     ELSE greatest(g.gap, CASE WHEN s.silence_from = g.since THEN s.silence_max END) END AS silence_max
            FROM touch_state s FULL OUTER JOIN touch_step i USING (customer_id)
                 LEFT JOIN silence_step g USING (customer_id)
        """)

    def _advance_nps(self, span) -> None:
        # answers at one timestamp form one step (the lower score counts); the change is
        # between the last two steps
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE nps_step AS
            WITH steps AS (SELECT customer_id, t, min(score) AS score, count(*) AS n FROM nps WHERE {span()} GROUP BY ALL)
            SELECT customer_id, sum(n) AS n, max(t) AS last_t, arg_max(score, t, 2) AS last_two FROM steps GROUP BY ALL
        """)
        self.con.execute("""
            CREATE OR REPLACE TEMP TABLE nps_state AS
            SELECT customer_id, coalesce(s.n, 0) + coalesce(i.n, 0) AS n, coalesce(i.last_t, s.last_t) AS last_t,
                CASE WHEN i.customer_id IS NULL THEN s.last_score ELSE i.last_two[1] END AS last_score,
                CASE WHEN i.customer_id IS NULL THEN s.prev_score
                     WHEN len(i.last_two) > 1 THEN i.last_two[2] ELSE s.last_score END AS prev_score
            FROM nps_state s FULL OUTER JOIN nps_step i USING (customer_id)
        """)

    def _advance_bank(self, span, start: pd.Timestamp | None, cutoff: pd.Timestamp) -> None:
        """The emotional bank account's balance at the cutoff, sum of weight * exp(-lambda * age):
        the balance at the previous cutoff decays by exp(-lambda * days between the cutoffs),
        the new events add their own decayed weights (every exponent <= 0: no overflow)."""
        w = self.config.bank
        parts = [f"SELECT customer_id, t, {w.order} AS w FROM orders"]
        if "interactions" in self.has:
            parts.append(f"SELECT customer_id, t, {w.outbound_touch} FROM interactions WHERE outbound")
        if "complaints" in self.has:
            parts.append(f"SELECT customer_id, opened_at, {w.complaint} FROM complaints")
            parts.append(f"SELECT customer_id, resolved_at, {w.resolved_complaint} FROM complaints WHERE resolved_at IS NOT NULL")
        if "nps" in self.has:
            parts.append(f"SELECT customer_id, t, {w.promoter_answer} FROM nps WHERE score >= 9")
            parts.append(f"SELECT customer_id, t, {w.detractor_answer} FROM nps WHERE score <= 6")
        events = " UNION ALL ".join(f"SELECT * FROM ({p}) e(customer_id, t, w) WHERE {span()}" for p in parts)
        lam, c = self.bank_lambda, _lit(cutoff)
        carried = f"exp(-{lam} * {_days(c, _lit(start))})" if start is not None else "0"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE bank_state AS
            WITH step AS (SELECT customer_id, sum(w * exp(-{lam} * {_days(c, 't')})) AS s FROM ({events}) GROUP BY ALL)
            SELECT customer_id, coalesce(b.s, 0) * {carried} + coalesce(i.s, 0) AS s
            FROM bank_state b FULL OUTER JOIN step i USING (customer_id)
        """)

    # -- the population and the labels -------------------------------------------------------
    def population(self, cutoff: pd.Timestamp) -> str:
        """SQL of the clients at ``cutoff`` (the state must be at ``cutoff``)."""
        c = _lit(cutoff)
        if "cancellations" in self.has:
            return f"""SELECT o.customer_id, {c} AS cutoff FROM order_state o LEFT JOIN first_cancel x USING (customer_id)
                       WHERE o.first_t < {c} AND (x.t IS NULL OR x.t >= {c})"""
        window = int(self.config.active_window_days)
        return f"SELECT customer_id, {c} AS cutoff FROM order_state WHERE last_t >= {c} - INTERVAL {window} DAY"

    def labels(self, pop: str, cutoff: pd.Timestamp, horizon_days: int) -> str:
        """SQL adding ``label`` to the population ``pop`` at ``cutoff``: 1 = a cancellation
        (contractual data) or no order (otherwise) in [cutoff, cutoff + horizon]."""
        c, h = _lit(cutoff), int(horizon_days)
        if "cancellations" in self.has:
            return f"""SELECT p.*, CAST(coalesce(x.t <= {c} + INTERVAL {h} DAY, FALSE) AS TINYINT) AS label
                       FROM ({pop}) p LEFT JOIN first_cancel x USING (customer_id)"""
        return f"""SELECT p.*, CAST(b.customer_id IS NULL AS TINYINT) AS label FROM ({pop}) p LEFT JOIN (
                       SELECT DISTINCT customer_id FROM orders WHERE t >= {c} AND t <= {c} + INTERVAL {h} DAY
                   ) b USING (customer_id)"""

    # -- the features at one cutoff -----------------------------------------------------------
    def channels(self, last_cutoff: pd.Timestamp) -> list[str]:
        """Interaction channels (as column-safe names) frequent enough before the latest cutoff
        to get their own features: at least ``channel_min_share`` of interactions, the
        ``max_channels`` most frequent."""
        shares = self.con.execute(f"""
            SELECT channel, count(*) / sum(count(*)) OVER () AS share FROM interactions
            WHERE t < {_lit(last_cutoff)} AND channel IS NOT NULL GROUP BY channel ORDER BY share DESC, channel
        """).df()
        shares["name"] = shares["channel"].map(_safe_name)
        shares = shares[shares["name"] != ""].groupby("name", sort=False)["share"].sum().sort_values(ascending=False, kind="stable")
        return list(shares[shares >= self.config.channel_min_share].head(self.config.max_channels).index)

    def features(self, pop: str, cutoff: pd.Timestamp, attributes: Sequence[str]) -> pa.Table:
        """Every feature of the population ``pop`` (SQL of customer_id, cutoff) at ``cutoff``,
        in the output's column order; the state must be at ``cutoff``."""
        if self.state_at != pd.Timestamp(cutoff):
            raise RuntimeError(f"the state is at {self.state_at}, not at {cutoff}")
        c = _lit(cutoff)
        # one query per feature group, each joining the population to the state it reads and
        # returning rows in the same key order; the groups' columns are put side by side
        # (cheaper than one query carrying every column through every join)
        groups: list[tuple[list[str], list[str]]] = []
        cols: list[str] = []
        joins: list[str] = ["LEFT JOIN orders_window ow USING (customer_id)"]
        groups.append((joins, cols))
        mean_gap = f"CASE WHEN o.n > 1 THEN {_days('o.last_t', 'o.first_t')} / (o.n - 1) END"
        purchases = {
            "days_since_last_order": _days(c, "o.last_t"), "tenure_days": _days(c, "o.first_t"),
            # sums slid in and out of a window: rounded to a millionth against floating-point residue
            **{f"orders_{w}d": f"coalesce(ow.orders_{w}d, 0)" for w in ORDER_WINDOWS},
            **{f"amount_{w}d": f"round(coalesce(ow.amount_{w}d, 0), 6)" for w in ORDER_WINDOWS},
            "orders_total": "o.n", "amount_total": "o.amount", "returns_total": "o.returns",
            "returns_365d": "coalesce(ow.returns_365d, 0)", "last_gap_days": "o.last_gap", "max_gap_days": "o.max_gap",
            "mean_gap_days": mean_gap,
            "overdue_ratio": f"{_days(c, 'o.last_t')} / CASE WHEN ({mean_gap}) > 0 THEN ({mean_gap}) END",
        }
        cols += [f"CAST({expr} AS DOUBLE) AS {name}" for name, expr in purchases.items()]
        category = "NULL"
        first_day, last_day = "date_trunc('day', o.first_t)", "date_trunc('day', o.last_t)"
        cols += ["CAST(o.order_days - 1 AS DOUBLE) AS btyd_x",
                 f"{_days(last_day, first_day)} / 7.0 AS btyd_t_x", f"{_days(c, first_day)} / 7.0 AS btyd_T"]
        if "interactions" in self.has:
            cols, joins = [], ["LEFT JOIN touch_state s USING (customer_id) LEFT JOIN interactions_window iw USING (customer_id)"]
            groups.append((joins, cols))
            first_days_over = f"o.first_t + INTERVAL {FIRST_DAYS} DAY <= {c}"
            attention = {
                "days_to_first_outbound": f"CASE WHEN s.first_out < {c} THEN {_days('s.first_out', 'o.first_t')} ELSE {_days(c, 'o.first_t')} END",
                "first_outbound_observed": f"coalesce(s.first_out < {c}, FALSE)",
                "outbound_first_100d": f"CASE WHEN {first_days_over} THEN coalesce(s.out_first_days, 0) END",
                "first_100d_observed": first_days_over,
                "longest_silence_days": f"""greatest(coalesce(CASE WHEN s.silence_from = o.last_t THEN s.silence_max END, 0),
                                                     {_days(c, 'greatest(o.last_t, s.last_out, s.last_in)')})""",
                "days_since_last_outbound": _days(c, "s.last_out"), "days_since_last_inbound": _days(c, "s.last_in"),
                "days_since_last_contact": _days(c, "greatest(s.last_out, s.last_in)"),
                **{f"{d}bound_{w}d": f"coalesce(iw.{d}bound_{w}d, 0)" for d in ("out", "in") for w in INTERACTION_WINDOWS},
                "outbound_total": "coalesce(s.n_out, 0)", "inbound_total": "coalesce(s.n_in, 0)",
            }
            cols += [f"CAST({expr} AS DOUBLE) AS {name}" for name, expr in attention.items()]
            for name in self.members:
                count = f"coalesce(iw.channel_{name}_{CHANNEL_WINDOW}d, 0)"
                cols.append(f"CAST({count} AS DOUBLE) AS channel_{name}_{CHANNEL_WINDOW}d")
                # the last event on the channel is inside the window exactly when the window counts one
                cols.append(f"CASE WHEN {count} > 0 THEN {_days(c, f'iw.last_{name}')} END AS days_since_{name}_{CHANNEL_WINDOW}d")
        cols, joins = [], []
        groups.append((joins, cols))
        if "nps" in self.has:
            joins.append("LEFT JOIN nps_state n USING (customer_id)")
            category = ("CASE WHEN n.last_score >= 9 THEN 'promoter' WHEN n.last_score >= 7 THEN 'passive' "
                        "WHEN n.last_score <= 6 THEN 'detractor' ELSE 'none' END")
            cols += ["CAST(n.last_score AS DOUBLE) AS nps_last_score", f"{category} AS nps_last_category",
                     "CAST(n.last_score - n.prev_score AS DOUBLE) AS nps_change",
                     f"{_days(c, 'n.last_t')} AS days_since_last_nps", "CAST(coalesce(n.n, 0) AS DOUBLE) AS nps_answers",
                     "CAST(n.n IS NULL AS DOUBLE) AS nps_never_answered"]
        regular = "coalesce(o.n >= 2, FALSE)"
        promoter = f"coalesce(({category}) = 'promoter', FALSE)"
        tenure = _days(c, "o.first_t")
        cols.append(f"CASE WHEN {regular} AND {promoter} THEN 'adherent' WHEN {regular} THEN 'regular' ELSE 'buyer' END AS lifecycle_stage")
        cols.append(f"""CASE WHEN {tenure} < 2 THEN 'admit' WHEN {tenure} < 14 THEN 'affirm' WHEN {tenure} < 30 THEN 'activate'
                             WHEN {tenure} < 100 THEN 'acclimate' WHEN NOT {regular} THEN 'accomplish'
                             WHEN NOT {promoter} THEN 'adopt' ELSE 'advocate' END AS coleman_phase""")
        cols, joins = [], []
        groups.append((joins, cols))
        open_days = "0"
        if "complaints" in self.has:
            is_open = f"(resolved_at IS NULL OR resolved_at >= {c})"
            windows = ", ".join(f"count(*) FILTER (WHERE opened_at >= {c} - INTERVAL {w} DAY) AS complaints_{w}d"
                                for w in ORDER_WINDOWS)
            joins.append(f"""LEFT JOIN (
                SELECT customer_id, count(*) AS complaints_total, {windows},
                    count(*) FILTER (WHERE {is_open}) AS complaints_open,
                    {_days(c, f'min(opened_at) FILTER (WHERE {is_open})')} AS oldest_open_complaint_days,
                    sum({_days(c, 'opened_at')}) FILTER (WHERE {is_open}) AS open_complaint_days,
                    avg({_days('resolved_at', 'opened_at')}) FILTER (WHERE NOT {is_open}) AS mean_days_to_resolve,
                    arg_max(severity, opened_at) AS last_complaint_severity,
                    count(*) FILTER (WHERE public AND opened_at >= {c} - INTERVAL 365 DAY) AS public_complaints_365d,
                    {_days(c, 'max(opened_at)')} AS days_since_last_complaint,
                    min(resolved_at) FILTER (WHERE NOT {is_open}) AS first_resolved_at
                FROM complaints WHERE opened_at < {c} GROUP BY ALL) k USING (customer_id)""")
            open_days = "coalesce(k.open_complaint_days, 0)"
            complaints = {
                **{f"complaints_{w}d": f"coalesce(k.complaints_{w}d, 0)" for w in ORDER_WINDOWS},
                "complaints_total": "coalesce(k.complaints_total, 0)", "complaints_open": "coalesce(k.complaints_open, 0)",
                "oldest_open_complaint_days": "k.oldest_open_complaint_days", "open_complaint_days": open_days,
                "mean_days_to_resolve": "k.mean_days_to_resolve",
            }
            cols += [f"CAST({expr} AS DOUBLE) AS {name}" for name, expr in complaints.items()]
            if "severity" in self.columns["complaints"]:
                cols.append("k.last_complaint_severity")
            if "public" in self.columns["complaints"]:
                cols.append("CAST(coalesce(k.public_complaints_365d, 0) AS DOUBLE) AS public_complaints_365d")
            cols += ["CAST(k.days_since_last_complaint AS DOUBLE) AS days_since_last_complaint",
                     "CAST(coalesce(k.first_resolved_at < o.last_t, FALSE) AS DOUBLE) AS recovered_after_complaint"]
        if self.bank_supported():
            joins.append("LEFT JOIN bank_state b USING (customer_id)")
            cols.append(f"coalesce(b.s, 0) - {self.config.bank.open_complaint_day} * {open_days} AS bank_balance")
        if attributes:
            groups.append((["LEFT JOIN attributes a USING (customer_id)"], [f'a."{name}"' for name in attributes]))
        # back from the integer key to the customer's id (keys are numbered in id order)
        key = ["JOIN ids ON ids.k = p.customer_id"] if self.keyed else []
        labelled = "label" in [r[0] for r in self.con.execute(f"DESCRIBE {pop}").fetchall()]
        groups.insert(0, (key, [f"{'ids.id' if self.keyed else 'p.customer_id'} AS customer_id",
                                "CAST(p.cutoff AS TIMESTAMP) AS cutoff"] + (["p.label"] if labelled else [])))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE pop_now AS {pop}")
        arrays, names = [], []
        for joins, cols in groups:
            if not cols:
                continue
            select = ", ".join(cols)
            orders = "LEFT JOIN order_state o USING (customer_id)" if re.search(r"\bo\.", select) else ""
            part = self.con.sql(f"""SELECT {select} FROM pop_now p {orders} {' '.join(joins)}
                                    ORDER BY p.customer_id""").to_arrow_table()
            arrays += part.columns
            names += part.column_names
        return pa.Table.from_arrays(arrays, names=names)


def _safe_name(value: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in str(value).strip().lower()).strip("_")
    return cleaned[:30]


# -- public API ----------------------------------------------------------------------------

def skipped_groups(tables: Mapping[str, Source]) -> dict[str, str]:
    """Feature groups the data cannot support, with the reason (for the run's log)."""
    skipped = {}
    if "interactions" not in tables:
        skipped["attention"] = "no interactions table: no touches, silence or channel activity"
    if "nps" not in tables:
        skipped["nps"] = "no nps table"
    if "complaints" not in tables:
        skipped["complaints"] = "no complaints table"
    if not any(t in tables for t in ("interactions", "nps", "complaints")):
        skipped["bank"] = "only orders: the emotional bank account would be a decayed order count"
    customers = tables.get("customers")
    if customers is None or not (set(_columns(customers)) - {"customer_id", "created_at"}):
        skipped["attributes"] = "no customer attributes (segment, acquisition_channel, region ...)"
    return skipped


def _columns(source: Source) -> list[str]:
    if isinstance(source, (str, Path)):
        return [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {parquet_sql(source)}").fetchall()]
    return list(source.columns)


def build_population(tables: Mapping[str, Source], cutoffs: Iterable[pd.Timestamp], *,
                     active_window_days: int = 365, horizon_days: int | None = None) -> pd.DataFrame:
    """Customers who are clients at each cutoff: frame (customer_id, cutoff), sorted; with
    ``horizon_days``, also their ``label`` (see ``features.labels``)."""
    # the population and the labels read orders and cancellations only
    needed = {k: v for k, v in tables.items() if k in ("orders", "cancellations")}
    engine = _Engine(needed, FeatureConfig(active_window_days=active_window_days, btyd=False))
    parts = []
    cutoffs = sorted(set(pd.to_datetime(list(cutoffs))))
    try:
        if len(cutoffs) > 1:  # the labels read orders up to the end of the last window
            engine.materialize(max(cutoffs) + pd.Timedelta(days=(horizon_days or 0) + 1))
        for cutoff in cutoffs:
            engine.advance(cutoff, orders_only=True)
            sql = engine.population(cutoff)
            if horizon_days is not None:
                sql = engine.labels(sql, cutoff, horizon_days)
            if engine.keyed:
                sql = f"SELECT ids.id AS customer_id, q.* EXCLUDE (customer_id) FROM ({sql}) q JOIN ids ON ids.k = q.customer_id"
            parts.append(engine.con.sql(f"SELECT * FROM ({sql}) ORDER BY customer_id").to_arrow_table())
    finally:
        engine.close()
    if not parts:
        return pd.DataFrame({"customer_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[us]")})
    out = pa.concat_tables(parts).to_pandas()
    return out.assign(customer_id=out["customer_id"].astype("str"), cutoff=_ts(out["cutoff"]).to_numpy())


def nps_category(score: pd.Series) -> pd.Series:
    """promoter (9-10), passive (7-8), detractor (0-6), none (never answered)."""
    s = pd.to_numeric(score).astype("float64").to_numpy()
    return pd.Series(np.select([s >= 9, s >= 7, s <= 6], ["promoter", "passive", "detractor"], "none"),
                     index=score.index)


def _btyd_features(frame: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """BG/NBD fitted per cutoff on that cutoff's own history, applied to every client."""
    horizon_weeks = config.btyd_horizon_days / 7.0
    out = {name: np.full(len(frame), np.nan) for name in ("btyd_p_no_order", "btyd_expected_orders", "btyd_p_alive")}
    for _cutoff, rows in frame.groupby("cutoff", sort=True).indices.items():
        x, t_x, T = (frame[c].to_numpy(dtype=float)[rows] for c in ("btyd_x", "btyd_t_x", "btyd_T"))
        params = btyd.fit_bgnbd(x, t_x, T, sample=config.btyd_sample)
        out["btyd_p_no_order"][rows] = btyd.p_no_purchase(params, x, t_x, T, horizon_weeks)
        out["btyd_expected_orders"][rows] = btyd.expected_purchases(params, x, t_x, T, horizon_weeks)
        out["btyd_p_alive"][rows] = btyd.p_alive(params, x, t_x, T)
    return pd.DataFrame(out, index=frame.index)


def build_features(tables: Mapping[str, Source], cutoffs: Iterable[pd.Timestamp], *,
                   config: FeatureConfig | None = None, active_window_days: int | None = None,
                   population: pd.DataFrame | None = None, channels: Sequence[str] | None = None,
                   label_horizon_days: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Features of every client in the population at each cutoff.

    ``tables``: validated input tables (``features.contract``) as frames or paths to Parquet
    files; only ``orders`` is required. ``population``: optional (customer_id, cutoff) frame
    to compute features for (default: the clients at each cutoff, ``build_population``).
    ``channels``: interaction channels that get their own features (default: chosen from the
    data before the latest cutoff; pass the model's list when scoring). Returns one row per
    (customer_id, cutoff), sorted by cutoff then customer, with the catalogue's columns that
    the data supports. Reads only facts strictly before each cutoff. With
    ``label_horizon_days`` (and no ``population``), also each client's ``label`` (see
    ``features.labels``: use ``build_training_set`` there, which keeps only the cutoffs whose
    label window is observed), computed in the same pass.
    """
    config = config or FeatureConfig()
    if active_window_days is not None:
        config = config.model_copy(update={"active_window_days": active_window_days})
    cutoffs = sorted(set(pd.to_datetime(list(cutoffs))))
    engine = _Engine(tables, config)
    try:
        if population is not None:
            wanted = pd.DataFrame({"customer_id": population["customer_id"].astype("str"),
                                   "cutoff": _ts(population["cutoff"]).to_numpy()})
            engine.con.register("wanted_ids", wanted)
            _check_known(engine)
            cutoffs = sorted(set(pd.to_datetime(wanted["cutoff"].unique())))
        if population is not None and label_horizon_days is not None:
            raise ValueError("label_horizon_days labels the clients at each cutoff: leave population out")
        if len(cutoffs) > 1:  # labels read the orders up to the end of the last label window
            engine.materialize(max(cutoffs) + pd.Timedelta(days=(label_horizon_days or 0) + 1))
        if population is not None:
            key = "ids.k" if engine.keyed else "w.customer_id"
            join = "JOIN ids ON ids.id = w.customer_id" if engine.keyed else ""
            engine.con.execute(f"CREATE TEMP TABLE wanted AS SELECT DISTINCT {key} AS customer_id, w.cutoff FROM wanted_ids w {join}")
        attributes = _register_attributes(engine, tables.get("customers"))
        if "interactions" in engine.has and cutoffs:
            engine.set_channels(list(channels) if channels is not None else engine.channels(max(cutoffs)))
        parts = []
        for cutoff in _progress(cutoffs, progress):
            engine.advance(cutoff)
            pop = (f"SELECT customer_id, cutoff FROM wanted WHERE cutoff = {_lit(cutoff)}"
                   if population is not None else engine.population(cutoff))
            if label_horizon_days is not None:
                pop = engine.labels(pop, cutoff, label_horizon_days)
            parts.append(engine.features(pop, cutoff, attributes))
    finally:
        engine.close()
    return _finish(parts, config, attributes)


def _progress(cutoffs: Sequence[pd.Timestamp], show: bool):
    if not show or len(cutoffs) < 2:
        return cutoffs
    from rich.progress import track

    return track(cutoffs, description="features by cutoff")


def _check_known(engine: _Engine) -> None:
    known = " UNION ALL ".join(f"SELECT customer_id FROM {t}" for t in ("customers", "orders") if t in engine.has)
    unknown = engine.con.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT customer_id FROM wanted_ids) w ANTI JOIN ({known}) k USING (customer_id)"
    ).fetchone()[0]
    if unknown:
        raise ValueError(f"population holds {unknown} customer_ids that are in neither customers nor orders")


def _register_attributes(engine: _Engine, customers: Source | None) -> list[str]:
    """Static attributes: segment, acquisition_channel, region, and other low-cardinality or
    numeric customer columns (named ``attr_<column>``). Registered as ``attributes``."""
    if customers is None:
        return []
    con = engine.con
    cols = {"customer_id": "customer_id"}
    for col, dtype in con.execute("SELECT column_name, column_type FROM (DESCRIBE customers)").fetchall():
        if col in ("customer_id", "created_at"):
            continue
        name = col if col in STATIC_ATTRIBUTES else f"attr_{_safe_name(col)}"
        quoted = '"' + col.replace('"', '""') + '"'
        if dtype in ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE") or dtype.startswith("DECIMAL"):
            cols[name] = f"CAST({quoted} AS DOUBLE)"
        elif dtype.startswith(("TIMESTAMP", "DATE")):
            continue
        elif con.execute(f"SELECT count(DISTINCT {quoted}) FROM customers").fetchone()[0] <= MAX_ATTRIBUTE_LEVELS:
            cols[name] = f"CAST({quoted} AS VARCHAR)"
    select = ", ".join(f'{expr} AS "{name}"' for name, expr in cols.items())
    con.execute(f"CREATE TEMP TABLE attributes AS SELECT {select} FROM customers")
    return [name for name in cols if name != "customer_id"]


def _finish(parts: list[pa.Table], config: FeatureConfig, attributes: Sequence[str]) -> pd.DataFrame:
    """One frame from the cutoffs' Arrow tables: categories, float64 numbers, BG/NBD summaries,
    catalogue column order."""
    if not parts:
        return pd.DataFrame({"customer_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[us]")})
    table = pa.concat_tables(parts)
    del parts[:]
    # column by column (much faster than Table.to_pandas on many chunks): numbers as float64
    # numpy arrays (missing = NaN), text features as categories with sorted levels
    data = {}
    for name in table.column_names:
        column = table.column(0)
        table = table.remove_column(0)  # frees each Arrow column once converted
        if name == "customer_id":
            data[name] = column.to_pandas().astype("str")
        elif name == "cutoff":
            data[name] = column.to_numpy().astype("datetime64[us]")
        elif name == "label":
            data[name] = column.to_numpy().astype("int8")
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type):
            values = pc.dictionary_encode(column.cast(pa.string())).to_pandas()
            data[name] = values.cat.reorder_categories(sorted(values.cat.categories))
        else:
            data[name] = column.to_numpy(zero_copy_only=False).astype("float64", copy=False)
    out = pd.DataFrame(data, copy=False)
    del data
    if config.btyd:  # the same columns whether or not a cutoff has clients
        btyd_cols = _btyd_features(out, config)
        for name in btyd_cols.columns:
            out[name] = btyd_cols[name]
    feature_cols = [name for name in BY_NAME if name in out.columns]
    dynamic = sorted(c for c in out.columns if c.startswith(("channel_", "days_since_")) and c not in BY_NAME
                     and c.endswith(f"_{CHANNEL_WINDOW}d"))
    ordered = (KEYS + (["label"] if "label" in out.columns else []) + feature_cols + dynamic + [c for c in attributes if c not in feature_cols]
               + [c for c in BTYD_INPUTS if c in out.columns])
    return out[ordered]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a feature table: everything but the keys, the label and
    the buy-till-you-die inputs (kept for the baselines)."""
    return [c for c in frame.columns if c not in (*KEYS, "label", *BTYD_INPUTS)]


def channel_list(feature_names: Iterable[str]) -> list[str]:
    """The channels a model was trained with, from its ``channel_<name>_90d`` columns (pass to
    ``build_features(channels=...)`` when scoring)."""
    return [c[len("channel_"):-len("_90d")] for c in feature_names if c.startswith("channel_") and c.endswith("_90d")]
