"""Settings of the input side: where the tables come from, how their columns map onto the
contract, and the validation thresholds that stop a bad extract.

These are the ``source:`` and ``validation:`` sections of the pipeline's settings
(``configs/default.yaml`` spells every key out). A company points the pipeline at what it
has (a folder of exports or a database) by configuration, not code.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.inputs.contract import SCHEMAS, TABLES

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def _plain_name(value: str | None, what: str, hint: str = "") -> str | None:
    """A table or schema name that is a plain SQL identifier (quoted later, never interpolated raw)."""
    if value is not None and not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain {what} (letters, digits, _ and ${hint})")
    return value


class IdOptions(BaseModel):
    """One normalisation applied to every id column (customer_id, order_id, complaint_id) of
    every table, before the tables are matched with each other."""
    model_config = ConfigDict(extra="forbid")
    strip_leading_zeros: bool = Field(False, description="'000123' and '123' are the same id (an id of zeros stays '0')")
    lower_case: bool = Field(False, description="'AB12' and 'ab12' are the same id")
    strip_decimal_zero: bool = Field(False, description="'13085.0' and '13085' are the same id (ids that went through a spreadsheet)")


_Value = str | bool | int | float


class TableSource(BaseModel):
    """Where one table comes from and how to read it."""
    model_config = ConfigDict(extra="forbid")
    file: str | None = Field(None, description="files: the file in source.path (default <table>.parquet, <table>.csv or <table>.csv.gz)")
    table: str | None = Field(None, description="sql: the table name (default the contract's table name)")
    query: str | None = Field(None, description="sql: a SELECT whose result is the table (instead of table)")
    columns: dict[str, str] = Field(default_factory=dict, description="contract column -> source column")
    timestamp_format: str | None = Field(None, description="strptime format of this table's timestamps written as text (default ISO 8601)")
    timezone: str = Field("UTC", description="zone of naive timestamps; every timestamp is converted to UTC")
    decimal: str = Field(".", min_length=1, max_length=1, description="decimal mark of numbers written as text")
    thousands: str | None = Field(None, max_length=1, description="thousands separator of numbers written as text")
    delimiter: str = Field(",", min_length=1, max_length=1, description="files: the CSV field separator")
    encoding: str = Field("utf-8", description="files: the CSV text encoding (e.g. cp1252, latin-1 for older ERP exports)")
    values: dict[str, dict[_Value, _Value]] = Field(
        default_factory=dict, description="contract column -> {word in the export: the contract's value}, e.g. "
        "status: {abgeschlossen: completed, retourniert: returned} or public: {ja: true, nein: false} (matched "
        "ignoring case and surrounding space; other values are read as they are)")
    lines: bool = Field(False, description="orders: rows are order lines, one order per order_id")
    negative_amounts: Literal["quarantine", "returns"] = Field(
        "quarantine", description="orders: quarantine a negative amount, or read it as a credit note (a return, never a purchase)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            pd.Timestamp("2020-01-01").tz_localize(value)
        except Exception as exc:
            raise ValueError(f"unknown time zone {value!r} (expected an IANA name such as Europe/London or UTC)") from exc
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _has_directive(cls, value: str | None) -> str | None:
        if value is not None and "%" not in value:
            raise ValueError(f"{value!r} is not a strptime format (expected e.g. '%d/%m/%Y %H:%M')")
        return value

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return _plain_name(value, "table name", "; use query: for anything else")

    @model_validator(mode="after")
    def _consistent(self) -> TableSource:
        if self.table and self.query:
            raise ValueError("give either table or query, not both")
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError(f"thousands separator and decimal mark are both {self.decimal!r}")
        return self


class FormatDefaults(BaseModel):
    """``source.defaults``: the text formats shared by every table of an export."""
    model_config = ConfigDict(extra="forbid")
    timestamp_format: str | None = None
    timezone: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    delimiter: str | None = None
    encoding: str | None = None


# The options of a table that say how its text is written: ``source.defaults`` sets them for
# every table at once (a table's own setting wins).
FORMAT_KEYS = tuple(FormatDefaults.model_fields)


class SourceConfig(BaseModel):
    """The ``source:`` section: a folder of files (default) or a SQL database."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: Literal["files", "sql"] = "files"
    path: Path | None = Field(None, description="files: the folder of exports (--data overrides it)")
    url: str | None = Field(None, description="sql: a SQLAlchemy URL without the password")
    password_env: str | None = Field(None, description="sql: the environment variable that holds the password")
    schema_: str | None = Field(None, alias="schema", description="sql: schema of the table names")
    ids: IdOptions = IdOptions()
    defaults: FormatDefaults = Field(default_factory=FormatDefaults,
                                     description="formats of every table (" + ", ".join(FORMAT_KEYS) + "); a table's own wins")
    tables: dict[str, TableSource] = Field(default_factory=dict)

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: dict[str, TableSource]) -> dict[str, TableSource]:
        for name, spec in tables.items():
            if name not in TABLES:
                raise ValueError(f"unknown table {name!r} (expected one of {', '.join(TABLES)})")
            for column in spec.columns:
                if column not in SCHEMAS[name].columns and name != "customers":
                    raise ValueError(f"{name}.columns: {column!r} is not a column of the contract's {name} table "
                                     f"(expected one of {', '.join(SCHEMAS[name].columns)})")
            if name != "orders" and (spec.lines or spec.negative_amounts != "quarantine"):
                raise ValueError(f"{name}: lines and negative_amounts apply to orders only")
            for column in spec.values:
                if column not in SCHEMAS[name].columns:
                    raise ValueError(f"{name}.values: {column!r} is not a column of the contract's {name} table "
                                     f"(expected one of {', '.join(SCHEMAS[name].columns)})")
        return tables

    @model_validator(mode="after")
    def _defaults_apply(self) -> SourceConfig:
        given = self.defaults.model_dump(exclude_none=True)
        if given:
            merged = {}
            for name in TABLES:  # each table's settings with the defaults must still make sense
                try:
                    merged[name] = self.table(name)
                except ValueError as exc:
                    raise ValueError(f"defaults with tables.{name}: {_first_error(exc)}") from None
            # written into the tables named, so a copy of the settings (dumped and read again,
            # where every field counts as set) keeps them
            self.tables = {name: merged[name] for name in self.tables}
        return self

    @field_validator("schema_")
    @classmethod
    def _schema_identifier(cls, value: str | None) -> str | None:
        return _plain_name(value, "schema name")

    @model_validator(mode="after")
    def _url_has_no_password(self) -> SourceConfig:
        if self.url:
            from sqlalchemy.engine import make_url

            try:
                url = make_url(self.url)
            except Exception as exc:
                raise ValueError(f"url is not a SQLAlchemy URL (expected e.g. postgresql+psycopg2://user@host:5432/db): "
                                 f"{type(exc).__name__}") from exc
            if url.password:
                raise ValueError("url must not hold the password: put it in an environment variable and name it in "
                                 "password_env")
        return self

    def table(self, name: str) -> TableSource:
        """The source settings of table ``name``: its own, over ``source.defaults``, over the
        contract's defaults."""
        spec = self.tables.get(name) or TableSource()
        shared = {k: v for k, v in self.defaults.model_dump(exclude_none=True).items() if k not in spec.model_fields_set}
        if not shared:
            return spec
        return TableSource(**{**spec.model_dump(exclude_unset=True), **shared})


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", e)) for e in errors())
    return str(exc)


class ValidationConfig(BaseModel):
    """The ``validation:`` section: the gate that stops a bad extract (exit code 2)."""
    model_config = ConfigDict(extra="forbid")
    max_quarantined_share: float = Field(0.2, ge=0, le=1, description="a table with a larger share of its rows quarantined is fatal")
    max_unknown_customer_share: float = Field(0.05, ge=0, le=1, description="a table with a larger share of rows whose customer is unknown is fatal")
    earliest: str = Field("1990-01-01", description="timestamps before this date (ISO 8601) are implausible and quarantined")

    @field_validator("earliest")
    @classmethod
    def _iso(cls, value: str) -> str:
        from features.inputs.dates import parse_iso

        parse_iso(value, "validation.earliest")
        return value
