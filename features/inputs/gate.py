"""The gate that stops a bad extract: validation passed row by row can still be a wrong file.

A table whose quarantined share exceeds ``validation.max_quarantined_share``, events whose
customer is unknown above ``validation.max_unknown_customer_share``, or an empty orders
table would all give a confident, wrong list; each is a fatal problem (exit code 2) that
names the table, the share and what to fix. The unknown-customer message compares the
shapes of the ids across tables (leading zeros, case, decimals, spaces) and names the
``source.ids`` option that makes them meet; many repeated order ids with different
contents are named as what they probably are: order lines (``lines: true``).
"""
from __future__ import annotations

import pandas as pd

from features.inputs.config import ValidationConfig
from features.inputs.contract import ValidatedData

_UNKNOWN = "unknown_customer"


def gate_problems(result: ValidatedData, config: ValidationConfig) -> list[str]:
    """The fatal problems of a validated extract (empty when it may be used)."""
    problems = []
    summary = result.summary.set_index("table")
    if "orders" in summary.index and summary.loc["orders", "rows_read"] == 0:
        problems.append("orders: the table is empty (no rows read): expected the company's orders")
    for table, row in summary.iterrows():
        read = int(row["rows_read"])
        if not read:
            continue
        rules = result.row_problems[result.row_problems["table"] == table]
        unknown = int(rules.loc[rules["check"] == _UNKNOWN, "rows"].sum())
        if unknown / read > config.max_unknown_customer_share:
            problems.append(f"{table}: {unknown:,} of {read:,} rows ({unknown / read:.0%}) name a customer that is not "
                            f"among the customers (more than validation.max_unknown_customer_share "
                            f"{config.max_unknown_customer_share:.0%}); {diagnose_ids(result, table)}")
            continue
        share = int(row["rows_quarantined"]) / read
        if share > config.max_quarantined_share:
            leading = rules.sort_values("rows", ascending=False).head(3)
            reasons = "; ".join(f"{r.rows:,} x {r.example}" for r in leading.itertuples())
            problems.append(f"{table}: {int(row['rows_quarantined']):,} of {read:,} rows ({share:.0%}) are quarantined "
                            f"(more than validation.max_quarantined_share {config.max_quarantined_share:.0%}); "
                            f"leading reasons: {reasons}"
                            + (f"; {hint}" if (hint := _lines_hint(result, table, read)) else ""))
    return problems


def gate_warnings(result: ValidatedData) -> list[str]:
    """Signs worth a look that do not stop the run."""
    read = result.summary.set_index("table")["rows_read"]
    hint = _lines_hint(result, "orders", int(read.get("orders", 0)), threshold=0.02)
    return [f"orders: {hint}"] if hint else []


def _lines_hint(result: ValidatedData, table: str, read: int, threshold: float = 0.1) -> str:
    """That the orders look like order lines, when more than ``threshold`` of their rows repeat
    an order id with other contents ('' otherwise)."""
    if table != "orders" or not read:
        return ""
    rules = result.row_problems
    repeated = int(rules.loc[(rules["table"] == "orders") & (rules["check"] == "duplicate")
                             & (rules["column"] == "order_id"), "rows"].sum())
    if repeated / read <= threshold:
        return ""
    return (f"{repeated:,} rows repeat an order id with different contents: these look like order lines "
            "(set source.tables.orders.lines: true to sum the lines of each order)")


def diagnose_ids(result: ValidatedData, table: str) -> str:
    """Why the customer ids of ``table`` do not meet the customers' ids, and the fix."""
    q = result.quarantine.get(table)
    reference = result.tables.get("customers", pd.DataFrame({"customer_id": []}))["customer_id"].dropna().astype("str")
    if q is None or "customer_id" not in q or not len(reference):
        return "no customers were kept to compare with: check the customers table"
    unknown = q.loc[q["reason"].str.contains("customer_id: ", regex=False)
                    & q["reason"].str.contains(" is not in customers| has no order| has no valid order"),
                    "customer_id"].dropna().astype("str").str.strip()
    unknown = unknown.drop_duplicates().head(5000)
    if not len(unknown):
        return "check that both tables come from the same system"
    known = set(reference)
    shapes = [
        ("leading zeros", lambda s: s.str.lstrip("0").replace("", "0"), "set source.ids.strip_leading_zeros: true"),
        ("letter case", lambda s: s.str.lower(), "set source.ids.lower_case: true"),
        ("decimals such as '17.0'", lambda s: s.str.replace(r"\.0+$", "", regex=True),
         "set source.ids.strip_decimal_zero: true"),
        ("spaces inside the ids", lambda s: s.str.replace(r"\s+", "", regex=True),
         "remove the spaces inside the ids in the export"),
    ]
    ref = pd.Series(sorted(known), dtype="str")
    example_unknown, example_known = unknown.iloc[0], ref.iloc[0]
    for label, shape, fix in shapes:
        shaped_known = set(shape(ref))
        shaped = shape(unknown)
        met = shaped.isin(shaped_known)
        if met.mean() >= 0.5:
            u = unknown[met].iloc[0]
            k = ref[shape(ref) == shaped[met].iloc[0]].iloc[0]
            return (f"the ids differ by {label} (e.g. '{u}' in {table} and '{k}' in customers): {fix}")
    return (f"the ids do not meet in any normalised form (e.g. '{example_unknown}' in {table}, "
            f"'{example_known}' in customers): check that both tables come from the same system and "
            f"the column mapping (source.tables.{table}.columns.customer_id)")
