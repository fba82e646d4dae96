"""The retention manager's two lists, for every client as of a date.

- ``at_risk`` (the retention list): clients who can still be kept, with a bounded risk
  ("38% within 90 days"), rank, tier, value at risk, reasons in plain words, the action that
  fits the leading reason and where the client is, and the static profile as context;
- ``win_back``: clients who have already lapsed by the rule of ``lapse_rule`` (a former
  client in all but name), ranked by the value they brought, with how they lapsed and the
  likely reasons, and a win-back action.

Both lists carry what changed since the previous scoring (``compare_with_previous``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from models.reasons import (action_texts, actionable_reasons, choose_actions, clue_groups, lapse_texts, profile_text,
                            reason_texts)

LIST_COLUMNS = [
    "customer_id", "rank", "risk", "risk_in_words", "tier", "new_high_tier", "new_on_list", "risk_change",
    "lifecycle_stage", "value_at_risk", "reason_1", "reason_2", "reason_3", "action_key", "action", "profile",
    "reason_group_1", "reason_group_2", "reason_group_3", "last_order_at", "last_contact_at", "last_nps",
    "open_complaints", "model_version", "as_of",
]
WIN_BACK_COLUMNS = [
    "customer_id", "rank", "lifecycle_stage", "value_per_year", "amount_total", "orders_total", "last_order_at",
    "days_since_last_order", "usual_gap_days", "lapse_rule", "new_on_list", "reason_1", "reason_2", "reason_3",
    "action_key", "action", "profile", "reason_group_1", "reason_group_2", "reason_group_3", "last_contact_at",
    "last_nps", "open_complaints", "as_of",
]
TIERS = ("high", "medium", "low")
SIGNS_OF_LIFE = ("days_since_last_order", "days_since_last_inbound", "days_since_last_nps", "days_since_last_complaint")


@dataclass(frozen=True)
class LapseRule:
    """When a client counts as already lapsed (a former client in all but name), from their own history.

    A client is lapsed when any of these holds:
    - ``no order``: no order for longer than max(``order_gaps`` x their usual days between
      orders, ``horizon_days``); a one-time buyer's usual gap is the median of the clients'
      (their own rhythm is unknown);
    - ``no sign of life``: for a client with inbound activity on record, nothing from them
      at all (no order, inbound interaction, NPS answer or complaint) for longer than
      ``silence_gaps`` x their usual days between orders, kept between ``min_silence_days``
      and ``horizon_days``;
    - ``BG/NBD``: the buy-till-you-die probability of being alive below ``p_alive_below``.
    ``enabled`` False turns it off (everyone stays on the retention list).
    """
    order_gaps: float = 3.0
    silence_gaps: float = 1.0
    min_silence_days: float = 30.0
    p_alive_below: float = 0.1
    horizon_days: int = 90
    enabled: bool = True


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def known_gaps(features: pd.DataFrame) -> np.ndarray:
    """The clients' known usual days between orders (``mean_gap_days`` where finite): what the
    one-time buyers' fallback is the median of (a sharded scoring gathers them from its shards)."""
    gap = _col(features, "mean_gap_days")
    return gap[np.isfinite(gap)]


def median_gap(gaps: np.ndarray) -> float:
    """The one-time buyers' usual gap: the median of the known gaps (NaN without any)."""
    return float(np.median(gaps)) if len(gaps) else np.nan


def usual_gap_days(features: pd.DataFrame, fallback: float | None = None) -> np.ndarray:
    """Each client's usual days between orders; one-time buyers get the clients' median
    (``fallback``: that median, computed over more clients than ``features``)."""
    gap = _col(features, "mean_gap_days")
    known = np.isfinite(gap)
    if fallback is None:
        fallback = median_gap(gap[known])
    return np.where(known, gap, fallback)


