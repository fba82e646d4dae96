"""Lifecycle simulator: a company's customers, day by day, written in the input contract.

Dynamics (../shared/domain.md), simulated on a daily grid with numpy arrays over the
customers who are acquired and still clients (no Python loop over customers):

- acquisition: customers arrive over the history (slowly growing), each with a segment, an
  acquisition channel and a region, and buy on their first day;
- purchases: each customer has its own rate (gamma distributed, about one order every
  45-60 days, times ``purchase_rate``), lifted by satisfaction; a few orders are returned;
- seasonality (optional): a yearly cycle on purchase rates and acquisitions, peaking on
  1 December;
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

One function, ``_live_day``, moves the state through a day (after ``_hazard`` and the churn
draw); the main loop records what it does, and the truth's rollouts run the same function on
copies of the clients' state.

``truth`` gives, for every client at each month start, the simulator's own probability of
becoming a former client within ``horizon_days`` given its full state at that date (latent
satisfaction, its own purchase rate, the company's attention, open complaints, answers not yet
known...), estimated by Monte-Carlo rollouts of the next ``horizon_days`` with their own random
streams, with its standard error; the same for "no order within the horizon" (the label of a
business without cancellations); the frozen-state value 1 - (1 - p)^horizon of the hazard at
that date; each group's log-odds contribution to that hazard; and the true churn date.
"""
from __future__ import annotations

from dataclasses import dataclass
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
FIRST_WAIT_DAYS = 90.0  # days of a one-order buyer's wait that add one step of risk (at purchase_rate 1)
SEASON_PEAK_DAY = 334  # day of the year (0 = 1 January) where the yearly cycle peaks: 1 December
TRUTH_ROLLOUTS = 32  # rollouts per client and month start: standard error about 0.02
ROLLOUT_ROWS = 40_000  # rows (clients x rollouts) stepped together


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class _World:
    """What shapes the dynamics besides the customers: the calendar and the business's shape."""

    start: pd.Timestamp          # calendar date of day 0
    seasonality: float = 0.0     # amplitude of the yearly cycle of purchases and acquisitions
    purchase_rate: float = 1.0   # multiplier on every customer's purchase rate
    nps: bool = True             # NPS surveys are sent

    @property
    def first_wait_days(self) -> float:
        """How long a one-order buyer's wait for the second order counts as one unit of risk:
        the business's rhythm (90 days at the default rate, longer when customers buy rarely)."""
        return FIRST_WAIT_DAYS / self.purchase_rate

    def season(self, day) -> np.ndarray:
        """Multiplier of the yearly cycle on ``day`` (days since ``start``): mean 1 over a year,
        1 + seasonality at SEASON_PEAK_DAY of the year, 1 - seasonality half a year away."""
        doy = self.start.dayofyear - 1 + np.asarray(day)
        return 1.0 + self.seasonality * np.cos(2 * np.pi * (doy - SEASON_PEAK_DAY) / 365.25)


class _State:
    """Per-customer arrays (index = customer number) and the facts scheduled to become known later."""

    def __init__(self, n: int, days: int, rng: np.random.Generator, world: _World):
        self.signup = _signup_days(rng.random(n), days, world)
        self.segment = rng.choice(3, n, p=[0.6, 0.3, 0.1]).astype(np.int8)
        self.channel = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]).astype(np.int8)
        self.region = rng.choice(4, n).astype(np.int8)
        self.rate = rng.gamma(2.0, 1 / 100.0, n) * np.where(self.segment == 2, 1.3, 1.0)  # orders per day
        if world.purchase_rate != 1.0:
            self.rate = self.rate * world.purchase_rate
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
        # ("nps", who, answer day, score) and ("open", who, opening day, resolution day), in order
        self.scheduled: list[tuple] = []

    def copies(self, idx: np.ndarray, reps: int) -> _State:
        """``reps`` copies of the customers ``idx`` stacked: row ``r * len(idx) + j`` is copy ``r``
        of customer ``idx[j]``, with its scheduled facts. The copy shares nothing with ``self``."""
        out = object.__new__(_State)
        k = len(idx)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(out, name, np.tile(value[idx], (reps,) + (1,) * (value.ndim - 1)))
        position = np.full(len(self.alive), -1, np.int64)
        position[idx] = np.arange(k)
        offsets = (np.arange(reps, dtype=np.int64) * k)[:, None]
        out.scheduled = []
        for kind, who, *facts in self.scheduled:
            mine = position[who] >= 0
            if mine.any():
                rows = (offsets + position[who[mine]][None, :]).ravel()
                out.scheduled.append((kind, rows, *(np.tile(f[mine], reps) for f in facts)))
        return out


