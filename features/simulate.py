"""Lifecycle simulator: a company's customers, day by day, written in the input contract.

Dynamics (../shared/domain.md), simulated on a daily grid with numpy arrays over the
customers who are acquired and still clients (no Python loop over customers):

- acquisition: customers arrive over ``history_years`` (slowly growing), each with a
  segment, an acquisition channel and a region, and buy on their first day;
- purchases: each customer has its own rate (gamma distributed, about one order every
  45-60 days), lifted by satisfaction; a few orders are returned;
- attention after the purchase: the company's first outbound touch comes after a delay that
  varies by customer (within days for most, after weeks or never for some); touches in the
  first 100 days vary from none to about eight; later touches are rarer;
- engagement: inbound activity (logins, chats, visits, app events) rises with satisfaction;
- NPS: some orders trigger a survey; answers are driven by latent satisfaction;
- complaints: service failures (more likely when attention is poor) open complaints, most
  resolved after a gamma-distributed delay, some left open; a failure lowers satisfaction,
  a resolution raises it; about one in ten complaints is public;
- becoming a former client: a daily hazard sigmoid(base + sum of group contributions), each
  computed from the customer's observable history at the start of the day:
    purchases   a one-order buyer waiting for the second order; a regular overdue by their
                own rhythm; many orders lower it;
    attention   days with no first touch after the first order; few touches in the first
                100 days; a long silence from our side;
    nps         a detractor's last score (more for lower scores); a promoter lowers it;
    complaints  open complaints and the age of the oldest; a resolved complaint lowers it;
    attributes  acquisition channel and segment.
  A former client stops buying and every other activity; a contractual business also
  records a cancellation.

``truth`` gives, for every client at each month start, the simulator's own probability of
becoming a former client within ``horizon_days`` (the daily hazard with the state frozen at
that date: 1 - (1 - p)^horizon), each group's log-odds contribution and the true churn date.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.io import write_atomic

DRIVER_GROUPS = ("purchases", "attention", "nps", "complaints", "attributes")
BASE_LOGIT = -8.2
SIGNAL = 1.8  # scales every driver's contribution: higher = churn is more predictable
SEGMENTS = np.array(["consumer", "smb", "enterprise"])
CHANNELS = np.array(["organic", "paid_search", "referral", "partner"])
REGIONS = np.array(["north", "south", "east", "west"])
OUTBOUND = np.array(["email", "call", "meeting"])
INBOUND = np.array(["login", "chat", "visit", "app"])
SEGMENT_EFFECT = np.array([0.15, 0.0, -0.3])
CHANNEL_EFFECT = np.array([0.0, 0.3, -0.4, -0.1])
SLOTS = 3  # open complaints tracked per customer
NEVER = np.iinfo(np.int32).max // 2


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class _State:
    """Per-customer arrays (index = customer number)."""

    def __init__(self, n: int, days: int, rng: np.random.Generator):
        growth = rng.random(n) ** 0.8
        self.signup = np.minimum((growth * (days - 30)).astype(np.int32), days - 31)
        self.segment = rng.choice(3, n, p=[0.6, 0.3, 0.1]).astype(np.int8)
        self.channel = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]).astype(np.int8)
        self.region = rng.choice(4, n).astype(np.int8)
        self.rate = rng.gamma(2.0, 1 / 100.0, n) * np.where(self.segment == 2, 1.3, 1.0)  # orders per day
        self.spend = np.exp(rng.normal(4.0, 0.5, n)) * np.where(self.segment == 2, 5.0, 1.0)
        quick = rng.random(n) < 0.6
        never = rng.random(n) < 0.12
        delay = np.where(quick, rng.exponential(3.0, n), rng.exponential(45.0, n))
        self.first_touch_delay = np.where(never, NEVER, np.ceil(delay)).astype(np.int32)
        self.attention = rng.beta(2.0, 2.5, n)  # the company's care for this account
        self.satisfaction = rng.normal(0.3, 1.0, n)
        self.alive = np.ones(n, bool)
        self.churn_day = np.full(n, -1, np.int32)
        self.first_order = np.full(n, -1, np.int32)
        self.last_order = np.full(n, -1, np.int32)
        self.n_orders = np.zeros(n, np.int32)
        self.touched = np.zeros(n, bool)
        self.last_outbound = np.full(n, -1, np.int32)
        self.touches_100 = np.zeros(n, np.int32)
        self.nps = np.full(n, -1, np.int8)
        self.open_since = np.full((n, SLOTS), -1, np.int32)
        self.resolve_on = np.full((n, SLOTS), -1, np.int32)
        self.resolved = np.zeros(n, np.int32)

    def contributions(self, idx: np.ndarray, day: int) -> np.ndarray:
        """(len(idx), 5) log-odds contributions per driver group at the start of ``day``."""
        since_first = day - self.first_order[idx]
        since_last = day - self.last_order[idx]
        n = self.n_orders[idx]
        gap = np.where(n >= 2, (self.last_order[idx] - self.first_order[idx]) / np.maximum(n - 1, 1), np.nan)
        overdue = since_last / np.maximum(np.nan_to_num(gap, nan=1.0), 7.0)
        purchases = np.where(n <= 1, 0.4 + 0.6 * np.minimum(since_last / 90.0, 3.0),
                             0.7 * np.clip(overdue - 1.0, -1.0, 4.0) - 0.15 * np.log1p(n))
        touched = self.touched[idx]
        waiting = np.where(touched, 0.0, 0.6 * np.minimum(since_first / 30.0, 3.0))
        first100 = np.where(since_first >= 100, 0.6 - 0.2 * np.minimum(self.touches_100[idx], 6), 0.0)
        silence = np.where(touched, 0.4 * np.minimum((day - self.last_outbound[idx]) / 60.0, 3.0), 0.0)
        attention = waiting + first100 + silence
        score = self.nps[idx].astype(np.float64)
        nps = np.select([score < 0, score <= 6, score >= 9], [0.0, 0.35 * (7 - score), -0.7], 0.0)
        open_mask = self.open_since[idx] >= 0
        n_open = open_mask.sum(axis=1)
        oldest = np.where(open_mask, self.open_since[idx], NEVER).min(axis=1)
        age = np.where(n_open > 0, day - oldest, 0)
        complaints = 0.6 * n_open + 0.015 * np.minimum(age, 60) - 0.4 * ((n_open == 0) & (self.resolved[idx] > 0))
        attributes = CHANNEL_EFFECT[self.channel[idx]] + SEGMENT_EFFECT[self.segment[idx]]
        return np.column_stack([purchases, attention, nps, complaints, attributes])


def simulate(n_customers: int, seed: int = 0, *, end: str | pd.Timestamp = "2025-12-31",
             history_years: float = 2.0, contractual: bool = True, horizon_days: int = 90,
             progress: bool = False) -> dict[str, pd.DataFrame]:
    """Simulate ``n_customers`` over ``history_years`` ending on ``end`` (inclusive).

    Returns the contract tables (customers, orders, interactions, nps, complaints, and
    cancellations when ``contractual``) and ``truth`` (one row per client and month start).
    All timestamps are naive UTC and on or before ``end``; the same arguments give the same
    frames.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    rng = np.random.default_rng(seed)
    end_day = pd.Timestamp(end).normalize()
    days = int(round(history_years * 365))
    start = end_day - pd.Timedelta(days=days - 1)
    st = _State(n_customers, days, rng)
    month_starts = {int((m - start).days): m for m in pd.date_range(start, end_day, freq="MS")}
    events = {k: [] for k in ("orders", "interactions", "nps", "complaints", "truth")}
    resolutions: list[tuple[np.ndarray, np.ndarray]] = []
    by_signup = np.argsort(st.signup, kind="stable")
    signup_sorted = st.signup[by_signup]

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(f"simulating {n_customers:,} customers", total=days)
    for day in range(days):
        # arrivals: first order on the signup day
        lo, hi = np.searchsorted(signup_sorted, [day, day + 1])
        new = by_signup[lo:hi]
        if len(new):
            st.first_order[new] = day
        active = np.flatnonzero(st.alive & (st.first_order >= 0))
        if len(active) == 0:
            continue
        # hazard from the state at the start of the day (before today's events)
        contrib = st.contributions(active, day)
        fresh = st.first_order[active] == day
        contrib = contrib * SIGNAL
        logit = BASE_LOGIT + contrib.sum(axis=1)
        p = _sigmoid(logit)
        if day in month_starts:
            clients = ~fresh
            risk = 1.0 - (1.0 - p[clients]) ** horizon_days
            events["truth"].append((day, active[clients], risk, contrib[clients]))
        churn = (rng.random(len(active)) < p) & ~fresh
        gone = active[churn]
        st.alive[gone] = False
        st.churn_day[gone] = day
        act = active[~churn]
        sat = st.satisfaction[act]

        # orders (everyone orders on the first day)
        first_day = st.first_order[act] == day
        n_new_orders = np.where(first_day, 1, rng.poisson(st.rate[act] * np.exp(0.25 * np.clip(sat, -3, 3))))
        buyers = np.repeat(act, n_new_orders)
        if len(buyers):
            amount = np.round(st.spend[buyers] * rng.lognormal(0.0, 0.3, len(buyers)), 2)
            failure = rng.random(len(buyers)) < 0.05 * (1.6 - st.attention[buyers])
            returned = rng.random(len(buyers)) < np.where(failure, 0.3, 0.03)
            events["orders"].append((buyers, day, amount, returned))
            first_time = st.n_orders[act] == 0
            np.add.at(st.n_orders, buyers, 1)
            st.last_order[act[n_new_orders > 0]] = day
            st.first_order[act[(n_new_orders > 0) & first_time]] = day
            # NPS survey after some orders, answered from latent satisfaction
            answer = buyers[rng.random(len(buyers)) < 0.25]
            if len(answer):
                delay = rng.integers(1, 8, len(answer))
                score = np.clip(np.round(7.2 + 1.6 * st.satisfaction[answer] + rng.normal(0, 1.3, len(answer))), 0, 10)
                events["nps"].append((answer, day + delay, score.astype(np.int8)))
                # the answer is known from its answer day; the hazard reads it from then on
                resolutions.append(("nps", answer, day + delay, score.astype(np.int8)))
            # complaints from service failures
            failed = buyers[failure & (rng.random(len(buyers)) < 0.8)]
            if len(failed):
                opened = day + rng.integers(0, 3, len(failed))
                resolved_after = np.where(rng.random(len(failed)) < 0.12, NEVER,
                                          np.ceil(rng.gamma(2.0, 6.0 + 10.0 * (1 - st.attention[failed])))).astype(np.int32)
                severity = rng.choice(3, len(failed), p=[0.5, 0.35, 0.15])
                public = rng.random(len(failed)) < 0.1
                events["complaints"].append((failed, opened, opened + resolved_after, severity, public))
                resolutions.append(("open", failed, opened, opened + resolved_after))
                st.satisfaction[failed] -= 0.4 + 0.3 * severity

        # the company's outbound touches: the first after a per-customer delay, then by attention
        since_first = day - st.first_order[act]
        due_first = ~st.touched[act] & (since_first >= st.first_touch_delay[act])
        in_100 = st.touched[act] & (since_first < 100)
        touch_rate = np.where(in_100, 0.06 * st.attention[act] + 0.005, 0.02 * st.attention[act] + 0.003)
        n_touch = np.where(due_first, 1, np.where(st.touched[act], rng.poisson(touch_rate), 0))
        toucher = np.repeat(act, n_touch)
        if len(toucher):
            events["interactions"].append((toucher, day, rng.integers(0, 3, len(toucher)), True))
            st.touched[toucher] = True
            st.last_outbound[toucher] = day
            early = toucher[(day - st.first_order[toucher]) < 100]
            np.add.at(st.touches_100, early, 1)
            st.satisfaction[toucher] += 0.05
        # the customer's own activity
        n_in = rng.poisson(0.065 * np.exp(0.5 * np.clip(sat, -3, 3)))
        actor = np.repeat(act, n_in)
        if len(actor):
            events["interactions"].append((actor, day, rng.integers(0, 4, len(actor)), False))
        # satisfaction drifts back towards the customer's mean
        st.satisfaction[act] += 0.01 * (0.3 - st.satisfaction[act]) + rng.normal(0, 0.03, len(act))
        _apply_scheduled(st, resolutions, day)
        if bar is not None:
            bar.advance(task)
    if bar is not None:
        bar.stop()
    return _assemble(st, events, start, end_day, month_starts, contractual, rng)