def lapse_rule(features: pd.DataFrame, rule: LapseRule = LapseRule(), fallback_gap: float | None = None) -> np.ndarray:
    """Which part of ``LapseRule`` marks each client as lapsed ('no order', 'no sign of life',
    'BG/NBD'), or None for a client who can still be kept (``fallback_gap``: see ``usual_gap_days``)."""
    out = np.full(len(features), None, dtype=object)
    if not rule.enabled or not len(features):
        return out
    gap = usual_gap_days(features, fallback_gap)
    gap = np.where(np.isfinite(gap), gap, 0.0)
    since_order = _col(features, "days_since_last_order")
    with np.errstate(invalid="ignore"):
        silence = np.fmin.reduce([_col(features, c) for c in SIGNS_OF_LIFE])
        inbound = np.nan_to_num(_col(features, "inbound_total")) > 0
        p_alive = _col(features, "btyd_p_alive")
        rules = [
            ("no order", since_order > np.maximum(rule.order_gaps * gap, rule.horizon_days)),
            ("no sign of life", inbound & (silence > np.clip(rule.silence_gaps * gap, rule.min_silence_days,
                                                             max(rule.min_silence_days, rule.horizon_days)))),
            ("BG/NBD", p_alive < rule.p_alive_below),
        ]
    for name, hit in reversed(rules):  # the first rule that holds names it
        out[hit] = name
    return out


def bound_risk(risk, floor: float = 0.01, ceiling: float = 0.99) -> np.ndarray:
    """Risk strictly between 0 and 1: a calibrated probability of 0 or 1 is a statement no
    model can make about a person (an isotonic step fitted on few clients), so it is bounded."""
    return np.clip(np.asarray(risk, dtype=float), floor, ceiling)


def risk_in_words(risk, horizon_days: int) -> np.ndarray:
    """'38% within 90 days' (whole percent; the bounds keep it off 0% and 100%)."""
    pct = np.clip(np.round(np.asarray(risk, dtype=float) * 100), 1, 99).astype(np.int64)
    words = np.asarray([f"{p}% within {horizon_days} days" for p in range(101)], dtype=object)
    return words[pct]


def assign_tiers(risk: pd.Series, rank: pd.Series, *, mode: str = "share", high: float = 0.5, medium: float = 0.2,
                 capacity: int = 500, high_share: float = 0.3, medium_share: float = 0.3) -> pd.Series:
    """high / medium / low:
    - ``share`` (default): the first ``high_share`` of the list in rank order are high, the
      next ``medium_share`` medium;
    - ``capacity``: the first ``capacity`` in rank order are high, the next ``capacity`` medium;
    - ``thresholds``: by calibrated risk, at or above ``high`` / ``medium``."""
    r = rank.to_numpy()
    if mode == "share":
        n = len(r)
        n_high = int(np.floor(high_share * n))
        n_medium = int(np.floor((high_share + medium_share) * n))
        tiers = np.select([r <= n_high, r <= n_medium], ["high", "medium"], "low")
    elif mode == "capacity":
        tiers = np.select([r <= capacity, r <= 2 * capacity], ["high", "medium"], "low")
    elif mode == "thresholds":
        p = risk.to_numpy()
        tiers = np.select([p >= high, p >= medium], ["high", "medium"], "low")
    else:
        raise ValueError(f"unknown tier mode {mode!r}: use share, capacity or thresholds")
    return pd.Series(tiers, index=risk.index, dtype="object")


def rows_to_explain(risk: pd.Series, revenue: pd.Series, *, rank_by: str = "risk", actionable_share: float = 0.2,
                    explain_all: bool = False, keep: np.ndarray | None = None,
                    risk_bounds: tuple[float, float] = (0.01, 0.99), max_rows: int | None = None,
                    min_rows: int = 0) -> np.ndarray:
    """Which rows get reasons: the actionable top ``actionable_share`` of the retention list
    in ``rank_by`` order, at least ``min_rows`` (a small base: all of it) and at most
    ``max_rows`` (or all of its rows with ``explain_all``);
    ``keep`` marks the rows on the retention list (default: all). TreeSHAP is the cost of
    scoring, so only they pay it."""
    keep = np.ones(len(risk), bool) if keep is None else np.asarray(keep, bool)
    if explain_all:
        return keep.copy()
    raw = risk.to_numpy(dtype=float)
    key = bound_risk(raw, *risk_bounds) * revenue.fillna(0.0).to_numpy(dtype=float) if rank_by == "value_at_risk" else raw
    key = np.where(keep, key, -np.inf)
    n = max(int(np.ceil(actionable_share * keep.sum())), min(int(min_rows), int(keep.sum())))
    n = n if max_rows is None else min(n, int(max_rows))
    wanted = np.zeros(len(key), bool)
    wanted[np.argsort(-key, kind="stable")[:n]] = True
    return wanted & keep


