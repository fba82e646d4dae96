"""Point-in-time features and the population at each cutoff, computed with DuckDB.

Time semantics, held everywhere:
- a feature at cutoff ``c`` reads only facts strictly before ``c``: an order, NPS answer,
  interaction or complaint stamped at or after ``c`` does not exist yet; a complaint
  opened before ``c`` and resolved at or after ``c`` is open at ``c``;
- the population at ``c``: customers with at least one order before ``c`` who are still
  clients at ``c``: no cancellation before ``c`` when the data has cancellations
  (a contractual business), otherwise an order within ``active_window_days`` before ``c``.

Engine: the history is read and grouped once, whatever the number of cutoffs. Each event
table becomes a per-customer running summary (cumulative counts, sums, last gap ...) keyed
by event time; a feature at ``c`` is the summary of the last event strictly before ``c``
(a DuckDB ``ASOF JOIN ... ON cutoff > event_time``), and a windowed count is the difference
of two such lookups (before ``c`` and before ``c - window``). Small tables (complaints) are
joined directly. One query per feature group, time bounds written out.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

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
MAX_ATTRIBUTE_LEVELS = 50
# buy-till-you-die inputs at the cutoff, in weeks: repeat order days, age at the last and at
# the cutoff, all from the first order. They ride along in the feature table for the
# Pareto/NBD baseline; they are not model features.
BTYD_INPUTS = ("btyd_x", "btyd_t_x", "btyd_T")


def is_contractual(tables: dict[str, pd.DataFrame]) -> bool:
    """A business with a cancellations table ends relationships by cancellation."""
    return "cancellations" in tables


def _days(later: str, earlier: str) -> str:
    return f"((epoch({later}) - epoch({earlier})) / 86400.0)"


def _ts(values) -> pd.Series:
    return pd.Series(pd.to_datetime(values)).astype("datetime64[us]")


class _Engine:
    """A DuckDB connection holding the encoded event tables and their running summaries."""

    def __init__(self, tables: dict[str, pd.DataFrame], config: FeatureConfig):
        self.tables = tables
        self.config = config
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET preserve_insertion_order = false")
        ids = [_arrow(tables[t]["customer_id"]) for t in tables if "customer_id" in tables[t].columns]
        self.id_values = pc.unique(pa.chunked_array(ids, type=pa.string())) if ids else pa.array([], pa.string())
        self.ids = pd.Index(self.id_values.to_pandas(), dtype="str")
        for name, frame in tables.items():
            self._register(name, frame)
        self._summaries()

    def close(self) -> None:
        self.con.close()

    def encode(self, customer_id: pd.Series) -> np.ndarray:
        """Customer ids as int32 positions in ``ids`` (-1 when unknown), via Arrow's hash kernel."""
        codes = pc.index_in(_arrow(customer_id), value_set=self.id_values)
        return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype("int32")

    def _register(self, name: str, frame: pd.DataFrame) -> None:
        keep = {
            "orders": ["ordered_at", "amount", "status"], "interactions": ["occurred_at", "channel", "direction"],
            "nps": ["answered_at", "score"], "complaints": ["opened_at", "resolved_at", "severity", "public"],
            "cancellations": ["cancelled_at"], "customers": [],
        }.get(name)
        if keep is None:
            return
        cols = {"cid": pa.array(self.encode(frame["customer_id"]))}
        for col in keep:
            if col in frame.columns:
                cols[col] = _arrow(frame[col])
        self.con.register(f"raw_{name}", pa.table(cols))

    def _summaries(self) -> None:
        """Running per-customer summaries of each event table, computed once."""
        con, t = self.con, self.tables
        status = "status IS DISTINCT FROM 'cancelled'" if "status" in t["orders"].columns else "TRUE"
        returned = "count(*) FILTER (WHERE status = 'returned')" if "status" in t["orders"].columns else "0"
        # orders collapsed to one row per (customer, timestamp) so ties never split an ASOF match
        con.execute(f"""
            CREATE TEMP TABLE order_steps AS
            WITH per_time AS (
                SELECT cid, ordered_at AS t, count(*) AS n, sum(amount) AS amount, {returned} AS returns
                FROM raw_orders WHERE {status} GROUP BY cid, ordered_at
            ), gaps AS (
                SELECT *, {_days('t', 'lag(t) OVER w')} AS gap_days,
                       CASE WHEN date_trunc('day', t) = date_trunc('day', lag(t) OVER w) THEN 0 ELSE 1 END AS new_day
                FROM per_time WINDOW w AS (PARTITION BY cid ORDER BY t)
            )
            SELECT cid, t, gap_days,
                sum(n) OVER w AS cum_orders, sum(amount) OVER w AS cum_amount, sum(returns) OVER w AS cum_returns,
                sum(new_day) OVER w AS cum_order_days, max(gap_days) OVER w AS max_gap_days,
                min(t) OVER w AS first_order_at
            FROM gaps WINDOW w AS (PARTITION BY cid ORDER BY t ROWS UNBOUNDED PRECEDING)
        """)
        con.execute("CREATE TEMP TABLE first_orders AS SELECT cid, min(t) AS first_order_at FROM order_steps GROUP BY cid")
        if "cancellations" in t:
            con.execute("CREATE TEMP TABLE first_cancel AS SELECT cid, min(cancelled_at) AS cancelled_at FROM raw_cancellations GROUP BY cid")
        if "interactions" in t:
            for direction in ("outbound", "inbound"):
                con.execute(f"""
                    CREATE TEMP TABLE {direction}_steps AS
                    WITH per_time AS (
                        SELECT cid, occurred_at AS t, count(*) AS n FROM raw_interactions
                        WHERE direction = '{direction}' GROUP BY cid, occurred_at
                    )
                    SELECT cid, t, sum(n) OVER (PARTITION BY cid ORDER BY t ROWS UNBOUNDED PRECEDING) AS cum_n
                    FROM per_time
                """)
            # the company's first outbound touch at or after the customer's first order
            con.execute("""
                CREATE TEMP TABLE first_touch AS
                SELECT f.cid, f.first_order_at, min(o.t) AS first_outbound_at,
                       count(o.t) FILTER (WHERE o.t < f.first_order_at + INTERVAL 100 DAY) AS outbound_first_100d
                FROM first_orders f LEFT JOIN outbound_steps_raw o ON o.cid = f.cid AND o.t >= f.first_order_at
                GROUP BY f.cid, f.first_order_at
            """.replace("outbound_steps_raw",
                        "(SELECT cid, occurred_at AS t FROM raw_interactions WHERE direction = 'outbound')"))
            # silence: gaps between consecutive events of either kind, restarted at every order
            con.execute(f"""
                CREATE TEMP TABLE silence_steps AS
                WITH stream AS (
                    SELECT cid, t, max(is_order) AS is_order FROM (
                        SELECT cid, ordered_at AS t, 1 AS is_order FROM raw_orders WHERE {status}
                        UNION ALL SELECT cid, occurred_at, 0 FROM raw_interactions
                    ) GROUP BY cid, t
                ), segmented AS (
                    SELECT *, sum(is_order) OVER w AS segment,
                           CASE WHEN is_order = 1 THEN 0 ELSE {_days('t', 'lag(t) OVER w')} END AS gap
                    FROM stream WINDOW w AS (PARTITION BY cid ORDER BY t ROWS UNBOUNDED PRECEDING)
                )
                SELECT cid, t, max(gap) OVER (PARTITION BY cid, segment ORDER BY t ROWS UNBOUNDED PRECEDING) AS seg_max_gap
                FROM segmented WHERE segment > 0
            """)
        if "nps" in t:
            con.execute("""
                CREATE TEMP TABLE nps_steps AS
                WITH per_time AS (SELECT cid, answered_at AS t, min(score) AS score, count(*) AS n
                                  FROM raw_nps GROUP BY cid, answered_at)
                SELECT cid, t, score AS last_score, lag(score) OVER w AS prev_score,
                       sum(n) OVER (PARTITION BY cid ORDER BY t ROWS UNBOUNDED PRECEDING) AS cum_answers
                FROM per_time WINDOW w AS (PARTITION BY cid ORDER BY t)
            """)
        self._bank_steps()

    def bank_supported(self) -> bool:
        return any(name in self.tables for name in ("interactions", "nps", "complaints"))

    def _bank_steps(self) -> None:
        """Cumulative sum of weight * exp(lambda * (t - t0)): the decayed balance at any c is
        exp(-lambda * (c - t0)) times the running sum at the last event before c."""
        if not self.bank_supported():
            return
        w = self.config.bank
        status = "status IS DISTINCT FROM 'cancelled'" if "status" in self.tables["orders"].columns else "TRUE"
        parts = [f"SELECT cid, ordered_at AS t, {w.order} AS w FROM raw_orders WHERE {status}"]
        if "interactions" in self.tables:
            parts.append(f"SELECT cid, occurred_at, {w.outbound_touch} FROM raw_interactions WHERE direction = 'outbound'")
        if "complaints" in self.tables:
            parts.append(f"SELECT cid, opened_at, {w.complaint} FROM raw_complaints")
            parts.append(f"SELECT cid, resolved_at, {w.resolved_complaint} FROM raw_complaints WHERE resolved_at IS NOT NULL")
        if "nps" in self.tables:
            parts.append(f"SELECT cid, answered_at, {w.promoter_answer} FROM raw_nps WHERE score >= 9")
            parts.append(f"SELECT cid, answered_at, {w.detractor_answer} FROM raw_nps WHERE score <= 6")
        union = " UNION ALL ".join(parts)
        t0 = self.con.execute(f"SELECT min(t) FROM ({union})").fetchone()[0]
        span_days = self.con.execute(f"SELECT {_days('max(t)', 'min(t)')} FROM ({union})").fetchone()[0] or 0.0
        self.bank_lambda = math.log(2) / w.half_life_days
        if span_days * self.bank_lambda > 600:
            raise ValueError(f"bank.half_life_days={w.half_life_days} is too short for a history of {span_days:.0f} days")
        self.bank_t0 = pd.Timestamp(t0)
        self.con.execute(f"""
            CREATE TEMP TABLE bank_steps AS
            WITH per_time AS (
                SELECT cid, t, sum(w * exp({self.bank_lambda} * {_days('t', "TIMESTAMP '" + str(self.bank_t0) + "'")})) AS s
                FROM ({union}) GROUP BY cid, t
            )
            SELECT cid, t, sum(s) OVER (PARTITION BY cid ORDER BY t ROWS UNBOUNDED PRECEDING) AS cum_s FROM per_time
        """)

    # -- population -------------------------------------------------------------------------
    def population(self, cutoffs: Sequence[pd.Timestamp]) -> pd.DataFrame:
        """(cid, cutoff) of the clients at each cutoff."""
        self.con.register("cutoffs", pd.DataFrame({"cutoff": _ts(cutoffs)}))
        if is_contractual(self.tables):
            still_client = "(x.cancelled_at IS NULL OR x.cancelled_at >= k.cutoff)"
            join = "LEFT JOIN first_cancel x ON x.cid = f.cid"
            select = f"SELECT f.cid, k.cutoff FROM first_orders f JOIN cutoffs k ON f.first_order_at < k.cutoff {join} WHERE {still_client}"
        else:
            window = int(self.config.active_window_days)
            select = f"""
                SELECT p.cid, p.cutoff FROM (
                    SELECT f.cid, k.cutoff FROM first_orders f JOIN cutoffs k ON f.first_order_at < k.cutoff
                ) p ASOF JOIN order_steps o ON p.cid = o.cid AND p.cutoff > o.t
                WHERE o.t >= p.cutoff - INTERVAL {window} DAY
            """
        return self.con.execute(select).df()

    def labels(self, horizon_days: int) -> pd.DataFrame:
        """(cid, cutoff, label) for the registered population ``pop``: 1 = a cancellation
        (contractual data) or no order (otherwise) in [cutoff, cutoff + horizon]."""
        h = int(horizon_days)
        if is_contractual(self.tables):
            return self.con.execute(f"""
                SELECT p.cid, p.cutoff, CAST(coalesce(x.cancelled_at <= p.cutoff + INTERVAL {h} DAY, FALSE) AS TINYINT) AS label
                FROM pop p LEFT JOIN first_cancel x ON x.cid = p.cid AND x.cancelled_at >= p.cutoff
            """).df()
        return self.con.execute(f"""
            WITH before AS (SELECT q.cid, q.cutoff, s.cum_orders FROM pop q
                            ASOF LEFT JOIN order_steps s ON q.cid = s.cid AND q.cutoff > s.t),
                 until AS (SELECT q.cid, q.cutoff, s.cum_orders FROM pop q
                           ASOF LEFT JOIN order_steps s ON q.cid = s.cid AND q.cutoff + INTERVAL {h} DAY >= s.t)
            SELECT b.cid, b.cutoff,
                   CAST(coalesce(u.cum_orders, 0) = coalesce(b.cum_orders, 0) AS TINYINT) AS label
            FROM before b JOIN until u USING (cid, cutoff)
        """).df()

    # -- feature groups ----------------------------------------------------------------------
    def _probes(self, windows: Iterable[int]) -> str:
        """Population rows repeated at cutoff - w for each window w (0 = the cutoff itself)."""
        values = ", ".join(f"({int(w)})" for w in windows)
        return f"SELECT p.cid, p.cutoff, v.w, p.cutoff - to_days(v.w) AS at FROM pop p, (VALUES {values}) v(w)"

    def _asof_windows(self, steps: str, cols: Sequence[str], windows: Iterable[int]) -> str:
        """SQL of the running summary ``steps`` looked up at each cutoff and each cutoff - window:
        one row per (cid, cutoff, w) with the summary columns of the last event before the probe."""
        picked = ", ".join(f"s.{c}" for c in cols)
        return f"""
            SELECT q.cid, q.cutoff, q.w, {picked}
            FROM ({self._probes(windows)}) q ASOF LEFT JOIN {steps} s ON q.cid = s.cid AND q.at > s.t
        """

    def purchases(self) -> pd.DataFrame:
        cols = ["t", "gap_days", "cum_orders", "cum_amount", "cum_returns", "cum_order_days", "max_gap_days", "first_order_at"]
        windowed = ",\n".join(
            f"{_diff('cum_orders', w)} AS orders_{w}d, {_diff('cum_amount', w)} AS amount_{w}d" for w in ORDER_WINDOWS)
        return self.con.execute(f"""
            WITH hit AS ({self._asof_windows('order_steps', cols, (0, *ORDER_WINDOWS))})
            SELECT cid, cutoff,
                {_days('cutoff', _at0('t'))} AS days_since_last_order,
                {_days('cutoff', _at0('first_order_at'))} AS tenure_days,
                {windowed},
                {_at0('cum_orders')} AS orders_total,
                {_at0('cum_amount')} AS amount_total,
                {_at0('cum_returns')} AS returns_total,
                {_diff('cum_returns', 365)} AS returns_365d,
                {_at0('gap_days')} AS last_gap_days,
                {_at0('max_gap_days')} AS max_gap_days,
                CASE WHEN {_at0('cum_orders')} > 1
                     THEN {_days(_at0('t'), _at0('first_order_at'))} / ({_at0('cum_orders')} - 1) END AS mean_gap_days,
                {_at0('cum_order_days')} - 1 AS btyd_x,
                {_days("date_trunc('day', " + _at0('t') + ")", "date_trunc('day', " + _at0('first_order_at') + ")")} / 7.0 AS btyd_t_x,
                {_days('cutoff', "date_trunc('day', " + _at0('first_order_at') + ")")} / 7.0 AS btyd_T,
                {_at0('first_order_at')} AS first_order_at,
                {_at0('t')} AS last_order_at
            FROM hit GROUP BY cid, cutoff
        """).df()

    def attention(self) -> pd.DataFrame:
        out_w = ",\n".join(f"{_diff('o_n', w)} AS outbound_{w}d" for w in INTERACTION_WINDOWS)
        in_w = ",\n".join(f"{_diff('i_n', w)} AS inbound_{w}d" for w in INTERACTION_WINDOWS)
        windows = (0, *INTERACTION_WINDOWS)
        return self.con.execute(f"""
            WITH o AS ({self._asof_windows('outbound_steps', ['t', 'cum_n'], windows)}),
                 i AS ({self._asof_windows('inbound_steps', ['t', 'cum_n'], windows)}),
                 hit AS (SELECT o.cid, o.cutoff, o.w, o.t AS o_t, o.cum_n AS o_n, i.t AS i_t, i.cum_n AS i_n
                         FROM o JOIN i USING (cid, cutoff, w)),
                 agg AS (
                    SELECT cid, cutoff,
                        {_days('cutoff', _at0('o_t'))} AS days_since_last_outbound,
                        {_days('cutoff', _at0('i_t'))} AS days_since_last_inbound,
                        {_days('cutoff', 'greatest(' + _at0('o_t') + ', ' + _at0('i_t') + ')')} AS days_since_last_contact,
                        {out_w}, {in_w},
                        coalesce({_at0('o_n')}, 0) AS outbound_total, coalesce({_at0('i_n')}, 0) AS inbound_total
                    FROM hit GROUP BY cid, cutoff),
                 silence AS (
                    SELECT q.cid, q.cutoff, greatest(coalesce(s.seg_max_gap, 0), {_days('q.cutoff', 's.t')}) AS longest_silence_days
                    FROM pop q ASOF LEFT JOIN silence_steps s ON q.cid = s.cid AND q.cutoff > s.t)
            SELECT a.*, s.longest_silence_days,
                CASE WHEN f.first_outbound_at < a.cutoff THEN {_days('f.first_outbound_at', 'f.first_order_at')}
                     ELSE {_days('a.cutoff', 'f.first_order_at')} END AS days_to_first_outbound,
                CAST(coalesce(f.first_outbound_at < a.cutoff, FALSE) AS DOUBLE) AS first_outbound_observed,
                CASE WHEN f.first_order_at + INTERVAL 100 DAY <= a.cutoff THEN f.outbound_first_100d END AS outbound_first_100d,
                CAST(f.first_order_at + INTERVAL 100 DAY <= a.cutoff AS DOUBLE) AS first_100d_observed
            FROM agg a JOIN silence s USING (cid, cutoff) JOIN first_touch f USING (cid)
        """).df()

    def nps(self) -> pd.DataFrame:
        return self.con.execute(f"""
            SELECT q.cid, q.cutoff,
                s.last_score AS nps_last_score, s.last_score - s.prev_score AS nps_change,
                {_days('q.cutoff', 's.t')} AS days_since_last_nps,
                coalesce(s.cum_answers, 0) AS nps_answers,
                CAST(s.cum_answers IS NULL AS DOUBLE) AS nps_never_answered
            FROM pop q ASOF LEFT JOIN nps_steps s ON q.cid = s.cid AND q.cutoff > s.t
        """).df()

    def complaints(self) -> pd.DataFrame:
        has = set(self.tables["complaints"].columns)
        is_open = "(k.resolved_at IS NULL OR k.resolved_at >= p.cutoff)"
        windows = ",\n".join(
            f"count(*) FILTER (WHERE k.opened_at >= p.cutoff - INTERVAL {w} DAY) AS complaints_{w}d" for w in ORDER_WINDOWS)
        severity = "arg_max(k.severity, k.opened_at) AS last_complaint_severity," if "severity" in has else ""
        public = ("count(*) FILTER (WHERE k.public AND k.opened_at >= p.cutoff - INTERVAL 365 DAY) AS public_complaints_365d,"
                  if "public" in has else "")
        return self.con.execute(f"""
            SELECT p.cid, p.cutoff,
                count(*) AS complaints_total, {windows},
                count(*) FILTER (WHERE {is_open}) AS complaints_open,
                {_days('p.cutoff', f'min(k.opened_at) FILTER (WHERE {is_open})')} AS oldest_open_complaint_days,
                sum({_days('p.cutoff', 'k.opened_at')}) FILTER (WHERE {is_open}) AS open_complaint_days,
                avg({_days('k.resolved_at', 'k.opened_at')}) FILTER (WHERE NOT {is_open}) AS mean_days_to_resolve,
                {severity} {public}
                min(k.resolved_at) FILTER (WHERE NOT {is_open}) AS first_resolved_at,
                {_days('p.cutoff', 'max(k.opened_at)')} AS days_since_last_complaint
            FROM pop p JOIN raw_complaints k ON k.cid = p.cid AND k.opened_at < p.cutoff
            GROUP BY p.cid, p.cutoff
        """).df()

    def bank(self) -> pd.DataFrame:
        lam = self.bank_lambda
        return self.con.execute(f"""
            SELECT q.cid, q.cutoff,
                coalesce(s.cum_s, 0) * exp(-{lam} * {_days('q.cutoff', "TIMESTAMP '" + str(self.bank_t0) + "'")}) AS _bank_events
            FROM pop q ASOF LEFT JOIN bank_steps s ON q.cid = s.cid AND q.cutoff > s.t
        """).df()

    def channels(self, cutoffs: Sequence[pd.Timestamp]) -> list[str]:
        """Interaction channels (as column-safe names) frequent enough before the latest cutoff
        to get their own features: at least ``channel_min_share`` of interactions, the
        ``max_channels`` most frequent."""
        last = _ts([max(cutoffs)])[0]
        shares = self.con.execute("""
            SELECT channel, count(*) / sum(count(*)) OVER () AS share FROM raw_interactions
            WHERE occurred_at < ? AND channel IS NOT NULL GROUP BY channel ORDER BY share DESC, channel
        """, [last.to_pydatetime()]).df()
        shares["name"] = shares["channel"].map(_safe_name)
        shares = shares[shares["name"] != ""].groupby("name", sort=False)["share"].sum().sort_values(ascending=False, kind="stable")
        return list(shares[shares >= self.config.channel_min_share].head(self.config.max_channels).index)

    def channel_activity(self, names: Sequence[str]) -> pd.DataFrame:
        """Per channel: interactions in the 90 days before the cutoff and days since the last one
        (missing when none in those 90 days). A direct join: only the last 90 days of history
        are read for each cutoff."""
        raw = self.con.execute("SELECT DISTINCT channel FROM raw_interactions WHERE channel IS NOT NULL").df()["channel"]
        cols = []
        for name in names:
            members = ", ".join("'" + str(ch).replace("'", "''") + "'" for ch in raw if _safe_name(ch) == name) or "NULL"
            match = f"i.channel IN ({members})"
            cols.append(f"count(*) FILTER (WHERE {match}) AS channel_{name}_90d")
            cols.append(f"{_days('p.cutoff', f'max(i.occurred_at) FILTER (WHERE {match})')} AS days_since_{name}_90d")
        return self.con.execute(f"""
            SELECT p.cid, p.cutoff, {', '.join(cols)}
            FROM pop p JOIN raw_interactions i ON i.cid = p.cid
                AND i.occurred_at < p.cutoff AND i.occurred_at >= p.cutoff - INTERVAL 90 DAY
            GROUP BY p.cid, p.cutoff
        """).df()


