"""Reasons in plain words, the action that fits and the client's profile, phrased from the
declarations in ``features.groups`` (the templates and actions live there, once).

A reason is one driver group that pushes this customer's risk up (``models.serving``); its
sentence uses the customer's own numbers and dates, read from the feature row as of the
scoring date. Groups that lower the risk are never phrased as risks, and a context group
(the static profile: segment, channel, region, other attributes) is never a reason: it is
shown in the ``profile`` column. Everything here is vectorised over customers: a template
is formatted once per distinct value, never once per customer in Python.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from features.groups import ACTIONS, BY_GROUP, CLUE_ORDER, CONTEXT_GROUPS, DERIVED, GROUPS, LAPSE_REASONS, Reason

DEFAULT_ACTIONS = {a.key: a.text for a in ACTIONS}
ACTION_WHEN = {a.key: a.when for a in ACTIONS}
FIELD = re.compile(r"\{([a-z0-9_]+)(?::([^}]*))?\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS = {"and", "or", "not", "in", "True", "False"}


def _unique_map(values: np.ndarray, fn) -> np.ndarray:
    """``fn`` applied once per distinct value (values are rounded before, so they repeat)."""
    if len(values) == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(values, return_inverse=True)
    return np.asarray([fn(u) for u in uniq.tolist()], dtype=object)[inverse.ravel()]


def _days(v, as_of, args):
    return _unique_map(np.floor(v).astype(np.int64), str)


def _ndays(v, as_of, args):
    return _unique_map(np.floor(v).astype(np.int64), lambda n: f"{n} day" if n == 1 else f"{n} days")


def _int(v, as_of, args):
    return _unique_map(np.round(v).astype(np.int64), str)


def _date(v, as_of, args):
    day = (pd.Timestamp(as_of).normalize() - pd.to_timedelta(v, unit="D")).normalize().to_numpy("datetime64[D]").astype(np.int64)
    return _unique_map(day, lambda d: (lambda t: f"{t.day} {t.strftime('%b %Y')}")(pd.Timestamp(d, unit="D")))


def _ratio(v, as_of, args):
    return _unique_map(np.round(v, 1), lambda x: f"{x:.1f}")


def _signed(v, as_of, args):
    return _unique_map(np.round(v, 1) + 0.0, lambda x: f"{x:+.1f}")


def _count(v, as_of, args):
    one, many = (args + [args[0] + "s"])[:2] if args else ("", "")
    return _unique_map(np.round(v).astype(np.int64), lambda n: f"{n} {one if n == 1 else many}".rstrip())


def _duration(v, as_of, args):
    def words(d: float) -> str:
        if d < 60:
            return f"{int(d)} days"
        if d < 730:
            return f"{int(round(d / 30.44))} months"
        years = d / 365.25
        return f"{years:.0f} years" if abs(years - round(years)) < 0.25 else f"{years:.1f} years"
    return _unique_map(np.round(v), words)


FORMATS = {"days": _days, "ndays": _ndays, "int": _int, "date": _date, "x": _ratio, "signed": _signed, "count": _count,
           "duration": _duration}


def template_fields(text: str) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in FIELD.finditer(text)]


def condition_names(when: str | None) -> set[str]:
    return set() if when is None else set(NAME.findall(when)) - KEYWORDS


class Row:
    """The feature values the templates read: numbers as float arrays, text as object arrays,
    the ``DERIVED`` values added; a missing column reads as missing everywhere."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.n = len(frame)
        self._cache: dict[str, np.ndarray] = {}

    def numbers(self, name: str) -> np.ndarray:
        key = "#" + name
        if key not in self._cache:
            if name in DERIVED:
                self._cache[key] = self.evaluate(DERIVED[name]).astype(float)
            elif name in self.frame.columns and not _is_text(self.frame[name]):
                self._cache[key] = pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            else:
                self._cache[key] = np.full(self.n, np.nan)
        return self._cache[key]

    def text(self, name: str) -> np.ndarray:
        col = self.frame[name] if name in self.frame.columns else pd.Series([None] * self.n, index=self.frame.index)
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            col = col.map(lambda v: None if pd.isna(v) else f"{v:g}")
        values = col.astype("object").to_numpy()
        known = pd.notna(values) & (values != "") & (values != "none")
        return np.where(known, values, None)

    def evaluate(self, expression: str) -> np.ndarray:
        env = pd.DataFrame({n: self.numbers(n) for n in condition_names(expression)}, index=range(self.n))
        with np.errstate(invalid="ignore"):
            out = env.eval(expression, engine="python") if self.n else np.zeros(0)
        return np.asarray(out)

    def holds(self, when: str | None) -> np.ndarray:
        if when is None:
            return np.ones(self.n, bool)
        if self.n == 0:
            return np.zeros(0, bool)
        return np.asarray(self.evaluate(when), dtype=bool)

    def subset(self, rows: np.ndarray) -> "Row":
        return Row(self.frame.iloc[np.flatnonzero(rows)])