def _dates(as_of: pd.Timestamp, out: pd.DataFrame, col: str) -> pd.Series:
    if col not in out:
        return pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    return (as_of - pd.to_timedelta(pd.to_numeric(out[col], errors="coerce"), unit="D")).dt.floor("D")


def _facts(out: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    return out.assign(
        last_order_at=_dates(as_of, out, "days_since_last_order"),
        last_contact_at=_dates(as_of, out, "days_since_last_outbound"),
        last_nps=pd.to_numeric(out["nps_last_score"], errors="coerce").astype("Int64") if "nps_last_score" in out else pd.NA,
        open_complaints=pd.to_numeric(out["complaints_open"], errors="coerce").astype("Int64") if "complaints_open" in out else pd.NA,
        profile=profile_text(out),
        as_of=as_of,
    )


def build_at_risk(scored: pd.DataFrame, features: pd.DataFrame, *, as_of: pd.Timestamp, model_version: str | None,
                  rank_by: str = "risk", tiers: dict | None = None, actionable_share: float = 0.2,
                  explain_all: bool = False, actions: dict[str, str] | None = None, top_k: int = 3,
                  horizon_days: int = 90, risk_bounds: tuple[float, float] = (0.01, 0.99)) -> pd.DataFrame:
    """The retention list: the served model's output (customer_id, risk, reason_group_i ...)
    joined to the clients' facts and ranked.

    ``scored`` and ``features``: the clients who can still be kept (the lapsed ones go to
    ``build_win_back``), one row each at ``as_of``. ``rank_by``: 'risk' or 'value_at_risk'
    (risk x trailing-12-month revenue). Reasons in words and actions are written for the rows
    a boolean ``explained`` column of ``scored`` marks (the rows the model explained), else for
    the actionable top ``actionable_share`` of the list, or for everyone with ``explain_all``;
    the profile (context, never a reason) for everyone.
    """
    if rank_by not in ("risk", "value_at_risk"):
        raise ValueError(f"rank_by must be 'risk' or 'value_at_risk', not {rank_by!r}")
    if "explained" not in scored:  # the actionable top of the list in rank order, or everyone
        order = _ranked(_risk_columns(scored.merge(features[["customer_id", *[c for c in ("amount_365d",) if c in features]]],
                                                   on="customer_id", how="left"), risk_bounds), rank_by)
        n_explained = len(order) if explain_all else int(np.ceil(actionable_share * len(order)))
        explained = np.zeros(len(order), dtype=bool)
        explained[order.index.to_numpy()[:n_explained]] = True
        scored = scored.assign(explained=explained)
    rows = at_risk_rows(scored, features, as_of=as_of, model_version=model_version, actions=actions, top_k=top_k,
                        horizon_days=horizon_days, risk_bounds=risk_bounds)
    return rank_at_risk(rows, rank_by=rank_by, tiers=tiers)


def _risk_columns(out: pd.DataFrame, risk_bounds: tuple[float, float]) -> pd.DataFrame:
    out["_raw_risk"] = pd.to_numeric(out["risk"], errors="coerce").fillna(0.0)
    out["risk"] = bound_risk(out["_raw_risk"], *risk_bounds)
    revenue = pd.to_numeric(out["amount_365d"], errors="coerce").fillna(0.0) if "amount_365d" in out else 0.0
    out["value_at_risk"] = out["risk"] * revenue
    return out


def _ranked(out: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    # the order of the model's own risk: the bounds must not tie the clients beyond them
    keys = ["value_at_risk", "_raw_risk"] if rank_by == "value_at_risk" else ["_raw_risk"]
    return out.sort_values([*keys, "customer_id"], ascending=[False] * len(keys) + [True], kind="stable")


def rank_at_risk(rows: pd.DataFrame, *, rank_by: str = "risk", tiers: dict | None = None) -> pd.DataFrame:
    """The retention list from its rows (``at_risk_rows``, of one or several shards): ranked by
    ``rank_by`` (ties by customer_id), tiered (``assign_tiers``), in ``LIST_COLUMNS``."""
    if rank_by not in ("risk", "value_at_risk"):
        raise ValueError(f"rank_by must be 'risk' or 'value_at_risk', not {rank_by!r}")
    out = _ranked(rows, rank_by).reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["tier"] = assign_tiers(out["risk"], out["rank"], **(tiers or {}))
    return out[LIST_COLUMNS]


def at_risk_rows(scored: pd.DataFrame, features: pd.DataFrame, *, as_of: pd.Timestamp, model_version: str | None,
                 actions: dict[str, str] | None = None, top_k: int = 3, horizon_days: int = 90,
                 risk_bounds: tuple[float, float] = (0.01, 0.99)) -> pd.DataFrame:
    """Everything of the retention list that is per client (``build_at_risk`` without the rank
    and the tier): ``scored`` carries a boolean ``explained`` column; the rows keep the helper
    column ``_raw_risk`` that ``rank_at_risk`` orders by. Any subset of the clients (a shard)
    gives those clients' rows."""
    as_of = pd.Timestamp(as_of)
    facts = features.drop(columns=[c for c in ("cutoff", "risk") if c in features.columns])
    out = scored.drop(columns=[c for c in ("cutoff",) if c in scored.columns]).merge(facts, on="customer_id", how="left")
    out = _risk_columns(out, risk_bounds)
    out["rank"] = 0
    out["tier"] = None
    out["risk_in_words"] = risk_in_words(out["risk"], horizon_days)
    groups = [f"reason_group_{i}" for i in range(1, 4)]
    for i, col in enumerate(groups, start=1):
        if col not in out or i > top_k:
            out[col] = None
    raised = out["reason_group_1"].notna().to_numpy()  # any group, the profile included, raises the risk
    out[groups] = actionable_reasons(out[groups].astype("object"), out)
    explained = out["explained"].fillna(False).astype(bool).to_numpy()  # the rows the model was asked to explain
    head = out[explained]
    for i, col in enumerate(groups, start=1):
        words = np.full(len(out), None, dtype=object)
        words[explained] = reason_texts(head[col].to_numpy(dtype=object), head, as_of)
        out[f"reason_{i}"] = words
    lead = out["reason_group_1"].to_numpy(dtype=object)
    keys = np.full(len(out), None, dtype=object)
    keys[explained] = choose_actions(lead[explained], head)
    # explained, and only the profile or the stage raise the risk: a personal check-in; nothing does: none
    keys[explained & pd.isna(lead)] = np.where(raised[explained & pd.isna(lead)], "check_in", "none")
    # an open complaint among the client's reasons comes first, whatever leads: an onboarding call
    # or a loyalty gesture that ignores "1 complaint open for 30 days" makes it worse
    keys[explained & open_complaint_named(out[groups], out)] = "service_recovery"
    out["action_key"] = keys
    out["action"] = action_texts(keys, actions)
    out = _facts(out, as_of)
    out["lifecycle_stage"] = out["lifecycle_stage"].astype("object") if "lifecycle_stage" in out else None
    out["model_version"] = model_version
    for col in ("new_high_tier", "new_on_list"):
        out[col] = pd.array([pd.NA] * len(out), dtype="boolean")
    out["risk_change"] = np.nan
    return out[[*LIST_COLUMNS, "_raw_risk"]]


def open_complaint_named(groups: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """Rows whose reasons name the complaints group while a complaint is still open."""
    named = (groups.to_numpy(dtype=object) == "complaints").any(axis=1)
    open_now = np.nan_to_num(_col(frame, "complaints_open")) >= 1
    return named & open_now


def value_per_year(features: pd.DataFrame) -> np.ndarray:
    """What a client brought per year while they bought: all their orders' value over the span
    from the first order to the last (at least one year, so a one-time buyer's value is their order)."""
    total = np.nan_to_num(_col(features, "amount_total"))
    span = np.nan_to_num(_col(features, "tenure_days") - _col(features, "days_since_last_order"))
    return total * 365.0 / np.maximum(span, 365.0)


def build_win_back(features: pd.DataFrame, lapsed: np.ndarray, *, as_of: pd.Timestamp,
                   actions: dict[str, str] | None = None) -> pd.DataFrame:
    """The win-back list: the lapsed clients (``features`` rows, ``lapsed`` the rule that
    marked each, from ``lapse_rule``), lifecycle_stage 'former', ranked by the value they
    brought per year; reason_1 says how they lapsed against how they bought, reason_2..3 the
    likely reasons they left (an open complaint, a detractor answer, no contact from us)."""
    return rank_win_back(win_back_rows(features, lapsed, as_of=as_of, actions=actions))


def rank_win_back(rows: pd.DataFrame) -> pd.DataFrame:
    """The win-back list from its rows (``win_back_rows``, of one or several shards), ranked by
    the value they brought per year (ties by customer_id)."""
    out = rows.sort_values(["value_per_year", "customer_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out[WIN_BACK_COLUMNS]


def win_back_rows(features: pd.DataFrame, lapsed: np.ndarray, *, as_of: pd.Timestamp,
                  actions: dict[str, str] | None = None, fallback_gap: float | None = None) -> pd.DataFrame:
    """Everything of the win-back list that is per client (``build_win_back`` without the
    rank); ``fallback_gap``: the one-time buyers' usual gap over all lapsed clients, when
    ``features`` holds only some of them (``usual_gap_days``)."""
    as_of = pd.Timestamp(as_of)
    out = features.drop(columns=[c for c in ("cutoff",) if c in features.columns]).assign(lapse_rule=lapsed)
    out["value_per_year"] = value_per_year(out)
    out["usual_gap_days"] = np.round(usual_gap_days(out, fallback_gap), 1)
    out = out.reset_index(drop=True)
    out["rank"] = 0
    out["lifecycle_stage"] = "former"
    clues = clue_groups(out, 2)
    out["reason_group_1"] = "purchases"
    out["reason_group_2"], out["reason_group_3"] = clues["clue_1"].to_numpy(), clues["clue_2"].to_numpy()
    with np.errstate(invalid="ignore"):
        silence = np.fmin.reduce([_col(out, c) for c in SIGNS_OF_LIFE])
    out["reason_1"] = lapse_texts(out.assign(silence_days=silence, lapsed_by_silence=(out["lapse_rule"] == "no sign of life")
                                             .astype(float)), as_of)
    for i in (2, 3):
        out[f"reason_{i}"] = reason_texts(out[f"reason_group_{i}"].to_numpy(dtype=object), out, as_of)
    out["action_key"] = "win_back"
    out["action"] = action_texts(out["action_key"], actions)
    for col in ("amount_total", "orders_total", "days_since_last_order"):
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out else np.nan
    out["orders_total"] = out["orders_total"].round().astype("Int64")
    out["days_since_last_order"] = np.floor(out["days_since_last_order"]).astype("Int64")
    out = _facts(out, as_of)
    out["new_on_list"] = pd.array([pd.NA] * len(out), dtype="boolean")
    return out[WIN_BACK_COLUMNS]


def split_lists(features: pd.DataFrame, rule: LapseRule, *, contractual: bool = False,
                rule_with_cancellations: bool = False, fallback_gap: float | None = None) -> np.ndarray:
    """The lapse rule of each client (None: can still be kept). On data with a cancellations
    table a cancelled client is no longer a client at all (in neither list), and by default the
    silence rule does not apply: a contract that was not cancelled is still a client.
    ``fallback_gap``: see ``usual_gap_days``."""
    if contractual and not rule_with_cancellations:
        return np.full(len(features), None, dtype=object)
    return lapse_rule(features, rule, fallback_gap)


def compare_with_previous(at_risk: pd.DataFrame, win_back: pd.DataFrame,
                          previous: tuple[pd.DataFrame, pd.DataFrame] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``risk_change`` (risk now minus at the previous scoring, empty for a client not on the
    previous retention list), ``new_high_tier`` (high now and not high before) and
    ``new_on_list``; all empty when there is no previous scoring."""
    if previous is None:
        return at_risk, win_back
    before, before_wb = previous
    ids = before["customer_id"].astype(str)
    prev_risk = pd.Series(pd.to_numeric(before["risk"], errors="coerce").to_numpy(), index=ids)
    prev_high = pd.Series((before["tier"] == "high").to_numpy(), index=ids)
    now = at_risk["customer_id"].astype(str)
    risk_change = (at_risk["risk"].to_numpy(dtype=float) - prev_risk.reindex(now).to_numpy(dtype=float))
    on_before = now.isin(ids).to_numpy()
    was_high = prev_high.reindex(now).fillna(False).to_numpy(dtype=bool)
    at_risk = at_risk.assign(
        risk_change=np.round(risk_change, 4),
        new_high_tier=pd.array((at_risk["tier"] == "high").to_numpy() & ~was_high, dtype="boolean"),
        new_on_list=pd.array(~on_before, dtype="boolean"))
    wb_before = set(before_wb["customer_id"].astype(str)) if before_wb is not None else set()
    win_back = win_back.assign(new_on_list=pd.array(~win_back["customer_id"].astype(str).isin(wb_before).to_numpy(),
                                                    dtype="boolean"))
    return at_risk, win_back


def high_tier_changes(at_risk: pd.DataFrame, win_back: pd.DataFrame,
                      previous: tuple[pd.DataFrame, pd.DataFrame] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Who entered the high tier since the previous scoring (rows of ``at_risk``) and who left
    it (customer_id, previous risk and rank, and where they are now: medium, low, the win-back
    list, or no longer a client)."""
    if previous is None:
        return at_risk.iloc[:0], pd.DataFrame(columns=["customer_id", "previous_risk", "previous_rank", "now"])
    before, _ = previous
    entered = at_risk[at_risk["new_high_tier"].fillna(False).astype(bool)]
    was = before[before["tier"] == "high"]
    high_now = set(at_risk.loc[at_risk["tier"] == "high", "customer_id"].astype(str))
    left = was[~was["customer_id"].astype(str).isin(high_now)]
    tier_now = pd.Series(at_risk["tier"].to_numpy(), index=at_risk["customer_id"].astype(str))
    where = tier_now.reindex(left["customer_id"].astype(str)).to_numpy(dtype=object)
    on_wb = left["customer_id"].astype(str).isin(set(win_back["customer_id"].astype(str))).to_numpy()
    now = np.where(pd.notna(where), np.char.add("now ", where.astype(str)).astype(object) if len(where) else where,
                   np.where(on_wb, "on the win-back list", "no longer a client"))
    return entered, pd.DataFrame({"customer_id": left["customer_id"].to_numpy(), "previous_risk": left["risk"].to_numpy(),
                                  "previous_rank": left["rank"].to_numpy(), "now": now})


def make_lists(predict, features: pd.DataFrame, *, as_of: pd.Timestamp, model_version: str | None,
               horizon_days: int = 90, contractual: bool = False, lapse: LapseRule | None = None,
               rule_with_cancellations: bool = False, rank_by: str = "risk", tiers: dict | None = None,
               actionable_share: float = 0.2, explain_all: bool = False, actions: dict[str, str] | None = None,
               top_k: int = 3, risk_bounds: tuple[float, float] = (0.01, 0.99), driver_sample: int = 2000,
               explain_max: int | None = None, explain_min: int = 0) -> "Lists":
    """Both lists from the features at ``as_of``: the lapse rule splits the clients; the model
    (``predict``: a feature frame with a boolean ``explain`` column -> customer_id, risk,
    reason_group_i ...) scores the clients who can still be kept, and TreeSHAP explains only
    the rows the retention list shows with reasons (the top ``actionable_share``, at most
    ``explain_max``), and a sample of ``driver_sample`` clients for the drivers across the base."""
    lapse = lapse or LapseRule(horizon_days=horizon_days)
    lapsed = split_lists(features, lapse, contractual=contractual, rule_with_cancellations=rule_with_cancellations)
    keep = pd.isna(lapsed)
    kept = features[keep].reset_index(drop=True)
    first = predict(kept.assign(explain=False))
    revenue = kept["amount_365d"] if "amount_365d" in kept else pd.Series(0.0, index=kept.index)
    wanted = rows_to_explain(first["risk"], revenue, rank_by=rank_by, actionable_share=actionable_share,
                             explain_all=explain_all, risk_bounds=risk_bounds, max_rows=explain_max,
                             min_rows=explain_min)
    scored = explain_rows(predict, kept, first, wanted)
    at_risk = build_at_risk(scored, kept, as_of=as_of, model_version=model_version, rank_by=rank_by, tiers=tiers,
                            actionable_share=actionable_share, explain_all=explain_all, actions=actions, top_k=top_k,
                            horizon_days=horizon_days, risk_bounds=risk_bounds)
    win_back = build_win_back(features[~keep].reset_index(drop=True), lapsed[~keep], as_of=as_of, actions=actions)
    base = base_drivers(predict, kept, sample=driver_sample)
    return Lists(at_risk, win_back, driver_table(at_risk, base))


def explain_rows(predict, kept: pd.DataFrame, first: pd.DataFrame, wanted: np.ndarray) -> pd.DataFrame:
    """``first`` (the model's output on ``kept`` without reasons) with the reason groups of the
    ``wanted`` rows (TreeSHAP on those rows only: their risk is already known) and a boolean
    ``explained`` column."""
    wanted = np.asarray(wanted, dtype=bool)
    scored = first.assign(explained=wanted)
    if wanted.any():
        explained = predict(kept[wanted].assign(explain=True))
        for col in explained.columns:
            if col.startswith(("reason_group_", "driver_")):
                values = scored[col].astype("object").to_numpy(copy=True) if col in scored else np.full(len(scored), None, dtype=object)
                values[wanted] = explained[col].to_numpy()
                scored[col] = values
    return scored


class Lists(NamedTuple):
    at_risk: pd.DataFrame
    win_back: pd.DataFrame
    drivers: pd.DataFrame


def base_drivers(predict, kept: pd.DataFrame, *, sample: int = 2000, seed: int = 0) -> pd.Series:
    """Share of each leading reason group across the whole retention list, from TreeSHAP on a
    random sample of ``sample`` clients (explaining everyone would cost what the list saves)."""
    if not len(kept) or sample <= 0:
        return pd.Series(dtype=float)
    rows = kept.iloc[driver_sample(len(kept), sample=sample, seed=seed)]
    return lead_shares(leading_reasons(predict, rows))


def driver_sample(n: int, *, sample: int = 2000, seed: int = 0) -> np.ndarray:
    """Positions (into the retention list's clients in customer order) of the clients whose
    leading reasons make the drivers across the base: all of them up to ``sample``, else a
    seeded sample (``DataFrame.sample``'s draw)."""
    if n <= sample:
        return np.arange(n)
    return pd.RangeIndex(n).to_series().sample(sample, random_state=seed).to_numpy()


def leading_reasons(predict, rows: pd.DataFrame) -> pd.Series:
    """Each row's leading actionable reason group (None: nothing raises the risk), by TreeSHAP."""
    groups = [c for c in ("reason_group_1", "reason_group_2", "reason_group_3")]
    explained = predict(rows.assign(explain=True))
    return actionable_reasons(explained[[c for c in groups if c in explained]].astype("object"), rows)["reason_group_1"]


def lead_shares(lead: pd.Series) -> pd.Series:
    """Share of each leading reason group ('none': nothing raises the risk)."""
    return lead.fillna("none").value_counts(normalize=True)


def driver_table(at_risk: pd.DataFrame, base: pd.Series | None = None) -> pd.DataFrame:
    """How often each reason group leads: across the base (a sample, ``base_drivers``), among
    the clients explained at the top of the list, and in the high tier."""
    explained = at_risk[at_risk["action_key"].notna()]
    lead = explained["reason_group_1"].fillna("none")
    out = pd.DataFrame({"base": base if base is not None else pd.Series(dtype=float),
                        "top_of_list": lead.value_counts(normalize=True),
                        "high_tier": lead[explained["tier"] == "high"].value_counts(normalize=True)}).fillna(0.0)
    key = "base" if base is not None and len(base) else "top_of_list"
    return out.sort_values(key, ascending=False).rename_axis("leading_reason_group").reset_index()
