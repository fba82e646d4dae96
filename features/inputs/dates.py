"""Dates given by people (command-line flags, the config): ISO 8601 only, converted to naive UTC.

``09/12/2024`` is 9 December in Paris and 12 September in New York; the pipeline does not
guess. A date with an offset (``2025-06-01T00:00:00+05:00``) is converted to UTC.
"""
from __future__ import annotations

import re

import pandas as pd

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?$")


def parse_iso(value: str | pd.Timestamp, name: str) -> pd.Timestamp:
    """``value`` as a naive UTC timestamp; ``ValueError`` naming ``name`` unless it is ISO 8601."""
    if isinstance(value, pd.Timestamp):
        ts = value
    else:
        text = str(value).strip()
        if not _ISO.match(text):
            raise ValueError(f"{name}: {value!r} is not an ISO 8601 date (expected YYYY-MM-DD or "
                             "YYYY-MM-DDTHH:MM[:SS][+HH:MM], e.g. 2024-12-09; 09/12/2024 could be either day first or month first)")
        try:
            ts = pd.Timestamp(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {value!r} is not a valid date ({exc})") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")