def _arrow(series: pd.Series) -> pa.Array:
    """A column as an Arrow array (zero-copy where pandas already holds Arrow data)."""
    if pd.api.types.is_string_dtype(series) or series.dtype == object:
        return pa.array(series.astype("str"), type=pa.string(), from_pandas=True)
    if pd.api.types.is_bool_dtype(series):
        return pa.array(series.astype("boolean"), from_pandas=True)
    return pa.array(series, from_pandas=True)


def _at0(col: str) -> str:
    """The summary column at the cutoff itself (probe w = 0)."""
    return f"max({col}) FILTER (WHERE w = 0)"


def _diff(col: str, window: int) -> str:
    """Events in [cutoff - window, cutoff): running total at the cutoff minus at the window start."""
    return f"coalesce({_at0(col)}, 0) - coalesce(max({col}) FILTER (WHERE w = {int(window)}), 0)"


def _safe_name(value: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in str(value).strip().lower()).strip("_")
    return cleaned[:30]


# -- public API ----------------------------------------------------------------------------

def skipped_groups(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
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
    if customers is None or not (set(customers.columns) - {"customer_id", "created_at"}):
        skipped["attributes"] = "no customer attributes (segment, acquisition_channel, region ...)"
    return skipped


def build_population(tables: dict[str, pd.DataFrame], cutoffs: Iterable[pd.Timestamp], *,
                     active_window_days: int = 365, horizon_days: int | None = None) -> pd.DataFrame:
    """Customers who are clients at each cutoff: frame (customer_id, cutoff), sorted; with
    ``horizon_days``, also their ``label`` (see ``features.labels``)."""
    # the population and the labels read orders and cancellations only
    needed = {k: v for k, v in tables.items() if k in ("orders", "cancellations")}
    engine = _Engine(needed, FeatureConfig(active_window_days=active_window_days, btyd=False))
    try:
        pop = engine.population(sorted(pd.to_datetime(list(cutoffs))))
        if horizon_days is not None:
            engine.con.register("pop", pop)
            pop = engine.labels(horizon_days)
    finally:
        engine.close()
    return _decode(engine, pop).sort_values(["cutoff", "customer_id"], kind="stable").reset_index(drop=True)


def _decode(engine: _Engine, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns="cid")
    out.insert(0, "customer_id", pd.Series(engine.ids.take(frame["cid"].to_numpy()), index=frame.index, dtype="str"))
    return out.assign(cutoff=_ts(out["cutoff"]).to_numpy())


def nps_category(score: pd.Series) -> pd.Series:
    """promoter (9-10), passive (7-8), detractor (0-6), none (never answered)."""
    s = pd.to_numeric(score).astype("float64").to_numpy()
    return pd.Series(np.select([s >= 9, s >= 7, s <= 6], ["promoter", "passive", "detractor"], "none"),
                     index=score.index)


def coleman_phase(days_since_first_order: pd.Series, orders_total: pd.Series, nps_category_: pd.Series | None) -> pd.Series:
    """Coleman's phase after the first purchase: admit (< 2 days), affirm (< 14), activate (< 30),
    acclimate (< 100), then accomplish (one order), adopt (a regular) or advocate (a promoting regular)."""
    d = days_since_first_order.astype("float64").to_numpy()
    regular = orders_total.astype("float64").to_numpy() >= 2
    promoter = (nps_category_ == "promoter").to_numpy() if nps_category_ is not None else np.zeros(len(d), bool)
    phase = np.select([d < 2, d < 14, d < 30, d < 100, ~regular, ~promoter],
                      ["admit", "affirm", "activate", "acclimate", "accomplish", "adopt"], "advocate")
    return pd.Series(phase, index=days_since_first_order.index)


def lifecycle_stage(orders_total: pd.Series, nps_category_: pd.Series | None) -> pd.Series:
    """Efremova's stage: buyer (one order), regular (two or more), adherent (a promoting regular)."""
    regular = orders_total.astype("float64").to_numpy() >= 2
    promoter = (nps_category_ == "promoter").to_numpy() if nps_category_ is not None else np.zeros(len(regular), bool)
    return pd.Series(np.select([regular & promoter, regular], ["adherent", "regular"], "buyer"), index=orders_total.index)


def _btyd_features(frame: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """BG/NBD fitted per cutoff on that cutoff's own history, applied to every client."""
    horizon_weeks = config.btyd_horizon_days / 7.0
    out = pd.DataFrame(index=frame.index, columns=["btyd_p_no_order", "btyd_expected_orders", "btyd_p_alive"],
                       dtype="float64")
    for _cutoff, rows in frame.groupby("cutoff", sort=True).groups.items():
        part = frame.loc[rows]
        x, t_x, T = (part[c].to_numpy(dtype=float) for c in ("btyd_x", "btyd_t_x", "btyd_T"))
        params = btyd.fit_bgnbd(x, t_x, T, sample=config.btyd_sample)
        out.loc[rows, "btyd_p_no_order"] = btyd.p_no_purchase(params, x, t_x, T, horizon_weeks)
        out.loc[rows, "btyd_expected_orders"] = btyd.expected_purchases(params, x, t_x, T, horizon_weeks)
        out.loc[rows, "btyd_p_alive"] = btyd.p_alive(params, x, t_x, T)
    return out


def build_features(tables: dict[str, pd.DataFrame], cutoffs: Iterable[pd.Timestamp], *,
                   config: FeatureConfig | None = None, active_window_days: int | None = None,
                   population: pd.DataFrame | None = None, channels: Sequence[str] | None = None) -> pd.DataFrame:
    """Features of every client in the population at each cutoff.

    ``tables``: validated input tables (``features.contract``); only ``orders`` is required.
    ``population``: optional (customer_id, cutoff) frame to compute features for (default: the
    clients at each cutoff, ``build_population``). ``channels``: interaction channels that get
    their own features (default: chosen from the data before the latest cutoff; pass the
    model's list when scoring). Returns one row per (customer_id, cutoff), sorted, with the
    catalogue's columns that the data supports. Reads only facts strictly before each cutoff.
    """
    config = config or FeatureConfig()
    if active_window_days is not None:
        config = config.model_copy(update={"active_window_days": active_window_days})
    cutoffs = sorted(pd.to_datetime(list(cutoffs)))
    engine = _Engine(tables, config)
    try:
        if population is None:
            pop = engine.population(cutoffs)
        else:
            pop = pd.DataFrame({"cid": engine.encode(population["customer_id"]), "cutoff": _ts(population["cutoff"]).to_numpy()})
            if (pop["cid"] < 0).any():
                raise ValueError("population holds customer_ids that are in none of the input tables")
        engine.con.register("pop", pop)
        out = engine.purchases()
        parts = []
        if "interactions" in tables:
            parts.append(engine.attention())
            chosen = list(channels) if channels is not None else engine.channels(cutoffs)
            if chosen:
                parts.append(engine.channel_activity(chosen))
        if "nps" in tables:
            parts.append(engine.nps())
        if "complaints" in tables:
            parts.append(engine.complaints())
        if engine.bank_supported():
            parts.append(engine.bank())
        out = pop.merge(out, on=["cid", "cutoff"], how="left")
        for part in parts:
            out = out.merge(part, on=["cid", "cutoff"], how="left")
        out = _decode(engine, out)
    finally:
        engine.close()
    return _finish(out, tables, config, channels)


def _finish(out: pd.DataFrame, tables: dict[str, pd.DataFrame], config: FeatureConfig,
            channels: Sequence[str] | None) -> pd.DataFrame:
    """Derived features, zero-filled counts, attributes, dtypes and column order."""
    gap = out["mean_gap_days"].where(out["mean_gap_days"] > 0)  # orders all on one day: no rhythm yet
    derived = {"overdue_ratio": out["days_since_last_order"] / gap}
    category = nps_category(out["nps_last_score"]) if "nps_last_score" in out else None
    if category is not None:
        derived["nps_last_category"] = category
    derived["lifecycle_stage"] = lifecycle_stage(out["orders_total"], category)
    derived["coleman_phase"] = coleman_phase(out["tenure_days"], out["orders_total"], category)
    if "complaints" in tables:
        counts = [c for c in out.columns if c.startswith(("complaints_", "public_complaints_"))]
        out[counts] = out[counts].fillna(0)
        out["open_complaint_days"] = out["open_complaint_days"].fillna(0)
        derived["recovered_after_complaint"] = (out["first_resolved_at"] < out["last_order_at"]).astype("float64")
    if "_bank_events" in out:
        w = config.bank
        open_days = out["open_complaint_days"] if "open_complaint_days" in out else 0.0
        derived["bank_balance"] = out["_bank_events"] - w.open_complaint_day * open_days
    channel_cols = [c for c in out.columns if c.startswith("channel_")]
    out[channel_cols] = out[channel_cols].fillna(0)
    # a fixed row order makes every order-sensitive step (the BG/NBD fit) reproducible
    out = out.assign(**derived).sort_values(KEYS[::-1], kind="stable").reset_index(drop=True)
    if config.btyd and len(out):
        out = pd.concat([out, _btyd_features(out, config)], axis=1)
    customers = tables.get("customers")
    attribute_cols = []
    if customers is not None:
        attrs = _attributes(customers)
        attribute_cols = [c for c in attrs.columns if c != "customer_id"]
        out = out.merge(attrs, on="customer_id", how="left")
    feature_cols = [name for name in BY_NAME if name in out.columns]
    dynamic = sorted(c for c in out.columns if c.startswith(("channel_", "days_since_")) and c not in BY_NAME
                     and c.endswith("_90d"))
    ordered = (KEYS + feature_cols + dynamic + [c for c in attribute_cols if c not in feature_cols]
               + [c for c in BTYD_INPUTS if c in out.columns])
    result = out[ordered].copy()
    for name in ordered[2:]:
        feature = BY_NAME.get(name)
        categorical = (feature.categorical if feature else not pd.api.types.is_numeric_dtype(result[name]))
        if categorical:
            result[name] = result[name].astype("object").where(result[name].notna(), None).astype("category")
        else:
            result[name] = result[name].astype("float64").replace([np.inf, -np.inf], np.nan)
    return result.sort_values(KEYS[::-1], kind="stable").reset_index(drop=True)


def _attributes(customers: pd.DataFrame) -> pd.DataFrame:
    """Static attributes: segment, acquisition_channel, region, and other low-cardinality or
    numeric customer columns (named ``attr_<column>``)."""
    cols = {"customer_id": customers["customer_id"].astype("str")}
    for col in customers.columns:
        if col in ("customer_id", "created_at"):
            continue
        series = customers[col]
        name = col if col in STATIC_ATTRIBUTES else f"attr_{_safe_name(col)}"
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            cols[name] = series.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(series):
            continue
        elif series.nunique(dropna=True) <= MAX_ATTRIBUTE_LEVELS:
            cols[name] = series.astype("object")
    return pd.DataFrame(cols)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a feature table: everything but the keys, the label and
    the buy-till-you-die inputs (kept for the baselines)."""
    return [c for c in frame.columns if c not in (*KEYS, "label", *BTYD_INPUTS)]


def channel_list(feature_names: Iterable[str]) -> list[str]:
    """The channels a model was trained with, from its ``channel_<name>_90d`` columns (pass to
    ``build_features(channels=...)`` when scoring)."""
    return [c[len("channel_"):-len("_90d")] for c in feature_names if c.startswith("channel_") and c.endswith("_90d")]
