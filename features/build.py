"""Point-in-time features and the population at each cutoff.

Time semantics, held everywhere:
- a feature at cutoff ``c`` reads only facts strictly before ``c``: an order, NPS answer,
  interaction or complaint stamped at or after ``c`` does not exist yet; a complaint
  opened before ``c`` and resolved at or after ``c`` is open at ``c``;
- the population at ``c``: customers with at least one order before ``c`` who are still
  clients at ``c``: no cancellation before ``c`` when the data has cancellations
  (a contractual business), otherwise an order within ``active_window_days`` before ``c``.

Engine (``features.history`` reads the tables): DuckDB reads each table once, with one SQL
query whose time bound is written out, keyed by an integer per customer. Orders, NPS
answers and complaints are held sorted by (customer, time), and each cutoff is computed
from them directly, one function per feature group: counts and sums over the events
stamped before ``c`` (or inside a window ``[c - w, c)``), the last event before ``c`` as
the last element of the run's prefix, the longest gap between orders as a slice maximum.
The interactions are read span by span (the events between two cutoffs, each once) and
folded into a per-customer state (``_Touches``), the next span read in the background
while the current cutoff is computed. Nothing is re-read or re-grouped for a cutoff:
twelve monthly cutoffs cost one read of each table.

Inputs: validated tables (``features.inputs``) as pandas frames, or paths to validated
Parquet files (DuckDB reads them directly, so the tables never have to fit in pandas).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

from features import btyd
from features.catalogue import BY_NAME
from features.config import FeatureConfig
from features.groups import BY_GROUP
from features.groups import skipped_groups as declared_skips
from features.history import (DAY, NEVER, PAST, Events, History, Source, first_in_run, gaps, last_in_run, micros,
                              parquet_sql, safe_name, segment_max)

__all__ = ["KEYS", "BTYD_INPUTS", "build_features", "build_population", "channel_list", "choose_channels", "feature_columns",
           "fit_btyd",
           "features_for_scoring", "is_contractual", "nps_category", "parquet_sql", "returning_customers",
           "skipped_groups"]

KEYS = ["customer_id", "cutoff"]
ORDER_WINDOWS = (30, 90, 365)
INTERACTION_WINDOWS = (30, 90)
CHANNEL_WINDOW = 90
FIRST_DAYS = 100  # Coleman: the first 100 days after the first order
# buy-till-you-die inputs at the cutoff, in weeks: repeat order days, age at the last and at
# the cutoff, all from the first order. They ride along in the feature table for the
# Pareto/NBD baseline; they are not model features.
BTYD_INPUTS = ("btyd_x", "btyd_t_x", "btyd_T")
NPS_LEVELS = ("detractor", "none", "passive", "promoter")
STAGES = ("adherent", "buyer", "regular")
PHASES = ("acclimate", "accomplish", "activate", "admit", "adopt", "advocate", "affirm")

log = logging.getLogger(__name__)


def is_contractual(tables: Mapping[str, Source]) -> bool:
    """A business with a cancellations table ends relationships by cancellation."""
    return "cancellations" in tables


def _days(later, earlier) -> np.ndarray:
    """Days between two int64 microsecond times (arrays or scalars)."""
    return (np.asarray(later, dtype=np.int64) - np.asarray(earlier, dtype=np.int64)) / DAY


def _where(condition: np.ndarray, values, missing=np.nan) -> np.ndarray:
    return np.where(condition, values, missing).astype("float64")


def _take(values: np.ndarray, index: np.ndarray, ok: np.ndarray, missing) -> np.ndarray:
    """``values[index]`` where ``ok``, else ``missing`` (index may be out of range where not ok)."""
    if len(values) == 0:
        return np.full(len(index), missing, dtype=values.dtype)
    return np.where(ok, values[np.clip(index, 0, len(values) - 1)], missing)



class _Prepared:
    """Per-event facts of the history that do not depend on the cutoff, computed once."""

    def __init__(self, h: History, config: FeatureConfig):
        self.h, self.config = h, config
        o = h.orders
        # orders at one timestamp form one step: a step's gap is measured from the customer's
        # previous step (NaN at the first); every row of a step carries its step's gap
        new_customer = first_in_run(o.key)
        new_step = first_in_run(o.key, o.t)
        step_of_row = np.cumsum(new_step) - 1
        step_t = o.t[new_step]
        step_gap = np.r_[np.nan, _days(step_t[1:], step_t[:-1])]
        step_gap[new_customer[new_step]] = np.nan
        self.order_gap = np.r_[step_gap[step_of_row], np.nan]  # a spare NaN for segment_max
        self.order_new_day = first_in_run(o.key, o.t // DAY)
        self.first_order = _take(o.t, o.start[:-1], np.diff(o.start) > 0, NEVER)

        # the emotional bank account: an event's deposit at cutoff c is w * exp(-lambda * (c - t))
        # = [w * exp(-lambda * (ref - t))] * exp(lambda * (ref - c)), ref = the last cutoff, so
        # each event's weight is computed once (every exponent <= 0: no overflow)
        self.bank_lambda = math.log(2) / config.bank.half_life_days
        self.ref = h.last_cutoff
        w = config.bank
        self.order_bank = w.order * self._decay(o.t)
        self._others = False

    def others(self) -> _Prepared:
        """Prepare the NPS answers and complaints, once they are read (``History.wait``)."""
        if self._others:
            return self
        h, w = self.h.wait(), self.config.bank
        self._others = True
        if "nps" in h.has:
            a = h.nps
            # answers at one timestamp form one step (rows sorted by score: the lowest counts);
            # the change is between the last two steps
            new_customer = first_in_run(a.key)
            new = first_in_run(a.key, a.t)
            step = np.cumsum(new) - 1
            step_score = a.cols["score"][new]
            prev = np.r_[np.nan, step_score[:-1]]
            prev[new_customer[new]] = np.nan
            self.nps_score, self.nps_prev = step_score[step], prev[step]
            score = a.cols["score"]
            self.nps_bank = (np.where(score >= 9, w.promoter_answer, 0.0) + np.where(score <= 6, w.detractor_answer, 0.0)) \
                * self._decay(a.t)
        if "complaints" in h.has:
            x = h.complaints
            resolved = x.cols["resolved"]
            self.complaint_bank = w.complaint * self._decay(x.t)
            self.resolved_bank = np.where(resolved < self.ref, w.resolved_complaint * self._decay(np.minimum(resolved, self.ref)), 0.0)
        return self

    def _decay(self, t: np.ndarray) -> np.ndarray:
        age = np.maximum(_days(self.ref, t), 0.0)  # events after the last cutoff are never read
        return np.exp(-self.bank_lambda * age)


class _Cutoff:
    """The features at cutoff ``c`` (int64 microseconds): the orders before it, counted for
    every customer (the population reads them), then ``select`` the customers to describe."""

    def __init__(self, p: _Prepared, c: int):
        self.p, self.h, self.c = p, p.h, c
        o = self.h.orders
        self.order_before = o.t < c  # orders also hold the label window after the last cutoff
        self.n_orders = o.count(self.order_before)
        self.last_row_all = o.last_before(self.n_orders)
        # every customer's last order before the cutoff (NEVER without one): the silence reads it per event
        self.last_all = _take(o.t, self.last_row_all, self.n_orders > 0, NEVER)

    def select(self, keys: np.ndarray) -> _Cutoff:
        """Describe the customers ``keys`` (ascending)."""
        self.keys = keys
        self.has_order = self.n_orders[keys] > 0
        self.first_t = self.p.first_order[keys]
        self.last_t = self.last_all[keys]
        self.last_row = self.last_row_all[keys]
        return self

    def purchases(self) -> dict[str, np.ndarray]:
        p, o, c, keys, has = self.p, self.h.orders, self.c, self.keys, self.has_order
        refunds = self.h.refunds  # credit notes: returns, never purchases
        n = self.n_orders[keys].astype("float64")
        cols = {"days_since_last_order": _where(has, _days(c, self.last_t)),
                "tenure_days": _where(has, _days(c, self.first_t))}
        for w in ORDER_WINDOWS:
            inside = self.order_before & (o.t >= c - w * DAY)
            cols[f"orders_{w}d"] = o.count(inside)[keys].astype("float64")
            cols[f"amount_{w}d"] = o.total(o.cols["amount"], inside)[keys]
            if w == 365:
                credit = refunds.count((refunds.t < c) & (refunds.t >= c - w * DAY))[keys]
                cols["returns_365d"] = (o.count(inside & o.cols["returned"])[keys] + credit).astype("float64")
        cols["orders_total"] = _where(has, n)
        cols["amount_total"] = _where(has, o.total(o.cols["amount"], self.order_before)[keys])
        credit = refunds.count(refunds.t < c)[keys]
        cols["returns_total"] = _where(has, o.count(self.order_before & o.cols["returned"])[keys] + credit)
        cols["last_gap_days"] = _where(has, p.order_gap[self.last_row])
        cols["max_gap_days"] = segment_max(p.order_gap, o.start[keys], o.start[keys] + self.n_orders[keys])
        mean_gap = _where(has & (n > 1), _days(self.last_t, self.first_t) / np.maximum(n - 1, 1))
        cols["mean_gap_days"] = mean_gap
        order_days = o.count(self.order_before & p.order_new_day)[keys]
        with np.errstate(divide="ignore", invalid="ignore"):  # all orders on one day: no rhythm to be overdue by
            cols["overdue_ratio"] = _where((mean_gap > 0) & (order_days > 1), cols["days_since_last_order"] / mean_gap)
        first_day, last_day = (self.first_t // DAY) * DAY, (self.last_t // DAY) * DAY
        cols["btyd_x"] = _where(has, order_days - 1.0)
        cols["btyd_t_x"] = _where(has, _days(last_day, first_day) / 7.0)
        cols["btyd_T"] = _where(has, _days(c, first_day) / 7.0)
        return cols

    def nps(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The NPS columns, and the customers' category codes (into NPS_LEVELS)."""
        p, a, c, keys = self.p, self.h.nps, self.c, self.keys
        counts = a.count(a.before(c))
        n = counts[keys]
        answered = n > 0
        last = a.last_before(counts)[keys]
        score = _take(p.nps_score, last, answered, np.nan)
        prev = _take(p.nps_prev, last, answered, np.nan)
        category = np.select([score >= 9, score >= 7, score <= 6], [3, 2, 0], 1)
        cols = {"nps_last_score": score, "nps_change": score - prev,
                "days_since_last_nps": _where(answered, _days(c, _take(a.t, last, answered, 0))),
                "nps_answers": n.astype("float64"), "nps_never_answered": (~answered).astype("float64")}
        return cols, category

    def complaints(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """The complaint columns, the severity codes of the last complaint (-1: none) and the
        days the open complaints have been open (the bank account's withdrawal)."""
        x, c, keys, n_all = self.h.complaints, self.c, self.keys, self.h.customers
        rows = np.flatnonzero(x.t < c)  # complaints opened before the cutoff, sorted by (customer, opened)
        k, opened, resolved = x.key[rows], x.t[rows], x.cols["resolved"][rows]
        is_open = resolved >= c
        closed = ~is_open
        cols = {f"complaints_{w}d": np.bincount(k[opened >= c - w * DAY], minlength=n_all)[keys].astype("float64")
                for w in ORDER_WINDOWS}
        total = np.bincount(k, minlength=n_all)
        cols["complaints_total"] = total[keys].astype("float64")
        cols["complaints_open"] = np.bincount(k[is_open], minlength=n_all)[keys].astype("float64")
        oldest = np.full(n_all, np.nan)
        ko, open_at = k[is_open], opened[is_open]
        first = first_in_run(ko)
        oldest[ko[first]] = _days(c, open_at[first])
        cols["oldest_open_complaint_days"] = oldest[keys]
        open_days = np.bincount(ko, weights=_days(c, open_at), minlength=n_all)[keys]
        cols["open_complaint_days"] = open_days
        resolved_n = np.bincount(k[closed], minlength=n_all)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(k[closed], weights=_days(resolved[closed], opened[closed]), minlength=n_all) / resolved_n
        cols["mean_days_to_resolve"] = _where(resolved_n[keys] > 0, mean[keys])
        last = last_in_run(k)
        severity = np.full(n_all, -1, dtype=np.int32)
        severity[k[last]] = x.cols["severity"][rows][last]
        latest = np.full(n_all, PAST, dtype=np.int64)
        latest[k[last]] = opened[last]
        cols["public_complaints_365d"] = np.bincount(k[x.cols["public"][rows] & (opened >= c - 365 * DAY)],
                                                     minlength=n_all)[keys].astype("float64")
        cols["days_since_last_complaint"] = _where(total[keys] > 0, _days(c, latest[keys]))
        # recovery: bought again after a complaint was resolved
        first_resolved = np.full(n_all, NEVER, dtype=np.int64)
        np.minimum.at(first_resolved, k[closed], resolved[closed])
        cols["recovered_after_complaint"] = (self.has_order & (first_resolved[keys] < self.last_t)).astype("float64")
        return cols, severity[keys], open_days

    def bank(self, open_days: np.ndarray, touches: _Touches | None) -> np.ndarray:
        """The emotional bank account: decayed deposits minus withdrawals (see FeatureConfig.bank)."""
        p, h, c = self.p, self.h, self.c
        total = h.orders.total(p.order_bank, self.order_before)
        if touches is not None:
            total += touches.deposits
        if "nps" in h.has:
            total += h.nps.total(p.nps_bank, h.nps.before(c))
        if "complaints" in h.has:
            x = h.complaints
            total += x.total(p.complaint_bank, x.before(c))
            total += x.total(p.resolved_bank, x.cols["resolved"] < c)
        carried = math.exp(p.bank_lambda * (p.ref - c) / DAY)  # c <= ref: the deposits' decay from ref back to c
        return total[self.keys] * carried - p.config.bank.open_complaint_day * open_days


def _span(previous: int | None, c: int) -> tuple[pd.Timestamp | None, pd.Timestamp]:
    """The bounds of the span from the previous cutoff (None: the start of the data) to ``c``."""
    return (None if previous is None else pd.Timestamp(previous, unit="us")), pd.Timestamp(c, unit="us")


BLOCK = 1 << 21  # rows of interactions processed at a time (bounds the temporary arrays)


def _blocks(n: int):
    """Slices covering ``range(n)`` in blocks of ``BLOCK`` rows (views: no copies)."""
    return [slice(i, min(i + BLOCK, n)) for i in range(0, n, BLOCK)]


class _Touches:
    """The interactions, read span by span (the events between two cutoffs, once each), folded
    into a small per-customer state: touches and the latest touch each way, the company's
    first outbound touch after the first order and its touches in the first 100 days, the
    bank account's decayed outbound deposits, the silence since the last order (its start,
    latest point and longest gap so far), and the events of the last 90 days for the windows."""

    def __init__(self, p: _Prepared, channels: Sequence[str], cutoffs: Sequence[int]):
        h, n = p.h, p.h.customers
        self.cutoffs = list(cutoffs)
        self.p, self.h = p, h
        self.count = np.zeros(2 * n, dtype=np.int64)  # by slot 2k (inbound) and 2k + 1 (outbound)
        self.latest = np.full(2 * n, PAST, dtype=np.int64)
        self.first_out = np.full(n, NEVER, dtype=np.int64)
        self.out_first_days = np.zeros(n, dtype=np.int64)
        self.deposits = np.zeros(n)
        self.since = np.full(n, NEVER, dtype=np.int64)  # the last order the silence is measured from
        self.point = np.full(n, NEVER, dtype=np.int64)  # the latest order or interaction since then
        self.silence = np.zeros(n, dtype=np.int64)  # the longest gap between those points (microseconds)
        self.recent: list[Events] = []
        self.at: int | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="touches")
        self._windows = None
        # channels with their own features: each name's raw values (several raw values may clean to one name)
        self.channel_names = list(channels)
        self.code = np.full(len(h.channel_values) + 1, -1, dtype=np.int16)  # last slot: a missing channel (-1)
        for j, name in enumerate(self.channel_names):
            for v, raw in enumerate(h.channel_values):
                if safe_name(raw) == name:
                    self.code[v] = j

    def advance(self, c: int, last_order: np.ndarray, clients: np.ndarray | None = None) -> None:
        """Fold the interactions in [previous cutoff, c) into the state; ``last_order``: every
        customer's last order before ``c`` (NEVER without one).

        ``clients`` (keys, optional): the silence is then followed for them only. That is
        exact for the population at each cutoff: a client at ``c`` was either a client at the
        previous cutoff (followed then) or has a last order inside this span (restarted
        here): a non-contractual customer with no order in the active window before the
        previous cutoff and one before ``c`` has ordered since; a contractual one who was not
        a client had no order yet (a cancelled customer never returns)."""
        p, h = self.p, self.h
        span = h.interactions(*_span(self.at, c))
        later = [x for x in self.cutoffs if x > c]
        if later:  # read the next span while this one is folded in and the features computed
            h.prefetch(*_span(c, later[0]))
        key, t, slot = span.key, span.t, span.cols["slot"]
        # the silence restarts at a new order; otherwise it goes on from the latest point.
        # It and the windows are computed in a worker thread (NumPy releases the GIL; neither
        # thread writes an array that the other reads)
        restarted = last_order != self.since
        start = np.where(restarted, last_order, self.point)
        followed = np.ones(h.customers, dtype=bool)
        if clients is not None:
            followed[:] = False
            followed[clients] = True
        silence = self._pool.submit(self._silence, span, np.where(followed, last_order, NEVER), start)
        if self._windows is not None:
            self._windows.result()  # the previous cutoff's windows (they trim self.recent)
        self.recent.append(span)
        self._windows = self._pool.submit(self._window_counts, c)
        for rows in _blocks(len(span)):  # in blocks: small temporaries whatever the span's size
            self.count += np.bincount(slot[rows], minlength=len(self.count))
            np.maximum.at(self.latest, slot[rows], t[rows])
            # outbound touches: the first at or after the first order, those in the first 100
            # days (fixed per customer: read only once those days are in the past), the bank's deposits
            out = span.cols["outbound"][rows]
            out_key, out_t = key[rows][out], t[rows][out]
            first = p.first_order[out_key]
            after_first = out_t >= first
            np.minimum.at(self.first_out, out_key[after_first], out_t[after_first])
            self.out_first_days += np.bincount(out_key[after_first & (out_t < first + FIRST_DAYS * DAY)], minlength=h.customers)
            self.deposits += np.bincount(out_key, weights=p.config.bank.outbound_touch * p._decay(out_t), minlength=h.customers)
            del out, out_key, out_t, first, after_first
        longest, point = silence.result()
        self.point = np.where(followed, point, self.point)
        self.silence = np.where(followed, np.maximum(np.where(restarted, 0, self.silence), longest), self.silence)
        self.since = np.where(followed, last_order, self.since)
        self.at = c

    @staticmethod
    def _silence(span: Events, since: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The longest gap and the latest point among ``start`` and the span's interactions
        at or after ``since`` (the last order; NEVER for a customer not followed)."""
        keys, times = [], []
        for rows in _blocks(len(span)):
            key, t = span.key[rows], span.t[rows]
            after = t >= since[key]
            keys.append(key[after])
            times.append(t[after])
        return gaps(np.concatenate(keys) if keys else span.key, np.concatenate(times) if times else span.t, start)

    def _window_counts(self, c: int) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
        """Touches by slot in each window before ``c``, and per channel the count and latest
        time in its window; drops the kept events that no later window can see."""
        n, m = self.h.customers, len(self.channel_names)
        widest = max(*INTERACTION_WINDOWS, CHANNEL_WINDOW)
        low = c - widest * DAY
        self.recent = [e if e.t.min() >= low else e.where(e.t >= low) for e in self.recent if e.latest >= low]
        window = {w: np.zeros(2 * n, dtype=np.int64) for w in INTERACTION_WINDOWS}
        by_channel = np.zeros(n * m, dtype=np.int64)
        last = np.full(n * m, PAST, dtype=np.int64)
        for e in self.recent:  # the events of the widest window before c
            t, slot = e.t, e.cols["slot"]
            for w in INTERACTION_WINDOWS:
                window[w] += np.bincount(slot if w == widest else slot[t >= c - w * DAY], minlength=2 * n)
            if m:
                code = self.code[e.cols["channel"]]
                known = np.flatnonzero((code >= 0) if CHANNEL_WINDOW == widest else (code >= 0) & (t >= c - CHANNEL_WINDOW * DAY))
                slot = e.key[known] * m + code[known]
                by_channel += np.bincount(slot, minlength=n * m)
                np.maximum.at(last, slot, t[known])
        return window, by_channel, last

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def features(self, at: _Cutoff) -> dict[str, np.ndarray]:
        p, c, keys, has, n = self.p, at.c, at.keys, at.has_order, self.h.customers
        count, latest = self.count.reshape(n, 2)[keys], self.latest.reshape(n, 2)[keys]
        cols = {}
        fo = self.first_out[keys]
        seen = fo < c
        cols["days_to_first_outbound"] = _where(has, np.where(seen, _days(fo, at.first_t), _days(c, at.first_t)))
        cols["first_outbound_observed"] = (has & seen).astype("float64")
        over = has & (at.first_t <= c - FIRST_DAYS * DAY)
        cols["outbound_first_100d"] = _where(over, self.out_first_days[keys])
        cols["first_100d_observed"] = _where(has, over)
        # the longest silence since the last order: the longest gap between the order, the
        # interactions after it (either way) and the cutoff
        cols["longest_silence_days"] = _where(has, np.maximum(self.silence[keys], c - self.point[keys]) / DAY)
        last_out, last_in = latest[:, 1], latest[:, 0]
        cols["days_since_last_outbound"] = _where(count[:, 1] > 0, _days(c, last_out))
        cols["days_since_last_inbound"] = _where(count[:, 0] > 0, _days(c, last_in))
        cols["days_since_last_contact"] = _where(count.sum(axis=1) > 0, _days(c, np.maximum(last_out, last_in)))
        window, by_channel, last = self._windows.result()
        for w in INTERACTION_WINDOWS:
            counts = window[w].reshape(n, 2)[keys]
            cols[f"outbound_{w}d"] = counts[:, 1].astype("float64")
            cols[f"inbound_{w}d"] = counts[:, 0].astype("float64")
        cols["outbound_total"] = count[:, 1].astype("float64")
        cols["inbound_total"] = count[:, 0].astype("float64")
        m = len(self.channel_names)
        by_channel, last = by_channel.reshape(n, m)[keys], last.reshape(n, m)[keys]
        for j, name in enumerate(self.channel_names):
            # per channel: events in [c - 90 days, c) and the latest of them
            cols[f"channel_{name}_{CHANNEL_WINDOW}d"] = by_channel[:, j].astype("float64")
            cols[f"days_since_{name}_{CHANNEL_WINDOW}d"] = _where(by_channel[:, j] > 0, _days(c, last[:, j]))
        return cols


def _lifecycle(orders_total: np.ndarray, promoter: np.ndarray, tenure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Efremova's stage (codes into STAGES) and Coleman's phase (codes into PHASES)."""
    regular = orders_total >= 2
    stage = np.where(regular & promoter, 0, np.where(regular, 2, 1))
    phase = np.select([tenure < 2, tenure < 14, tenure < 30, tenure < 100, ~regular, ~promoter],
                      [3, 6, 2, 0, 1, 4], 5)
    return stage, phase


# -- the population and the labels -----------------------------------------------------------

def _population(h: History, c: int, active_window_days: int, n_orders: np.ndarray | None = None) -> np.ndarray:
    """Keys of the clients at cutoff ``c``, ascending (``n_orders``: each customer's orders
    before ``c``, when already counted)."""
    o = h.orders
    if "cancellations" in h.has:
        n_orders = o.count(o.t < c) if n_orders is None else n_orders
        client = (n_orders > 0) & (h.first_cancel >= c)
    else:
        client = o.count(o.between(c - int(active_window_days) * DAY, c)) > 0
    return np.flatnonzero(client)


def _labels(h: History, c: int, keys: np.ndarray, horizon_days: int) -> np.ndarray:
    """1 = the client becomes a former client in [c, c + horizon]: a cancellation there
    (contractual data) or no order there (otherwise)."""
    end = c + int(horizon_days) * DAY
    if "cancellations" in h.has:
        return (h.first_cancel[keys] <= end).astype("int8")
    o = h.orders
    bought = o.count((o.t >= c) & (o.t <= end))
    return (bought[keys] == 0).astype("int8")


def _channels(h: History, config: FeatureConfig) -> list[str]:
    """Interaction channels (as column-safe names) frequent enough before the latest cutoff to
    get their own features: at least ``channel_min_share`` of interactions, the ``max_channels``
    most frequent."""
    return choose_channels(h.channel_values, h.channel_counts, config)


def choose_channels(values: Sequence[str], counts, config: FeatureConfig) -> list[str]:
    """``_channels`` from the channels' raw values and their interactions before the latest
    cutoff (the distributed engine sums the counts over its shards, then chooses once)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() == 0:
        return []
    shares = pd.DataFrame({"channel": list(values), "share": counts / counts.sum()})
    shares = shares.sort_values(["share", "channel"], ascending=[False, True], kind="stable")
    shares["name"] = shares["channel"].map(safe_name)
    shares = shares[shares["name"] != ""].groupby("name", sort=False)["share"].sum().sort_values(ascending=False, kind="stable")
    return list(shares[shares >= config.channel_min_share].head(config.max_channels).index)


# -- public API ----------------------------------------------------------------------------

def skipped_groups(tables: Mapping[str, Source]) -> dict[str, str]:
    """Feature groups the data cannot support, with the reason (for the run's log); the
    tables each group needs are declared in ``features.groups``."""
    skipped = {k: v for k, v in declared_skips(tables).items() if k != "attributes"}
    customers = tables.get("customers")
    if customers is None or not (set(_columns(customers)) - {"customer_id", "created_at"}):
        skipped["attributes"] = BY_GROUP["attributes"].skipped
    return skipped


def _columns(source: Source) -> list[str]:
    if isinstance(source, pd.DataFrame):
        return list(source.columns)
    import duckdb

    return [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {parquet_sql(source)}").fetchall()]


def _cutoff_list(cutoffs: Iterable[pd.Timestamp]) -> list[pd.Timestamp]:
    return sorted(set(pd.to_datetime(list(cutoffs))))


def build_population(tables: Mapping[str, Source], cutoffs: Iterable[pd.Timestamp], *,
                     active_window_days: int = 365, horizon_days: int | None = None) -> pd.DataFrame:
    """Customers who are clients at each cutoff: frame (customer_id, cutoff), sorted; with
    ``horizon_days``, also their ``label`` (see ``features.labels``)."""
    cutoffs = _cutoff_list(cutoffs)
    if not cutoffs:
        return _empty()
    # the population and the labels read orders and cancellations only
    h = History(tables, max(cutoffs), order_horizon_days=horizon_days, need={"orders", "cancellations"}).wait()
    try:
        ids, when, label = [], [], []
        for cutoff in cutoffs:
            c = micros(cutoff)
            keys = _population(h, c, active_window_days)
            ids.append(h.ids.take(pa.array(keys)))
            when.append(np.full(len(keys), c, dtype="datetime64[us]"))
            if horizon_days is not None:
                label.append(_labels(h, c, keys, horizon_days))
    finally:
        h.close()
    out = pd.DataFrame({"customer_id": pa.chunked_array(ids, type=pa.string()).to_pandas().astype("str"),
                        "cutoff": np.concatenate(when)})
    if horizon_days is not None:
        out["label"] = np.concatenate(label)
    return out


def returning_customers(tables: Mapping[str, Source], as_of: pd.Timestamp, *,
                        active_window_days: int = 365) -> list[str]:
    """Customers who cancelled before ``as_of`` and still order: a purchase after their first
    cancellation, within ``active_window_days`` before ``as_of`` (empty without cancellations)."""
    if "cancellations" not in tables:
        return []
    import duckdb

    con = duckdb.connect()
    try:
        src = {}
        for name in ("orders", "cancellations"):
            source = tables[name]
            if isinstance(source, pd.DataFrame):
                con.register(f"input_{name}", source)
                src[name] = f"input_{name}"
            else:
                src[name] = parquet_sql(source)
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src['orders']}").fetchall()]
        purchase = "coalesce(o.status NOT IN ('cancelled', 'refund'), TRUE)" if "status" in cols else "TRUE"
        at = f"TIMESTAMP '{pd.Timestamp(as_of).isoformat(sep=' ')}'"
        rows = con.execute(f"""
            WITH first_cancel AS (SELECT CAST(customer_id AS VARCHAR) AS customer_id, min(cancelled_at) AS t
                                  FROM {src['cancellations']} WHERE cancelled_at < {at} GROUP BY 1)
            SELECT DISTINCT f.customer_id FROM {src['orders']} o JOIN first_cancel f
                ON CAST(o.customer_id AS VARCHAR) = f.customer_id
            WHERE o.ordered_at > f.t AND o.ordered_at < {at}
              AND o.ordered_at >= {at} - INTERVAL {int(active_window_days)} DAY AND {purchase}
            ORDER BY 1""").fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def features_for_scoring(tables: Mapping[str, Source], as_of: pd.Timestamp, *, config: FeatureConfig | None = None,
                         channels: Sequence[str] | None = None) -> pd.DataFrame:
    """The features of everyone scored at ``as_of``: the clients (``build_population``) and the
    customers who cancelled and still order (``returning_customers``); any other customer who
    cancelled is a former client, on neither list."""
    config = config or FeatureConfig()
    returning = returning_customers(tables, as_of, active_window_days=config.active_window_days)
    population = None
    if returning:
        clients = build_population(tables, [as_of], active_window_days=config.active_window_days)["customer_id"]
        ids = sorted(set(clients) | set(returning))
        population = pd.DataFrame({"customer_id": ids, "cutoff": pd.Timestamp(as_of)})
    return build_features(tables, [as_of], config=config, channels=channels, population=population)


def nps_category(score: pd.Series) -> pd.Series:
    """promoter (9-10), passive (7-8), detractor (0-6), none (never answered)."""
    s = pd.to_numeric(score).astype("float64").to_numpy()
    return pd.Series(np.select([s >= 9, s >= 7, s <= 6], ["promoter", "passive", "detractor"], "none"),
                     index=score.index)


def fit_btyd(frame: pd.DataFrame, config: FeatureConfig, *, warn: bool = True) -> dict:
    """The BG/NBD parameters of each cutoff of ``frame`` (rows sorted by cutoff then customer,
    as ``build_features`` returns them), fitted on that cutoff's own history: cutoff ->
    ``btyd.BgNbdParams``, or None when the fit fails (``btyd.BtydFitError``: e.g. no client has
    bought yet; a warning names the cutoff). The distributed engine fits them once on the
    inputs gathered from its shards in this same order, and hands them to every shard."""
    fitted = {}
    for cutoff, rows in frame.groupby("cutoff", sort=True).indices.items():
        x, t_x, T = (frame[c].to_numpy(dtype=float)[rows] for c in ("btyd_x", "btyd_t_x", "btyd_T"))
        try:
            fitted[pd.Timestamp(cutoff)] = btyd.fit_bgnbd(x, t_x, T, sample=config.btyd_sample)
        except btyd.BtydFitError as error:
            if warn:
                log.warning("btyd_* features missing at cutoff %s: %s", pd.Timestamp(cutoff).date(), error)
            fitted[pd.Timestamp(cutoff)] = None
    return fitted


def _btyd_features(frame: pd.DataFrame, config: FeatureConfig, fitted: Mapping | None = None) -> pd.DataFrame:
    """BG/NBD fitted per cutoff on that cutoff's own history (``fit_bgnbd``; ``fitted``: the
    parameters by cutoff, already fitted), applied to every client. A cutoff whose fit fails
    keeps the three features missing."""
    horizon_weeks = config.btyd_horizon_days / 7.0
    out = {name: np.full(len(frame), np.nan) for name in ("btyd_p_no_order", "btyd_expected_orders", "btyd_p_alive")}
    fitted = fit_btyd(frame, config) if fitted is None else {pd.Timestamp(c): p for c, p in fitted.items()}
    for cutoff, rows in frame.groupby("cutoff", sort=True).indices.items():
        x, t_x, T = (frame[c].to_numpy(dtype=float)[rows] for c in ("btyd_x", "btyd_t_x", "btyd_T"))
        params = fitted.get(pd.Timestamp(cutoff))
        if params is None:
            continue
        out["btyd_p_no_order"][rows] = btyd.p_no_purchase(params, x, t_x, T, horizon_weeks)
        out["btyd_expected_orders"][rows] = btyd.expected_purchases(params, x, t_x, T, horizon_weeks)
        out["btyd_p_alive"][rows] = btyd.p_alive(params, x, t_x, T)
    return pd.DataFrame(out, index=frame.index)


def build_features(tables: Mapping[str, Source], cutoffs: Iterable[pd.Timestamp], *,
                   config: FeatureConfig | None = None, active_window_days: int | None = None,
                   population: pd.DataFrame | None = None, channels: Sequence[str] | None = None,
                   label_horizon_days: int | None = None, progress: bool = False,
                   btyd_params: Mapping | None = None) -> pd.DataFrame:
    """Features of every client in the population at each cutoff.

    ``tables``: validated input tables (``features.inputs``) as frames or paths to Parquet
    files; only ``orders`` is required. ``population``: optional (customer_id, cutoff) frame
    to compute features for (default: the clients at each cutoff, ``build_population``).
    ``channels``: interaction channels that get their own features (default: chosen from the
    data before the latest cutoff; pass the model's list when scoring). Returns one row per
    (customer_id, cutoff), sorted by cutoff then customer, with the catalogue's columns that
    the data supports. Reads only facts strictly before each cutoff. With
    ``label_horizon_days`` (and no ``population``), also each client's ``label`` (see
    ``features.labels``: use ``build_training_set`` there, which keeps only the cutoffs whose
    label window is observed), computed in the same pass. ``btyd_params``: the BG/NBD
    parameters by cutoff (``fit_btyd``), fitted elsewhere; default: fitted here on the clients
    of each cutoff (a shard of the customers must be given the parameters of the whole base).
    """
    config = config or FeatureConfig()
    if active_window_days is not None:
        config = config.model_copy(update={"active_window_days": active_window_days})
    if population is not None and label_horizon_days is not None:
        raise ValueError("label_horizon_days labels the clients at each cutoff: leave population out")
    if population is not None:
        population = pd.DataFrame({"customer_id": population["customer_id"].astype("str").to_numpy(),
                                   "cutoff": pd.to_datetime(population["cutoff"]).astype("datetime64[us]").to_numpy()})
        cutoffs = population["cutoff"].unique()
    cutoffs = _cutoff_list(cutoffs)
    if not cutoffs:
        return _empty()
    # DuckDB starts reading the interactions before the first cutoff at once
    h = History(tables, max(cutoffs), order_horizon_days=label_horizon_days, first_span=cutoffs[0])
    touches = None
    try:
        prepared = _Prepared(h, config)
        wanted = None
        if population is not None:
            wanted = population.assign(k=h.keys_of(population["customer_id"])).drop_duplicates(["k", "cutoff"])
        if "interactions" in h.has:
            channels = list(channels) if channels is not None else _channels(h, config)
        touches = _Touches(prepared, channels, [micros(c) for c in cutoffs]) if "interactions" in h.has else None
        columns: dict[str, list] = {}
        for cutoff in _progress(cutoffs, progress):
            c = micros(cutoff)
            at = _Cutoff(prepared, c)
            if wanted is not None:
                keys = np.sort(wanted.loc[wanted["cutoff"] == np.datetime64(cutoff, "us"), "k"].to_numpy())
            else:
                keys = _population(h, c, config.active_window_days, at.n_orders)
            part = _features_at(at.select(keys), touches, clients=wanted is None)
            if label_horizon_days is not None:
                part["label"] = _labels(h, c, keys, label_horizon_days)
            for name, values in part.items():
                columns.setdefault(name, []).append(values)
        ids, attributes = h.ids, h.attributes()
    finally:
        if touches is not None:
            touches.close()
        h.close()
    return _finish(columns, ids, config, attributes, btyd_params)


def _features_at(at: _Cutoff, touches: _Touches | None, clients: bool = True) -> dict:
    """Every column at one cutoff: numbers as float64, categories as (codes, levels). The
    cutoffs come in increasing order (``touches`` advances from one to the next);
    ``clients``: ``keys`` are the population at each cutoff (not a population given)."""
    p, h, c, keys = at.p, at.h, at.c, at.keys
    cols: dict = {"key": keys, "cutoff": np.full(len(keys), c, dtype=np.int64)}
    cols.update(at.purchases())
    p.others()  # the orders' features were computed while the other tables were read
    promoter = np.zeros(len(keys), dtype=bool)
    if "nps" in h.has:
        nps, category = at.nps()
        cols.update(nps)
        cols["nps_last_category"] = (category, NPS_LEVELS)
        promoter = category == 3
    stage, phase = _lifecycle(cols["orders_total"], promoter, cols["tenure_days"])
    cols["lifecycle_stage"], cols["coleman_phase"] = (stage, STAGES), (phase, PHASES)
    angle = 2 * math.pi * pd.Timestamp(c, unit="us").dayofyear / 365.25
    cols["season_sin"], cols["season_cos"] = np.full(len(keys), math.sin(angle)), np.full(len(keys), math.cos(angle))
    open_days = np.zeros(len(keys))
    if "complaints" in h.has:
        complaints, severity, open_days = at.complaints()
        if "public" not in h.columns["complaints"]:
            complaints.pop("public_complaints_365d")
        cols.update(complaints)
        if "severity" in h.columns["complaints"]:
            cols["last_complaint_severity"] = (severity, h.severity_levels)
    if touches is not None:  # last: its span may still be on its way from DuckDB
        touches.advance(c, at.last_all, keys if clients else None)
        cols.update(touches.features(at))
    if h.has & {"interactions", "nps", "complaints"}:
        cols["bank_balance"] = at.bank(open_days, touches)
    for name, (values, levels) in h.attributes().items():
        cols[name] = values[keys] if levels is None else (values[keys], levels)
    return cols


def _progress(cutoffs: Sequence[pd.Timestamp], show: bool):
    if not show or len(cutoffs) < 2:
        return cutoffs
    from rich.progress import track

    return track(cutoffs, description="features by cutoff")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[us]")})


def _categorical(codes: np.ndarray, levels: Sequence[str]) -> pd.Categorical:
    """Codes into ``levels`` as a categorical of the levels present, sorted (-1 = missing)."""
    present = np.zeros(len(levels) + 1, dtype=bool)
    present[codes] = True  # codes of -1 mark the spare last slot
    kept = [i for i in np.argsort(np.asarray(levels, dtype=object), kind="stable") if present[i]] if len(levels) else []
    remap = np.full(len(levels) + 1, -1, dtype=np.int32)
    remap[np.asarray(kept, dtype=np.int64)] = np.arange(len(kept), dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=[levels[i] for i in kept])


def _finish(columns: dict[str, list], ids: pa.Array, config: FeatureConfig, attributes: dict,
            btyd_params: Mapping | None = None) -> pd.DataFrame:
    """One frame from the cutoffs' columns: categories, float64 numbers, BG/NBD summaries,
    catalogue column order."""
    if not columns:
        return _empty()
    data = {}
    for name in list(columns):
        parts = columns.pop(name)  # frees each column's parts once joined
        if name == "key":
            data["customer_id"] = ids.take(pa.array(np.concatenate(parts))).to_pandas().astype("str")
        elif name == "cutoff":
            data[name] = np.concatenate(parts).astype("datetime64[us]")
        elif isinstance(parts[0], tuple):
            data[name] = _categorical(np.concatenate([codes for codes, _levels in parts]), list(parts[0][1]))
        elif name == "label":
            data[name] = np.concatenate(parts).astype("int8")
        else:
            data[name] = np.concatenate(parts).astype("float64", copy=False)
    out = pd.DataFrame(data, copy=False)
    del data
    if config.btyd:  # the same columns whether or not a cutoff has clients
        btyd_cols = _btyd_features(out, config, btyd_params)
        for name in btyd_cols.columns:
            out[name] = btyd_cols[name]
    feature_cols = [name for name in BY_NAME if name in out.columns]
    dynamic = sorted(c for c in out.columns if c.startswith(("channel_", "days_since_")) and c not in BY_NAME
                     and c.endswith(f"_{CHANNEL_WINDOW}d"))
    ordered = (KEYS + (["label"] if "label" in out.columns else []) + feature_cols + dynamic
               + [c for c in attributes if c not in feature_cols] + [c for c in BTYD_INPUTS if c in out.columns])
    return out[ordered]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a feature table: everything but the keys, the label and
    the buy-till-you-die inputs (kept for the baselines)."""
    return [c for c in frame.columns if c not in (*KEYS, "label", *BTYD_INPUTS)]


def channel_list(feature_names: Iterable[str]) -> list[str]:
    """The channels a model was trained with, from its ``channel_<name>_90d`` columns (pass to
    ``build_features(channels=...)`` when scoring)."""
    return [c[len("channel_"):-len("_90d")] for c in feature_names if c.startswith("channel_") and c.endswith("_90d")]