def _apply_scheduled(st: _State, scheduled: list, day: int) -> None:
    """Facts that become known on ``day``: NPS answers, complaints opened or resolved."""
    keep = []
    for item in scheduled:
        kind = item[0]
        if kind == "nps":
            _, who, when, score = item
            now = when == day  # answered today: known from the start of tomorrow
            st.nps[who[now]] = score[now]
            later = when > day
            if later.any():
                keep.append(("nps", who[later], when[later], score[later]))
        else:
            _, who, opened, resolved = item
            opening = opened == day
            for c in who[opening]:
                free = np.flatnonzero(st.open_since[c] < 0)
                if len(free):
                    st.open_since[c, free[0]] = day
                    st.resolve_on[c, free[0]] = -1
            pending = opened > day
            if pending.any():
                keep.append(("open", who[pending], opened[pending], resolved[pending]))
            # resolutions are scheduled per slot below
            for c, r in zip(who[opening], resolved[opening]):
                slot = np.flatnonzero(st.open_since[c] == day)
                if len(slot):
                    st.resolve_on[c, slot[-1]] = r
    scheduled[:] = keep
    done = (st.resolve_on >= 0) & (st.resolve_on <= day) & (st.open_since >= 0)
    if done.any():
        rows = np.flatnonzero(done.any(axis=1))
        np.add.at(st.resolved, rows, done[rows].sum(axis=1))
        st.satisfaction[rows] += 0.3
        st.open_since[done] = -1
        st.resolve_on[done] = -1


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return (prefix + pd.Series(numbers).astype("str").str.zfill(width)).to_numpy(dtype=object)