def _signup_days(u: np.ndarray, days: int, world: _World) -> np.ndarray:
    """Signup day of each customer from uniforms ``u``: acquisitions grow slowly over the
    history (density proportional to t^0.25) and, with seasonality, follow the yearly cycle."""
    span = days - 30
    if not world.seasonality:
        return np.minimum(((u ** 0.8) * span).astype(np.int32), days - 31)
    grid = np.arange(span + 1) / span
    mass = np.diff(grid ** 1.25) * world.season(np.arange(span))
    cdf = np.cumsum(mass) / mass.sum()
    return np.minimum(np.searchsorted(cdf, u, side="right"), span - 1).astype(np.int32)


def _hazard(st: _State, idx: np.ndarray | None, day: int, world: _World,
            groups: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """The daily hazard of customers ``idx`` (None: every row) from their state at the start
    of ``day``. Returns (the (len(idx), 5) log-odds contributions per driver group, scaled by
    SIGNAL, when ``groups``, else None; the probability)."""
    def get(a):
        return a if idx is None else a[idx]

    first_order, last_order, n = get(st.first_order), get(st.last_order), get(st.n_orders)
    since_first = day - first_order
    since_last = day - last_order
    gap = (last_order - first_order) / np.maximum(n - 1, 1)
    overdue = since_last / np.where(n >= 2, np.maximum(gap, 7.0), 7.0)
    purchases = np.where(n <= 1, 0.4 + 0.6 * np.minimum(since_last / world.first_wait_days, 3.0),
                         0.7 * np.clip(overdue - 1.0, -1.0, 4.0) - 0.15 * np.log1p(n))
    touched = get(st.touched)
    waiting = np.where(touched, 0.0, 0.6 * np.minimum(since_first / 30.0, 3.0))
    first100 = np.where(since_first >= 100, 0.6 - 0.2 * np.minimum(get(st.touches_100), 6), 0.0)
    silence = np.where(touched, 0.4 * np.minimum((day - get(st.last_outbound)) / 60.0, 3.0), 0.0)
    attention = waiting + first100 + silence
    score = get(st.nps).astype(np.float64)
    nps = np.where(score < 0, 0.0, np.where(score <= 6, 0.35 * (7 - score), np.where(score >= 9, -0.7, 0.0)))
    # slot by slot: reductions along a short axis are slow in NumPy
    slots = [get(st.open_since[:, j]) for j in range(SLOTS)]
    n_open = sum((since >= 0).astype(np.int64) for since in slots)
    oldest = np.where(slots[0] >= 0, slots[0], NEVER)
    for since in slots[1:]:
        oldest = np.minimum(oldest, np.where(since >= 0, since, NEVER))
    age = np.where(n_open > 0, day - oldest, 0)
    complaints = 0.6 * n_open + 0.015 * np.minimum(age, 60) - 0.4 * ((n_open == 0) & (get(st.resolved) > 0))
    attributes = CHANNEL_EFFECT[get(st.channel)] + SEGMENT_EFFECT[get(st.segment)]
    parts = [g * SIGNAL for g in (purchases, attention, nps, complaints, attributes)]
    total = (((parts[0] + parts[1]) + parts[2]) + parts[3]) + parts[4]  # the order of a row sum
    return (np.column_stack(parts) if groups else None), _sigmoid(BASE_LOGIT + total)


def _live_day(st: _State, day: int, act: np.ndarray, rng: np.random.Generator, world: _World,
              events: dict | None) -> None:
    """One day of the clients ``act`` who did not leave today (the hazard was drawn first, from
    the state at the start of the day): their orders, NPS answers, complaints, the company's
    touches, their own activity, satisfaction's drift, then the facts scheduled for today.

    Updates ``st`` in place. With ``events`` (the main simulation) every fact is appended to
    its list; without (a rollout) the draws that only feed the written tables (amounts,
    returns, channels, public flags, inbound activity) are skipped: they never touch the state.
    """
    record = events is not None
    sat = st.satisfaction[act]

    # orders (everyone orders on the first day)
    first_day = st.first_order[act] == day
    lam = st.rate[act] * np.exp(0.25 * np.clip(sat, -3, 3))
    if world.seasonality:
        lam = lam * world.season(day)
    n_new_orders = np.where(first_day, 1, rng.poisson(lam))
    buyers = np.repeat(act, n_new_orders)
    if len(buyers):
        if record:
            amount = np.round(st.spend[buyers] * rng.lognormal(0.0, 0.3, len(buyers)), 2)
        failure = rng.random(len(buyers)) < 0.05 * (1.6 - st.attention[buyers])
        if record:
            returned = rng.random(len(buyers)) < np.where(failure, 0.3, 0.03)
            events["orders"].append((buyers, day, amount, returned))
        first_time = st.n_orders[act] == 0
        np.add.at(st.n_orders, buyers, 1)
        st.last_order[act[n_new_orders > 0]] = day
        st.first_order[act[(n_new_orders > 0) & first_time]] = day
        # NPS survey after some orders, answered from latent satisfaction
        if world.nps:
            answer = buyers[rng.random(len(buyers)) < 0.25]
            if len(answer):
                delay = rng.integers(1, 8, len(answer))
                score = np.clip(np.round(7.2 + 1.6 * st.satisfaction[answer] + rng.normal(0, 1.3, len(answer))), 0, 10)
                if record:
                    events["nps"].append((answer, day + delay, score.astype(np.int8)))
                # the answer is known from its answer day; the hazard reads it from then on
                st.scheduled.append(("nps", answer, day + delay, score.astype(np.int8)))
        # complaints from service failures
        failed = buyers[failure & (rng.random(len(buyers)) < 0.8)]
        if len(failed):
            opened = day + rng.integers(0, 3, len(failed))
            resolved_after = np.where(rng.random(len(failed)) < 0.12, NEVER,
                                      np.ceil(rng.gamma(2.0, 6.0 + 10.0 * (1 - st.attention[failed])))).astype(np.int32)
            severity = rng.choice(3, len(failed), p=[0.5, 0.35, 0.15])
            if record:
                public = rng.random(len(failed)) < 0.1
                events["complaints"].append((failed, opened, opened + resolved_after, severity, public))
            st.scheduled.append(("open", failed, opened, opened + resolved_after))
            st.satisfaction[failed] -= 0.4 + 0.3 * severity

    # the company's outbound touches: the first after a per-customer delay, then by attention
    since_first = day - st.first_order[act]
    due_first = ~st.touched[act] & (since_first >= st.first_touch_delay[act])
    in_100 = st.touched[act] & (since_first < 100)
    touch_rate = np.where(in_100, 0.06 * st.attention[act] + 0.005, 0.02 * st.attention[act] + 0.003)
    n_touch = np.where(due_first, 1, np.where(st.touched[act], rng.poisson(touch_rate), 0))
    toucher = np.repeat(act, n_touch)
    if len(toucher):
        if record:
            events["interactions"].append((toucher, day, rng.integers(0, 3, len(toucher)), True))
        st.touched[toucher] = True
        st.last_outbound[toucher] = day
        early = toucher[(day - st.first_order[toucher]) < 100]
        np.add.at(st.touches_100, early, 1)
        st.satisfaction[toucher] += 0.05
    # the customer's own activity
    if record:
        n_in = rng.poisson(0.065 * np.exp(0.5 * np.clip(sat, -3, 3)))
        actor = np.repeat(act, n_in)
        if len(actor):
            events["interactions"].append((actor, day, rng.integers(0, 4, len(actor)), False))
    # satisfaction drifts back towards the customer's mean
    st.satisfaction[act] += 0.01 * (0.3 - st.satisfaction[act]) + rng.normal(0, 0.03, len(act))
    _apply_scheduled(st, day)


def _apply_scheduled(st: _State, day: int) -> None:
    """Facts that become known on ``day``: NPS answers, complaints opened or resolved.

    A complaint takes its customer's first free slot (none free: it is not tracked); its
    resolution day goes to the last slot opened today, so of two complaints one customer
    opens on the same day from one day's orders, only the later one is ever resolved.
    """
    keep = []
    for item in st.scheduled:
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
            pending = opened > day
            if pending.any():
                keep.append(("open", who[pending], opened[pending], resolved[pending]))
            if opening.any():
                _open_complaints(st, who[opening], resolved[opening], day)
    st.scheduled[:] = keep
    done = (st.resolve_on >= 0) & (st.resolve_on <= day) & (st.open_since >= 0)
    if done.any():
        rows = np.flatnonzero(done.any(axis=1))
        np.add.at(st.resolved, rows, done[rows].sum(axis=1))
        st.satisfaction[rows] += 0.3
        st.open_since[done] = -1
        st.resolve_on[done] = -1


def _open_complaints(st: _State, who: np.ndarray, resolved: np.ndarray, day: int) -> None:
    """Open one complaint per entry of ``who`` today (a customer may repeat): a customer's
    j-th entry takes its j-th free slot; then each customer's last resolution day goes to its
    highest slot opened today."""
    order = np.argsort(who, kind="stable")
    sorted_who = who[order]
    first = np.r_[True, sorted_who[1:] != sorted_who[:-1]]
    position = np.arange(len(who))
    rank = np.empty(len(who), np.int64)
    rank[order] = position - np.maximum.accumulate(np.where(first, position, 0))
    free = st.open_since[who] < 0
    taken = free & (np.cumsum(free, axis=1) == rank[:, None] + 1)
    has = taken.any(axis=1)
    slot = taken.argmax(axis=1)
    st.open_since[who[has], slot[has]] = day
    st.resolve_on[who[has], slot[has]] = -1
    last = len(who) - 1 - np.unique(who[::-1], return_index=True)[1]
    customer = who[last]
    today = st.open_since[customer] == day
    has = today.any(axis=1)
    slot = SLOTS - 1 - today[:, ::-1].argmax(axis=1)
    st.resolve_on[customer[has], slot[has]] = resolved[last][has]


def _roll_out(st: _State, clients: np.ndarray, day0: int, horizon_days: int, rollouts: int,
              rng: np.random.Generator, world: _World) -> np.ndarray:
    """The simulator's own probabilities for ``clients`` from their full state at the start of
    ``day0`` (before that day's churn draw), by ``rollouts`` futures of ``horizon_days`` days
    run with ``rng`` by the same day step as the simulation.

    Returns (4, len(clients)): P(former client within the horizon), its standard error,
    P(no order within the horizon), its standard error. Each rollout follows the client as
    if it never left and accumulates the probability of leaving on its path,
    1 - prod(1 - hazard): leaving only stops a path, so this has the same expectation as
    counting who leaves, with less variance. The no-order probability of a path is 1 when it
    has no order in the horizon, else the probability of leaving on or before its first order
    day (leaving comes before the day's orders).
    """
    # blocks of about ROLLOUT_ROWS rows keep the day step's arrays in cache: a quarter less CPU
    blocks = np.array_split(clients, max(1, len(clients) * rollouts // ROLLOUT_ROWS))
    return np.concatenate([_roll_out_block(st, b, day0, horizon_days, rollouts, rng, world) for b in blocks], axis=1)


def _roll_out_block(st: _State, clients: np.ndarray, day0: int, horizon_days: int, rollouts: int,
                    rng: np.random.Generator, world: _World) -> np.ndarray:
    """``_roll_out`` for one block of clients, all rollouts stacked in one state."""
    sub = st.copies(clients, rollouts)
    rows = np.arange(len(sub.alive))
    log_stay = np.zeros(len(rows))
    stay_at_order = np.full(len(rows), np.nan)  # survival up to and including the first order day
    for day in range(day0, day0 + horizon_days):
        _, p = _hazard(sub, None, day, world)
        log_stay += np.log1p(-p)
        before = sub.n_orders.copy()
        _live_day(sub, day, rows, rng, world, None)
        first = np.isnan(stay_at_order) & (sub.n_orders > before)
        stay_at_order[first] = np.exp(log_stay[first])
    leave = (1.0 - np.exp(log_stay)).reshape(rollouts, len(clients))
    silent = np.where(np.isnan(stay_at_order), 1.0, 1.0 - stay_at_order).reshape(rollouts, len(clients))

    def se(x):
        return x.std(axis=0, ddof=1) / np.sqrt(rollouts) if rollouts > 1 else np.full(x.shape[1], np.nan)

    return np.stack([leave.mean(axis=0), se(leave), silent.mean(axis=0), se(silent)])


def simulate(n_customers: int, seed: int = 0, *, end: str | pd.Timestamp = "2025-12-31",
             history_years: float = 2.0, history_months: int | None = None, contractual: bool = True,
             horizon_days: int = 90, truth_rollouts: int = TRUTH_ROLLOUTS, seasonality: float = 0.0,
             purchase_rate: float = 1.0, nps: bool = True, orders_only: bool = False,
             progress: bool = False) -> dict[str, pd.DataFrame]:
    """Simulate ``n_customers`` over a history ending on ``end`` (inclusive): ``history_years``
    (730 days by default), or ``history_months`` calendar months when given.

    Shapes: ``contractual=False`` writes no cancellations; ``seasonality`` in [0, 1) is the
    amplitude of a yearly cycle on purchase rates and acquisitions (peak in early December);
    ``purchase_rate`` multiplies every customer's purchase rate (0.3: an order every few
    months; a one-order buyer's wait counts in the same proportion); ``nps=False`` sends no
    surveys (no NPS table, no NPS term in the hazard); ``orders_only`` returns only orders
    (and cancellations) besides the truth, the rest of the company unseen.

    Returns the contract tables (customers, orders, interactions, nps, complaints, and
    cancellations when ``contractual``) and ``truth``: one row per client (acquired before, not
    yet left) and month start ``as_of``, with, from the client's full state at the start of that
    day, ``true_risk`` = P(former client within ``horizon_days``) and ``true_no_order_risk`` =
    P(no order within ``horizon_days``), each the mean of ``truth_rollouts`` rollouts with its
    standard error (``_se``; NaN below 2 rollouts; 0 rollouts: all four NaN);
    ``frozen_hazard_risk`` = 1 - (1 - p)^horizon_days with the daily hazard p at ``as_of``;
    ``contrib_<group>``, the hazard's log-odds contributions at ``as_of``; ``churned_at``.

    All timestamps are naive UTC and on or before ``end``; the same arguments give the same
    frames, and the rollouts draw from their own random streams: every table but the truth's
    rollout columns is the same for any ``truth_rollouts``. CPU time over two years: about
    0.1 s per 1,000 customers, plus about 3 s per 1,000 customers at 32 rollouts of 90 days.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    if truth_rollouts < 0:
        raise ValueError("truth_rollouts must be 0 (no rollouts) or more")
    if not 0.0 <= seasonality < 1.0:
        raise ValueError("seasonality must be in [0, 1)")
    if not purchase_rate > 0:
        raise ValueError("purchase_rate must be positive")
    end_day = pd.Timestamp(end).normalize()
    if history_months is not None:
        start = end_day - pd.DateOffset(months=history_months) + pd.Timedelta(days=1)
        days = int((end_day - start).days) + 1
    else:
        days = int(round(history_years * 365))
        start = end_day - pd.Timedelta(days=days - 1)
    if days < 60:
        raise ValueError(f"the history must span at least 60 days, not {days}")
    world = _World(start, float(seasonality), float(purchase_rate), bool(nps))
    rng = np.random.default_rng(seed)
    st = _State(n_customers, days, rng, world)
    month_starts = {int((m - start).days): m for m in pd.date_range(start, end_day, freq="MS")}
    events = {k: [] for k in ("orders", "interactions", "nps", "complaints", "truth")}
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
        contrib, p = _hazard(st, active, day, world, groups=day in month_starts)
        fresh = st.first_order[active] == day
        if day in month_starts:
            clients = ~fresh
            frozen = 1.0 - (1.0 - p[clients]) ** horizon_days
            rolled = None
            if truth_rollouts and clients.any():
                stream = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, day)))
                rolled = _roll_out(st, active[clients], day, horizon_days, truth_rollouts, stream, world)
            events["truth"].append((day, active[clients], frozen, contrib[clients], rolled))
        churn = (rng.random(len(active)) < p) & ~fresh
        gone = active[churn]
        st.alive[gone] = False
        st.churn_day[gone] = day
        _live_day(st, day, active[~churn], rng, world, events)
        if bar is not None:
            bar.advance(task)
    if bar is not None:
        bar.stop()
    tables = _assemble(st, events, start, end_day, month_starts, contractual, rng)
    if not nps:
        del tables["nps"]
    if orders_only:
        tables = {k: v for k, v in tables.items() if k in ("orders", "cancellations", "truth")}
    return tables


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return (prefix + pd.Series(numbers).astype("str").str.zfill(width)).to_numpy(dtype=object)


def _stamp(start: pd.Timestamp, day: np.ndarray, rng: np.random.Generator, lo_hour: int = 7, hi_hour: int = 21) -> np.ndarray:
    """Timestamps on the given days at a random second between lo_hour and hi_hour."""
    seconds = rng.integers(lo_hour * 3600, hi_hour * 3600, len(day))
    return (np.datetime64(start.to_datetime64(), "s") + day.astype("int64") * 86400 + seconds).astype("datetime64[us]")


def _assemble(st: _State, events: dict, start: pd.Timestamp, end_day: pd.Timestamp, month_starts: dict,
              contractual: bool, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The contract tables from the recorded events, and the truth (columns: see ``simulate``)."""
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
    who = np.concatenate([w for _, w, _, _, _ in t]) if t else np.array([], np.int64)
    as_of = np.concatenate([np.full(len(w), np.datetime64(month_starts[d].to_datetime64(), "us")) for d, w, _, _, _ in t]) \
        if t else np.array([], "datetime64[us]")
    frozen = np.concatenate([f for _, _, f, _, _ in t]) if t else np.array([])
    contrib = np.concatenate([c for _, _, _, c, _ in t]) if t else np.empty((0, 5))
    rolled = np.concatenate([r if r is not None else np.full((4, len(w)), np.nan) for _, w, _, _, r in t], axis=1) \
        if t else np.empty((4, 0))
    truth = pd.DataFrame({"customer_id": cid[who], "as_of": as_of})
    for i, name in enumerate(("true_risk", "true_risk_se", "true_no_order_risk", "true_no_order_risk_se")):
        truth[name] = rolled[i].astype("float64")
    truth["frozen_hazard_risk"] = frozen.astype("float64")
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


def truth_outcomes(truth: pd.DataFrame, orders: pd.DataFrame, end: str | pd.Timestamp,
                   horizon_days: int = 90) -> pd.DataFrame:
    """What really happened after each truth row: the rows whose window ``[as_of, as_of +
    horizon_days]`` ends on or before ``end``, with ``left`` (``churned_at`` in the window: the
    contractual label) and ``silent`` (no order of the customer in the window: the label of a
    business without cancellations). ``orders`` needs customer_id and ordered_at."""
    horizon = pd.Timedelta(days=horizon_days)
    rows = truth[truth["as_of"] + horizon <= pd.Timestamp(end)].reset_index(drop=True)
    placed = orders[["customer_id", "ordered_at"]].sort_values("ordered_at", kind="stable")
    keys = rows[["customer_id", "as_of"]].reset_index().sort_values("as_of", kind="stable")
    following = pd.merge_asof(keys, placed, left_on="as_of", right_on="ordered_at", by="customer_id",
                              direction="forward").set_index("index").sort_index()["ordered_at"]
    return rows.assign(left=rows["churned_at"].notna() & (rows["churned_at"] <= rows["as_of"] + horizon),
                       silent=~(following <= rows["as_of"] + horizon).to_numpy())


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
