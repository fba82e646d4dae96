"""Messy exports of a simulated company, shaped like the files data teams really have.

``write_online_retail`` writes a retail ERP export in the UCI Online Retail II layout, the
one the README's "Use your own data" walkthrough starts from:

- ``sales_export.csv``: invoice lines ``Invoice, StockCode, Description, Quantity,
  InvoiceDate, Price, Amount, Customer ID, Country``; dates ``dd/mm/yyyy HH:MM`` in
  London time; amounts with a thousands separator (``1,857.60``); a returned order is
  followed by a credit-note invoice (``C`` + the invoice number) with negative quantities
  and amounts; about 1% of lines are exported twice; about 2% of invoices are guest
  checkouts without a customer id; customer ids are zero-padded (``0000094``);
- ``crm_customers.csv``: ``CustomerNo, Created, Segment, Channel, Country`` from a CRM
  whose ids lost their leading zeros (``94``).

``configs/online-retail.yaml`` is the mapping that reads them. The truth stays with the
simulation (``truth.parquet`` beside the exports, keyed by the contract's ids).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.io import write_atomic

COUNTRIES = {"north": "United Kingdom", "south": "France", "east": "Germany", "west": "Ireland"}
PRODUCTS = [("85123A", "WHITE HANGING HEART T-LIGHT HOLDER"), ("22423", "REGENCY CAKESTAND 3 TIER"),
            ("47566", "PARTY BUNTING"), ("84879", "ASSORTED COLOUR BIRD ORNAMENT"), ("20725", "LUNCH BAG RED RETROSPOT"),
            ("22720", "SET OF 3 CAKE TINS PANTRY DESIGN"), ("21212", "PACK OF 72 RETROSPOT CAKE CASES"),
            ("POST", "POSTAGE")]


def _number(values: np.ndarray) -> pd.Series:
    return pd.Series([f"{v:,.2f}" for v in values], dtype="str")


def _padded(customer_id: pd.Series) -> pd.Series:
    return customer_id.str.lstrip("C").str.zfill(7)


def online_retail_lines(tables: dict[str, pd.DataFrame], seed: int = 0) -> pd.DataFrame:
    """The invoice lines of a simulated company's orders (see the module docstring)."""
    rng = np.random.default_rng(seed)
    orders = tables["orders"]
    if "status" in orders:
        orders = orders[orders["status"] != "cancelled"]
    orders = orders.reset_index(drop=True)
    region = tables["customers"].set_index("customer_id")["region"] if "region" in tables["customers"] else None
    n_lines = rng.integers(1, 5, size=len(orders))
    order_of = np.repeat(np.arange(len(orders)), n_lines)
    shares = rng.gamma(2.0, size=len(order_of))
    shares /= np.bincount(order_of, weights=shares)[order_of]
    quantity = rng.integers(1, 13, size=len(order_of))
    price = np.maximum(np.round(orders["amount"].to_numpy()[order_of] * shares / quantity, 2), 0.01)
    product = rng.integers(0, len(PRODUCTS), size=len(order_of))
    invoices = pd.Series(np.arange(536365, 536365 + len(orders)).astype(str), dtype="str")
    when = orders["ordered_at"].dt.tz_localize("UTC").dt.tz_convert("Europe/London").dt.tz_localize(None)
    customer = _padded(orders["customer_id"])
    country = (orders["customer_id"].map(region).map(COUNTRIES) if region is not None
               else pd.Series("United Kingdom", index=orders.index))
    lines = pd.DataFrame({
        "Invoice": invoices.to_numpy()[order_of], "StockCode": [PRODUCTS[p][0] for p in product],
        "Description": [PRODUCTS[p][1] for p in product], "Quantity": quantity,
        "InvoiceDate": when.dt.strftime("%d/%m/%Y %H:%M").to_numpy()[order_of], "Price": price,
        "Amount": quantity * price, "Customer ID": customer.to_numpy()[order_of],
        "Country": country.to_numpy()[order_of]})
    returned = orders.index[orders.get("status", pd.Series("completed", index=orders.index)) == "returned"].to_numpy()
    credit = lines[np.isin(order_of, returned)].copy()
    if len(credit):
        later = orders["ordered_at"].to_numpy()[order_of[np.isin(order_of, returned)]] \
            + pd.to_timedelta(rng.integers(2, 20, size=len(credit)), unit="D").to_numpy()
        end = orders["ordered_at"].max()
        later = np.minimum(later, end.to_datetime64())
        local = pd.Series(later).dt.tz_localize("UTC").dt.tz_convert("Europe/London").dt.tz_localize(None)
        credit = credit.assign(Invoice="C" + credit["Invoice"], Quantity=-credit["Quantity"],
                               Amount=-credit["Amount"], InvoiceDate=local.dt.strftime("%d/%m/%Y %H:%M").to_numpy())
    guests = rng.choice(len(orders), size=max(1, len(orders) // 50), replace=False)
    guest = lines[np.isin(order_of, guests)].assign(
        Invoice=lambda f: "9" + f["Invoice"], **{"Customer ID": None})
    lines = pd.concat([lines, credit, guest], ignore_index=True)
    copies = lines.iloc[rng.choice(len(lines), size=max(1, len(lines) // 100), replace=False)]
    lines = pd.concat([lines, copies], ignore_index=True)
    order = np.lexsort((lines["Invoice"].to_numpy(), pd.to_datetime(lines["InvoiceDate"], format="%d/%m/%Y %H:%M").to_numpy()))
    lines = lines.iloc[order].reset_index(drop=True)
    return lines.assign(Price=_number(lines["Price"].to_numpy()), Amount=_number(lines["Amount"].to_numpy()))


def crm_customers(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The CRM's customers file: ids without their leading zeros, dates dd/mm/yyyy."""
    c = tables["customers"]
    return pd.DataFrame({"CustomerNo": _padded(c["customer_id"]).str.lstrip("0"),
                         "Created": c["created_at"].dt.strftime("%d/%m/%Y"),
                         "Segment": c.get("segment"), "Channel": c.get("acquisition_channel"),
                         "Country": c["region"].map(COUNTRIES) if "region" in c else None})


def write_online_retail(tables: dict[str, pd.DataFrame], out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``sales_export.csv``, ``crm_customers.csv`` and ``truth.parquet`` (when the
    simulation has one, with the export's customer ids) into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    lines, customers = online_retail_lines(tables, seed), crm_customers(tables)
    paths = {"orders": write_atomic(out_dir / "sales_export.csv", lambda p: lines.to_csv(p, index=False)),
             "customers": write_atomic(out_dir / "crm_customers.csv", lambda p: customers.to_csv(p, index=False))}
    if "truth" in tables:
        truth = tables["truth"].assign(customer_id=lambda f: _padded(f["customer_id"]))
        paths["truth"] = write_atomic(out_dir / "truth.parquet", lambda p: truth.to_parquet(p, index=False))
    return paths
