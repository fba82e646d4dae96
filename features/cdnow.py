"""Adapter: the real CDNOW purchase log (shipped inside the ``lifetimes`` package) as the
input contract's ``orders`` table.

CDNOW_master.txt holds 69,659 purchases by the 23,570 customers who first bought in
Q1 1997, from January 1997 to June 1998 (dates only). It is read by path; importing
``lifetimes`` itself is not needed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def cdnow_path() -> Path:
    """Where the installed ``lifetimes`` package keeps CDNOW_master.txt."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lifetimes package is not installed: `make install` installs it")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "CDNOW_master.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed lifetimes package")
    return path


def load_cdnow_orders(path: Path | None = None) -> pd.DataFrame:
    """CDNOW as ``orders``: order_id, customer_id, ordered_at, amount (one row per purchase line)."""
    raw = pd.read_csv(path or cdnow_path(), sep=r"\s+", header=0,
                      names=["customer_id", "date", "cds", "amount"], dtype={"customer_id": str, "date": str})
    return pd.DataFrame({
        "order_id": [f"CD{i:06d}" for i in range(len(raw))],
        "customer_id": raw["customer_id"].astype("str"),
        "ordered_at": pd.to_datetime(raw["date"], format="%Y%m%d").astype("datetime64[us]"),
        "amount": raw["amount"].astype("float64"),
    })


def write_cdnow(out_dir: Path) -> Path:
    """Write the CDNOW log as a data folder in the input contract (orders.parquet)."""
    from features.io import write_frame

    return write_frame(load_cdnow_orders(), Path(out_dir) / "orders.parquet")
