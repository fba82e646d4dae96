"""Point-in-time features and the population at each cutoff, computed with DuckDB.

Time semantics, held everywhere:
- a feature at cutoff ``c`` reads only facts strictly before ``c``: an order, NPS answer,
  interaction or complaint stamped at or after ``c`` does not exist yet; a complaint
  opened before ``c`` and resolved at or after ``c`` is open at ``c``;
- the population at ``c``: customers with at least one order before ``c`` who are still
  clients at ``c``: no cancellation before ``c`` when the data has cancellations
  (a contractual business), otherwise an order within ``active_window_days`` before ``c``.

All cutoffs are computed in one query per feature group (the cutoffs are a small table
joined to the history), returning one row per (customer_id, cutoff).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import duckdb
import pandas as pd

from features.catalogue import BY_NAME

KEYS = ["customer_id", "cutoff"]
STATIC_ATTRIBUTES = ("segment", "acquisition_channel", "region")


def _connect(tables: dict[str, pd.DataFrame], cutoffs: Sequence[pd.Timestamp]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, frame in tables.items():
        con.register(name, frame)
    con.register("cutoffs", pd.DataFrame({"cutoff": pd.to_datetime(list(cutoffs)).astype("datetime64[us]")}))
    return con


def is_contractual(tables: dict[str, pd.DataFrame]) -> bool:
    """A business with a cancellations table ends relationships by cancellation."""
    return "cancellations" in tables


def _population_sql(tables: dict[str, pd.DataFrame], active_window_days: int) -> str:
    if is_contractual(tables):
        still_client = """NOT EXISTS (SELECT 1 FROM cancellations x
                           WHERE x.customer_id = o.customer_id AND x.cancelled_at < c.cutoff)"""
    else:
        still_client = f"max(o.ordered_at) >= c.cutoff - INTERVAL {int(active_window_days)} DAY"
    having = "" if is_contractual(tables) else f"HAVING {still_client}"
    where = f"AND {still_client}" if is_contractual(tables) else ""
    return f"""
        SELECT o.customer_id, c.cutoff
        FROM cutoffs c JOIN orders o ON o.ordered_at < c.cutoff {where}
        GROUP BY o.customer_id, c.cutoff
        {having}
    """


def build_population(tables: dict[str, pd.DataFrame], cutoffs: Iterable[pd.Timestamp], *,
                     active_window_days: int = 365) -> pd.DataFrame:
    """Customers who are clients at each cutoff: frame (customer_id, cutoff), sorted."""
    cutoffs = list(cutoffs)
    con = _connect(tables, cutoffs)
    pop = con.execute(_population_sql(tables, active_window_days) + " ORDER BY cutoff, customer_id").df()
    return pop


def _days(later: str, earlier: str) -> str:
    return f"(epoch({later}) - epoch({earlier})) / 86400.0"


PURCHASES_SQL = f"""
    SELECT p.customer_id, p.cutoff,
        {_days('p.cutoff', 'max(o.ordered_at)')} AS days_since_last_order,
        {_days('p.cutoff', 'min(o.ordered_at)')} AS tenure_days,
        count(*) FILTER (WHERE o.ordered_at >= p.cutoff - INTERVAL 30 DAY) AS orders_30d,
        count(*) FILTER (WHERE o.ordered_at >= p.cutoff - INTERVAL 90 DAY) AS orders_90d,
        count(*) FILTER (WHERE o.ordered_at >= p.cutoff - INTERVAL 365 DAY) AS orders_365d,
        count(*) AS orders_total,
        coalesce(sum(o.amount) FILTER (WHERE o.ordered_at >= p.cutoff - INTERVAL 90 DAY), 0) AS amount_90d,
        coalesce(sum(o.amount) FILTER (WHERE o.ordered_at >= p.cutoff - INTERVAL 365 DAY), 0) AS amount_365d,
        CASE WHEN count(*) > 1
             THEN {_days('max(o.ordered_at)', 'min(o.ordered_at)')} / (count(*) - 1) END AS mean_gap_days
    FROM population p JOIN orders o ON o.customer_id = p.customer_id AND o.ordered_at < p.cutoff
    GROUP BY p.customer_id, p.cutoff
"""

_FIRST_OUTBOUND = "min(i.occurred_at) FILTER (WHERE i.direction = 'outbound' AND i.occurred_at >= f.first_order_at)"
_LAST_OUTBOUND = "max(i.occurred_at) FILTER (WHERE i.direction = 'outbound')"
_LAST_INBOUND = "max(i.occurred_at) FILTER (WHERE i.direction = 'inbound')"

ATTENTION_SQL = f"""
    WITH first_order AS (
        SELECT p.customer_id, p.cutoff, min(o.ordered_at) AS first_order_at
        FROM population p JOIN orders o ON o.customer_id = p.customer_id AND o.ordered_at < p.cutoff
        GROUP BY p.customer_id, p.cutoff
    )
    SELECT f.customer_id, f.cutoff,
        {_days(_FIRST_OUTBOUND, 'f.first_order_at')} AS days_to_first_outbound,
        {_days('f.cutoff', _LAST_OUTBOUND)} AS days_since_last_outbound,
        {_days('f.cutoff', _LAST_INBOUND)} AS days_since_last_inbound,
        count(i.occurred_at) FILTER (WHERE i.direction = 'outbound' AND i.occurred_at >= f.cutoff - INTERVAL 90 DAY) AS outbound_90d,
        count(i.occurred_at) FILTER (WHERE i.direction = 'inbound' AND i.occurred_at >= f.cutoff - INTERVAL 90 DAY) AS inbound_90d
    FROM first_order f
    LEFT JOIN interactions i ON i.customer_id = f.customer_id AND i.occurred_at < f.cutoff
    GROUP BY f.customer_id, f.cutoff, f.first_order_at