def _is_text(col: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def _field_values(row: Row, name: str, fmt: str | None, as_of) -> tuple[np.ndarray, np.ndarray]:
    """(known, text) of one template field."""
    if fmt is None:
        if name in row.frame.columns and _is_text(row.frame[name]):
            values = row.text(name)
            return pd.notna(values), np.where(pd.notna(values), values, "").astype(object)
        fmt = "int"
    kind, *args = fmt.split(":")
    values = row.numbers(name)
    known = np.isfinite(values)
    out = np.full(row.n, "", dtype=object)
    if known.any():
        out[known] = FORMATS[kind](values[known], as_of, args)
    return known, out


def phrase(templates: tuple[Reason, ...], row: Row, as_of: pd.Timestamp) -> np.ndarray:
    """Each row's sentence: the first template whose condition holds and whose fields are
    all known (None where none applies)."""
    out = np.full(row.n, None, dtype=object)
    todo = np.ones(row.n, bool)
    for template in templates:
        if not todo.any():
            break
        ok = todo & row.holds(template.when)
        parts = FIELD.split(template.text)  # literal, name, fmt, literal, name, fmt, ...
        pieces = []
        for i in range(0, len(parts), 3):
            pieces.append(parts[i])
            if i + 1 < len(parts):
                known, text = _field_values(row, parts[i + 1], parts[i + 2], as_of)
                ok &= known
                pieces.append(text)
        if not ok.any():
            continue
        sentence = np.full(int(ok.sum()), "", dtype=object)
        for piece in pieces:
            sentence = sentence + (piece[ok] if isinstance(piece, np.ndarray) else piece)
        out[ok] = sentence
        todo &= ~ok
    return out


def reason_texts(groups, frame: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """The sentence of each row's reason group (None where the group is missing)."""
    groups = np.asarray(pd.Series(groups, dtype="object").where(lambda s: s.notna(), None).to_numpy(), dtype=object)
    out = np.full(len(groups), None, dtype=object)
    for name in pd.unique(groups[pd.notna(groups)]):
        rows = groups == name
        group = BY_GROUP.get(name)
        if group is None or group.context or not group.reasons:
            continue
        out[rows] = phrase(group.reasons, Row(frame.iloc[np.flatnonzero(rows)]), as_of)
    return out


def reason_sentence(group: str | None, row, as_of: pd.Timestamp) -> str | None:
    """One sentence for a reason group, from one customer's feature row (a dict or Series)."""
    if group is None or (isinstance(group, float) and math.isnan(group)):
        return None
    return reason_texts([group], pd.DataFrame([dict(row)]), as_of)[0]


def actionable_reasons(groups: pd.DataFrame, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The reason group columns as a manager can act on them: context groups (the static
    profile) removed, a summary group named as what moved it for this client (``stands_for``,
    read from the feature rows ``frame``, aligned with ``groups``), a group named twice kept
    once, and the remaining reasons moved up, so reason_group_1 is the leading reason."""
    values = groups.to_numpy(dtype=object).copy()
    values[np.isin(values, np.asarray(CONTEXT_GROUPS, dtype=object)) | pd.isna(values)] = None
    if frame is not None and values.size:
        row = Row(frame.reset_index(drop=True))
        for g in GROUPS:
            if not g.stands_for:
                continue
            hit = values == g.name
            rows = hit.any(axis=1)
            if not rows.any():
                continue
            sub = row.subset(rows)
            conditions = [sub.holds(when) for _, when in g.stands_for]
            names = np.empty(len(g.stands_for), dtype=object)
            names[:] = [name for name, _ in g.stands_for]
            choice = np.select(conditions, np.arange(len(names)), default=-1)
            resolved = np.where(choice >= 0, names[np.maximum(choice, 0)], g.name)
            block = values[rows]
            block[hit[rows]] = np.broadcast_to(resolved[:, None], block.shape)[hit[rows]]
            values[rows] = block
        for j in range(1, values.shape[1]):  # a group named twice: keep the first
            for i in range(j):
                values[(values[:, j] == values[:, i]) & pd.notna(values[:, j]), j] = None
    empty = np.vectorize(lambda v: v is None, otypes=[bool])(values) if values.size else np.zeros(values.shape, bool)
    order = np.argsort(empty, axis=1, kind="stable")
    return pd.DataFrame(np.take_along_axis(values, order, axis=1), index=groups.index, columns=groups.columns, dtype=object)


def choose_actions(lead, frame: pd.DataFrame) -> np.ndarray:
    """The action key of each row: the first action of the leading reason's group that fits
    where the client is (``features.groups.ACTIONS``); ``none`` when nothing raises the risk,
    None where the row has no reasons (not explained)."""
    lead = np.asarray(pd.Series(lead, dtype="object").to_numpy(), dtype=object)
    out = np.full(len(lead), None, dtype=object)
    row = Row(frame)
    for name in pd.unique(lead[pd.notna(lead)]):
        rows = lead == name
        group = BY_GROUP.get(name)
        keys = [k for k in (group.actions if group else ()) if k != "win_back"] or ["check_in"]
        sub = row.subset(rows)
        conditions = [sub.holds(ACTION_WHEN[k]) for k in keys]
        out[rows] = np.select(conditions, keys, default="check_in").astype(object)
    return out


def action_texts(keys, actions: dict[str, str] | None = None) -> np.ndarray:
    """The words of each action key (``actions`` overrides ``DEFAULT_ACTIONS`` by key)."""
    table = {**DEFAULT_ACTIONS, **(actions or {})}
    return np.asarray([table.get(k) if isinstance(k, str) else None for k in np.asarray(keys, dtype=object).tolist()],
                      dtype=object)


def recommended_action(group: str | None, row, actions: dict[str, str] | None = None) -> str:
    """The action that fits one customer's leading reason and lifecycle place."""
    if group is None or (isinstance(group, float) and math.isnan(group)):
        return action_texts(["none"], actions)[0]
    key = choose_actions([group], pd.DataFrame([dict(row)]))[0]
    return action_texts([key], actions)[0]


def profile_columns(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, label) of the static profile present in ``frame``: the context groups' declared
    columns, then any other attribute column (``attr_<name>``)."""
    cols = []
    for g in GROUPS:
        if g.context:
            cols += [(c, label) for c, label in g.profile.items() if c in frame.columns]
    cols += [(c, c.removeprefix("attr_").replace("_", " ")) for c in frame.columns if c.startswith("attr_")]
    return cols


def profile_text(frame: pd.DataFrame) -> np.ndarray:
    """``segment: trade; channel: referral; region: north``: context for the caller, never a reason."""
    row = Row(frame)
    out = np.full(len(frame), "", dtype=object)
    for col, label in profile_columns(frame):
        values = row.text(col)
        known = pd.notna(values)
        if not known.any():
            continue
        piece = np.full(len(frame), "", dtype=object)
        piece[known] = label + ": " + values[known].astype(str).astype(object)
        sep = np.where((out != "") & known, "; ", "")
        out = out + sep + piece
    return np.where(out == "", None, out)


def lapse_texts(frame: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """The first reason on the win-back list: how long they have been gone against how they bought."""
    return phrase(LAPSE_REASONS, Row(frame), as_of)


def clue_groups(frame: pd.DataFrame, k: int = 2) -> pd.DataFrame:
    """On the win-back list, the groups whose ``clue`` holds (likely reasons the client left),
    in ``CLUE_ORDER``, at most ``k`` per client."""
    row = Row(frame)
    hits = np.column_stack([row.holds(BY_GROUP[g].clue) & _has_columns(frame, BY_GROUP[g].clue) for g in CLUE_ORDER]) \
        if len(frame) else np.zeros((0, len(CLUE_ORDER)), bool)
    names = np.asarray(CLUE_ORDER, dtype=object)
    order = np.argsort(~hits, axis=1, kind="stable")[:, :k]
    chosen = np.where(np.take_along_axis(hits, order, axis=1), names[order], None)
    return pd.DataFrame(chosen, index=frame.index, columns=[f"clue_{i + 1}" for i in range(k)], dtype=object)


def _has_columns(frame: pd.DataFrame, when: str | None) -> bool:
    return when is not None and any(c in frame.columns for c in condition_names(when))