def _stamp(start: pd.Timestamp, day: np.ndarray, rng: np.random.Generator, lo_hour: int = 7, hi_hour: int = 21) -> np.ndarray:
    """Timestamps on the given days at a random second between lo_hour and hi_hour."""
    seconds = rng.integers(lo_hour * 3600, hi_hour * 3600, len(day))
    return (np.datetime64(start.to_datetime64(), "s") + day.astype("int64") * 86400 + seconds).astype("datetime64[us]")


def _assemble(st: _State, events: dict, start: pd.Timestamp, end_day: pd.Timestamp, month_starts: dict,
              contractual: bool, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    n = len(st.signup)
    last_day = int((end_day - start).days)
    churn = np.where(st.churn_day >= 0, st.churn_day, NEVER)
    cid = _ids("C", np.arange(1, n + 1), 7)
    acquired = st.first_order >= 0
    customers = pd.DataFrame({
        "customer_id": cid[acquired],
        "created_at": _stamp(start, st.signup[acquired], rng, 6, 7),
        "segment": SEGMENTS[st.segment[acquired]], "acquisition_channel": CHANNELS[st.channel[acquired]],
        "region": REGIONS[st.region[acquired]],
    })

    def cat(parts, i):
        return np.concatenate([np.broadcast_to(p[i], (len(p[0]),)) for p in parts]) if parts else np.array([])

    o = events["orders"]
    who, day, amount, returned = (cat(o, i) for i in range(4))
    order = np.lexsort((who, day))
    who, day, amount, returned = who[order].astype(np.int64), day[order].astype(np.int64), amount[order], returned[order].astype(bool)
    orders = pd.DataFrame({"order_id": _ids("O", np.arange(1, len(who) + 1), 9), "customer_id": cid[who],
                           "ordered_at": _stamp(start, day, rng), "amount": amount.astype("float64"),
                           "status": np.where(returned, "returned", "completed")})

    it = events["interactions"]
    who = cat(it, 0).astype(np.int64)
    day = cat(it, 1).astype(np.int64)
    kind = cat(it, 2).astype(np.int64)
    outbound = cat(it, 3).astype(bool)
    order = np.lexsort((who, day))
    who, day, kind, outbound = who[order], day[order], kind[order], outbound[order]
    stamp = _stamp(start, day, rng)
    # two touches of one customer on the same channel in the same second would be an exact
    # copy of a row, which validation quarantines as a duplicated export: keep one
    second = (stamp.astype("datetime64[s]") - np.datetime64(start.to_datetime64(), "s")).astype(np.int64)
    key = (who << 34) | (second << 3) | (kind << 1) | outbound
    first = np.sort(np.unique(key, return_index=True)[1])
    if len(first) < len(key):
        who, kind, outbound, stamp = who[first], kind[first], outbound[first], stamp[first]
    interactions = pd.DataFrame({"customer_id": cid[who], "occurred_at": stamp,
                                 "channel": np.where(outbound, OUTBOUND[np.minimum(kind, 2)], INBOUND[kind]),
                                 "direction": np.where(outbound, "outbound", "inbound")})

    q = events["nps"]
    who, day, score = cat(q, 0).astype(np.int64), cat(q, 1).astype(np.int64), cat(q, 2).astype(np.int64)
    keep = (day < churn[who]) & (day <= last_day)
    who, day, score = who[keep], day[keep], score[keep]
    order = np.lexsort((who, day))
    nps = pd.DataFrame({"customer_id": cid[who[order]], "answered_at": _stamp(start, day[order], rng),
                        "score": score[order].astype("int64")})

    k = events["complaints"]
    who, opened, resolved, severity, public = (cat(k, i) for i in range(5))
    who, opened, resolved = who.astype(np.int64), opened.astype(np.int64), resolved.astype(np.int64)
    keep = (opened < churn[who]) & (opened <= last_day)
    who, opened, resolved, severity, public = who[keep], opened[keep], resolved[keep], severity[keep], public[keep]
    order = np.lexsort((who, opened))
    who, opened, resolved, severity, public = who[order], opened[order], resolved[order], severity[order], public[order]
    opened_at = _stamp(start, opened, rng)
    resolved_at = _stamp(start, np.minimum(resolved, last_day), rng)
    resolved_at = np.maximum(resolved_at, opened_at + np.timedelta64(1, "h"))
    still_open = (resolved > last_day) | (resolved >= churn[who]) | (resolved_at > np.datetime64(end_day + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)))
    complaints = pd.DataFrame({
        "complaint_id": _ids("K", np.arange(1, len(who) + 1), 8), "customer_id": cid[who], "opened_at": opened_at,
        "resolved_at": pd.Series(resolved_at).where(~still_open).astype("datetime64[us]").to_numpy(),
        "severity": np.array(["low", "medium", "high"])[severity.astype(np.int64)], "public": public.astype(bool)})

    churned = np.flatnonzero(st.churn_day >= 0)
    churned_at = pd.Series(pd.NaT, index=range(n), dtype="datetime64[us]")
    churned_at.iloc[churned] = _stamp(start, st.churn_day[churned].astype(np.int64), rng, 0, 6)
    tables = {"customers": customers, "orders": orders, "interactions": interactions, "nps": nps, "complaints": complaints}
    if contractual:
        tables["cancellations"] = pd.DataFrame({"customer_id": cid[churned], "cancelled_at": churned_at.iloc[churned].to_numpy()})

    t = events["truth"]
    if t:
        who = np.concatenate([w for _, w, _, _ in t])
        as_of = np.concatenate([np.full(len(w), np.datetime64(month_starts[d].to_datetime64(), "us")) for d, w, _, _ in t])
        risk = np.concatenate([r for _, _, r, _ in t])
        contrib = np.concatenate([c for _, _, _, c in t])
    else:
        who, as_of, risk, contrib = np.array([], np.int64), np.array([], "datetime64[us]"), np.array([]), np.empty((0, 5))
    truth = pd.DataFrame({"customer_id": cid[who], "as_of": as_of, "true_risk": risk.astype("float64")})
    for i, group in enumerate(DRIVER_GROUPS):
        truth[f"contrib_{group}"] = contrib[:, i].astype("float64")
    truth["churned_at"] = churned_at.to_numpy()[who]
    tables["truth"] = truth.sort_values(["as_of", "customer_id"], kind="stable").reset_index(drop=True)
    for name in ("customers", "orders", "interactions", "nps", "complaints", "cancellations"):
        if name in tables:
            for col in tables[name].columns:
                if tables[name][col].dtype == object:
                    tables[name][col] = tables[name][col].astype("str")
    return tables


def write_dataset(tables: dict[str, pd.DataFrame], out_dir: Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write each table as <table>.parquet (or .csv) and truth.parquet, atomically; returns the paths.

    Parquet files are written without pandas metadata timestamps and with fixed options, so
    the same tables give the same bytes.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, not {fmt!r}")
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in tables.items():
        as_parquet = fmt == "parquet" or name == "truth"
        path = out_dir / f"{name}.{'parquet' if as_parquet else 'csv'}"
        if as_parquet:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            write_atomic(path, lambda p, t=table: pq.write_table(t, p, compression="zstd", write_statistics=True))
        else:
            write_atomic(path, lambda p, f=frame: f.to_csv(p, index=False))
        paths[name] = path
    return paths