"""

NPS_SQL = f"""
    SELECT p.customer_id, p.cutoff,
        arg_max(n.score, n.answered_at) AS nps_last_score,
        count(n.answered_at) AS nps_answers,
        {_days('p.cutoff', 'max(n.answered_at)')} AS days_since_last_nps
    FROM population p
    LEFT JOIN nps n ON n.customer_id = p.customer_id AND n.answered_at < p.cutoff
    GROUP BY p.customer_id, p.cutoff
"""

COMPLAINTS_SQL = f"""
    SELECT p.customer_id, p.cutoff,
        count(k.opened_at) FILTER (WHERE k.resolved_at IS NULL OR k.resolved_at >= p.cutoff) AS complaints_open,
        {_days('p.cutoff', 'min(k.opened_at) FILTER (WHERE k.resolved_at IS NULL OR k.resolved_at >= p.cutoff)')} AS oldest_open_complaint_days,
        count(k.opened_at) FILTER (WHERE k.opened_at >= p.cutoff - INTERVAL 365 DAY) AS complaints_365d
    FROM population p
    LEFT JOIN complaints k ON k.customer_id = p.customer_id AND k.opened_at < p.cutoff
    GROUP BY p.customer_id, p.cutoff
"""

GROUP_QUERIES = {
    "purchases": ("orders", PURCHASES_SQL),
    "attention": ("interactions", ATTENTION_SQL),
    "nps": ("nps", NPS_SQL),
    "complaints": ("complaints", COMPLAINTS_SQL),
}


def skipped_groups(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Feature groups the data cannot support, with the reason (for the run's log)."""
    skipped = {group: f"no {table} table in the data"
               for group, (table, _) in GROUP_QUERIES.items() if table not in tables}
    customers = tables.get("customers")
    if customers is None or not any(c in customers.columns for c in STATIC_ATTRIBUTES):
        skipped["attributes"] = "the customers table has no segment, acquisition_channel or region"
    return skipped


def nps_category(score: pd.Series) -> pd.Series:
    """promoter (9-10), passive (7-8), detractor (0-6), none (never answered)."""
    cat = pd.Series("none", index=score.index, dtype="object")
    cat[score >= 9] = "promoter"
    cat[(score >= 7) & (score <= 8)] = "passive"
    cat[score <= 6] = "detractor"
    return cat


def build_features(tables: dict[str, pd.DataFrame], cutoffs: Iterable[pd.Timestamp], *,
                   active_window_days: int = 365, population: pd.DataFrame | None = None) -> pd.DataFrame:
    """Features of every client in the population at each cutoff.

    ``tables``: validated input tables (``features.contract``). ``population``: optional
    (customer_id, cutoff) frame to compute features for (default: ``build_population``).
    Returns one row per (customer_id, cutoff) with the columns of the catalogue that the
    data supports, sorted by cutoff then customer_id. Reads only facts before each cutoff.
    """
    cutoffs = sorted(pd.to_datetime(list(cutoffs)))
    con = _connect(tables, cutoffs)
    if population is None:
        population = con.execute(_population_sql(tables, active_window_days)).df()
    population = population[KEYS].assign(cutoff=lambda d: pd.to_datetime(d["cutoff"]).astype("datetime64[us]"))
    con.register("population", population)
    out = population.copy()
    for group, (table, sql) in GROUP_QUERIES.items():
        if table not in tables:
            continue
        part = con.execute(sql).df()
        out = out.merge(part, on=KEYS, how="left")
    if "mean_gap_days" in out:
        out["overdue_ratio"] = out["days_since_last_order"] / out["mean_gap_days"]
    if "nps_last_score" in out:
        out["nps_last_category"] = nps_category(out["nps_last_score"])
    customers = tables.get("customers")
    if customers is not None:
        attrs = [c for c in STATIC_ATTRIBUTES if c in customers.columns]
        if attrs:
            out = out.merge(customers[["customer_id", *attrs]], on="customer_id", how="left")
    for name in out.columns:
        feature = BY_NAME.get(name)
        if feature is not None and feature.categorical:
            out[name] = out[name].astype("object").where(out[name].notna(), None).astype("category")
        elif name not in KEYS and feature is not None:
            out[name] = out[name].astype("float64")
    con.close()
    ordered = KEYS + [f.name for f in BY_NAME.values() if f.name in out.columns]
    return out[ordered].sort_values(["cutoff", "customer_id"], kind="stable").reset_index(drop=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The catalogue's feature columns present in a feature table, in catalogue order."""
    return [name for name in BY_NAME if name in frame.columns]
